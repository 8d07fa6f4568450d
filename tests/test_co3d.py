"""CO3D v2 parsing and Splatter Image preprocessing on a fixture built in the test."""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pytest
import torch
from co3d_fixture import SPHERE_RADIUS, write_co3d_fixture

from nerfstudio_splatdiff.data.co3d import Co3dSettings, load_co3d_split, preprocess_workers
from nerfstudio_splatdiff.data.co3d_format import read_depth_png, write_depth_png
from nerfstudio_splatdiff.data.dataparsers import Co3dDataParserConfig
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.cameras import invert_rigid, project_points


def load(root, tmp_path, split="train", workers=1, cache="cache", **kw):
    return load_co3d_split(
        root, None, "fewview_dev", split, Co3dSettings(**kw), cache_root=tmp_path / cache, workers=workers
    )


def test_depth_png_round_trip(tmp_path):
    d = np.random.default_rng(0).uniform(0.5, 20, (7, 9)).astype(np.float32)
    d[0, 0] = 0
    write_depth_png(tmp_path / "d.png", d, scale_adjustment=2.0)
    back = read_depth_png(tmp_path / "d.png", scale_adjustment=2.0)
    assert np.allclose(back, d, rtol=1e-3) and back[0, 0] == 0


def test_non_square_norm_image_bounds_crop_and_cameras(tmp_path):
    write_co3d_fixture(tmp_path / "co3d")
    scenes, report = load(tmp_path / "co3d", tmp_path, resolution=32)
    assert len(report) == 0
    assert [s.name for s in scenes] == ["seq_0"] and scenes[0].num_frames == 5
    rec = scenes[0]
    px = rec.load(list(range(5)), with_depths=True)
    assert px["images"].shape == (5, 32, 32, 3) and px["masks"].shape == (5, 32, 32)
    # Principal point is centred after the crop; the focal is rescaled by 32 / crop side.
    side = 2 * min(52.0, 96 - 52.0, 30.0, 64 - 30.0)
    assert torch.allclose(rec.K[:, 0, 2], torch.tensor(16.0)) and torch.allclose(
        rec.K[:, 0, 0], torch.tensor(70.0 * 32 / side)
    )
    # Object centre at the origin after normalisation; it projects onto the middle of the sphere's mask.
    w2c = invert_rigid(rec.c2w)
    uv, z = project_points(torch.zeros(5, 1, 3), w2c, rec.K)
    assert (z > 0).all()
    for i in range(5):
        m = px["masks"][i].float() / 255
        ys, xs = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
        centroid = torch.stack([(m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()])
        assert (centroid - uv[i, 0]).abs().max() < 0.75, (i, centroid, uv[i, 0])
        r, g = px["images"][i, int(uv[i, 0, 1]), int(uv[i, 0, 0])][:2].tolist()
        assert r > 150 and g < 100  # red sphere there
    # Depth is scaled with the world: the sphere's nearest point is (distance - radius) * scale away.
    scale = rec.meta["world_scale"]
    assert abs(rec.c2w[:, :3, 3].norm(dim=-1).mean() - 2.0) < 1e-4
    d = px["depths"][px["depths"] > 0]
    assert abs(float(d.min()) - (2.5 * np.sqrt(1 + 0.16) - SPHERE_RADIUS) * scale) < 0.05
    assert rec.meta["index"] == 0  # sequence meta carried through


def test_cache_is_reused_and_keyed_by_settings(tmp_path):
    write_co3d_fixture(tmp_path / "co3d")
    a, _ = load(tmp_path / "co3d", tmp_path, resolution=32)
    t0 = time.perf_counter()
    b, _ = load(tmp_path / "co3d", tmp_path, resolution=32)
    assert time.perf_counter() - t0 < 1.0
    assert a[0].folder == b[0].folder and torch.equal(a[0].c2w, b[0].c2w)
    c, _ = load(tmp_path / "co3d", tmp_path, resolution=24)
    assert c[0].folder != a[0].folder and c[0].load([0])["images"].shape[1] == 24
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_worker_processes_build_the_same_cache_and_report_as_one_process(tmp_path):
    cat = write_co3d_fixture(tmp_path / "co3d", sequences=4)
    (cat / "seq_1/images/frame000002.jpg").unlink()  # a skip found inside a worker must reach the report
    one, one_report = load(tmp_path / "co3d", tmp_path, resolution=32, workers=1, cache="one")
    two, two_report = load(tmp_path / "co3d", tmp_path, resolution=32, workers=2, cache="two")
    assert [s.name for s in two] == [s.name for s in one] == ["seq_0", "seq_1", "seq_2"]
    assert two_report.items == one_report.items and [i[:2] for i in one_report.items] == [("seq_1", 2)]
    for a, b in zip(one, two):
        assert a.frame_numbers == b.frame_numbers and a.meta == b.meta
        assert torch.equal(a.c2w, b.c2w) and torch.equal(a.K, b.K)
        frames = list(range(a.num_frames))
        pa, pb = a.load(frames, with_depths=True), b.load(frames, with_depths=True)
        assert all(torch.equal(pa[k], pb[k]) for k in ("images", "masks", "depths"))
        assert b.folder.parent == tmp_path / "two" / one[0].folder.parent.name


def test_worker_count_follows_cores_and_sequences_and_refuses_negatives():
    assert preprocess_workers(3, 2) == 2 and preprocess_workers(1, 100) == 1
    assert preprocess_workers(0, 10) == 1  # too few sequences to pay for a second process
    assert 1 <= preprocess_workers(0, 10_000) <= 8
    with pytest.raises(SplatdiffError, match="preprocess workers must be 0"):
        preprocess_workers(-1, 10)
    with pytest.raises(SplatdiffError, match="--preprocess-workers -2 cannot work"):  # when the flags are parsed
        Co3dDataParserConfig(preprocess_workers=-2)


def _edit_annotations(cat, fn):
    path = cat / "frame_annotations.jgz"
    with gzip.open(path, "rt") as f:
        anns = json.load(f)
    anns = fn(anns)
    with gzip.open(path, "wt") as f:
        json.dump(anns, f)


def test_bad_frames_are_skipped_and_named(tmp_path):
    cat = write_co3d_fixture(tmp_path / "co3d", frames=8)
    (cat / "seq_0/images/frame000002.jpg").unlink()  # missing
    (cat / "seq_0/images/frame000003.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # corrupt
    from PIL import Image

    Image.new("RGB", (96, 64)).save(cat / "seq_0/images/frame000004.jpg")  # all black
    Image.new("L", (96, 64)).save(cat / "seq_0/masks/frame000005.png")  # empty mask

    def nan_camera(anns):
        anns[5]["viewpoint"]["T"][0] = float("nan")
        return anns

    _edit_annotations(cat, nan_camera)
    scenes, report = load(tmp_path / "co3d", tmp_path, resolution=32)
    reasons = {frame: reason for _, frame, reason in report.items}
    assert set(reasons) == {2, 3, 4, 5, 6}
    assert "missing" in reasons[2] and "corrupt" in reasons[3] and "black" in reasons[4]
    assert "mask is empty" in reasons[5] and "NaN" in reasons[6]
    assert all(seq == "seq_0" for seq, _, _ in report.items)
    assert scenes[0].frame_numbers == [1, 7, 8]
    assert "seq_0 frame 2" in report.summary()


def test_unknown_intrinsics_format_fails_with_sequence_and_frame(tmp_path):
    cat = write_co3d_fixture(tmp_path / "co3d", sequences=3)

    def bad_format(anns):
        anns[1]["viewpoint"]["intrinsics_format"] = "screen"
        return anns

    _edit_annotations(cat, bad_format)
    for workers in (1, 2):  # the same one line whether a worker process or this one met it
        with pytest.raises(SplatdiffError, match=r"sequence seq_0 frame 2: unknown intrinsics_format 'screen'"):
            load(tmp_path / "co3d", tmp_path, resolution=32, workers=workers)


def test_missing_annotations_empty_split_and_wrong_category(tmp_path):
    cat = write_co3d_fixture(tmp_path / "co3d")
    with pytest.raises(SplatdiffError, match="The 'val' split .* is empty"):
        load(tmp_path / "co3d", tmp_path, split="val", resolution=32)
    with pytest.raises(SplatdiffError, match="Category 'hydrant' is not under"):
        load_co3d_split(tmp_path / "co3d", "hydrant", "fewview_dev", "train", Co3dSettings(), tmp_path / "c")
    with pytest.raises(SplatdiffError, match="available subsets: fewview_dev"):
        load_co3d_split(tmp_path / "co3d", "toy", "manyview_dev_0", "train", Co3dSettings(), tmp_path / "c")
    (cat / "frame_annotations.jgz").unlink()
    with pytest.raises(SplatdiffError, match="holds no CO3D category"):
        load(tmp_path / "co3d", tmp_path, resolution=32)
    (cat / "frame_annotations.jgz").write_bytes(b"not gzip")
    with pytest.raises(SplatdiffError, match="not a readable gzipped JSON"):
        load(tmp_path / "co3d", tmp_path, resolution=32)
