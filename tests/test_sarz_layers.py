"""QGIS opens a .sarz (issue 18): a layer on its VRT renders headless, styled on a dB stretch; a dropped .sarz
becomes a layer; a VRT never replaces a user's file (it goes to the cache folder instead)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from qgis.core import Qgis, QgsMapRendererParallelJob, QgsMapSettings, QgsProject, QgsSingleBandPseudoColorRenderer
from qgis.PyQt.QtCore import QCoreApplication, QSize
from qgis.PyQt.QtGui import QColor

from sar_compressor.algorithms import styling
from sar_compressor.engine import api
from sar_compressor.engine.codec.format import layout
from sar_compressor.engine.simulate import write_scene
from sar_compressor.ui import sarz_layers


@pytest.fixture()
def sarz(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "TILE", 128)
    src = write_scene(tmp_path / "scene.tif", 260, 300, seed=9)
    api.compress_file(src, tmp_path / "scene.sarz", quality=3)
    return tmp_path / "scene.sarz"


def _render(layer) -> np.ndarray:
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setExtent(layer.extent().buffered(-0.02 * layer.extent().width()))  # no edge pixel blends
    settings.setOutputSize(QSize(150, 130))
    settings.setBackgroundColor(QColor(255, 0, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    pixels = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)[:, : image.width()]
    return pixels.copy()  # the view dies with `image`


def test_a_sarz_layer_renders_on_a_db_stretch(qgis_app, sarz):
    layer = sarz_layers.sarz_layer(str(sarz))
    assert layer.isValid() and layer.source() == str(sarz) + ".vrt"
    assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer)
    stops = [item.value for item in layer.renderer().shader().rasterShaderFunction().colorRampItemList()]
    assert np.allclose(np.diff(10 * np.log10(stops)), np.diff(10 * np.log10(stops))[0])  # even in dB
    renderer = layer.renderer()  # unset, "nan" went into saved styles and projects: the legend said nan / nan
    assert (renderer.classificationMin(), renderer.classificationMax()) == (stops[0], stops[-1])
    pixels = _render(layer)
    magenta = (pixels[..., 0] == 255) & (pixels[..., 1] == 0) & (pixels[..., 2] == 255)
    grey = (pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2])
    assert not magenta.any() and grey.all() and np.unique(pixels[..., 0]).size > 50


def test_dropping_a_sarz_adds_its_layer(qgis_app, qgis_iface, sarz):
    handler = sarz_layers.SarzDropHandler(qgis_iface)
    assert not handler.handleFileDrop(str(sarz.with_name("scene.tif")))
    before = len(QgsProject.instance().mapLayers())
    assert handler.handleFileDrop(str(sarz))
    assert len(QgsProject.instance().mapLayers()) == before + 1
    QgsProject.instance().removeAllMapLayers()


def test_a_users_file_is_never_replaced(qgis_app, sarz, tmp_path, monkeypatch):
    monkeypatch.setattr(sarz_layers, "cache_folder", lambda: tmp_path / "cache")
    user = sarz.with_name("scene.sarz.vrt")
    user.write_text("the user's own VRT")
    layer = sarz_layers.sarz_layer(str(sarz))
    assert user.read_text() == "the user's own VRT"
    assert layer.isValid() and str(tmp_path / "cache") in layer.source()


def test_the_browser_lists_a_sarz_as_a_styled_raster_on_a_cached_vrt(qgis_app, sarz, tmp_path, monkeypatch):
    from qgis.core import QgsRasterLayer

    monkeypatch.setattr(sarz_layers, "cache_folder", lambda: tmp_path / "cache")
    provider = sarz_layers.SarzItemProvider()
    assert provider.createDataItem(str(sarz.with_name("scene.tif")), None) is None
    item = provider.createDataItem(str(sarz), None)
    assert item is not None and item.uri().startswith(str(tmp_path / "cache"))
    assert not sarz.with_name("scene.sarz.vrt").exists()  # browsing writes nothing beside the file
    sarz_layers.enable_python_vrt()
    layer = QgsRasterLayer(item.uri(), "browsed", item.providerKey())
    assert layer.isValid() and (layer.width(), layer.height()) == (300, 260)
    # styled as a dropped one (QGIS loads the VRT's default style): it opened in QGIS's default, almost black
    assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer)
    broken = sarz.with_name("broken.sarz")
    broken.write_bytes(b"not a sarz")
    assert provider.createDataItem(str(broken), None) is None
    project = QgsProject.instance()  # added to the project: moved onto a VRT beside its .sarz, as a dropped file's
    project.layersAdded.connect(sarz_layers.repair_moved)  # (the cache's path, into the QGIS profile, broke once
    try:  # the project moved)
        project.addMapLayer(layer)
        assert layer.source() == str(sarz) + ".vrt" and sarz.with_name("scene.sarz.vrt").exists()
        assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer) and layer.isValid()
    finally:
        project.layersAdded.disconnect(sarz_layers.repair_moved)
        project.clear()


def test_a_replaced_sarz_dropped_again_beside_its_open_old_layer_gets_a_vrt_of_its_own(
    qgis_app, sarz, tmp_path, monkeypatch
):
    """GDAL writes an open VRT back when its layer closes (with the statistics QGIS computed): a .sarz replaced
    and dropped again had its VRT rewritten beside it, then the old layer's close put the old file's id back, and
    every later read failed ("another file than this VRT was written for"). While the old layer is open, the new
    file's VRT goes to the cache folder; a file dropped again unchanged reuses its VRT as it is."""
    monkeypatch.setattr(sarz_layers, "cache_folder", lambda: tmp_path / "cache")
    project = QgsProject.instance()
    try:
        old = sarz_layers.open_sarz(str(sarz))
        assert old.source() == str(sarz) + ".vrt"
        writes = []
        with monkeypatch.context() as patch:
            patch.setattr(sarz_layers.gdal_vrt, "write_vrt", lambda *a, **k: writes.append(a))
            assert sarz_layers.sarz_layer(str(sarz)).source() == old.source()  # unchanged: the same VRT, as it is
        assert writes == []
        api.compress_file(write_scene(tmp_path / "other.tif", 200, 220, seed=3), sarz, quality=3)  # --overwrite
        new = sarz_layers.sarz_layer(str(sarz))
        assert new.isValid() and new.source().startswith(str(tmp_path / "cache")) and new.width() == 220
    finally:
        project.clear()


