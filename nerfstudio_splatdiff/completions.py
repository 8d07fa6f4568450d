"""Held-out proving-ground inputs with every correct completion known: the data, the mode judges, the figure.

`splatdiff-make-procedural --kind object --force-mode k` writes the same scenes (fronts, cameras) with every hidden
side in mode k. Loading the K copies of a held-out scene gives the input and all K true completions; a rendered
hidden side is then assigned to the completion it matches, or to none: by colour on the colour proving ground
(`ModeJudge`), by silhouette and depth on the geometry proving ground (`--modes shape`, `ShapeJudge`). The
benchmark (benchmarks/proving_ground.py) and the demo (`splatdiff-demo`) both build on this.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_splatdiff.data.co3d import Co3dSettings, load_co3d_split
from nerfstudio_splatdiff.data.co3d_format import read_jgz
from nerfstudio_splatdiff.data.multiscene import ViewOptions, scene_views
from nerfstudio_splatdiff.data.procedural.generate import BACKGROUND, drawn_mode, generate_dataset, scene_index
from nerfstudio_splatdiff.data.scene import SceneRecord

MARGIN_DB = 1.0
MEAN_MARGIN_DB = 0.5
MODE_RULE = (
    "back view = the evaluated frame whose viewing direction is most opposite to the input's; region = the union of "
    "the K forced-mode ground-truth object masks there; a render is assigned the mode k whose ground truth it is "
    f"closest to in PSNR over that region, provided that it is closer to k than to any other mode by at least "
    f"{MARGIN_DB} dB and not closer to the mean of the K ground truths than to k (an average of the modes, grey fog, "
    "is about as far from every mode and closest to their mean); otherwise 'none' (-1). `against_mean` (the rule "
    f"until 2026-11-26, kept as a stricter second opinion) asks instead that the PSNR to k beat the PSNR to the mean "
    f"by {MEAN_MARGIN_DB} dB, which also calls blurred renders of the right colour and rough shape 'none': a blur is "
    "close to the mean of the modes too"
)
EVAL_FRAMES = [0] + list(range(2, 24, 3))
"""The input (frame 0) and 8 targets spread around a 24-view orbit."""
SHAPE_MARGIN = 0.3
SHAPE_DEPTH_TOL = 0.1
SHAPE_RULE = (
    "judged views = the evaluated frame most opposite to the input (the back) and, on either side, the frame most "
    "nearly perpendicular to it; a render's score against mode k = the mean over the judged views of a depth-checked "
    "silhouette IoU: |R & G_k & (|depth_R - depth_k| < "
    f"{SHAPE_DEPTH_TOL} scene units)| / |R | G_k| with R = rendered opacity > 0.5 and G_k mode k's true object mask "
    "(the camera distance is 2 units); the render is assigned the best-scoring mode k if its lead over the second "
    f"best mode j is at least {SHAPE_MARGIN} of the gap 1 - score(truth k against truth j) that separates the two "
    "truths themselves (a render halfway between two shapes, or a blob, is 'none': -1)"
)
DEMO_DATA = Path("data/demo")
"""Where splatdiff-demo (`make demo`) writes its scenes by default: the forced-mode copies under mode<k>/ and the
scenes with their true hidden sides as a dataset of their own (`write_true_modes`), which the shipped checkpoints'
config.yml records, so that `splatdiff-viewer --load-config checkpoints/demo/.../config.yml` opens them."""
DEMO_DATA_BY_MODES = {"colour": DEMO_DATA, "shape": Path("data/demo-shape")}
"""The demo's scenes per proving ground (`splatdiff-demo --modes`); the shipped geometry checkpoints record
data/demo-shape."""


def region_psnr(pred: Tensor, gt: Tensor, region: Tensor) -> float:
    """PSNR over the pixels of `region` [H, W, 1] (bool) of two images [H, W, 3]."""
    m = region.expand_as(pred).to(pred.dtype)
    mse = float(((pred - gt) ** 2 * m).sum() / m.sum().clamp(min=1))
    return -10 * math.log10(max(mse, 1e-10))


class ModeJudge:
    """Assigns a rendered back view to one of the K true completions, or to none (-1): see MODE_RULE."""

    def __init__(self, truths: list[Float[Tensor, "H W 3"]], masks: list[Float[Tensor, "H W 1"]]) -> None:
        self.truths = truths
        self.region = torch.stack(masks).amax(0) > 0.5
        self.mean = torch.stack(truths).mean(0)

    def __call__(self, render: Float[Tensor, "H W 3"]) -> int:
        to_modes = sorted(((region_psnr(render, g, self.region), k) for k, g in enumerate(self.truths)), reverse=True)
        (best, k), (second, _) = to_modes[0], to_modes[1]
        return k if best >= second + MARGIN_DB and best >= region_psnr(render, self.mean, self.region) else -1

    def against_mean(self, render: Float[Tensor, "H W 3"]) -> int:
        """The stricter rule (see MODE_RULE): the closest mode, if it beats the mean of the modes."""
        to_modes = [region_psnr(render, g, self.region) for g in self.truths]
        k = int(np.argmax(to_modes))
        return k if to_modes[k] >= region_psnr(render, self.mean, self.region) + MEAN_MARGIN_DB else -1


def _sides(c2w: Float[Tensor, "F 4 4"]) -> tuple[int, int]:
    """The frames most nearly perpendicular to frame 0's viewing direction, one on either side of it."""
    fwd = c2w[:, :3, 2]
    side = torch.cross(fwd[0], c2w[0, :3, 1], dim=0)  # frame 0's x axis (right) up to sign
    cos = (fwd @ fwd[0]).abs()
    lr = fwd @ side
    left = min((i for i in range(1, len(fwd)) if lr[i] < 0), key=lambda i: float(cos[i]))
    right = min((i for i in range(1, len(fwd)) if lr[i] >= 0), key=lambda i: float(cos[i]))
    return left, right


