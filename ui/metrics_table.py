"""The dock's metrics table: each figure of the compress algorithm with its domain, 'n/a' explained, bias flagged."""

from __future__ import annotations

from dataclasses import dataclass

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

MEAN_RATIO_TOLERANCE = 0.05  # a mean ratio further than this from 1 is a radiometric bias worth a flag (5 %)


@dataclass(frozen=True)
class Metric:
    key: str  # the compress algorithm's output, lower case
    label: str
    fmt: str
    domain: str  # in what the figure is measured (as in the README and Evaluate's report)
    not_applicable: str  # why it can be n/a
    native_domain: str = ""  # the domain for a band coded as its own values ('native'), where it differs


NATIVE = "values coded as they are ('native': display products, DEMs), which have no linear backscatter"


METRICS = (
    Metric("ratio", "Compression ratio", "{:.1f} : 1", "raw raster bytes / .sarz bytes", "no file was written"),
    Metric("bpp", "Bits per pixel", "{:.3f}", "8 x .sarz bytes / pixels (the whole file)", "no file was written"),
    Metric(
        "psnr",
        "PSNR",
        "{:.2f} dB",
        "dB, both clipped to the original's 0.5-99.5 % range; peak = range width",
        "no valid pixel to compare",
        "native values, both clipped to the original's 0.5-99.5 % range; peak = range width",
    ),
    Metric(
        "ssim",
        "SSIM",
        "{:.4f}",
        "dB clipped to the 0.5-99.5 % range, scaled to [0, 1]; 11x11 gaussian window",
        "the raster is smaller than the 11x11 window",
        "native values clipped to the 0.5-99.5 % range, scaled to [0, 1]; 11x11 gaussian window",
    ),
    Metric(
        "mean_ratio",
        "Mean ratio",
        "{:.4f}",
        "linear intensity: mean(reconstruction) / mean(original); 1 = unbiased",
        f"undefined for {NATIVE}",
    ),
    Metric(
        "enl_ratio",
        "ENL ratio",
        "{:.3f}",
        "linear intensity, the most homogeneous 10 % of 15x15 windows; > 1 = smoother than the original",
        f"no homogeneous area was found, or {NATIVE}",
    ),
    Metric(
        "epi",
        "Edge preservation",
        "{:.4f}",
        "dB, correlation of 3x3 Laplacians; 1 = edges intact",
        "the raster has no edges to compare (flat) or is too small",
        "native values, correlation of 3x3 Laplacians; 1 = edges intact",
    ),
    Metric(
        "db_rmse",
        "dB RMSE",
        "{:.3f} dB",
        "dB, unclipped, all valid pixels of positive intensity",
        f"undefined for {NATIVE}",
    ),
)
KEYS = tuple(metric.key for metric in METRICS)


def number(value) -> float | None:
    """A finite-or-infinite float, None for missing values and NaN."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result else None


def format_metric(metric: Metric, value) -> str:
    result = number(value)
    return "n/a" if result is None else metric.fmt.format(result)


def mean_ratio_flag(value) -> str:
    """A warning when the mean linear backscatter moved by more than MEAN_RATIO_TOLERANCE, else ''."""
    result = number(value)
    if result is None or abs(result - 1.0) <= MEAN_RATIO_TOLERANCE:
        return ""
    return (
        f"The reconstruction's mean backscatter is {100 * (result - 1):+.1f} % off the original's: a radiometric "
        "bias (use mean correction 'block', or a higher quality)."
    )


class MetricsTable(QTableWidget):
    """Figure | value | domain; the domain and the reason for an n/a are also tooltips."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(len(METRICS), 2, parent)
        self.setHorizontalHeaderLabels(["Value", "Measured in"])
        self.setVerticalHeaderLabels([metric.label for metric in METRICS])
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.NoSelection)
        self.setWordWrap(False)
        for row, metric in enumerate(METRICS):
            self.verticalHeaderItem(row).setToolTip(metric.domain)
            self._set(row, "", metric.domain)
        self.resizeRowsToContents()
        self.setMinimumHeight(self.verticalHeader().length() + self.horizontalHeader().height() + 4)

    def show_values(self, results: dict, native: bool = False) -> dict:
        """Fill the table from the algorithm's outputs (upper-case keys; `native`: the band was coded as its own
        values, where PSNR, SSIM and edges are measured in them, not in dB); returns {key: float | None}."""
        values = {}
        for row, metric in enumerate(METRICS):
            value = results.get(metric.key.upper())
            values[metric.key] = number(value)
            text = format_metric(metric, value)
            domain = (native and metric.native_domain) or metric.domain
            tip = domain if text != "n/a" else f"n/a: {metric.not_applicable}"
            flag = mean_ratio_flag(value) if metric.key == "mean_ratio" else ""
            self._set(row, text + (" ⚠" if flag else ""), flag or tip, warn=bool(flag), domain=domain)
        return values

    def clear_values(self) -> None:
        for row, metric in enumerate(METRICS):
            self._set(row, "", metric.domain)

    def value_text(self, key: str) -> str:
        return self.item(KEYS.index(key), 0).text()

    def _set(self, row: int, text: str, tip: str, warn: bool = False, domain: str = "") -> None:
        item = QTableWidgetItem(text)
        item.setToolTip(tip)
        if warn:
            item.setForeground(QColor("#b42318"))
        self.setItem(row, 0, item)
        cell = QTableWidgetItem(domain or METRICS[row].domain)
        cell.setToolTip(cell.text())
        cell.setForeground(QColor(Qt.darkGray))
        self.setItem(row, 1, cell)
