"""`splatdiff-sample`: photos of any size and format in, every promised file out; bad input is one clear message,
a non-zero exit and nothing half-written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from PIL import Image

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow
FAST = ["--render-size", "32", "--turntable-frames", "4"]


def photo(path: Path, size=(80, 56), mode="RGB", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8)
    if mode == "RGBA":
        arr[..., 3] = 0
        arr[size[1] // 4 : 3 * size[1] // 4, size[0] // 4 : 3 * size[0] // 4, 3] = 255  # an opaque object in the middle
    Image.fromarray(arr, mode).save(path)
    return path


def sample(config: Path, image: Path, out: Path, *extra, check=True):
    return run_cli(
        [BIN / "splatdiff-sample", "--load-config", config, "--image", image, "--output-dir", out, *FAST, *extra],
        check=check,
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    photo(folder / "wide.jpg", (80, 56))
    photo(folder / "cutout.png", (48, 64), mode="RGBA", seed=1)
    return folder


@pytest.fixture(scope="module")
def sampled(tiny_diffusion_run, photos, tmp_path_factory) -> Path:
    _, config = tiny_diffusion_run
    out = tmp_path_factory.mktemp("samples")
    sample(config, photos, out, "--num-samples", "3", "--seed", "5")
    return out


def test_every_promised_file_is_written_for_a_jpeg_and_an_rgba_png(sampled):
    for name in ("wide", "cutout"):
        folder = sampled / name
        for i in range(3):
            assert (folder / f"sample_{i:02d}.ply").stat().st_size > 0
            gif = Image.open(folder / f"turntable_{i:02d}.gif")
            assert gif.n_frames == 4 and gif.size == (32, 32)
        sheet = Image.open(folder / "contact_sheet.png")
        assert sheet.size[1] > 3 * 32 and sheet.size[0] > 5 * 32  # 3 rows: input | 4 views
    assert not list(sampled.glob(".*partial"))


def test_no_turntable_writes_the_splats_and_the_same_contact_sheet_without_turntables(
    tiny_diffusion_run, photos, sampled, tmp_path
):
    _, config = tiny_diffusion_run
    sample(config, photos / "wide.jpg", tmp_path, "--num-samples", "3", "--seed", "5", "--no-turntable")
    folder = tmp_path / "wide"
    assert sorted(p.name for p in folder.iterdir()) == [
        "contact_sheet.png",
        "sample_00.ply",
        "sample_01.ply",
        "sample_02.ply",
        "summary.json",
    ]
    # The sheet's views are rendered on their own here, and taken from the turntable frames by default: same images.
    fast = np.asarray(Image.open(folder / "contact_sheet.png"), dtype=np.int16)
    full = np.asarray(Image.open(sampled / "wide" / "contact_sheet.png"), dtype=np.int16)
    assert fast.shape == full.shape and np.abs(fast - full).max() <= 2


def test_flag_errors_need_no_torch_and_loading_a_run_config_skips_torchs_compiler(tiny_var_run):
    _, config = tiny_var_run
    code = f"""
import sys
from nerfstudio_splatdiff import generation
from nerfstudio_splatdiff.scripts import sample
try:
    generation.check_generation_flags(0, None, None, 0)
except generation.SplatdiffError:
    pass
