"""Architecture names -> classes: checkpoints name their architecture, the registry builds it."""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from .base import SARAutoencoder
from .baseline import BaselineAutoencoder
from .resnet_lite import ResNetAutoencoder

MODELS: dict[str, type[SARAutoencoder]] = {
    "baseline": BaselineAutoencoder,
    "resnet_lite_v2": ResNetAutoencoder,
}


def build_model(cfg: dict[str, Any]) -> SARAutoencoder:
    """Instantiate `cfg = {"name": ..., **kwargs}`; ModelError for unknown names or bad kwargs."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ModelError(f"model config needs a 'name' (one of {sorted(MODELS)}), got {cfg!r}")
    name = cfg["name"]
    if name not in MODELS:
        raise ModelError(f"unknown model architecture {name!r}; known: {', '.join(sorted(MODELS))}")
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    try:
        return MODELS[name](**kwargs)
    except TypeError as exc:
        raise ModelError(f"bad arguments for model {name!r}: {exc}") from exc
