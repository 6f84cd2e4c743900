"""The one-click installer, offline: pip installs a local wheel into a temporary QGIS profile's
python/dependencies folder, and the plugin's path setup makes it importable (the system site-packages untouched)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sar_compressor.ui import dependencies

PACKAGE = "sarz_offline_probe"


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel built by hand (no network, no build backend)."""
    name = f"{PACKAGE}-1.0-py3-none-any.whl"
    dist = f"{PACKAGE}-1.0.dist-info"
    with zipfile.ZipFile(folder / name, "w") as wheel:
        wheel.writestr(f"{PACKAGE}/__init__.py", "VALUE = 42\n")
        wheel.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n")
        wheel.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{dist}/RECORD", "")
    return folder / name


def test_install_command_targets_the_profile_folder(tmp_path):
    target = dependencies.dependencies_folder(tmp_path / "profiles" / "default")
    assert target == tmp_path / "profiles" / "default" / "python" / "dependencies"
    command = dependencies.install_command(target, ["constriction", "matplotlib"], python="/usr/bin/python3")
    assert command[:4] == ["/usr/bin/python3", "-m", "pip", "install"]
    assert command[command.index("--target") + 1] == str(target)
    assert command[-3:] == ["constriction", "matplotlib", "numpy<2"] and "torch" not in dependencies.PACKAGES
    alone = dependencies.install_command(target, ["constriction"], python="/usr/bin/python3")  # numpy: QGIS's
    assert alone[-2:] == ["--no-deps", "constriction"]  # (--target does not see it: numpy 2 went into the profile)
    assert "--user" not in command and "--break-system-packages" not in command
    offline = dependencies.install_command(target, ["x"], python="python3", find_links=tmp_path)
    assert "--no-index" in offline and offline[offline.index("--find-links") + 1] == str(tmp_path)


def test_offline_install_into_a_temporary_profile_is_importable(tmp_path, monkeypatch):
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip("pip is not available in this Python")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels)
    profile = tmp_path / "profile"
    target = dependencies.dependencies_folder(profile)
    lines = []
    command = dependencies.install_command(target, [PACKAGE], python=sys.executable, find_links=wheels)
    assert dependencies.run_install(command, lines.append) == 0, "\n".join(lines)
    assert (target / PACKAGE / "__init__.py").is_file()

    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(ImportError):
        importlib.import_module(PACKAGE)
    # what QGIS does at start: import the plugin module, which puts the profile's folder on sys.path
    monkeypatch.setattr(dependencies, "qgis_profile_folder", lambda: profile)
    import sar_compressor.sar_compressor_plugin as plugin_module

    importlib.reload(plugin_module)
    assert str(target) in sys.path
    assert importlib.import_module(PACKAGE).VALUE == 42
    assert not dependencies.add_to_path(target)  # once only
    sys.modules.pop(PACKAGE, None)
