"""splatdiff-sample's checks before the work (issue #22): a photo far from what the run trained on is told so, once
and before the work, with what to pass; --eta is validated with the other sampling knobs and reaches the sampler
(and the viewer's slider); an image too large to open, render sizes x turntable frames that cannot fit in memory and
a full disk are each one clear line. Runs on the shipped checkpoint (no training)."""

from __future__ import annotations

import errno
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from PIL import Image

from nerfstudio_splatdiff.errors import SplatdiffError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints/demo/splatdiff-diffusion-small/shipped/config.yml"
BIN = Path(sys.executable).parent
FAST = dict(render_size=32, turntable_frames=4, num_samples=1)


def teddybear_frame(real_data: Path) -> Path:
    """A frame of the real CO3D teddybear sequence in ../shared/data/real; skips the test when absent."""
    frames = sorted((real_data / "posediffusion_co3d").glob("teddybear*/frame*.jpg"))
    if not frames:
        pytest.skip(f"no CO3D teddybear frame under {real_data / 'posediffusion_co3d'}")
    return frames[0]


@pytest.fixture(scope="module")
def proving_ground_photo(tmp_path_factory) -> Path:
    """The input view of a proving-ground scene (the kind of image the shipped run trained on), as a JPEG."""
    from nerfstudio_splatdiff.data.procedural.generate import generate_dataset

    root = tmp_path_factory.mktemp("proving")
    cat = generate_dataset(root, scenes=1, views=2, resolution=128, seed=11, kind="object")
    (frame,) = sorted(cat.glob("proc_*/images/frame000001.jpg"))
    return frame


@pytest.fixture(scope="module")
def shipped_run():
    from nerfstudio_splatdiff.generation import load_run

    return load_run(SHIPPED)[0]


def load(path: Path, run, mask: Path | None = None):
    from nerfstudio_splatdiff.data.photo import load_photo
    from nerfstudio_splatdiff.generation import photo_background

    return load_photo(path, int(run.pipeline.model.image_size), mask, background=photo_background(run))


def no_model(*args, **kwargs):
    pytest.fail("the model loaded before the check")


# -- far from the training data --------------------------------------------------------------------------------------
def test_the_shipped_run_says_it_trained_on_masked_objects_on_white(shipped_run):
    from nerfstudio_splatdiff.generation import training_images

    trained = training_images(shipped_run)
    assert trained.scenes == "objects" and trained.background == (1.0, 1.0, 1.0)
    assert "proving ground" in trained.dataset


def test_what_a_run_trained_on_is_read_from_its_config_as_inference_loads_it():
    """The datamanager's background and scene kind and the dataparser say it, also for config objects the safe
    loader leaves unimported (as `runs.load_inference_model` reads a run)."""
    from types import SimpleNamespace

    from nerfstudio_splatdiff.generation import training_images
    from nerfstudio_splatdiff.safe_yaml import UnloadedConfig

    def run(parser: str, background=None, scene_kind=None, **fields):
        dataparser = UnloadedConfig(f"nerfstudio_splatdiff.data.dataparsers.{parser}", **fields)
        dm = UnloadedConfig("x.MultiSceneDataManagerConfig", dataparser=dataparser, background_color=background)
        dm.scene_kind = scene_kind
        return SimpleNamespace(pipeline=SimpleNamespace(datamanager=dm))

    full = training_images(run("Co3dDataParserConfig", camera_distance=2.0, category="teddybear"))
    assert (full.scenes, full.dataset, full.background) == ("full", "CO3D teddybear", None)
    masked = training_images(run("Co3dDataParserConfig", (0.0, 0.0, 0.0), camera_distance=2.0, category="hydrant"))
    assert (masked.scenes, masked.dataset, masked.background) == ("objects", "CO3D hydrant", (0.0, 0.0, 0.0))
    assert training_images(run("Re10kDataParserConfig", depth_near=1.0, depth_far=100.0)).scenes == "rooms"


