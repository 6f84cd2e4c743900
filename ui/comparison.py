"""What the dock's two canvases show: the compressed band on both sides, with one renderer.

Linear SAR (intensity, amplitude, complex) is unreadable with a linear stretch: a few bright targets set the
maximum and the rest is black. The default view is therefore a dB stretch: both bands are converted to dB on a
decimated copy (nearest, PREVIEW_SIDE pixels a side at most, written as small GeoTIFFs on the same grid) and
shown with ONE gray renderer stretched to the original's 1-99 % dB percentiles. dB and native rasters get the same
percentile stretch on their own values. The other views: the original layer's own stretch applied to the
compressed band on both sides, and the error map (reconstruction - original, in dB) next to the original.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

from ..algorithms.common import layer_dataset
from ..algorithms.preview import PREVIEW_SIDE, read_preview
from ..algorithms.styling import band_1_renderer, gray_stretch, matching_renderer

DB_STRETCH = "dB stretch"
PERCENTILE_STRETCH = "Percentile stretch"
ORIGINAL_STRETCH = "Original layer's stretch"
ERROR_MAP = "Error map (dB)"
NATIVE_ERROR_MAP = "Error map (native values)"  # a band coded as its own values: the error is in them, not in dB
LINEAR_KINDS = ("intensity", "amplitude", "complex")
STRETCH_PERCENTILES = (1.0, 99.0)  # of the original's (dB) values: both sides share this stretch
ERROR_PERCENTILE = 99.0  # the error map's colour scale spans +-this percentile of |error|


def view_names(kind: str) -> list[str]:
    """The views offered for a raster of `kind`, the default first (a dB stretch for linear SAR)."""
    first = DB_STRETCH if kind in LINEAR_KINDS else PERCENTILE_STRETCH
    return [first, ORIGINAL_STRETCH, NATIVE_ERROR_MAP if is_native(kind) else ERROR_MAP]


def is_native(kind: str) -> bool:
    """Whether a band of `kind` is shown in its own values (not dB): native and display (uint8) products."""
    return kind in ("native", "uint8")


@dataclass
class ComparisonLayers:
    """The layers one view shows (left, right); `owned` are layers made for the view (the caller keeps them)."""

    left: QgsRasterLayer
    right: QgsRasterLayer
    owned: list


class ComparisonBuilder:
    """Makes the layers of each view for one (original band, reconstruction) pair; keeps the preview files in
    a folder of its own, removed by `close()`, or when the builder is dropped or Python exits without it (a dock
    destroyed with its plugin, QGIS closed with a comparison on screen): each run's previews are about 1 MB, and
    a folder per comparison left in the temporary folder adds up (879 MB of them were found after two days of
    test runs, before this)."""

    def __init__(self, original: QgsRasterLayer, band: int, reconstruction: QgsRasterLayer, kind: str) -> None:
        self.original, self.band, self.reconstruction, self.kind = original, band, reconstruction, kind
        self.folder = tempfile.mkdtemp(prefix="sar_compressor_view_")
        self._remove_folder = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)
        self._previews: dict[str, str] = {}

    def close(self) -> None:
        self._remove_folder()

    def layers(self, view: str) -> ComparisonLayers:
        """The left and right layers of `view` (one of view_names)."""
        if view == ORIGINAL_STRETCH:
            return self._original_stretch()
        left, right, error = self._preview_layers()
        renderer = self._shared_gray(left)
        left.setRenderer(renderer.clone())
        if view in (ERROR_MAP, NATIVE_ERROR_MAP):
            error.setRenderer(_error_renderer(error, "" if is_native(self.kind) else " dB"))
            return ComparisonLayers(left, error, [left, error])
        right.setRenderer(renderer.clone())
        return ComparisonLayers(left, right, [left, right])

    # ------------------------------------------------------------------ views
    def _original_stretch(self) -> ComparisonLayers:
        """The original's renderer when it reads only the compressed band; else gray on that band, both sides
        with the same min/max (a colour composite would compare the other bands too)."""
        right = QgsRasterLayer(self.reconstruction.source(), self.reconstruction.name())
        right.setRenderer(matching_renderer(self.original, self.band, right))
        if band_1_renderer(self.original, self.band) is not None:
            return ComparisonLayers(self.original, right, [right])
        left = QgsRasterLayer(self.original.source(), self.original.name())
        gray = QgsSingleBandGrayRenderer(left.dataProvider(), self.band)
        gray.setContrastEnhancement(QgsContrastEnhancement(right.renderer().contrastEnhancement()))
        left.setRenderer(gray)
        return ComparisonLayers(left, right, [left, right])

    def _preview_layers(self) -> tuple[QgsRasterLayer, QgsRasterLayer, QgsRasterLayer]:
        """(original, reconstruction, error) display values as layers on the decimated grid."""
        if not self._previews:
            self._write_previews()
        return tuple(QgsRasterLayer(self._previews[name], name) for name in ("original", "reconstruction", "error"))

    def _write_previews(self) -> None:
        import numpy as np

        original = read_preview(_file_of(self.original), self.band, PREVIEW_SIDE)
        rebuilt = read_preview(_file_of(self.reconstruction), 1, PREVIEW_SIDE)
        left, right = display_values(original.data, self.kind), display_values(rebuilt.data, self.kind)
        rows, cols = min(left.shape[0], right.shape[0]), min(left.shape[1], right.shape[1])
        left, right = left[:rows, :cols], right[:rows, :cols]
        with np.errstate(invalid="ignore"):
            error = right - left
        for name, data in (("original", left), ("reconstruction", right), ("error", error)):
            path = os.path.join(self.folder, f"{name}.tif")
            _write_like(path, data, original)
            self._previews[name] = path

    def _shared_gray(self, left: QgsRasterLayer) -> QgsSingleBandGrayRenderer:
        """Gray on band 1 stretched to the original's percentiles (the same object is cloned on both sides)."""
        return gray_stretch(left, *self.stretch_range())

    def stretch_range(self) -> tuple[float, float]:
        """The shared stretch: the original's display values at STRETCH_PERCENTILES."""
        import numpy as np

        if not self._previews:
            self._write_previews()
        values = _finite(_read(self._previews["original"]))
        if values.size == 0:
            return 0.0, 1.0
        lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
        return (lo, hi) if hi > lo else (lo, lo + 1.0)


