"""Autoencoder architectures, their registry and checkpoint files.

Importing this package imports torch (the plugin imports it lazily, inside engine calls).
"""

from .base import SARAutoencoder
from .baseline import BaselineAutoencoder
from .checkpoint import (
    DEFAULT_MODEL,
    LoadedModel,
    list_models,
    load_checkpoint,
    resolve_model,
    save_checkpoint,
)
from .registry import MODELS, build_model
from .resnet_lite import ResNetAutoencoder

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "BaselineAutoencoder",
    "LoadedModel",
    "ResNetAutoencoder",
    "SARAutoencoder",
    "build_model",
    "list_models",
    "load_checkpoint",
    "resolve_model",
    "save_checkpoint",
]
