"""A .sarz opens in QGIS like any raster (issue 18): dropped on the map or the Layers panel, or added from the
Browser, it becomes a GDAL layer on its VRT (engine.gdal_vrt), whose Python pixel function decodes the tiles on
screen at the overview level the zoom asks for.

A dropped file's VRT goes next to the .sarz when that folder takes it and no other file has its name (a VRT this
plugin wrote for the same file is kept where current, else rewritten: `vrt_for`); otherwise, and for every file the
Browser lists (browsing writes nothing beside the user's files), into a cache folder in the QGIS profile. A layer
added from the Browser moves onto a VRT beside its .sarz, as a dropped file's, where the folder takes one
(`repair_moved`). GDAL's Python-VRT options are set for QGIS's process, trusting this plugin's pixel-function module
only. Linear intensity is shown on a dB stretch (a grey ramp whose stops are evenly spaced in dB over the coded range,
from the file's header).

A VRT names its .sarz by absolute path (GDAL hands a pixel function its arguments, not the VRT's own path), so a
project folder moved with its .sarz files would open layers that fail every read, and a copied one layers that read
the original folder's files: a layer added on a VRT that sits beside the very file it was written for (its id), at
another path, has its VRTs written again for the file beside it and its source reopened (`repair_moved`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Optional

from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsDataItemProvider,
    QgsDataProvider,
    QgsLayerItem,
    QgsMessageLog,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
)
from qgis.gui import QgsCustomDropHandler
from qgis.PyQt.QtCore import QFileSystemWatcher
from qgis.PyQt.QtWidgets import QAction, QFileDialog

from ..algorithms.styling import header_stretch, is_db_stretch
from ..engine import gdal_vrt
from ..engine.api import read_header
from ..engine.errors import InputError, SARCompressorError

SUFFIX = ".sarz"
LAST_FOLDER_KEY = "sar_compressor/add_sarz_folder"
"""Where "Add SAR Compressor Layer" last found files (QGIS settings)."""


def enable_python_vrt() -> None:
    """GDAL runs Python pixel functions from this plugin's module (added to any modules already trusted)."""
    trusted = gdal.GetConfigOption("GDAL_VRT_PYTHON_TRUSTED_MODULES") or ""
    modules = [m for m in trusted.split(",") if m]
    if gdal_vrt.TRUSTED_MODULE not in modules:
        modules.append(gdal_vrt.TRUSTED_MODULE)
    if (gdal.GetConfigOption("GDAL_VRT_ENABLE_PYTHON") or "").upper() != "YES":
        gdal.SetConfigOption("GDAL_VRT_ENABLE_PYTHON", "TRUSTED_MODULES")
    gdal.SetConfigOption("GDAL_VRT_PYTHON_TRUSTED_MODULES", ",".join(modules))


def cache_folder() -> Path:
    """Where VRTs go when they cannot sit next to their .sarz: the QGIS profile, which the user owns."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "sar_compressor" / "vrt"


def cached_vrt(sarz: Path) -> Path:
    """The VRT of `sarz` in the cache folder (written unless the one there names this file's id: a date said
    nothing of a file replaced by an older one, moved or copied with its date, and the Browser opened a blank layer
    over the old VRT)."""
    key = hashlib.sha256(str(sarz.resolve()).encode("utf-8")).hexdigest()[:16]
    vrt = cache_folder() / key / (sarz.name + ".vrt")
    header = read_header(sarz)
    names = f'file_id="{header["file_id"]}"'
    if vrt.is_file() and names in vrt.read_text(encoding="utf-8", errors="replace"):
        if not _style_of(vrt).is_file():
            _write_style(vrt, sarz, header)
        return vrt
    vrt.parent.mkdir(parents=True, exist_ok=True)
    _style_of(vrt).unlink(missing_ok=True)  # the file it styled is gone: a new layer would load it
    gdal_vrt.write_vrt(sarz, vrt)
    _write_style(vrt, sarz, header)
    return vrt


def _style_of(vrt: Path) -> Path:
    """The QGIS default style of a VRT (QgsMapLayer.styleURI: its name less the last suffix, .qml)."""
    return vrt.with_suffix(".qml")


def _write_style(vrt: Path, sarz: Path, header: dict) -> None:
    """The dB stretch as the cached VRT's default style, which QGIS applies to a layer added from the Browser (it
    opened on QGIS's default style: linear intensity almost black, a VV/VH pair drawn as RGB)."""
    enable_python_vrt()
    layer = QgsRasterLayer(str(vrt), sarz.stem, "gdal")
    if layer.isValid():
        header_stretch(layer, header)
        layer.saveNamedStyle(str(_style_of(vrt)))


