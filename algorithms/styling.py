"""Give a result layer the look of the raster it was made from, so both are compared with the same stretch.

Results are single-band: a style that reads only the compressed band is cloned and moved to band 1. A gray
renderer is only comparable if both sides use the same contrast enhancement (min/max): each layer's own default
stretch would hide exactly the differences a user wants to see. Used by the compress algorithm (results QGIS
loads on completion) and by the dock (the reconstruction it shows and loads). A .sarz layer, and a raster decoded
from one, is drawn on its header's dB stretch (`header_stretch`).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsRasterRenderer,
    QgsRasterShader,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor


def band_1_renderer(layer: QgsRasterLayer, band: int) -> Optional[QgsRasterRenderer]:
    """A copy of the layer's renderer reading band 1 instead of `band`, when it reads that band alone; else None."""
    source = layer.renderer()
    if source is None or list(source.usesBands()) != [band]:
        return None
    renderer = source.clone()
    return renderer if band == 1 or _move_to_band_1(renderer) else None


def _move_to_band_1(renderer: QgsRasterRenderer) -> bool:
    """Point a single-band renderer at band 1 (QGIS 3.22 has no generic setInputBand)."""
    if isinstance(renderer, QgsSingleBandGrayRenderer):
        renderer.setGrayBand(1)
        return True
    if isinstance(renderer, QgsSingleBandPseudoColorRenderer):
        renderer.setBand(1)
        return True
    return False


def matching_renderer(original: QgsRasterLayer, band: int, reconstruction: QgsRasterLayer) -> QgsRasterRenderer:
    """A renderer for `reconstruction` (one band, made from `band` of `original`) like the original's.

    The original's renderer moved to band 1 when it reads only the compressed band; otherwise (an RGB style,
    say) a gray renderer on band 1 stretched like the original band.
    """
    renderer = band_1_renderer(original, band)
    return renderer if renderer is not None else _gray_renderer_like(original, band, reconstruction)


def apply_matching_style(original: QgsRasterLayer, band: int, reconstruction: QgsRasterLayer) -> None:
    """Set the matching renderer on `reconstruction` (the layer takes ownership of it)."""
    reconstruction.setRenderer(matching_renderer(original, band, reconstruction))


def gray_stretch(layer: QgsRasterLayer, lo: float, hi: float) -> QgsSingleBandGrayRenderer:
    """Gray renderer on band 1 of `layer`, stretched linearly from `lo` to `hi`."""
    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), 1)
    enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(1))
    enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum, True)
    enhancement.setMinimumValue(lo)
    enhancement.setMaximumValue(hi)
    renderer.setContrastEnhancement(enhancement)
    return renderer


def _gray_renderer_like(
    original: QgsRasterLayer, band: int, reconstruction: QgsRasterLayer
) -> QgsSingleBandGrayRenderer:
    """Gray renderer on band 1 stretched to the 2-98 % cumulative cut of the original band."""
    provider = original.dataProvider()
    lo, hi = provider.cumulativeCut(band, 0.02, 0.98, original.extent(), 250000)
    renderer = gray_stretch(reconstruction, lo, hi)
    origin = QgsRasterMinMaxOrigin()
    origin.setLimits(QgsRasterMinMaxOrigin.CumulativeCut)
    renderer.setMinMaxOrigin(origin)
    return renderer


