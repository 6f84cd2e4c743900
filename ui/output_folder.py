"""Where the dock writes its outputs: never a folder QGIS deletes on exit.

The default is the folder the user chose last (remembered in QSettings), else the source raster's own folder.
QGIS's processing temp folder (and the system temp folder) is removed on a normal exit, with the .sarz inside:
picking one is allowed but warned about.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices

from ..algorithms.common import processing_temp_folder, within

SETTINGS_KEY = "sar_compressor/output_folder"


def temporary_roots() -> list[Path]:
    """Folders whose content does not survive a QGIS exit or a reboot."""
    return sorted({Path(tempfile.gettempdir()).resolve(), processing_temp_folder()})


def is_temporary(folder: str) -> bool:
    """True when `folder` is inside a temporary folder (QGIS's processing temp folder or the system one)."""
    return bool(folder) and within(folder, temporary_roots())


def remembered_folder() -> str:
    """The output folder the user chose last, or '' (a folder that no longer exists is forgotten)."""
    folder = str(QgsSettings().value(SETTINGS_KEY, "", type=str) or "")
    return folder if folder and os.path.isdir(folder) else ""


def remember_folder(folder: str) -> None:
    """Keep `folder` as the default of the next session (temporary folders are not remembered)."""
    if folder and not is_temporary(folder):
        QgsSettings().setValue(SETTINGS_KEY, str(folder))


def default_folder(source_file: Optional[str]) -> str:
    """The remembered folder, else the folder of `source_file` when it can be written to, else the home folder."""
    remembered = remembered_folder()
    if remembered:
        return remembered
    if source_file:
        parent = os.path.dirname(os.path.abspath(source_file))
        if os.path.isdir(parent) and os.access(parent, os.W_OK):
            return parent
    return str(Path.home())


def temporary_warning(folder: str) -> str:
    """The warning shown next to the output folder, or '' when the folder is a lasting one."""
    if not is_temporary(folder):
        return ""
    return (
        f"{folder} is a temporary folder: QGIS or the system deletes it (and the .sarz in it) on exit. "
        "Choose another folder to keep the output."
    )


def open_folder(folder: str) -> bool:
    """Show `folder` in the system's file manager."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(folder))
