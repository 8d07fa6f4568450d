"""3DGS .ply export/import: exact round trip, an independent read with plyfile, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats import Gaussians
from nerfstudio_splatdiff.splats.ply import FIELDS, SH_C0, load_ply, save_ply


def random_gaussians(N=257, seed=0):
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(1, N, 4, generator=g)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    return Gaussians(
        means=torch.randn(1, N, 3, generator=g),
        quats=quats,
        scales=torch.rand(1, N, 3, generator=g) * 0.1 + 1e-3,
        opacities=torch.rand(1, N, generator=g) * 0.98 + 0.01,
        colors=torch.rand(1, N, 3, generator=g),
    )


def test_round_trip_and_independent_plyfile_read(tmp_path):
    gs = random_gaussians()
    path = save_ply(tmp_path / "a.ply", gs)
    back = load_ply(path)
    for name in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.allclose(getattr(back, name), getattr(gs, name), rtol=1e-5, atol=1e-6), name
    # Read with plyfile (not our reader): the exact 3DGS field names, float32, and the 3DGS encodings.
    ply = PlyData.read(str(path))
    v = ply["vertex"]
    assert [p.name for p in v.properties] == FIELDS
    assert all(v[name].dtype == np.float32 for name in FIELDS)
    assert len(v) == gs.num_gaussians
    np.testing.assert_allclose(v["x"], gs.means[0, :, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(v["f_dc_1"] * SH_C0 + 0.5, gs.colors[0, :, 1].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-v["opacity"])), gs.opacities[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.exp(v["scale_2"]), gs.scales[0, :, 2].numpy(), rtol=1e-5)
    np.testing.assert_allclose(v["rot_0"], gs.quats[0, :, 0].numpy(), rtol=1e-5, atol=1e-6)


def test_file_round_trip_is_byte_exact(tmp_path):
    first = save_ply(tmp_path / "a.ply", random_gaussians(seed=1))
    second = save_ply(tmp_path / "b.ply", load_ply(first, dtype=torch.float64))
    assert first.read_bytes() == second.read_bytes()


def test_reads_files_written_by_other_tools_with_extra_fields(tmp_path):
    """A 3DGS file with SH rest coefficients (as the original trainer writes) loads; extras are ignored."""
    gs = random_gaussians(N=10)
    names = FIELDS + [f"f_rest_{i}" for i in range(45)]
    arr = np.zeros(10, dtype=[(n, "f4") for n in names])
    arr["x"], arr["y"], arr["z"] = gs.means[0].T.numpy()
    for i in range(4):
        arr[f"rot_{i}"] = gs.quats[0, :, i].numpy()
    arr["opacity"] = 2.0
    from plyfile import PlyElement

    PlyData([PlyElement.describe(arr, "vertex")], byte_order="<").write(str(tmp_path / "ext.ply"))
    back = load_ply(tmp_path / "ext.ply")
    assert torch.allclose(back.means, gs.means)
    assert torch.allclose(back.opacities, torch.sigmoid(torch.tensor(2.0)))


def test_missing_fields_and_bad_files_give_clear_errors(tmp_path):
    from plyfile import PlyElement

    arr = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(SplatdiffError, match="lacks the vertex fields f_dc_0, f_dc_1"):
        load_ply(tmp_path / "points.ply")
    with pytest.raises(SplatdiffError, match="No .ply file"):
        load_ply(tmp_path / "missing.ply")
    (tmp_path / "text.ply").write_text("hello")
    with pytest.raises(SplatdiffError, match="not a .ply file"):
        load_ply(tmp_path / "text.ply")
    good = save_ply(tmp_path / "good.ply", random_gaussians(N=20))
    (tmp_path / "cut.ply").write_bytes(good.read_bytes()[:-10])
    with pytest.raises(SplatdiffError, match="truncated"):
        load_ply(tmp_path / "cut.ply")
    with pytest.raises(SplatdiffError, match="one scene"):
        save_ply(tmp_path / "two.ply", Gaussians.cat([random_gaussians(N=4), random_gaussians(N=4)]))
