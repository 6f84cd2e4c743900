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
import math
import os
from pathlib import Path
from typing import Optional

from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsColorRampShader,
    QgsDataItemProvider,
    QgsDataProvider,
    QgsLayerItem,
    QgsMessageLog,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.gui import QgsCustomDropHandler
from qgis.PyQt.QtGui import QColor

from ..engine import gdal_vrt
from ..engine.api import read_header
from ..engine.errors import InputError, SARCompressorError

SUFFIX = ".sarz"
RAMP_STOPS = 33
"""Grey stops of the dB stretch (evenly spaced in dB between the coded range's ends)."""


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
        _stretch(layer, header)
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


DB_PER_DECADE = {"intensity": 10.0, "complex": 10.0, "amplitude": 20.0}
"""dB per decade of the layer's values, by kind (complex decodes as intensity). The coded range of the other kinds,
dB and native (a display product's values), is in the layer's own values: their ramp is linear in them."""


def first_band(header: dict) -> dict:
    """The header entry of the layer's band 1: the lowest source band (entries are in coding order)."""
    return min(header["bands"], key=lambda band: band["source_band"])


def _layer_value(kind: str, coded: float) -> float:
    """The layer's value at a point of its band's coded range."""
    return 10.0 ** (coded / DB_PER_DECADE[kind]) if kind in DB_PER_DECADE else coded


def db_stretch(layer: QgsRasterLayer, header: dict) -> None:
    """A grey ramp evenly spaced in dB over band 1's coded range (linear in dB and native values), through the
    alpha band where the raster has one."""
    band = first_band(header)
    vmin, vmax = band["range"]["vmin"], band["range"]["vmax"]
    kind = band["kind"]
    items = []
    for i in range(RAMP_STOPS):
        t = i / (RAMP_STOPS - 1)
        grey = round(255 * t)
        value = _layer_value(kind, vmin + t * (vmax - vmin))
        items.append(QgsColorRampShader.ColorRampItem(value, QColor(grey, grey, grey)))
    ramp = QgsColorRampShader(items[0].value, items[-1].value)
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    ramp.setClip(False)
    ramp.setColorRampItemList(items)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(items[0].value)  # unset, a saved style or project read "nan" back: the legend
    renderer.setClassificationMax(items[-1].value)  # and the symbology showed nan / nan
    bands = sorted(header["bands"], key=lambda entry: entry["source_band"])
    alpha = [i for i, entry in enumerate(bands, start=1) if entry.get("color_interp") == "alpha"]
    if alpha:
        renderer.setAlphaBand(alpha[0])
    layer.setRenderer(renderer)


def sarz_layer(path: str) -> QgsRasterLayer:
    """A styled raster layer on the .sarz's VRT; SARCompressorError if the file is not a readable .sarz."""
    sarz = Path(path)
    header = read_header(sarz)
    enable_python_vrt()
    layer = QgsRasterLayer(str(vrt_for(sarz)), sarz.stem, "gdal")
    if not layer.isValid():
        raise InputError(f"GDAL could not open the VRT of {sarz}: {layer.error().summary()}")
    _stretch(layer, header)
    return layer


def _stretch(layer: QgsRasterLayer, header: dict) -> None:
    """The dB stretch, where band 1's coded range is known."""
    if all(math.isfinite(first_band(header)["range"][k]) for k in ("vmin", "vmax")):
        db_stretch(layer, header)


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
            QgsMessageLog.logMessage(f"{layer.name()}: its VRT was not written again: {exc}", "SAR Compressor")


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
        except (SARCompressorError, OSError):
            return  # another file under that name, or a folder that cannot be written: the read's error says
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


class SarzLayers:
    """What the plugin registers for .sarz files; `unregister` removes it."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.handler: Optional[SarzDropHandler] = None
        self.items: Optional[SarzItemProvider] = None

    def register(self) -> None:
        enable_python_vrt()
        QgsProject.instance().layersAdded.connect(repair_moved)
        self.handler = SarzDropHandler(self.iface)
        self.iface.registerCustomDropHandler(self.handler)
        self.items = SarzItemProvider()
        QgsApplication.dataItemProviderRegistry().addProvider(self.items)

    def unregister(self) -> None:
        with contextlib.suppress(TypeError):  # not connected (unregistered twice)
            QgsProject.instance().layersAdded.disconnect(repair_moved)
        if self.handler is not None:
            self.iface.unregisterCustomDropHandler(self.handler)
            self.handler = None
        if self.items is not None:
            QgsApplication.dataItemProviderRegistry().removeProvider(self.items)
            self.items = None
