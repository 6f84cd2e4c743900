"""The Processing algorithms as QGIS runs them: processing.run, batch, modeler, qgis_process, cancel, errors.

Inputs are simulated GeoTIFFs (quality numbers are
meaningless, only their ranges and the plumbing are tested).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import (
    QgsApplication,
    QgsContrastEnhancement,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterRasterLayer,
    QgsProject,
    QgsRasterLayer,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)

from sar_compressor.engine.api import compress_array, decompress_array, read_header
from sar_compressor.engine.simulate import write_scene

REPO = Path(__file__).resolve().parents[1]


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps what the algorithm logged, for asserting on messages."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[str] = []
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def pushInfo(self, info: str) -> None:  # noqa: N802 (QGIS API name)
        self.infos.append(info)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
        self.errors.append(error)

    def pushWarning(self, warning: str) -> None:  # noqa: N802 (QGIS API name)
        self.warnings.append(warning)


@pytest.fixture(scope="module")
def provider(qgis_processing):
    """The provider as the plugin registers it; removed again if this module added it."""
    from sar_compressor.algorithms.provider import SARCompressorProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("sar_compressor")
    added = provider is None
    if added:  # keep the Python object referenced, as the plugin does
        provider = SARCompressorProvider()
        assert registry.addProvider(provider)
    yield provider
    if added:
        registry.removeProvider(provider)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return write_scene(tmp_path_factory.mktemp("scene") / "scene.tif", 160, 192, seed=3)


@pytest.fixture(scope="module")
def compressed(provider, scene, tmp_path_factory):
    """One compression with a reconstruction, shared by the tests that only read its results."""
    import processing

    out = tmp_path_factory.mktemp("compressed")
    feedback = RecordingFeedback()
    results = processing.run(
        "sar_compressor:compress",
        {
            "INPUT": str(scene),
            "QUALITY": 2,
            "OUTPUT": str(out / "scene.sarz"),
            "RECONSTRUCTION": str(out / "reconstruction.tif"),
        },
        feedback=feedback,
    )
    return results, feedback


def assert_same_grid(path: str | Path, reference: str | Path) -> None:
    """Same CRS, extent, size and data type as the reference raster, as QGIS reads them."""
    layer, ref = QgsRasterLayer(str(path), "result"), QgsRasterLayer(str(reference), "reference")
    assert layer.isValid() and ref.isValid()
    assert layer.crs() == ref.crs() and layer.crs().authid() == "EPSG:32631"
    assert layer.extent() == ref.extent()
    assert (layer.width(), layer.height()) == (ref.width(), ref.height())
    assert layer.dataProvider().dataType(1) == ref.dataProvider().dataType(1)


def test_compress_writes_sarz_reconstruction_and_numbers(compressed, scene):
    results, feedback = compressed
    assert Path(results["OUTPUT"]).stat().st_size > 0
    assert Path(results["OUTPUT"]).read_bytes()[:4] == b"SARZ"
    assert_same_grid(results["RECONSTRUCTION"], scene)
    assert results["RATIO"] > 1 and 0 < results["BPP"] < 32
    assert math.isfinite(results["PSNR"]) and results["PSNR"] > 0
    assert -1 <= results["SSIM"] <= 1
    assert 0.1 < results["MEAN_RATIO"] < 10
    assert any(info.startswith("wrote ") for info in feedback.infos)


def test_compress_warns_from_its_own_first_pass(provider, tmp_path, monkeypatch):
    """The input's warnings reach the Processing log from compression's own first pass: the codec reads the
    input twice (pass 1 and the coding), with no survey of its own before (the metrics read it once more)."""
    import processing

    from sar_compressor.engine.io.raster_io import RasterReader

    src = tmp_path / "constant.tif"
    with rasterio.open(src, "w", driver="GTiff", width=96, height=80, count=1, dtype="float32") as dst:
        dst.write(np.full((1, 80, 96), 0.25, np.float32))
    rows = []
    real = RasterReader.read_rows
    monkeypatch.setattr(
        RasterReader, "read_rows", lambda self, band, r0, r1: rows.append(r1 - r0) or real(self, band, r0, r1)
    )
    feedback = RecordingFeedback()
    processing.run(
        "sar_compressor:compress", {"INPUT": str(src), "OUTPUT": str(tmp_path / "c.sarz")}, feedback=feedback
    )
    assert any(w.startswith("constant raster: every valid pixel is") for w in feedback.warnings), feedback.warnings
    assert sum(rows) == 2 * 80


def test_compress_to_a_target_bpp(provider, scene, tmp_path):
    import processing

    params = {"INPUT": str(scene), "TARGET_BPP": 0.8}
    results = processing.run("sar_compressor:compress", {**params, "OUTPUT": str(tmp_path / "t.sarz")})
    assert 0.99 * 0.8 <= results["BPP"] <= 0.8
    with pytest.raises(QgsProcessingException, match="below what this raster can be coded in"):
        processing.run("sar_compressor:compress", {**params, "TARGET_BPP": 1e-5, "OUTPUT": str(tmp_path / "u.sarz")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.sarz"]
    feedback = RecordingFeedback()
    both = {**params, "QUALITY": 9, "OUTPUT": str(tmp_path / "b.sarz")}
    assert processing.run("sar_compressor:compress", both, feedback=feedback)["BPP"] <= 0.8  # the target wins
    assert any("QUALITY 9 is not used" in w for w in feedback.warnings), feedback.warnings


def test_a_sarz_in_the_temporary_folder_is_warned_about(provider, scene, tmp_path):
    """The dialog's default output is a temporary file, in a folder QGIS deletes on exit: said in the log."""
    import processing

    feedback = RecordingFeedback()
    params = {"INPUT": str(scene), "QUALITY": 2, "OUTPUT": "TEMPORARY_OUTPUT"}
    result = processing.run("sar_compressor:compress", params, feedback=feedback)
    assert Path(result["OUTPUT"]).is_file()
    assert any("deletes on exit" in w for w in feedback.warnings), feedback.warnings
    feedback = RecordingFeedback()
    processing.run("sar_compressor:compress", {**params, "OUTPUT": str(tmp_path / "kept.sarz")}, feedback=feedback)
    assert not any("deletes on exit" in w for w in feedback.warnings)


