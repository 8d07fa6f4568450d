"""The procedural data through the real CO3D dataparser: its OpenGL cameras render a Gaussian placed at the
object centre onto the object in every image."""

from __future__ import annotations

import numpy as np
import torch

from nerfstudio_splatdiff.data.dataparsers import Co3dDataParserConfig
from nerfstudio_splatdiff.data.procedural.generate import generate_dataset
from nerfstudio_splatdiff.splats import Gaussians, render_gaussians
from nerfstudio_splatdiff.splats.cameras import invert_rigid, opengl_c2w_to_opencv_c2w


def test_known_gaussian_at_object_centre_lands_on_the_object(tmp_path):
    generate_dataset(tmp_path / "proc", scenes=3, views=6, resolution=48, seed=7)
    parser = Co3dDataParserConfig(data=tmp_path / "proc", resolution=32, cache_dir=tmp_path / "cache").setup()
    outputs = parser.get_dataparser_outputs("train")
    scenes = outputs.metadata["scenes"]
    assert len(scenes) >= 1 and len(outputs.metadata["skip_report"]) == 0
    cams = outputs.cameras  # nerfstudio Cameras: OpenGL camera-to-world
    hits = 0
    for i, (s, f) in enumerate(outputs.metadata["frustum_frames"]):
        rec = scenes[s]
        centre = (torch.tensor(rec.meta["object_center"]) - torch.tensor(rec.meta["world_centre"])) * rec.meta[
            "world_scale"
        ]
        c2w_gl = torch.cat([cams.camera_to_worlds[i], torch.tensor([[0.0, 0, 0, 1]])])
        w2c = invert_rigid(opengl_c2w_to_opencv_c2w(c2w_gl))
        K = torch.tensor(
            [[float(cams.fx[i]), 0, float(cams.cx[i])], [0, float(cams.fy[i]), float(cams.cy[i])], [0, 0, 1.0]]
        )
        g = Gaussians(
            centre[None, None].float(),
            torch.tensor([[[1.0, 0, 0, 0]]]),
            torch.full((1, 1, 3), 0.05),
            torch.full((1, 1), 0.99),
            torch.ones(1, 1, 3),
        )
        out = render_gaussians(g, w2c[None, None], K[None, None], 32, 32)
        alpha = out.alpha[0, 0, ..., 0]
        assert alpha.max() > 0.5, f"the Gaussian is not in view {i}"
        y, x = np.unravel_index(int(alpha.argmax()), alpha.shape)
        mask = rec.load([f])["masks"][0].float() / 255
        hits += int(mask[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].max() > 0.5)
    assert hits == len(outputs.metadata["frustum_frames"])
