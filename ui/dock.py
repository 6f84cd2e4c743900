"""The SAR Compressor dock: pick a raster, compress it in the background, compare original and reconstruction.

The compression itself is the Processing algorithm `sar_compressor:compress`, run as a task (see task_runner),
so the dock is a thin front end: it builds the parameters, shows progress, and presents the results.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
import weakref

from qgis.core import (
    QgsApplication,
    QgsMapLayerProxyModel,
    QgsProcessingParameterEnum,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox, QgsRasterBandComboBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDockWidget,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..algorithms.common import band_count, layer_dataset, layer_file, layer_problem
from ..algorithms.compress import KINDS
from ..algorithms.styling import apply_matching_style
from ..engine.codec.passes.quality import DEFAULT_QUALITY, N_QUALITIES
from ..engine.errors import OutputError
from . import dependencies, environment, output_folder, sarz_layers
from .comparison import ComparisonBuilder, is_native, view_names
from .input_summary import InputSummary, summarize_input, summary_html
from .linked_canvases import LinkedCanvases
from .metrics_table import KEYS as METRIC_KEYS
from .metrics_table import MetricsTable
from .task_runner import AlgorithmRun

ALGORITHM_ID = "sar_compressor:compress"
COMPARISON_WINDOW_SIZE = (1200, 700)  # the detached comparison window, in pixels


FIELD_MIN_WIDTH = 140
"""The narrowest the form's fields get (their texts are elided below it): with its labels, the settings fit a
320-pixel panel (a QGIS sweep could not make the panel narrower than 504 pixels)."""


def _wrapping_label(parent: QWidget) -> QLabel:
    """A word-wrapped label that takes the width it is given: a long path in its text (a word it cannot break) no
    longer sets the panel's narrowest width."""
    label = QLabel(parent)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
    return label


