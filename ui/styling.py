"""Give the reconstruction the original's look, so the two are compared with the same stretch.

A single-band gray renderer is only comparable if both sides use the same contrast enhancement (min/max):
each layer's own default stretch would hide exactly the differences a user wants to see.
"""

from __future__ import annotations

from qgis.core import (
    QgsContrastEnhancement,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsRasterRenderer,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
)


def matching_renderer(original: QgsRasterLayer, band: int, reconstruction: QgsRasterLayer) -> QgsRasterRenderer:
    """A renderer for `reconstruction` (one band, made from `band` of `original`) like the original's.

    The original's renderer is cloned (moved to band 1) when it reads only the compressed band; otherwise
    (an RGB style, say) a gray renderer on band 1 stretched like the original band.
    """
    source = original.renderer()
    if source is not None and list(source.usesBands()) == [band]:
        renderer = source.clone()
        if band == 1 or _move_to_band_1(renderer):
            return renderer
    return _gray_renderer_like(original, band, reconstruction)


def _move_to_band_1(renderer: QgsRasterRenderer) -> bool:
    """Point a single-band renderer at band 1 (QGIS 3.22 has no generic setInputBand)."""
    if isinstance(renderer, QgsSingleBandGrayRenderer):
        renderer.setGrayBand(1)
        return True
    if isinstance(renderer, QgsSingleBandPseudoColorRenderer):
        renderer.setBand(1)
        return True
    return False


def apply_matching_style(original: QgsRasterLayer, band: int, reconstruction: QgsRasterLayer) -> None:
    """Set the matching renderer on `reconstruction` (the layer takes ownership of it)."""
    reconstruction.setRenderer(matching_renderer(original, band, reconstruction))


def _gray_renderer_like(
    original: QgsRasterLayer, band: int, reconstruction: QgsRasterLayer
) -> QgsSingleBandGrayRenderer:
    """Gray renderer on band 1 stretched to the 2-98 % cumulative cut of the original band."""
    provider = original.dataProvider()
    lo, hi = provider.cumulativeCut(band, 0.02, 0.98, original.extent(), 250000)
    renderer = QgsSingleBandGrayRenderer(reconstruction.dataProvider(), 1)
    enhancement = QgsContrastEnhancement(reconstruction.dataProvider().dataType(1))
    enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum, True)
    enhancement.setMinimumValue(lo)
    enhancement.setMaximumValue(hi)
    renderer.setContrastEnhancement(enhancement)
    origin = QgsRasterMinMaxOrigin()
    origin.setLimits(QgsRasterMinMaxOrigin.CumulativeCut)
    renderer.setMinMaxOrigin(origin)
    return renderer
