"""The dock panel, headless: a real run through the Processing algorithm in the task manager, linked canvases,
the styled reconstruction layer, cancel, and the messages shown instead of tracebacks."""

from __future__ import annotations

import gc
import os
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

from sar_compressor.ui import comparison

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
    # the float32 reconstruction (many times the .sarz) waits in a scratch folder until it is kept
    assert reconstruction.parent != sarz.parent and not list(sarz.parent.glob("*_reconstruction*"))
    metrics = dock.last_metrics
    assert metrics["ratio"] > 1.0
    assert 0.0 < metrics["bpp"] < 32.0
    assert metrics["psnr"] is not None and metrics["psnr"] > 0.0
    assert metrics["ssim"] is not None and -1.0 <= metrics["ssim"] <= 1.0
    assert metrics["mean_ratio"] is not None and 0.1 < metrics["mean_ratio"] < 10.0
    assert dock.progress_bar.value() == 100
    assert all(dock.metrics_table.value_text(key) not in ("", "n/a") for key in ("ratio", "bpp", "psnr", "ssim"))

    # linear intensity: both canvases in dB with one stretch (the original's 1-99 % dB percentiles)
    left, right = dock.canvases.left, dock.canvases.right
    assert dock.view_combo.currentText() == comparison.DB_STRETCH
    shown = [canvas.layers()[0].renderer() for canvas in (left, right)]
    assert all(renderer.type() == "singlebandgray" for renderer in shown)
    lo, hi = dock._comparison.stretch_range()
    assert -60.0 < lo < hi < 40.0  # dB values, not linear intensity
    for renderer in shown:
        assert renderer.contrastEnhancement().minimumValue() == pytest.approx(lo)
        assert renderer.contrastEnhancement().maximumValue() == pytest.approx(hi)
    _wait_canvases(dock)
    assert not _is_blank(_render(left)) and not _is_blank(_render(right))

    # the original layer's own stretch on both sides
    dock.show_view(comparison.ORIGINAL_STRETCH)
    assert left.layers()[0].id() == scene.id()
    assert right.layers()[0].source() == str(reconstruction)
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
    zoomed_in = left.extent()
    dock.show_view(comparison.DB_STRETCH)  # another view of the same run keeps the zoom (it jumped to full extent)
    assert left.extent().width() == pytest.approx(zoomed_in.width(), rel=0.02)
    assert left.extent().width() < 0.75 * full.width()  # not reset to the full extent
    _assert_same_view(left, right)

    # the reconstruction as a project layer with the original's style, kept beside the .sarz
    dock.load_button.click()
    kept = Path(dock.last_results["RECONSTRUCTION"])
    assert kept.parent == sarz.parent and kept.name == sarz.stem + "_reconstruction.tif" and kept.is_file()
    loaded = [layer for layer in QgsProject.instance().mapLayers().values() if layer.source() == str(kept)]
    assert len(loaded) == 1
    styled, original = loaded[0].renderer(), scene.renderer()
    assert styled.type() == original.type()
    assert styled.contrastEnhancement().minimumValue() == pytest.approx(original.contrastEnhancement().minimumValue())
    assert styled.contrastEnhancement().maximumValue() == pytest.approx(original.contrastEnhancement().maximumValue())
    assert dock.load_reconstruction() is loaded[0] and "already" in dock.status_label.text()  # not added twice
    assert loaded[0].name() == f"{Path(scene.name()).stem} (reconstruction)"  # without the layer's .tif
    dock.clear_results()  # a new run or layer: the scratch folder goes, the kept copy stays
    assert not reconstruction.parent.exists() and kept.is_file()


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
    assert Path(dock.last_results["OUTPUT"]).name == "two_bands_b2_q5.sarz"  # the band named: band 2 was two_bands_q5
    # an RGB-style original cannot be cloned onto one band: gray on band 1, stretched like the original band 2
    assert layer.renderer().type() == "multibandcolor"
    renderer = dock.reconstruction_layer.renderer()
    assert renderer.type() == "singlebandgray" and list(renderer.usesBands()) == [1]
    lo, hi = layer.dataProvider().cumulativeCut(2, 0.02, 0.98, layer.extent(), 250000)
    assert renderer.contrastEnhancement().minimumValue() == pytest.approx(lo)
    assert renderer.contrastEnhancement().maximumValue() == pytest.approx(hi)

    # the comparison shows band 2 on both sides with one renderer, never the layer's colour composite
    dock.show_view(comparison.ORIGINAL_STRETCH)
    left, right = (canvas.layers()[0].renderer() for canvas in (dock.canvases.left, dock.canvases.right))
    assert left.type() == right.type() == "singlebandgray"
    assert list(left.usesBands()) == [2] and list(right.usesBands()) == [1]
    assert left.contrastEnhancement().minimumValue() == pytest.approx(right.contrastEnhancement().minimumValue())
    dock.show_view(comparison.DB_STRETCH)
    previews = [canvas.layers()[0] for canvas in (dock.canvases.left, dock.canvases.right)]
    assert all(layer.bandCount() == 1 for layer in previews)
    import rasterio

    with rasterio.open(previews[0].source()) as src:  # band 2 in dB: 10 log10(10 x band 1's scene) range
        assert np.nanmedian(src.read(1)) > -20.0

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