def test_compress_tuned_for_psnr(provider, scene, tmp_path):
    """TUNE "psnr" reaches the engine: at the same quality the file differs from the default (ssim) one."""
    import processing

    params = {"INPUT": str(scene), "QUALITY": 4}
    bpp = {
        tune: processing.run(
            "sar_compressor:compress", {**params, "TUNE": tune, "OUTPUT": str(tmp_path / f"{tune}.sarz")}
        )["BPP"]
        for tune in ("ssim", "psnr")
    }
    assert bpp["psnr"] != bpp["ssim"]


@pytest.mark.parametrize(
    ("parameter", "scene", "quality", "stat"),
    [
        ("LOOP_FILTER", "structured_scene", 6, "loop_filtered_tiles"),
        ("INTERSCALE", "oversampled_scene", 7, "interscale_tiles"),
    ],
)
def test_compress_without_a_fitted_part(provider, parameter, scene, quality, stat, request, tmp_path):
    """LOOP_FILTER and INTERSCALE reach the engine: on a scene where the part pays (structured for the loop filter,
    oversampled for inter-scale prediction) the tile keeps it, off it does not."""
    import processing

    from sar_compressor.engine.api import read_header

    src = request.getfixturevalue(scene)(512, 512)
    kept = {}
    for on in (True, False):
        out = tmp_path / f"{on}.sarz"
        params = {"INPUT": str(src), "QUALITY": quality, parameter: on, "OUTPUT": str(out)}
        processing.run("sar_compressor:compress", params)
        kept[on] = read_header(out)["bands"][0]["stats"].get(stat, 0)
    assert kept == {True: 1, False: 0}


def test_decompress_restores_the_grid_and_equals_the_reconstruction(compressed, scene, tmp_path):
    import processing

    feedback = RecordingFeedback()
    results = processing.run(
        "sar_compressor:decompress",
        {
            "INPUT": compressed[0]["OUTPUT"],
            "COG": True,
            "OUTPUT": str(tmp_path / "decompressed.tif"),
        },
        feedback=feedback,
    )
    assert_same_grid(results["OUTPUT"], scene)
    assert any(info.startswith("wrote ") for info in feedback.infos)
    with rasterio.open(results["OUTPUT"]) as dec, rasterio.open(compressed[0]["RECONSTRUCTION"]) as rec:
        assert np.array_equal(dec.read(1), rec.read(1), equal_nan=True)


def test_a_decompressed_result_loads_named_and_on_its_db_stretch(compressed, tmp_path, qgis_iface):
    """Decompress's result loaded as "Decompressed raster" on QGIS's min/max stretch (linear intensity almost black)
    where the .sarz's own layer opens on its dB stretch: it loads under the file's name, on that stretch."""
    from processing.gui.Postprocessing import handleAlgorithmResults

    project = QgsProject.instance()
    alg = QgsApplication.processingRegistry().createAlgorithmById("sar_compressor:decompress")
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = RecordingFeedback()
    out = tmp_path / "decoded.tif"
    params = {"INPUT": compressed[0]["OUTPUT"], "OUTPUT": QgsProcessingOutputLayerDefinition(str(out), project)}
    results, ok = alg.run(params, context, feedback)
    assert ok, feedback.errors
    assert handleAlgorithmResults(alg, context, feedback, False)
    loaded = [layer for layer in project.mapLayers().values() if layer.source() == results["OUTPUT"]]
    try:
        assert len(loaded) == 1 and loaded[0].name() == Path(compressed[0]["OUTPUT"]).stem
        assert isinstance(loaded[0].renderer(), QgsSingleBandPseudoColorRenderer)
        stops = [item.value for item in loaded[0].renderer().shader().rasterShaderFunction().colorRampItemList()]
        assert np.allclose(np.diff(10 * np.log10(stops)), np.diff(10 * np.log10(stops))[0])  # even in dB
    finally:
        for layer in loaded:
            project.removeMapLayer(layer.id())


def test_decompress_takes_a_sarz_layers_vrt_for_its_sarz(compressed, tmp_path):
    """A .sarz layer's file is its VRT: Decompress said "not a .sarz file" of it."""
    import processing

    from sar_compressor.engine.gdal_vrt import sarz_named_by, write_vrt

    sarz = tmp_path / "layer.sarz"
    sarz.write_bytes(Path(compressed[0]["OUTPUT"]).read_bytes())
    vrt = write_vrt(sarz)[0]
    assert sarz_named_by(vrt) == str(sarz.resolve()) and sarz_named_by(sarz) is None
    results = processing.run("sar_compressor:decompress", {"INPUT": str(vrt), "OUTPUT": str(tmp_path / "d.tif")})
    with rasterio.open(results["OUTPUT"]) as dec, rasterio.open(compressed[0]["RECONSTRUCTION"]) as rec:
        assert np.array_equal(dec.read(1), rec.read(1), equal_nan=True)


