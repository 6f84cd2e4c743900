"""Streaming raster I/O with rasterio: metadata, row windows with reflect halos, atomic tiled GeoTIFF writer.

Rasters are read and written window by window, never whole, so memory does not grow with raster size.
Georeferencing (CRS, geotransform or GCPs), nodata, band descriptions, units, scale/offset and tags are
carried in `RasterInfo`, which is JSON-able so the .sarz header can restore them exactly; a source without
georeferencing (the AIRSAR crops) gives an output without any either.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Union

import numpy as np

from .. import preprocessing as pp
from ..errors import CancelledError, InputError, OutputError, SARCompressorError, refuse_sarz
from .output_paths import VRT_SOURCE_TAG, VRT_WRITER_TAG, check_outputs, replace_into, temp_path

PathLike = Union[str, "os.PathLike[str]"]
_FROM_INFO: Any = object()
_IDENTITY_GDAL = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
GDAL_CACHE_MB = 256
"""The most GDAL's block cache may hold while the codec streams a raster. Its default (5 % of RAM) fills with the
output's dirty blocks: 1.2 GB of the 2 GB peak seen compressing 20000x20000."""
CACHE_ROWS = 2048
"""Rows of the raster's width that GDAL's block cache holds while the codec streams it (at least 16 MB, at most
GDAL_CACHE_MB): a strip is read whole and once (only blocks straddling a strip border are read twice) and the
output is written a block row at a time, so more cache only keeps blocks that are never read again. With a fixed
256 MB, compressing 512-pixel-wide float32 rasters kept every strip read: peak RSS grew 22 MB per 8192-row strip
(407 MB at 16384 rows, 540 MB at 65536, measured) until the cache was full."""
GDAL_THREADS = "ALL_CPUS"
"""GDAL's worker threads compressing the GeoTIFF blocks StripWriter writes (NUM_THREADS): on 2 idle cores, writing a
2048x2048 float32 DEFLATE file took 0.19 s instead of 0.33 s, byte for byte the same file (each block is compressed
on its own and written in order). Reading stays on one thread: GDAL's decoding threads log a short read as an error
line instead of failing the read."""


CHECK_THREADS = max(1, min(os.cpu_count() or 1, 4))
"""Threads reading a written GeoTIFF back (StripWriter): the check decodes every DEFLATE block once the decoding
is done and the cores are idle. 4096x4096 float32, 2 cores: 0.29-0.31 s on one thread, 0.16 s on two."""


def streaming_cache_mb(width: int, dtype: str) -> int:
    """GDAL's block cache (MB) for streaming a raster `width` pixels wide of `dtype`: CACHE_ROWS of it."""
    need = CACHE_ROWS * max(width, 1) * itemsize(dtype) / (1024 * 1024)
    return int(min(max(math.ceil(need), 16), GDAL_CACHE_MB))


def _rasterio():
    """Import rasterio lazily (the plugin imports the package without it) and silence its georef warning."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
    return rasterio


@contextlib.contextmanager
def bounded_gdal_cache(megabytes: int = GDAL_CACHE_MB) -> Iterator[None]:
    """Cap GDAL's block cache for the duration (restored after; QGIS shares the cache in its process)."""
    with _rasterio().Env(GDAL_CACHEMAX=megabytes * 1024 * 1024):  # rasterio passes bytes to GDAL
        yield


def _float_to_json(value: Optional[float]) -> Union[float, str, None]:
    if value is None or math.isfinite(value):
        return value
    return str(value)  # "nan", "inf", "-inf": strict JSON has no NaN


def _float_from_json(value: Union[float, str, None]) -> Optional[float]:
    return None if value is None else float(value)


