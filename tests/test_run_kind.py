"""Every command asks a run's model config what it is (`run_kind`, `is_generative`, `needs_frozen_var`,
`trained_module`) instead of looking for fields; anything that is not a splatdiff run is one clear message."""

from __future__ import annotations

import pytest
import yaml

from nerfstudio_splatdiff.errors import SplatdiffError


def preset(name: str):
    import method_configs.splatdiff_methods as methods

    return getattr(methods, name.replace("-", "_")).config.pipeline.model


@pytest.mark.parametrize(
    "method, kind, generative, frozen_var, trained",
    [
        ("splatdiff-var", "var", False, False, "net"),
        ("splatdiff-var-small", "var", False, False, "net"),
        ("splatdiff-regression", "regression", False, False, "net"),
        ("splatdiff-regression-small", "regression", False, False, "net"),
        ("splatdiff-diffusion", "diffusion", True, True, "denoiser"),
        ("splatdiff-diffusion-small", "diffusion", True, True, "denoiser"),
    ],
)
def test_each_preset_says_what_kind_of_run_it_trains(method, kind, generative, frozen_var, trained):
    cfg = preset(method)
    assert (cfg.run_kind, cfg.is_generative, cfg.needs_frozen_var, cfg.trained_module) == (
        kind,
        generative,
        frozen_var,
        trained,
    )


def test_the_kind_survives_a_config_yml_round_trip(tmp_path):
    """What a run's config.yml loads back as (through the safe loader) answers the same."""
    import method_configs.splatdiff_methods as methods
    from nerfstudio_splatdiff.generation import run_kind

    for spec, kind in (
        (methods.splatdiff_regression_small, "regression"),
        (methods.splatdiff_diffusion_small, "diffusion"),
    ):
        path = tmp_path / kind / "config.yml"
        path.parent.mkdir()
        path.write_text(yaml.dump(spec.config))
        assert run_kind(path) == kind


def test_a_splatfacto_run_is_refused_with_the_command_and_a_hint(tmp_path):
    from nerfstudio.configs.method_configs import method_configs

    from nerfstudio_splatdiff.generation import run_kind

    path = tmp_path / "config.yml"
    path.write_text(yaml.dump(method_configs["splatfacto"]))
    with pytest.raises(
        SplatdiffError, match="'splatfacto' run, not a splatdiff run: splatdiff-export takes.*ns-export"
    ):
        run_kind(path, "splatdiff-export", " (For splatfacto use ns-export gaussian-splat.)")
    with pytest.raises(SplatdiffError, match="No config.yml at"):
        run_kind(tmp_path / "nope.yml")


def test_a_regression_model_generates_its_one_reconstruction_repeated():
    import torch
    from nerfstudio.data.scene_box import SceneBox

    cfg = preset("splatdiff-regression-small")
    model = cfg.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=0, metadata={})
    model.eval()
    S = cfg.image_size
    K = torch.tensor([[S, 0.0, S / 2], [0.0, S, S / 2], [0.0, 0.0, 1.0]])
    batch = {
        "images": torch.rand(1, 1, S, S, 3),
        "c2w": torch.eye(4)[None, None],
        "K": K[None, None],
        "depth_near": torch.tensor([0.5]),
        "depth_far": torch.tensor([3.0]),
    }
    g = model.generate(batch, 3, seed=1)
    assert g.batch_size == 3 and torch.equal(g.means[0], g.means[2])
    assert torch.equal(model.generate(batch, 1, seed=7).means[0], g.means[0])


def test_sample_and_export_both_treat_a_regression_run_as_one_deterministic_reconstruction(tmp_path, capsys):
    """A regression run (random weights, no training) through splatdiff-sample and splatdiff-export in-process: each
    writes the one reconstruction and says so, as for a VAR run."""
    import copy
    import json

    import numpy as np
    import torch
    from nerfstudio.data.scene_box import SceneBox
    from PIL import Image

    import method_configs.splatdiff_methods as methods
    from nerfstudio_splatdiff.data.procedural.generate import generate_dataset
    from nerfstudio_splatdiff.scripts.export import Export
    from nerfstudio_splatdiff.scripts.sample import Sample

    data = tmp_path / "data"
    generate_dataset(data, scenes=2, views=3, resolution=64, seed=0, kind="object")
    run = copy.deepcopy(methods.splatdiff_regression_small.config)
    run.output_dir, run.experiment_name, run.timestamp = tmp_path / "runs", "exp", "run"
    for obj in (run, run.pipeline.datamanager, run.pipeline.datamanager.dataparser):
        obj.data = data
    run.pipeline.datamanager.dataparser.cache_dir = tmp_path / "cache"
    run.pipeline.datamanager.dataparser.resolution = 64
    run.pipeline.datamanager.num_workers = 0
    model = run.pipeline.model.setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=0, metadata={}, device="cpu"
    )
    folder = run.get_checkpoint_dir()
    folder.mkdir(parents=True)
    torch.save(
        {"step": 1, "pipeline": {f"_model.{k}": v for k, v in model.state_dict().items()}},
        folder / "step-000000001.ckpt",
    )
    config = folder.parent / "config.yml"
    config.write_text(yaml.dump(run))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "p.png")

    Sample(
        load_config=config,
        image=tmp_path / "p.png",
        output_dir=tmp_path / "s",
        num_samples=3,
        render_size=32,
        turntable_frames=2,
        device="cpu",
    ).main()
    assert "splatdiff-regression run is deterministic" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "s" / "p").glob("*.ply")) == ["sample_00.ply"]
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["run"]["kind"] == "regression"
    Export(load_config=config, scenes=(0,), num_samples=3, output_dir=tmp_path / "e").main()
    assert "splatdiff-regression run is deterministic" in capsys.readouterr().out
    (scene,) = (tmp_path / "e").iterdir()
    assert sorted(p.name for p in scene.iterdir()) == ["sample_00.ply"]
