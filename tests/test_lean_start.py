"""splatdiff-sample starts without what it never uses: torch's compiler (imported by diffusers and torchvision),
diffusers' other models, nerfstudio's trainer and pipeline classes (lean_start.py, models/diffusers_blocks.py,
safe_yaml's `classes_from`); what it does load keeps its values and names."""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
from pathlib import Path

from cli_helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints/demo/splatdiff-diffusion-small/shipped/config.yml"

NEVER_IMPORTED = (
    "torch._dynamo",
    "torch._inductor",
    "torchvision",
    "scipy.stats",
    "nerfstudio.engine.trainer",
    "nerfstudio.pipelines.base_pipeline",
    "nerfstudio.models.splatfacto",
    "nerfstudio.viewer.viewer",
    "nerfstudio_splatdiff.trainer",
    "nerfstudio_splatdiff.pipeline",
    "nerfstudio_splatdiff.data.datamanager",
)
"""Modules splatdiff-sample has no use for, each seconds (or a large share of them) of start-up."""
DIFFUSERS_MODULES_USED = {
    "diffusers.models.autoencoders.vae",
    "diffusers.models.unets.unet_2d",
    "diffusers.models.unets.unet_2d_blocks",
    "diffusers.models.transformers.transformer_2d",
    "diffusers.models.transformers.dual_transformer_2d",
}
"""The modules of diffusers' model packages that the networks import (their blocks and what those import)."""


def reporting(code: str, watched: tuple = NEVER_IMPORTED) -> str:
    """`code` to run with `python -c`, printing at exit which of `watched` and which modules of diffusers' model
    packages the process imported."""
    report = f"""
import atexit, json, sys
def report():
    diffusers = [m for m in sys.modules if m.startswith(("diffusers.models.autoencoders.", "diffusers.models.unets.",
                                                         "diffusers.models.transformers."))]
    heavy = [m for m in {watched!r} if m in sys.modules]
    print("MODULES " + json.dumps({{"heavy": heavy, "diffusers": diffusers}}))
atexit.register(report)
"""
    return report + code


def modules_of(out: str) -> dict:
    line = next(line for line in out.splitlines() if line.startswith("MODULES "))
    return json.loads(line[len("MODULES ") :])


def command_in_process(argv: list) -> str:
    """splatdiff-sample with `argv`, as code for `python -c` (the installed script does the same)."""
    return f"sys.argv = {argv!r}\nfrom nerfstudio_splatdiff.scripts.sample import entrypoint\nentrypoint()\n"


