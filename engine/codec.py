"""compress_file / decompress_file: the one entry point for the plugin, the CLI and the benchmark.

Compression streams a raster twice, a row of tiles at a time, never holding it whole:
1. a strided sample of valid pixels -> input kind, robust dB range, linear mean, and bounded tiles -> the SSIM
   weights' reference (survey);
2. per tile: read -> dB -> a wavelet refinement layer over a flat base at the quality's step (refine,
   quality), then (radiometry) per 64x64 block a linear-intensity gain (restores the mean that a dB-domain
   codec biases), bright targets above the range as sparse residuals, the nodata mask (strip_payload: the
   chunk bytes; sarz_header: the JSON header; container: the file).
   The same decoded tiles give the optional reconstruction raster. Each tile is coded on its own, so a window
   decodes from the tiles it touches (window_decode).
Decompression runs the identical decode path, so its output equals that reconstruction. No network runs on
either side, and neither imports torch.
This module holds the public API: it picks the source and the destinations (file or memory) and runs
encode_pass / decode_pass between them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from . import preprocessing as pp
from . import rate_control
from .container import ContainerReader, container_bytes, write_container
from .decode_pass import DecodePass
from .encode_pass import BandSource, EncodeOptions, EncodePass, Log
from .errors import InputError
from .layout import Layout
from .quality import DEFAULT_QUALITY
from .raster_io import RasterInfo, RasterReader, StripWriter, bounded_gdal_cache, open_info
from .strip_window import Cancel, Progress, Sink
from .survey import Survey

PathLike = Union[str, "os.PathLike[str]"]
SinkOpener = Callable[[Layout, RasterInfo], "contextlib.AbstractContextManager[Sink]"]
ContainerWriter = Callable[[Callable[[], dict], Iterator[bytes], Cancel], int]
"""write(header_fn, chunks, cancel) -> the container's size in bytes."""


# --------------------------------------------------------------------------- statistics


class _Stats:
    """`to_dict` for the statistics dataclasses (JSON reports, the CLI's --json)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CompressStats(_Stats):
    """What a compression produced; ratio and bpp count the whole .sarz file."""

    input_bytes: int
    output_bytes: int
    ratio: float
    bpp: float
    pixels: int
    valid_pixels: int
    width: int
    height: int
    seconds: float
    quality: int
    kind: str
    dtype: str
    vmin: float
    vmax: float
    mean_correction: str
    global_gain: float
    linear_mean: float
    clipped_fraction: float
    n_bright_residuals: int
    output: Optional[str] = None
    reconstruction: Optional[str] = None

    def summary(self) -> str:
        return f"ratio {self.ratio:.1f}:1, {self.bpp:.3f} bpp, quality {self.quality}, {self.seconds:.1f} s"


@dataclass
class DecompressStats(_Stats):
    """What a decompression produced."""

    input_bytes: int
    output_bytes: int
    pixels: int
    width: int
    height: int
    seconds: float
    kind: str
    dtype: str
    output: Optional[str] = None

    def summary(self) -> str:
        return f"{self.width}x{self.height} {self.dtype}, {self.seconds:.1f} s"


@dataclass
class ArrayResult:
    """compress_array's result: the .sarz bytes, the reconstruction the decoder will produce, the stats."""

    data: bytes
    reconstruction: np.ndarray
    stats: CompressStats


# --------------------------------------------------------------------------- shared helpers


def _check_output_folder(path: Path) -> None:
    if not path.parent.is_dir():
        raise InputError(f"output folder does not exist: {path.parent}")


def _file_sink(path: Path, cog: bool, log: Log = None) -> SinkOpener:
    """Opens a tiled GeoTIFF at `path` (atomic) for the finished strips, in the layout's output dtype."""

    @contextlib.contextmanager
    def open_sink(layout: Layout, info: RasterInfo) -> Iterator[Sink]:
        if log is not None:
            log(f"decoding {layout.width}x{layout.height} {layout.kind} -> {layout.out_dtype} {path}")
        with StripWriter(path, replace(info, dtype=layout.out_dtype), cog=cog) as writer:
            yield writer.write

    return open_sink


class _ArraySink:
    """Collects the finished strips in memory: the array API's output."""

    def __init__(self) -> None:
        self.out = np.empty(0)

    @contextlib.contextmanager
    def __call__(self, layout: Layout, info: RasterInfo) -> Iterator[Sink]:
        self.out = np.empty((layout.height, layout.width), dtype=layout.out_dtype)
        yield self.write

    def write(self, row0: int, rows: np.ndarray) -> None:
        self.out[row0 : row0 + rows.shape[0]] = rows


# --------------------------------------------------------------------------- compression


