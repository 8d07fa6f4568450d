"""Procedural CO3D-format data: read back by an independent reader, checked for multi-view consistency,
determinism, the designed back-side ambiguity, and clear errors on bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerfstudio_splatdiff.data.procedural.generate import generate_dataset, mode_palette, sample_scene
from nerfstudio_splatdiff.data.procedural.raycast import render
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.scripts.make_procedural import MakeProcedural

SCENES, VIEWS, RES = 3, 6, 48


# ------------------------------------------------------------------ independent reader (json, gzip, PIL, numpy)
def read_jgz(path: Path):
    with gzip.open(path, "rt", encoding="utf8") as f:
        return json.load(f)


def p3d_ndc_to_opencv(vp: dict, H: int, W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch3D (X_cam = X_world @ R + T, +X left, +Y up) with ndc_isotropic intrinsics -> OpenCV R, t, K."""
    assert vp["intrinsics_format"] == "ndc_isotropic"
    R, T = np.array(vp["R"]), np.array(vp["T"])
    flip = np.diag([-1.0, -1.0, 1.0])
    s = min(H, W) / 2
    (fx, fy), (px, py) = np.array(vp["focal_length"]) * s, np.array(vp["principal_point"])
    K = np.array([[fx, 0, W / 2 - px * s], [0, fy, H / 2 - py * s], [0, 0, 1.0]])
    return flip @ R.T, flip @ T, K


def load_frame(root: Path, fr: dict) -> dict:
    H, W = fr["image"]["size"]
    raw = np.array(Image.open(root / fr["depth"]["path"]))
    assert raw.dtype == np.uint16 and raw.shape == (H, W)
    R, t, K = p3d_ndc_to_opencv(fr["viewpoint"], H, W)
    return {
        "rgb": np.array(Image.open(root / fr["image"]["path"])),
        "mask": np.array(Image.open(root / fr["mask"]["path"])),
        "depth": raw.view(np.float16).astype(np.float64) * fr["depth"]["scale_adjustment"],
        "depth_mask": np.array(Image.open(root / fr["depth"]["mask_path"])),
        "R": R,
        "t": t,
        "K": K,
        "H": H,
        "W": W,
    }


def reproject(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
    """Depth of view a unprojected (pixel centres) to world, projected into view b: (z in b, b's depth there).

    b's depth is interpolated bilinearly in 1 / depth between the four nearest pixel centres (exact on planes,
    so the ground seen at a grazing angle compares fairly); only where all four have valid depth and no depth
    edge runs between them (there the comparison says nothing).
    """
    v, u = np.nonzero(a["depth_mask"] > 0)
    z = a["depth"][v, u]
    x_cam = np.stack([(u + 0.5 - a["K"][0, 2]) / a["K"][0, 0] * z, (v + 0.5 - a["K"][1, 2]) / a["K"][1, 1] * z, z], -1)
    world = (x_cam - a["t"]) @ a["R"]  # R^T (x - t), row-wise
    cam = world @ b["R"].T + b["t"]
    cam = cam[cam[:, 2] > 1e-6]
    x = cam[:, 0] / cam[:, 2] * b["K"][0, 0] + b["K"][0, 2] - 0.5  # in units where pixel centres are integers
    y = cam[:, 1] / cam[:, 2] * b["K"][1, 1] + b["K"][1, 2] - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    inside = (x0 >= 0) & (x0 + 1 < b["W"]) & (y0 >= 0) & (y0 + 1 < b["H"])
    x, y, x0, y0, zb = x[inside], y[inside], x0[inside], y0[inside], cam[inside, 2]
    corners = [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)]
    valid = np.all([b["depth_mask"][c] > 0 for c in corners], axis=0)
    cd = np.stack([b["depth"][c] for c in corners])
    valid &= cd.max(0) < 1.1 * cd.min(0)  # no depth edge between the four: interpolation is meaningful
    fx, fy = x - x0, y - y0
    weights = [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]
    inv = sum(w * (1.0 / np.maximum(b["depth"][c], 1e-9)) for w, c in zip(weights, corners))
    return zb[valid], 1.0 / inv[valid]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("proc")
    generate_dataset(root, SCENES, VIEWS, RES, seed=0, workers=0, num_modes=3)
    return root


