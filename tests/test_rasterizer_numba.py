"""The numba CPU rasteriser against the torch path (the reference) and the dense reference, gradients included.

The first test in a fresh checkout compiles the kernels (about 10-20 s on 2 cores); numba caches them on disk.
"""

from __future__ import annotations

import threading

import pytest
import torch
from reference_rasterizer import rasterize_dense
from test_rasterizer import identity_camera, random_scene

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats import Gaussians, render_gaussians
from nerfstudio_splatdiff.splats.rasterize_numba import numba_available, rasterize_numba
from nerfstudio_splatdiff.splats.rasterize_torch import rasterize_torch
from nerfstudio_splatdiff.splats.render import default_backend

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba is not installed")
PARAMS = ("means", "quats", "scales", "opacities", "colors")


def forward_backward(fn, g: Gaussians, viewmats, Ks, W, H, bg, camera_grads=False, **kw):
    """Outputs and the gradients of a loss that uses every output, w.r.t. every Gaussian parameter and bg (and the
    cameras with camera_grads)."""
    params = [getattr(g, n).detach().clone().requires_grad_(True) for n in PARAMS]
    bg = bg.detach().clone().requires_grad_(True)
    cams = [t.detach().clone().requires_grad_(camera_grads) for t in (viewmats, Ks)]
    rgb, alpha, depth = fn(*params, *cams, W, H, bg, **kw)
    w = torch.linspace(0.5, 1.5, rgb.numel(), dtype=rgb.dtype).reshape(rgb.shape)  # not a plain sum
    (w * rgb).sum().backward(retain_graph=True)
    ((rgb**2).sum() + 0.7 * alpha.sum() + 0.1 * (depth * alpha).sum()).backward()
    grads = [p.grad for p in params] + [bg.grad] + ([c.grad for c in cams] if camera_grads else [])
    return (rgb.detach(), alpha.detach(), depth.detach()), grads


def assert_close(outs_a, grads_a, outs_b, grads_b, out_tol, grad_rtol):
    for name, a, b in zip(("rgb", "alpha", "depth"), outs_a, outs_b):
        mask = outs_b[1].expand_as(b) > 0.05 if name == "depth" else torch.ones_like(b, dtype=torch.bool)
        assert (a - b)[mask].abs().max() <= out_tol, name
    assert len(grads_a) == len(grads_b)
    for name, a, b in zip(PARAMS + ("background", "viewmats", "Ks"), grads_a, grads_b):
        scale = b.abs().max()
        assert scale > 0, f"no gradient reached {name}"
        assert (a - b).abs().max() <= grad_rtol * scale, f"d/d{name}: {(a - b).abs().max()} vs scale {scale}"


@pytest.mark.parametrize("seed,width,height", [(0, 40, 32), (1, 33, 47)])
def test_numba_equals_torch_path_and_dense_reference_in_float32(seed, width, height):
    g, viewmats, Ks, bg = random_scene(2, 2, 80, width, height, seed=seed)
    stats: dict = {}
    outs_n, grads_n = forward_backward(rasterize_numba, g, viewmats, Ks, width, height, bg, stats=stats)
    ref_stats: dict = {}
    outs_t, grads_t = forward_backward(rasterize_torch, g, viewmats, Ks, width, height, bg, stats=ref_stats)
    outs_d, grads_d = forward_backward(rasterize_dense, g, viewmats, Ks, width, height, bg)
    assert stats["num_pairs"] == ref_stats["num_pairs"] > 1000  # same pairs, and the scene really overlaps
    # float32 gradients reach ~1e4 here; the torch path and the dense reference differ from each other by ~1e-6 of
    # that. Alphas are float32 as in the torch path, the rest float64: the differences are float32 rounding.
    assert_close(outs_n, grads_n, outs_t, grads_t, out_tol=1e-5, grad_rtol=1e-5)
    assert_close(outs_n, grads_n, outs_d, grads_d, out_tol=1e-5, grad_rtol=1e-5)
    # The all-numba projection (float64 arithmetic) agrees to float32 rounding too, away from decision boundaries.
    outs_f, grads_f = forward_backward(rasterize_numba, g, viewmats, Ks, width, height, bg, projection="numba")
    assert_close(outs_f, grads_f, outs_t, grads_t, out_tol=1e-4, grad_rtol=1e-4)


