"""The 128x128 GPU presets: the proving-ground recipe of the small presets at the paper's size, small enough that a
lent GPU run's slim copies come back as single files (benchmarks/gpu_session.sh)."""

from __future__ import annotations

RETURNED_FILE = 16 * 2**20
"""Largest file a lent GPU command brings back (bytes); a slim copy stores float16 weights (2 bytes each)."""


def test_the_gpu_presets_train_the_proving_ground_recipe_at_128_and_their_slim_copies_come_back_whole():
    from method_configs.splatdiff_methods import splatdiff_diffusion_gpu128, splatdiff_var_gpu128, splatdiff_var_small

    var, diffusion, small = (s.config for s in (splatdiff_var_gpu128, splatdiff_diffusion_gpu128, splatdiff_var_small))
    for config in (var, diffusion):
        dm = config.pipeline.datamanager
        assert config.pipeline.model.image_size == dm.dataparser.resolution == 128
        for name in ("scene_kind", "hidden_target", "source_window", "background_color", "num_target_views"):
            assert getattr(dm, name) == getattr(small.pipeline.datamanager, name), name
        assert config.viewer.websocket_host == "127.0.0.1"
    net = var.pipeline.model.network
    assert net.privileged_view and net.privileged_grid == 128 // 8
    assert net.block_out_channels[0] > small.pipeline.model.network.block_out_channels[0]  # more full-res width
    var_params = sum(p.numel() for p in net.setup().parameters())
    denoiser_params = sum(p.numel() for p in diffusion.pipeline.model.denoiser.setup().parameters())
    assert 2 * var_params < 0.9 * RETURNED_FILE and 2 * denoiser_params < 0.9 * RETURNED_FILE
