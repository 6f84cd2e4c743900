"""What the dock needs from the Python environment: torch, constriction, bundled models, a GPU.

Checked lazily (when the dock is built, not when QGIS starts) and turned into a message a user can act on,
so a missing dependency shows up as text in the panel rather than as a traceback.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

REQUIRED_MODULES = ("torch", "constriction")
INSTALL_HINT = (
    "Install them into the Python that QGIS uses, e.g. "
    "<code>python3 -m pip install torch constriction</code> "
    "(on Windows run it in the OSGeo4W Shell), then restart QGIS."
)
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
    """Import the heavy dependencies once and list the bundled models; never raises."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # broken installs raise OSError etc., not only ImportError
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    if missing:
        return EngineStatus(False, "Missing Python packages: " + ", ".join(missing) + ". " + INSTALL_HINT)
    try:
        from ..engine.models.checkpoint import list_models

        models = list(list_models())
    except Exception as exc:
        return EngineStatus(False, f"The SAR Compressor engine could not be loaded: {exc}")
    return EngineStatus(True, "" if models else NO_MODEL_HINT, models)


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