def _dock_on_scene(make_dock, folder: Path, size: int, name: str):
    """A panel on a new simulated scene layer, its outputs into folder/out: (dock, layer, out)."""
    layer, out, dock = _scene_layer(folder, size, name), folder / "out", make_dock()
    dock.set_layer(layer)
    dock.set_output_folder(str(out))
    return dock, layer, out


def test_cancel_leaves_no_output(make_dock, provider, tmp_path, qgis_new_project):
    dock, _, out = _dock_on_scene(make_dock, tmp_path, 1024, "big")

    statuses = _run(dock, cancel_at_progress=0.0)

    assert statuses == ["terminated"]
    assert dock.run.successful is False
    assert "Cancel" in dock.status_label.text()
    assert not dock.load_button.isEnabled()
    assert list(out.iterdir()) == []
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_a_cancel_during_the_metrics_says_the_file_is_written(make_dock, provider, tmp_path, qgis_new_project):
    """Compress keeps its outputs when cancelled while measuring (whole by then): the panel said only "Cancelled."
    and the next run took the name after it."""
    dock, _, out = _dock_on_scene(make_dock, tmp_path, 1024, "measured")  # metrics long enough for the click
    finished, loop = [], QEventLoop()
    dock.runFinished.connect(lambda ok: (finished.append(ok), loop.quit()))
    QTimer.singleShot(RUN_TIMEOUT_S * 1000, loop.quit)
    dock.run_button.click()
    dock.run.feedback.progressTextChanged.connect(
        lambda text: dock.cancel_button.click() if text.startswith("metrics") else None
    )
    if not finished:
        loop.exec_()
    written, status = sorted(out.glob("*.sarz")), dock.status_label.text()
    assert finished == [False] and len(written) == 1
    assert f"Cancelled while measuring: {written[0]} is written whole" in status


def test_an_input_layer_removed_during_a_run_says_the_file_is_written(make_dock, provider, tmp_path, qgis_new_project):
    """The run finished and wrote its .sarz, but the panel said only "The input layer was removed." in red."""
    dock, layer, out = _dock_on_scene(make_dock, tmp_path, 256, "gone")
    removed: list[bool] = []

    def remove(value: float) -> None:
        if not removed:
            removed.append(True)
            QgsProject.instance().removeMapLayer(layer.id())

    def started() -> None:  # after the panel's own slot: the run exists
        dock.run.progressChanged.connect(remove)

    dock.run_button.clicked.connect(started)
    _run(dock)
    dock.run_button.clicked.disconnect(started)
    written, status = sorted(out.glob("*.sarz")), dock.status_label.text()
    assert removed and written
    assert f"Written: {written[0]}" in status and "removed from the project" in status


@pytest.mark.parametrize("folder", ["relative_out", "FILE/sub"])
def test_an_output_folder_that_cannot_be_used_is_said_in_the_panel(make_dock, provider, scene, tmp_path, folder):
    """A folder under a file raised NotADirectoryError into QGIS's Python error dialog; a relative one was made in
    QGIS's working folder."""
    dock = make_dock()
    dock.set_layer(scene)
    dock.set_output_folder(folder.replace("FILE", scene.source()))
    dock.start_run()
    assert dock.run is None and not Path("relative_out").exists()
    assert "output folder" in dock.status_label.text()