def _compress_stats(enc: EncodePass, size: int, seconds: float, **paths: Optional[str]) -> CompressStats:
    layout = enc.layout
    pixels = layout.width * layout.height
    raw = enc.source.raw_bytes
    return CompressStats(
        input_bytes=raw,
        output_bytes=size,
        ratio=raw / size,
        bpp=8.0 * size / pixels,
        pixels=pixels,
        valid_pixels=enc.n_valid,
        width=layout.width,
        height=layout.height,
        seconds=seconds,
        quality=layout.quality,
        kind=layout.kind,
        dtype=layout.dtype,
        vmin=layout.rng.vmin,
        vmax=layout.rng.vmax,
        mean_correction=layout.mean_correction,
        global_gain=enc.global_gain,
        linear_mean=enc.survey.linear_mean,
        clipped_fraction=enc.clipped_fraction,
        n_bright_residuals=enc.n_bright,
        **paths,
    )


def _encode(
    source: BandSource,
    options: EncodeOptions,
    write: ContainerWriter,
    start: float,
    *,
    target_bpp: Optional[float] = None,
    open_sink: Optional[SinkOpener] = None,
    spool_parent: Optional[Path] = None,
    progress: Progress = None,
    cancel: Cancel = None,
    log: Log = None,
    **paths: Optional[str],
) -> CompressStats:
    """Both passes into `write` (and the finished strips into `open_sink`'s sink when given)."""
    survey = None
    if target_bpp is not None:
        options, searched, survey = _options_for_target(source, options, target_bpp, progress, cancel, log)
        progress = _scaled(progress, searched, 1.0)
    enc = EncodePass.plan(source, options, progress, cancel, log, survey)
    with contextlib.ExitStack() as stack:
        if open_sink is not None:
            sink = stack.enter_context(open_sink(enc.layout, source.info))
            stack.enter_context(enc.reconstructing(sink, spool_parent))
        size = write(enc.header, enc.strips(), cancel)
        enc.flush_deferred()
    return _compress_stats(enc, size, time.perf_counter() - start, **paths)


def compress_file(
    src: PathLike,
    dst: PathLike,
    *,
    quality: int = DEFAULT_QUALITY,
    band: Optional[int] = None,
    kind: str = "auto",
    reconstruction: Optional[PathLike] = None,
    mean_correction: str = "block",
    target_bpp: Optional[float] = None,
    tune: str = "ssim",
    cog: bool = False,
    progress: Progress = None,
    cancel: Cancel = None,
    log: Log = None,
) -> CompressStats:
    """Compress one band of a raster into a .sarz file (atomic). `reconstruction`: also write the raster the
    decoder will produce (equal to `decompress_file`'s output), computed during compression.
    `target_bpp`: code to at most this many bits per pixel (whole file) instead of at `quality`,
    by coding the raster at trial steps first (engine.rate_control: 3-7 extra passes measured). `tune`: "ssim"
    (rate-distortion decisions weighted where SSIM is sensitive; default) or "psnr" (plain squared error)."""
    start = time.perf_counter()
    info = open_info(src)
    if band is None:
        if info.count > 1:
            raise InputError(f"raster has {info.count} bands; choose one with --band")
        band = 1
    info.check_band(band)
    pp.check_dtype(info.dtype)
    dst = Path(dst)
    recon = Path(reconstruction) if reconstruction is not None else None
    for out in [dst] + ([recon] if recon else []):
        _check_output_folder(out)
    written = []

    def write(header_fn: Callable[[], dict], chunks: Iterator[bytes], cancel_fn: Cancel) -> int:
        size = write_container(dst, header_fn, chunks, cancel_fn)
        written.append(dst)
        return size

    options = EncodeOptions(quality, kind, mean_correction, tune=tune)
    band_info = info.band(band)
    try:
        with bounded_gdal_cache(), RasterReader(src) as reader:
            source = BandSource(band_info, band, lambda r0, r1: reader.read_rows(band, r0, r1))
            stats = _encode(
                source,
                options,
                write,
                start,
                target_bpp=target_bpp,
                open_sink=_file_sink(recon, cog) if recon else None,
                spool_parent=dst.parent,
                progress=progress,
                cancel=cancel,
                log=log,
                output=str(dst),
                reconstruction=str(recon) if recon else None,
            )
    except BaseException:
        for path in written:  # the reconstruction failed after the .sarz was renamed into place
            path.unlink(missing_ok=True)
        raise
    if log is not None:
        log(f"wrote {dst}: {stats.summary()}")
    return stats