@dataclass
class RasterInfo:
    """What a writer needs to reproduce a raster's layout and metadata (everything but the pixels).

    `transform` is the 6-float GDAL geotransform (c, a, b, f, d, e), None when the file has none; `gcps` holds
    `[row, col, x, y, z]` ground control points (Sentinel-1 GRD style) with `gcp_crs_wkt`. `tags` are the
    dataset tags, `band_tags` one dict per band.
    """

    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: Optional[str] = None
    transform: Optional[tuple[float, ...]] = None
    nodata: Optional[float] = None
    descriptions: list[Optional[str]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    band_tags: list[dict[str, str]] = field(default_factory=list)
    units: list[Optional[str]] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)
    gcps: Optional[list[list[float]]] = None
    gcp_crs_wkt: Optional[str] = None
    band_dtypes: list[str] = field(default_factory=list)
    """Each band's data type, where the bands' differ (a VRT stack of a uint16 band and a float32 one, or a complex
    band beside real ones); empty when every band has `dtype`. A .sarz holds bands of one type (compression refuses
    mixed ones but one band at a time)."""
    band_nodata: list[Optional[float]] = field(default_factory=list)
    """Each band's own nodata value, where the bands' differ (a VRT stack, ENVI, HDF); empty when every band has
    `nodata`. A GeoTIFF holds one value for all its bands: its writer writes `nodata`, band 1's."""
    domains: dict[str, dict[str, str]] = field(default_factory=dict)
    """The dataset's metadata domains other than the default one (`tags`) and those GDAL makes itself
    (IGNORED_DOMAINS): IMAGERY, GEOLOCATION, a product's own."""
    band_domains: list[dict[str, dict[str, str]]] = field(default_factory=list)
    """The same per band (empty when no band has one)."""
    rpcs: Optional[dict[str, Any]] = None
    """Rational polynomial coefficients (rasterio's RPC.to_dict()): how ICEYE, Capella or Umbra GEC and SLC products
    are georeferenced when they have no geotransform; None when the raster has none."""
    color_interp: list[str] = field(default_factory=list)
    """GDAL colour interpretation names per band (rasterio's ColorInterp), kept only where one is not "gray" or
    "undefined" (an alpha band, a palette, RGB): the header of every other raster is as it was."""

    @property
    def has_georef(self) -> bool:
        located = self.rpcs is not None or "GEOLOCATION" in self.domains
        return self.crs_wkt is not None or self.transform is not None or bool(self.gcps) or located

    def band(self, i: int) -> RasterInfo:
        """The same raster reduced to its band `i` (1-based): for writing one band of a multi-band source."""
        self.check_band(i)
        pick = i - 1

        def one(values: list) -> list:
            return [values[pick]] if len(values) == self.count else []

        return replace(
            self,
            count=1,
            dtype=self.band_dtypes[pick] if self.band_dtypes else self.dtype,
            band_dtypes=[],
            nodata=self.band_nodata[pick] if self.band_nodata else self.nodata,
            band_nodata=[],
            band_domains=one(self.band_domains),
            descriptions=one(self.descriptions),
            band_tags=one(self.band_tags),
            units=one(self.units),
            scales=one(self.scales),
            offsets=one(self.offsets),
            color_interp=one(self.color_interp),
        )

    def check_band(self, band: int) -> int:
        if not 1 <= band <= self.count:
            raise InputError(f"band {band} does not exist: the raster has {self.count} band(s)")
        return band

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["band_nodata"] = [_float_to_json(v) for v in self.band_nodata]
        for name in OPTIONAL_FIELDS:  # only where a raster has them: every other header is as it was
            if not d[name]:
                del d[name]
        d["transform"] = list(self.transform) if self.transform is not None else None
        d["nodata"] = _float_to_json(self.nodata)
        d["has_georef"] = self.has_georef
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RasterInfo:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        try:
            if kwargs.get("transform") is not None:
                kwargs["transform"] = tuple(float(v) for v in kwargs["transform"])
            kwargs["nodata"] = _float_from_json(kwargs.get("nodata"))
            kwargs["band_nodata"] = [_float_from_json(v) for v in kwargs.get("band_nodata") or []]
            info = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InputError(f"raster metadata is incomplete or malformed: {exc}") from exc
        info.check_fields()
        return info

    def check_fields(self) -> None:
        """InputError naming the first field of the wrong type or shape: a dictionary comes from a file's header, and
        neither a reader's allocation nor a writer may fail on one half-way (a forged header with a valid CRC ended
        in tracebacks, a temp file left behind, or a 37 GiB allocation)."""
        self._check_layout()
        self._check_georeferencing()
        if not (_text_table(self.tags) and isinstance(self.band_tags, list) and all(map(_text_table, self.band_tags))):
            raise InputError("raster metadata has malformed tags")
        if not (_strings(self.descriptions) and _strings(self.units)):
            raise InputError("raster metadata has malformed band descriptions or units")
        if not all(_number(v) for v in [*self.scales, *self.offsets]):
            raise InputError("raster metadata has a malformed scale or offset")
        tables = [self.domains, *self.band_domains]
        if not all(_dicts(t) and all(_dicts(v) for v in t.values()) for t in tables):
            raise InputError("raster metadata has malformed metadata domains")
        if not _strings(self.color_interp, optional=False):
            raise InputError("raster metadata has a malformed colour interpretation")
        if self.rpcs is not None:
            from rasterio.rpc import RPC

            try:
                RPC(**self.rpcs)
            except (TypeError, ValueError) as exc:
                raise InputError(f"raster metadata has malformed RPCs: {exc}") from exc

    def _check_layout(self) -> None:
        """Size, band count and data types a writer can create (a nodata value the type cannot hold is not refused:
        products carry them, ESRI's float32 minimum written as a double in an ENVI header; StripWriter drops it)."""
        if not all(type(n) is int and 1 <= n <= MAX_SIDE for n in (self.width, self.height, self.count)):
            raise InputError(f"raster metadata has an impossible size: {self.width!r}x{self.height!r}x{self.count!r}")
        for dtype in [self.dtype, *self.band_dtypes]:
            _numpy_dtype(dtype)

    def _check_georeferencing(self) -> None:
        """A geotransform of six finite numbers, GCPs of five, CRSs that parse."""
        if self.transform is not None and not (len(self.transform) == 6 and all(map(_number, self.transform))):
            raise InputError("raster metadata has a malformed geotransform")
        points = self.gcps or []
        if not all(isinstance(g, (list, tuple)) and len(g) == 5 and all(map(_number, g)) for g in points):
            raise InputError("raster metadata has malformed ground control points")
        for wkt in (self.crs_wkt, self.gcp_crs_wkt):
            if wkt is not None:
                _parsed_crs(wkt)


