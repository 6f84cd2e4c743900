"""What the dock needs from the Python environment: the compress algorithm's dependencies.

Checked lazily (when the dock is built, not when QGIS starts) with the algorithms' own check, so the panel shows
the same install advice as the Processing algorithms, as text rather than a traceback.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from qgis.core import QgsProcessingException

from ..algorithms.common import CODEC_MODULES, import_dependencies


@dataclass(frozen=True)
class EngineStatus:
    """Whether the engine can run, and why not."""

    ok: bool
    message: str = ""


def check_engine() -> EngineStatus:
    """Import the compress algorithm's dependencies once; never raises."""
    try:
        import_dependencies(CODEC_MODULES)
    except QgsProcessingException as exc:  # the install advice
        return EngineStatus(False, _rich_text(str(exc)))
    except Exception as exc:  # anything else the engine raises on import: shown, not a traceback
        return EngineStatus(False, _rich_text(f"The SAR Compressor engine could not be loaded: {exc}"))
    return EngineStatus(True)


def _rich_text(message: str) -> str:
    """A plain message for the panel's rich-text label: escaped, `commands` in <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(message))