assert "torch" not in sys.modules, "the command module or a flag error imported torch"
assert generation.run_kind({str(config)!r}) == "var"
assert "torch._inductor.compile_fx" not in sys.modules, "loading config.yml imported torch's inductor compiler"
"""
    run_cli([sys.executable, "-c", code])


def test_render_blocks_cover_every_view_of_every_sample_once_within_the_memory_budget():
    from nerfstudio_splatdiff.generation import MAX_RENDER_PAIRS, MAX_RENDER_PIXELS
    from nerfstudio_splatdiff.sample_writer import render_blocks

    assert render_blocks(4, 24, 8192, 128) == [(range(4), range(24))]  # the defaults: one call
    for n, v, gaussians, size in [(64, 720, 8192, 128), (3, 40, 300_000, 64), (5, 7, 10, 2048), (1, 1, 10**7, 16)]:
        seen = []
        for scenes, views in render_blocks(n, v, gaussians, size):
            assert len(scenes) * len(views) * gaussians <= max(MAX_RENDER_PAIRS, gaussians)
            assert len(scenes) * len(views) * size * size <= max(MAX_RENDER_PIXELS, size * size)
            seen += [(i, j) for i in scenes for j in views]
        assert sorted(seen) == [(i, j) for i in range(n) for j in range(v)]


def test_summary_json_is_valid_and_records_settings_timings_and_device(sampled):
    summary = json.loads((sampled / "summary.json").read_text())
    assert summary["run"]["kind"] == "diffusion" and summary["settings"]["num_samples"] == 3
    assert summary["device"] and summary["load_seconds"] > 0
    by_name = {Path(e["image"]).name: e for e in summary["images"]}
    assert set(by_name) == {"wide.jpg", "cutout.png"}
    assert by_name["cutout.png"]["has_mask"] and not by_name["wide.jpg"]["has_mask"]
    for e in summary["images"]:
        assert e["sampling_seconds"] > 0 and e["num_samples"] == 3
        assert json.loads((Path(e["folder"]) / "summary.json").read_text())["files"] == e["files"]


def test_ply_files_read_back_with_plyfile_and_carry_the_3dgs_fields(sampled):
    from plyfile import PlyData

    ply = PlyData.read(str(sampled / "wide" / "sample_00.ply"))
    names = set(ply["vertex"].data.dtype.names)
    expected = {
        "x",
        "y",
        "z",
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    }
    assert expected <= names
    assert len(ply["vertex"].data) == 2 * 64 * 64  # M=2 Gaussians per pixel of the 64x64 input
    assert np.isfinite(np.stack([ply["vertex"].data[n] for n in expected])).all()


def test_the_samples_differ_from_each_other(sampled):
    from nerfstudio_splatdiff.splats.ply import load_ply

    a, b = (load_ply(sampled / "wide" / f"sample_{i:02d}.ply") for i in (0, 1))
    assert not torch.allclose(a.means, b.means, atol=1e-4)


def test_the_photo_is_cropped_and_resized_and_alpha_becomes_the_mask(tmp_path):
    from nerfstudio_splatdiff.data.photo import DEFAULT_FOV_DEG, load_photo

    p = load_photo(photo(tmp_path / "a.png", (48, 64), mode="RGBA"), 32, background=(0.0, 0.0, 0.0))
    assert p.image.shape == (32, 32, 3) and p.mask is not None and p.mask.shape == (32, 32, 1)
    assert p.mask[16, 16, 0] > 0.99 and p.mask[0, 0, 0] < 0.01 and float(p.image[0, 0].abs().max()) < 0.02
    f = 16 / np.tan(np.radians(DEFAULT_FOV_DEG) / 2)
    assert torch.allclose(p.K, torch.tensor([[f, 0, 16], [0, f, 16], [0, 0, 1]], dtype=torch.float32))
    # --focal is in pixels of the original image: the 48-pixel crop shrinks to 32.
    q = load_photo(tmp_path / "a.png", 32, focal=60.0)
    assert abs(float(q.K[0, 0]) - 40.0) < 1e-5


def test_a_var_run_gives_its_single_deterministic_reconstruction(tiny_var_run, photos, tmp_path):
    _, config = tiny_var_run
    out = sample(config, photos / "wide.jpg", tmp_path, "--num-samples", "3")
    assert "deterministic" in out.stdout
    assert "Warning" not in out.stderr, out.stderr  # no library deprecation noise on a normal run
    assert sorted(p.name for p in (tmp_path / "wide").glob("*.ply")) == ["sample_00.ply"]


@pytest.mark.parametrize("case", ["missing", "unreadable", "tiny", "other_method", "zero_samples", "guidance"])
def test_bad_input_is_one_clear_message_and_nothing_is_written(
    case, tiny_diffusion_run, tiny_var_run, photos, tmp_path
):
    root, config = tiny_diffusion_run
    image, extra = photos / "wide.jpg", []
    if case == "missing":
        image, expect = tmp_path / "nope.jpg", "No image at"
    elif case == "unreadable":
        image, expect = tmp_path / "broken.png", "Cannot read"
        image.write_bytes(b"this is not an image")
    elif case == "tiny":
        image, expect = photo(tmp_path / "dot.png", (1, 1)), "at least 16 pixels"
    elif case == "other_method":
        import yaml
        from nerfstudio.configs.method_configs import method_configs

        config = tmp_path / "splatfacto" / "config.yml"
        config.parent.mkdir()
        config.write_text(yaml.dump(method_configs["splatfacto"]))
        expect = "not a splatdiff run: splatdiff-sample takes a splatdiff-diffusion, splatdiff-var or "
        expect += "splatdiff-regression run"
    elif case == "zero_samples":
        extra, expect = ["--num-samples", "0"], "at least 1"
    else:
        extra, expect = ["--guidance-weight", "50"], "guidance_weight must be in"
    out_dir = tmp_path / "out"
    res = sample(config, image, out_dir, *extra, check=False)
    text = res.stdout + res.stderr
    assert res.returncode != 0 and expect in text, text[-2000:]
    assert "Traceback" not in text
    assert not out_dir.exists() or not any(out_dir.iterdir())