def vrt_for(sarz: Path) -> Path:
    """The VRT of `sarz` beside it (kept where it is what would be written now, else written), or in the cache folder
    where that name is taken or cannot be written, or where a layer of the project has it open and it is not current
    (a .sarz replaced since): GDAL writes an open VRT back when its layer closes (with the statistics QGIS computed,
    GDAL issue 3222), and put the old file's id back over the new VRT; its path. Paths are the file's real one (a
    link's target), as write_vrt writes them."""
    real = sarz.resolve()
    beside = real.with_name(real.name + ".vrt")
    if gdal_vrt.vrt_current(real, beside):
        return beside
    if not _open_in_project(beside):
        try:
            return gdal_vrt.write_vrt(real, beside)[0]
        except (InputError, OSError):
            pass
    return cached_vrt(real)


def _open_in_project(vrt: Path) -> bool:
    """Whether a layer of the project reads `vrt` (its source the same file, however it is spelled)."""
    for layer in QgsProject.instance().mapLayers().values():
        with contextlib.suppress(OSError):
            if Path(layer.source()).is_file() and os.path.samefile(layer.source(), vrt):
                return True
    return False


def sarz_of(path: Optional[str]) -> Optional[str]:
    """The .sarz a VRT of this tool decodes (the tag it names it by), else None: a .sarz layer's file is its VRT,
    which may sit in the profile's cache folder (the panel offered that hidden folder for its outputs)."""
    if not path or not path.lower().endswith(".vrt"):
        return None
    return gdal_vrt.sarz_named_by(path)  # the XML read: no GDAL dataset opened (it writes an open VRT back)


def sarz_layer(path: str) -> QgsRasterLayer:
    """A styled raster layer on the .sarz's VRT; SARCompressorError if the file is not a readable .sarz."""
    sarz = Path(path)
    header = read_header(sarz)
    enable_python_vrt()
    layer = QgsRasterLayer(str(vrt_for(sarz)), sarz.stem, "gdal")
    if not layer.isValid():
        raise InputError(f"GDAL could not open the VRT of {sarz}: {layer.error().summary()}")
    header_stretch(layer, header)
    return layer


class SarzDropHandler(QgsCustomDropHandler):
    """Dropped .sarz files become layers; other files go to QGIS's own handlers."""

    def __init__(self, iface) -> None:
        super().__init__()
        self.iface = iface

    def customUriProviderKey(self) -> str:  # noqa: N802 (QGIS API names)
        return "sar_compressor_sarz"

    def handleFileDrop(self, file: str) -> bool:  # noqa: N802
        if not file.lower().endswith(SUFFIX):
            return False
        open_sarz(file, self.iface)
        return True


def open_sarz(path: str, iface=None) -> Optional[QgsRasterLayer]:
    """Add the layer of a .sarz to the project; a bad file is a message (the message bar), not an exception."""
    try:
        layer = sarz_layer(path)
    except (SARCompressorError, OSError) as exc:
        if iface is not None:
            iface.messageBar().pushWarning("SAR Compressor", str(exc))  # the engine's errors name the file
        return None
    QgsProject.instance().addMapLayer(layer)
    return layer


def _moved_sarz(vrt: str) -> Optional[Path]:
    """The .sarz beside a VRT of this tool that names another path (NAME.sarz beside NAME.sarz.vrt, moved or copied
    with it), else None; whether it is the same file (its id) write_vrt checks."""
    beside = Path(vrt[: -len(".vrt")])
    if beside.suffix.lower() != SUFFIX or not beside.is_file():
        return None
    named = sarz_of(vrt)
    if named is None or (Path(named).exists() and Path(named).samefile(beside)):
        return None
    return beside