def test_splatdiff_sample_imports_neither_the_compiler_nor_the_trainer_nor_other_diffusers_models(tmp_path):
    """The real command, one photo to .ply files and a contact sheet, run in a process that reports its modules."""
    from PIL import Image, ImageDraw

    photo = tmp_path / "photo.png"
    image = Image.new("RGB", (80, 60), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((20, 10, 60, 50), fill=(200, 120, 60))  # an object on white, as trained
    image.save(photo)
    argv = ["splatdiff-sample", "--load-config", str(SHIPPED), "--image", str(photo), "--output-dir",
            str(tmp_path / "out"), "--num-samples", "1", "--no-turntable", "--render-size", "32"]  # fmt: skip
    out = run_cli([sys.executable, "-c", reporting(command_in_process(argv))], cwd=tmp_path)
    assert (tmp_path / "out" / "photo" / "sample_00.ply").is_file()
    modules = modules_of(out.stdout)
    assert modules["heavy"] == []
    assert DIFFUSERS_MODULES_USED >= set(modules["diffusers"]) >= {"diffusers.models.unets.unet_2d"}


def test_the_module_check_sees_a_heavy_import():
    """The check above can fail: importing diffusers as a whole brings in the compiler and every autoencoder."""
    out = run_cli([sys.executable, "-c", reporting("from diffusers import AutoencoderKL, UNet2DModel\n")])
    modules = modules_of(out.stdout)
    assert "torch._dynamo" in modules["heavy"]
    assert set(modules["diffusers"]) - DIFFUSERS_MODULES_USED


def test_diffusers_imported_lean_still_gives_every_name_and_the_compiler_afterwards():
    """The deferred packages run their __init__ when asked for a name; torch._dynamo imports as usual later; the
    classes are diffusers' own."""
    code = """
import sys
from nerfstudio_splatdiff.models.diffusers_blocks import UNet2DModel, Encoder
assert "torch._dynamo" not in sys.modules and "diffusers.models.autoencoders.autoencoder_kl" not in sys.modules
import diffusers
from diffusers.models.autoencoders import AutoencoderKL
from diffusers.models.unets import UNet2DModel as FromPackage
assert FromPackage is UNet2DModel is diffusers.UNet2DModel and Encoder.__module__ == "diffusers.models.autoencoders.vae"
assert AutoencoderKL is diffusers.AutoencoderKL and diffusers.models.unets.UNet2DConditionModel.__name__
import torch._dynamo
assert callable(torch._dynamo.allow_in_graph)
print("OK")
"""
    out = run_cli([sys.executable, "-c", code])
    assert out.stdout.strip().endswith("OK")


def _plain(value):
    """A config as nested plain values (class names, field dicts), whichever way it was loaded."""
    from nerfstudio_splatdiff.safe_yaml import UnloadedClass, UnloadedConfig

    if isinstance(value, UnloadedConfig):
        fields = {k: _plain(v) for k, v in vars(value).items() if k != "__config_class__"}
        if set(fields) == {"args", "kwds"}:  # an Enum member: its class and value
            return (value.__config_class__, value.args[0])
        return (value.__config_class__, fields)
    if isinstance(value, enum.Enum):
        return (f"{type(value).__module__}.{type(value).__qualname__}", value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (f"{type(value).__module__}.{type(value).__qualname__}", {k: _plain(v) for k, v in vars(value).items()})
    if isinstance(value, UnloadedClass):
        return str(value)
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def test_the_inference_config_holds_every_value_of_the_full_config_and_builds_only_the_model_classes():
    from nerfstudio_splatdiff.models.diffusion import DiffusionModelConfig
    from nerfstudio_splatdiff.runs import load_inference_config, load_run_config
    from nerfstudio_splatdiff.safe_yaml import UnloadedConfig

    full, light = load_run_config(SHIPPED), load_inference_config(SHIPPED)
    assert isinstance(light, UnloadedConfig) and isinstance(light.pipeline.datamanager, UnloadedConfig)
    assert isinstance(light.pipeline.model, DiffusionModelConfig) and light.pipeline.model == full.pipeline.model
    assert _plain(light) == _plain(full)
    assert light.pipeline.datamanager.background_color == full.pipeline.datamanager.background_color


def test_the_inference_config_refuses_what_the_full_loader_refuses_and_non_run_files(tmp_path):
    import pytest

    from nerfstudio_splatdiff.errors import SplatdiffError
    from nerfstudio_splatdiff.runs import load_inference_config

    marker = tmp_path / "ran"
    bodies = {
        "!!python/object:nerfstudio.engine.trainer.TrainerConfig\n"
        f"data: !!python/object/apply:os.system ['touch {marker}']": "Refusing to load",
        "!!python/object:nerfstudio.engine.trainer.TrainerConfig\n_target: !!python/name:os.system ''": "Refusing",
        "!!python/object:nerfstudio.engine.trainer.TrainerConfig\nx: !!python/object/new:os.system ['ls']": "Refusing",
        "!!python/object:nerfstudio_splatdiff.models.sampling.NoiseSchedule {}": "not a nerfstudio run config",
        "!!python/object:nerfstudio.configs.base_config.MachineConfig {}": "holds a nerfstudio.configs.base_config.Mac",
    }
    for i, (body, error) in enumerate(bodies.items()):
        config = tmp_path / f"c{i}.yml"
        config.write_text(body)
        with pytest.raises(SplatdiffError, match=error):
            load_inference_config(config)
    assert not marker.exists()


def test_help_answers_without_importing_torch_diffusers_or_nerfstudio():
    code = reporting(command_in_process(["splatdiff-sample", "--help"]), ("torch", "diffusers", "nerfstudio"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--load-config" in out.stdout
    assert modules_of(out.stdout)["heavy"] == []