def source_renderer(layer: QgsRasterLayer, band: int, context: QgsProcessingContext) -> Optional[QgsRasterRenderer]:
    """The style for a Processing result made from `band` of `layer`, or None (QGIS's default style).

    Only for layers the user has loaded (their style is a choice) and renderers reading just that band.
    """
    project = context.project()
    if project is None or project.mapLayer(layer.id()) is None:
        return None
    return band_1_renderer(layer, band)


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Styles a result as QGIS loads it: the renderer of the layer it was made from (Compress's reconstruction), or
    the dB stretch of the .sarz it was decoded from (Decompress), so both look the same.

    QGIS keeps only a pointer to a post-processor: instances hold themselves in `_alive` until they ran.
    """

    _alive: set[StyleOnLoad] = set()

    def __init__(self, style: Callable[[QgsRasterLayer], None]) -> None:
        super().__init__()
        self._style = style
        StyleOnLoad._alive.add(self)

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 (QGIS API name)
        if isinstance(layer, QgsRasterLayer):
            self._style(layer)
            layer.triggerRepaint()
        StyleOnLoad._alive.discard(self)


def style_on_load(context: QgsProcessingContext, destination: str, renderer: Optional[QgsRasterRenderer]) -> None:
    """Attach `renderer` to a result that QGIS will load on completion (main thread)."""
    if renderer is not None and destination and context.willLoadLayerOnCompletion(destination):
        details = context.layerToLoadOnCompletionDetails(destination)
        details.setPostProcessor(StyleOnLoad(lambda layer: layer.setRenderer(renderer.clone())))


def stretch_on_load(
    context: QgsProcessingContext, destination: str, header: dict, name: str, default_name: str
) -> None:
    """Give a decoded result that QGIS will load on completion its .sarz's dB stretch, and `name` where it would load
    under its output's `default_name` (main thread): it loaded as "Decompressed raster" on QGIS's min/max stretch,
    linear intensity almost black."""
    if destination and context.willLoadLayerOnCompletion(destination):
        details = context.layerToLoadOnCompletionDetails(destination)
        if details.name == default_name:  # a model's output keeps the name its author gave it
            details.name = name
        details.setPostProcessor(StyleOnLoad(lambda layer: header_stretch(layer, header)))


RAMP_STOPS = 33
"""Grey stops of the dB stretch (evenly spaced in dB between the coded range's ends)."""


DB_PER_DECADE = {"intensity": 10.0, "complex": 10.0, "amplitude": 20.0}
"""dB per decade of the layer's values, by kind (complex decodes as intensity). The coded range of the other kinds,
dB and native (a display product's values), is in the layer's own values: their ramp is linear in them."""


def first_band(header: dict) -> dict:
    """The header entry of the layer's band 1: the lowest source band (entries are in coding order)."""
    return min(header["bands"], key=lambda band: band["source_band"])


def _layer_value(kind: str, coded: float) -> float:
    """The layer's value at a point of its band's coded range."""
    return 10.0 ** (coded / DB_PER_DECADE[kind]) if kind in DB_PER_DECADE else coded


def db_stretch(layer: QgsRasterLayer, header: dict) -> None:
    """A grey ramp evenly spaced in dB over band 1's coded range (linear in dB and native values), through the
    alpha band where the raster has one."""
    band = first_band(header)
    vmin, vmax = band["range"]["vmin"], band["range"]["vmax"]
    kind = band["kind"]
    items = []
    for i in range(RAMP_STOPS):
        t = i / (RAMP_STOPS - 1)
        grey = round(255 * t)
        value = _layer_value(kind, vmin + t * (vmax - vmin))
        items.append(QgsColorRampShader.ColorRampItem(value, QColor(grey, grey, grey)))
    ramp = QgsColorRampShader(items[0].value, items[-1].value)
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    ramp.setClip(False)
    ramp.setColorRampItemList(items)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(items[0].value)  # unset, a saved style or project read "nan" back: the legend
    renderer.setClassificationMax(items[-1].value)  # and the symbology showed nan / nan
    bands = sorted(header["bands"], key=lambda entry: entry["source_band"])
    alpha = [i for i, entry in enumerate(bands, start=1) if entry.get("color_interp") == "alpha"]
    if alpha:
        renderer.setAlphaBand(alpha[0])
    layer.setRenderer(renderer)


def is_db_stretch(renderer: Optional[QgsRasterRenderer]) -> bool:
    """Whether `renderer` is a dB stretch `db_stretch` made (RAMP_STOPS grey stops): the plugin's look, which a
    layer moved onto another file takes again for that file's range, where a user's own style is kept."""
    if not isinstance(renderer, QgsSingleBandPseudoColorRenderer) or renderer.shader() is None:
        return False
    items = renderer.shader().rasterShaderFunction().colorRampItemList()
    grey = all(item.color.red() == item.color.green() == item.color.blue() for item in items)
    return len(items) == RAMP_STOPS and grey


def header_stretch(layer: QgsRasterLayer, header: dict) -> None:
    """The dB stretch of a .sarz (`header`), where band 1's coded range is known."""
    if all(math.isfinite(first_band(header)["range"][k]) for k in ("vmin", "vmax")):
        db_stretch(layer, header)