def compress_array(
    arr: np.ndarray,
    *,
    quality: int = DEFAULT_QUALITY,
    kind: str = "auto",
    nodata: Optional[float] = None,
    description: Optional[str] = None,
    mean_correction: str = "block",
    target_bpp: Optional[float] = None,
    tune: str = "ssim",
    progress: Progress = None,
    cancel: Cancel = None,
) -> ArrayResult:
    """The codec on a 2-D array, in memory: .sarz bytes, the decoder's reconstruction and the statistics."""
    start = time.perf_counter()
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"expected a non-empty 2-D array, got shape {arr.shape}")
    info = RasterInfo(
        width=arr.shape[1],
        height=arr.shape[0],
        count=1,
        dtype=pp.check_dtype(arr.dtype),
        nodata=None if nodata is None else float(nodata),
        descriptions=[description],
    )
    sink, data = _ArraySink(), bytearray()

    def write(header_fn: Callable[[], dict], chunks: Iterator[bytes], cancel_fn: Cancel) -> int:
        data.extend(container_bytes(header_fn, chunks, cancel_fn))
        return len(data)

    source = BandSource(info, 1, lambda r0, r1: arr[max(0, r0) : min(arr.shape[0], r1)])
    options = EncodeOptions(quality, kind, mean_correction, tune=tune)
    stats = _encode(
        source, options, write, start, target_bpp=target_bpp, open_sink=sink, progress=progress, cancel=cancel
    )
    return ArrayResult(bytes(data), sink.out, stats)


def _options_for_target(
    source: BandSource,
    options: EncodeOptions,
    target_bpp: float,
    progress: Progress,
    cancel: Cancel,
    log: Log,
) -> tuple[EncodeOptions, float, Optional[Survey]]:
    """The options with the step that fills `target_bpp`, the share of the progress bar the search took (each
    trial pass gets 1 / (MAX_PASSES + 1) of it) and pass 1's survey, made once for every pass."""
    share = 1.0 / (rate_control.MAX_PASSES + 1)
    pixels = source.info.width * source.info.height
    done, survey = 0, None

    def at_step(step: float) -> EncodeOptions:
        return replace(options, refine_step=step, quality=rate_control.nearest_quality(step))

    def bpp_at(step: float) -> float:
        nonlocal done, survey
        bar = _scaled(progress, done * share, (done + 1) * share)
        enc = EncodePass.plan(source, at_step(step), bar, cancel, survey=survey)
        survey = enc.survey
        bpp = 8.0 * len(container_bytes(enc.header, enc.strips(), cancel)) / pixels
        done += 1
        if log is not None:
            log(f"rate control: step {step:.4g} of the dB range -> {bpp:.4f} bpp")
        return bpp

    step = rate_control.find_step(bpp_at, target_bpp)
    return at_step(step), done * share, survey


def _scaled(progress: Progress, lo: float, hi: float) -> Progress:
    """`progress` seen through a slice [lo, hi] of its bar (in thousandths)."""
    if progress is None:
        return None
    return lambda done, total: progress(round(1000 * (lo + (hi - lo) * done / max(total, 1))), 1000)


# --------------------------------------------------------------------------- decompression


def _decode(reader: ContainerReader, open_sink: SinkOpener, progress: Progress, cancel: Cancel) -> DecodePass:
    """The whole file into `open_sink`'s sink; the finished pass (its layout)."""
    dec = DecodePass.open(reader, progress, cancel)
    with open_sink(dec.layout, dec.info) as sink:
        dec.run(sink)
    return dec


def decompress_file(
    src: PathLike,
    dst: PathLike,
    *,
    cog: bool = False,
    progress: Progress = None,
    cancel: Cancel = None,
    log: Log = None,
) -> DecompressStats:
    """Decode a .sarz into a tiled, DEFLATE GeoTIFF (COG with overviews when asked) with the original CRS,
    transform, nodata, description and dtype (complex input -> float32 intensity); atomic."""
    start = time.perf_counter()
    dst = Path(dst)
    _check_output_folder(dst)
    with bounded_gdal_cache(), ContainerReader(src) as reader:
        size = reader.file_size
        dec = _decode(reader, _file_sink(dst, cog, log), progress, cancel)
    layout = dec.layout
    stats = DecompressStats(
        input_bytes=size,
        output_bytes=dst.stat().st_size,
        pixels=layout.width * layout.height,
        width=layout.width,
        height=layout.height,
        seconds=time.perf_counter() - start,
        kind=layout.kind,
        dtype=layout.out_dtype,
        output=str(dst),
    )
    if log is not None:
        log(f"wrote {dst}: {stats.summary()}")
    return stats


def decompress_array(data: Union[bytes, PathLike], *, progress: Progress = None, cancel: Cancel = None) -> np.ndarray:
    """A .sarz (bytes or path) -> the decoded 2-D array (the input's dtype; complex -> float32 intensity)."""
    sink = _ArraySink()
    with ContainerReader(data) as reader:
        _decode(reader, sink, progress, cancel)
    return sink.out


def read_header(src: Union[PathLike, bytes]) -> dict[str, Any]:
    """The JSON header of a .sarz file (structure validated), plus `file_bytes`, `n_chunks` and `file_id` (hex),
    for `info`."""
    with ContainerReader(src) as reader:
        return {**reader.header, "file_bytes": reader.file_size, "n_chunks": reader.n_chunks, "file_id": reader.file_id}
