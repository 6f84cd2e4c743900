"""A .sarz as a GDAL raster: a VRT whose bands are a Python pixel function decoding the requested window.

`write_vrt` writes IN.sarz.vrt (CRS, geotransform; per band, in source band order, its nodata, description and
unit/scale/offset of the original; one GDAL block per tile) and one VRT per overview level (IN.sarz.ov1.vrt ...),
listed as its <Overview>s, each decoding from the coarse wavelet subbands (window_decode). GDAL runs the pixel
function only when allowed:

    GDAL_VRT_ENABLE_PYTHON=TRUSTED_MODULES
    GDAL_VRT_PYTHON_TRUSTED_MODULES=sar_compressor.engine.gdal_vrt

(or GDAL_VRT_ENABLE_PYTHON=YES, which trusts every module), and the `sar_compressor` package must be importable
by the Python GDAL embeds (PYTHONPATH, or QGIS's plugin folder: the plugin sets all of this for QGIS's process).
A tile that fails to decode (a corrupt chunk) raises in the pixel function: GDAL reports that read as failed,
with the ContainerError's message, and other reads go on.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from pathlib import Path
from typing import Any, Optional, Union
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .codec.format.container import ContainerReader
from .codec.format.sarz_header import software_version
from .codec.passes.window_decode import SarzWindowReader
from .errors import InputError, OutputError, SARCompressorError
from .io.output_paths import VRT_SOURCE_TAG, VRT_WRITER_TAG, locked, remove_stale_temps, replace_into, temp_path
from .io.raster_io import own_tags

PIXEL_FUNCTION = f"{__name__}.read_window"
TRUSTED_MODULE = __name__
ENVIRONMENT = {"GDAL_VRT_ENABLE_PYTHON": "TRUSTED_MODULES", "GDAL_VRT_PYTHON_TRUSTED_MODULES": TRUSTED_MODULE}
"""What GDAL needs to run the pixel function (GDAL 3.6, Debian's, reads these option names exactly)."""
_GDAL_TYPES = {  # the output dtypes (preprocessing.output_dtype)
    "uint8": "Byte",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}
PathLike = Union[str, "os.PathLike[str]"]

_readers: dict[tuple[str, Optional[int], int, int], tuple[threading.Lock, SarzWindowReader]] = {}
_readers_lock = threading.Lock()


def _reader(path: str, band: Optional[int]) -> tuple[threading.Lock, SarzWindowReader]:
    """One open reader per band of a file version (path, band, size, mtime): GDAL calls the function per block."""
    stat = os.stat(path)
    key = (path, band, stat.st_size, stat.st_mtime_ns)
    with _readers_lock:
        if key not in _readers:
            for old in [k for k in _readers if k[:2] == (path, band)]:
                _readers.pop(old)[1].close()
            _readers[key] = (threading.Lock(), SarzWindowReader(path, band))
        return _readers[key]


def read_window(
    in_ar: list,
    out_ar: np.ndarray,
    xoff: int,
    yoff: int,
    xsize: int,
    ysize: int,
    raster_xsize: int,
    raster_ysize: int,
    buf_radius: int,
    gt: Any,
    **kwargs: Union[str, bytes],
) -> None:
    """GDAL's Python pixel function: fills `out_ar` with the window (xoff, yoff, xsize, ysize) of the .sarz named
    by the VRT's `path` argument, band `band` (a source band number), at its `level` argument (GDAL 3.6 hands the
    arguments over as bytes)."""
    args = {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in kwargs.items()}
    try:
        lock, reader = _reader(args["path"], int(args["band"]) if "band" in args else None)
    except FileNotFoundError:  # GDAL shows the message under our frame only: say what to do
        raise InputError(
            f"{args['path']} is gone (moved or deleted?): this VRT decodes it; run `sar-compressor vrt` on the .sarz "
            "where it is now"
        ) from None
    if args.get("file_id", reader.reader.file_id) != reader.reader.file_id:  # VRTs before 0.7.1 name none
        raise InputError(
            f"{args['path']} is another file than this VRT was written for (replaced by a later compression?): open "
            "it again (in QGIS: drop it on the map again), or run `sar-compressor vrt` on it"
        )
    try:
        with lock:
            out_ar[:] = _resampled(reader, (xoff, yoff, xsize, ysize), int(args.get("level", "0")), out_ar.shape)
    except SARCompressorError as exc:  # GDAL logs the whole traceback: the chunk's error alone, not 25 lines
        raise type(exc)(str(exc)) from None


def _resampled(reader: SarzWindowReader, window: tuple[int, int, int, int], level: int, shape: tuple) -> np.ndarray:
    """The window into a buffer of `shape`: GDAL asks a derived band for a smaller buffer when it zooms out (QGIS
    does), so the window is read at the coarsest level at least as fine as the buffer, then sampled nearest."""
    xoff, yoff, xsize, ysize = window
    if shape == (ysize, xsize):
        return reader.read(window, level)
    ratio = min(xsize / shape[1], ysize / shape[0])
    extra = 0
    while level + extra < reader.max_level and 2 ** (extra + 1) <= ratio:
        extra += 1
    f = 1 << extra
    height, width = reader.level_shape(level + extra)
    x0, y0 = xoff // f, yoff // f
    x1, y1 = min(width, -(-(xoff + xsize) // f)), min(height, -(-(yoff + ysize) // f))
    values = reader.read((x0, y0, x1 - x0, y1 - y0), level + extra)
    rows = ((yoff + (np.arange(shape[0]) + 0.5) * ysize / shape[0]) / f).astype(np.int64) - y0
    cols = ((xoff + (np.arange(shape[1]) + 0.5) * xsize / shape[1]) / f).astype(np.int64) - x0
    return values[np.clip(rows, 0, values.shape[0] - 1)][:, np.clip(cols, 0, values.shape[1] - 1)]


def sarz_named_by(vrt: PathLike) -> Optional[str]:
    """The .sarz a VRT of this tool decodes (its VRT_SOURCE_TAG item), else None (another VRT, not a VRT, unreadable):
    a .sarz layer's file is its VRT, which Decompress and the panel take for the .sarz."""
    try:
        return _vrt_facts(Path(vrt))[0] or None
    except (OSError, ElementTree.ParseError):
        return None


def decoded_sarz(vrt: PathLike) -> Optional[str]:
    """The .sarz a VRT of this tool decodes (None for another file), checked as its reads check it: InputError where
    the file is gone or is another file than the VRT was written for (a copied project's VRT not repaired yet named
    the original folder's file, changed since)."""
    try:
        named, _, ids = _vrt_facts(Path(vrt))  # read once: the file it names and the ids its reads check
    except (OSError, ElementTree.ParseError):
        return None
    if not named:
        return None
    if not Path(named).is_file():
        raise InputError(f"{named} is gone (moved or deleted?): {vrt} decodes it; give the .sarz where it is now")
    with ContainerReader(named) as reader:
        file_id = reader.file_id
    if file_id not in ids:
        raise InputError(
            f"{named} is another file than {vrt} was written for (replaced by a later compression?): give the .sarz "
            "itself"
        )
    return named


def vrt_paths(vrt: Path, levels: int) -> list[Path]:
    """The main VRT and its overview VRTs (NAME.ov1.vrt ... beside NAME.vrt)."""
    stem = vrt.name[: -len(".vrt")] if vrt.name.lower().endswith(".vrt") else vrt.name
    return [vrt] + [vrt.with_name(f"{stem}.ov{k}.vrt") for k in range(1, levels + 1)]


def _check_replaceable(path: Path, sarz: Path, file_id: str) -> None:
    """A file already there is replaced only if it is this function's VRT for the same .sarz: written for it at
    this path, or for this very file (its id) at the path it had before its folder was moved or copied (the VRT
    names its .sarz by absolute path, and `vrt` is what a moved VRT's error says to run: it refused)."""
    if not path.exists():
        return
    try:
        named, _, ids = _vrt_facts(path)
    except OSError as exc:
        raise InputError(f"{path} exists and cannot be read: {exc}") from exc
    except ElementTree.ParseError:
        named, ids = None, set()
    if named == str(sarz) or (named is not None and file_id in ids):
        return
    raise InputError(f"{path} exists and is not a VRT of {sarz}: choose another output")


def _vrt_facts(path: Path) -> tuple[Optional[str], Optional[str], set[Optional[str]]]:
    """What a VRT of this tool says of itself: the .sarz it names (VRT_SOURCE_TAG), the version that wrote it and the
    file ids its pixel functions read. Parsed whole: GDAL writes an open VRT back with statistics and histograms
    (issue 3222), which put a dual-pol layer's pixel functions 500 KB into a 1 MB file (a check of its first 64 KB
    refused to repair it after its project moved)."""
    root = ElementTree.parse(path).getroot()
    if root.tag != "VRTDataset":  # another XML file
        return None, None, set()
    items = {item.get("key"): item.text for item in root.findall("./Metadata/MDI")}
    ids = {args.get("file_id") for args in root.iter("PixelFunctionArguments")}
    return items.get(VRT_SOURCE_TAG), items.get(VRT_WRITER_TAG), ids


def _geotransform(transform: Optional[tuple[float, ...]], factor: float) -> Optional[str]:
    if transform is None:
        return None
    c, a, b, f, d, e = transform
    return ", ".join(repr(float(v)) for v in (c, a * factor, b * factor, f, d * factor, e * factor))


def _band_xml(reader: SarzWindowReader, sarz: Path, level: int, overviews: list[Path], index: int) -> str:
    """VRT band `index` (1-based): the reader's band (its source band number goes to the pixel function)."""
    info, layout = reader.info, reader.layout
    block_w, block_h = (max(1, math.ceil(t / (1 << level))) for t in (layout.tile_width, layout.tile_height))
    lines = [
        f'  <VRTRasterBand dataType="{_GDAL_TYPES[reader.out_dtype]}" band="{index}" '
        f'subClass="VRTDerivedRasterBand" blockXSize="{block_w}" blockYSize="{block_h}">'
    ]
    interp = info.color_interp[0] if info.color_interp else ("gray" if index == 1 else None)  # as a GeoTIFF's
    if interp:  # rasterio's names; GDAL reads them whatever the case (gray, alpha, red...)
        lines.append(f"    <ColorInterp>{escape(interp)}</ColorInterp>")
    description = info.descriptions[0] if info.descriptions else None
    if description:
        lines.append(f"    <Description>{escape(description)}</Description>")
    if layout.nodata is not None:
        lines.append(f"    <NoDataValue>{'nan' if math.isnan(layout.nodata) else repr(layout.nodata)}</NoDataValue>")
    if info.units and info.units[0]:
        lines.append(f"    <UnitType>{escape(info.units[0])}</UnitType>")
    if info.offsets and info.offsets[0] not in (None, 0.0):
        lines.append(f"    <Offset>{info.offsets[0]!r}</Offset>")
    if info.scales and info.scales[0] not in (None, 1.0):
        lines.append(f"    <Scale>{info.scales[0]!r}</Scale>")
    if info.band_tags and info.band_tags[0]:
        lines.append(_metadata_xml(info.band_tags[0], None, "    "))
    for name, items in (info.band_domains[0] if info.band_domains else {}).items():
        lines.append(_metadata_xml(items, name, "    "))
    lines += [
        f"    <PixelFunctionType>{PIXEL_FUNCTION}</PixelFunctionType>",
        "    <PixelFunctionLanguage>Python</PixelFunctionLanguage>",
        f'    <PixelFunctionArguments path={quoteattr(str(sarz))} band="{reader.band}" level="{level}" '
        f'file_id="{reader.reader.file_id}"/>',
    ]
    for ov in overviews:
        lines.append(
            f'    <Overview><SourceFilename relativeToVRT="1">{escape(ov.name)}</SourceFilename>'
            f"<SourceBand>{index}</SourceBand></Overview>"
        )
    lines.append("  </VRTRasterBand>")
    return "\n".join(lines)


def _dataset_xml(readers: list[SarzWindowReader], sarz: Path, level: int, overviews: list[Path]) -> str:
    reader = readers[0]
    info = reader.info
    height, width = reader.level_shape(level)
    scale = width / reader.layout.width  # the level's pixels per raster pixel: GCPs, RPCs, geolocation follow it
    lines = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        _metadata_xml(  # the tag first: read as a prefix
            {VRT_SOURCE_TAG: str(sarz), VRT_WRITER_TAG: software_version(), **own_tags(info.tags)}, None, "  "
        ),
    ]
    if info.crs_wkt and not info.gcps:
        lines.append(f"  <SRS>{escape(info.crs_wkt)}</SRS>")
    gt = _geotransform(info.transform, reader.layout.width / width)
    if gt is not None and not info.gcps:
        lines.append(f"  <GeoTransform>{gt}</GeoTransform>")
    if info.gcps:
        srs = f" Projection={quoteattr(info.gcp_crs_wkt)}" if info.gcp_crs_wkt else ""
        lines.append(f"  <GCPList{srs}>")
        for i, (row, col, x, y, z) in enumerate(info.gcps):
            lines.append(
                f'    <GCP Id="{i + 1}" Pixel="{col * scale!r}" Line="{row * scale!r}" X="{x!r}" Y="{y!r}" Z="{z!r}"/>'
            )
        lines.append("  </GCPList>")
    if info.rpcs:
        lines.append(_rpc_xml(info.rpcs, scale))
    for name, items in info.domains.items():
        lines.append(_metadata_xml(_geolocation(items, scale) if name == "GEOLOCATION" else items, name, "  "))
    lines += [_band_xml(r, sarz, level, overviews, i + 1) for i, r in enumerate(readers)]
    lines.append("</VRTDataset>\n")
    return "\n".join(lines)


def _metadata_xml(items: dict[str, str], domain: Optional[str], indent: str) -> str:
    """A VRT <Metadata> element of `items` (in `domain`, the default one when None)."""
    attribute = "" if domain is None else f" domain={quoteattr(domain)}"
    body = "".join(f"<MDI key={quoteattr(str(k))}>{escape(str(v))}</MDI>" for k, v in items.items())
    return f"{indent}<Metadata{attribute}>{body}</Metadata>"


def _rpc_xml(rpcs: dict, scale: float) -> str:
    """The RPC metadata domain of a level whose pixels are `scale` of the raster's (line and sample offsets and
    scales follow the pixel grid, as the GCPs' pixel positions do)."""
    from rasterio.rpc import RPC

    scaled = {**rpcs, **{k: rpcs[k] * scale for k in ("line_off", "line_scale", "samp_off", "samp_scale")}}
    return _metadata_xml(RPC(**scaled).to_gdal(), "RPC", "  ")


GEOLOCATION_GRID = ("PIXEL_OFFSET", "PIXEL_STEP", "LINE_OFFSET", "LINE_STEP")
"""GEOLOCATION items in image pixels: a level whose pixels are `scale` of the raster's scales them."""


def _geolocation(items: dict[str, str], scale: float) -> dict[str, str]:
    """A GEOLOCATION domain for a level whose pixels are `scale` of the raster's (its arrays stay the same)."""
    out = dict(items)
    for key in GEOLOCATION_GRID:
        with contextlib.suppress(KeyError, ValueError):
            out[key] = repr(float(items[key]) * scale)
    return out


def _write_locked(texts: dict[Path, str]) -> None:
    """Every VRT written to a temp file first, then each moved into place, the main VRT (the first) last: a write
    that fails (a full disk) changes none of them; the main VRT was written first, and a failure after it left it
    naming overview VRTs that were never written (replace_into: an earlier VRT's sidecars go). Under the main VRT's
    lock (write_vrt), as the other writers write: temp files of a killed run writing them (its process gone) are
    removed first, and a live run's (another host's sharing the folder) never."""
    for path in texts:
        remove_stale_temps(path)
    temps = {path: temp_path(path) for path in texts}  # beside each real file (a symlink's target), short names
    path = next(iter(texts))
    try:
        for path, text in texts.items():
            temps[path].write_text(text, encoding="utf-8")
        for path in reversed(list(texts)):
            replace_into(temps[path], path)
    except OSError as exc:  # a read-only folder, a full disk: said of the VRT, not of its temp file's name
        raise OutputError(f"cannot write {path}: {exc.strerror or exc} in {path.parent}") from None
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def write_vrt(sarz: PathLike, vrt: Optional[PathLike] = None) -> list[Path]:
    """Write the VRT of a .sarz (default: IN.sarz.vrt beside it), one VRT band per band of the file in source band
    order, and its overview VRTs; returns their paths, the main one first. InputError if an output exists and is
    not a VRT this function wrote for the same file."""
    src = Path(sarz).resolve()
    if not src.is_file():
        raise InputError(f"not a file: {sarz}")
    out = Path(vrt) if vrt is not None else src.with_name(src.name + ".vrt")
    if out.suffix.lower() != ".vrt":  # VRT XML under out.tif: GDAL reads it, but batch, QGIS and a file browser go by
        raise InputError(f"{out}: a VRT's name ends in .vrt")  # the name (decompress refuses such names too)
    if not out.parent.is_dir():
        raise InputError(f"output folder does not exist: {out.parent}")
    texts, file_id = _vrt_texts(src, out)
    paths = list(texts)
    for path in paths:  # first without the lock: a user's file is named as such, even in a folder that takes none
        _check_replaceable(path, src, file_id)
    with locked(out):  # and again under it: a file appearing between them and the write is not replaced
        for path in paths:
            _check_replaceable(path, src, file_id)
        _write_locked(texts)
        _remove_stale_levels(out, len(paths) - 1, src, file_id)
    return paths


def _vrt_texts(src: Path, out: Path) -> tuple[dict[Path, str], str]:
    """The text of the main VRT `out` of the .sarz `src` and of its overview VRTs, by path; the file's id."""
    readers = [SarzWindowReader(src)]  # the file's first band; its header names the others
    try:
        readers += [SarzWindowReader(src, band) for band in readers[0].source_bands[1:]]
        paths = vrt_paths(out, readers[0].max_level)
        texts = {
            path: _dataset_xml(readers, src, level, paths[1:] if level == 0 else []) for level, path in enumerate(paths)
        }
        return texts, readers[0].reader.file_id
    finally:
        for reader in readers:
            reader.close()


def vrt_current(sarz: PathLike, vrt: PathLike) -> bool:
    """Whether `vrt` and its overview VRTs are what write_vrt writes now for `sarz`: each there, naming this file at
    its path and its id, written by this version (an older one's, a main VRT copied without its overviews, are not).
    Facts, not bytes: GDAL writes an open VRT back when it closes, reordered and with statistics (issue 3222)."""
    src = Path(sarz).resolve()
    try:
        texts, file_id = _vrt_texts(src, Path(vrt))
        for path in texts:
            named, writer, ids = _vrt_facts(path)
            if named != str(src) or writer != software_version() or ids != {file_id}:
                return False
        return True
    except (OSError, ElementTree.ParseError, SARCompressorError):
        return False


def _remove_stale_levels(vrt: Path, levels: int, sarz: Path, file_id: str) -> None:
    """Overview VRTs above `levels` that an earlier `write_vrt` wrote for the same .sarz (a larger raster's, since
    replaced), which nothing lists any more; the first level missing, or not such a VRT, ends the walk."""
    level = levels + 1
    while (path := vrt_paths(vrt, level)[-1]).exists():
        try:
            _check_replaceable(path, sarz, file_id)
            path.unlink()
        except (InputError, OSError):
            return
        level += 1
