"""The mode judge of the proving ground: which true completion a rendered hidden side shows, or none."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nerfstudio_splatdiff.completions import MARGIN_DB, ModeJudge, region_psnr


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