class SARCompressorDock(QDockWidget):
    """Dock panel: settings and input summary, Run/Cancel, progress with stage, metrics, and the comparison
    (linked original | reconstruction canvases, detachable into a window of its own)."""

    runFinished = pyqtSignal(bool)  # noqa: N815 (Qt naming); emitted once the results are shown (or the run failed)

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__("SAR Compressor", parent)
        self.setObjectName("SARCompressorDock")
        self.iface = iface
        self.run: AlgorithmRun | None = None
        self.reconstruction_layer: QgsRasterLayer | None = None
        self._scratch = ""  # the last run's folder for its reconstruction until it is kept; removed with the results
        self._scratch_removal: weakref.finalize | None = None  # or when the dock goes (QGIS exits, tests end)
        self.last_results: dict = {}
        self.last_metrics: dict = {}
        self.last_error = ""
        self.summary: InputSummary | None = None
        self._run_info: dict = {}
        self._engine = environment.EngineStatus(False, "Checking the Python environment…")
        self._folder_chosen = False  # the user picked the output folder: layer changes keep it
        self._setting_default = False  # the dock itself is filling the folder box
        self._measured_bpp: dict[tuple[str, int, int], float] = {}  # (layer id, band, quality) -> bpp of a run
        self._comparison: ComparisonBuilder | None = None
        self._new_comparison = False  # the next view shown is a new run's: at the original's full extent
        self._view_layers: list = []
        self.comparison_window: QDialog | None = None
        self._build_ui()
        self.refresh_environment()
        self._on_layer_changed(self.layer_combo.currentLayer())

    # ----------------------------------------------------------------- public API (also used by the tests)
    def refresh_environment(self) -> None:
        """Check the engine's dependencies again, and update the panel."""
        self._engine = environment.check_engine()
        self._update_state()

    def set_layer(self, layer: QgsRasterLayer) -> None:
        """Select the raster layer to compress (it must be in the project, like any layer in the picker)."""
        self.layer_combo.setLayer(layer)

    def set_output_folder(self, folder: str) -> None:
        """Write outputs into `folder` (what choosing it in the folder box does)."""
        self.output_widget.setFilePath(str(folder))

    def start_run(self) -> None:
        """Start compressing the selected layer in the task manager (what Run does)."""
        layer = self.layer_combo.currentLayer()
        if layer is None or not self.run_button.isEnabled():
            return
        band = self._band()
        try:
            sarz, reconstruction = self._output_paths(layer)
        except OutputError as exc:
            self._set_status(str(exc), error=True)
            return
        self.clear_results()
        self._scratch = tempfile.mkdtemp(prefix="sar_compressor_run_")  # the reconstruction, until it is kept
        self._scratch_removal = weakref.finalize(self, shutil.rmtree, self._scratch, ignore_errors=True)
        params = self._parameters(layer, band, sarz, os.path.join(self._scratch, os.path.basename(reconstruction)))
        self._run_info = {
            "layer_id": layer.id(),
            "layer_name": layer.name(),
            "keep_as": reconstruction,
            "band": band,
            "kind": self._display_kind(),
            "quality": self.quality_spin.value(),
            "target": self.target_spin.value(),
            "started": time.monotonic(),
            "sarz": sarz,
        }
        if self._folder_chosen:
            output_folder.remember_folder(os.path.dirname(sarz))
        self.run = AlgorithmRun(ALGORITHM_ID, params)
        self.run.progressChanged.connect(self._on_progress)
        self.run.stageChanged.connect(self._on_stage)
        self.run.finished.connect(self._on_run_finished)
        self._set_status(f"Compressing {layer.name()}…")
        self.progress_bar.setValue(0)
        self.run.start()
        self._update_state()

    def cancel_run(self) -> None:
        """Cancel the running compression (what Cancel does); the algorithm leaves no partial output."""
        if self.run is not None and self.run.running:
            self._set_status("Cancelling…")
            self.run.cancel()

    def load_reconstruction(self) -> QgsRasterLayer | None:
        """Add the last reconstruction to the project, styled like the original; returns the new layer. The run
        wrote it into a scratch folder (a float32 reconstruction is many times the .sarz: 31 MB beside a 1.3 MB file
        on a 3000x3000 scene, written on every run); loading keeps it, beside the .sarz, under a free name."""
        path = self.last_results.get("RECONSTRUCTION")
        original = self._original_layer()
        if not path or original is None:
            return None
        if os.path.dirname(path) == self._scratch:
            try:
                path = self._keep_reconstruction(path)
            except OSError as exc:
                self._set_status(f"Cannot keep the reconstruction beside the .sarz: {exc.strerror or exc}.", error=True)
                return None
        loaded = [layer for layer in QgsProject.instance().mapLayers().values() if layer.source() == path]
        if loaded:  # a second click added the same file again
            self._set_status(f"The reconstruction is in the project already: {path}")
            return loaded[0]
        layer = QgsRasterLayer(path, self._reconstruction_name(original))
        if not layer.isValid():
            self._set_status(f"Cannot open the reconstruction {path}.", error=True)
            return None
        apply_matching_style(original, self._run_info["band"], layer)
        QgsProject.instance().addMapLayer(layer)
        self._set_status(f"Kept and loaded the reconstruction: {path}")
        return layer

    def _keep_reconstruction(self, scratch_path: str) -> str:
        """Copy the run's reconstruction to its name beside the .sarz (numbered if taken meanwhile); the new path."""
        stem, suffix = os.path.splitext(self._run_info["keep_as"])
        target, n = self._run_info["keep_as"], 1
        while os.path.exists(target):
            n += 1
            target = f"{stem}_{n}{suffix}"
        shutil.copyfile(scratch_path, target)
        self.last_results["RECONSTRUCTION"] = target
        return target

    def install_dependencies(self) -> bool:
        """What 'Install dependencies' does: install the missing packages into the QGIS profile, then check again."""
        packages = dependencies.missing_packages()
        installed = bool(packages) and dependencies.install_dialog(self, packages)
        self.refresh_environment()
        return installed

    def output_folder(self) -> str:
        """The folder the next run writes into."""
        return self.output_widget.filePath().strip()

    def show_view(self, view: str) -> None:
        """Show one comparison view (comparison.view_names) of the last run."""
        index = self.view_combo.findText(view)
        if index >= 0:
            self.view_combo.setCurrentIndex(index)
            self._show_view()

    def detach_comparison(self, detached: bool = True) -> None:
        """Move the comparison into a resizable window of its own (or back into the dock)."""
        if detached and self.comparison_window is None:
            window = QDialog(self.iface.mainWindow() if self.iface is not None else None)
            window.setWindowTitle("SAR Compressor: comparison")
            window.setWindowFlags(window.windowFlags() | Qt.WindowMaximizeButtonHint | Qt.WindowMinimizeButtonHint)
            layout = QVBoxLayout(window)
            layout.setContentsMargins(4, 4, 4, 4)
            layout.addWidget(self.comparison_box)
            window.resize(*COMPARISON_WINDOW_SIZE)
            window.finished.connect(self._on_window_closed)
            self.comparison_window = window
            self.detach_button.setText("Back into the panel")
            window.show()
        elif not detached and self.comparison_window is not None:
            window, self.comparison_window = self.comparison_window, None
            self.splitter.addWidget(self.comparison_box)
            self.comparison_box.show()
            self.detach_button.setText("Open in a window")
            window.close()
            window.deleteLater()
        self.canvases.refresh()

    # ----------------------------------------------------------------- building the panel
    def _build_ui(self) -> None:
        settings = QWidget(self)
        layout = QVBoxLayout(settings)

        self.message_label = QLabel(settings)
        self.message_label.setWordWrap(True)
        self.message_label.setTextFormat(Qt.RichText)
        self.message_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.message_label.setStyleSheet(
            "QLabel { background: #fff4ce; border: 1px solid #d8a300; padding: 6px; color: #3a2c00; }"
        )
        self.message_label.hide()
        layout.addWidget(self.message_label)
        self.install_button = QPushButton("Install dependencies", settings)
        self.install_button.setToolTip(
            "pip-install what is missing into this QGIS profile's python/dependencies folder "
            "(constriction, rasterio, matplotlib; the system Python is not touched)"
        )
        self.install_button.clicked.connect(self.install_dependencies)
        self.install_button.hide()
        layout.addWidget(self.install_button)

        layout.addLayout(self._build_form(settings))
        layout.addLayout(self._build_buttons(settings))

        self.metrics_table = MetricsTable(settings)
        layout.addWidget(self.metrics_table)
        self.metrics_warning = self._warning_label(settings)
        layout.addWidget(self.metrics_warning)

        # the settings scroll; progress and status stay in sight below them (at the dock's default size the
        # scroll area ended at Run, and a run's progress and outcome were out of sight)
        top = QWidget(self)
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        scroll = self.settings_scroll = QScrollArea(top)
        scroll.setWidgetResizable(True)
        scroll.setWidget(settings)
        top_layout.addWidget(scroll, 1)
        self.progress_bar = QProgressBar(top)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        top_layout.addWidget(self.progress_bar)
        self.status_label = _wrapping_label(top)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        top_layout.addWidget(self.status_label)

        self.comparison_box = self._build_comparison(self)
        self.splitter = QSplitter(Qt.Vertical, self)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.comparison_box)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self.setWidget(self.splitter)

    def _build_comparison(self, parent: QWidget) -> QWidget:
        box = QWidget(parent)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("View", box))
        self.view_combo = QComboBox(box)
        self.view_combo.setToolTip(
            "dB stretch: both sides in dB with one stretch (the original's 1-99 %); the original layer's "
            "stretch; or the error map (reconstruction - original, dB)"
        )
        self.view_combo.activated.connect(self._on_view_activated)
        row.addWidget(self.view_combo, 1)
        self.detach_button = QPushButton("Open in a window", box)
        self.detach_button.setToolTip("Compare in a resizable window of its own (zoom and pan stay linked)")
        self.detach_button.clicked.connect(self._on_detach_clicked)
        row.addWidget(self.detach_button)
        layout.addLayout(row)
        self.canvases = LinkedCanvases(box)
        layout.addWidget(self.canvases, 1)
        self.load_button = QPushButton("Load reconstruction as layer", box)
        self.load_button.setToolTip("Add the reconstruction to the project with the original layer's style")
        self.load_button.setEnabled(False)
        self.load_button.clicked.connect(self.load_reconstruction)
        layout.addWidget(self.load_button)
        return box

    def _build_form(self, parent: QWidget) -> QFormLayout:
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # a narrow panel puts fields under their labels
        self.layer_combo = QgsMapLayerComboBox(parent)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.layerChanged.connect(self._on_layer_changed)
        form.addRow("Raster layer", self.layer_combo)

        self.band_combo = QgsRasterBandComboBox(parent)
        self.band_combo.setLayer(self.layer_combo.currentLayer())
        self.band_combo.bandChanged.connect(self._on_band_changed)
        form.addRow("Band", self.band_combo)
        for combo in (self.layer_combo, self.band_combo):  # long layer and band names: elided, not a wider panel
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
            combo.setMinimumWidth(FIELD_MIN_WIDTH)

        self.summary_label = _wrapping_label(parent)
        self.summary_label.setObjectName("inputSummary")
        self.summary_label.setTextFormat(Qt.RichText)
        form.addRow("Input", self.summary_label)

        self.quality_spin = QSpinBox(parent)
        self.quality_spin.setRange(1, N_QUALITIES)
        self.quality_spin.setValue(DEFAULT_QUALITY)
        self.quality_spin.valueChanged.connect(self._on_quality_changed)
        quality_row = QHBoxLayout()
        quality_row.addWidget(self.quality_spin)
        hint = QLabel(f"1 = smallest file, {N_QUALITIES} = best quality", parent)
        hint.setStyleSheet("color: gray;")
        hint.setWordWrap(True)
        quality_row.addWidget(hint, 1)
        form.addRow("Quality", quality_row)

        self.target_spin = QDoubleSpinBox(parent)
        self.target_spin.setRange(0.0, 32.0)
        self.target_spin.setDecimals(3)
        self.target_spin.setSingleStep(0.05)
        self.target_spin.setSpecialValueText("off: the quality")
        self.target_spin.setToolTip(
            "Code to at most this many bits per pixel instead of the quality (a few extra passes)"
        )
        self.target_spin.valueChanged.connect(self._on_target_changed)
        self.target_spin.setMinimumWidth(FIELD_MIN_WIDTH)  # its "off" text would set the panel's width
        form.addRow("Target bpp", self.target_spin)

        self.size_label = _wrapping_label(parent)
        self.size_label.setObjectName("expectedSize")
        form.addRow("Expected size", self.size_label)

        self.kind_combo = QComboBox(parent)
        self.kind_combo.addItems(self._enum_options("KIND", KINDS))
        self.kind_combo.setToolTip("What the pixel values are; auto reads the data type and band description")
        form.addRow("Input kind", self.kind_combo)

        self.output_widget = QgsFileWidget(parent)
        self.output_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_widget.fileChanged.connect(self._on_folder_changed)
        self.open_folder_button = QPushButton("Open folder", parent)
        self.open_folder_button.setToolTip("Show the output folder in the file manager")
        self.open_folder_button.clicked.connect(self._on_open_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.output_widget, 1)
        folder_row.addWidget(self.open_folder_button)
        form.addRow("Output folder", folder_row)
        self.folder_warning = self._warning_label(parent)
        form.addRow("", self.folder_warning)
        return form

    @staticmethod
    def _warning_label(parent: QWidget) -> QLabel:
        label = _wrapping_label(parent)
        label.setStyleSheet("color: #b42318;")
        label.hide()
        return label

    def _build_buttons(self, parent: QWidget) -> QHBoxLayout:
        row = QHBoxLayout()
        self.run_button = QPushButton("Run", parent)
        self.run_button.clicked.connect(self.start_run)
        self.cancel_button = QPushButton("Cancel", parent)
        self.cancel_button.clicked.connect(self.cancel_run)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        return row

    # ----------------------------------------------------------------- state
    def _update_state(self) -> None:
        running = self.run is not None and self.run.running
        ready = self._engine.ok
        readable = layer_dataset(self.layer_combo.currentLayer()) is not None  # else the summary says why
        self.run_button.setEnabled(ready and readable and not running and bool(self.output_folder()))
        self.cancel_button.setEnabled(self.run is not None and self.run.running)
        self.load_button.setEnabled(not running and bool(self.last_results.get("RECONSTRUCTION")))
        self.view_combo.setEnabled(self._comparison is not None)
        message = self._engine.message if not self._engine.ok else ""
        self.message_label.setText(message)
        self.message_label.setVisible(bool(message))
        self.install_button.setVisible(not self._engine.ok and bool(dependencies.missing_packages()))

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #b42318;" if error else "")
        self.status_label.setText(text)

    def _drop_mask_bands(self, layer) -> None:
        """Remove the band QGIS adds for a GDAL per-dataset mask (shown as 'Alpha'): the raster has no such band."""
        own = band_count(layer)
        for index in reversed(range(self.band_combo.count())):
            if (self.band_combo.itemData(index) or 0) > own:
                self.band_combo.removeItem(index)

    def _band(self) -> int:
        band = self.band_combo.currentBand()
        return band if band > 0 else 1

    # ----------------------------------------------------------------- slots
    def _on_layer_changed(self, layer) -> None:
        """A new layer: band 1 (or its only band), its folder as output default, a fresh summary, no old results."""
        if sip.isdeleted(self) or sip.isdeleted(self.canvases.left):  # the project was cleared after the panel
            return
        self.band_combo.setLayer(layer)
        if layer is not None:
            self._drop_mask_bands(layer)
            self.band_combo.setBand(1)
        if self.run is None or not self.run.running:
            self.clear_results()
            self._set_status("")
            self.progress_bar.setValue(0)
        if not self._folder_chosen:
            self._set_default_folder(layer)
        self._refresh_summary()
        self._update_state()

    # bound methods, not lambdas: a lambda holding self in a Qt connection is a cycle Python cannot collect
    def _on_view_activated(self, _index: int) -> None:
        self._show_view()

    def _on_detach_clicked(self) -> None:
        self.detach_comparison(self.comparison_window is None)

    def _on_window_closed(self, _result: int) -> None:
        self.detach_comparison(False)

    def _on_open_folder(self) -> None:
        output_folder.open_folder(self.output_folder())

    def _on_band_changed(self, _band: int) -> None:
        self._refresh_summary()

    def _on_folder_changed(self, folder: str) -> None:
        if not self._setting_default:
            self._folder_chosen = True
        warning = output_folder.temporary_warning(folder.strip())
        self.folder_warning.setText(warning.replace("/", "/\u200b"))  # a long path wraps at its separators
        self.folder_warning.setVisible(bool(warning))
        self.output_widget.setToolTip(folder)
        self._update_state()

    def _set_default_folder(self, layer) -> None:
        self._setting_default = True
        try:
            source = layer_file(layer)  # a .sarz layer's is its VRT, perhaps in the cache: the .sarz's folder
            self.output_widget.setFilePath(output_folder.default_folder(sarz_layers.sarz_of(source) or source))
        finally:
            self._setting_default = False

    def _on_quality_changed(self, _quality: int) -> None:
        self._update_expected_size()

    def _on_target_changed(self, value: float) -> None:
        self.quality_spin.setEnabled(value == 0)
        self._update_expected_size()

    def _on_progress(self, value: float) -> None:
        self.progress_bar.setValue(int(value))

    def _on_stage(self, text: str) -> None:
        if self.run is not None and self.run.running:
            self._set_status(f"{self._run_info.get('layer_name', '')}: {text}")

    def _on_run_finished(self, successful: bool, results: dict) -> None:
        if sip.isdeleted(self):  # the plugin was unloaded while the task ran
            return
        info = self._run_info
        original = self._original_layer()
        self.progress_bar.setValue(100 if successful else 0)
        if not successful and self.run.cancelled and os.path.exists(info["sarz"]):  # a fresh name: this run's
            # Compress keeps its outputs when cancelled while measuring: it said only "Cancelled."
            self.last_error = (
                f"Cancelled while measuring: {info['sarz']} is written whole; its metrics were not measured."
            )
            self._set_status(self.last_error)
            self._update_state()
            self.runFinished.emit(False)
            return
        if not successful or original is None:
            self.last_error = self.run.error_message() if not successful else self._input_removed_text(info)
            self._set_status(self.last_error, error=True)
            if self.iface is not None and not self.run.cancelled:
                self.iface.messageBar().pushWarning("SAR Compressor", self.last_error)
            self._update_state()
            self.runFinished.emit(False)
            return
        self.last_results = dict(results)
        seconds = time.monotonic() - info["started"]
        size = os.path.getsize(info["sarz"]) if os.path.exists(info["sarz"]) else 0
        self._set_status(f"Done in {seconds:.1f} s: {info['sarz']} ({size / 1024:.1f} KiB)")
        self._show_results(original, info["band"], results)
        self.settings_scroll.ensureWidgetVisible(self.metrics_table)  # the figures of the run, in sight
        self._update_state()
        self.runFinished.emit(True)

    @staticmethod
    def _input_removed_text(info: dict) -> str:
        """The run succeeded, its input layer is gone from the project: the comparison cannot be shown, but the
        file is written (it said only "The input layer was removed.", in red, with the bar at 100 %)."""
        written = f"Written: {info['sarz']}. " if os.path.exists(info["sarz"]) else ""
        return f"{written}The input layer was removed from the project: no comparison to show."

    # ----------------------------------------------------------------- input summary and expected size
    def _refresh_summary(self) -> None:
        """The chosen band's summary (engine.inspect: a strided sample, cheap on any size), shown in the panel."""
        layer = self.layer_combo.currentLayer()
        path = layer_dataset(layer)
        self.summary = None
        if path is None:
            self.summary_label.setText("" if layer is None else layer_problem(layer, "input") or "")
        else:
            try:
                self.summary = summarize_input(path, self._band())
                self.summary_label.setText(summary_html(self.summary))
            except Exception as exc:  # noqa: BLE001 (an unreadable file: said in the panel, Run reports it too)
                self.summary_label.setText(f"<span style='color:#b42318'>Cannot read the band: {exc}</span>")
        self._update_expected_size()

    def _update_expected_size(self) -> None:
        """The size the target allows (an upper bound: target x pixels), or how the quality's size is known."""
        layer = self.layer_combo.currentLayer()
        if layer is None:
            self.size_label.setText("")
            return
        pixels = layer.width() * layer.height()
        target = self.target_spin.value()
        measured = self._measured_bpp.get((layer.id(), self._band(), self.quality_spin.value()))
        if target:
            self.size_label.setText(f"at most {_size_text(target * pixels / 8)} (target {target:g} bpp x {pixels} px)")
        elif measured is not None:
            self.size_label.setText(
                f"{_size_text(measured * pixels / 8)} ({measured:.3f} bpp, measured by the last run at this quality)"
            )
        else:
            self.size_label.setText(
                "depends on the content at a given quality (measured by the first run; a target bpp fixes it; "
                f"for scale: 1 bpp = {_size_text(pixels / 8)})"
            )

    # ----------------------------------------------------------------- results
    def _display_kind(self) -> str:
        """The radiometry the views use: the chosen kind, else the detected one."""
        chosen = self.kind_combo.currentText()
        if chosen != "auto":
            return chosen
        return self.summary.kind if self.summary is not None else "intensity"

    def _show_results(self, original: QgsRasterLayer, band: int, results: dict) -> None:
        native = is_native(self._run_info["kind"])
        self.last_metrics = self.metrics_table.show_values(results, native=native)
        if self.last_metrics["bpp"] is not None and not self._run_info.get("target"):
            self._measured_bpp[(original.id(), band, self._run_info["quality"])] = self.last_metrics["bpp"]
            self._update_expected_size()
        flag = self.metrics_table.item(METRIC_KEYS.index("mean_ratio"), 0).toolTip()
        flagged = self.metrics_table.value_text("mean_ratio").endswith("⚠")
        self.metrics_warning.setText(flag if flagged else "")
        self.metrics_warning.setVisible(flagged)
        path = results.get("RECONSTRUCTION")
        layer = QgsRasterLayer(path, self._reconstruction_name(original)) if path else None
        if layer is None or not layer.isValid():
            self._set_status(f"The reconstruction {path} could not be opened.", error=True)
            return
        apply_matching_style(original, band, layer)
        self.reconstruction_layer = layer  # the canvas does not own it: keep it alive here
        self._comparison = ComparisonBuilder(original, band, layer, self._run_info["kind"])
        self.view_combo.clear()
        self._new_comparison = True
        self.view_combo.addItems(view_names(self._run_info["kind"]))
        self._show_view()

    def _show_view(self) -> None:
        if self._comparison is None:
            return
        view = self.view_combo.currentText()
        shown = self._comparison.layers(view)
        self.canvases.clear()
        self._view_layers = shown.owned  # the canvases do not own them
        unit = "native values" if is_native(self._run_info["kind"]) else "dB"
        right_title = f"Error (reconstruction - original, {unit})" if "Error" in view else "Reconstruction"
        self.canvases.set_titles(f"Original (band {self._run_info['band']})", right_title)
        extent = None if self._new_comparison else self.canvases.left.extent()  # a switch of views keeps the zoom
        self._new_comparison = False
        self.canvases.show_pair(shown.left, shown.right, extent)

    def clear_results(self) -> None:
        """Drop the last run's results: the canvases' layers, the comparison's preview files, the metrics (a new
        run or layer, and the plugin's unload: nothing of a comparison outlives the dock)."""
        self.canvases.clear()
        self._view_layers = []
        if self._comparison is not None:
            self._comparison.close()
            self._comparison = None
        self.view_combo.clear()
        self.reconstruction_layer = None
        self.last_results, self.last_metrics, self.last_error = {}, {}, ""
        self.metrics_table.clear_values()
        self.metrics_warning.hide()
        if self._scratch_removal is not None:
            if self.run is not None and self.run.running:  # the plugin's unload: the run goes, its folder after it
                self._scratch_removal.detach()
                self.run.leftovers.append(self._scratch)  # first: a task not started yet ends within cancel()
                self.run.cancel()
            self._scratch_removal()  # a no-op once detached
        self._scratch, self._scratch_removal = "", None

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.detach_comparison(False)
        super().closeEvent(event)

    # ----------------------------------------------------------------- parameters and outputs
    def _parameters(self, layer: QgsRasterLayer, band: int, sarz: str, reconstruction: str) -> dict:
        params = {
            "INPUT": layer.id(),
            "BAND": band,
            "KIND": self._enum_value("KIND", self.kind_combo.currentText()),
            "QUALITY": self.quality_spin.value(),
            "TARGET_BPP": self.target_spin.value(),
            "OUTPUT": sarz,
            "RECONSTRUCTION": reconstruction,
        }
        return params

    def _output_paths(self, layer: QgsRasterLayer) -> tuple[str, str]:
        """(.sarz, reconstruction GeoTIFF) in the output folder, named after the layer and the setting; a
        number is added rather than overwriting files already there. OutputError for a folder that is not an
        absolute path (a relative one landed in QGIS's working folder) or cannot be made (a traceback dialog)."""
        folder = self.output_folder()
        if not os.path.isabs(folder):
            raise OutputError(f"Choose an output folder as a full path (got {folder!r}).")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"Cannot use the output folder {folder}: {exc.strerror or exc}.") from exc
        if not os.access(folder, os.W_OK):  # read-only: said before the run, the last results kept
            raise OutputError(f"Cannot write into the output folder {folder} (read-only, or no permission).")
        stem = re.sub(r"[^\w.-]+", "_", _without_extension(layer.name())).strip("_") or "raster"
        if band_count(layer) > 1:  # band 2 became NAME_q5 and band 1 NAME_q5_2 (a GDAL mask is no band: band_count)
            stem = f"{stem}_b{self._band()}"
        target = self.target_spin.value()
        stem = f"{stem}_{target:g}bpp" if target else f"{stem}_q{self.quality_spin.value()}"
        candidate, n = stem, 1
        while any(os.path.exists(os.path.join(folder, name)) for name in _output_names(candidate)):
            n += 1
            candidate = f"{stem}_{n}"
        sarz, reconstruction = _output_names(candidate)
        return os.path.join(folder, sarz), os.path.join(folder, reconstruction)

    def _algorithm_parameter(self, name: str):
        algorithm = QgsApplication.processingRegistry().algorithmById(ALGORITHM_ID)
        return algorithm.parameterDefinition(name) if algorithm is not None else None

    def _enum_options(self, name: str, default: list[str]) -> list[str]:
        definition = self._algorithm_parameter(name)
        if isinstance(definition, QgsProcessingParameterEnum):
            return list(definition.options())
        return list(default)

    def _enum_value(self, name: str, text: str):
        """The value Processing expects for an enum: the string itself or its index."""
        definition = self._algorithm_parameter(name)
        if isinstance(definition, QgsProcessingParameterEnum) and not definition.usesStaticStrings():
            options = list(definition.options())
            return options.index(text) if text in options else text
        return text

    def _original_layer(self) -> QgsRasterLayer | None:
        """The layer of the last run, if it is still in the project."""
        return QgsProject.instance().mapLayer(self._run_info.get("layer_id", ""))

    @staticmethod
    def _reconstruction_name(original: QgsRasterLayer) -> str:
        return f"{_without_extension(original.name())} (reconstruction)"


def _without_extension(name: str) -> str:
    """A layer's name without the raster file extension QGIS names layers with (not big.tif_q5.sarz)."""
    return re.sub(r"(?i)\.(tiff?|vrt|img|jp2|nc|h5|hdf5?|dat|sarz)$", "", name)


def _output_names(stem: str) -> tuple[str, str]:
    return f"{stem}.sarz", f"{stem}_reconstruction.tif"


def _size_text(size_bytes: float) -> str:
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    power = min(len(units) - 1, int(math.log(max(size_bytes, 1.0), 1024)))
    return f"{size_bytes / 1024**power:.1f} {units[power]}" if power else f"{size_bytes:.0f} bytes"
