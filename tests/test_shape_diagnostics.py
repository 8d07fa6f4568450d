"""benchmarks/shape_diagnostics.py nones and codes: where a diffusion run's "none" samples come from. A sample's latent
is placed at a shape's code only when it is clearly nearer that code than the input's others are to it, and each
"none" gets one cause: near no code (the denoiser), at a code the VAR itself draws wrong (the decoder), at a code the
VAR draws right (the rest of the latent, the denoiser again). `codes` scores predictions of where an input's codes
lie against each code's gap to the input's next code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _diagnostics():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("shape_diagnostics", ROOT / "benchmarks" / "shape_diagnostics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CODES = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 6.0]])
"""Three shape codes: 0 and 1 are 3 apart, 2 is 6 from 0 (so its neighbourhood is twice as wide)."""


def test_a_latent_is_at_a_code_only_within_a_third_of_the_way_to_that_codes_next_code():
    d = _diagnostics()
    samples = torch.tensor([[0.9, 0.0], [1.1, 0.0], [1.6, 0.0], [0.0, 4.1], [0.0, 3.9], [2.9, 0.2]])
    placed, relative, nearest = d.place_latents(samples, CODES)
    assert placed == [0, -1, -1, 2, -1, 1] and nearest == [0, 0, 1, 2, 2, 1]
    # distance to the nearest code over that code's gap to its nearest other code (3 for codes 0 and 1, 6 for 2)
    expected = [0.3, 1.1 / 3, 1.4 / 3, 1.9 / 6, 2.1 / 6, float(torch.tensor([0.1, 0.2]).norm()) / 3]
    assert torch.allclose(torch.tensor(relative, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64))


def test_each_none_sample_gets_the_cause_its_latent_and_the_vars_own_render_say():
    d = _diagnostics()
    oracle = [0, -1, 1]  # the VAR draws shape 0 right, shape 1 as "none", shape 2 as shape 1
    assert d.none_cause(judged=2, placed=-1, oracle=oracle) == "judged"
    assert d.none_cause(judged=-1, placed=-1, oracle=oracle) == "between"
    assert d.none_cause(judged=-1, placed=0, oracle=oracle) == "off"
    assert d.none_cause(judged=-1, placed=1, oracle=oracle) == "decoder"
    assert d.none_cause(judged=-1, placed=2, oracle=oracle) == "decoder"


def test_results_are_written_with_plain_lists_on_one_line_and_read_back_the_same():
    import json

    d = _diagnostics()
    result = {"a": [1, -1, 2.5], "rows": [{"cause": ["judged", "between"], "nested": [[1, 2], [3]]}], "empty": []}
    text = d.compact_lists(json.dumps(result, indent=2))
    assert json.loads(text) == result
    assert '"a": [1, -1, 2.5]' in text and '"cause": ["judged", "between"]' in text


def test_samples_are_placed_in_the_plane_of_the_three_codes_with_their_distance_from_it():
    d = _diagnostics()
    codes = torch.tensor([[1.0, 1.0, 0.0, 0.0], [4.0, 1.0, 0.0, 0.0], [1.0, 5.0, 0.0, 0.0]])  # a right angle at code 0
    samples = torch.tensor([[4.0, 1.0, 0.0, 0.0], [2.0, 2.0, 0.5, 0.0], [1.0, 1.0, 0.0, -2.0]])
    codes_xy, xy, off = d.plane_coordinates(samples, codes)
    assert torch.allclose(codes_xy, torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64))
    assert torch.allclose(xy, torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(off, torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64))


def test_barycentric_weights_say_which_code_a_point_in_the_plane_leans_to():
    d = _diagnostics()
    codes_xy = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    points = torch.tensor([[3.0, 0.0], [1.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    w = d.barycentric(codes_xy, points)
    expected = [[0.0, 1.0, 0.0], [1 - 1 / 3 - 1 / 4, 1 / 3, 1 / 4], [4 / 3, -1 / 3, 0.0]]  # the last lies beyond code 0
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64))


def test_an_offset_error_is_measured_against_each_codes_own_gap_to_the_inputs_next_code():
    d = _diagnostics()
    codes = CODES[None]  # one input, three codes (gaps 3, 3, 6)
    offsets = d.code_offsets(torch.tensor([[1.0, 1.0]]), codes)
    assert torch.equal(offsets, codes - torch.tensor([1.0, 1.0]))
    pred = offsets + torch.tensor([[[0.0, 1.5], [0.0, 0.0], [3.0, 0.0]]])
    err = d.offset_error_over_gap(pred, offsets, codes)
    assert torch.allclose(err, torch.tensor([[0.5, 0.0, 0.5]], dtype=torch.float64))


def test_the_nearest_training_inputs_lend_their_mean_offsets():
    d = _diagnostics()
    train_x = torch.tensor([[0.0], [1.0], [10.0]])
    train_y = torch.tensor([[[1.0, 0.0]], [[3.0, 0.0]], [[100.0, 0.0]]])  # [N, K=1, C=2]
    pred = d.knn_offsets(train_x, train_y, torch.tensor([[0.4], [9.0]]), k=2)
    assert torch.allclose(pred, torch.tensor([[[2.0, 0.0]], [[51.5, 0.0]]], dtype=torch.float64))


def test_ridge_recovers_a_linear_map_with_little_regularisation_and_the_mean_with_a_lot():
    d = _diagnostics()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    w = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]], dtype=torch.float64)
    y = (x @ w + torch.tensor([4.0, -1.0], dtype=torch.float64))[:, None]  # [N, K=1, C=2]
    test_x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    exact = d.ridge_offsets(x, y, test_x, alpha=1e-8)
    assert torch.allclose(exact, (test_x @ w + torch.tensor([4.0, -1.0], dtype=torch.float64))[:, None], atol=1e-5)
    flat = d.ridge_offsets(x, y, test_x, alpha=1e12)
    assert torch.allclose(flat, y.mean(0, keepdim=True).expand(5, -1, -1), atol=1e-6)


def test_offsets_that_move_together_are_shared_and_those_that_do_not_are_each_shapes_own():
    d = _diagnostics()
    base = CODES[None].expand(4, -1, -1).clone()  # gap 3 for every input
    shift = torch.tensor([[1.5, 0.0], [-1.5, 0.0], [0.0, 1.5], [0.0, -1.5]])[:, None]  # the same for all three shapes
    shared, own = d.shared_and_own(base + shift, base + shift)
    assert abs(shared - 0.5) < 1e-9 and own < 1e-9
    alone = base.clone()
    alone[:, 0] += shift[:, 0]  # only shape 0 moves
    shared, own = d.shared_and_own(alone, base)  # gaps from the unmoved codes
    assert abs(shared - 0.5 / 3) < 1e-9 and abs(own - 0.5 / 3) < 1e-9