def test_a_read_only_folder_is_said_before_the_run_and_keeps_the_last_results(
    make_dock, provider, scene, tmp_path, monkeypatch
):
    """A read-only folder failed a second into the run, after the last results had been cleared."""
    dock = make_dock()
    dock.set_layer(scene)
    assert _run(dock) == ["completed"], dock.last_error
    shown = dict(dock.last_results)
    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and Path(path) != locked)
    dock.set_output_folder(str(locked))
    dock.start_run()
    assert not dock.run.running and "Cannot write into the output folder" in dock.status_label.text()
    assert dock.last_results == shown and not list(locked.iterdir())


def test_unloading_during_a_run_cancels_it_and_removes_its_scratch_folder(make_dock, provider, tmp_path):
    """Unload (clear_results while a run writes) deleted the run's folder under it: a 'cannot write' warning."""
    dock = make_dock()
    dock.set_layer(_scene_layer(tmp_path, 1024, "big"))
    dock.set_output_folder(str(tmp_path / "out"))
    loop = QEventLoop()
    dock.run_button.click()
    run, scratch = dock.run, Path(dock._scratch)
    run.finished.connect(loop.quit)
    run.progressChanged.connect(loop.quit)
    QTimer.singleShot(RUN_TIMEOUT_S * 1000, loop.quit)
    loop.exec_()  # until the task reports progress: it runs, writing into the scratch folder
    run.progressChanged.disconnect(loop.quit)
    assert run.running
    dock.clear_results()
    if run.running:
        loop.exec_()
    assert not run.running and run.cancel_requested and not run.successful
    assert not scratch.exists() and not list((tmp_path / "out").iterdir())


def test_a_cancel_from_qgis_says_cancelled_not_failed(make_dock, provider, tmp_path, qgis_iface, monkeypatch):
    """QGIS cancels a task itself (the task manager's cancel button, quitting QGIS with the run going): the panel
    said 'The run failed; see the Processing log' and pushed it to the message bar."""
    warnings: list[str] = []
    monkeypatch.setattr(qgis_iface.messageBar(), "pushWarning", lambda title, text: warnings.append(text))
    dock = make_dock()
    dock.set_layer(_scene_layer(tmp_path, 1024, "big"))
    dock.set_output_folder(str(tmp_path / "out"))
    loop = QEventLoop()
    dock.run_button.click()
    run = dock.run
    run.finished.connect(loop.quit)
    run.progressChanged.connect(loop.quit)
    QTimer.singleShot(RUN_TIMEOUT_S * 1000, loop.quit)
    loop.exec_()  # until the task reports progress
    run.progressChanged.disconnect(loop.quit)
    assert run.running
    run.task.cancel()  # what QGIS does, not the panel's Cancel button
    if run.running:
        loop.exec_()
    assert not run.running and not run.cancel_requested and not run.successful
    assert dock.status_label.text() == "Cancelled." and not warnings
    assert not list((tmp_path / "out").glob("*.sarz"))


def test_failed_run_shows_the_algorithm_error(make_dock, provider, scene, qgis_iface, monkeypatch):
    """A layer whose file was deleted was called 'not a file on disk; save it as a GeoTIFF first', and Run stayed
    enabled for it; the error reaches the message bar (a failed prepare cancels the feedback too: it was taken for
    a cancel and not pushed)."""
    warnings: list[str] = []
    monkeypatch.setattr(qgis_iface.messageBar(), "pushWarning", lambda title, text: warnings.append(text))
    dock = make_dock()
    dock.set_layer(scene)
    Path(scene.source()).unlink()  # the layer stays open, but the algorithm needs the file

    assert _run(dock) == []  # prepareAlgorithm refused it: no task was queued
    assert dock.run.successful is False
    assert "which no longer exists (moved or deleted)" in dock.status_label.text()
    assert dock.last_error == dock.status_label.text() and warnings == [dock.last_error]
    assert not dock.load_button.isEnabled() and not dock.run_button.isEnabled()
    dock.set_layer(None)
    dock.set_layer(scene)
    assert "no longer exists" in dock.summary_label.text() and not dock.run_button.isEnabled()


