"""sar_compressor:evaluate: SAR fidelity figures of a reconstruction, as numbers and an HTML report."""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

from qgis.core import QgsProcessingException, QgsProcessingOutputNumber, QgsProcessingParameterFileDestination

from ..engine.errors import CancelledError
from ..engine.io.output_paths import replace_into, temp_path
from .common import METRICS_MODULES, SARAlgorithm, cancelled, destination_rules, engine_errors, fmt_number
from .preview import read_preview
from .progress import StageProgress

# output name -> (metrics key, label)
METRICS_SHARE = 0.6
"""The bar's share the metrics fill (the picture and the report the rest)."""
METRICS = {
    "PSNR": ("psnr_db", "PSNR (dB)"),
    "MULTILOOK_PSNR": ("multilook_psnr_db", "Multilooked PSNR (dB, 5x5 boxcar)"),
    "SSIM": ("ssim", "SSIM"),
    "DB_RMSE": ("db_rmse", "dB RMSE"),
    "MEAN_RATIO": ("mean_ratio", "Linear mean ratio (reconstruction / original)"),
    "ENL_RATIO": ("enl_ratio", "ENL ratio (reconstruction / original)"),
    "EPI": ("epi", "Edge preservation index"),
}


class EvaluateAlgorithm(SARAlgorithm):
    """Compare a reconstruction with its original: PSNR, SSIM, dB RMSE, mean ratio, ENL ratio, EPI."""

    NAME = "evaluate"
    DISPLAY_NAME = "Evaluate reconstruction"
    GROUP_ID = "quality"
    DEPENDENCIES = METRICS_MODULES
    FILE_INPUTS = (("ORIGINAL", False), ("RECONSTRUCTION", False))

    def __init__(self) -> None:
        super().__init__()
        self._files = ("", "")
        self._bands = (1, 1)

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Measures how faithful a reconstruction is to its original SAR raster (same size, one band "
            "each):\n"
            "- PSNR and SSIM in dB, over the original's 0.5-99.5 percentile range;\n"
            "- multilooked PSNR: PSNR of the 5x5 boxcar means (averaged in linear intensity, then dB, same range), "
            "the fidelity of what an analyst who multilooks first sees;\n"
            "- dB RMSE (unclipped);\n"
            "- linear mean ratio: radiometric bias of the mean backscatter (1 = unbiased);\n"
            "- ENL ratio: how much speckle was smoothed in homogeneous areas (> 1 = smoother);\n"
            "- edge preservation index (1 = edges intact).\n"
            "The HTML report states the domain of every figure and shows original, reconstruction and error "
            "side by side."
        )

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_raster_parameters("ORIGINAL", "Original raster", "ORIGINAL_BAND", "Original band")
        self.add_raster_parameters("RECONSTRUCTION", "Reconstruction", "RECONSTRUCTION_BAND", "Reconstruction band")
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT", self.tr("Report"), fileFilter=self.tr("HTML files (*.html)")
            )
        )
        for name, (_, label) in METRICS.items():
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))

    def resolve_inputs(self, parameters, context) -> None:
        """Main thread: layers -> files and bands."""
        resolved = [
            self.raster_band(parameters, context, name, f"{name}_BAND") for name in ("ORIGINAL", "RECONSTRUCTION")
        ]
        self._files = tuple(path for _, path, _ in resolved)
        self._bands = tuple(band for _, _, band in resolved)

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802
        """Worker thread: the engine's metrics, then the report, under the destination rules that Compress and
        Decompress follow (checked before any work: never over an input, into a missing folder...)."""
        metrics_module = self.engine("metrics")
        report = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        with destination_rules(self._files, [report]):
            try:
                with engine_errors():
                    metrics = metrics_module.evaluate_files(
                        *self._files,
                        band=self._bands[0],
                        reconstruction_band=self._bands[1],
                        cancel=feedback.isCanceled,
                        progress=StageProgress(feedback, "measuring", unit=None, share=METRICS_SHARE).progress,
                    )
            except CancelledError:  # asked between strips or metrics: nothing was written
                return cancelled(feedback)
            feedback.setProgress(100.0 * METRICS_SHARE)
            for warning in metrics["warnings"]:
                feedback.pushWarning(warning)
            results = {name: metrics[key] for name, (key, _) in METRICS.items()}
            for key, label in METRICS.values():
                feedback.pushInfo(f"{label}: {fmt_number(metrics[key])}  [{metrics['domain'].get(key, '')}]")
            if feedback.isCanceled():
                return cancelled(feedback)
            with engine_errors():
                picture = self._picture(metrics_module, metrics)
            if feedback.isCanceled():  # the picture reads both rasters again: a cancel may come meanwhile
                return cancelled(feedback)
            _write_report(Path(report), _report_html(self._files, self._bands, metrics, picture))
        feedback.setProgress(100)
        results["OUTPUT"] = report
        return results

    def _picture(self, metrics_module, metrics: dict) -> bytes:
        """PNG bytes of original | reconstruction | error in dB, on the metrics' range."""
        views = []
        for i, (path, band) in enumerate(zip(self._files, self._bands)):
            data = read_preview(path, band).data  # a complex original's reconstruction is intensity: squared as
            kind = metrics["kind"] if i == 0 else metrics_module.reconstruction_kind(metrics["kind"], data)  # |z|
            views.append(metrics_module.to_domains(data, kind)[0])
        rng = (metrics["range"]["vmin"], metrics["range"]["vmax"])
        with tempfile.TemporaryDirectory() as tmp:
            png = metrics_module.render_side_by_side(*views, Path(tmp) / "side_by_side.png", rng)
            return png.read_bytes()


def _write_report(path: Path, text: str) -> None:
    """The report through the engine's temp name beside it (a killed run's is cleared by the next), renamed when
    whole: a failed write leaves no half page."""
    tmp = temp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        replace_into(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise QgsProcessingException(f"cannot write the report {path}: {exc.strerror or exc}") from exc


def _report_html(files: tuple, bands: tuple, metrics: dict, png: bytes) -> str:
    """A self-contained page: inputs, the metrics table with domains, the side-by-side picture inline."""
    rows = "\n".join(
        f"<tr><td>{html.escape(label)}</td><td>{fmt_number(metrics[key])}</td>"
        f"<td>{html.escape(str(metrics['domain'].get(key, '')))}</td></tr>"
        for key, label in METRICS.values()
    )
    rng = metrics["range"]
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>SAR Compressor evaluation</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:left}} img{{max-width:100%}}</style></head>
<body><h1>SAR Compressor evaluation</h1>
<p>Original: {html.escape(files[0])} (band {bands[0]})<br>
Reconstruction: {html.escape(files[1])} (band {bands[1]})<br>
Kind: {html.escape(str(metrics["kind"]))}; range [{rng["vmin"]:.2f}, {rng["vmax"]:.2f}]
{html.escape(rng["unit"])} ({html.escape(rng["source"])});
{metrics["valid_pixels"]} valid of {metrics["pixels"]} pixels.</p>
<table><tr><th>Metric</th><th>Value</th><th>Domain</th></tr>
{rows}
</table>
<h2>Original | reconstruction | error</h2>
<img alt="original, reconstruction and absolute error side by side" src="data:image/png;base64,{image}">
</body></html>
"""