MAX_SIDE = 2**31 - 1
"""The largest width, height or band count a raster's metadata may say (GDAL's own limit)."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dicts(value: Any) -> bool:
    return isinstance(value, dict)


def _text_table(value: Any) -> bool:
    """Whether `value` is a table of texts by name (a tags dictionary)."""
    return _dicts(value) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _numpy_dtype(name: Any) -> np.dtype:
    """numpy's type of a raster data type name (GDAL's CInt16 as rasterio reads it); InputError for another name."""
    try:
        if not isinstance(name, str):
            raise TypeError
        return np.dtype("complex64" if name in GDAL_ONLY_ITEMSIZE else name)
    except TypeError:
        raise InputError(f"raster metadata has an unknown data type {name!r}") from None


def _strings(values: list, optional: bool = True) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) or (optional and v is None) for v in values)


def writable_nodata(value: Optional[float], dtype: str) -> Optional[float]:
    """The nodata value a GeoTIFF of `dtype` can declare for `value`: a float rounded to the type (ESRI's float32
    minimum, -3.40282346639e+38 as an ENVI header writes it, is just past float32's: rasterio refused it, GDAL rounds
    it), None where the type holds no such value (1e300 or 1e-50 in float32, -1 or 70000 in uint16, NaN in an integer
    type). Read from a file, it is what the band's pixels can equal (the fill matches it)."""
    if value is None:
        return None
    kind = _numpy_dtype(dtype)
    if kind.kind in "iu":
        fits = math.isfinite(value) and value == int(value) and np.iinfo(kind).min <= value <= np.iinfo(kind).max
        return value if fits else None
    real = np.finfo(kind).dtype  # a complex type's parts
    with np.errstate(over="ignore", under="ignore"):
        rounded = float(real.type(value))
    overflowed, underflowed = math.isinf(rounded) != math.isinf(value), rounded == 0 != value
    return None if overflowed or underflowed else rounded  # 1e-50 in float32 would have made every 0 nodata


