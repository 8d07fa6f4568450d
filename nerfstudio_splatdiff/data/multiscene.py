"""Multi-scene datasets: each item is ONE scene seen from a source view plus target views.

Training items (`SceneViewsDataset`): a random source frame and V random other frames (within a frame window for
video data); view 0 is the source, and the source is also rendered and supervised, as in Splatter Image. The
proving ground narrows this: the source within a few frames of frame 0 (the view that defines the hidden side) and
one target always on the hidden side (`source_window`, `hidden_target`).
Evaluation items (`EvalScenesDataset`): Splatter Image's protocol, frame 0 of a sequence is the input and every
other frame is a target. Poses are returned relative to the source camera (source camera-to-world = identity),
OpenCV convention, with pixel intrinsics; colour jitter is drawn once per scene and applied to all its views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from torch.utils.data import Dataset

from nerfstudio_splatdiff.splats.cameras import invert_rigid
from nerfstudio_splatdiff.data.scene import SceneRecord


@dataclass
class ViewOptions:
    """How scene items are assembled (set from the DataManager config)."""

    num_target_views: int = 3
    target_window: Optional[int] = None
    """Targets are drawn within this many frames of the source (None: anywhere in the sequence)."""
    depth_range: tuple[float, float] = (-1.0, 1.0)
    """Object scenes: splatter depths span the source camera's z-distance to the object centre plus this range."""
    background_color: Optional[tuple[float, float, float]] = None
    """Composite onto this colour with the foreground masks (None: keep the full images, as the paper trains)."""
    color_jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """Brightness, contrast, saturation, hue jitter (torchvision ColorJitter ranges); 0 disables each."""
    with_depths: bool = False
    source_window: Optional[int] = None
    """Draw the source within this many frames of frame 0, around the orbit (None: any frame)."""
    hidden_target: bool = False
    """The first target is always a view of the side hidden from frame 0 (see `hidden_side_frames`)."""


def depth_range(record: SceneRecord, src_c2w: Tensor, options: ViewOptions) -> tuple[float, float]:
    """Per-scene splatter depth range: absolute for room-scale data, else around the object centre (origin)."""
    if "depth_range" in record.meta:
        near, far = record.meta["depth_range"]
        return float(near), float(far)
    z = float((invert_rigid(src_c2w) @ torch.tensor([0.0, 0.0, 0.0, 1.0]))[2])
    near = max(z + options.depth_range[0], 0.1 * abs(z), 1e-2)
    return near, max(z + options.depth_range[1], near + 1e-2)


def _jitter(images: Tensor, amounts: tuple[float, float, float, float], generator: torch.Generator) -> Tensor:
    """One random colour jitter, the same for every view: images [V, H, W, 3] in [0, 1]."""
    from torchvision.transforms import functional as TF

    b, c, s, h = amounts
    x = images.permute(0, 3, 1, 2)

    def draw(lo: float, hi: float) -> float:
        return float(lo + (hi - lo) * torch.rand((), generator=generator))

    ops = []
    if b > 0:
        ops.append(lambda t, f=draw(1 - b, 1 + b): TF.adjust_brightness(t, f))
    if c > 0:
        ops.append(lambda t, f=draw(1 - c, 1 + c): TF.adjust_contrast(t, f))
    if s > 0:
        ops.append(lambda t, f=draw(1 - s, 1 + s): TF.adjust_saturation(t, f))
    if h > 0:
        ops.append(lambda t, f=draw(-h, h): TF.adjust_hue(t, f))
    for i in torch.randperm(len(ops), generator=generator).tolist():
        x = ops[i](x)
    return x.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def scene_views(
    record: SceneRecord, frames: Sequence[int], options: ViewOptions, generator: Optional[torch.Generator] = None
) -> dict[str, Tensor]:
    """Tensors for one scene seen from `frames` (frames[0] is the source)."""
    pix = record.load(list(frames), with_depths=options.with_depths)
    images = pix["images"].float() / 255.0  # [V,H,W,3]
    c2w_abs = record.c2w[list(frames)]
    src = c2w_abs[0]
    out: dict[str, Tensor] = {}
    if "masks" in pix:
        masks = pix["masks"].float()[..., None] / 255.0
        out["masks"] = masks
        if options.background_color is not None:
            bg = torch.tensor(options.background_color, dtype=images.dtype)
            images = images * masks + bg * (1 - masks)
    if generator is not None and any(a > 0 for a in options.color_jitter):
        images = _jitter(images, options.color_jitter, generator)
    near, far = depth_range(record, src, options)
    out.update(
        images=images,
        c2w=invert_rigid(src)[None] @ c2w_abs,  # relative to the source camera
        K=record.K[list(frames)],
        depth_near=torch.tensor(near),
        depth_far=torch.tensor(far),
        frame_indices=torch.tensor(list(frames)),
    )
    if "depths" in pix:
        out["depths"] = pix["depths"][..., None]
    return out


