"""RealEstate10K: the original camera txt files and pixelSplat-style chunks built from real demo scenes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from nerfstudio_splatdiff.data.re10k import Re10kSettings, camera_from_18, load_re10k_split, read_pose_txt
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.cameras import check_finite_camera, invert_rigid


def test_real_pose_txt_files_parse_to_valid_smooth_trajectories(real_data):
    files = sorted((real_data / "cameractrl_re10k_pose_txt").glob("*.txt"))
    assert len(files) == 10
    for path in files:
        url, stamps, cams = read_pose_txt(path)
        assert url.startswith("http") and cams.shape == (len(stamps), 18) and len(stamps) >= 2
        assert (np.diff(stamps) > 0).all()
        assert np.allclose(cams[:, 4:6], 0)  # the two zeros
        poses = [camera_from_18(torch.from_numpy(c), 640, 360) for c in cams]
        for w2c, K in poses:
            check_finite_camera(w2c, K, str(path))  # orthonormal rotation, positive focal
            assert abs(float(K[0, 2]) - 320) < 1 and abs(float(K[1, 2]) - 180) < 1
        centres = torch.stack([invert_rigid(w2c)[:3, 3] for w2c, _ in poses])
        steps = (centres[1:] - centres[:-1]).norm(dim=-1)
        assert steps.max() < 0.5 * (centres.max(0).values - centres.min(0).values).norm() + 1e-6


def _demo_chunk(scene_dir):
    """A pixelSplat chunk entry built from a GlobalSplat demo scene (256x256 PNGs, pixel K, OpenCV c2w)."""
    info = json.loads((scene_dir / "cameras.json").read_text())
    images, cams, c2ws, fxs = [], [], [], []
    for view in info["views"]:
        buf = io.BytesIO()
        Image.open(scene_dir / view["image"]).convert("RGB").save(buf, format="JPEG", quality=95)
        images.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
        K = np.array(view["intrinsic"])
        c2w = np.array(view["c2w"])
        w2c = np.linalg.inv(c2w)
        cams.append(
            np.concatenate([[K[0, 0] / 256, K[1, 1] / 256, K[0, 2] / 256, K[1, 2] / 256, 0, 0], w2c[:3].reshape(-1)])
        )
        c2ws.append(c2w)
        fxs.append(K[0, 0])
    n = len(images)
    entry = {
        "url": "",
        "timestamps": torch.arange(n) * 33333,
        "cameras": torch.tensor(np.stack(cams), dtype=torch.float32),
        "images": images,
        "key": scene_dir.name,
    }
    return entry, (np.stack(c2ws), np.array(fxs))


def test_chunk_from_real_demo_scenes_round_trips(real_data, tmp_path):
    scene_dirs = sorted((real_data / "globalsplat_re10k_demo" / "scenes").iterdir())
    assert len(scene_dirs) == 3
    entries, truth = zip(*[_demo_chunk(d) for d in scene_dirs])
    (tmp_path / "re10k" / "test").mkdir(parents=True)
    torch.save(list(entries), tmp_path / "re10k" / "test" / "000000.torch")
    good = (tmp_path / "re10k" / "test" / "000000.torch").read_bytes()
    (tmp_path / "re10k" / "test" / "000001.torch").write_bytes(good[: len(good) // 3])  # truncated download
    (tmp_path / "re10k" / "test" / "index.json").write_text(json.dumps({e["key"]: "000000.torch" for e in entries}))
    scenes, report = load_re10k_split(tmp_path / "re10k", "test", Re10kSettings(resolution=64), tmp_path / "cache")
    assert [s.name for s in scenes] == [d.name for d in scene_dirs]
    assert len(report) == 1 and report.items[0][0] == "000001.torch" and "truncated" in report.items[0][2]
    for rec, (c2w, fx) in zip(scenes, truth):
        assert rec.num_frames == len(c2w)
        assert torch.allclose(rec.c2w, torch.from_numpy(c2w).float(), atol=1e-4)
        assert torch.allclose(rec.K[:, 0, 0], torch.from_numpy(fx * 64 / 256).float(), rtol=1e-4)
        assert rec.load([0])["images"].shape == (1, 64, 64, 3)
        assert rec.meta["depth_range"] == [1.0, 100.0]
    # The cameras agree: points 2 units in front of view 0 are seen by view 1 with positive depth.
    rec = scenes[0]
    pts = (rec.c2w[0] @ torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.3, 0.2, 2.0, 1.0]]).T).T
    cam1 = (invert_rigid(rec.c2w[1]) @ pts.T).T
    uv = cam1[:, :2] / cam1[:, 2:3] * rec.K[1, 0, 0] + 32
    assert (cam1[:, 2] > 0).all() and ((uv > 0) & (uv < 64)).all()


def test_txt_files_with_extracted_frames(real_data, tmp_path):
    src = sorted((real_data / "cameractrl_re10k_pose_txt").glob("*.txt"))[:2]
    root = tmp_path / "re10k"
    (root / "train").mkdir(parents=True)
    for i, path in enumerate(src):
        (root / "train" / path.name).write_text(path.read_text())
        _, stamps, _ = read_pose_txt(path)
        frames = root / "frames" / "train" / path.stem
        frames.mkdir(parents=True)
        for j, t in enumerate(stamps[:5]):  # only some frames extracted: the rest are reported missing
            Image.new("RGB", (640, 360), (40 * i + 20, 10 * j + 30, 90)).save(frames / f"{t}.png")
    scenes, report = load_re10k_split(root, "train", Re10kSettings(resolution=32), tmp_path / "cache")
    assert len(scenes) == 2 and all(s.num_frames == 5 for s in scenes)
    assert all("missing" in reason for _, _, reason in report.items) and len(report) > 0
    # A centre crop of a 640x360 frame: square of side 360, focal rescaled by 32/360.
    _, _, cams = read_pose_txt(src[0])
    assert torch.allclose(
        scenes[0].K[0, 0, 0], torch.tensor(cams[0, 0] * 640 * 32 / 360, dtype=torch.float32), rtol=1e-4
    )


def test_re10k_bad_input(tmp_path):
    with pytest.raises(SplatdiffError, match="No 'train' folder"):
        load_re10k_split(tmp_path, "train", Re10kSettings(), tmp_path / "c")
    (tmp_path / "train").mkdir()
    with pytest.raises(SplatdiffError, match="neither .torch chunks nor camera .txt"):
        load_re10k_split(tmp_path, "train", Re10kSettings(), tmp_path / "c")
    (tmp_path / "train" / "bad.txt").write_text("http://x\n1 2 3\n")
    with pytest.raises(SplatdiffError, match="line 2: expected 19 numbers"):
        load_re10k_split(tmp_path, "train", Re10kSettings(), tmp_path / "c")
