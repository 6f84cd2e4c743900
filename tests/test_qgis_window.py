"""A real QGIS main window under Xvfb (not the offscreen widgets of the other tests): the plugin enabled in a fresh
profile, the dock opened from its toolbar button, a compression run, a screenshot of the screen saved.

Skipped cleanly without Xvfb or the qgis binary; bounded in time (QGIS_WINDOW_TIMEOUT_S)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
DRIVER = REPO / "tests" / "qgis_window" / "drive_dock.py"
QGIS_WINDOW_TIMEOUT_S = 240
QGIS_EXIT_S = 60
SCREEN = "1600x1000x24"


def _qgis_binary() -> str | None:
    return shutil.which("qgis.bin") or shutil.which("qgis")


def run_qgis_window(raster: Path, work: Path, screenshot: Path, quality: int | None = None) -> dict:
    """Start QGIS under xvfb-run with a fresh profile where only this plugin is enabled, drive the dock with
    drive_dock.py, and return what it reported."""
    plugins = work / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "sar_compressor").symlink_to(REPO, target_is_directory=True)
    profiles = work / "profiles"
    ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(
        # the raster is in the temporary folder: no "temporary layers will be lost" question holding up the exit
        "[PythonPlugins]\nsar_compressor=true\n\n[app]\naskToSaveMemoryLayers=false\n",
        encoding="utf-8",
    )
    out = work / "out"
    out.mkdir()
    status = work / "status.json"
    # QGIS's embedded Python must see this test's packages (torch, rasterio... of the venv); the plugin itself
    # comes from QGIS_PLUGINPATH only
    python_path = [sysconfig.get_paths()["purelib"]]
    env = dict(
        os.environ,
        QGIS_PLUGINPATH=str(plugins),
        PYTHONPATH=os.pathsep.join(python_path),
        SARZ_RASTER=str(raster),
        SARZ_OUTPUT_FOLDER=str(out),
        SARZ_SCREENSHOT=str(screenshot),
        SARZ_STATUS=str(status),
        SARZ_TIMEOUT_S=str(QGIS_WINDOW_TIMEOUT_S - 60),
        SARZ_QUALITY=str(quality or ""),
    )
    env.pop("QT_QPA_PLATFORM", None)  # a real X display, not offscreen
    command = [
        "xvfb-run", "-a", "-s", f"-screen 0 {SCREEN}",
        _qgis_binary(), "--profiles-path", str(profiles), "--nologo", "--noversioncheck", "--code", str(DRIVER),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:  # wait for the driver's report, not for QGIS to exit (its exit can be held up by dialogs)
        deadline = time.monotonic() + QGIS_WINDOW_TIMEOUT_S
        while not status.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(1)  # the report is written in one go; let the file close
        if status.is_file():  # then QGIS quits: give it the time to unload its plugins
            process.wait(timeout=max(1.0, min(QGIS_EXIT_S, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # this test's own xvfb-run session only
        process.wait(timeout=30)
    assert status.is_file(), "QGIS did not report (the driver script did not run)"
    return json.loads(status.read_text(encoding="utf-8"))


@pytest.mark.skipif(shutil.which("xvfb-run") is None or _qgis_binary() is None, reason="needs Xvfb and QGIS")
def test_real_qgis_window_runs_the_dock_and_saves_a_screenshot(tmp_path):
    from sar_compressor.engine.simulate import write_scene

    raster = tmp_path / "scene.tif"
    write_scene(raster, 384, 384, looks=1, seed=5, kind="intensity", dtype="float32", georef=True)
    screenshot = ARTIFACTS / "qgis_window.png"
    ARTIFACTS.mkdir(exist_ok=True)
    before = set(Path(tempfile.gettempdir()).glob("sar_compressor_view_*"))
    status = run_qgis_window(raster, tmp_path / "qgis", screenshot)

    assert status["plugin_active"] and status["toolbar_action_on_plugins_toolbar"], status
    assert status["ok"], status
    assert status["metrics"]["psnr"] is not None and status["metrics"]["ratio"] > 1, status
    assert status["view"] == "dB stretch" and "linear intensity" in status["summary"], status
    assert status["screenshot"] and screenshot.stat().st_size > 10_000
    assert set(Path(tempfile.gettempdir()).glob("sar_compressor_view_*")) == before  # QGIS closed: previews gone
