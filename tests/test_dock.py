"""The dock panel, headless: a real run through the Processing algorithm in the task manager, linked canvases,
the styled reconstruction layer, cancel, and the messages shown instead of tracebacks."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
from pytest_qgis.utils import process_events
from qgis.core import (
    QgsApplication,
    QgsContrastEnhancement,
    QgsMapRendererParallelJob,
    QgsProject,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QEventLoop, QTimer
from qgis.PyQt.QtGui import QImage

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def provider(qgis_app):
    """Processing with the SAR Compressor provider, as the plugin registers it."""
    from processing.core.Processing import Processing

    from sar_compressor.algorithms.provider import SARCompressorProvider

    Processing.initialize()
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("sar_compressor")
    added = provider is None
    if added:  # keep the Python object referenced (the registry does not) and remove it afterwards
        provider = SARCompressorProvider()
        registry.addProvider(provider)
    yield provider
    if added:
        registry.removeProvider(provider)


def _scene_layer(folder: Path, size: int, name: str) -> QgsRasterLayer:
    from sar_compressor.engine.simulate import write_scene

    path = folder / f"{name}.tif"
    write_scene(path, size, size, looks=1, seed=7, kind="intensity", dtype="float32", georef=True)
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    # what a SAR user does first: a 2-98 % stretch (QGIS's default min/max is dominated by bright targets)
    layer.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    QgsProject.instance().addMapLayer(layer)  # qgis_iface.addRasterLayer would not add it to the project
    return layer


@pytest.fixture
def scene(tmp_path, qgis_new_project) -> QgsRasterLayer:
    return _scene_layer(tmp_path, 256, "scene")


@pytest.fixture
def make_dock(qgis_iface):
    """Build docks, and make sure none leaves a task running into the next test."""
    from sar_compressor.ui.dock import SARCompressorDock

    docks = []

    def make():
        dock = SARCompressorDock(qgis_iface)
        dock.setFloating(True)
        dock.resize(960, 980)
        dock.show()
        docks.append(dock)
        return dock

    yield make
    while docks:
        dock = docks.pop()
        if dock.run is not None and dock.run.running:
            dock.cancel_run()
            _wait(dock.runFinished, 30)
        dock.canvases.clear()
        dock.close()
        del dock
    process_events()  # also runs the deleteLater of finished tasks, which hold their callbacks
    gc.collect()  # while QGIS is alive: layers and tasks freed after exitQgis crash


def _wait(signal, timeout_s: float) -> bool:
    """Spin an event loop until `signal` fires; False on timeout (so a hang fails instead of blocking)."""
    loop = QEventLoop()
    fired = []

    def done(*_args) -> None:
        fired.append(True)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec_()
    signal.disconnect(done)
    return bool(fired)


def _run(dock, cancel_at_progress: float | None = None) -> list[str]:
    """Click Run and wait for the task (and the metrics); returns the task's final status signals."""
    statuses: list[str] = []
    finished: list[bool] = []
    loop = QEventLoop()

    def done(ok: bool) -> None:
        finished.append(ok)
        loop.quit()

    dock.runFinished.connect(done)
    QTimer.singleShot(RUN_TIMEOUT_S * 1000, loop.quit)
    dock.run_button.click()
    task = dock.run.task
    if task is not None:
        task.taskCompleted.connect(lambda: statuses.append("completed"))
        task.taskTerminated.connect(lambda: statuses.append("terminated"))

    def cancel(value: float) -> None:
        if cancel_at_progress is not None and value >= cancel_at_progress:
            dock.cancel_button.click()

    dock.run.progressChanged.connect(cancel)
    if not finished:
        loop.exec_()
    dock.runFinished.disconnect(done)
    dock.run.progressChanged.disconnect(cancel)  # a connected closure holding the dock would leak it
    assert finished, "the run did not finish in time"
    QgsApplication.processEvents()
    return statuses


def _render(canvas) -> QImage:
    """Render what the canvas shows (its own map settings) into an image."""
    job = QgsMapRendererParallelJob(canvas.mapSettings())
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def _is_blank(image: QImage) -> bool:
    """True when the image has (almost) one colour only."""
    image = image.convertToFormat(QImage.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.byteCount())
    pixels = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return float(pixels.std()) < 2.0


def _wait_canvases(dock) -> None:
    for canvas in (dock.canvases.left, dock.canvases.right):
        canvas.refreshAllLayers()
        assert _wait(canvas.mapCanvasRefreshed, 30), "canvas did not redraw"


def test_target_bpp_replaces_the_quality(make_dock, provider, scene):
    dock = make_dock()
    dock.set_layer(scene)
    dock.target_spin.setValue(0.8)
    assert not dock.quality_spin.isEnabled()

    assert _run(dock) == ["completed"], dock.last_error
    sarz = Path(dock.last_results["OUTPUT"])
    assert sarz.name.endswith("_0.8bpp.sarz")
    assert 0.99 * 0.8 <= dock.last_metrics["bpp"] <= 0.8
    dock.target_spin.setValue(0)
    assert dock.quality_spin.isEnabled()