def test_missing_dependency_shows_message_not_traceback(make_dock, monkeypatch, scene):
    """The panel shows the algorithms' own install advice (one text for the whole plugin)."""
    from sar_compressor.algorithms import common

    monkeypatch.setattr(common, "missing_dependencies", lambda modules: ["constriction"])
    dock = make_dock()
    dock.set_layer(scene)

    assert dock.message_label.isVisible()
    assert "SAR Compressor needs constriction" in dock.message_label.text()
    assert "<code>python3 -m pip install --target PROFILE/python/dependencies constriction</code>" in (
        dock.message_label.text()
    )
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
    assert "pip install --target PROFILE/python/dependencies constriction" in dock.message_label.text()
    assert not dock.run_button.isEnabled()


def test_the_dock_offers_no_model_or_device(make_dock):
    """The autoencoder base was retired: nothing to choose but the codec's own settings."""
    dock = make_dock()
    assert not hasattr(dock, "model_combo") and not hasattr(dock, "device_combo")


@pytest.mark.slow
@pytest.mark.shared_data
def test_screenshot_on_real_sar(make_dock, provider, shared_sar_dir, qgis_new_project, tmp_path):
    """The README picture: a real AIRSAR crop (skips without ../shared)."""
    layer = QgsRasterLayer(str(shared_sar_dir / "airsar_sf_T11_900x1024.tif"), "AIRSAR San Francisco (T11)")
    layer.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    QgsProject.instance().addMapLayer(layer)
    dock = make_dock()
    dock.resize(900, 1000)
    dock.set_layer(layer)
    dock.set_output_folder(str(tmp_path))  # never next to the shared source crops
    dock.quality_spin.setValue(4)

    assert _run(dock) == ["completed"], dock.last_error
    _wait_canvases(dock)
    assert not _is_blank(_render(dock.canvases.right))
    ARTIFACTS.mkdir(exist_ok=True)
    assert dock.grab().save(str(ARTIFACTS / "dock_bundled_model.png"))


def test_default_output_is_next_to_the_source_never_a_temporary_folder(
    make_dock, monkeypatch, tmp_path, qgis_new_project
):
    import tempfile

    from qgis.core import QgsProcessingUtils

    from sar_compressor.ui import output_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system_tmp"))  # tmp_path itself is under /tmp
    (tmp_path / "system_tmp").mkdir()
    monkeypatch.setattr(output_folder, "remembered_folder", lambda: "")
    data = tmp_path / "data"
    data.mkdir()
    layer = _scene_layer(data, 64, "source")
    dock = make_dock()
    dock.set_layer(layer)

    folder = Path(dock.output_folder()).resolve()
    assert folder == data.resolve()
    for temporary in (QgsProcessingUtils.tempFolder(), tempfile.gettempdir()):
        assert Path(temporary).resolve() not in (folder, *folder.parents)
    assert dock.output_widget.filePath() == str(data)  # the full path is shown, not a placeholder
    assert not dock.folder_warning.isVisible()
    assert dock.open_folder_button.isEnabled()

    dock.set_output_folder(QgsProcessingUtils.tempFolder())  # the user picks a folder QGIS deletes on exit
    assert dock.folder_warning.isVisible() and "temporary folder" in dock.folder_warning.text()
    dock.set_output_folder(str(tmp_path / "kept"))
    assert not dock.folder_warning.isVisible()
    # a chosen folder stays when the layer changes; a remembered one is the next default
    dock.set_layer(_scene_layer(tmp_path, 64, "other"))
    assert dock.output_folder() == str(tmp_path / "kept")
    monkeypatch.setattr(output_folder, "remembered_folder", lambda: str(tmp_path / "kept"))
    assert output_folder.default_folder(str(data / "source.tif")) == str(tmp_path / "kept")


def test_remembered_folder_round_trip(monkeypatch, tmp_path):
    import tempfile

    from qgis.core import QgsSettings

    from sar_compressor.ui import output_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system_tmp"))
    before = QgsSettings().value(output_folder.SETTINGS_KEY, "")
    try:
        output_folder.remember_folder(str(tmp_path))
        assert output_folder.remembered_folder() == str(tmp_path)
        assert output_folder.default_folder("/elsewhere/x.tif") == str(tmp_path)
        output_folder.remember_folder(str(tmp_path / "system_tmp" / "x"))  # temporary: not remembered
        assert output_folder.remembered_folder() == str(tmp_path)
    finally:
        QgsSettings().setValue(output_folder.SETTINGS_KEY, before)


