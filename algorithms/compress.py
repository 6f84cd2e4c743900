"""sar_compressor:compress: a raster (all bands, or one) -> .sarz, optionally the reconstruction; always its
fidelity figures."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingUtils,
)

from ..engine.codec.entropy.ssim_weights import TUNES
from ..engine.codec.passes.quality import DEFAULT_QUALITY, N_QUALITIES
from ..engine.errors import CancelledError
from .common import (
    SARAlgorithm,
    band_count,
    cancelled,
    destination_rules,
    engine_errors,
    fmt_number,
    geotiff_path,
    processing_temp_folder,
    raster_file,
    within,
)
from .progress import StageProgress
from .styling import source_renderer, style_on_load

CODING_SHARE = 0.9  # of the progress bar; measuring the reconstruction (one read of both rasters) fills the rest
KINDS = ("auto", "intensity", "amplitude", "db", "complex", "native")
MEAN_CORRECTIONS = ("block", "global", "none")
# output name -> (engine.metrics key, log label) of the figures measured on the reconstruction
MEASURED = {
    "PSNR": ("psnr_db", "PSNR (dB)"),
    "SSIM": ("ssim", "SSIM"),
    "MEAN_RATIO": ("mean_ratio", "Mean ratio"),
    "ENL_RATIO": ("enl_ratio", "ENL ratio"),
    "EPI": ("epi", "Edge preservation index"),
    "DB_RMSE": ("db_rmse", "dB RMSE"),
}


class CompressAlgorithm(SARAlgorithm):
    """Compress a SAR raster (all its bands, or one) into a .sarz file."""

    NAME = "compress"
    DISPLAY_NAME = "Compress SAR raster"
    FILE_INPUTS = (("INPUT", False),)

    def __init__(self) -> None:
        super().__init__()
        self._source = ""
        self._band: Optional[int] = 1
        """None: every band (BAND left empty on a multi-band raster)."""
        self._renderer = None
        self._reconstruction = ""

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Compresses a SAR raster (intensity, amplitude, dB or complex SLC) into a .sarz file "
            "with a wavelet coder in the dB domain: every band into one file when no band is chosen (dual-pol "
            "or polarimetric stacks; bands that share structure are predicted from one another), else the "
            "chosen band. The file keeps CRS, geotransform, dtype and "
            "nodata, so 'Decompress SAR raster' restores a georeferenced GeoTIFF.\n\n"
            f"Quality 1 gives the smallest file, {N_QUALITIES} the best fidelity: a wavelet refinement layer, "
            "finer at each quality, codes what its base misses. A target in bits per pixel (above 0) replaces "
            "the quality: the raster is coded at trial steps first (a few extra passes) and the file gets the "
            "finest step that stays within the target. Input kind 'auto' detects the radiometry from the "
            "data type, band description and values.\n\n"
            "Reports the fidelity of the reconstruction (what decompression will give; written to a file "
            "when asked, else measured on a temporary one): PSNR and SSIM (dB domain, over the original's "
            "0.5-99.5 percentile range; over several bands, PSNR from their mean range-scaled error and the "
            "rest averaged), mean ratio (mean linear backscatter of the reconstruction / of the "
            "original, 1 = unbiased), ENL ratio (> 1 = smoother), edge preservation index and dB RMSE. The "
            "ratio is raw raster bytes / .sarz bytes. The log shows each stage (survey, coding tile k of n, "
            "rate-control pass n) and the domain of every figure.\n\n"
            "Advanced: the mean correction restores the "
            "linear backscatter mean per block of 256x256 pixels (block), per raster (global) or not "
            "at all (none); tune for ssim "
            "(errors weigh more in quiet areas, which keep some texture) or psnr (plain squared error: a "
            "little more PSNR and multilooked PSNR, less SSIM: for products that will be multilooked or "
            "despeckled); the adaptive loop filter: Wiener filters the encoder fits on each "
            "tile against the original and keeps only where they lower the error (and, tuned for SSIM, do not "
            "lower SSIM); off: a slightly smaller file, for comparison; inter-scale prediction: filters the "
            "encoder fits on each tile to predict the finest wavelet detail from the level above, kept only "
            "where they save bits (products sampled finer than their resolution, such as Sentinel-1 GRD or "
            "anything resampled onto a map grid); off: for comparison."
        )

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_raster_parameters("INPUT", "Input SAR raster", "BAND", "Band (empty: every band into one file)")
        self.addParameter(self.static_enum("KIND", "Input kind", KINDS, "auto"))
        self.addParameter(
            QgsProcessingParameterNumber(
                "QUALITY",
                self.tr(f"Quality (1 = smallest file, {N_QUALITIES} = best fidelity)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=DEFAULT_QUALITY,
                minValue=1,
                maxValue=N_QUALITIES,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "TARGET_BPP",
                self.tr("Target bits per pixel (0 = use the quality; otherwise a few extra passes find the step)"),
                type=QgsProcessingParameterNumber.Double,
                defaultValue=0.0,
                minValue=0.0,
            )
        )
        self.advanced(
            self.static_enum("MEAN_CORRECTION", "Mean correction (linear backscatter)", MEAN_CORRECTIONS, "block")
        )
        self.advanced(self.static_enum("TUNE", "Tune for (what rate-distortion decisions favour)", TUNES, "ssim"))
        self.advanced(
            QgsProcessingParameterBoolean(
                "LOOP_FILTER", self.tr("Adaptive loop filter (fitted per tile where it pays)"), defaultValue=True
            )
        )
        self.advanced(
            QgsProcessingParameterBoolean(
                "INTERSCALE",
                self.tr("Inter-scale prediction of the finest levels (fitted per tile where it saves bits)"),
                defaultValue=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT", self.tr("Compressed file"), fileFilter=self.tr("SAR Compressor files (*.sarz)")
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "RECONSTRUCTION", self.tr("Reconstruction"), optional=True, createByDefault=False
            )
        )
        for name, text in (
            ("RATIO", "Compression ratio (raw raster bytes / .sarz bytes)"),
            ("BPP", "Bits per pixel (8 x .sarz bytes / pixels)"),
            ("PSNR", "PSNR of the reconstruction (dB)"),
            ("SSIM", "SSIM of the reconstruction"),
            ("MEAN_RATIO", "Linear mean ratio of the reconstruction (reconstruction / original)"),
            ("ENL_RATIO", "ENL ratio (reconstruction / original; > 1 = smoother)"),
            ("EPI", "Edge preservation index (1 = edges intact)"),
            ("DB_RMSE", "dB RMSE (unclipped)"),
        ):
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(text)))

    def resolve_inputs(self, parameters, context) -> None:
        """Main thread: layer -> file path, band check, the source style for the reconstruction."""
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        all_bands = (  # a negative band is refused by raster_band (it coded every band)
            layer is not None and band_count(layer) > 1 and self.parameterAsInt(parameters, "BAND", context) == 0
        )
        if all_bands:
            self._source, self._band = raster_file(layer, "input"), None
            self._renderer = None
            return
        layer, self._source, self._band = self.raster_band(parameters, context, "INPUT", "BAND")
        self._renderer = source_renderer(layer, self._band, context)

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802
        """Worker thread: compress (and reconstruct) with the engine, then measure the reconstruction (a
        temporary one, removed afterwards, when none was asked for: the figures are always reported)."""
        api = self.engine("api")
        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        reconstruction = self.parameterAsOutputLayer(parameters, "RECONSTRUCTION", context) or None
        if reconstruction:
            self._reconstruction = geotiff_path(reconstruction, "reconstruction")
        measured = reconstruction or QgsProcessingUtils.generateTempFilename("reconstruction.tif")
        kind = self.parameterAsEnumString(parameters, "KIND", context)
        target_bpp = self.parameterAsDouble(parameters, "TARGET_BPP", context) or None
        quality = self.parameterAsInt(parameters, "QUALITY", context)
        if target_bpp and quality != DEFAULT_QUALITY:  # QGIS always has a quality: say which of the two wins
            feedback.pushWarning(
                f"Target {target_bpp:g} bits per pixel given: it decides the step, QUALITY {quality} is not used."
            )
        if within(output, [processing_temp_folder()]):  # the dialog's default, "[Save to temporary file]"
            feedback.pushWarning(
                f"{output} is in QGIS's temporary processing folder, which QGIS deletes on exit: choose a file for "
                "the compressed file to keep it."
            )
        tiles = not target_bpp and self._band is not None  # the engine counts one band's tiles (else a fraction)
        stages = StageProgress(feedback, "starting", unit="tile" if tiles else None, share=CODING_SHARE)
        try:
            with destination_rules([self._source], [output, reconstruction]):
                stats = self.run_engine(
                    api.compress_file,
                    feedback,
                    self._source,
                    output,
                    stages=stages,
                    quality=quality,
                    band=self._band,
                    kind=kind,
                    mean_correction=self.parameterAsEnumString(parameters, "MEAN_CORRECTION", context),
                    target_bpp=target_bpp,
                    tune=self.parameterAsEnumString(parameters, "TUNE", context),
                    loop_filter=self.parameterAsBoolean(parameters, "LOOP_FILTER", context),
                    interscale=self.parameterAsBoolean(parameters, "INTERSCALE", context),
                    reconstruction=measured,
                    warn=feedback.pushWarning,  # the input's warnings, from compression's own first pass
                )
            if stats is None:
                return cancelled(feedback)
            results = {"OUTPUT": output, "RATIO": stats.ratio, "BPP": stats.bpp}
            measuring = stages.follow_stage("metrics (comparing the reconstruction with the original)")
            valid = sum(b["valid_pixels"] for b in stats.bands)
            with contextlib.suppress(CancelledError):  # a cancel during the metrics: handled as one after them
                results.update(self._measure(measured, kind, feedback, valid, measuring))
            if feedback.isCanceled():  # asked after the engine had finished: its outputs are whole, and kept
                written = " and ".join(str(path) for path in (output, reconstruction) if path)
                feedback.pushWarning(
                    f"Cancelled while measuring: {written} written whole; their metrics were not measured."
                )
                return {}
            stages.done(f"{Path(output).name}, {stats.ratio:.1f}:1, {stats.bpp:.3f} bpp")
        finally:
            if not reconstruction:
                _remove_raster(measured)
        if reconstruction:
            results["RECONSTRUCTION"] = reconstruction
        return results

    def _measure(self, reconstruction: str, kind: str, feedback, valid_pixels: int, progress) -> dict:
        """The engine's metrics of the reconstruction against the source band, in the radiometry the codec was
        told to use; None where a figure does not apply (see the log for its domain), every one for a raster
        without a valid pixel (all nodata: only its mask was coded, and the file is as good as any)."""
        if valid_pixels == 0:
            feedback.pushInfo("No valid pixel (all nodata, NaN or no-signal zeros): nothing to measure.")
            return dict.fromkeys(MEASURED)
        with engine_errors():
            metrics_module, cancel = self.engine("metrics"), feedback.isCanceled
            watch = {"cancel": cancel, "progress": progress, "kind": kind}
            if self._band is None:
                metrics = metrics_module.evaluate_bands(self._source, reconstruction, **watch)["overall"]
            else:
                metrics = metrics_module.evaluate_files(
                    self._source, reconstruction, band=self._band, reconstruction_band=1, **watch
                )
        for key, label in MEASURED.values():
            feedback.pushInfo(f"{label} {fmt_number(metrics[key])} ({metrics['domain'][key]})")
        return {name: metrics[key] for name, (key, _) in MEASURED.items()}

    def postProcessAlgorithm(self, context, feedback) -> dict:  # noqa: N802
        """Main thread: a loaded reconstruction gets the style of the source layer."""
        style_on_load(context, self._reconstruction, self._renderer)
        return {}


def _remove_raster(path: str) -> None:
    """Delete the temporary reconstruction this run measured and the sidecar GDAL may have written next to it."""
    for name in (path, f"{path}.aux.xml"):
        Path(name).unlink(missing_ok=True)