def shape_score(
    alpha: Float[Tensor, "V H W 1"],
    depth: Float[Tensor, "V H W 1"],
    mask: Float[Tensor, "V H W 1"],
    true_depth: Float[Tensor, "V H W 1"],
) -> float:
    """Depth-checked silhouette IoU of a render (opacity, expected depth) against one truth (mask, depth), averaged
    over the views given: see SHAPE_RULE."""
    r, g = alpha > 0.5, mask > 0.5
    agree = r & g & ((depth - true_depth).abs() < SHAPE_DEPTH_TOL)
    union = (r | g).flatten(1).sum(1).clamp(min=1)
    return float((agree.flatten(1).sum(1) / union).mean())


def silhouette_iou(a: Float[Tensor, "V H W 1"], b: Float[Tensor, "V H W 1"]) -> float:
    """Plain silhouette IoU of two sets of masks, averaged over the views."""
    x, y = a > 0.5, b > 0.5
    return float(((x & y).flatten(1).sum(1) / (x | y).flatten(1).sum(1).clamp(min=1)).mean())


class ShapeJudge:
    """Assigns a rendered scene to one of the K true hidden-side shapes, or to none (-1): see SHAPE_RULE."""

    def __init__(
        self, views: list[int], masks: list[Float[Tensor, "V H W 1"]], depths: list[Float[Tensor, "V H W 1"]]
    ) -> None:
        self.views = views
        self.masks = [m[views] for m in masks]
        self.depths = [d[views] for d in depths]
        K = len(masks)
        self.between = [
            [shape_score(self.masks[a], self.depths[a], self.masks[b], self.depths[b]) for b in range(K)]
            for a in range(K)
        ]
        """Depth-checked score of truth a against truth b: how alike the true shapes look from the judged views."""
        self.silhouette_iou_between = [
            silhouette_iou(self.masks[a], self.masks[b]) for a in range(K) for b in range(a + 1, K)
        ]
        """Plain silhouette IoU of each pair of truths: how separable the modes are by silhouette alone."""

    def scores(self, alpha: Float[Tensor, "F H W 1"], depth: Float[Tensor, "F H W 1"]) -> list[float]:
        """The render's score against each mode (all evaluated frames given; the judged ones are picked here)."""
        a, d = alpha[self.views], depth[self.views]
        return [shape_score(a, d, m, t) for m, t in zip(self.masks, self.depths)]

    def __call__(self, alpha: Float[Tensor, "F H W 1"], depth: Float[Tensor, "F H W 1"]) -> int:
        s = self.scores(alpha, depth)
        order = sorted(range(len(s)), key=lambda k: -s[k])
        k, j = order[0], order[1]
        return k if s[k] - s[j] >= SHAPE_MARGIN * (1 - self.between[k][j]) else -1


