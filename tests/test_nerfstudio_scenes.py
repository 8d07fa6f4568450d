"""Your own captures (`nerfstudio-scenes`): nerfstudio-format folders (transforms.json + images) read with the CO3D
reader's preprocessing. The real instant-ngp fox capture (../shared/data/real, skipped when absent) and small folders
the tests write from procedural scenes (the same scenes read as CO3D give the same cameras and pixels)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli, train_cmd

from nerfstudio_splatdiff.data.co3d import Co3dSettings, load_co3d_split
from nerfstudio_splatdiff.data.co3d_format import read_jgz
from nerfstudio_splatdiff.data.datamanager import check_scene_kind
from nerfstudio_splatdiff.data.nerfstudio_scenes import (
    NerfstudioScenesSettings,
    capture_photo,
    describe_eval_frames,
    load_nerfstudio_split,
    split_captures,
    undistort,
)
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.cameras import (
    invert_rigid,
    ndc_to_pixel_intrinsics,
    opencv_c2w_to_opengl_c2w,
    pytorch3d_to_opencv_w2c,
)

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
FOX = "instant_ngp_fox"
FOX_RES = 256


# -- a nerfstudio-format copy of procedural scenes ------------------------------------------------------------------
def write_transforms_from_co3d(cat_dir: Path, styles: dict[str, str]) -> None:
    """Write <sequence>/transforms.json for procedural sequences of `cat_dir` from their CO3D annotations: OpenGL
    camera-to-world, pixel intrinsics, frames listed in reverse. `styles` maps each sequence to "shared" (intrinsics
    at the top, with zero OPENCV distortion), "per_frame", or "ngp" (instant-ngp's camera_angle_x only: the procedural
    cameras have a centred principal point and fx = fy)."""
    by_seq: dict[str, list] = {}
    for ann in read_jgz(cat_dir / "frame_annotations.jgz"):
        by_seq.setdefault(ann["sequence_name"], []).append(ann)
    for seq, style in styles.items():
        frames, intrinsics = [], {}
        for ann in by_seq[seq]:
            vp = ann["viewpoint"]
            h, w = ann["image"]["size"]
            R, T = (torch.tensor(vp[k], dtype=torch.float64) for k in ("R", "T"))
            c2w_gl = opencv_c2w_to_opengl_c2w(invert_rigid(pytorch3d_to_opencv_w2c(R, T)))
            focal, pp = (torch.tensor(vp[k], dtype=torch.float64) for k in ("focal_length", "principal_point"))
            K = ndc_to_pixel_intrinsics(focal, pp, h, w, vp["intrinsics_format"])
            intrinsics = {"fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])}
            intrinsics.update(w=w, h=h)
            frame = {
                "file_path": str(Path(ann["image"]["path"]).relative_to(f"{cat_dir.name}/{seq}")),
                "mask_path": str(Path(ann["mask"]["path"]).relative_to(f"{cat_dir.name}/{seq}")),
                "transform_matrix": c2w_gl.tolist(),
            }
            if style == "per_frame":
                frame.update(intrinsics)
            frames.append(frame)
        meta: dict = {"frames": frames[::-1]}  # any order: frames are used in file-name order
        if style == "shared":
            meta.update(intrinsics, camera_model="OPENCV", k1=0.0, k2=0.0, p1=0.0, p2=0.0)
        elif style == "ngp":
            assert intrinsics["fl_x"] == intrinsics["fl_y"] and intrinsics["cx"] == intrinsics["w"] / 2
            meta.update(camera_angle_x=2 * float(np.arctan(0.5 * intrinsics["w"] / intrinsics["fl_x"])), aabb_scale=4)
        (cat_dir / seq / "transforms.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def procedural(tmp_path_factory):
    """3 procedural object scenes (64 px, 5 views) in CO3D layout, each also a nerfstudio capture in its own style:
    (CO3D root, the folder of captures)."""
    from nerfstudio_splatdiff.data.procedural.generate import generate_dataset

    root = tmp_path_factory.mktemp("procedural")
    cat_dir = generate_dataset(root / "co3d", scenes=3, views=5, resolution=64, seed=3, kind="object")
    seqs = sorted(p.name for p in cat_dir.glob("proc_*"))
    write_transforms_from_co3d(cat_dir, dict(zip(seqs, ("shared", "per_frame", "ngp"))))
    return root / "co3d", cat_dir


def copy_capture(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- procedural: the same scenes as CO3D and as nerfstudio-format ----------------------------------------------------
def test_procedural_scenes_read_as_co3d_and_as_captures_give_the_same_cameras_and_pixels(procedural, tmp_path):
    co3d_root, captures = procedural
    styles = {json.dumps(sorted(json.loads((c / "transforms.json").read_text()))) for c in captures.glob("proc_*")}
    assert len(styles) == 3  # shared intrinsics, per-frame intrinsics, instant-ngp's camera_angle_x
    for split in ("train", "test"):
        co3d, _ = load_co3d_split(
            co3d_root,
            "procedural",
            "fewview_dev",
            split,
            Co3dSettings(resolution=64, load_depths=False),
            cache_root=tmp_path / "c",
        )
        ns, report = load_nerfstudio_split(captures, split, NerfstudioScenesSettings(resolution=64), tmp_path / "n")
        assert len(report) == 0
        assert [r.name for r in ns] == [r.name for r in co3d] and ns
        for a, b in zip(co3d, ns):
            assert torch.allclose(a.c2w, b.c2w, atol=1e-5) and torch.allclose(a.K, b.K, atol=1e-5)
            assert abs(a.meta["world_scale"] - b.meta["world_scale"]) < 1e-5 * a.meta["world_scale"]
            pa, pb = a.load(list(range(a.num_frames))), b.load(list(range(b.num_frames)))
            assert torch.equal(pa["images"], pb["images"]) and torch.equal(pa["masks"], pb["masks"])
            assert b.frame_numbers == list(range(b.num_frames))  # file-name order, though the file lists them reversed


def test_a_missing_image_is_skipped_and_listed_by_scene_and_file(procedural, tmp_path):
    capture = copy_capture(procedural[1] / "proc_000000", tmp_path / "mine")
    (capture / "images" / "frame000003.jpg").unlink()
    (rec,), report = load_nerfstudio_split(capture, "train", NerfstudioScenesSettings(resolution=32), tmp_path / "c")
    assert rec.num_frames == 4 and rec.frame_numbers == [0, 1, 3, 4]
    assert report.items == [("mine", 2, f"image file {capture / 'images' / 'frame000003.jpg'} is missing")]
    assert rec.meta["frame_files"][2] == "images/frame000004.jpg"


def test_paths_outside_the_capture_are_skipped_never_read(procedural, tmp_path):
    capture = copy_capture(procedural[1] / "proc_000000", tmp_path / "mine")
    outside = tmp_path / "secret.jpg"
    shutil.copy(capture / "images" / "frame000001.jpg", outside)
    meta = json.loads((capture / "transforms.json").read_text())
    meta["frames"][0]["file_path"] = "../secret.jpg"
    meta["frames"][1]["file_path"] = str(outside)
    (capture / "transforms.json").write_text(json.dumps(meta))
    (rec,), report = load_nerfstudio_split(capture, "train", NerfstudioScenesSettings(resolution=32), tmp_path / "c")
    assert rec.num_frames == 3
    reasons = " | ".join(r for _, _, r in report.items)
    assert "leads outside" in reasons and "is absolute" in reasons


def test_the_chosen_input_frame_comes_first_and_the_report_names_it(procedural, tmp_path):
    capture = procedural[1] / "proc_000001"
    settings = NerfstudioScenesSettings(resolution=32, input_frame=2)
    (rec,), _ = load_nerfstudio_split(capture, "test", settings, tmp_path / "c")
    (plain,), _ = load_nerfstudio_split(capture, "test", NerfstudioScenesSettings(resolution=32), tmp_path / "c")
    assert rec.frame_numbers == [2, 3, 4, 0, 1]
    assert torch.equal(rec.load([0])["images"], plain.load([2])["images"])
    text = describe_eval_frames([rec])
    assert "input images/frame000003.jpg, 4 targets" in text
    with pytest.raises(SplatdiffError, match="--input-frame"):
        load_nerfstudio_split(capture, "test", NerfstudioScenesSettings(input_frame=-1), tmp_path / "c")


def test_captures_are_split_by_scene(procedural, tmp_path):
    captures = procedural[1]
    names = sorted(p.name for p in captures.glob("proc_*"))
    split = split_captures(captures)
    assert [p.name for p in split["train"]] == names[:-1] and [p.name for p in split["test"]] == names[-1:]
    single = captures / names[0]
    assert split_captures(single) == {"train": [single], "test": [single]}  # one capture: used for both
    many = tmp_path / "many"
    for i in range(7):
        (many / f"s{i:02d}").mkdir(parents=True)
        (many / f"s{i:02d}" / "transforms.json").write_text("{}")
    split = split_captures(many, test_every=3)
    assert [p.name for p in split["test"]] == ["s02", "s05"]  # every 3rd by name
    assert sorted(p.name for p in split["train"] + split["test"]) == [f"s{i:02d}" for i in range(7)]
    folders = tmp_path / "folders"
    for s, n in (("train", "a"), ("train", "b"), ("test", "c")):
        (folders / s / n).mkdir(parents=True)
        (folders / s / n / "transforms.json").write_text("{}")
    split = split_captures(folders)
    assert [p.name for p in split["train"]] == ["a", "b"] and [p.name for p in split["test"]] == ["c"]
    with pytest.raises(SplatdiffError, match="--test-every"):
        split_captures(many, test_every=1)
    with pytest.raises(SplatdiffError, match="holds no nerfstudio capture"):
        split_captures(tmp_path)


def test_a_capture_frame_as_a_sample_input_has_its_preprocessed_pixels_and_intrinsics(procedural, tmp_path):
    capture = procedural[1] / "proc_000002"
    (rec,), _ = load_nerfstudio_split(capture, "test", NerfstudioScenesSettings(resolution=64), tmp_path / "c")
    photo = capture_photo(capture, 1, 64, background=(1.0, 1.0, 1.0))
    assert photo.path.name == "frame000002.jpg" and torch.allclose(photo.K, rec.K[1])
    pix = rec.load([1])
    mask = pix["masks"][0, ..., None].float() / 255
    expected = pix["images"][0].float() / 255 * mask + (1 - mask)
    assert (photo.image - expected).abs().max() < 1e-2
    with pytest.raises(SplatdiffError, match="--frame 5 does not exist"):
        capture_photo(capture, 5, 64)


@pytest.mark.slow
def test_splatdiff_sample_takes_a_capture_frame_with_its_real_intrinsics(procedural, tmp_path):
    capture = procedural[1] / "proc_000001"
    config = REPO / "checkpoints/demo/splatdiff-var-small/shipped/config.yml"
    base = [BIN / "splatdiff-sample", "--load-config", config, "--image", capture, "--output-dir", tmp_path / "out"]
    refused = run_cli([*base, "--fov-deg", "40"], check=False)
    assert refused.returncode == 1 and "drop --fov-deg" in refused.stdout + refused.stderr
    assert not (tmp_path / "out").exists()
    run_cli([*base, "--frame", "3", "--no-turntable"], cwd=REPO)
    (entry,) = json.loads((tmp_path / "out" / "summary.json").read_text())["images"]
    assert Path(entry["image"]).name == "frame000004.jpg"
    (rec,), _ = load_nerfstudio_split(capture, "test", NerfstudioScenesSettings(resolution=64), tmp_path / "c")
    assert abs(entry["focal_px"] - float(rec.K[3, 0, 0])) < 1e-4


# -- distortion ------------------------------------------------------------------------------------------------------
def test_undistortion_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    H, W = 60, 80
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    image = np.stack([128 + 100 * np.sin(u / 7) * np.cos(v / 9), 128 + 80 * np.cos((u + v) / 11), u * 3], -1)
    K = torch.tensor([[70.0, 0.0, 43.0], [0.0, 72.0, 28.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    k1, k2, k3, p1, p2 = 0.12, -0.05, 0.01, 0.003, -0.002
    ours = undistort(image.astype(np.float32), K, (k1, k2, k3, p1, p2))
    K_cv = K.numpy().copy()
    K_cv[:2, 2] -= 0.5  # OpenCV puts the centre of the top-left pixel at (0, 0), nerfstudio and COLMAP at (0.5, 0.5)
    theirs = cv2.undistort(image.astype(np.float32), K_cv, np.array([k1, k2, p1, p2, k3]))
    inner = (slice(6, H - 6), slice(6, W - 6))
    assert np.abs(ours - image)[inner].max() > 10  # the distortion is not negligible
    assert np.abs(ours - theirs)[inner].max() < 1.0


def test_cameras_undistortion_cannot_handle_are_refused_with_one_line(procedural, tmp_path):
    capture = copy_capture(procedural[1] / "proc_000000", tmp_path / "fisheye")
    meta = json.loads((capture / "transforms.json").read_text())
    (capture / "transforms.json").write_text(json.dumps({**meta, "camera_model": "OPENCV_FISHEYE", "k1": 0.1}))
    with pytest.raises(SplatdiffError, match=r"camera_model 'OPENCV_FISHEYE'.*camera_model PINHOLE") as err:
        load_nerfstudio_split(capture, "train", NerfstudioScenesSettings(), tmp_path / "c")
    assert "\n" not in str(err.value)
    meta["frames"][3]["k4"] = 0.01
    (capture / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SplatdiffError, match="sets k4") as err:
        load_nerfstudio_split(capture, "train", NerfstudioScenesSettings(), tmp_path / "c")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "c").exists()  # refused before any work


def test_the_small_presets_refuse_captures_and_name_the_flag_that_trains_them_anyway(procedural, tmp_path):
    records, _ = load_nerfstudio_split(procedural[1], "train", NerfstudioScenesSettings(resolution=32), tmp_path / "c")
    with pytest.raises(SplatdiffError, match=r"kind 'object'.*--pipeline.datamanager.scene-kind None"):
        check_scene_kind(records, "object", procedural[1])
    check_scene_kind(records, None, procedural[1])


def test_the_dataparser_is_registered_with_nerfstudio():
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    from nerfstudio_splatdiff.data.dataparsers import NerfstudioScenesDataParserConfig

    found, _ = discover_dataparsers()
    assert isinstance(found["nerfstudio-scenes"], NerfstudioScenesDataParserConfig)


@pytest.mark.slow
def test_ns_train_and_ns_eval_run_on_a_folder_of_captures(procedural, tmp_path):
    cmd = train_cmd(
        "splatdiff-var-small",
        procedural[1],
        tmp_path / "out",
        tmp_path / "cache",
        2,
        "--pipeline.datamanager.scene-kind",
        "None",
    )
    at = cmd.index("co3d-data")
    cmd[at:] = ["nerfstudio-scenes", "--data", procedural[1], "--cache-dir", tmp_path / "cache"]
    out = run_cli(cmd)
    assert "input images/frame000001.jpg, 4 targets" in out.stdout  # the one test scene's evaluation frames
    (config,) = (tmp_path / "out").glob("*/splatdiff-var-small/*/config.yml")
    run_cli([BIN / "ns-eval", "--load-config", config, "--output-path", tmp_path / "eval.json"])
    res = json.loads((tmp_path / "eval.json").read_text())["results"]
    assert res["num_scenes"] == 1 and np.isfinite(res["psnr"])


# -- the real instant-ngp fox capture --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fox(tmp_path_factory):
    """The fox capture read once at 256 px: (capture folder, scene record, skip report)."""
    from conftest import REAL_DATA

    capture = REAL_DATA / FOX
    if not (capture / "transforms.json").is_file():
        pytest.skip(f"the instant-ngp fox capture is not at {capture} (set SPLATDIFF_REAL_DATA to its folder)")
    cache = tmp_path_factory.mktemp("fox_cache")
    (rec,), report = load_nerfstudio_split(capture, "test", NerfstudioScenesSettings(resolution=FOX_RES), cache)
    return capture, rec, report


def test_fox_capture_skips_and_lists_every_frame_whose_image_is_missing(fox):
    capture, rec, report = fox
    listed = [f["file_path"] for f in json.loads((capture / "transforms.json").read_text())["frames"]]
    missing = sorted(p for p in listed if not (capture / p).is_file())
    assert missing, "the fox capture lists frames whose images are missing upstream"
    assert rec.num_frames == len(listed) - len(missing) and rec.resolution == FOX_RES
    assert all(r.startswith("image file ") and r.endswith(" is missing") for _, _, r in report.items)
    named = sorted(Path(r[len("image file ") : -len(" is missing")]) for _, _, r in report.items)
    assert named == [capture.resolve() / p for p in missing]
    assert rec.meta["frame_files"][0] == sorted(set(listed) - set(missing))[0]


def test_fox_frames_agree_with_the_epipolar_geometry_of_their_cameras(fox):
    """SIFT matches between two preprocessed fox frames lie on the epipolar lines of their preprocessed cameras
    (the OpenGL -> OpenCV conversion, undistortion, crop and focal rescale); the cameras left in OpenGL's convention
    put them far off."""
    cv2 = pytest.importorskip("cv2")
    _, rec, _ = fox
    a, b = 0, 10
    images = rec.load([a, b])["images"].numpy()
    sift = cv2.SIFT_create()
    (ka, da), (kb, db) = (sift.detectAndCompute(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), None) for im in images)
    good = [m for m, n in cv2.BFMatcher().knnMatch(da, db, k=2) if m.distance < 0.7 * n.distance]
    assert len(good) >= 20
    xa = np.array([ka[m.queryIdx].pt for m in good]) + 0.5  # OpenCV's pixel centres are at whole numbers
    xb = np.array([kb[m.trainIdx].pt for m in good]) + 0.5

    def distances(c2w: torch.Tensor) -> np.ndarray:
        rel = (invert_rigid(c2w[b].double()) @ c2w[a].double()).numpy()
        t = rel[:3, 3]
        cross = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
        F = np.linalg.inv(rec.K[b].double().numpy()).T @ cross @ rel[:3, :3] @ np.linalg.inv(rec.K[a].double().numpy())
        lines = np.c_[xa, np.ones(len(xa))] @ F.T
        return np.abs((lines * np.c_[xb, np.ones(len(xb))]).sum(1)) / np.linalg.norm(lines[:, :2], axis=1)

    d = distances(rec.c2w)
    assert np.median(d) < 0.75 and (d < 2.0).mean() > 0.8, (np.median(d), (d < 2.0).mean())
    assert np.median(distances(opencv_c2w_to_opengl_c2w(rec.c2w))) > 5.0


def test_fox_frame_as_a_sample_input_is_the_preprocessed_frame(fox):
    capture, rec, _ = fox
    photo = capture_photo(capture, 0, FOX_RES)
    assert photo.original_size == (1080, 1920) and photo.mask is None
    assert torch.allclose(photo.K, rec.K[0])
    assert (photo.image * 255 - rec.load([0])["images"][0].float()).abs().max() < 1.0
