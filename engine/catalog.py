"""The bundled models: where they live and how a name or a path resolves to a checkpoint file.

Torch-free on purpose: the QGIS side lists the models when a dialog opens, long before any torch import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from .errors import ModelError

DEFAULT_MODEL = "baseline"
MODELS_DIR = Path(__file__).resolve().parents[1] / "resources" / "models"

PathLike = Union[str, "os.PathLike[str]"]


def list_models() -> list[str]:
    """Names of the bundled models (files resources/models/<name>.pt)."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.pt")) if MODELS_DIR.is_dir() else []


def resolve_model(name_or_path: PathLike | None) -> Path:
    """A bundled model name ('default'/None -> DEFAULT_MODEL) or a checkpoint path -> existing file."""
    key = DEFAULT_MODEL if name_or_path is None or str(name_or_path) == "default" else name_or_path
    text = os.fspath(key)
    looks_like_path = isinstance(key, os.PathLike) or os.sep in text or "/" in text or text.endswith((".pt", ".pth"))
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return path
    path = MODELS_DIR / f"{text}.pt"
    if not path.is_file():
        known = ", ".join(list_models()) or "none installed"
        raise ModelError(f"unknown model {text!r}: not a file and not a bundled model (bundled: {known})")
    return path
