"""The mode judges of the proving grounds: which true completion a rendered hidden side shows (by colour, or by
silhouette and depth), or none."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nerfstudio_splatdiff.completions import (
    MARGIN_DB,
    SHAPE_DEPTH_TOL,
    ModeJudge,
    ShapeJudge,
    region_psnr,
    shape_score,
)


def three_modes(size: int = 32) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """White images with a red disc, a green square and a blue bar: three hidden sides differing in colour and shape."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    c = size / 2
    shapes = [
        ((xs - c) ** 2 + (ys - c) ** 2) < (size / 3) ** 2,
        ((xs - c).abs() < size / 4) & ((ys - c).abs() < size / 4),
        ((xs - c).abs() < size / 8) & ((ys - c).abs() < size / 2.5),
    ]
    truths, masks = [], []
    for k, m in enumerate(shapes):
        img = torch.ones(size, size, 3)
        colour = torch.full((3,), 0.1)
        colour[k] = 0.9
        img[m] = colour
        truths.append(img)
        masks.append(m[..., None].float())
    return truths, masks


def blur(img: torch.Tensor, k: int = 5) -> torch.Tensor:
    x = img.permute(2, 0, 1)[None]
    return F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, stride=1)[0].permute(1, 2, 0)


def test_each_true_completion_is_its_own_mode_even_blurred():
    truths, masks = three_modes()
    judge = ModeJudge(truths, masks)
    assert [judge(t) for t in truths] == [0, 1, 2]
    assert [judge(blur(t)) for t in truths] == [0, 1, 2]


def test_an_average_of_the_modes_is_none():
    truths, masks = three_modes()
    judge = ModeJudge(truths, masks)
    mean = torch.stack(truths).mean(0)
    assert judge(mean) == -1 and judge(blur(mean)) == -1 and judge.against_mean(mean) == -1
    grey = torch.where(torch.stack(masks).amax(0) > 0.5, torch.full_like(mean, 0.4), torch.ones_like(mean))
    assert judge(grey) == -1  # the grey fog of a model that averages the hidden sides


def test_a_render_halfway_between_two_modes_is_none_and_one_near_a_mode_is_that_mode():
    truths, masks = three_modes()
    judge = ModeJudge(truths, masks)
    half = 0.5 * truths[0] + 0.5 * truths[1]
    to = [region_psnr(half, t, judge.region) for t in truths]
    assert abs(to[0] - to[1]) < MARGIN_DB and judge(half) == -1
    assert judge(0.9 * truths[0] + 0.1 * truths[1]) == 0 and judge(0.1 * truths[0] + 0.9 * truths[2]) == 2


# ------------------------------------------------------------------------------------------ the geometry judge
def shape_truths(size: int = 32, views: int = 3) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Masks and depths [V, H, W, 1] of three shapes seen from `views` views: a disc, the disc with a long horn, the
    disc with a wide block (a body and what lies behind it), all at depth 2 except the block, nearer at 1.7."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    c = size / 2
    disc = ((xs - c) ** 2 + (ys - c) ** 2) < (size / 5) ** 2
    horn = disc | (((ys - c).abs() < size / 14) & (xs > c) & (xs < c + size / 2.3))
    block = disc | (((ys - c).abs() < size / 5) & (xs > c) & (xs < c + size / 3.5))
    masks, depths = [], []
    for k, m in enumerate((disc, horn, block)):
        d = torch.where(m & ~disc, torch.tensor(1.7 if k == 2 else 2.0), torch.where(disc, 2.0, 0.0))
        masks.append(m[None, ..., None].float().expand(views, -1, -1, -1))
        depths.append(d[None, ..., None].expand(views, -1, -1, -1))
    return masks, depths


def test_each_true_shape_is_its_own_mode_and_the_truths_are_separable():
    masks, depths = shape_truths()
    judge = ShapeJudge([0, 1, 2], masks, depths)
    assert [judge(m, d) for m, d in zip(masks, depths)] == [0, 1, 2]
    assert all(0.3 < iou < 0.9 for iou in judge.silhouette_iou_between)
    assert all(judge.between[k][k] == 1.0 for k in range(3))