def test_run_shows_both_sides_metrics_and_loads_styled_layer(make_dock, provider, scene):
    dock = make_dock()
    dock.set_layer(scene)
    dock.quality_spin.setValue(2)
    assert dock.run_button.isEnabled(), dock.message_label.text()

    statuses = _run(dock)

    assert statuses == ["completed"], dock.last_error
    assert not dock.last_error
    sarz = Path(dock.last_results["OUTPUT"])
    reconstruction = Path(dock.last_results["RECONSTRUCTION"])
    assert sarz.is_file() and reconstruction.is_file()
    metrics = dock.last_metrics
    assert metrics["ratio"] > 1.0
    assert 0.0 < metrics["bpp"] < 32.0
    assert metrics["psnr"] is not None and metrics["psnr"] > 0.0
    assert metrics["ssim"] is not None and -1.0 <= metrics["ssim"] <= 1.0
    assert metrics["mean_ratio"] is not None and 0.1 < metrics["mean_ratio"] < 10.0
    assert dock.progress_bar.value() == 100
    assert all(dock.metrics_table.item(row, 0).text() not in ("", "n/a") for row in range(5))

    # both canvases show the data, in the same CRS and extent
    left, right = dock.canvases.left, dock.canvases.right
    assert left.layers()[0].id() == scene.id()
    assert right.layers()[0] is dock.reconstruction_layer
    assert right.mapSettings().destinationCrs() == scene.crs()
    _wait_canvases(dock)
    assert not _is_blank(_render(left))
    assert not _is_blank(_render(right))
    assert not _is_blank(left.grab().toImage())
    assert not _is_blank(right.grab().toImage())
    ARTIFACTS.mkdir(exist_ok=True)
    assert dock.grab().save(str(ARTIFACTS / "dock.png"))

    # zoom/pan on the left: the right follows (and the other way round)
    full = scene.extent()
    zoomed = QgsRectangle(
        full.xMinimum() + 0.2 * full.width(),
        full.yMinimum() + 0.3 * full.height(),
        full.xMinimum() + 0.6 * full.width(),
        full.yMinimum() + 0.7 * full.height(),
    )
    left.setExtent(zoomed)
    _assert_same_view(left, right)
    right.setCenter(full.center())
    _assert_same_view(right, left)

    # the reconstruction as a project layer with the original's style
    dock.load_button.click()
    loaded = [layer for layer in QgsProject.instance().mapLayers().values() if layer.source() == str(reconstruction)]
    assert len(loaded) == 1
    styled, original = loaded[0].renderer(), scene.renderer()
    assert styled.type() == original.type()
    assert styled.contrastEnhancement().minimumValue() == pytest.approx(original.contrastEnhancement().minimumValue())
    assert styled.contrastEnhancement().maximumValue() == pytest.approx(original.contrastEnhancement().maximumValue())


def _assert_same_view(source, target) -> None:
    QgsApplication.processEvents()
    a, b = source.extent(), target.extent()
    tolerance = 1e-6 * max(a.width(), a.height())
    assert abs(a.center().x() - b.center().x()) < tolerance
    assert abs(a.center().y() - b.center().y()) < tolerance
    assert source.mapUnitsPerPixel() == pytest.approx(target.mapUnitsPerPixel(), rel=0.02)


def test_raster_without_crs_runs_and_renders(make_dock, provider, tmp_path, qgis_new_project):
    from sar_compressor.engine.simulate import write_scene

    path = tmp_path / "plain.tif"
    write_scene(path, 128, 128, looks=1, seed=3, kind="intensity", dtype="float32", georef=False)
    layer = QgsRasterLayer(str(path), "plain")
    QgsProject.instance().addMapLayer(layer)
    assert not layer.crs().isValid()
    dock = make_dock()
    dock.set_layer(layer)

    assert _run(dock) == ["completed"], dock.last_error
    _wait_canvases(dock)
    assert not _is_blank(_render(dock.canvases.left))
    assert not _is_blank(_render(dock.canvases.right))