def _parsed_crs(wkt: Any) -> Any:
    """rasterio's CRS of `wkt`; InputError where it does not parse."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_wkt(wkt)
    except (CRSError, TypeError) as exc:
        raise InputError(f"raster metadata has a CRS that does not parse ({exc})") from None


OPTIONAL_FIELDS = ("color_interp", "rpcs", "band_dtypes", "band_nodata", "domains", "band_domains")
"""RasterInfo fields a dictionary (and a .sarz header) holds only where the raster has them."""
IGNORED_DOMAINS = frozenset({"", "IMAGE_STRUCTURE", "DERIVED_SUBDATASETS", "SUBDATASETS", "RPC"})
"""Metadata domains not carried: the default one (`tags`), those GDAL derives from the file itself, the RPCs (their
own field). Domains named xml:... or json:... (a whole document, such as SNAP's xml:DIMAP) are not carried either:
rasterio splits them into items it cannot write back."""


def _domains(ds, band: int = 0) -> dict[str, dict[str, str]]:
    """The metadata domains of a dataset (`band` 0) or of one band that a reconstruction carries."""
    names = [n for n in ds.tag_namespaces(band) if n not in IGNORED_DOMAINS and not n.startswith(("xml:", "json:"))]
    return {n: dict(ds.tags(band, ns=n)) for n in names if ds.tags(band, ns=n)}


def own_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """A raster's dataset tags less the ones a VRT of this tool carries (VRT_SOURCE_TAG, VRT_WRITER_TAG): copied
    on from a VRT input into the .sarz and its outputs, it named another file (its VRT then refused as "not a VRT
    of" it, and its .sarz unguarded as an input)."""
    return {key: value for key, value in tags.items() if key not in (VRT_SOURCE_TAG, VRT_WRITER_TAG)}


def differing_nodata(values: list[Optional[float]]) -> list[Optional[float]]:
    """Bands' nodata values where they differ, else none (RasterInfo.band_nodata)."""
    return [] if all(_same_value(v, values[0]) for v in values) else values


def _same_value(a: Optional[float], b: Optional[float]) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def _band_tags(ds, band: int) -> dict[str, str]:
    """A band's tags without GDAL's cached STATISTICS_*: they describe these pixels, not a reconstruction."""
    return {k: v for k, v in ds.tags(band).items() if not k.startswith("STATISTICS_")}


def _nodata_of(ds, band: int) -> Optional[float]:
    """A band's nodata value; where it has none but a GDAL mask of its own (not an alpha band, which stays a band),
    the value its masked pixels are read as (preprocessing.mask_marker), so that outputs flag them as nodata."""
    value = ds.nodatavals[band - 1]
    if value is not None:  # as the band's type holds it: ESRI's float32 minimum, written as a double in an ENVI
        return writable_nodata(float(value), ds.dtypes[band - 1])  # header, matched none of its fill pixels
    flags = [f.name for f in ds.mask_flag_enums[band - 1]]
    return pp.mask_marker(ds.dtypes[band - 1]) if pp.has_own_mask(flags) and "alpha" not in flags else None


def _rpcs(ds) -> Optional[dict[str, Any]]:
    """The dataset's RPCs, or none where GDAL's RPC domain is incomplete or malformed (rasterio cannot parse it)."""
    try:
        return ds.rpcs.to_dict() if ds.rpcs else None
    except (KeyError, ValueError, IndexError, TypeError):
        return None


def _info_from_dataset(ds) -> RasterInfo:
    nodatas = [_nodata_of(ds, i) for i in range(1, ds.count + 1)]
    dtypes = [str(d) for d in ds.dtypes]
    gcps, gcp_crs = ds.gcps
    gdal_transform = tuple(float(v) for v in ds.transform.to_gdal())
    has_transform = gdal_transform != _IDENTITY_GDAL or (ds.crs is not None and not gcps)
    return RasterInfo(
        width=ds.width,
        height=ds.height,
        count=ds.count,
        dtype=dtypes[0],
        band_dtypes=dtypes if len(set(dtypes)) > 1 else [],
        crs_wkt=ds.crs.to_wkt() if ds.crs is not None else None,
        transform=gdal_transform if has_transform else None,
        nodata=nodatas[0],
        descriptions=list(ds.descriptions),
        tags=own_tags(ds.tags()),
        band_tags=[_band_tags(ds, i) for i in range(1, ds.count + 1)],
        units=list(ds.units),
        scales=[float(v) for v in ds.scales],
        offsets=[float(v) for v in ds.offsets],
        gcps=[[g.row, g.col, g.x, g.y, g.z or 0.0] for g in gcps] or None,
        gcp_crs_wkt=gcp_crs.to_wkt() if gcps and gcp_crs is not None else None,
        color_interp=_color_interp(ds),
        rpcs=_rpcs(ds),
        band_nodata=differing_nodata(nodatas),
        domains=_domains(ds),
        band_domains=_per_band_domains(ds),
    )


def _per_band_domains(ds) -> list[dict[str, dict[str, str]]]:
    """Every band's carried domains, or none when no band has any."""
    domains = [_domains(ds, i) for i in range(1, ds.count + 1)]
    return domains if any(domains) else []


PLAIN_INTERP = frozenset({"gray", "undefined"})


def _color_interp(ds) -> list[str]:
    """The bands' colour interpretation names, or none where every band is plain (PLAIN_INTERP). A "palette" band
    (a colour table: classes) is refused by compression (input_checks.check_not_paletted), so none reaches a file."""
    try:
        interps = ds.colorinterp
    except ValueError:  # an interpretation newer than this rasterio knows (GDAL 3.10's SAR_C, NIR...)
        return []
    names = [ci.name for ci in interps]
    return [] if set(names) <= PLAIN_INTERP else names


_GDAL_NAME = re.compile(r"^(/vsi[a-z0-9_]+[/?]|[A-Z][A-Z0-9_]+:)")
"""A GDAL dataset name that is not a plain path: a virtual file system (/vsizip/, /vsicurl/...) or a driver's
subdataset (NETCDF:"f.nc":var, HDF5:..., SENTINEL1_CALIB:SIGMA0:...): how products inside a zip or a netCDF/HDF5
container open in GDAL and QGIS. Passed to GDAL as written (a Path would fold /vsizip//abs into /vsizip/abs)."""


def is_gdal_name(path: PathLike) -> bool:
    """Whether `path` is a GDAL dataset name rather than a file path (_GDAL_NAME)."""
    return bool(_GDAL_NAME.match(os.fspath(path)))


def dataset_stem(name: PathLike) -> str:
    """A file-name stem for the raster `name` names: a path's stem; for a GDAL name the stem of the file in the
    archive or at the URL (`/vsizip//d/p.zip/m/s1-vv.tiff` -> s1-vv, a query left out, `.tif.gz` both suffixes), or
    the container's stem with what names the subdataset (`NETCDF:"p.nc":sigma0` -> p_sigma0; a Sentinel-1
    `manifest.safe` by its .SAFE folder), in characters any file system takes."""
    text = os.fspath(name)
    if not is_gdal_name(text):
        return Path(text).stem
    if text.startswith("/vsi"):
        stems = [_file_stem(_url_path(text))]
    else:
        segments = re.findall(r'"[^"]*"|[^:]+', text.split(":", 1)[1])  # after the driver; quoted paths keep colons
        files = [i for i, seg in enumerate(segments) if seg.startswith('"') or "/" in seg][:1]  # the container
        stems = [_file_stem(seg.strip('"')) if i in files else seg for i, seg in enumerate(segments)]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(stems)).strip("._") or "dataset"


def _url_path(name: str) -> str:
    """The path part of a /vsi name: a /vsicurl?url=... name's URL, without its query."""
    if "?" in name.split("/")[1]:  # /vsicurl?url=...&...: the options and the URL in the query
        query = urllib.parse.parse_qs(name.split("?", 1)[1])
        name = query.get("url", [name])[0]
    return name.split("?", 1)[0]


def _file_stem(path: str) -> str:
    """A file's stem, compression suffixes too (scene.tif.gz -> scene); a Sentinel-1 manifest by its .SAFE folder."""
    file = PurePosixPath(path)
    if file.name.lower() == "manifest.safe" and file.parent.suffix.lower() == ".safe":
        file = file.parent
    name = file.name
    packed = next((suffix for suffix in COMPRESSED_SUFFIXES if name.lower().endswith(suffix)), "")
    return PurePosixPath(name[: len(name) - len(packed)]).stem


COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".tar", ".tgz")
"""What GDAL's /vsigzip/, /vsitar/... read through: a name's stem is what is left without them."""


