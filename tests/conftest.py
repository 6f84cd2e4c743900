"""Shared fixtures: real SAR crops when ../shared is there, a small random model for codec tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_SAR = REPO.parent / "shared" / "sar-data"
SHARED_TRAIN = REPO.parent / "shared" / "train-data" / "ucmerced_gray_256.npz"


@pytest.fixture(scope="session")
def shared_sar_dir() -> Path:
    """The real SAR crops, or a clean skip on a clone without ../shared."""
    if not SHARED_SAR.is_dir() or not any(SHARED_SAR.glob("*.tif")):
        pytest.skip("../shared/sar-data is absent")
    return SHARED_SAR


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A random-initialised baseline model with frozen entropy tables: exercises the whole codec without weights."""
    import torch

    from sar_compressor.engine.entropy import EntropyModel
    from sar_compressor.engine.models.checkpoint import save_checkpoint
    from sar_compressor.engine.models.registry import build_model

    torch.manual_seed(0)
    model = build_model({"name": "baseline"})
    entropy = EntropyModel(latent_channels=model.latent_channels)
    path = tmp_path_factory.mktemp("models") / "tiny_baseline.pt"
    config = {
        "model": {"name": "baseline"},
        "preprocessing_params": {"vmin": -30.0, "vmax": 10.0},
    }
    save_checkpoint(path, model, config, entropy)
    return path