def test_second_band_of_a_multiband_raster(make_dock, provider, tmp_path, qgis_new_project):
    import rasterio

    from sar_compressor.engine.simulate import write_scene

    single = [tmp_path / f"b{i}.tif" for i in (1, 2)]
    for seed, path in enumerate(single):
        write_scene(path, 128, 128, looks=1, seed=seed, kind="intensity", dtype="float32", georef=True)
    with rasterio.open(single[0]) as a, rasterio.open(single[1]) as b:
        profile = dict(a.profile, count=2)
        with rasterio.open(tmp_path / "two.tif", "w", **profile) as dst:
            dst.write(a.read(1), 1)
            dst.write(b.read(1) * 10.0, 2)
    layer = QgsRasterLayer(str(tmp_path / "two.tif"), "two bands")
    QgsProject.instance().addMapLayer(layer)
    dock = make_dock()
    dock.set_layer(layer)
    dock.band_combo.setBand(2)

    assert _run(dock) == ["completed"], dock.last_error
    assert dock.last_metrics["mean_ratio"] is not None
    # an RGB-style original cannot be cloned onto one band: gray on band 1, stretched like the original band 2
    assert layer.renderer().type() == "multibandcolor"
    renderer = dock.reconstruction_layer.renderer()
    assert renderer.type() == "singlebandgray" and list(renderer.usesBands()) == [1]
    lo, hi = layer.dataProvider().cumulativeCut(2, 0.02, 0.98, layer.extent(), 250000)
    assert renderer.contrastEnhancement().minimumValue() == pytest.approx(lo)
    assert renderer.contrastEnhancement().maximumValue() == pytest.approx(hi)

    # a gray style on the compressed band is cloned and moved to band 1, stretch included
    from qgis.core import QgsSingleBandGrayRenderer

    from sar_compressor.algorithms.styling import matching_renderer

    gray = QgsSingleBandGrayRenderer(layer.dataProvider(), 2)
    stretch = QgsContrastEnhancement(renderer.contrastEnhancement())
    stretch.setMinimumValue(1.5)
    gray.setContrastEnhancement(stretch)
    layer.setRenderer(gray)
    moved = matching_renderer(layer, 2, dock.reconstruction_layer)
    assert moved.type() == "singlebandgray" and moved.grayBand() == 1
    assert moved.contrastEnhancement().minimumValue() == pytest.approx(1.5)


def test_cancel_leaves_no_output(make_dock, provider, tmp_path, qgis_new_project):
    layer = _scene_layer(tmp_path, 1024, "big")
    out = tmp_path / "out"
    dock = make_dock()
    dock.set_layer(layer)
    dock.set_output_folder(str(out))

    statuses = _run(dock, cancel_at_progress=0.0)

    assert statuses == ["terminated"]
    assert dock.run.successful is False
    assert "Cancel" in dock.status_label.text()
    assert not dock.load_button.isEnabled()
    assert list(out.iterdir()) == []
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_failed_run_shows_the_algorithm_error(make_dock, provider, scene):
    Path(scene.source()).unlink()  # the layer stays open, but the algorithm needs the file
    dock = make_dock()
    dock.set_layer(scene)

    assert _run(dock) == []  # prepareAlgorithm refused it: no task was queued
    assert dock.run.successful is False
    assert "not a file on disk" in dock.status_label.text()
    assert dock.last_error == dock.status_label.text()
    assert not dock.load_button.isEnabled() and dock.run_button.isEnabled()


def test_missing_dependency_shows_message_not_traceback(make_dock, monkeypatch, scene):
    """The panel shows the algorithms' own install advice (one text for the whole plugin)."""
    from sar_compressor.algorithms import common

    monkeypatch.setattr(common, "missing_dependencies", lambda modules: ["constriction"])
    dock = make_dock()
    dock.set_layer(scene)

    assert dock.message_label.isVisible()
    assert "SAR Compressor needs constriction" in dock.message_label.text()
    assert "<code>python3 -m pip install constriction</code>" in dock.message_label.text()
    assert not dock.run_button.isEnabled()


def test_broken_dependency_shows_message_not_traceback(make_dock, monkeypatch, scene):
    """An installed but broken package (a DLL that fails to load) is reported like a missing one."""
    import importlib

    real_import = importlib.import_module

    def broken_constriction(name, package=None):
        if name == "constriction":
            raise OSError("DLL load failed")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", broken_constriction)
    dock = make_dock()
    dock.set_layer(scene)

    assert "constriction could not be imported (DLL load failed)" in dock.message_label.text()
    assert "pip install constriction" in dock.message_label.text()
    assert not dock.run_button.isEnabled()


def test_the_dock_offers_no_model_or_device(make_dock):
    """The autoencoder base was retired: nothing to choose but the codec's own settings."""
    dock = make_dock()
    assert not hasattr(dock, "model_combo") and not hasattr(dock, "device_combo")


@pytest.mark.slow
@pytest.mark.shared_data
def test_screenshot_on_real_sar(make_dock, provider, shared_sar_dir, qgis_new_project):
    """The README picture: a real AIRSAR crop (skips without ../shared)."""
    layer = QgsRasterLayer(str(shared_sar_dir / "airsar_sf_T11_900x1024.tif"), "AIRSAR San Francisco (T11)")
    layer.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    QgsProject.instance().addMapLayer(layer)
    dock = make_dock()
    dock.resize(900, 1000)
    dock.set_layer(layer)
    dock.quality_spin.setValue(4)

    assert _run(dock) == ["completed"], dock.last_error
    _wait_canvases(dock)
    assert not _is_blank(_render(dock.canvases.right))
    ARTIFACTS.mkdir(exist_ok=True)
    assert dock.grab().save(str(ARTIFACTS / "dock_bundled_model.png"))