def test_an_unmasked_real_photo_is_far_from_a_masked_object_run_and_a_mask_is_what_to_pass(
    real_data, shipped_run, proving_ground_photo, tmp_path
):
    from nerfstudio_splatdiff.generation import TrainingImages, photo_warning, training_images

    trained = training_images(shipped_run)
    teddy = load(teddybear_frame(real_data), shipped_run)
    warning = photo_warning(teddy.image, False, trained)
    assert warning is not None and "--mask" in warning and "RGBA" in warning and "no mask" in warning
    pg = load(proving_ground_photo, shipped_run)
    assert photo_warning(pg.image, False, trained) is None
    # With a mask (an ellipse around the middle) the teddybear is an object on white: no warning.
    w, h = Image.open(teddybear_frame(real_data)).size
    yy, xx = np.mgrid[:h, :w]
    ellipse = ((xx - w / 2) / (0.3 * w)) ** 2 + ((yy - h / 2) / (0.3 * h)) ** 2 <= 1
    Image.fromarray((ellipse * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    masked = load(teddybear_frame(real_data), shipped_run, tmp_path / "mask.png")
    assert photo_warning(masked.image, True, trained) is None
    # A run trained on full photos expects surroundings: the same photo is not far from it.
    assert photo_warning(teddy.image, False, TrainingImages("full", "CO3D teddybear", None)) is None


def test_an_object_filling_the_frame_or_a_flat_image_is_far_from_the_training_images(shipped_run):
    from nerfstudio_splatdiff.generation import photo_warning, training_images

    trained = training_images(shipped_run)
    rng = np.random.default_rng(0)
    filled = torch.from_numpy(rng.uniform(0.0, 0.6, (64, 64, 3)).astype(np.float32))  # no white anywhere
    assert "fills" in photo_warning(filled, True, trained)
    flat = torch.full((64, 64, 3), 0.4)
    assert "flat colour" in photo_warning(flat, False, trained)


def test_splatdiff_sample_warns_once_for_the_teddybear_before_the_work_and_not_for_the_proving_ground(
    real_data, proving_ground_photo, tmp_path
):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "teddybear.jpg").write_bytes(teddybear_frame(real_data).read_bytes())
    (photos / "proving.jpg").write_bytes(proving_ground_photo.read_bytes())
    out = run_cli(
        [BIN / "splatdiff-sample", "--load-config", SHIPPED, "--image", photos, "--output-dir", tmp_path / "out"]
        + ["--num-samples", "1", "--no-turntable", "--render-size", "32"]
    )
    text = " ".join(out.stdout.split())  # the console wraps long lines
    assert text.count("far from the training data") == 1, text
    assert "teddybear.jpg: far from the training data" in text and "proving.jpg: far" not in text
    assert "--mask" in text and text.index("far from the training data") < text.index("Done:")
    assert (tmp_path / "out" / "teddybear" / "sample_00.ply").is_file()  # a warning, not a refusal


# -- --eta ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eta", [1.5, -0.1, float("nan")])
def test_eta_out_of_range_is_one_clear_error_before_anything_loads(eta, proving_ground_photo, tmp_path, monkeypatch):
    import nerfstudio_splatdiff.scripts.sample as sample_mod
    from nerfstudio_splatdiff.scripts.export import Export
    from nerfstudio_splatdiff.scripts.sample import Sample

    monkeypatch.setattr(sample_mod, "load_run", no_model)
    with pytest.raises(SplatdiffError, match="--eta"):
        Sample(load_config=SHIPPED, image=proving_ground_photo, output_dir=tmp_path / "s", eta=eta).main()
    with pytest.raises(SplatdiffError, match="--eta"):
        Export(load_config=SHIPPED, output_dir=tmp_path / "e", eta=eta).check()
    assert not (tmp_path / "s").exists() and not (tmp_path / "e").exists()


def test_eta_above_zero_is_refused_for_a_run_that_samples_with_dpm_solver(shipped_run):
    import copy

    from nerfstudio_splatdiff.generation import check_eta_for_run

    run = copy.deepcopy(shipped_run)
    check_eta_for_run(run, "diffusion", 0.5)  # DDIM: fine
    run.pipeline.model.scheduler = "dpmsolver++"
    check_eta_for_run(run, "diffusion", 0.0)
    check_eta_for_run(run, "var", 0.5)  # a deterministic run ignores it
    with pytest.raises(SplatdiffError, match="--eta 0"):
        check_eta_for_run(run, "diffusion", 0.5)


@pytest.fixture(scope="module")
def shipped_model():
    from nerfstudio_splatdiff.runs import load_inference_model

    model, _ = load_inference_model(SHIPPED, "cpu")
    return model


def photo_batch(model, photo) -> dict:
    return {
        "images": photo.image[None, None],
        "c2w": torch.eye(4)[None, None],
        "K": photo.K[None, None],
        "depth_near": torch.tensor([1.0]),
        "depth_far": torch.tensor([3.0]),
    }


def test_eta_reaches_the_sampler_and_the_viewer_slider(shipped_model, shipped_run, proving_ground_photo, monkeypatch):
    model = shipped_model
    batch = photo_batch(model, load(proving_ground_photo, shipped_run))
    monkeypatch.setattr(model.config, "num_steps", 5)  # a short DDIM path is enough to tell the paths apart
    monkeypatch.setattr(model.viewer_sample, "max", 0)  # the viewer draws one sample per knob setting
    run_eta = model.config.eta
    default = model.generate(batch, 1, seed=3).means
    same = model.generate(batch, 1, seed=3, eta=run_eta).means
    other = model.generate(batch, 1, seed=3, eta=1.0 - run_eta).means
    assert torch.equal(default, same) and not torch.allclose(default, other, atol=1e-4)
    # The viewer: an eta slider next to guidance and skip weight, starting at the run's eta, that resamples.
    assert model.viewer_eta.value == run_eta and not model.viewer_eta.disabled
    model.scene_provider = lambda index: (None, batch)
    before = model.viewer_gaussians().means.clone()
    model.viewer_eta.value = 1.0 - run_eta
    after = model.viewer_gaussians().means
    model.viewer_eta.value = run_eta
    assert not torch.allclose(before, after, atol=1e-4)


def test_sampled_latents_decode_to_exactly_what_generate_returns(shipped_model, shipped_run, proving_ground_photo):
    """`latent_samples` + `decode_latents` (what diagnostics use to see the latents) are `sample` split in two: the
    same seed gives the same Gaussians, so the latents are the ones the VAR's decoder turns into the scene, in the
    VAR's own space (shaped like its encoder's), and another seed gives other latents."""
    model = shipped_model
    batch = photo_batch(model, load(proving_ground_photo, shipped_run))
    whole = model.generate(batch, 2, seed=4)
    z, skip = model.latent_samples(batch, 2, seed=4)
    split = model.decode_latents(batch, z, skip, model.config.skip_weight)
    assert torch.equal(whole.means, split.means) and torch.equal(whole.opacities, split.opacities)
    assert z.shape[0] == 2 and z.shape[1:] == model.encode_source(batch)[0].shape[1:]
    assert not torch.allclose(z, model.latent_samples(batch, 2, seed=5)[0], atol=1e-3)


# -- rough inputs -----------------------------------------------------------------------------------------------------
def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that says it is width x height grey pixels (a decompression bomb: tiny on disk, huge in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_a_20000_pixel_square_png_is_one_clear_line_before_the_model_loads(tmp_path, monkeypatch):
    import nerfstudio_splatdiff.scripts.sample as sample_mod
    from nerfstudio_splatdiff.scripts.sample import Sample

    bomb = png_header_only(tmp_path / "huge.png", 20000, 20000)
    monkeypatch.setattr(sample_mod, "load_inference_model", no_model)
    with pytest.raises(SplatdiffError, match="too large to open safely.*downscale"):
        Sample(load_config=SHIPPED, image=bomb, output_dir=tmp_path / "out", **FAST).main()
    assert not (tmp_path / "out").exists()


def test_render_size_times_frames_beyond_the_memory_is_refused_up_front_with_what_to_pass(monkeypatch):
    from nerfstudio_splatdiff import generation

    assert generation.render_memory_bytes(2048, 720) > 50e9  # the case: ~100 GB
    monkeypatch.setattr(generation, "available_memory_bytes", lambda: 16e9)
    with pytest.raises(SplatdiffError, match="needs about .* GB.*--turntable-frames .*--no-turntable") as e:
        generation.check_render_flags(2048, True, 720, "gif")
    fit = int(str(e.value).split("--turntable-frames ")[1].split()[0])
    assert generation.render_memory_bytes(2048, fit) <= 16e9 < generation.render_memory_bytes(2048, fit + 1)
    generation.check_render_flags(128, True, 24, "gif")  # the defaults fit
    generation.check_render_flags(2048, False, 720, "gif")  # no turntable: the contact sheet's 4 views fit


def test_the_memory_refusal_comes_from_the_command_in_one_line(tmp_path, proving_ground_photo):
    from nerfstudio_splatdiff.generation import available_memory_bytes, render_memory_bytes

    if render_memory_bytes(2048, 720) <= available_memory_bytes():
        pytest.skip("this machine has the memory for 2048 px x 720 frames")
    out = run_cli(
        [BIN / "splatdiff-sample", "--load-config", SHIPPED, "--image", proving_ground_photo]
        + ["--output-dir", tmp_path / "out", "--render-size", "2048", "--turntable-frames", "720"],
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 1 and "GB of memory" in text and "Traceback" not in text, text[-2000:]
    assert not (tmp_path / "out").exists()


def test_a_full_disk_while_writing_is_one_clear_line_and_leaves_nothing_half_written(
    proving_ground_photo, tmp_path, monkeypatch, capsys
):
    import nerfstudio_splatdiff.splats.ply as ply
    from nerfstudio_splatdiff.scripts import sample

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ply, "save_ply", disk_full)
    out = tmp_path / "out"
    argv = ["splatdiff-sample", "--load-config", str(SHIPPED), "--image", str(proving_ground_photo)]
    argv += ["--output-dir", str(out), "--num-samples", "1", "--no-turntable", "--render-size", "32"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        sample.entrypoint()
    printed = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 1 and "Error: The disk of" in printed and "is full" in printed, printed
    assert "Traceback" not in printed and "--output-dir" in printed
    assert sorted(p.name for p in out.iterdir()) == []  # no photo folder, no partial folder, no summary
