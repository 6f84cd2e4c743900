"""The SAR Compressor dock: pick a raster, compress it in the background, compare original and reconstruction.

The compression itself is the Processing algorithm `sar_compressor:compress`, run as a task (see task_runner),
so the dock is a thin front end: it builds the parameters, shows progress, and presents the results.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time

from qgis.core import (
    QgsApplication,
    QgsMapLayerProxyModel,
    QgsProcessingParameterEnum,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox, QgsRasterBandComboBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..algorithms.compress import KINDS
from ..algorithms.styling import apply_matching_style
from ..engine.quality import DEFAULT_QUALITY, N_QUALITIES
from . import environment
from .linked_canvases import LinkedCanvases
from .task_runner import AlgorithmRun

ALGORITHM_ID = "sar_compressor:compress"
# (key in last_metrics: the compress algorithm's output in lower case, row label, tooltip)
METRICS = [
    ("ratio", "Compression ratio", "Input file size / .sarz size"),
    ("bpp", "Bits per pixel", "Size of the .sarz in bits per raster pixel"),
    ("psnr", "PSNR", "Peak signal-to-noise ratio of the reconstruction (dB domain)"),
    ("ssim", "SSIM", "Structural similarity of the reconstruction (dB domain)"),
    (
        "mean_ratio",
        "Mean ratio",
        "Mean linear intensity of the reconstruction / of the original (1 = unbiased)",
    ),
]


class SARCompressorDock(QDockWidget):
    """Dock panel: settings, Run/Cancel, progress, metrics, linked original | reconstruction canvases."""

    runFinished = pyqtSignal(bool)  # noqa: N815 (Qt naming); emitted once the results are shown (or the run failed)

    def __init__(self, iface=None, parent: QWidget | None = None) -> None:
        super().__init__("SAR Compressor", parent)
        self.setObjectName("SARCompressorDock")
        self.iface = iface
        self.run: AlgorithmRun | None = None
        self.reconstruction_layer: QgsRasterLayer | None = None
        self.last_results: dict = {}
        self.last_metrics: dict = {}
        self.last_error = ""
        self._run_info: dict = {}
        self._engine = environment.EngineStatus(False, "Checking the Python environment…")
        self._build_ui()
        self.refresh_environment()

    # ----------------------------------------------------------------- public API (also used by the tests)
    def refresh_environment(self) -> None:
        """Check the engine's dependencies again, and update the panel."""
        self._engine = environment.check_engine()
        self._update_state()

    def set_layer(self, layer: QgsRasterLayer) -> None:
        """Select the raster layer to compress (it must be in the project, like any layer in the picker)."""
        self.layer_combo.setLayer(layer)

    def set_output_folder(self, folder: str) -> None:
        """Write outputs into `folder` instead of a fresh temporary folder."""
        self.output_widget.setFilePath(str(folder))

    def start_run(self) -> None:
        """Start compressing the selected layer in the task manager (what Run does)."""
        layer = self.layer_combo.currentLayer()
        if layer is None or not self.run_button.isEnabled():
            return
        band = self.band_combo.currentBand() if self.band_combo.currentBand() > 0 else 1
        sarz, reconstruction, temporary = self._output_paths(layer)
        params = self._parameters(layer, band, sarz, reconstruction)
        self._clear_results()
        self._run_info = {
            "layer_id": layer.id(),
            "band": band,
            "started": time.monotonic(),
            "sarz": sarz,
            "temporary_folder": temporary,
        }
        self.run = AlgorithmRun(ALGORITHM_ID, params)
        self.run.progressChanged.connect(self._on_progress)
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
        """Add the last reconstruction to the project, styled like the original; returns the new layer."""
        path = self.last_results.get("RECONSTRUCTION")
        original = self._original_layer()
        if not path or original is None:
            return None
        layer = QgsRasterLayer(path, self._reconstruction_name(original))
        if not layer.isValid():
            self._set_status(f"Cannot open the reconstruction {path}.", error=True)
            return None
        apply_matching_style(original, self._run_info["band"], layer)
        QgsProject.instance().addMapLayer(layer)
        return layer

    # ----------------------------------------------------------------- building the panel
    def _build_ui(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)

        self.message_label = QLabel(body)
        self.message_label.setWordWrap(True)
        self.message_label.setTextFormat(Qt.RichText)
        self.message_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.message_label.setStyleSheet(
            "QLabel { background: #fff4ce; border: 1px solid #d8a300; padding: 6px; color: #3a2c00; }"
        )
        self.message_label.hide()
        layout.addWidget(self.message_label)

        layout.addLayout(self._build_form(body))
        layout.addLayout(self._build_buttons(body))

        self.progress_bar = QProgressBar(body)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        layout.addWidget(self.progress_bar)

        self.status_label = QLabel(body)
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)

        self.metrics_table = self._build_metrics_table(body)
        layout.addWidget(self.metrics_table)

        self.canvases = LinkedCanvases(body)
        layout.addWidget(self.canvases, 1)

        self.load_button = QPushButton("Load reconstruction as layer", body)
        self.load_button.setToolTip("Add the reconstruction to the project with the original layer's style")
        self.load_button.setEnabled(False)
        self.load_button.clicked.connect(self.load_reconstruction)
        layout.addWidget(self.load_button)

        self.setWidget(body)

    def _build_form(self, parent: QWidget) -> QFormLayout:
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox(parent)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.layerChanged.connect(self._on_layer_changed)
        form.addRow("Raster layer", self.layer_combo)

        self.band_combo = QgsRasterBandComboBox(parent)
        self.band_combo.setLayer(self.layer_combo.currentLayer())
        form.addRow("Band", self.band_combo)

        self.quality_spin = QSpinBox(parent)
        self.quality_spin.setRange(1, N_QUALITIES)
        self.quality_spin.setValue(DEFAULT_QUALITY)
        quality_row = QHBoxLayout()
        quality_row.addWidget(self.quality_spin)
        hint = QLabel(f"1 = smallest file, {N_QUALITIES} = best quality", parent)
        hint.setStyleSheet("color: gray;")
        quality_row.addWidget(hint, 1)
        form.addRow("Quality", quality_row)

        self.target_spin = QDoubleSpinBox(parent)
        self.target_spin.setRange(0.0, 32.0)
        self.target_spin.setDecimals(3)
        self.target_spin.setSingleStep(0.05)
        self.target_spin.setSpecialValueText("off (use the quality)")
        self.target_spin.setToolTip(
            "Code to at most this many bits per pixel instead of the quality (a few extra passes)"
        )
        self.target_spin.valueChanged.connect(lambda value: self.quality_spin.setEnabled(value == 0))
        form.addRow("Target bpp", self.target_spin)

        self.kind_combo = QComboBox(parent)
        self.kind_combo.addItems(self._enum_options("KIND", KINDS))
        self.kind_combo.setToolTip("What the pixel values are; auto reads the data type and band description")
        form.addRow("Input kind", self.kind_combo)

        self.output_widget = QgsFileWidget(parent)
        self.output_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_widget.lineEdit().setPlaceholderText("[temporary folder]")
        form.addRow("Output folder", self.output_widget)
        return form

    def _build_buttons(self, parent: QWidget) -> QHBoxLayout:
        row = QHBoxLayout()
        self.run_button = QPushButton("Run", parent)
        self.run_button.clicked.connect(self.start_run)
        self.cancel_button = QPushButton("Cancel", parent)
        self.cancel_button.clicked.connect(self.cancel_run)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        return row

    def _build_metrics_table(self, parent: QWidget) -> QTableWidget:
        table = QTableWidget(len(METRICS), 1, parent)
        table.setHorizontalHeaderLabels(["Value"])
        table.setVerticalHeaderLabels([label for _, label, _ in METRICS])
        for row, (_, _, tip) in enumerate(METRICS):
            table.verticalHeaderItem(row).setToolTip(tip)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        table.horizontalHeader().hide()
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        table.setSelectionMode(QAbstractItemView.NoSelection)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        table.resizeRowsToContents()
        table.setFixedHeight(table.verticalHeader().length() + 2 * table.frameWidth())
        return table

    # ----------------------------------------------------------------- state
    def _update_state(self) -> None:
        running = self.run is not None and self.run.running
        ready = self._engine.ok
        has_layer = self.layer_combo.currentLayer() is not None
        self.run_button.setEnabled(ready and has_layer and not running)
        self.cancel_button.setEnabled(self.run is not None and self.run.running)
        self.load_button.setEnabled(not running and bool(self.last_results.get("RECONSTRUCTION")))
        message = self._engine.message if not self._engine.ok else ""
        self.message_label.setText(message)
        self.message_label.setVisible(bool(message))

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #b42318;" if error else "")
        self.status_label.setText(text)

    # ----------------------------------------------------------------- slots
    def _on_layer_changed(self, layer) -> None:
        self.band_combo.setLayer(layer)
        self._update_state()

    def _on_progress(self, value: float) -> None:
        self.progress_bar.setValue(int(value))

    def _on_run_finished(self, successful: bool, results: dict) -> None:
        if sip.isdeleted(self):  # the plugin was unloaded while the task ran
            return
        info = self._run_info
        original = self._original_layer()
        self.progress_bar.setValue(100 if successful else 0)
        if not successful or original is None:
            self.last_error = self.run.error_message() if not successful else "The input layer was removed."
            self._set_status(self.last_error, error=True)
            if self.iface is not None and not self.run.cancel_requested:
                self.iface.messageBar().pushWarning("SAR Compressor", self.last_error)
            self._remove_temporary_outputs()
            self._update_state()
            self.runFinished.emit(False)
            return
        self.last_results = dict(results)
        seconds = time.monotonic() - info["started"]
        size = os.path.getsize(info["sarz"]) if os.path.exists(info["sarz"]) else 0
        self._set_status(f"Done in {seconds:.1f} s: {os.path.basename(info['sarz'])} ({size / 1024:.1f} KiB)")
        self.status_label.setToolTip(os.path.dirname(info["sarz"]))
        self._show_results(original, info["band"], results)
        self._update_state()
        self.runFinished.emit(True)

    # ----------------------------------------------------------------- results
    def _show_results(self, original: QgsRasterLayer, band: int, results: dict) -> None:
        for key, _, _ in METRICS:
            self._set_metric(key, results.get(key.upper()))
        path = results.get("RECONSTRUCTION")
        layer = QgsRasterLayer(path, self._reconstruction_name(original)) if path else None
        if layer is None or not layer.isValid():
            self._set_status(f"The reconstruction {path} could not be opened.", error=True)
            return
        apply_matching_style(original, band, layer)
        self.canvases.clear()
        self.reconstruction_layer = layer  # the canvas does not own it: keep it alive here
        self.canvases.show_pair(original, layer)

    def _set_metric(self, key: str, value) -> None:
        row = [k for k, _, _ in METRICS].index(key)
        self.last_metrics[key] = _number(value)
        self.metrics_table.setItem(row, 0, QTableWidgetItem(_format_metric(key, value)))

    def _clear_results(self) -> None:
        self.canvases.clear()
        self.reconstruction_layer = None
        self.last_results, self.last_metrics, self.last_error = {}, {}, ""
        for row in range(len(METRICS)):
            self.metrics_table.setItem(row, 0, QTableWidgetItem(""))

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

    def _output_paths(self, layer: QgsRasterLayer) -> tuple[str, str, str | None]:
        """(.sarz, reconstruction GeoTIFF, the temporary folder made for them or None)."""
        folder = self.output_widget.filePath().strip()
        temporary = None
        if folder:
            os.makedirs(folder, exist_ok=True)
        else:
            folder = temporary = tempfile.mkdtemp(prefix="sar_compressor_", dir=QgsProcessingUtils.tempFolder())
        stem = re.sub(r"[^\w.-]+", "_", layer.name()).strip("_") or "raster"
        target = self.target_spin.value()
        stem = f"{stem}_{target:g}bpp" if target else f"{stem}_q{self.quality_spin.value()}"
        return (
            os.path.join(folder, f"{stem}.sarz"),
            os.path.join(folder, f"{stem}_reconstruction.tif"),
            temporary,
        )

    def _remove_temporary_outputs(self) -> None:
        """A failed run into a folder the dock created leaves nothing behind."""
        folder = self._run_info.get("temporary_folder")
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

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
        return f"{original.name()} (reconstruction)"


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN -> None


def _format_metric(key: str, value) -> str:
    number = _number(value)
    if number is None:
        return "n/a"
    formats = {
        "ratio": "{:.1f} : 1",
        "bpp": "{:.3f}",
        "psnr": "{:.2f} dB",
        "ssim": "{:.4f}",
        "mean_ratio": "{:.4f}",
    }
    return formats[key].format(number)