@pytest.mark.parametrize("camera_grads", [False, True])
def test_numba_equals_torch_path_to_rounding_in_float64(camera_grads):
    """Both projections: numba's own (cameras without gradients) and torch's (cameras with gradients)."""
    g, viewmats, Ks, bg = random_scene(2, 2, 50, 37, 29, seed=4, dtype=torch.float64)
    outs_n, grads_n = forward_backward(rasterize_numba, g, viewmats, Ks, 37, 29, bg, camera_grads)
    outs_t, grads_t = forward_backward(rasterize_torch, g, viewmats, Ks, 37, 29, bg, camera_grads)
    assert_close(outs_n, grads_n, outs_t, grads_t, out_tol=1e-10, grad_rtol=1e-10)
    if not camera_grads:
        outs_d, grads_d = forward_backward(rasterize_dense, g, viewmats, Ks, 37, 29, bg)
        assert_close(outs_n, grads_n, outs_d, grads_d, out_tol=1e-10, grad_rtol=1e-10)


def test_gradcheck_float64_every_input_of_the_numba_backend():
    g, viewmats, Ks, bg = random_scene(1, 2, 4, 10, 8, seed=3, dtype=torch.float64)
    opac = g.opacities.clamp(0.2, 0.9)  # keep away from the 0.999 clamp kink
    scales = g.scales + 0.15  # big enough to cover the tiny image

    def fn(means, quats, scales, opacities, colors, background):
        rgb, alpha, depth = rasterize_numba(means, quats, scales, opacities, colors, viewmats, Ks, 10, 8, background)
        return rgb, alpha, depth * alpha

    inputs = tuple(t.detach().clone().requires_grad_(True) for t in (g.means, g.quats, scales, opac, g.colors, bg))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_numba_stops_at_the_same_transmittance_cutoff():
    """A stack of 60 nearly opaque Gaussians: pixels end after a few, exactly where the torch path ends them."""
    n = 60
    gen = torch.Generator().manual_seed(0)
    means = torch.cat([(torch.rand(n, 2, generator=gen) - 0.5) * 0.3, 2.0 + torch.rand(n, 1, generator=gen)], -1)
    g = Gaussians(
        means[None],
        torch.randn(1, n, 4, generator=gen),
        0.2 + 0.1 * torch.rand(1, n, 3, generator=gen),
        0.6 + 0.4 * torch.rand(1, n, generator=gen),
        torch.rand(1, n, 3, generator=gen),
    )
    viewmat, K = identity_camera(40.0, 32, 32)
    bg = torch.full((1, 1, 3), 0.5)
    outs_n, grads_n = forward_backward(rasterize_numba, g, viewmat, K, 32, 32, bg)
    outs_t, grads_t = forward_backward(rasterize_torch, g, viewmat, K, 32, 32, bg)
    assert (outs_t[1] > 0.999).float().mean() > 0.2  # many pixels end at the cut-off (alpha -> 1 - 1e-4)
    assert_close(outs_n, grads_n, outs_t, grads_t, out_tol=1e-5, grad_rtol=1e-5)


@pytest.mark.parametrize("projection", ["torch", "numba"])
def test_equal_depths_composite_in_index_order_in_every_tile(projection):
    """Rows are binned in index order and each tile's list is sorted by depth on its own (stably): Gaussians at
    exactly the same depth, spread over several tiles of two cameras, composite in index order, as the torch
    path's single stable sort of all rows does, and not in the reverse order."""
    n = 40
    gen = torch.Generator().manual_seed(3)
    xy = (torch.rand(n, 2, generator=gen) - 0.5) * 1.2
    means = torch.cat([xy, torch.full((n, 1), 2.0)], -1)[None].double()  # one depth for all: every pair ties
    g = Gaussians(
        means,
        torch.randn(1, n, 4, generator=gen, dtype=torch.float64),
        0.06 + 0.08 * torch.rand(1, n, 3, generator=gen, dtype=torch.float64),
        torch.full((1, n), 0.8, dtype=torch.float64),
        torch.rand(1, n, 3, generator=gen, dtype=torch.float64),
    )
    viewmat, K = identity_camera(40.0, 48, 40, dtype=torch.float64)
    viewmats, Ks = viewmat.expand(1, 2, 4, 4).clone(), K.expand(1, 2, 3, 3).clone()
    bg = torch.zeros(1, 2, 3, dtype=torch.float64)
    outs_n, grads_n = forward_backward(rasterize_numba, g, viewmats, Ks, 48, 40, bg, projection=projection)
    outs_t, grads_t = forward_backward(rasterize_torch, g, viewmats, Ks, 48, 40, bg)
    assert_close(outs_n, grads_n, outs_t, grads_t, out_tol=1e-9, grad_rtol=1e-9)
    flipped = Gaussians(*(t.flip(1) for t in (g.means, g.quats, g.scales, g.opacities, g.colors)))
    outs_f, _ = forward_backward(rasterize_torch, flipped, viewmats, Ks, 48, 40, bg)
    assert (outs_f[0] - outs_t[0]).abs().max() > 1e-3  # the order of tied Gaussians does show in the image