HIDDEN_SIDE_COS = -0.5
"""A frame looks at the hidden side when its viewing direction is within 60 degrees of opposite to frame 0's."""


def hidden_side_frames(c2w: Float[Tensor, "F 4 4"]) -> list[int]:
    """Frames whose viewing direction is within 60 degrees of opposite to frame 0's: they see its hidden side."""
    fwd = c2w[:, :3, 2]
    cos = (fwd * fwd[:1]).sum(-1) / (fwd.norm(dim=-1) * fwd[:1].norm(dim=-1)).clamp(min=1e-12)
    return [i for i in range(1, c2w.shape[0]) if float(cos[i]) < HIDDEN_SIDE_COS]


def _draw(candidates: list[int], k: int, generator: torch.Generator) -> list[int]:
    """k of the candidates, without repetition while there are enough of them."""
    if len(candidates) >= k:
        pick = torch.randperm(len(candidates), generator=generator)[:k]
    else:
        pick = torch.randint(len(candidates), (k,), generator=generator)
    return [candidates[int(i)] for i in pick]


def sample_frames(
    num_frames: int,
    num_targets: int,
    window: Optional[int],
    generator: torch.Generator,
    source_window: Optional[int] = None,
    hidden: Optional[Sequence[int]] = None,
) -> list[int]:
    """A source frame (any, or within `source_window` of frame 0 around the orbit), then `num_targets` other frames
    (within `window` of the source when given). With `hidden` (frames of the hidden side), the first target is one
    of them."""
    if source_window is None:
        src = int(torch.randint(num_frames, (), generator=generator))
    else:
        offset = int(torch.randint(2 * source_window + 1, (), generator=generator)) - source_window
        src = offset % num_frames
    lo, hi = (0, num_frames) if window is None else (max(0, src - window), min(num_frames, src + window + 1))
    others = [i for i in range(lo, hi) if i != src] or [src]
    first: list[int] = []
    if hidden and num_targets > 0:
        first = _draw([h for h in hidden if h != src] or list(hidden), 1, generator)
        others = [i for i in others if i != first[0]] or others
    return [src] + first + _draw(others, num_targets - len(first), generator)


class SceneViewsDataset(Dataset):
    """Training items: item i is scene i with freshly drawn views (use a sampler that draws scene indices)."""

    def __init__(self, scenes: list[SceneRecord], options: ViewOptions) -> None:
        self.scenes, self.options = scenes, options

    def __len__(self) -> int:
        return len(self.scenes)

    def draw_frames(self, index: int, generator: torch.Generator) -> list[int]:
        """Fresh views of scene `index`: the source first, then the targets (see `sample_frames`)."""
        rec = self.scenes[index]
        o = self.options
        hidden = hidden_side_frames(rec.c2w) if o.hidden_target else None
        return sample_frames(rec.num_frames, o.num_target_views, o.target_window, generator, o.source_window, hidden)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        # A per-draw generator seeded from torch's global RNG (which DataLoader seeds per worker).
        g = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        item = scene_views(self.scenes[index], self.draw_frames(index, g), self.options, g)
        item["scene_index"] = torch.tensor(index)
        return item


class EvalScenesDataset(Dataset):
    """Evaluation items in a fixed order: frame 0 is the input, all other frames are targets (no jitter)."""

    def __init__(self, scenes: list[SceneRecord], options: ViewOptions, max_targets: Optional[int] = None) -> None:
        self.scenes, self.options, self.max_targets = scenes, options, max_targets

    def __len__(self) -> int:
        return len(self.scenes)

    def frames(self, index: int) -> list[int]:
        n = self.scenes[index].num_frames
        frames = list(range(n))
        if self.max_targets is not None and n - 1 > self.max_targets:
            keep = torch.linspace(1, n - 1, self.max_targets).round().long().tolist()
            frames = [0] + keep
        return frames

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = scene_views(self.scenes[index], self.frames(index), self.options, None)
        item["scene_index"] = torch.tensor(index)
        return item