def test_evaluate_numbers_and_html_report(compressed, scene, tmp_path):
    import processing

    class Bar(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.values: list[float] = []

        def setProgress(self, value: float) -> None:  # noqa: N802 (QGIS API name)
            self.values.append(value)
            super().setProgress(value)

    bar = Bar()
    results = processing.run(
        "sar_compressor:evaluate",
        {
            "ORIGINAL": str(scene),
            "RECONSTRUCTION": compressed[0]["RECONSTRUCTION"],
            "OUTPUT": str(tmp_path / "report.html"),
        },
        feedback=bar,
    )
    assert len({v for v in bar.values if 0 < v < 60}) >= 5 and bar.values == sorted(bar.values)  # it sat at 0 %
    for name in ("PSNR", "SSIM", "MEAN_RATIO"):  # the compress algorithm measured the same way
        assert results[name] == pytest.approx(compressed[0][name])
    assert -1 <= results["SSIM"] <= 1 and results["DB_RMSE"] > 0
    assert results["MEAN_RATIO"] > 0 and results["ENL_RATIO"] > 0 and -1 <= results["EPI"] <= 1
    assert results["MULTILOOK_PSNR"] > results["PSNR"]  # 5x5 means average the speckle the codec smooths
    page = Path(results["OUTPUT"]).read_text(encoding="utf-8")
    assert "<table>" in page and "Edge preservation index" in page and "dB, unclipped" in page
    assert "Multilooked PSNR" in page
    assert 'src="data:image/png;base64,' in page


def test_evaluate_can_be_cancelled_during_its_metrics(compressed, scene, tmp_path):
    """Evaluate computed every metric after a cancel (its engine call was not told to stop)."""
    import processing

    feedback = RecordingFeedback()
    feedback.cancel()
    report = tmp_path / "report.html"
    params = {"ORIGINAL": str(scene), "RECONSTRUCTION": compressed[0]["RECONSTRUCTION"], "OUTPUT": str(report)}
    assert processing.run("sar_compressor:evaluate", params, feedback=feedback) == {}
    assert not report.exists() and not any(info.startswith("PSNR") for info in feedback.infos)


def test_evaluate_cancelled_while_it_draws_writes_no_report(compressed, scene, tmp_path, monkeypatch):
    """A cancel that came after the metrics (while the picture read both rasters again) was ignored: the report
    was written and the run returned every figure."""
    import processing

    from sar_compressor.algorithms.evaluate import EvaluateAlgorithm

    feedback = RecordingFeedback()
    draw = EvaluateAlgorithm._picture

    def picture(self, metrics_module, metrics):
        feedback.cancel()
        return draw(self, metrics_module, metrics)

    monkeypatch.setattr(EvaluateAlgorithm, "_picture", picture)
    report = tmp_path / "report.html"
    params = {"ORIGINAL": str(scene), "RECONSTRUCTION": compressed[0]["RECONSTRUCTION"], "OUTPUT": str(report)}
    assert processing.run("sar_compressor:evaluate", params, feedback=feedback) == {}
    assert not report.exists() and "Cancelled: no output was written." in feedback.infos


def test_evaluate_report_never_replaces_an_input_nor_goes_to_a_missing_folder(compressed, scene, tmp_path):
    """The report follows Compress's and Decompress's destination rules, before any work: an HTML page written
    over the original (or the reconstruction) destroyed it; a missing folder was a Python traceback."""
    import processing

    reconstruction = Path(compressed[0]["RECONSTRUCTION"])
    before = {path: path.read_bytes() for path in (scene, reconstruction)}
    for report in (scene, reconstruction):
        params = {"ORIGINAL": str(scene), "RECONSTRUCTION": str(reconstruction), "OUTPUT": str(report)}
        with pytest.raises(QgsProcessingException, match="input"):
            processing.run("sar_compressor:evaluate", params)
    assert {path: path.read_bytes() for path in before} == before
    missing = tmp_path / "nowhere" / "report.html"
    params = {"ORIGINAL": str(scene), "RECONSTRUCTION": str(reconstruction), "OUTPUT": str(missing)}
    with pytest.raises(QgsProcessingException, match="folder does not exist") as refused:
        processing.run("sar_compressor:evaluate", params)
    assert "Traceback" not in str(refused.value) and not missing.parent.exists()


def test_layers_of_a_zipped_product_or_a_netcdf_variable_compress(provider, scene, tmp_path):
    """QGIS opens a zipped product as /vsizip/... and a netCDF variable as NETCDF:"file":var; the algorithm took
    the second for 'not a file on disk'. Both compress to the .sarz of the unpacked raster."""
    import zipfile

    import processing
    from rasterio.shutil import copy as gdal_copy

    with zipfile.ZipFile(tmp_path / "product.zip", "w") as z:
        z.write(scene, "measurement/vv.tif")
    gdal_copy(scene, tmp_path / "product.nc", driver="netCDF")
    sources = (f"/vsizip/{tmp_path}/product.zip/measurement/vv.tif", f'NETCDF:"{tmp_path}/product.nc":Band1')
    with rasterio.open(scene) as src:
        expected = decompress_array(compress_array(src.read(1), quality=3).data)
    for k, source in enumerate(sources):
        layer = QgsRasterLayer(source, "product")
        assert layer.isValid()
        out = tmp_path / f"{k}.sarz"
        processing.run("sar_compressor:compress", {"INPUT": layer, "QUALITY": 3, "OUTPUT": str(out)})
        np.testing.assert_array_equal(decompress_array(out), expected)


def test_compress_of_a_raster_without_a_valid_pixel_succeeds(provider, tmp_path):
    """All nodata: only the mask is coded, a valid file; the run succeeds with no figures (it failed at its
    metrics after writing the file)."""
    import processing

    src = tmp_path / "empty.tif"
    profile = {"driver": "GTiff", "width": 40, "height": 30, "count": 1, "dtype": "float32"}
    with rasterio.open(src, "w", **profile) as dst:
        dst.write(np.full((1, 30, 40), np.nan, dtype=np.float32))
    feedback = RecordingFeedback()
    results = processing.run(
        "sar_compressor:compress", {"INPUT": str(src), "OUTPUT": str(tmp_path / "empty.sarz")}, feedback=feedback
    )
    assert Path(results["OUTPUT"]).is_file() and results["PSNR"] is None and results["BPP"] > 0
    assert any("nothing to measure" in line for line in feedback.infos)


def test_band_of_a_multiband_raster(provider, tmp_path):
    import processing

    src = tmp_path / "three.tif"
    single = write_scene(tmp_path / "single.tif", 64, 80, seed=5)
    with rasterio.open(single) as one:
        profile, data = one.profile, one.read(1)
    profile.update(count=3)
    with rasterio.open(src, "w", **profile) as dst:
        for band in (1, 2, 3):
            dst.write(data * band, band)
    params = {"INPUT": str(src), "OUTPUT": str(tmp_path / "all.sarz"), "RECONSTRUCTION": str(tmp_path / "all.tif")}
    results = processing.run("sar_compressor:compress", params)  # no band chosen: every band, one file
    with rasterio.open(results["RECONSTRUCTION"]) as rec:
        assert rec.count == 3
    assert len(read_header(tmp_path / "all.sarz")["bands"]) == 3 and results["PSNR"] > 0
    one = processing.run(
        "sar_compressor:decompress", {"INPUT": str(tmp_path / "all.sarz"), "BAND": 2, "OUTPUT": str(tmp_path / "2.tif")}
    )
    with rasterio.open(one["OUTPUT"]) as alone, rasterio.open(tmp_path / "all.tif") as rec:
        assert alone.count == 1 and np.array_equal(alone.read(1), rec.read(2))  # one band decoded alone
    params["OUTPUT"] = str(tmp_path / "x.sarz")
    params.pop("RECONSTRUCTION")
    with pytest.raises(QgsProcessingException, match="Band 4 does not exist"):
        processing.run("sar_compressor:compress", {**params, "BAND": 4})
    with pytest.raises(QgsProcessingException, match="Band -1 does not exist: bands count from 1"):
        processing.run("sar_compressor:compress", {**params, "BAND": -1})  # it coded every band
    assert not (tmp_path / "x.sarz").exists()

    params.update(BAND=2, RECONSTRUCTION=str(tmp_path / "band2.tif"))
    results = processing.run("sar_compressor:compress", params)
    assert results["PSNR"] > 0  # band 2 of the original measured against band 1 of the reconstruction
    evaluated = processing.run(
        "sar_compressor:evaluate",
        {
            "ORIGINAL": str(src),
            "ORIGINAL_BAND": 2,
            "RECONSTRUCTION": results["RECONSTRUCTION"],
            "OUTPUT": str(tmp_path / "band2.html"),
        },
    )
    assert evaluated["PSNR"] == pytest.approx(results["PSNR"])
    unchosen = {"ORIGINAL": str(src), "RECONSTRUCTION": str(src), "OUTPUT": str(tmp_path / "r.html")}
    with pytest.raises(QgsProcessingException, match=r"choose the band to use \(parameter ORIGINAL_BAND\)"):
        processing.run("sar_compressor:evaluate", unchosen)  # the parameter Evaluate has, not Compress's BAND


def test_a_raster_with_a_gdal_mask_is_one_band_to_processing(provider, tmp_path):
    """QGIS shows a per-dataset mask as one more (alpha) band: the algorithms count the raster's own bands (Evaluate
    asked which of 2 bands, then said band 2 did not exist; Compress took the multi-band path)."""
    import processing

    single = write_scene(tmp_path / "single.tif", 64, 80, seed=5)
    with rasterio.open(single) as one:
        profile, data = one.profile, one.read(1)
    valid = np.ones(data.shape, bool)
    valid[:, :20] = False
    src = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(src, "w", **profile) as dst:
        dst.write(np.where(valid, data, 0.5).astype(data.dtype), 1)
        dst.write_mask(valid.astype(np.uint8) * 255)
    assert QgsRasterLayer(str(src), "masked", "gdal").bandCount() == 2  # what QGIS shows
    params = {"INPUT": str(src), "OUTPUT": str(tmp_path / "m.sarz"), "RECONSTRUCTION": str(tmp_path / "m.tif")}
    compressed = processing.run("sar_compressor:compress", params)
    evaluated = processing.run(
        "sar_compressor:evaluate",
        {"ORIGINAL": str(src), "RECONSTRUCTION": compressed["RECONSTRUCTION"], "OUTPUT": str(tmp_path / "m.html")},
    )
    assert evaluated["PSNR"] == pytest.approx(compressed["PSNR"])
    with rasterio.open(compressed["RECONSTRUCTION"]) as rec:
        assert rec.count == 1 and np.isnan(rec.nodata) and np.isnan(rec.read(1)[:, :20]).all()


def test_corrupt_sarz_is_a_clear_error(provider, compressed, tmp_path):
    import processing

    corrupt = tmp_path / "corrupt.sarz"
    data = bytearray(Path(compressed[0]["OUTPUT"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.sarz"
    truncated.write_bytes(bytes(data[:40]))
    for bad in (corrupt, truncated, tmp_path / "missing.sarz"):
        output = tmp_path / f"{bad.stem}.tif"
        with pytest.raises(QgsProcessingException, match=r"(?i)crc|corrupt|truncated|not found|does not exist"):
            params = {"INPUT": str(bad), "OUTPUT": str(output)}
            processing.run("sar_compressor:decompress", params)
        assert not output.exists()


def test_a_cancel_during_the_metrics_stops_them_and_keeps_the_whole_outputs(provider, scene, tmp_path):
    """The metrics after the coding could not be cancelled: the run went on to their end. Then a cancel there
    removed the outputs, which had already replaced the files at those paths (QGIS's rule): the user's files were
    gone. The outputs are whole by then, and kept, as the command line keeps them."""
    import processing

    from sar_compressor.engine.batch import verify_output

    class CancelAtMetrics(RecordingFeedback):
        def setProgressText(self, text: str) -> None:  # noqa: N802 (QGIS API name)
            super().setProgressText(text)
            if text.startswith("metrics"):
                self.cancel()

    outputs = tmp_path / "c.sarz", tmp_path / "c.tif"
    for path in outputs:
        path.write_bytes(b"the user's file")
    feedback = CancelAtMetrics()
    params = {"INPUT": str(scene), "QUALITY": 2, "OUTPUT": str(outputs[0]), "RECONSTRUCTION": str(outputs[1])}
    assert processing.run("sar_compressor:compress", params, feedback=feedback) == {}
    assert sorted(tmp_path.iterdir()) == sorted(outputs) and not any(i.startswith("PSNR") for i in feedback.infos)
    assert verify_output(outputs[0]) >= 1 and outputs[1].read_bytes()[:2] in (b"II", b"MM")
    assert any("written whole; their metrics were not measured" in w for w in feedback.warnings)


def test_an_engine_bug_is_one_line_with_the_traceback_in_the_log(provider, compressed, tmp_path, monkeypatch):
    """An exception that is no SARCompressorError (a bug) reached the dock as a 30-line traceback."""
    import processing

    from sar_compressor.engine import api

    def broken(*args, **kwargs):
        raise ValueError("Out of range float values are not JSON compliant")

    monkeypatch.setattr(api, "decompress_file", broken)
    with pytest.raises(QgsProcessingException) as info:
        processing.run(
            "sar_compressor:decompress", {"INPUT": compressed[0]["OUTPUT"], "OUTPUT": str(tmp_path / "o.tif")}
        )
    message = str(info.value)
    assert message.startswith("internal error (ValueError: Out of range") and "\n" not in message
    assert "Traceback" not in message and not (tmp_path / "o.tif").exists()


def test_non_file_layer_is_refused(provider, tmp_path):
    import processing

    layer = QgsRasterLayer("type=xyz&url=http://localhost:1/{z}/{x}/{y}.png&zmax=1", "tiles", "wms")
    QgsProject.instance().addMapLayer(layer)
    try:
        with pytest.raises(QgsProcessingException, match="reads files only"):
            processing.run("sar_compressor:compress", {"INPUT": layer, "OUTPUT": str(tmp_path / "x.sarz")})
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def test_cancel_mid_run_leaves_no_output(provider, tmp_path):
    import processing

    big = write_scene(tmp_path / "big.tif", 640, 256, seed=9)  # several strips: cancel lands mid-run
    feedback = RecordingFeedback()
    progress = []

    def cancel_after_first(percent: float) -> None:
        progress.append(percent)
        if percent > 0:
            feedback.cancel()

    feedback.progressChanged.connect(cancel_after_first)
    outputs = [tmp_path / "cancelled.sarz", tmp_path / "cancelled.tif"]
    results = processing.run(
        "sar_compressor:compress",
        {
            "INPUT": str(big),
            "OUTPUT": str(outputs[0]),
            "RECONSTRUCTION": str(outputs[1]),
        },
        feedback=feedback,
    )
    assert results == {} and 0 < progress[0] < 100
    assert "Cancelled: no output was written." in feedback.infos
    left = {p.name for p in tmp_path.iterdir()} - {"big.tif", "big.tif.aux.xml"}  # .aux.xml: GDAL statistics
    assert not left  # no output, no temporary file


@contextmanager
def loaded_reconstruction(source: QgsRasterLayer, tmp_path, **params) -> Iterator[QgsRasterLayer]:
    """Compress `source` (added to the project) as the toolbox does and yield the reconstruction QGIS loaded
    through context.layersToLoadOnCompletion; both layers leave the project afterwards."""
    from processing.gui.Postprocessing import handleAlgorithmResults

    project = QgsProject.instance()
    project.addMapLayer(source)
    try:
        alg = QgsApplication.processingRegistry().createAlgorithmById("sar_compressor:compress")
        context = QgsProcessingContext()
        context.setProject(project)
        feedback = RecordingFeedback()
        params = {
            "INPUT": source.id(),
            "OUTPUT": str(tmp_path / "styled.sarz"),
            "RECONSTRUCTION": QgsProcessingOutputLayerDefinition(str(tmp_path / "styled.tif"), project),
            **params,
        }
        results, ok = alg.run(params, context, feedback)
        assert ok, feedback.errors
        assert context.willLoadLayerOnCompletion(results["RECONSTRUCTION"])
        assert handleAlgorithmResults(alg, context, feedback, False)
        loaded = [layer for layer in project.mapLayers().values() if layer.source() == results["RECONSTRUCTION"]]
        assert len(loaded) == 1
        try:
            yield loaded[0]
        finally:
            project.removeMapLayer(loaded[0].id())
    finally:
        project.removeMapLayer(source.id())


def test_reconstruction_is_styled_like_the_loaded_source(provider, scene, tmp_path, qgis_iface):
    """Results load through context.layersToLoadOnCompletion with the source layer's renderer."""
    source = QgsRasterLayer(str(scene), "scene")
    renderer = QgsSingleBandGrayRenderer(source.dataProvider(), 1)
    renderer.setGradient(QgsSingleBandGrayRenderer.WhiteToBlack)
    source.setRenderer(renderer)
    with loaded_reconstruction(source, tmp_path) as loaded:
        assert isinstance(loaded.renderer(), QgsSingleBandGrayRenderer)
        assert loaded.renderer().gradient() == QgsSingleBandGrayRenderer.WhiteToBlack


def test_band_2_style_moves_to_band_1_of_the_reconstruction(provider, tmp_path, qgis_iface):
    """A gray style on band 2 is given to the single-band reconstruction on band 1, stretch included
    (QGIS 3.22 has no generic QgsRasterRenderer.setInputBand)."""
    single = write_scene(tmp_path / "single.tif", 64, 80, seed=6)
    with rasterio.open(single) as one:
        profile, data = one.profile, one.read(1)
    with rasterio.open(tmp_path / "two.tif", "w", **dict(profile, count=2)) as dst:
        dst.write(data, 1)
        dst.write(data * 4.0, 2)
    source = QgsRasterLayer(str(tmp_path / "two.tif"), "two bands")
    renderer = QgsSingleBandGrayRenderer(source.dataProvider(), 2)
    stretch = QgsContrastEnhancement(source.dataProvider().dataType(2))
    stretch.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    stretch.setMinimumValue(0.25)
    stretch.setMaximumValue(7.5)
    renderer.setContrastEnhancement(stretch)
    source.setRenderer(renderer)
    with loaded_reconstruction(source, tmp_path, BAND=2) as loaded:
        styled = loaded.renderer()
        assert isinstance(styled, QgsSingleBandGrayRenderer)
        assert styled.grayBand() == 1 and list(styled.usesBands()) == [1]
        assert styled.contrastEnhancement().minimumValue() == pytest.approx(0.25)
        assert styled.contrastEnhancement().maximumValue() == pytest.approx(7.5)


def test_batch_runs_two_inputs(provider, tmp_path, qgis_iface):
    """QGIS's batch dialog, filled and run programmatically (it runs its rows synchronously in 3.22)."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from processing.tools import dataobjects

    scenes = [write_scene(tmp_path / f"batch{i}.tif", 64, 96, seed=10 + i) for i in range(2)]
    alg = QgsApplication.processingRegistry().createAlgorithmById("sar_compressor:compress")
    dialog = BatchAlgorithmDialog(alg)
    panel = dialog.mainWidget()
    panel.checkLoadLayersOnCompletion.setChecked(False)
    panel.addRow()
    assert panel.batchRowCount() == 2
    context = dataobjects.createContext()
    for row, path in enumerate(scenes):
        panel.wrappers[row][panel.parameter_to_column["INPUT"]].setParameterValue(str(path), context)
        output = panel.tblParameters.cellWidget(row + 1, panel.parameter_to_column["OUTPUT"])
        output.setValue(str(path.with_suffix(".sarz")))
    dialog.runAlgorithm()
    for path in scenes:
        assert path.with_suffix(".sarz").read_bytes()[:4] == b"SARZ"
    dialog.deleteLater()


def test_model_chains_compress_decompress_evaluate(provider, scene, tmp_path):
    """A QgsProcessingModelAlgorithm built in code, as the graphical modeler would save it."""
    model = QgsProcessingModelAlgorithm("sar roundtrip", "tests")
    model.addModelParameter(
        QgsProcessingParameterRasterLayer("raster", "Raster"), QgsProcessingModelParameter("raster")
    )

    def child(alg_id: str, child_id: str, sources: dict, outputs: list[str]) -> None:
        step = QgsProcessingModelChildAlgorithm(alg_id)
        step.setChildId(child_id)
        for name, source in sources.items():
            step.addParameterSources(name, [source])
        for param in step.algorithm().parameterDefinitions():  # the modeler's dialog fills in the defaults
            if param.name() not in sources and not param.isDestination():
                step.addParameterSources(param.name(), [from_value(param.defaultValue())])
        step.setModelOutputs({name: _model_output(name, child_id) for name in outputs})
        model.addChildAlgorithm(step)

    from_input = QgsProcessingModelChildParameterSource.fromModelParameter
    from_value = QgsProcessingModelChildParameterSource.fromStaticValue
    from_child = QgsProcessingModelChildParameterSource.fromChildOutput
    child(
        "sar_compressor:compress",
        "compress",
        {"INPUT": from_input("raster")},
        ["OUTPUT"],
    )
    child(
        "sar_compressor:decompress",
        "decompress",
        {"INPUT": from_child("compress", "OUTPUT")},
        ["OUTPUT"],
    )
    child(
        "sar_compressor:evaluate",
        "evaluate",
        {"ORIGINAL": from_input("raster"), "RECONSTRUCTION": from_child("decompress", "OUTPUT")},
        ["OUTPUT"],
    )
    ok, errors = model.validate()
    assert ok, errors
    context, feedback = QgsProcessingContext(), RecordingFeedback()
    params = {
        "raster": str(scene),
        "compress:OUTPUT": str(tmp_path / "model.sarz"),
        "decompress:OUTPUT": str(tmp_path / "model.tif"),
        "evaluate:OUTPUT": str(tmp_path / "model.html"),
    }
    results, ok = model.run(params, context, feedback)
    assert ok, feedback.errors
    assert_same_grid(tmp_path / "model.tif", scene)
    assert (tmp_path / "model.sarz").exists() and "<table>" in (tmp_path / "model.html").read_text()
    assert results["evaluate:OUTPUT"] == str(tmp_path / "model.html")


def _model_output(name: str, child_id: str) -> QgsProcessingModelOutput:
    output = QgsProcessingModelOutput(name)
    output.setChildId(child_id)
    output.setChildOutputName(name)
    return output


def _qgis_process() -> str | None:
    """Debian's wrapper script passes --noversioncheck, which 3.22's binary rejects: prefer the binary."""
    return shutil.which("qgis_process.bin") or shutil.which("qgis_process")


@pytest.mark.skipif(_qgis_process() is None, reason="qgis_process is not installed")
def test_qgis_process_runs_compress(scene, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "sar_compressor").symlink_to(REPO, target_is_directory=True)
    site = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    env = dict(
        os.environ,
        HOME=str(tmp_path / "home"),
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"),
        QGIS_PLUGINPATH=str(plugins),
        QT_QPA_PLATFORM="offscreen",
        PYTHONPATH=os.pathsep.join(site),  # qgis_process embeds the system Python: give it the venv's torch
    )
    exe = _qgis_process()
    enabled = subprocess.run([exe, "plugins", "enable", "sar_compressor"], env=env, capture_output=True, text=True)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    sarz = tmp_path / "cli.sarz"
    proc = subprocess.run(
        [
            exe,
            "--json",
            "run",
            "sar_compressor:compress",
            "--",
            f"INPUT={scene}",
            "QUALITY=1",
            f"OUTPUT={sarz}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads(proc.stdout[proc.stdout.index("{") :])["results"]
    assert results["OUTPUT"] == str(sarz) and sarz.read_bytes()[:4] == b"SARZ"
    assert results["RATIO"] > 1 and results["BPP"] > 0


def test_destination_rules_through_processing(provider, compressed, scene, tmp_path):
    """Issue 22 in Processing: an existing destination is replaced (QGIS's rule: its dialog asks first), an
    input, a FIFO or a destination another run writes is refused, and each input stays as it was."""
    import processing

    from sar_compressor.engine.io.output_paths import guarded_outputs

    sarz = compressed[0]["OUTPUT"]
    before = Path(scene).read_bytes()
    for params in (
        {"INPUT": str(scene), "OUTPUT": str(scene)},
        {"INPUT": str(scene), "OUTPUT": str(tmp_path / "x.sarz"), "RECONSTRUCTION": str(scene)},
    ):
        with pytest.raises(QgsProcessingException, match="is the input"):
            processing.run("sar_compressor:compress", params)
    assert Path(scene).read_bytes() == before
    fifo = tmp_path / "fifo.tif"
    os.mkfifo(fifo)
    with pytest.raises(QgsProcessingException, match="not a regular file"):
        processing.run("sar_compressor:decompress", {"INPUT": sarz, "OUTPUT": str(fifo)})
    existing = tmp_path / "existing.tif"
    existing.write_bytes(before)
    another_run = guarded_outputs([], [existing], overwrite=True)
    with another_run, pytest.raises(QgsProcessingException, match="being written by another run"):
        processing.run("sar_compressor:decompress", {"INPUT": sarz, "OUTPUT": str(existing)})
    processing.run("sar_compressor:decompress", {"INPUT": sarz, "OUTPUT": str(existing)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.tif", "fifo.tif"]
    assert existing.read_bytes() != before and QgsRasterLayer(str(existing), "new").isValid()


def test_the_file_behind_a_vrt_input_is_an_input_in_processing(provider, scene, tmp_path):
    """A VRT over a GeoTIFF as the input, that GeoTIFF as a destination: Processing replaced it (always
    overwriting) with a reconstruction, or Evaluate's HTML report."""
    import shutil

    import processing
    from osgeo import gdal

    source = tmp_path / "scene.tif"
    shutil.copy(scene, source)
    vrt = tmp_path / "crop.vrt"
    gdal.Translate(str(vrt), str(source), format="VRT", srcWin=[0, 0, 96, 96])
    before = source.read_bytes()
    with pytest.raises(QgsProcessingException, match="is the input"):
        processing.run(
            "sar_compressor:compress",
            {"INPUT": str(vrt), "OUTPUT": str(tmp_path / "x.sarz"), "RECONSTRUCTION": str(source)},
        )
    with pytest.raises(QgsProcessingException, match="is the input"):
        processing.run(
            "sar_compressor:evaluate", {"ORIGINAL": str(vrt), "RECONSTRUCTION": str(vrt), "OUTPUT": str(source)}
        )
    assert source.read_bytes() == before


def test_a_failed_write_through_processing_leaves_the_destination(provider, compressed, tmp_path, monkeypatch):
    """A flush GDAL fails silently (a full disk): the read-back refuses the file, the old raster stays."""
    import processing

    from sar_compressor.engine.io.raster_io import StripWriter

    close = StripWriter._close

    def close_then_truncate(self) -> None:
        close(self)
        with open(self._tmp, "r+b") as f:
            f.truncate(self._tmp.stat().st_size // 2)

    existing = tmp_path / "existing.tif"
    write_scene(existing, 32, 32, seed=1)
    before = existing.read_bytes()
    monkeypatch.setattr(StripWriter, "_close", close_then_truncate)
    with pytest.raises(QgsProcessingException, match="could not be written completely"):
        processing.run(
            "sar_compressor:decompress",
            {"INPUT": compressed[0]["OUTPUT"], "OUTPUT": str(existing)},
        )
    assert existing.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.tif"]


def test_a_kind_the_data_type_contradicts_is_refused_in_processing(provider, scene, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match="kind 'complex' needs a complex raster"):
        processing.run(
            "sar_compressor:compress", {"INPUT": str(scene), "KIND": "complex", "OUTPUT": str(tmp_path / "x.sarz")}
        )
    assert not any(tmp_path.iterdir())


def test_decompress_warns_when_the_bands_nodata_values_differ(provider, tmp_path):
    """Every band into one GeoTIFF, which declares band 1's nodata value: the log says so, as compression did."""
    import processing

    from sar_compressor.engine import api

    layers = []
    for band, nodata in ((1, 0.0), (2, -9999.0)):
        path = tmp_path / f"b{band}.tif"
        data = np.full((1, 64, 80), 0.25 * band, np.float32)
        data[0, :, :9] = nodata
        with rasterio.open(
            path, "w", driver="GTiff", width=80, height=64, count=1, dtype="float32", nodata=nodata
        ) as d:
            d.write(data)
        layers.append(
            f'<VRTRasterBand dataType="Float32" band="{band}"><NoDataValue>{nodata}</NoDataValue>'
            f'<SimpleSource><SourceFilename relativeToVRT="1">{path.name}</SourceFilename>'
            "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        )
    stack = tmp_path / "stack.vrt"
    stack.write_text(f'<VRTDataset rasterXSize="80" rasterYSize="64">{"".join(layers)}</VRTDataset>')
    api.compress_file(stack, tmp_path / "s.sarz")
    feedback = RecordingFeedback()
    processing.run(
        "sar_compressor:decompress",
        {"INPUT": str(tmp_path / "s.sarz"), "OUTPUT": str(tmp_path / "out.tif")},
        feedback=feedback,
    )
    assert any("band 2 (-9999.0) against band 1 (0.0)" in w for w in feedback.warnings), feedback.warnings


def test_a_wrong_file_is_named_for_what_it_is_before_the_run(compressed, scene, tmp_path):
    """QGIS's own check said 'Could not load source layer for INPUT: x.sarz not found' of a .sarz (or a text file)
    given to Compress, and 'Incorrect parameter value for INPUT' of a GeoTIFF given to Decompress; a missing .sarz
    and a band it does not hold were found only once the run had started (a batch ran the rows before them)."""
    import processing

    sarz = compressed[0]["OUTPUT"]
    text = tmp_path / "notes.txt"
    text.write_text("not a raster")
    out = str(tmp_path / "out.sarz")
    refused = {
        ("compress", "INPUT", sarz): "is a compressed .sarz file: decode it with 'Decompress SAR raster'",
        ("compress", "INPUT", str(text)): "INPUT: ",
        ("compress", "INPUT", str(tmp_path)): "is a folder",
        ("evaluate", "RECONSTRUCTION", sarz): "RECONSTRUCTION: .* is a compressed .sarz file",
        ("decompress", "INPUT", str(scene)): "is not a .sarz file",
        ("decompress", "INPUT", str(tmp_path / "nope.sarz")): "cannot open .*nope.sarz: No such file",
    }
    for (name, parameter, value), message in refused.items():
        params = {"INPUT": str(scene), "ORIGINAL": str(scene), "RECONSTRUCTION": str(scene), parameter: value}
        params["OUTPUT"] = (
            out if name == "compress" else str(tmp_path / ("out.tif" if name == "decompress" else "r.html"))
        )
        with pytest.raises(QgsProcessingException, match=message):
            processing.run(f"sar_compressor:{name}", params)
    layer = QgsRasterLayer(str(scene), "myscene")
    QgsProject.instance().addMapLayer(layer)
    try:  # a layer given by its id or name is no path: another parameter's fault is QGIS's to say
        for given in (layer.id(), "myscene"):
            params = {"INPUT": given, "QUALITY": 99, "OUTPUT": out}
            with pytest.raises(QgsProcessingException, match="QUALITY"):
                processing.run("sar_compressor:compress", params)
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
    points = QgsVectorLayer("Point?crs=EPSG:4326", "pts", "memory")
    sarz_layer = QgsRasterLayer(str(scene), "scene layer")
    QgsProject.instance().addMapLayers([points, sarz_layer])
    try:  # a vector layer, by id or name, was 'not found (no such file, nor a layer of that name)'
        for name, parameter, given, message in (
            ("compress", "INPUT", points.id(), "INPUT: 'pts' is a vector layer: give a raster layer or file"),
            ("compress", "INPUT", "pts", "INPUT: 'pts' is a vector layer"),
            ("evaluate", "ORIGINAL", "pts", "ORIGINAL: 'pts' is a vector layer"),
            ("decompress", "INPUT", sarz_layer.id(), "INPUT: 'scene layer' is a map layer; give a .sarz file"),
        ):
            params = {"INPUT": str(scene), "ORIGINAL": str(scene), "RECONSTRUCTION": str(scene), parameter: given}
            params["OUTPUT"] = str(tmp_path / {"compress": "o.sarz", "decompress": "o.tif", "evaluate": "r.html"}[name])
            with pytest.raises(QgsProcessingException, match=message):
                processing.run(f"sar_compressor:{name}", params)
    finally:
        QgsProject.instance().removeMapLayers([points.id(), sarz_layer.id()])
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("sar_compressor:decompress")
    params = {"INPUT": sarz, "BAND": 5, "OUTPUT": str(tmp_path / "band5.tif")}
    ok, message = algorithm.checkParameterValues(params, QgsProcessingContext())
    assert not ok and "holds no band 5; its bands are 1" in message
    assert not list(tmp_path.glob("out*")) and not (tmp_path / "band5.tif").exists()


def test_an_option_given_by_its_number_is_refused_with_the_names(provider, scene, tmp_path):
    """qgis_process's help lists KIND's options as numbers ('0: auto ... 5: native'), and QGIS refused KIND=3 with
    only 'Incorrect parameter value for KIND'."""
    import processing

    params = {"INPUT": str(scene), "KIND": "3", "OUTPUT": str(tmp_path / "o.sarz")}
    with pytest.raises(QgsProcessingException, match="KIND: 3 is not one of auto, intensity, .*option's name"):
        processing.run("sar_compressor:compress", params)
    assert not list(tmp_path.iterdir())
