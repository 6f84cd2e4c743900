"""What the dock needs from the Python environment: the compress algorithm's dependencies, bundled models, a GPU.

Checked lazily (when the dock is built, not when QGIS starts) with the algorithms' own check, so the panel shows
the same install advice as the Processing algorithms, as text rather than a traceback.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from qgis.core import QgsProcessingException

from ..algorithms.common import CODEC_MODULES, engine_module, import_dependencies

NO_MODEL_HINT = (
    "No bundled model was found in <code>resources/models/</code>. "
    "Choose <i>Other model file…</i> in the model list to use a checkpoint (.pt), "
    "or train one with <code>make train</code>."
)


@dataclass(frozen=True)
class EngineStatus:
    """Whether the engine can run, and the bundled models it can offer."""

    ok: bool
    message: str = ""
    models: list[str] = field(default_factory=list)


def check_engine() -> EngineStatus:
    """Import the compress algorithm's dependencies once and list the bundled models; never raises."""
    try:
        import_dependencies(CODEC_MODULES)
        models = list(engine_module("models.checkpoint", CODEC_MODULES).list_models())
    except QgsProcessingException as exc:  # the install advice
        return EngineStatus(False, _rich_text(str(exc)))
    except Exception as exc:  # anything else the engine raises on import: shown, not a traceback
        return EngineStatus(False, _rich_text(f"The SAR Compressor engine could not be loaded: {exc}"))
    return EngineStatus(True, "" if models else NO_MODEL_HINT, models)


def _rich_text(message: str) -> str:
    """A plain message for the panel's rich-text label: escaped, `commands` in <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(message))


def cuda_device_name() -> str | None:
    """Name of the first CUDA GPU, or None when torch sees none."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:
        return None
    return None


def device_summary(choice: str, gpu_name: str | None) -> tuple[str, bool]:
    """Indicator text for a device choice ('auto', 'cpu', 'cuda') and whether that choice can run."""
    if choice == "cpu":
        return "CPU", True
    if gpu_name:
        return f"GPU: {gpu_name}", True
    if choice == "cuda":
        return "No CUDA GPU available: choose auto or cpu", False
    return "CPU (no CUDA GPU found)", True
