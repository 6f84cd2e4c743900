"""The Processing provider 'SAR Compressor' (id sar_compressor): compress, decompress, evaluate."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .common import ICON_PATH
from .compress import CompressAlgorithm
from .decompress import DecompressAlgorithm
from .evaluate import EvaluateAlgorithm


class SARCompressorProvider(QgsProcessingProvider):
    """Registers the algorithms; loading it imports no torch, so QGIS starts fast and without torch."""

    def id(self) -> str:
        return "sar_compressor"

    def name(self) -> str:
        return "SAR Compressor"

    def longName(self) -> str:  # noqa: N802 (QGIS API names)
        return "SAR Compressor (learned SAR raster compression)"

    def icon(self) -> QIcon:
        return QIcon(str(ICON_PATH))

    def svgIconPath(self) -> str:  # noqa: N802
        return str(ICON_PATH)

    def loadAlgorithms(self) -> None:  # noqa: N802
        for algorithm in (CompressAlgorithm(), DecompressAlgorithm(), EvaluateAlgorithm()):
            self.addAlgorithm(algorithm)

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        """The engine writes GeoTIFF only, so raster destinations offer .tif."""
        return ["tif"]
