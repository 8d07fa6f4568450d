"""Shared test set-up: offline hubs, small thread counts, and the ../shared real-data samples."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("SPLATDIFF_REAL_DATA", REPO.parent / "shared" / "data" / "real"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def real_data() -> Path:
    """The real CO3D / RealEstate10K / posed-capture samples; skipped with a reason when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data samples not found at {REAL_DATA} (set SPLATDIFF_REAL_DATA to their folder)")
    return REAL_DATA