def test_layer_change_resets_band_and_clears_results(make_dock, provider, tmp_path, qgis_new_project):
    import rasterio

    from sar_compressor.engine.simulate import write_scene

    write_scene(tmp_path / "b.tif", 96, 96, looks=1, seed=1, kind="intensity", dtype="float32", georef=True)
    with rasterio.open(tmp_path / "b.tif") as src:
        profile, data = dict(src.profile, count=3), src.read(1)
    with rasterio.open(tmp_path / "three.tif", "w", **profile) as dst:
        for band in (1, 2, 3):
            dst.write(data * band, band)
    three = QgsRasterLayer(str(tmp_path / "three.tif"), "three")
    QgsProject.instance().addMapLayer(three)
    single = _scene_layer(tmp_path, 96, "single")
    dock = make_dock()
    dock.set_layer(three)
    dock.band_combo.setBand(3)
    assert _run(dock) == ["completed"], dock.last_error
    assert dock.last_metrics["psnr"] is not None and dock.canvases.left.layers()
    previews = Path(dock._comparison.folder)
    assert previews.is_dir() and any(previews.iterdir())

    dock.set_layer(single)
    assert dock.band_combo.currentBand() == 1  # not the previous layer's band 3, not blank
    assert dock.last_metrics == {} and dock.last_results == {}
    assert not previews.exists()  # the comparison's preview files went with it
    assert dock.canvases.left.layers() == [] and dock.canvases.right.layers() == []
    assert dock.metrics_table.value_text("psnr") == ""
    dock.set_layer(three)
    assert dock.band_combo.currentBand() == 1


def test_a_gdal_mask_is_no_band_in_the_dock(make_dock, tmp_path, qgis_new_project):
    """QGIS shows a per-dataset mask as one more, 'Alpha', band; choosing it said the band did not exist."""
    import numpy as np
    import rasterio

    from sar_compressor.engine.simulate import write_scene

    write_scene(tmp_path / "s.tif", 96, 96, seed=1)
    with rasterio.open(tmp_path / "s.tif") as src:
        profile, data = src.profile, src.read(1)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp_path / "m.tif", "w", **profile) as dst:
        dst.write(data, 1)
        dst.write_mask(np.pad(np.full((96, 80), 255, np.uint8), ((0, 0), (16, 0))))
    layer = QgsRasterLayer(str(tmp_path / "m.tif"), "masked")
    QgsProject.instance().addMapLayer(layer)
    assert layer.bandCount() == 2
    dock = make_dock()
    dock.set_layer(layer)
    bands = [dock.band_combo.itemData(i) for i in range(dock.band_combo.count())]
    assert [b for b in bands if b and b > 0] == [1] and dock.band_combo.currentBand() == 1
    dock.set_output_folder(str(tmp_path / "out"))
    assert Path(dock._output_paths(layer)[0]).name == "masked_q5.sarz"  # the one band not named (was masked_b1_q5)


def test_a_dropped_comparison_leaves_no_preview_files(scene):
    """A builder nobody closed (its dock destroyed with the plugin, QGIS closed with a comparison on screen)
    still removes its folder when it goes, or at the latest when Python exits."""
    builder = comparison.ComparisonBuilder(scene, 1, scene, "intensity")
    shown = builder.layers(comparison.DB_STRETCH)
    folder = Path(builder.folder)
    assert {p.name for p in folder.iterdir()} == {"original.tif", "reconstruction.tif", "error.tif"}
    del builder, shown
    gc.collect()
    assert not folder.exists()


