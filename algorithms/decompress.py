"""sar_compressor:decompress: .sarz -> georeferenced GeoTIFF (loaded on completion)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .common import SARAlgorithm, cancelled, destination_rules, engine_errors, geotiff_path
from .styling import stretch_on_load


class DecompressAlgorithm(SARAlgorithm):
    """Decompress a .sarz file back to a GeoTIFF with the original CRS, geotransform, dtype and nodata."""

    NAME = "decompress"
    DISPLAY_NAME = "Decompress SAR raster"
    FILE_INPUTS = (("INPUT", True),)

    def __init__(self) -> None:
        super().__init__()
        self._loaded: Optional[tuple[str, dict, str]] = None
        """(output, the header of what it holds, its layer's name), for postProcessAlgorithm."""

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Decompresses a .sarz file written by 'Compress SAR raster' into a GeoTIFF with the "
            "original CRS, geotransform, data type and nodata. Complex (SLC) input comes back as float32 "
            "intensity.\n\n"
            "Advanced: write a Cloud Optimized GeoTIFF (with overviews); decode one band alone (its source band "
            "number; 0: every band). A GeoTIFF holds one nodata value for all its bands, band 1's: a band with "
            "another nodata value keeps its own when decoded alone."
        )

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFile(
                "INPUT",
                self.tr("Compressed file (.sarz)"),
                behavior=QgsProcessingParameterFile.File,
                fileFilter=self.tr("SAR Compressor files, or a .sarz layer's VRT (*.sarz *.vrt)"),
            )
        )
        cog = QgsProcessingParameterBoolean("COG", self.tr("Write a Cloud Optimized GeoTIFF"), defaultValue=False)
        self.advanced(cog)
        integer = QgsProcessingParameterNumber.Integer
        band = QgsProcessingParameterNumber("BAND", self.tr("Band (0: every band)"), integer, 0, False, 0)
        self.advanced(band)
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", self.tr("Decompressed raster")))

    def _source(self, parameters, context) -> str:
        """The .sarz to decode: the file given, or the one a .sarz layer's VRT (this tool's) names (a layer's file
        is its VRT: "not a .sarz file")."""
        source = self.parameterAsFile(parameters, "INPUT", context)
        if not source.lower().endswith(".vrt"):
            return source
        with engine_errors():
            return self.engine("gdal_vrt").decoded_sarz(source) or source

    def resolve_inputs(self, parameters, context) -> None:
        """Main thread, before the run: the file is a .sarz this version reads (its header), and holds BAND; a
        batch refuses a bad row before any row runs."""
        source = self._source(parameters, context)
        band = self.parameterAsInt(parameters, "BAND", context)
        with engine_errors():
            header = self.engine("api").read_header(source)
        bands = sorted(int(entry["source_band"]) for entry in header["bands"])
        if band and band not in bands:
            raise QgsProcessingException(
                f"BAND: {source} holds no band {band}; its bands are {', '.join(map(str, bands))} (0: every band)."
            )

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802
        """Worker thread: one call into the engine."""
        api = self.engine("api")
        source = self._source(parameters, context)
        output = geotiff_path(self.parameterAsOutputLayer(parameters, "OUTPUT", context), "output")
        band = self.parameterAsInt(parameters, "BAND", context) or None
        with engine_errors():
            header = api.read_header(source)
        if band is not None:  # the decoded raster's band 1 is that band
            header = {**header, "bands": [entry for entry in header["bands"] if entry["source_band"] == band]}
        self._loaded = (output, header, Path(source).stem + (f" band {band}" if band else ""))
        with destination_rules([source], [output]):
            stats = self.run_engine(
                api.decompress_file,
                feedback,
                source,
                output,
                cog=self.parameterAsBoolean(parameters, "COG", context),
                band=band,
                warn=feedback.pushWarning,  # what the GeoTIFF cannot hold (bands' differing nodata values)
            )
        return {"OUTPUT": output} if stats is not None else cancelled(feedback)

    def postProcessAlgorithm(self, context, feedback) -> dict:  # noqa: N802
        """Main thread: the loaded result is named after its .sarz and drawn on its dB stretch, as the .sarz's own
        layer is."""
        if self._loaded is not None:
            stretch_on_load(context, *self._loaded, self.parameterDefinition("OUTPUT").description())
        return {}
