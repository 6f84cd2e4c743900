"""One-click dependencies: pip-install constriction (and rasterio / matplotlib where QGIS lacks them) into a folder
of the QGIS profile. No PyTorch: no learned part runs in the codec today (resources/models/MODELS.md).

The approach of opengisch/qpip: `pip install --target <profile>/python/dependencies`, a folder the plugin puts on
sys.path when it starts. The system site-packages are never touched, so it works where `pip install` is refused
(PEP 668 "externally-managed-environment" on Debian 12 / current Ubuntu) and needs no administrator rights.
Engine-free: importable with only QGIS, and the command and the path setup are plain functions (tested offline
with a local wheel folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

# import name -> pip requirement (constriction: the entropy coder; the others: raster I/O and Evaluate's report)
PACKAGES = {"constriction": "constriction", "rasterio": "rasterio", "matplotlib": "matplotlib"}
DEPENDENCIES_SUBFOLDER = ("python", "dependencies")
NUMPY_CAP = "numpy<2"
"""QGIS 3.22's GDAL and QGIS itself are built on numpy 1.x (Debian 12: 1.24)."""


def dependencies_folder(profile_folder: str | os.PathLike) -> Path:
    """<profile>/python/dependencies: the plugin-private install target."""
    return Path(profile_folder).joinpath(*DEPENDENCIES_SUBFOLDER)


def qgis_profile_folder() -> Path:
    """The active QGIS profile's folder (where python/plugins lives)."""
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath())


def add_to_path(folder: str | os.PathLike) -> bool:
    """Put `folder` on sys.path (after the system's own paths, so a system package wins over a stale copy),
    when it exists; True when it was added now."""
    folder = str(folder)
    if not os.path.isdir(folder) or folder in sys.path:
        return False
    sys.path.append(folder)
    import importlib

    importlib.invalidate_caches()
    return True


def python_executable() -> str:
    """The Python QGIS runs (sys.executable is QGIS itself in the GUI on Linux and Windows)."""
    candidates = [sys.executable]
    name = "python.exe" if os.name == "nt" else f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates += [os.path.join(sys.exec_prefix, "bin", name), os.path.join(sys.exec_prefix, name)]
    candidates += [shutil.which(name) or "", shutil.which("python3") or ""]
    for candidate in candidates:
        if candidate and os.path.basename(candidate).lower().startswith("python") and os.path.isfile(candidate):
            return candidate
    return shutil.which("python3") or sys.executable


def install_command(
    target: str | os.PathLike,
    packages: Sequence[str],
    *,
    python: str | None = None,
    find_links: str | os.PathLike | None = None,
) -> list[str]:
    """The pip command line: install `packages` into `target` only; `find_links`: install offline from a local
    wheel folder (tests, air-gapped sites). pip's --target mode does not see QGIS's numpy: constriction alone (its
    one dependency is numpy, which QGIS has) is installed without dependencies, and otherwise numpy is capped below 2
    (it put numpy 2 into the profile, 73 MB, beside QGIS's 1.x, with a resolver error under an "Installed")."""
    command = [python or python_executable(), "-m", "pip", "install", "--upgrade", "--target", str(target)]
    command += ["--no-warn-script-location", "--disable-pip-version-check"]
    if find_links is not None:
        command += ["--no-index", "--find-links", str(find_links)]
    if list(packages) == [PACKAGES["constriction"]]:
        return command + ["--no-deps", *packages]
    numpy_users = {PACKAGES["rasterio"], PACKAGES["matplotlib"]}  # they bring numpy into the target folder
    return command + list(packages) + ([NUMPY_CAP] if numpy_users & set(packages) else [])


def missing_packages(modules: Iterable[str] = tuple(PACKAGES)) -> list[str]:
    """pip requirements of the modules this Python cannot find."""
    import importlib.util

    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(PACKAGES.get(name, name))
    return missing


def run_install(command: Sequence[str], on_line=None) -> int:
    """Run pip, passing each output line to `on_line`; its exit status. The environment keeps pip away from
    the user's and the system's configuration of where to install (PIP_USER, PIP_PREFIX...)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PYTHONNOUSERSITE"] = "1"
    process = subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    )
    assert process.stdout is not None
    for line in process.stdout:
        if on_line is not None:
            on_line(line.rstrip())
    return process.wait()


def install_dialog(parent, packages: Sequence[str], profile_folder: str | os.PathLike | None = None) -> bool:
    """A modal dialog that runs the install with its log in view; True when pip succeeded (the folder is then on
    sys.path; a package QGIS had already imported in an older version needs a restart)."""
    from qgis.PyQt.QtCore import QCoreApplication, Qt
    from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QProgressBar, QVBoxLayout

    target = dependencies_folder(profile_folder or qgis_profile_folder())
    target.mkdir(parents=True, exist_ok=True)
    command = install_command(target, packages)
    dialog = QDialog(parent)
    dialog.setWindowTitle("SAR Compressor: installing dependencies")
    dialog.resize(720, 420)
    layout = QVBoxLayout(dialog)
    label = QLabel(f"Installing {', '.join(packages)} into {target} (not the system Python)…", dialog)
    label.setWordWrap(True)
    layout.addWidget(label)
    bar = QProgressBar(dialog)
    bar.setRange(0, 0)  # pip reports no overall progress: a busy bar
    layout.addWidget(bar)
    log = QPlainTextEdit(dialog)
    log.setReadOnly(True)
    log.appendPlainText(" ".join(command))
    layout.addWidget(log, 1)
    buttons = QDialogButtonBox(QDialogButtonBox.Close, Qt.Horizontal, dialog)
    buttons.rejected.connect(dialog.reject)
    buttons.setEnabled(False)
    layout.addWidget(buttons)
    dialog.show()

    def on_line(line: str) -> None:
        log.appendPlainText(line)
        QCoreApplication.processEvents()

    status = run_install(command, on_line)
    bar.setRange(0, 1)
    bar.setValue(1)
    ok = status == 0
    if ok:
        add_to_path(target)
    label.setText(f"Installed into {target}." if ok else f"pip failed (exit status {status}): see the log above.")
    buttons.setEnabled(True)
    dialog.exec_()
    return ok