def test_annotations_and_files(dataset: Path):
    cat = dataset / "procedural"
    frames, seqs = read_jgz(cat / "frame_annotations.jgz"), read_jgz(cat / "sequence_annotations.jgz")
    assert len(frames) == SCENES * VIEWS and len(seqs) == SCENES
    for fr in frames:
        assert fr["image"]["path"].startswith("procedural/" + fr["sequence_name"] + "/images/")
        assert fr["image"]["path"].endswith(f"frame{fr['frame_number']:06d}.jpg")
        assert fr["image"]["size"] == [RES, RES] and fr["frame_number"] >= 1
        assert Image.open(dataset / fr["image"]["path"]).size == (RES, RES)
    lists = json.loads((cat / "set_lists" / "set_lists_fewview_dev.json").read_text())
    assert lists == json.loads((cat / "set_lists" / "set_lists_fewview_test.json").read_text())
    listed = [tuple(e[:2]) for split in ("train", "val", "test") for e in lists[split]]
    assert sorted(listed) == sorted((f["sequence_name"], f["frame_number"]) for f in frames)
    assert len(lists["test"]) >= VIEWS and len(lists["train"]) >= VIEWS
    split_seqs = {s: {e[0] for e in lists[s]} for s in lists}
    assert not (split_seqs["train"] & split_seqs["test"]) and not (split_seqs["val"] & split_seqs["test"])


def test_depths_agree_across_views(dataset: Path):
    """Depth of view i, unprojected and reprojected into view j, matches view j's depth where not occluded."""
    frames = read_jgz(dataset / "procedural" / "frame_annotations.jgz")
    by_seq: dict[str, list] = {}
    for fr in frames:
        by_seq.setdefault(fr["sequence_name"], []).append(fr)
    rel = []
    for seq_frames in by_seq.values():
        views = [load_frame(dataset, fr) for fr in sorted(seq_frames, key=lambda f: f["frame_number"])]
        for i, j in [(0, 1), (1, 0), (0, 3), (2, 4), (5, 1)]:
            z, d = reproject(views[i], views[j])
            visible = d > 0.95 * z  # a clearly nearer surface in view j occludes the point
            rel.append(np.abs(z[visible] - d[visible]) / d[visible])
    rel = np.concatenate(rel)
    assert len(rel) > 1000
    # exact geometry leaves float16 rounding only (~2e-4); a 1-pixel principal point or 3% focal slip fails these
    assert np.median(rel) < 0.002, np.median(rel)
    assert (rel < 0.005).mean() > 0.95, (rel < 0.005).mean()
    assert (rel < 0.02).mean() > 0.98, (rel < 0.02).mean()


def test_masks_depth_masks_and_modes(dataset: Path):
    cat = dataset / "procedural"
    frames = read_jgz(cat / "frame_annotations.jgz")
    for fr in frames:
        f = load_frame(dataset, fr)
        obj, valid = f["mask"] == 255, f["depth_mask"] == 255
        assert set(np.unique(f["mask"])) <= {0, 255} and set(np.unique(f["depth_mask"])) <= {0, 255}
        assert obj.any(), f"empty object mask in {fr['mask']['path']}"
        assert not (obj & ~valid).any(), "an object pixel has no valid depth"
        assert np.array_equal(valid, f["depth"] > 0)
        assert fr["mask"]["mass"] == int(obj.sum())
    for seq in read_jgz(cat / "sequence_annotations.jgz"):
        meta = seq["meta"]
        assert meta["num_modes"] == 3 and 0 <= meta["back_mode"] < 3
        assert abs(np.linalg.norm(meta["back_direction"]) - 1) < 1e-6 and abs(meta["back_direction"][2]) < 1e-9
        assert 0.3 < meta["object_radius"] < 1.5 and seq["video"]["length"] == VIEWS


def _image_bytes(cat: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cat)): p.read_bytes() for p in sorted(cat.glob("proc_*/images/*.jpg"))}