def test_input_summary_before_run(make_dock, tmp_path, qgis_new_project):
    import rasterio

    from sar_compressor.engine.simulate import write_scene

    layer = _scene_layer(tmp_path, 64, "linear")
    dock = make_dock()
    dock.set_layer(layer)
    assert dock.summary.kind == "intensity" and dock.summary.dtype == "float32"
    assert dock.summary.vmin >= 0 and dock.summary.nodata_fraction == 0.0
    assert "linear intensity" in dock.summary_label.text() and not dock.summary.warnings
    assert "1 bpp =" in dock.size_label.text()
    dock.target_spin.setValue(2.0)
    assert "at most 1.0 KiB" in dock.size_label.text()  # 2 bpp x 64 x 64 px / 8

    write_scene(tmp_path / "neg.tif", 64, 64, looks=1, seed=2, kind="intensity", dtype="float32", georef=True)
    with rasterio.open(tmp_path / "neg.tif", "r+") as dst:
        values = dst.read(1)
        values[:8] = 0.0
        values[8:16] = -np.linspace(0.5, 2.0, 64)  # deep and varied: not noise residue, not one fill value
        dst.update_tags(1, DESCRIPTION="sigma0 intensity")
        dst.set_band_description(1, "sigma0 intensity")
        dst.write(values, 1)
    negative = QgsRasterLayer(str(tmp_path / "neg.tif"), "negative")
    QgsProject.instance().addMapLayer(negative)
    dock.set_layer(negative)
    assert dock.summary.zero_fraction == pytest.approx(8 / 64)
    assert "negative" in dock.summary.refusal and "native" in dock.summary.refusal  # the engine's own refusal
    assert "Refused" in dock.summary_label.text() and "negative" in dock.summary_label.text()


def test_a_zipped_product_is_summarised_run_and_compared(make_dock, provider, tmp_path, qgis_new_project):
    """A product kept in its zip opens in QGIS as /vsizip/...: the dock said 'Not a file on disk' of it (and read
    the zip as the raster); it is summarised, compressed and shown side by side like a GeoTIFF."""
    import zipfile

    plain = _scene_layer(tmp_path, 96, "plain")
    with zipfile.ZipFile(tmp_path / "product.zip", "w") as z:
        z.write(plain.source(), "product.SAFE/measurement/vv.tif")
    layer = QgsRasterLayer(f"/vsizip/{tmp_path}/product.zip/product.SAFE/measurement/vv.tif", "zipped")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    dock = make_dock()
    dock.set_layer(layer)
    assert dock.summary is not None and dock.summary.kind == "intensity", dock.summary_label.text()
    dock.output_widget.setFilePath(str(tmp_path / "out"))
    assert _run(dock) == ["completed"], dock.last_error
    assert Path(dock.last_results["OUTPUT"]).is_file() and dock.last_metrics["psnr"] > 0


def test_progress_per_strip_with_stage_text(make_dock, provider, monkeypatch, tmp_path, qgis_new_project):
    from sar_compressor.engine.codec.format import layout

    monkeypatch.setattr(layout, "TILE", 512)  # a 256-px-wide raster: 256x512 tiles
    from sar_compressor.engine.simulate import write_scene

    path = tmp_path / "tall.tif"
    write_scene(path, 1536, 256, looks=1, seed=4, kind="intensity", dtype="float32", georef=True)
    layer = QgsRasterLayer(str(path), "tall")
    QgsProject.instance().addMapLayer(layer)
    dock = make_dock()
    dock.set_layer(layer)
    values, stages = [], []
    original_start = dock.start_run

    def start_and_record() -> None:
        original_start()
        dock.run.progressChanged.connect(values.append)
        dock.run.stageChanged.connect(stages.append)

    monkeypatch.setattr(dock, "start_run", start_and_record)
    dock.run_button.clicked.disconnect()
    dock.run_button.clicked.connect(dock.start_run)
    assert _run(dock) == ["completed"], dock.last_error
    assert any(0 < value < 90 for value in values), values  # per tile, not 0 then 100
    text = " | ".join(stages)
    assert "survey" in text and "coding, tile 2 of 3" in text and "metrics" in text, text
    assert dock.progress_bar.value() == 100


