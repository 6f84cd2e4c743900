"""Run INSIDE a real QGIS main window (qgis --code this_file): open the SAR Compressor dock, compress a raster,
save a screenshot of the whole screen, quit. Settings come from the environment (see tests/test_qgis_window.py):
SARZ_RASTER, SARZ_OUTPUT_FOLDER, SARZ_SCREENSHOT (and optionally SARZ_SCREENSHOT_BEFORE, before Run),
SARZ_QUALITY, SARZ_STATUS (a JSON file the test reads), SARZ_TIMEOUT_S."""

import json
import os
import time

import qgis.utils
from qgis.core import QgsApplication, QgsContrastEnhancement, QgsProject, QgsRasterLayer, QgsRasterMinMaxOrigin
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtGui import QGuiApplication

iface = qgis.utils.iface
status = {"plugin_active": "sar_compressor" in qgis.utils.active_plugins}
deadline = time.monotonic() + float(os.environ.get("SARZ_TIMEOUT_S", "150"))


def finish(ok: bool, note: str = "") -> None:
    status.update(ok=ok, note=note)
    dock = getattr(qgis.utils.plugins.get("sar_compressor"), "dock", None)
    if dock is not None:
        status.update(metrics=dock.last_metrics, error=dock.last_error, view=dock.view_combo.currentText())
        status["summary"] = dock.summary_label.text()
    QgsApplication.processEvents()
    screen = QGuiApplication.primaryScreen().grabWindow(0)  # the X screen, as a user would capture it
    status["screenshot"] = bool(screen.save(os.environ["SARZ_SCREENSHOT"]))
    with open(os.environ["SARZ_STATUS"], "w", encoding="utf-8") as handle:
        json.dump(status, handle)
    QgsProject.instance().setDirty(False)  # no "save the project?" question on exit
    QTimer.singleShot(200, iface.actionExit().trigger)


def start() -> None:
    plugin = qgis.utils.plugins.get("sar_compressor")
    if plugin is None:
        finish(False, "plugin not loaded")
        return
    iface.mainWindow().setGeometry(QGuiApplication.primaryScreen().availableGeometry())  # Xvfb has no WM
    layer = QgsRasterLayer(os.environ["SARZ_RASTER"], os.path.basename(os.environ["SARZ_RASTER"]))
    layer.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    QgsProject.instance().addMapLayer(layer)
    plugin.action.trigger()  # the toolbar button
    dock = plugin.dock
    status["toolbar_action_on_plugins_toolbar"] = plugin.action in iface.pluginToolBar().actions()
    iface.mainWindow().resizeDocks([dock], [760], Qt.Horizontal)
    dock.set_layer(layer)
    dock.set_output_folder(os.environ["SARZ_OUTPUT_FOLDER"])
    quality = os.environ.get("SARZ_QUALITY")
    if quality:
        dock.quality_spin.setValue(int(quality))
    dock.runFinished.connect(lambda ok: QTimer.singleShot(1500, lambda: show_results(ok)))
    before = os.environ.get("SARZ_SCREENSHOT_BEFORE")
    if before:  # the input summary and the expected size, before Run
        dock.settings_scroll.ensureWidgetVisible(dock.summary_label)
        QgsApplication.processEvents()
        status["screenshot_before"] = bool(QGuiApplication.primaryScreen().grabWindow(0).save(before))
    dock.start_run()
    QTimer.singleShot(1000, watchdog)


def show_results(ok: bool) -> None:
    """The metrics table in view above the comparison, then the screenshot."""
    dock = qgis.utils.plugins["sar_compressor"].dock
    dock.splitter.setSizes([520, 480])
    dock.settings_scroll.ensureWidgetVisible(dock.metrics_table)
    QTimer.singleShot(1500, lambda: finish(ok, "run finished"))


def watchdog() -> None:
    if "ok" in status:
        return
    if time.monotonic() > deadline:
        finish(False, "timed out")
    else:
        QTimer.singleShot(1000, watchdog)


QTimer.singleShot(2000, start)