def _open(path: PathLike):
    rasterio = _rasterio()
    name = os.fspath(path)
    if not is_gdal_name(name) and not Path(name).exists():
        raise InputError(f"input raster not found: {name}")
    refuse_sarz(name)
    try:
        return rasterio.open(name)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot read raster {name}: {exc}") from exc


def open_info(path: PathLike) -> RasterInfo:
    """Metadata of a raster file; InputError when it is missing or not a raster GDAL can read."""
    with _open(path) as ds:
        return _info_from_dataset(ds)


def reflect_rows(row0: int, row1: int, height: int) -> np.ndarray:
    """Source row for each row in [row0, row1): mirrored at the edges without repeating the edge row
    (numpy "reflect"), repeated edge for a 1-row raster; works for halos larger than the raster."""
    idx = np.arange(row0, row1)
    if height == 1:
        return np.zeros_like(idx)
    period = 2 * (height - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= height, period - idx, idx)


class RasterReader:
    """An open raster for many window reads (one open per file, not per strip)."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._ds = _open(path)
        self.info = _info_from_dataset(self._ds)

    def unmarked_mask(self, band: int) -> bool:
        """Whether `band` has a mask of its own that no value can mark (pp.unmarked_mask)."""
        return pp.unmarked_mask(self._ds, band)

    def __enter__(self) -> RasterReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._ds.close()

    def read_rows(self, band: int, row0: int, row1: int) -> np.ndarray:
        """Rows [row0, row1) of a band, clipped to the raster (may return fewer rows near the edges)."""
        self.info.check_band(band)
        r0, r1 = max(0, row0), min(self.info.height, row1)
        if r1 <= r0:
            return np.zeros((0, self.info.width), dtype=self._ds.dtypes[band - 1])
        window = ((r0, r1), (0, self.info.width))
        try:  # a GDAL mask of the band's own (internal or .msk mask, alpha band): its pixels at pp.mask_marker
            return pp.read_masked(self._ds, band, window=window)
        except Exception as exc:  # GDAL reports corrupt blocks as assorted RasterioIOError/CPLE errors
            raise InputError(f"cannot read rows {r0}..{r1} of {self.path}: {exc}") from exc

    def read_rows_padded(self, band: int, row0: int, row1: int, halo: int = 0) -> np.ndarray:
        """Exactly (row1 - row0 + 2*halo) rows around [row0, row1); rows outside the raster are reflected."""
        idx = reflect_rows(row0 - halo, row1 + halo, self.info.height)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        block = self.read_rows(band, lo, hi)
        return block[idx - lo]

    def iter_strips(self, band: int, rows: int = 256, halo: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (row0, strip) for consecutive strips of `rows` core rows (the last may be shorter), each with
        `halo` reflected context rows above and below: strip row `halo` is raster row `row0`."""
        if rows < 1:
            raise ValueError("rows must be >= 1")
        for row0 in range(0, self.info.height, rows):
            row1 = min(row0 + rows, self.info.height)
            yield row0, self.read_rows_padded(band, row0, row1, halo)


