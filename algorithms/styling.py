"""Give a result layer the look of the raster it was made from, so both are compared with the same stretch.

Results are single-band: a style that reads only the compressed band is cloned and moved to band 1. A gray
renderer is only comparable if both sides use the same contrast enhancement (min/max): each layer's own default
stretch would hide exactly the differences a user wants to see. Used by the compress algorithm (results QGIS
loads on completion) and by the dock (the reconstruction it shows and loads).
"""

from __future__ import annotations

from typing import Optional

from qgis.core import (
    QgsContrastEnhancement,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsRasterRenderer,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
)


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


class StyleLikeSource(QgsProcessingLayerPostProcessorInterface):
    """Gives a loaded result the renderer of the layer it was made from, so both look the same.

    QGIS keeps only a pointer to a post-processor: instances hold themselves in `_alive` until they ran.
    """

    _alive: set[StyleLikeSource] = set()

    def __init__(self, renderer: QgsRasterRenderer) -> None:
        super().__init__()
        self._renderer = renderer
        StyleLikeSource._alive.add(self)

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 (QGIS API name)
        if isinstance(layer, QgsRasterLayer):
            layer.setRenderer(self._renderer.clone())
            layer.triggerRepaint()
        StyleLikeSource._alive.discard(self)


def style_on_load(context: QgsProcessingContext, destination: str, renderer: Optional[QgsRasterRenderer]) -> None:
    """Attach `renderer` to a result that QGIS will load on completion (main thread)."""
    if renderer is not None and destination and context.willLoadLayerOnCompletion(destination):
        details = context.layerToLoadOnCompletionDetails(destination)
        details.setPostProcessor(StyleLikeSource(renderer))
