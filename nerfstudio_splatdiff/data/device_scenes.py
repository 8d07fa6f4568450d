"""Training scenes resident on the training device: batches assembled there, with no workers and no image copies.

On a GPU a feed-forward step of the small presets takes ~0.1 s, less than a DataLoader worker needs to read,
decode and copy a batch, so training waits on its input. When every training frame fits, `DeviceScenes` loads the
scenes once (uint8 images and masks, cameras, the splatter depth range of each possible source frame) onto the
device; a batch is then a gather there. The views are drawn as `SceneViewsDataset` draws them (its
`draw_frames`), and the tensors equal `scene_views`' (tested), so the two paths train the same model.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from jaxtyping import Float, UInt8
from torch import Tensor

from nerfstudio_splatdiff.data.multiscene import ViewOptions, depth_range
from nerfstudio_splatdiff.data.scene import SceneRecord
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.cameras import invert_rigid


def resident_bytes(scenes: Sequence[SceneRecord]) -> int:
    """Device memory `DeviceScenes` takes for these scenes: uint8 images and masks, padded to the longest scene."""
    if not scenes:
        return 0
    frames = max(r.num_frames for r in scenes)
    per_frame = max(r.resolution for r in scenes) ** 2 * (3 + int(all(r.has_masks for r in scenes)))
    return len(scenes) * frames * per_frame


def why_not_resident(scenes: Sequence[SceneRecord], options: ViewOptions, max_bytes: float) -> Optional[str]:
    """Why these scenes cannot be kept on the device (None when they can)."""
    if any(a > 0 for a in options.color_jitter):
        return "colour jitter is drawn per scene on the host"
    if options.with_depths:
        return "depth maps are only loaded for evaluation"
    if len({r.resolution for r in scenes}) > 1:
        return "the scenes have different resolutions"
    need = resident_bytes(scenes)
    if need > max_bytes:
        return (
            f"the training frames need {need / 1e9:.2f} GB, more than the {max_bytes / 1e9:.2f} GB allowed by "
            "--pipeline.datamanager.device-scenes-max-gb"
        )
    return None


class DeviceScenes:
    """Every frame of `scenes` on `device`; `batch` assembles training items there (see module docstring)."""

    images: UInt8[Tensor, "S F H W 3"]
    masks: Optional[UInt8[Tensor, "S F H W"]]
    c2w: Float[Tensor, "S F 4 4"]
    K: Float[Tensor, "S F 3 3"]
    near_far: Float[Tensor, "S F 2"]
    """Splatter depth range when frame f is the source (as `multiscene.depth_range` computes it)."""

    def __init__(
        self, scenes: Sequence[SceneRecord], options: ViewOptions, device: Union[str, torch.device] = "cpu"
    ) -> None:
        reason = why_not_resident(scenes, options, float("inf"))
        if reason is not None:
            raise SplatdiffError(f"These scenes cannot be kept on the device: {reason}.")
        self.options = options
        self.num_frames = [r.num_frames for r in scenes]
        F, res = max(self.num_frames), scenes[0].resolution
        with_masks = all(r.has_masks for r in scenes)
        images = torch.zeros(len(scenes), F, res, res, 3, dtype=torch.uint8)
        masks = torch.zeros(len(scenes), F, res, res, dtype=torch.uint8) if with_masks else None
        c2w = torch.eye(4).repeat(len(scenes), F, 1, 1)
        K = torch.eye(3).repeat(len(scenes), F, 1, 1)
        near_far = torch.ones(len(scenes), F, 2)
        for s, rec in enumerate(scenes):
            n = rec.num_frames
            pix = rec.load(list(range(n)))
            images[s, :n] = pix["images"]
            if masks is not None:
                masks[s, :n] = pix["masks"]
            c2w[s, :n], K[s, :n] = rec.c2w.float(), rec.K.float()
            near_far[s, :n] = torch.tensor([depth_range(rec, rec.c2w[f], options) for f in range(n)])
        self.images, self.c2w, self.K = images.to(device), c2w.to(device), K.to(device)
        self.near_far = near_far.to(device)
        self.masks = masks.to(device) if masks is not None else None
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.num_frames)

    @property
    def nbytes(self) -> int:
        return self.images.nelement() + (self.masks.nelement() if self.masks is not None else 0)

    def batch(self, scene_indices: Sequence[int], frames: Sequence[Sequence[int]]) -> dict[str, Tensor]:
        """Scenes `scene_indices` seen from `frames` (one list per scene, frames[i][0] the source), as a batch
        [B, V, ...] on the device with `scene_views`' keys and values, plus `scene_index`."""
        for s, fs in zip(scene_indices, frames):
            if not 0 <= s < len(self) or not all(0 <= f < self.num_frames[s] for f in fs):
                raise SplatdiffError(f"Scene {s} has no frames {list(fs)}.")
        dev = self.device
        s_idx = torch.as_tensor(list(scene_indices), dtype=torch.long).to(dev, non_blocking=True)
        f_idx = torch.as_tensor([list(fs) for fs in frames], dtype=torch.long).to(dev, non_blocking=True)
        rows = s_idx[:, None]
        images = self.images[rows, f_idx].float() / 255.0  # [B, V, H, W, 3]
        out: dict[str, Tensor] = {}
        if self.masks is not None:
            masks = self.masks[rows, f_idx].float()[..., None] / 255.0
            out["masks"] = masks
            if self.options.background_color is not None:
                bg = torch.tensor(self.options.background_color, dtype=images.dtype, device=dev)
                images = images * masks + bg * (1 - masks)
        c2w_abs = self.c2w[rows, f_idx]
        near_far = self.near_far[s_idx, f_idx[:, 0]]
        out.update(
            images=images,
            c2w=invert_rigid(c2w_abs[:, :1]) @ c2w_abs,  # relative to each scene's source camera
            K=self.K[rows, f_idx],
            depth_near=near_far[:, 0],
            depth_far=near_far[:, 1],
            frame_indices=f_idx,
            scene_index=s_idx,
        )
        return out