def test_deterministic_and_independent_of_workers(dataset: Path, tmp_path: Path):
    ref = _image_bytes(dataset / "procedural")
    again = _image_bytes(generate_dataset(tmp_path / "a", SCENES, VIEWS, RES, seed=0, workers=2))
    assert again == ref  # same seed, 2 spawn workers instead of in-process: identical files
    other = _image_bytes(generate_dataset(tmp_path / "b", 1, VIEWS, RES, seed=1, workers=0))
    assert all(other[k] != ref[k] for k in other)
    fewer = _image_bytes(generate_dataset(tmp_path / "c", 1, VIEWS, RES, seed=0, workers=0))
    assert all(fewer[k] == ref[k] for k in fewer)  # scene 0 does not depend on how many scenes there are


def _back_view(sc, res: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV w2c and K of a camera behind the object (along back_direction, 25 degrees up)."""
    el = np.radians(25.0)
    eye = sc.object_center + 2.8 * (np.cos(el) * sc.back_direction + np.array([0.0, 0.0, np.sin(el)]))
    z = sc.object_center - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, -R @ eye
    return w2c, sc.K


def test_back_side_is_ambiguous_by_design():
    palette = mode_palette(3)
    gaps = np.linalg.norm(palette[:, None] - palette[None], axis=-1)[~np.eye(3, dtype=bool)]
    assert palette.shape == (3, 3) and gaps.min() > 0.8  # distinct, saturated hues
    scenes = [sample_scene(7, i, views=2, resolution=32) for i in range(12)]
    modes = [sc.back_mode for sc in scenes]
    assert len(set(modes)) > 1
    right = 0
    for sc in scenes:
        w2c, K = _back_view(sc, 32)
        out = render(sc.scene, w2c, K, 32, 32)
        assert out.object_mask.any()
        mean = out.rgb[out.object_mask].mean(0)
        right += int(np.argmin(np.linalg.norm(palette - mean, axis=-1)) == sc.back_mode)
    assert right >= 10, f"back views show their mode's colour in only {right}/12 scenes"


def test_view_zero_does_not_reveal_the_mode():
    """Forcing each mode changes the back (colour and knob) but not one pixel of view 0."""
    for i in range(3):
        outs = [sample_scene(3, i, views=4, resolution=40, mode=k) for k in range(3)]
        v0 = [sc.render_view(0) for sc in outs]
        for o in v0[1:]:
            assert np.array_equal(o.rgb, v0[0].rgb) and np.array_equal(o.prim_id, v0[0].prim_id)
        backs = [render(sc.scene, *_back_view(sc, 40), 40, 40).rgb for sc in outs]
        assert not np.allclose(backs[0], backs[1]) and not np.allclose(backs[1], backs[2])


def test_bad_input_gives_clear_errors(dataset: Path, tmp_path: Path):
    with pytest.raises(SplatdiffError, match="already holds a dataset.*--overwrite"):
        generate_dataset(dataset, 1, 2, 16, seed=0)
    with pytest.raises(SplatdiffError, match="--scenes must be at least 1"):
        generate_dataset(tmp_path, 0, 2, 16, seed=0)
    with pytest.raises(SplatdiffError, match="--views must be at least 2"):
        generate_dataset(tmp_path, 1, 1, 16, seed=0)
    with pytest.raises(SplatdiffError, match="--resolution must be at least 8"):
        generate_dataset(tmp_path, 1, 2, 4, seed=0)
    assert not (tmp_path / "procedural").exists()  # nothing written on bad arguments
    cat = generate_dataset(tmp_path, 2, 2, 16, seed=0)
    cat = generate_dataset(tmp_path, 1, 2, 16, seed=0, overwrite=True)
    assert len(read_jgz(cat / "frame_annotations.jgz")) == 2
    assert not (cat / "proc_000001").exists()  # stale sequences of the replaced dataset are gone


def test_cli_flags():
    import tyro

    args = ["--output", "/x", "--scenes", "5", "--num-modes", "4", "--overwrite", "--preview"]
    cfg = tyro.cli(MakeProcedural, args=args)
    assert (cfg.scenes, cfg.views, cfg.resolution, cfg.workers, cfg.num_modes) == (5, 24, 128, 2, 4)
    assert cfg.overwrite and cfg.preview and cfg.category == "procedural" and cfg.seed == 0


# ------------------------------------------------------------------------------------------- the proving ground
@pytest.fixture(scope="module")
def object_modes(tmp_path_factory) -> list[Path]:
    """The same 2 proving-ground scenes written once per forced hidden-side mode."""
    root = tmp_path_factory.mktemp("modes")
    return [generate_dataset(root / f"mode{k}", 2, 8, RES, seed=5, kind="object", force_mode=k) for k in range(3)]


def test_force_mode_changes_only_the_hidden_side(object_modes: list[Path]):
    frames = [
        sorted(read_jgz(cat / "frame_annotations.jgz"), key=lambda f: (f["sequence_name"], f["frame_number"]))
        for cat in object_modes
    ]
    root = [cat.parent for cat in object_modes]
    for fa, fb, fc in zip(*frames):
        imgs = [np.array(Image.open(r / f["image"]["path"])).astype(float) for r, f in zip(root, (fa, fb, fc))]
        assert fa["viewpoint"] == fb["viewpoint"] == fc["viewpoint"]  # same cameras
        if fa["frame_number"] == 1:  # view 0: identical pixels whatever the hidden side
            assert np.array_equal(imgs[0], imgs[1]) and np.array_equal(imgs[1], imgs[2])
        elif fa["frame_number"] == 5:  # the view facing view 0 (views 45 degrees apart): every mode differs
            assert np.abs(imgs[0] - imgs[1]).mean() > 5 and np.abs(imgs[1] - imgs[2]).mean() > 5
    metas = [[s["meta"] for s in read_jgz(cat / "sequence_annotations.jgz")] for cat in object_modes]
    assert [m["back_mode"] for m in metas[2]] == [2, 2] and all(m["scene_kind"] == "object" for m in metas[0])


def test_object_scenes_stand_on_white_and_fill_a_quarter_to_two_fifths_of_the_input_view(object_modes: list[Path]):
    cat = object_modes[0]
    for fr in read_jgz(cat / "frame_annotations.jgz"):
        f = load_frame(cat.parent, fr)
        near = np.pad(f["mask"] > 0, 2)  # background 2+ pixels from the object: no JPEG ringing there
        near = np.any([np.roll(np.roll(near, dy, 0), dx, 1) for dy in range(-2, 3) for dx in range(-2, 3)], axis=0)
        background = ~near[2:-2, 2:-2]
        values = f["rgb"][background].astype(float)
        assert np.median(values) == 255 and values.mean() > 252, values.mean()  # plain white, up to JPEG ringing
        if fr["frame_number"] == 1:
            assert 0.2 <= (f["mask"] == 255).mean() <= 0.45, (f["mask"] == 255).mean()


def test_force_mode_out_of_range_and_unknown_kind_are_refused(tmp_path: Path, unchecked_annotations):
    with pytest.raises(SplatdiffError, match="--force-mode must be between 0 and 2"):
        generate_dataset(tmp_path, 1, 2, 16, seed=0, force_mode=3)
    with pytest.raises(SplatdiffError, match="--kind must be one of"):
        generate_dataset(tmp_path, 1, 2, 16, seed=0, kind="moon")
    assert not (tmp_path / "procedural").exists()


# ---------------------------------------------------------------------------------- the geometry proving ground
@pytest.fixture(scope="module")
def shape_modes(tmp_path_factory) -> list[Path]:
    """The same 2 geometry proving-ground scenes (`--modes shape`) written once per forced hidden-side shape."""
    root = tmp_path_factory.mktemp("shapes")
    return [
        generate_dataset(root / f"mode{k}", 2, 8, RES, seed=5, kind="object", force_mode=k, mode_kind="shape")
        for k in range(3)
    ]


def test_shape_modes_keep_the_input_view_and_change_the_silhouettes_seen_from_the_sides(shape_modes: list[Path]):
    frames = [
        sorted(read_jgz(cat / "frame_annotations.jgz"), key=lambda f: (f["sequence_name"], f["frame_number"]))
        for cat in shape_modes
    ]
    root = [cat.parent for cat in shape_modes]
    for per_mode in zip(*frames):
        loaded = [load_frame(r, f) for r, f in zip(root, per_mode)]
        if per_mode[0]["frame_number"] == 1:  # view 0: identical pixels and masks whatever the hidden shape
            assert all(np.array_equal(loaded[0]["rgb"], f["rgb"]) for f in loaded[1:])
        elif per_mode[0]["frame_number"] in (3, 7):  # the side views (8 views: 90 and 270 degrees from view 0)
            sil = [f["mask"] > 127 for f in loaded]
            for a, b in ((0, 1), (0, 2), (1, 2)):
                assert (sil[a] & sil[b]).sum() / (sil[a] | sil[b]).sum() < 0.97  # a horn or a block shows
    metas = [[s["meta"] for s in read_jgz(cat / "sequence_annotations.jgz")] for cat in shape_modes]
    assert all(m["mode_kind"] == "shape" and m["scene_kind"] == "object" for ms in metas for m in ms)


def test_shape_modes_differ_in_shape_only_the_body_texture_everywhere():
    for mode in range(3):
        sc = sample_scene(5, 0, 8, RES, 3, mode, kind="object", mode_kind="shape")
        body = sc.scene.primitives[0]
        assert sc.scene.back_side is None  # no hidden-side recolouring
        assert len(sc.scene.primitives) == len(sample_scene(5, 0, 8, RES, 3, 0, "object", "shape").scene.primitives) + (
            mode > 0
        )
        assert sc.scene.primitives[-1].texture is body.texture or mode == 0
    colour = [sample_scene(5, 0, 8, RES, 3, m, kind="object").scene.back_side.texture.color_a for m in range(3)]
    assert not np.allclose(colour[0], colour[1])  # the colour proving ground is unchanged: colours differ there


def test_shape_modes_need_object_scenes_and_a_known_mode_kind(tmp_path: Path, unchecked_annotations):
    with pytest.raises(SplatdiffError, match="--modes shape makes the geometry proving ground: pass --kind object"):
        generate_dataset(tmp_path, 1, 2, 16, seed=0, mode_kind="shape")
    with pytest.raises(SplatdiffError, match="--modes must be one of colour, shape"):
        generate_dataset(tmp_path, 1, 2, 16, seed=0, kind="object", mode_kind="texture")
    assert not (tmp_path / "procedural").exists()


def test_all_modes_writes_each_scene_once_per_mode_as_the_forced_datasets_do(shape_modes: list[Path], tmp_path: Path):
    cat = generate_dataset(tmp_path, 2, 8, RES, seed=5, kind="object", mode_kind="shape", all_modes=True)
    names = sorted(s["sequence_name"] for s in read_jgz(cat / "sequence_annotations.jgz"))
    assert names == [f"proc_00000{i}_m{k}" for i in range(2) for k in range(3)]
    for i in range(2):
        for k, forced in enumerate(shape_modes):
            for f in (1, 3, 5):  # the input view and views of the hidden side: the forced dataset's pixels
                ours = np.array(Image.open(cat / f"proc_00000{i}_m{k}" / "images" / f"frame{f:06d}.jpg"))
                theirs = np.array(Image.open(forced / f"proc_00000{i}" / "images" / f"frame{f:06d}.jpg"))
                assert np.array_equal(ours, theirs)
    metas = {s["sequence_name"]: s["meta"] for s in read_jgz(cat / "sequence_annotations.jgz")}
    assert [metas[f"proc_000001_m{k}"]["back_mode"] for k in range(3)] == [0, 1, 2]
    lists = json.loads((cat / "set_lists" / "set_lists_fewview_dev.json").read_text())
    split = {seq: name for name, frames in lists.items() for seq, *_ in frames}
    assert split["proc_000001_m0"] == split["proc_000001_m2"] == "test"  # a scene's copies share its split
    assert split["proc_000000_m1"] == "train"


def test_all_modes_and_force_mode_are_refused_together(tmp_path: Path, unchecked_annotations):
    with pytest.raises(SplatdiffError, match="--all-modes writes every mode of each scene"):
        generate_dataset(tmp_path, 1, 2, 16, seed=0, force_mode=1, all_modes=True)
    assert not (tmp_path / "procedural").exists()