def display_values(data, kind: str):
    """What the canvases show for `kind`: dB for linear SAR (10 log10 of intensity, |a|^2 first for amplitude
    and complex), the values themselves for dB and native rasters. NaN stays NaN; zeros become NaN (no dB)."""
    import numpy as np

    if kind not in LINEAR_KINDS:
        return np.real(data).astype(np.float32)
    power = np.abs(data) ** 2 if kind in ("amplitude", "complex") else np.real(data)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(np.where(power > 0, power, np.nan))
    return db.astype(np.float32)


def _error_renderer(layer: QgsRasterLayer, unit: str) -> QgsSingleBandPseudoColorRenderer:
    """Blue (reconstruction darker) - white - red (brighter), symmetric around 0 (`unit`: the legend's, " dB" or
    "" for native values)."""
    import numpy as np

    values = np.abs(_finite(_read(layer.source())))
    span = float(np.percentile(values, ERROR_PERCENTILE)) if values.size else 1.0
    span = span if span > 0 and math.isfinite(span) else 1.0
    ramp = QgsColorRampShader(-span, span)
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    ramp.setColorRampItemList(
        [
            QgsColorRampShader.ColorRampItem(-span, QColor("#2166ac"), f"{-span:.2f}{unit}"),
            QgsColorRampShader.ColorRampItem(0.0, QColor("#f7f7f7"), f"0{unit}"),
            QgsColorRampShader.ColorRampItem(span, QColor("#b2182b"), f"+{span:.2f}{unit}"),
        ]
    )
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(-span)
    renderer.setClassificationMax(span)
    return renderer


def _file_of(layer: QgsRasterLayer) -> str:
    """What GDAL opens for the layer (a file, a zipped product, a netCDF variable; else its source as it is)."""
    return layer_dataset(layer) or layer.source()


def _finite(values):
    import numpy as np

    return values[np.isfinite(values)]


def _read(path: str):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1, masked=False)


def _write_like(path: str, data, preview) -> None:
    """A float32 GeoTIFF of `data` on the preview's grid: the source transform scaled to the decimation."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import Affine

    rows, cols = data.shape
    source = preview.transform
    if source == Affine.identity():  # no georeferencing: QGIS shows pixel rows going down from y = 0
        source = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    transform = source * Affine.scale(preview.width / cols, preview.height / rows)
    profile = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": 1,
        "dtype": "float32",
        "nodata": float("nan"),
        "transform": transform,
    }
    if preview.crs_wkt:
        profile["crs"] = preview.crs_wkt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data.astype("float32"), 1)