def repair_moved(layers) -> None:
    """Layers on VRTs whose .sarz moved or was copied with them (a project folder): the VRTs written again for the
    file beside them (gdal_vrt.write_vrt replaces only VRTs of the same file id), each layer reopened. A slot of the
    project's layersAdded: nothing may escape it (a broken VRT of any layer, GDAL raising with UseExceptions)."""
    for layer in layers:
        try:
            _repair(layer)
        except Exception as exc:  # noqa: BLE001 (the layer stays as it was; its reads say what is wrong)
            _log_warning(f"{layer.name()}: its VRT was not written again: {exc}")


def _log_warning(message: str) -> None:
    """A warning in the SAR Compressor tab of QGIS's log, which its status bar flags."""
    QgsMessageLog.logMessage(message, "SAR Compressor", Qgis.Warning)


def _repair(layer) -> None:
    """A layer moved with its .sarz gets its VRT written again; one added from the Browser (on the cache folder's
    VRT, which the project names by a path into the QGIS profile: it broke once the project moved) is moved onto a
    VRT beside its .sarz, as a dropped file's."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return
    source = layer.source()
    if Path(source).parent.parent == cache_folder():
        named = sarz_of(source)
        if named is None or not Path(named).is_file():
            return
        vrt = str(vrt_for(Path(named)))
        if Path(vrt) == Path(source):  # the folder takes no VRT: it stays on the cache's (not as strings: Windows)
            return
    else:
        beside = _moved_sarz(source)
        if beside is None:
            return
        try:
            gdal_vrt.write_vrt(beside, source)
        except (SARCompressorError, OSError) as exc:  # another file under that name, a folder that takes no file
            _log_warning(f"{layer.name()}: cannot follow its moved .sarz: {exc}")
            return
        vrt = source
    enable_python_vrt()
    layer.setDataSource(vrt, layer.name(), "gdal")


class SarzItemProvider(QgsDataItemProvider):
    """The Browser lists a .sarz as a raster layer on its cached VRT (added in the dB stretch: the VRT's default
    style, `_write_style`)."""

    def name(self) -> str:
        return "SAR Compressor .sarz"

    def capabilities(self) -> int:
        return QgsDataProvider.File

    def createDataItem(self, path: str, parentItem) -> Optional[QgsLayerItem]:  # noqa: N802, N803 (QGIS API)
        if not path.lower().endswith(SUFFIX):
            return None
        try:
            vrt = cached_vrt(Path(path))
        except (SARCompressorError, OSError):
            return None  # not a readable .sarz: the Browser shows it as a plain file
        return QgsLayerItem(parentItem, Path(path).name, path, str(vrt), QgsLayerItem.Raster, "gdal")


def follow_replaced(sarz: str) -> int:
    """Layers of the project that read `sarz` through a VRT of what it held before (Compress, the command line or a
    copy wrote over it: the layer went blank, each read refusing another file's id, said in the render log only) are
    moved onto a VRT of what it holds now; how many. A file gone is said in the log."""
    path = Path(sarz)
    layers = [layer for layer in QgsProject.instance().mapLayers().values() if _reads(layer, path)]
    if not layers:
        return 0
    if not path.is_file():
        _log_warning(f"{sarz} is gone (moved or deleted?): {', '.join(layer.name() for layer in layers)} cannot draw")
        return 0
    real = path.resolve()
    stale = [layer for layer in layers if not gdal_vrt.vrt_current(real, Path(layer.source()))]
    if stale:
        vrt, header = str(vrt_for(path)), read_header(path)
        enable_python_vrt()
        for layer in stale:
            restretch = is_db_stretch(layer.renderer())  # the plugin's, for the old file's range; a user's stays
            layer.setDataSource(vrt, layer.name(), "gdal")
            if restretch:
                header_stretch(layer, header)
            layer.triggerRepaint()
    return len(stale)


def _reads(layer, sarz: Path) -> bool:
    """Whether `layer` is a .sarz layer of `sarz` (its VRT names it, however the path is spelled)."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return False
    named = sarz_of(layer.source())
    if named is None:
        return False
    return Path(named) == sarz or (sarz.exists() and Path(named).exists() and os.path.samefile(named, sarz))


def _watched_name(layer) -> Optional[str]:
    """The .sarz a raster layer reads through its VRT, as the watcher names it; None for any other layer."""
    return sarz_of(layer.source()) if isinstance(layer, QgsRasterLayer) else None


class SarzWatcher:
    """Watches the .sarz files the project's layers read, so that a layer follows its file when it is replaced
    (follow_replaced). A file replaced by a rename loses its watch: it is watched again."""

    def __init__(self) -> None:
        self.watcher = QFileSystemWatcher()
        self.watcher.fileChanged.connect(self.changed)
        project = QgsProject.instance()
        project.layersAdded.connect(self.watch)
        project.layersRemoved.connect(self.prune)
        project.cleared.connect(self.prune)
        self.watch(project.mapLayers().values())

    def prune(self, *_: object) -> None:
        """Stop watching the files no layer reads any more (layers removed, the project cleared)."""
        read = {_watched_name(layer) for layer in QgsProject.instance().mapLayers().values()}
        for path in set(self.watcher.files()) - read:
            self.watcher.removePath(path)

    def watch(self, layers) -> None:
        for layer in layers:
            named = _watched_name(layer)
            if named is not None and Path(named).is_file() and named not in self.watcher.files():
                self.watcher.addPath(named)

    def changed(self, sarz: str) -> None:
        """A slot: nothing may escape it."""
        try:
            follow_replaced(sarz)
        except Exception as exc:  # noqa: BLE001 (the layers stay as they were; their reads say what is wrong)
            _log_warning(f"layers of {sarz} could not follow it: {exc}")
        self.watch(QgsProject.instance().mapLayers().values())  # a file replaced by a rename lost its watch

    def close(self) -> None:
        project = QgsProject.instance()
        for signal, slot in ((project.layersAdded, self.watch), (project.layersRemoved, self.prune)):
            with contextlib.suppress(TypeError):  # not connected
                signal.disconnect(slot)
        with contextlib.suppress(TypeError):
            project.cleared.disconnect(self.prune)
        self.watcher.fileChanged.disconnect(self.changed)
        self.watcher.deleteLater()


class SarzLayers:
    """What the plugin registers for .sarz files; `unregister` removes it."""

    def __init__(self, iface, menu: str) -> None:
        self.iface, self.menu = iface, menu
        self.handler: Optional[SarzDropHandler] = None
        self.items: Optional[SarzItemProvider] = None
        self.watcher: Optional[SarzWatcher] = None
        self.action: Optional[QAction] = None

    def register(self) -> None:
        enable_python_vrt()
        QgsProject.instance().layersAdded.connect(repair_moved)
        self.handler = SarzDropHandler(self.iface)
        self.iface.registerCustomDropHandler(self.handler)
        self.items = SarzItemProvider()
        QgsApplication.dataItemProviderRegistry().addProvider(self.items)
        self.watcher = SarzWatcher()
        self.action = QAction("Add SAR Compressor Layer (.sarz)…", self.iface.mainWindow())
        self.action.setObjectName("sarCompressorAddSarzAction")
        self.action.setToolTip("Open .sarz files as layers (Layer > Add Raster Layer hands them to GDAL, which cannot)")
        self.action.triggered.connect(self.add_files)
        self.iface.addPluginToRasterMenu(self.menu, self.action)
        if self.iface.addLayerMenu() is not None:  # Layer > Add Layer, beside Add Raster Layer
            self.iface.addLayerMenu().addAction(self.action)

    def add_files(self) -> None:
        """Ask for .sarz files and add each as a layer (a bad one is a message-bar warning)."""
        settings = QgsSettings()
        folder = settings.value(LAST_FOLDER_KEY, str(Path.home()))
        paths, _ = QFileDialog.getOpenFileNames(
            self.iface.mainWindow(), "Add SAR Compressor layer", folder, f"SAR Compressor files (*{SUFFIX})"
        )
        for path in paths:
            open_sarz(path, self.iface)
        if paths:
            settings.setValue(LAST_FOLDER_KEY, str(Path(paths[0]).parent))

    def unregister(self) -> None:
        with contextlib.suppress(TypeError):  # not connected (unregistered twice)
            QgsProject.instance().layersAdded.disconnect(repair_moved)
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(self.menu, self.action)
            if self.iface.addLayerMenu() is not None:
                self.iface.addLayerMenu().removeAction(self.action)
            self.action.deleteLater()
            self.action = None
        if self.handler is not None:
            self.iface.unregisterCustomDropHandler(self.handler)
            self.handler = None
        if self.items is not None:
            QgsApplication.dataItemProviderRegistry().removeProvider(self.items)
            self.items = None