def test_metrics_table_with_domains(make_dock, provider, scene):
    from sar_compressor.ui.metrics_table import KEYS, METRICS, mean_ratio_flag

    dock = make_dock()
    dock.set_layer(scene)
    assert _run(dock) == ["completed"], dock.last_error
    table = dock.metrics_table
    labels = [table.verticalHeaderItem(row).text() for row in range(table.rowCount())]
    assert labels == [
        "Compression ratio",
        "Bits per pixel",
        "PSNR",
        "SSIM",
        "Mean ratio",
        "ENL ratio",
        "Edge preservation",
        "dB RMSE",
    ]
    for row, metric in enumerate(METRICS):
        assert table.item(row, 1).text() == metric.domain
        assert table.item(row, 0).text() != ""
    assert "raw raster bytes" in table.item(0, 1).text()
    # the expected size at this quality is now a measurement
    assert f"{dock.last_metrics['bpp']:.3f} bpp, measured by the last run" in dock.size_label.text()
    dock.quality_spin.setValue(dock.quality_spin.value() + 1)
    assert "measured by the first run" in dock.size_label.text()
    assert set(dock.last_metrics) == {metric.key for metric in METRICS}
    assert dock.last_metrics["db_rmse"] is not None and dock.last_metrics["epi"] is not None
    # n/a is explained, a biased mean is flagged
    shown = table.show_values({"RATIO": 3.0, "ENL_RATIO": None, "MEAN_RATIO": 1.2})
    enl = [metric.key for metric in METRICS].index("enl_ratio")
    assert table.item(enl, 0).text() == "n/a" and table.item(enl, 0).toolTip().startswith("n/a: ")
    assert shown["mean_ratio"] == pytest.approx(1.2) and table.value_text("mean_ratio").endswith("⚠")
    assert "+20.0 %" in mean_ratio_flag(1.2) and mean_ratio_flag(1.01) == ""
    # a band coded as its own values: PSNR, SSIM and edges are measured in them, not in dB
    table.show_values({"PSNR": 30.0, "MEAN_RATIO": None}, native=True)
    psnr, mean = (KEYS.index(key) for key in ("psnr", "mean_ratio"))
    assert table.item(psnr, 1).text().startswith("native values") and "dB" not in table.item(psnr, 1).text()
    assert "'native'" in table.item(mean, 0).toolTip()


def test_missing_dependency_offers_the_installer(make_dock, monkeypatch, scene):
    from sar_compressor.algorithms import common
    from sar_compressor.ui import dependencies

    monkeypatch.setattr(common, "missing_dependencies", lambda modules: ["constriction"])
    monkeypatch.setattr(dependencies, "missing_packages", lambda modules=None: ["constriction"])
    calls = []
    monkeypatch.setattr(dependencies, "install_dialog", lambda parent, packages: calls.append(packages) or True)
    dock = make_dock()
    dock.set_layer(scene)
    assert dock.install_button.isVisible() and "Install dependencies" in dock.message_label.text()
    dock.install_button.click()
    assert calls == [["constriction"]]


def test_error_map_and_detached_window(make_dock, provider, scene):
    dock = make_dock()
    dock.set_layer(scene)
    assert _run(dock) == ["completed"], dock.last_error
    assert [dock.view_combo.itemText(i) for i in range(dock.view_combo.count())] == comparison.view_names("intensity")

    dock.show_view(comparison.ERROR_MAP)
    error = dock.canvases.right.layers()[0]
    assert error.renderer().type() == "singlebandpseudocolor"
    lo, hi = error.renderer().classificationMin(), error.renderer().classificationMax()
    assert lo == pytest.approx(-hi) and hi > 0  # symmetric around 0 dB
    assert "Error" in dock.canvases.titles[1].text() and "dB" in dock.canvases.titles[1].text()
    # a band coded as its own values has its error in them, not in dB
    assert comparison.view_names("native")[-1] == comparison.NATIVE_ERROR_MAP == "Error map (native values)"
    _wait_canvases(dock)
    assert not _is_blank(_render(dock.canvases.right))

    dock.detach_comparison(True)  # a resizable window of its own, the canvases still linked
    window = dock.comparison_window
    assert window is not None and window.isVisible() and dock.comparison_box.window() is window
    assert window.width() >= comparison_window_width()
    dock.detach_comparison(False)
    assert dock.comparison_window is None and dock.comparison_box.window() is dock


def comparison_window_width() -> int:
    from sar_compressor.ui.dock import COMPARISON_WINDOW_SIZE

    return COMPARISON_WINDOW_SIZE[0]


def test_the_panel_can_be_made_narrow(make_dock, scene):
    """The panel could not be made narrower than 504 pixels (two 240-pixel canvases side by side, a band combo as
    wide as its band's name, a form that never wrapped): over a third of a 1366-pixel screen."""
    dock = make_dock()
    dock.set_layer(scene)
    assert dock.minimumSizeHint().width() <= 340
    dock.resize(320, 900)
    for _ in range(10):  # the scroll area settles over a few layout passes
        process_events()
    scroll = dock.settings_scroll
    assert dock.width() <= 330
    assert scroll.widget().width() <= scroll.viewport().width(), (scroll.widget().width(), scroll.viewport().width())
