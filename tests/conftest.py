"""Shared test set-up: offline hubs, small thread counts, and the ../shared real-data samples."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from jaxtyping import install_import_hook  # noqa: E402

# Every function of the package is checked at call time against its annotations, jaxtyping shapes included
# (Float[Tensor, "B 3 H W"]: the same B across a call's arguments and result). Subprocess CLI runs are not.
# The numba kernels are left out: numba compiles the plain functions, not a checking wrapper.
UNCHECKED = {"nerfstudio_splatdiff.splats.rasterize_numba_kernels"}
_PACKAGE = Path(__file__).resolve().parents[1] / "nerfstudio_splatdiff"
_MODULES = sorted(
    ".".join(("nerfstudio_splatdiff", *p.relative_to(_PACKAGE).with_suffix("").parts))
    for p in _PACKAGE.rglob("*.py")
    if p.name != "__init__.py"
)
install_import_hook([m for m in _MODULES if m not in UNCHECKED], "beartype.beartype")

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("SPLATDIFF_REAL_DATA", REPO.parent / "shared" / "data" / "real"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def unchecked_annotations():
    """Turns the test-time annotation check off for one test: tests of the package's own error messages on malformed
    input (what a user sees), which the check would otherwise pre-empt."""
    from jaxtyping import config

    config.update("jaxtyping_disable", True)
    yield
    config.update("jaxtyping_disable", False)


@pytest.fixture
def real_data() -> Path:
    """The real CO3D / RealEstate10K / posed-capture samples; skipped with a reason when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data samples not found at {REAL_DATA} (set SPLATDIFF_REAL_DATA to their folder)")
    return REAL_DATA


@pytest.fixture(scope="session")
def tiny_var_run(tmp_path_factory):
    """A 30-step `ns-train splatdiff-var-small` run on 6 procedural scenes: (work folder, config.yml)."""
    from cli_helpers import run_cli, train_cmd

    from nerfstudio_splatdiff.data.procedural.generate import generate_dataset

    root = tmp_path_factory.mktemp("var_run")
    generate_dataset(root / "data", scenes=6, views=5, resolution=64, seed=3, kind="object")
    run_cli(train_cmd("splatdiff-var-small", root / "data", root / "out", root / "cache", 30))
    (config,) = (root / "out").glob("*/splatdiff-var-small/*/config.yml")
    return root, config


@pytest.fixture(scope="session")
def tiny_diffusion_run(tiny_var_run):
    """A 30-step `ns-train splatdiff-diffusion-small` run over the tiny VAR: (work folder, config.yml)."""
    from cli_helpers import run_cli, train_cmd

    root, var_config = tiny_var_run
    run_cli(
        train_cmd(
            "splatdiff-diffusion-small",
            root / "data",
            root / "diff",
            root / "cache",
            30,
            "--pipeline.model.var-checkpoint",
            str(var_config),
            "--pipeline.model.num-steps",
            "4",
            "--pipeline.model.eval-num-samples",
            "3",
            "--pipeline.datamanager.scenes-per-batch",
            "16",
        )
    )
    (config,) = (root / "diff").glob("*/splatdiff-diffusion-small/*/config.yml")
    return root, config