def test_nothing_visible_renders_the_background_with_zero_gradients():
    viewmat, K = identity_camera(50.0, 20, 16)
    g = Gaussians(
        torch.tensor([[[0.0, 0.0, -2.0], [0.1, 0.0, -3.0]]]),
        torch.tensor([1.0, 0, 0, 0]).expand(1, 2, 4),
        torch.full((1, 2, 3), 0.1),
        torch.full((1, 2), 0.9),
        torch.ones(1, 2, 3),
    )
    bg = torch.tensor([[[0.2, 0.3, 0.4]]])
    (rgb, alpha, depth), grads = forward_backward(rasterize_numba, g, viewmat, K, 20, 16, bg)
    assert torch.equal(rgb, bg[:, :, None, None].expand_as(rgb)) and (alpha == 0).all() and (depth == 0).all()
    assert all((gr == 0).all() for gr in grads[:5])


def test_results_do_not_depend_on_the_thread_count_or_on_concurrent_callers():
    g, viewmats, Ks, bg = random_scene(2, 2, 80, 40, 32, seed=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        outs_1, grads_1 = forward_backward(rasterize_numba, g, viewmats, Ks, 40, 32, bg)
        torch.set_num_threads(max(2, before))  # also under pytest-xdist, whose workers run with one thread
        outs_n, grads_n = forward_backward(rasterize_numba, g, viewmats, Ks, 40, 32, bg)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(outs_1 + tuple(grads_1), outs_n + tuple(grads_n)))
    # Two Python threads at once (the viewer renders while training runs): same answers, no crash.
    results: list = [None, None]

    def work(i):
        results[i] = forward_backward(rasterize_numba, g, viewmats, Ks, 40, 32, bg)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for outs, grads in results:
        assert all(torch.equal(a, b) for a, b in zip(outs + tuple(grads), outs_n + tuple(grads_n)))


def test_auto_picks_numba_on_cpu_and_the_environment_can_pick_the_torch_reference(monkeypatch):
    monkeypatch.delenv("SPLATDIFF_RENDER_BACKEND", raising=False)
    assert default_backend("cpu") == "numba"
    assert default_backend("cpu", torch.float16) == "torch"
    assert default_backend("cuda") == "gsplat"
    g, viewmats, Ks, bg = random_scene(1, 2, 40, 24, 20, seed=5)
    auto = render_gaussians(g, viewmats, Ks, 24, 20, background=bg)
    torch_out = render_gaussians(g, viewmats, Ks, 24, 20, background=bg, backend="torch")
    assert (auto.rgb - torch_out.rgb).abs().max() < 1e-5
    monkeypatch.setenv("SPLATDIFF_RENDER_BACKEND", "torch")
    assert default_backend("cpu") == "torch" and default_backend("cuda") == "torch"
    monkeypatch.setenv("SPLATDIFF_RENDER_BACKEND", "nonsense")
    with pytest.raises(SplatdiffError, match="not a render backend"):
        render_gaussians(g, viewmats, Ks, 24, 20)
    monkeypatch.delenv("SPLATDIFF_RENDER_BACKEND")
    monkeypatch.setenv("SPLATDIFF_NUMBA_PROJECTION", "nonsense")
    with pytest.raises(ValueError, match="SPLATDIFF_NUMBA_PROJECTION"):
        render_gaussians(g, viewmats, Ks, 24, 20)
    monkeypatch.delenv("SPLATDIFF_NUMBA_PROJECTION")
    with pytest.raises(SplatdiffError, match="numba backend renders float32 or float64"):
        render_gaussians(g.map(lambda t: t.half()), viewmats.half(), Ks.half(), 24, 20, backend="numba")
