"""VAR network: latent shape and sampling, skip dropout, skip_weight; the regression baseline's interface."""

from __future__ import annotations

import pytest
import torch

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.regression_net import RegressionNetConfig
from nerfstudio_splatdiff.models.var_net import VARNetConfig

SMALL = dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1, norm_num_groups=16)


def inputs(B=2, S=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[30.0, 0, S / 2], [0, 30.0, S / 2], [0, 0, 1]]).expand(B, 3, 3)
    return torch.rand(B, 3, S, S, generator=g), torch.eye(4).expand(B, 4, 4), K, torch.ones(B), 3 * torch.ones(B)


def test_latent_is_4_channels_at_one_eighth_and_sampled_only_in_training():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL, skip_dropout=0.0).setup()
    x = inputs()
    net.train()
    a, b = net(*x), net(*x)
    assert a["latent_mean"].shape == (2, 4, 4, 4)
    assert not torch.equal(a["latent"], b["latent"])  # reparameterised samples
    net.eval()
    c, d = net(*x), net(*x)
    assert torch.equal(c["latent"], c["latent_mean"]) and torch.equal(c["gaussians"].means, d["gaussians"].means)
    assert c["gaussians"].means.shape == (2, 2 * 32 * 32, 3)


def test_skip_dropout_really_zeros_the_skips():
    torch.manual_seed(0)
    x = inputs()
    net = VARNetConfig(**SMALL, skip_dropout=1.0).setup()
    with torch.no_grad():
        torch.nn.init.normal_(net.skip_proj.weight)  # make the skip path matter
    net.train()
    out = net(*x, sample_latent=False)
    assert torch.equal(out["skip_weight"], torch.zeros(2))
    raw_no_skip = net.decode_raw(out["latent"], None)
    raw_dropped = net.decode_raw(out["latent"], net.encode(x[0])[2], out["skip_weight"])
    assert torch.allclose(raw_no_skip, raw_dropped)
    net.config.skip_dropout = 0.0
    assert torch.equal(net(*x)["skip_weight"], torch.ones(2))


def test_skip_weight_zero_depends_only_on_the_latent():
    torch.manual_seed(0)
    net = VARNetConfig(**SMALL).setup().eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.skip_proj.weight)
    x1, x2 = inputs(seed=1), inputs(seed=2)
    z = torch.randn(2, 4, 4, 4)
    a = net(*x1, skip_weight=0.0, latent=z)["gaussians"].means
    b = net(*x2, skip_weight=0.0, latent=z)["gaussians"].means
    assert torch.equal(a, b)
    a1 = net(*x1, skip_weight=1.0, latent=z)["gaussians"].means
    b1 = net(*x2, skip_weight=1.0, latent=z)["gaussians"].means
    assert not torch.allclose(a1, b1)


def test_image_size_must_fit_the_latent_grid():
    net = VARNetConfig(**SMALL).setup()
    with pytest.raises(SplatdiffError, match="multiple of 8"):
        net(*inputs(S=36))


def test_regression_net_takes_the_same_call():
    net = RegressionNetConfig(**SMALL, attention_levels=()).setup().eval()
    out = net(*inputs(), skip_weight=0.3)
    assert out["gaussians"].means.shape == (2, 2 * 32 * 32, 3)


def test_loads_local_autoencoderkl_weights(tmp_path):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=SMALL["block_out_channels"],
        layers_per_block=1, latent_channels=4, norm_num_groups=16,
    )  # fmt: skip
    vae.save_pretrained(tmp_path / "vae")
    net = VARNetConfig(**SMALL, pretrained_autoencoder=tmp_path / "vae").setup()
    assert torch.equal(net.encoder.conv_in.weight, vae.encoder.conv_in.weight)
    assert torch.equal(net.decoder.mid_block.resnets[0].conv1.weight, vae.decoder.mid_block.resnets[0].conv1.weight)
    assert net.decoder.conv_out.out_channels == 30  # the splatter output layer is new
    with pytest.raises(SplatdiffError, match="No AutoencoderKL weights at"):
        VARNetConfig(**SMALL, pretrained_autoencoder=tmp_path / "missing").setup()


def test_method_presets_bind_the_viewer_to_localhost():
    from method_configs.splatdiff_methods import splatdiff_regression_small, splatdiff_var, splatdiff_var_small

    for spec in (splatdiff_var, splatdiff_var_small, splatdiff_regression_small):
        assert spec.config.viewer.websocket_host == "127.0.0.1"
    assert splatdiff_var.config.pipeline.model.image_size == 128 and splatdiff_var_small.config.pipeline.model.image_size == 64