def _ramp(layer) -> list[float]:
    return [item.value for item in layer.renderer().shader().rasterShaderFunction().colorRampItemList()]


def test_a_layer_follows_its_sarz_when_it_is_replaced(qgis_app, sarz, tmp_path, monkeypatch):
    """Compress writing over a .sarz a layer showed left the layer blank, each read refusing another file's id in the
    render log only: the watcher moves the layer onto a VRT of the new file, and watches the file again."""
    monkeypatch.setattr(sarz_layers, "cache_folder", lambda: tmp_path / "cache")
    watcher = sarz_layers.SarzWatcher()
    try:
        layer = sarz_layers.open_sarz(str(sarz))
        assert str(sarz) in watcher.watcher.files() and layer.width() == 300
        api.compress_file(write_scene(tmp_path / "other.tif", 200, 220, seed=3), sarz, quality=3)  # --overwrite
        deadline = time.monotonic() + 10
        while layer.width() != 220 and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.05)
        assert layer.isValid() and layer.width() == 220 and str(sarz) in watcher.watcher.files()
        pixels = _render(layer)
        assert not ((pixels[..., 0] == 255) & (pixels[..., 1] == 0) & (pixels[..., 2] == 255)).all()
        assert sarz_layers.follow_replaced(str(sarz)) == 0  # current: nothing to do
        fresh = sarz_layers.sarz_layer(str(sarz))  # the dB stretch follows the new file's range, as a new layer's
        assert _ramp(layer) == _ramp(fresh)
        QgsProject.instance().removeMapLayer(layer.id())
        assert watcher.watcher.files() == []  # no layer reads it any more
    finally:
        watcher.close()
        QgsProject.instance().clear()


def test_add_sarz_layer_opens_the_chosen_files(qgis_app, qgis_iface, sarz, monkeypatch):
    """Layer > Add Raster Layer hands a .sarz to GDAL, which cannot read it: the plugin's own menu entry opens it."""
    chosen = [str(sarz), str(sarz.with_name("missing.sarz"))]
    monkeypatch.setattr(sarz_layers.QFileDialog, "getOpenFileNames", lambda *a, **k: (chosen, ""))
    layers = sarz_layers.SarzLayers(qgis_iface, "&SAR Compressor")
    layers.register()
    try:
        layers.action.trigger()
        opened = [layer for layer in QgsProject.instance().mapLayers().values() if layer.name() == "scene"]
        assert len(opened) == 1 and opened[0].source() == str(sarz) + ".vrt"
        assert "missing.sarz" in str(qgis_iface.messageBar().get_messages(Qgis.Warning))
    finally:
        layers.unregister()
        QgsProject.instance().clear()


