"""Shared test set-up: offline hubs, small thread counts, and the ../shared real-data samples.

`make test` runs the suite on two pytest-xdist workers (`-n 2`): each worker and the commands it starts use one
thread, and the tiny training runs several test files share are made once per session, not once per worker."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

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

XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""Set by pytest-xdist in its workers (gw0, gw1, ...); None in a plain `pytest` run."""
if XDIST_WORKER is not None:
    # Two workers on two cores: one thread each, for this process and the CLI commands it starts.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder `make` fills once per test session: under pytest-xdist the first worker to ask makes it (holding a
    file lock in the session's shared temporary folder) and the others wait and reuse it."""
    if XDIST_WORKER is None:
        root = tmp_path_factory.mktemp(name)
        make(root)
        return root
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / name
    with FileLock(f"{root}.lock"):
        if not (root / ".made").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            make(root)
            (root / ".made").touch()
    return root


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

    def make(root: Path) -> None:
        generate_dataset(root / "data", scenes=6, views=5, resolution=64, seed=3, kind="object")
        run_cli(train_cmd("splatdiff-var-small", root / "data", root / "out", root / "cache", 30))

    root = made_once(tmp_path_factory, "var_run", make)
    (config,) = (root / "out").glob("*/splatdiff-var-small/*/config.yml")
    return root, config


@pytest.fixture(scope="session")
def tiny_diffusion_run(tiny_var_run, tmp_path_factory):
    """A 30-step `ns-train splatdiff-diffusion-small` run over the tiny VAR: (work folder, config.yml)."""
    from cli_helpers import run_cli, train_cmd

    var_root, var_config = tiny_var_run

    def make(root: Path) -> None:
        run_cli(
            train_cmd(
                "splatdiff-diffusion-small",
                var_root / "data",
                root / "diff",
                var_root / "cache",
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

    root = made_once(tmp_path_factory, "diffusion_run", make)
    (config,) = (root / "diff").glob("*/splatdiff-diffusion-small/*/config.yml")
    return var_root, config