@dataclass
class HeldOutInput:
    """One held-out input with all K completions: batches [1, F, ...] (frame 0 first) per forced mode."""

    name: str
    true_mode: int
    batches: list[dict[str, Tensor]]
    back: int
    """Index (into the batch's frames) of the view facing the input: where the modes are judged."""
    judge: ModeJudge
    """The colour judge (on the back view's colours): the colour proving ground's rule."""
    shape_judge: ShapeJudge
    """The geometry judge (silhouettes and depths of the back and side views): the geometry proving ground's rule."""
    mode_kind: str = "colour"
    """What the modes of this input differ in (`colour` or `shape`): which judge calls its modes."""

    @property
    def figure_view(self) -> int:
        """The frame a figure shows each completion from: the back view for colours, the first side view the shape
        judge uses for shapes (a horn or block shows as a silhouette beside the body there)."""
        return self.shape_judge.views[1] if self.mode_kind == "shape" else self.back

    def mode_of(self, render: dict[str, Tensor]) -> int:
        """The mode a rendered scene shows (rgb, accumulation, depth of every evaluated frame [F, H, W, C]), judged
        by the rule of this input's proving ground; -1 for none."""
        if self.mode_kind == "shape":
            return self.shape_judge(render["accumulation"], render["depth"])
        return self.judge(render["rgb"][self.back])

    @property
    def batch(self) -> dict[str, Tensor]:
        """The input with its true hidden side (the scene as the unforced data has it)."""
        return self.batches[self.true_mode]


def _write_scenes(
    out: Path,
    scenes: int,
    seed: int,
    num_modes: int,
    workers: int,
    force_mode: Optional[int],
    mode_kind: str = "colour",
) -> Path:
    """`scenes` proving-ground scenes (24 views, 128 px) at out/procedural, reused when already complete and made with
    the same seed and mode kind."""
    cat = Path(out) / "procedural"
    if not _complete(cat, scenes, seed, mode_kind):
        generate_dataset(
            out,
            scenes,
            24,
            128,
            seed,
            workers=workers,
            num_modes=num_modes,
            kind="object",
            force_mode=force_mode,
            overwrite=True,
            mode_kind=mode_kind,
        )
    return Path(out)


def _complete(cat: Path, scenes: int, seed: int, mode_kind: str) -> bool:
    """Whether cat holds a finished dataset of `scenes` scenes from this seed and mode kind."""
    if not (cat / "frame_annotations.jgz").is_file() or len(list(cat.glob("proc_*"))) != scenes:
        return False
    meta = read_jgz(cat / "sequence_annotations.jgz")[0]["meta"]
    return meta.get("seed") == seed and meta.get("mode_kind", "colour") == mode_kind


def write_forced_modes(
    root: Path, scenes: int, seed: int, num_modes: int = 3, workers: int = 2, mode_kind: str = "colour"
) -> list[Path]:
    """The same `scenes` proving-ground scenes once per forced hidden-side mode, under root/mode<k> (reused when
    already complete)."""
    return [
        _write_scenes(Path(root) / f"mode{k}", scenes, seed, num_modes, workers, k, mode_kind) for k in range(num_modes)
    ]