def test_a_quicklook_with_an_alpha_band_stretches_its_own_values_and_stays_transparent(qgis_app, tmp_path):
    """A uint8 display product is coded as native values: its ramp runs over them, not over 10**(v/10) (which put
    values 1-255 on 5 of 33 stops: an almost black layer); its alpha band stays an alpha band (VRT ColorInterp)
    and the renderer draws through it."""
    import rasterio
    from rasterio.enums import ColorInterp

    from sar_compressor.engine.simulate import simulate_product

    grd = simulate_product(200, 240, "grd", seed=5)
    gray = np.clip(grd // 64, 1, 255).astype(np.uint8)
    alpha = np.where(grd > 0, 255, 0).astype(np.uint8)
    src = tmp_path / "quicklook.tif"
    with rasterio.open(src, "w", driver="GTiff", width=240, height=200, count=2, dtype="uint8") as ds:
        ds.write(np.stack([gray, alpha]))
        ds.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    api.compress_file(src, tmp_path / "q.sarz")
    layer = sarz_layers.sarz_layer(str(tmp_path / "q.sarz"))
    stops = [item.value for item in layer.renderer().shader().rasterShaderFunction().colorRampItemList()]
    assert np.allclose(np.diff(stops), np.diff(stops)[0]) and 0 < stops[0] < stops[-1] <= 256  # linear, in values
    assert layer.dataProvider().colorInterpretationName(2) == "Alpha" and layer.renderer().alphaBand() == 2


def test_the_layer_is_styled_by_source_band_1_whatever_the_coding_order():
    header = {"bands": [{"source_band": 2, "kind": "db"}, {"source_band": 1, "kind": "intensity"}]}
    assert styling.first_band(header)["kind"] == "intensity"


def test_the_cached_vrt_follows_the_file_not_its_date(qgis_app, sarz, tmp_path, monkeypatch):
    """A .sarz replaced by an older file (mv, cp -p, rsync -a, unzip): the cache compared dates and kept the VRT of
    the file before, and the Browser opened a blank layer of the old size over it."""
    import os
    import shutil

    from sar_compressor.engine import api
    from sar_compressor.engine.simulate import simulate_scene

    monkeypatch.setattr(sarz_layers, "cache_folder", lambda: tmp_path / "cache")
    mine = tmp_path / "mine.sarz"
    shutil.copy(sarz, mine)
    first = sarz_layers.cached_vrt(mine)
    older = tmp_path / "older.sarz"
    older.write_bytes(api.compress_array(simulate_scene(64, 80, seed=3)[0].astype("float32"), quality=2).data)
    os.utime(older, (1.0, 1.0))
    os.replace(older, mine)  # keeps its 1970 date
    again = sarz_layers.cached_vrt(mine)
    assert again == first and 'rasterXSize="80"' in again.read_text()


def test_a_cached_vrt_names_its_sarz_for_the_panels_output_folder(qgis_app, sarz, tmp_path, monkeypatch):
    """A .sarz layer's file is its VRT, perhaps in the profile's cache: the panel offered that hidden folder for
    its outputs; the .sarz's own folder is what a user expects."""
    from sar_compressor.ui import output_folder

    monkeypatch.setattr(sarz_layers, "cache_folder", lambda: tmp_path / "cache")
    monkeypatch.setattr(output_folder, "remembered_folder", lambda: "")
    vrt = sarz_layers.cached_vrt(sarz)
    assert sarz_layers.sarz_of(str(vrt)) == str(sarz.resolve())
    assert output_folder.default_folder(sarz_layers.sarz_of(str(vrt))) == str(sarz.resolve().parent)
    assert sarz_layers.sarz_of(str(sarz.with_name("scene.tif"))) is None


def test_a_project_moved_with_its_sarz_files_opens_layers_that_read(qgis_app, sarz, tmp_path):
    """A project folder moved (or copied) with its .sarz and their VRTs: the VRTs name the old absolute path, so
    every layer failed its reads (a blank map and "... is gone (moved or deleted?)"). Layers added on such a VRT
    beside the same file are repaired: the VRTs are written for the new path and the layer reopened, styled."""
    project = QgsProject.instance()
    project.layersAdded.connect(sarz_layers.repair_moved)
    try:
        project.addMapLayer(sarz_layers.sarz_layer(str(sarz)))
        assert project.write(str(tmp_path / "p.qgs"))
        project.clear()
        copied = tmp_path.with_name(tmp_path.name + "_copied")  # the original stays: its copy read the original
        shutil.copytree(tmp_path, copied)
        assert project.read(str(copied / "p.qgs"))
        assert str(copied / "scene.sarz") in (copied / "scene.sarz.vrt").read_text()
        assert str(tmp_path / "scene.sarz") in (tmp_path / "scene.sarz.vrt").read_text()  # the original's untouched
        project.clear()
        moved = tmp_path.with_name(tmp_path.name + "_moved")
        tmp_path.rename(moved)
        assert project.read(str(moved / "p.qgs"))
        (layer,) = project.mapLayers().values()
        assert layer.source() == str(moved / "scene.sarz.vrt")
        assert str(moved / "scene.sarz") in (moved / "scene.sarz.vrt").read_text()
        assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer)
        pixels = _render(layer)
        assert not ((pixels[..., 0] == 255) & (pixels[..., 1] == 0) & (pixels[..., 2] == 255)).any()
    finally:
        project.layersAdded.disconnect(sarz_layers.repair_moved)
        project.clear()


def test_a_vrt_gdal_wrote_back_is_reused(qgis_app, sarz):
    """GDAL writes an open VRT back when its layer closes (with the statistics QGIS computed): compared byte for
    byte, the file dropped again then went to the profile's cache, whose path a moved project loses."""
    from sar_compressor.engine import gdal_vrt

    project = QgsProject.instance()
    try:
        layer = sarz_layers.open_sarz(str(sarz))
        layer.dataProvider().bandStatistics(1)
        project.removeMapLayer(layer.id())
        vrt = sarz.with_name("scene.sarz.vrt")
        assert gdal_vrt.vrt_current(sarz, vrt)
        assert sarz_layers.sarz_layer(str(sarz)).source() == str(vrt)
    finally:
        project.clear()