def test_a_horn_cut_halfway_is_none_a_short_stub_no_horn_and_a_faint_horn_no_horn():
    masks, depths = shape_truths()
    judge = ShapeJudge([0, 1, 2], masks, depths)
    size = masks[0].shape[1]
    start, end = size / 2 + size / 5, size / 2 + size / 2.3  # where the horn leaves the disc, and its tip

    def cut_at(fraction: float) -> torch.Tensor:
        horn = masks[1].clone()
        horn[:, :, int(start + fraction * (end - start)) :] = masks[0][:, :, int(start + fraction * (end - start)) :]
        return horn

    assert judge(cut_at(0.5), depths[1]) == -1
    assert judge(cut_at(0.2), depths[1]) == 0 and judge(cut_at(0.85), depths[1]) == 1
    assert judge(masks[1] * 0.45 + masks[0] * 0.1, depths[1]) == 0  # a horn drawn at opacity 0.45: not there


def test_depth_decides_between_shapes_with_the_same_silhouette():
    masks, depths = shape_truths()
    same = [masks[2], masks[2]]  # one silhouette, two depths: only the depth tells them apart
    judge = ShapeJudge([0, 1, 2], same, [depths[2], torch.where(masks[2] > 0, 2.0, 0.0)])
    assert judge(masks[2], depths[2]) == 0 and judge(masks[2], torch.where(masks[2] > 0, 2.0, 0.0)) == 1
    assert judge(masks[2], torch.where(masks[2] > 0, 1.85, 0.0)) == -1  # in between: no shape is called
    assert shape_score(masks[2], depths[2], masks[2], depths[2] + 2 * SHAPE_DEPTH_TOL) == 0.0


def test_figures_show_colour_modes_from_the_back_and_shape_modes_from_a_side_view():
    from nerfstudio_splatdiff.completions import HeldOutInput

    masks, depths = shape_truths()
    truths, colour_masks = three_modes()
    judges = ModeJudge(truths, colour_masks), ShapeJudge([2, 0, 1], masks, depths)
    colour = HeldOutInput("proc_000000", 0, [], 2, *judges, mode_kind="colour")
    shape = HeldOutInput("proc_000000", 0, [], 2, *judges, mode_kind="shape")
    assert colour.figure_view == 2 and shape.figure_view == 0  # the back; the shape judge's first side view


def test_held_out_inputs_carry_the_splatter_depth_range_they_are_given(tmp_path):
    """Evaluation batches must place Gaussians as the evaluated run was trained to: its depth range, not a default."""
    from nerfstudio_splatdiff.completions import held_out_inputs

    default = held_out_inputs(tmp_path, 1, 7, 16, mode_kind="shape")[0].batch
    wider = held_out_inputs(tmp_path, 1, 7, 16, mode_kind="shape", depth_range=(-1.0, 1.5))[0].batch
    assert torch.allclose(wider["depth_near"], default["depth_near"])
    assert torch.allclose(wider["depth_far"], default["depth_far"] + 0.5)


def test_runs_trained_with_different_depth_ranges_are_refused_not_scored_wrongly():
    from types import SimpleNamespace

    import pytest

    from nerfstudio_splatdiff.errors import SplatdiffError
    from nerfstudio_splatdiff.runs import shared_depth_range

    def run(lo: float, hi: float) -> SimpleNamespace:
        return SimpleNamespace(pipeline=SimpleNamespace(datamanager=SimpleNamespace(depth_range=(lo, hi))))

    assert shared_depth_range({"var": run(-1, 1), "diffusion": run(-1.0, 1.0)}) == (-1.0, 1.0)
    with pytest.raises(SplatdiffError, match="different splatter depth ranges") as e:
        shared_depth_range({"var": run(-1, 1), "regression": run(-1, 1.5)})
    assert "\n" not in str(e.value)