def write_true_modes(
    root: Path, scenes: int, seed: int, num_modes: int = 3, workers: int = 2, mode_kind: str = "colour"
) -> Path:
    """The same scenes with the hidden side each drew (the input's true completion), as one dataset at
    root/procedural: a CO3D-format root a run's config can record and the viewer can open (its evaluation split is
    the last of at least 2 scenes). Reused when already complete; returns `root`."""
    return _write_scenes(Path(root), max(scenes, 2), seed, num_modes, workers, None, mode_kind)


def _all_scenes(root: Path, resolution: int, cache: Optional[Path]) -> list[SceneRecord]:
    """Every scene of a procedural dataset, whatever its split, sorted by name."""
    lists = json.loads((Path(root) / "procedural" / "set_lists" / "set_lists_fewview_dev.json").read_text())
    recs: list[SceneRecord] = []
    for split in (s for s in ("train", "val", "test") if lists.get(s)):
        recs += load_co3d_split(
            root, "procedural", "fewview_dev", split, Co3dSettings(resolution=resolution), cache_root=cache
        )[0]
    return sorted(recs, key=lambda r: r.name)


def held_out_inputs(
    root: Path,
    scenes: int,
    seed: int,
    resolution: int,
    num_modes: int = 3,
    cache: Optional[Path] = None,
    frames: Optional[list[int]] = None,
    mode_kind: str = "colour",
    depth_range: tuple[float, float] = (-1.0, 1.0),
) -> list[HeldOutInput]:
    """Write (or reuse) the forced-mode copies and load every scene as a `HeldOutInput`, on white, with the splatter
    depth range the evaluated runs were trained with (`runs.run_depth_range`; the data manager's default here)."""
    frames = frames or EVAL_FRAMES
    roots = write_forced_modes(root, scenes, seed, num_modes, mode_kind=mode_kind)
    per_mode = [_all_scenes(r, resolution, cache) for r in roots]
    options = ViewOptions(background_color=tuple(BACKGROUND.tolist()), with_depths=True, depth_range=depth_range)
    out = []
    for i, rec in enumerate(per_mode[0]):
        batches = [
            {k: v[None] for k, v in scene_views(per_mode[k][i], frames, options).items()} for k in range(num_modes)
        ]
        fwd = batches[0]["c2w"][0, :, :3, 2]
        back = int(torch.argmin(fwd @ fwd[0]))
        judge = ModeJudge([b["images"][0, back] for b in batches], [b["masks"][0, back] for b in batches])
        shape_judge = ShapeJudge(
            [back, *_sides(batches[0]["c2w"][0])], [b["masks"][0] for b in batches], [b["depths"][0] for b in batches]
        )
        index = scene_index(rec.name)
        out.append(
            HeldOutInput(rec.name, drawn_mode(seed, index, num_modes), batches, back, judge, shape_judge, mode_kind)
        )
    return out


@torch.no_grad()
def completion_row(model, item: HeldOutInput, num_samples: int = 4, seed: int = 0) -> tuple[list[Tensor], list[int]]:
    """One figure row and the samples' modes: the input, the input view re-rendered by sample 1, the hidden side of
    `num_samples` samples (their one reconstruction, for a deterministic model), then the K true completions; the
    hidden side as seen from `item.figure_view`."""
    batch = item.batch
    g = model.generate(batch, num_samples, seed=seed)
    N = g.batch_size
    size = batch["images"].shape[-2]
    out = model.render_views(g, batch["c2w"].expand(N, -1, -1, -1), batch["K"].expand(N, -1, -1, -1), size)
    views = out["rgb"]
    v = item.figure_view
    row = [batch["images"][0, 0], views[0, 0]] + [views[n, v] for n in range(N)]
    row += [b["images"][0, v] for b in item.batches]
    return row, [item.mode_of({k: v[n] for k, v in out.items()}) for n in range(N)]
