"""Shared fixtures: real SAR crops when ../shared is there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["GDAL_PAM_ENABLED"] = (
    "NO"  # no .aux.xml sidecars: QGIS's statistics would write them beside ../shared's crops
)

REPO = Path(__file__).resolve().parents[1]
SHARED_SAR = REPO.parent / "shared" / "sar-data"
SHARED_TRAIN = REPO.parent / "shared" / "train-data" / "ucmerced_gray_256.npz"


@pytest.fixture(scope="session")
def shared_sar_dir() -> Path:
    """The real SAR crops, or a clean skip on a clone without ../shared."""
    if not SHARED_SAR.is_dir() or not any(SHARED_SAR.glob("*.tif")):
        pytest.skip("../shared/sar-data is absent")
    return SHARED_SAR