def read_rows(path: PathLike, band: int, row0: int, row1: int, halo: int = 0) -> np.ndarray:
    """One window of rows from a file; with `halo` > 0 the strip is reflect-padded to a fixed size."""
    with RasterReader(path) as reader:
        if halo:
            return reader.read_rows_padded(band, row0, row1, halo)
        return reader.read_rows(band, row0, row1)


def iter_strips(path: PathLike, band: int = 1, rows: int = 256, halo: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """`RasterReader.iter_strips` on a file opened for the duration of the iteration."""
    with RasterReader(path) as reader:
        yield from reader.iter_strips(band, rows, halo)


GDAL_ONLY_ITEMSIZE = {"complex_int16": 4}
"""GDAL data types numpy has no name for (CInt16, Sentinel-1 SLC): rasterio reads them as complex64."""


def itemsize(dtype: str) -> int:
    """Bytes per pixel of a raster data type as the file stores it, GDAL-only types included."""
    return GDAL_ONLY_ITEMSIZE.get(str(dtype)) or np.dtype(dtype).itemsize


def _predictor(dtype: str) -> Optional[int]:
    kind = np.dtype(dtype).kind
    return {"f": 3, "u": 2, "i": 2}.get(kind)


def creation_options(dtype: str, blocksize: int = 256, compress: str = "DEFLATE") -> dict[str, Any]:
    """The GeoTIFF creation options StripWriter writes `dtype` with (rasterio profile keys)."""
    options: dict[str, Any] = {
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": compress,
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": GDAL_THREADS,
    }
    predictor = _predictor(dtype) if compress.upper() in ("DEFLATE", "LZW", "ZSTD") else None
    if predictor:
        options["predictor"] = predictor
    return options


def _block_side(size: int, blocksize: int) -> int:
    """A tile side for a raster side of `size`: `blocksize`, or the multiple of 16 (GeoTIFF's rule) that covers a
    thinner raster. Square 256-pixel tiles on a 1 x 2,000,000 raster wrote 7,813 tiles of 255 padding rows each
    (4 s of DEFLATE for 8 MB of pixels)."""
    return min(blocksize, -(-size // 16) * 16)


class StripWriter:
    """Writes a tiled, compressed GeoTIFF strip by strip, atomically.

    Pixels go to a hidden temp file next to `path` (output_paths.temp_path); only a clean exit that re-opened
    and read back every block of it renames it to `path` (output_paths.replace_into; a symlink's target is
    replaced; with overwrite=False a file that appeared there meanwhile is refused, not replaced), so a
    failure, a full disk GDAL reported only in its log, or a cancel (any exception in the `with` block,
    CancelledError included) leaves the destination as it was and no temp file. Folders, FIFOs and devices
    are never replaced (OutputError). `info` describes the output (size, bands, georeferencing, descriptions,
    tags); `dtype` and `nodata` default to the info's (pass nodata=None to write none). `cog=True` converts the
    finished file to a Cloud Optimized GeoTIFF with averaged overviews (GDAL COG driver), still atomically.
    `cancel` is asked again between the finishing steps (flush, read-back, COG conversion) up to the rename: a
    cancel there leaves the destination as it was too (the read-back takes a second per gigabyte). `warn` hears
    what the output could not hold as asked (a COG whose metadata domains GDAL's COG driver drops).
    """

    def __init__(
        self,
        path: PathLike,
        info: RasterInfo,
        dtype: Optional[str] = None,
        nodata: Optional[float] = _FROM_INFO,
        blocksize: int = 256,
        compress: str = "DEFLATE",
        cog: bool = False,
        overwrite: bool = True,
        cancel: Optional[Callable[[], bool]] = None,
        warn: Optional[Callable[[str], None]] = None,
    ):
        if blocksize % 16:
            raise ValueError("blocksize must be a multiple of 16")
        self.path = Path(path)
        self.info = info
        self.dtype = str(np.dtype(dtype or info.dtype))
        asked = info.nodata if nodata is _FROM_INFO else nodata
        self.nodata = writable_nodata(asked, self.dtype)
        self._dropped_nodata = asked if self.nodata is None and asked is not None else None
        self.blocksize = blocksize
        self.compress = compress
        self.cog = cog
        self.overwrite = overwrite
        self.cancel = cancel
        self.warn = warn
        self._tmp = temp_path(self.path)
        self._ds = None

    def _profile(self) -> dict[str, Any]:
        rasterio = _rasterio()
        info = self.info
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": info.width,
            "height": info.height,
            "count": info.count,
            "dtype": self.dtype,
            **creation_options(self.dtype, self.blocksize, self.compress),
        }
        if not self.cog:  # a raster thinner than a block gets blocks no larger than it needs
            profile["blockysize"] = _block_side(info.height, self.blocksize)
            profile["blockxsize"] = _block_side(info.width, self.blocksize)
        if self.nodata is not None:
            profile["nodata"] = self.nodata
        if info.crs_wkt is not None and not info.gcps:
            profile["crs"] = rasterio.crs.CRS.from_wkt(info.crs_wkt)
        if info.transform is not None:
            profile["transform"] = rasterio.Affine.from_gdal(*info.transform)
        return profile

    def __enter__(self) -> StripWriter:
        rasterio = _rasterio()
        check_outputs([], [self.path], overwrite=True)
        if self._dropped_nodata is not None and self.warn is not None:
            self.warn(f"{self.path}: {self._dropped_nodata!r} is no {self.dtype} value, so it declares no nodata value")
        try:
            self._ds = rasterio.open(self._tmp, "w", **self._profile())
            self._write_metadata()
        except BaseException as exc:
            self._abort()  # GDAL may have made the temp file before refusing (a nodata value the type cannot hold)
            if isinstance(exc, Exception) and not isinstance(exc, SARCompressorError):
                raise OutputError(f"cannot create {self.path}: {exc}") from exc
            raise
        return self

    def _write_metadata(self) -> None:
        from rasterio.control import GroundControlPoint
        from rasterio.crs import CRS
        from rasterio.enums import ColorInterp
        from rasterio.rpc import RPC

        ds, info = self._ds, self.info
        if info.tags:
            ds.update_tags(**own_tags(info.tags))
        for i in range(1, info.count + 1):
            if i <= len(info.descriptions) and info.descriptions[i - 1]:
                ds.set_band_description(i, info.descriptions[i - 1])
            if i <= len(info.band_tags) and info.band_tags[i - 1]:
                ds.update_tags(i, **info.band_tags[i - 1])
            if i <= len(info.units) and info.units[i - 1]:
                ds.set_band_unit(i, info.units[i - 1])
        _write_domains(ds, info)
        if info.rpcs:
            ds.rpcs = RPC(**info.rpcs)  # checked by RasterInfo.check_fields
        if len(info.color_interp) == info.count:
            ds.colorinterp = [ColorInterp.__members__.get(name, ColorInterp.undefined) for name in info.color_interp]
        same_len = len(info.scales) == info.count and len(info.offsets) == info.count
        if same_len and (any(s != 1.0 for s in info.scales) or any(o != 0.0 for o in info.offsets)):
            ds.scales, ds.offsets = info.scales, info.offsets
        if info.gcps:
            points = [GroundControlPoint(row=g[0], col=g[1], x=g[2], y=g[3], z=g[4]) for g in info.gcps]
            ds.gcps = (points, CRS.from_wkt(info.gcp_crs_wkt) if info.gcp_crs_wkt else CRS())  # rasterio: not None

    def write(self, row0: int, array: np.ndarray, band: Optional[int] = None) -> None:
        """Write rows from `row0`: a 2D array into `band` (default 1), a 3D (bands, rows, cols) into all."""
        if self._ds is None:
            raise RuntimeError("StripWriter.write outside its 'with' block")
        array = np.asarray(array)
        rows, cols = array.shape[-2:]
        if cols != self.info.width or row0 < 0 or row0 + rows > self.info.height:
            raise ValueError(
                f"strip of {rows}x{cols} at row {row0} does not fit a {self.info.height}x{self.info.width} raster"
            )
        window = ((row0, row0 + rows), (0, cols))
        if array.ndim == 2:
            bands: Any = self.info.check_band(band or 1)
        elif array.ndim == 3 and array.shape[0] == self.info.count:
            bands = None
        else:
            raise ValueError(f"cannot write an array of shape {array.shape} to {self.info.count} band(s)")
        try:
            self._ds.write(array.astype(self.dtype, copy=False), bands, window=window)
        except Exception as exc:  # GDAL write errors come as CPLE_* / RasterioIOError (disk full, I/O)
            raise OutputError(f"cannot write {self.path}: {exc}") from exc

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._close()
            self._check_cancel()
            self._check_complete()
            if self.cog:
                self._check_cancel()
                self._to_cog()
                self._check_complete()
            self._check_cancel()
            check_outputs([], [self.path], overwrite=True)  # still not a folder/FIFO/device at the last moment
            replace_into(self._tmp, self.path, self.overwrite)
        except BaseException:
            self._abort()
            raise

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise CancelledError("cancelled by the user")

    def _close(self) -> None:
        """Close the dataset (GDAL flushes its last blocks and the directory) and sync the file to disk."""
        ds, self._ds = self._ds, None
        try:
            ds.close()
            fd = os.open(self._tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except Exception as exc:
            raise OutputError(f"cannot write {self.path}: {exc}") from exc

    def _check_complete(self) -> None:
        """Re-open the temp file and read every pixel back, block row by block row: rasterio can report a
        failed flush at close (a full disk) only as a GDAL log line, and only a readable file may replace
        the destination. Each of CHECK_THREADS threads reads every n-th block row through its own dataset, with
        GDAL's decoding on that thread (GDAL_THREADS: GDAL's worker threads log a short read instead of failing
        it), whatever GDAL_NUM_THREADS says; a failure in any of them fails the check."""
        rasterio = _rasterio()
        try:
            with rasterio.open(self._tmp) as ds:
                if (ds.width, ds.height, ds.count) != (self.info.width, self.info.height, self.info.count):
                    raise OutputError(f"{ds.width}x{ds.height}x{ds.count} raster read back")
            rows = range(0, self.info.height, self.blocksize)
            n = max(1, min(CHECK_THREADS, len(rows)))
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="sarz-check") as pool:
                list(pool.map(self._read_rows, [rows[k::n] for k in range(n)]))
        except Exception as exc:
            raise OutputError(
                f"{self.path} could not be written completely ({exc}); the disk may be full. Nothing was replaced."
            ) from exc

    def _read_rows(self, starts: range) -> None:
        """Decode the block rows starting at `starts` of the temp file, a band at a time (memory: a block row of one
        band per thread); raises where one cannot be read."""
        rasterio = _rasterio()
        with rasterio.Env(GDAL_NUM_THREADS="1"), rasterio.open(self._tmp) as ds:
            for row0 in starts:
                for band in range(1, ds.count + 1):
                    ds.read(band, window=((row0, min(row0 + self.blocksize, ds.height)), (0, ds.width)))

    def _to_cog(self) -> None:
        import rasterio.shutil

        cog_tmp = self._tmp.with_name(self._tmp.name + ".cog")
        options = {
            "COMPRESS": self.compress,
            "BLOCKSIZE": self.blocksize,
            "OVERVIEWS": "AUTO",
            "OVERVIEW_RESAMPLING": "AVERAGE",
            "BIGTIFF": "IF_SAFER",
            "NUM_THREADS": GDAL_THREADS,
        }
        if _predictor(self.dtype) and self.compress.upper() in ("DEFLATE", "LZW", "ZSTD"):
            options["PREDICTOR"] = "YES"
        if rasterio.env.GDALVersion.runtime().at_least("3.8"):
            options["COPY_SRC_MDD"] = "YES"  # every metadata domain, in the COG layout (OSGeo/gdal pull 7981)
        try:
            rasterio.shutil.copy(self._tmp, cog_tmp, driver="COG", **options)
            self._put_back_domains(cog_tmp)
            os.replace(cog_tmp, self._tmp)
        except OutputError:
            raise
        except Exception as exc:  # GDAL's COG driver fails with CPLE_* errors (disk full, I/O)
            raise OutputError(f"cannot write {self.path} as a COG: {exc}") from exc
        finally:
            _remove(cog_tmp)

    def _put_back_domains(self, cog: Path) -> None:
        """Write the metadata domains (GEOLOCATION, IMAGERY, a product's own) that GDAL's COG driver left out of
        `cog` (GDAL before 3.8 copies the default domain alone): a swath located by GEOLOCATION arrays lost its
        only georeferencing. GDAL then rewrites the directory after the image data (one more read for a remote
        reader; GDAL notes it on opening the file): `warn` says so. GDAL's own warning is kept out of the output."""
        rasterio = _rasterio()
        with rasterio.Env(), rasterio.open(cog, "r+") as ds:
            if not _missing_domains(ds, self.info):
                return
            _write_domains(ds, self.info)
        if self.warn is not None:
            self.warn(
                f"{self.path}: this GDAL's COG driver drops metadata domains beyond the default one; they were "
                "written after the image data, so the file keeps them but no longer has the strict COG layout "
                "(with GDAL 3.8 or later they are copied in place)"
            )

    def _abort(self) -> None:
        ds, self._ds = self._ds, None
        if ds is not None:
            with contextlib.suppress(Exception):  # a full disk may fail the close too: the temp goes anyway
                ds.close()
        _remove(self._tmp)
        _remove(self._tmp.with_name(self._tmp.name + ".aux.xml"))


def _domain_tables(info: RasterInfo) -> Iterator[tuple[int, str, dict[str, str]]]:
    """(band, domain name, items) of each named metadata domain of `info`: band 0 for the dataset's (rasterio's bidx),
    each band's where every band has its entry."""
    for name, items in info.domains.items():
        yield 0, name, items
    if len(info.band_domains) == info.count:
        for band, domains in enumerate(info.band_domains, start=1):
            for name, items in domains.items():
                yield band, name, items


def _write_domains(ds: Any, info: RasterInfo) -> None:
    """The dataset's and each band's named metadata domains of `info` into the open dataset `ds`."""
    for band, name, items in _domain_tables(info):
        ds.update_tags(band, ns=name, **items)


def _missing_domains(ds: Any, info: RasterInfo) -> bool:
    """Whether any named domain of `info` (dataset or band) is absent from the open dataset `ds`."""
    return any(ds.tags(band, ns=name) != items for band, name, items in _domain_tables(info))


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
