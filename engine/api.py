"""compress_file / decompress_file: the one entry point for the plugin, the CLI and the benchmark.

Compression streams a raster twice, a row of tiles at a time, never holding it whole:
1. a strided sample of valid pixels -> input kind, robust dB range, linear mean, and bounded tiles -> the SSIM
   weights' reference (survey), and with several bands which band predicts which (band_set, interband);
2. band after band, per tile (engine.codec.format.layout.TILE, 1024 pixels a side): read -> dB -> a wavelet refinement
   layer over a flat base at the quality's step (refine, quality; a predicted band's subbands also from its
   reference band's tile), then (radiometry) per 256x256 block its mean linear intensity (restores the mean that
   a dB-domain codec biases), bright targets above the range as sparse residuals, the nodata mask (strip_payload: the
   chunk bytes; sarz_header: the JSON header; container: the file).
   The same decoded tiles give the optional reconstruction raster. Each tile is coded on its own, so a window
   decodes from the tiles it touches (window_decode).
Decompression runs the identical decode path, so its output equals that reconstruction. No network runs on
either side, and neither imports torch.
This module holds the public API: it picks the source bands and the destinations (file or memory) and runs
band_set / decode_pass between them.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from . import preprocessing as pp
from .codec.format.container import ContainerReader, container_bytes, write_container
from .codec.format.sarz_header import as_decoded, layouts_from_header
from .codec.passes import rate_control
from .codec.passes.band_set import (
    BandPlan,
    BandSetEncoder,
    BandSinks,
    band_warnings,
    output_dtype,
    plan_bands,
    stack_infos,
)
from .codec.passes.decode_pass import DecodePass, band_passes, run_passes
from .codec.passes.encode_pass import BandSource, EncodeOptions, EncodePass, Log
from .codec.passes.quality import DEFAULT_QUALITY
from .codec.passes.strip_window import Cancel, Progress, Sink, scaled_progress
from .errors import ContainerError, InputError, OutputError, UnreachableTarget
from .input_checks import check_kind_fits, check_not_paletted, check_one_dtype
from .inspect import complex_warning, differing_nodata_warning, mask_warning, nodata_warning, photo_warning
from .io.output_paths import (
    check_geotiff_name,
    check_outputs,
    check_sarz_name,
    file_identity,
    held_back,
    put_back,
    replace_into,
    temp_path,
)
from .io.raster_io import (
    RasterInfo,
    RasterReader,
    StripWriter,
    bounded_gdal_cache,
    open_info,
    streaming_cache_mb,
)

PathLike = Union[str, "os.PathLike[str]"]
SinkOpener = Callable[[RasterInfo], "contextlib.AbstractContextManager[BandSinks]"]
"""open_sink(info) -> the sinks of the output raster `info` describes (its dtype the decoded one)."""
ContainerWriter = Callable[[Callable[[], dict], Iterator[bytes], Cancel], int]
"""write(header_fn, chunks, cancel) -> the container's size in bytes."""


# --------------------------------------------------------------------------- statistics


class _Stats:
    """`to_dict` for the statistics dataclasses (JSON reports, the CLI's --json)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CompressStats(_Stats):
    """What a compression produced; ratio and bpp count the whole .sarz file. The band-specific fields (kind,
    vmin ... n_bright_residuals) are the first band's (source order); `bands` has every band's figures."""

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
    no_signal_pixels: int = 0
    """Exact zeros coded as no-signal fill (preprocessing.zero_is_fill), restored as zeros."""
    isolated_zeros: int = 0
    """...of which isolated inside the footprint (no zero among their 4 neighbours)."""
    scattered_no_signal: int = 0
    """No-signal pixels (zeros, or -inf in dB) dense inside the signal, coded as data at the signal around them
    and decoded so, not restored exactly (preprocessing.scattered_no_signal)."""
    kind_reason: str = ""
    warnings: list[str] = field(default_factory=list)
    bands: list[dict[str, Any]] = field(default_factory=list)
    """Per band (source order): source_band, kind, vmin, vmax, reference (the source band it is predicted
    from, or None), bytes (its chunks), bpp (of them), psnr_db (refined dB against the original over the band's
    coded range, before the mean correction), loop_filtered_tiles and interscale_tiles (of its tiles: those
    that keep a loop filter, those that predict a detail level from the level above)."""

    def summary(self) -> str:
        return f"ratio {self.ratio:.1f}:1, {self.bpp:.3f} bpp, quality {self.quality}, {self.seconds:.1f} s"

    def band_lines(self) -> list[str]:
        """One line per band: its share of the file and its quality."""
        lines = []
        for b in self.bands:
            ref = f", predicted from band {b['reference']}" if b["reference"] is not None else ""
            psnr = "n/a" if b["psnr_db"] is None else f"{b['psnr_db']:.2f} dB"
            filtered = f", loop filter on {b['loop_filtered_tiles']} of {b['tiles']} tiles"
            if b["interscale_tiles"]:
                filtered += f", inter-scale prediction on {b['interscale_tiles']}"
            lines.append(
                f"band {b['source_band']} ({b['kind']}): {b['bytes']} bytes, {b['bpp']:.4f} bpp, PSNR {psnr}"
                f"{filtered}{ref}"
            )
        return lines


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
    bands: int = 1

    def summary(self) -> str:
        return f"{self.width}x{self.height}x{self.bands} {self.dtype}, {self.seconds:.1f} s"


@dataclass
class ArrayResult:
    """compress_array's result: the .sarz bytes, the reconstruction the decoder will produce (2-D for one band,
    bands x rows x columns for several), the stats."""

    data: bytes
    reconstruction: np.ndarray
    stats: CompressStats


# --------------------------------------------------------------------------- shared helpers


def _file_sink(
    path: Path, cog: bool, log: Log = None, overwrite: bool = True, cancel: Cancel = None, warn: Log = None
) -> SinkOpener:
    """Opens a tiled GeoTIFF at `path` (atomic; `overwrite`: output_paths.replace_into's; `cancel` asked until the
    rename; `warn`: StripWriter's) for the finished strips of every band."""

    @contextlib.contextmanager
    def open_sink(info: RasterInfo) -> Iterator[BandSinks]:
        if log is not None:
            log(f"decoding {info.width}x{info.height}, {info.count} band(s) -> {info.dtype} {path}")
        with StripWriter(path, info, cog=cog, overwrite=overwrite, cancel=cancel, warn=warn) as writer:
            yield lambda i: lambda row0, rows: writer.write(row0, rows, band=i + 1)

    return open_sink


class _ArraySink:
    """Collects the finished strips in memory: the array API's output (2-D for one band)."""

    def __init__(self) -> None:
        self.out = np.empty(0)

    @contextlib.contextmanager
    def __call__(self, info: RasterInfo) -> Iterator[BandSinks]:
        shape = (info.count, info.height, info.width)
        try:
            self.out = np.empty(shape, dtype=info.dtype)
        except MemoryError:
            gib = math.prod(shape) * np.dtype(info.dtype).itemsize / 2**30
            raise InputError(
                f"the decoded raster ({'x'.join(map(str, shape))} {info.dtype}, {gib:.1f} GiB) does not fit in memory: "
                "decompress it to a file"
            ) from None
        yield self.sink
        if info.count == 1:
            self.out = self.out[0]

    def sink(self, i: int) -> Sink:
        def write(row0: int, rows: np.ndarray) -> None:
            self.out[i, row0 : row0 + rows.shape[0]] = rows

        return write


# --------------------------------------------------------------------------- compression


def _band_figures(enc: EncodePass, reference: Optional[int]) -> dict[str, Any]:
    layout = enc.layout
    return {
        "source_band": enc.source.band,
        "kind": layout.kind,
        "nodata": enc.source.info.nodata,  # the band's, or the fill pass 1 found and declared (survey.declared)
        "vmin": layout.rng.vmin,
        "vmax": layout.rng.vmax,
        "reference": reference,
        "bytes": enc.chunk_bytes,
        "bpp": 8.0 * enc.chunk_bytes / (layout.width * layout.height),
        "psnr_db": enc.psnr_db,
        "valid_pixels": enc.n_valid,
        "loop_filtered_tiles": enc.n_filtered,
        "interscale_tiles": enc.n_predicted,
        "tiles": layout.n_tiles,
    }


def _compress_stats(bands: BandSetEncoder, size: int, seconds: float, **paths: Optional[str]) -> CompressStats:
    passes = bands.by_source
    enc = passes[0]
    layout = enc.layout
    pixels = layout.width * layout.height
    raw = sum(e.source.raw_bytes for e in passes)
    sources = [e.source.band for e in bands.passes]
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
        no_signal_pixels=sum(e.n_zero for e in passes),
        isolated_zeros=sum(e.n_isolated_zero for e in passes),
        scattered_no_signal=sum(e.n_scattered for e in passes),
        kind_reason=enc.survey.kind_reason,
        warnings=band_warnings([e.survey for e in passes], [e.source for e in passes]),
        bands=[_band_figures(e, None if e.layout.reference is None else sources[e.layout.reference]) for e in passes],
        **paths,
    )


def _encode(
    sources: list[BandSource],
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
    warn: Log = None,
    **paths: Optional[str],
) -> CompressStats:
    """Pass 1 of every band (its warnings to `warn`), then their passes 2 into `write` (and the finished strips
    into `open_sink`'s sinks when given)."""
    _stage(log, "survey (range and statistics)")
    plan = plan_bands(sources, options, log, warn)
    if target_bpp is not None:
        options, searched = _options_for_target(sources, options, plan, target_bpp, progress, cancel, log, warn)
        progress = scaled_progress(progress, searched, 1.0)
    bands = BandSetEncoder(sources, options, plan, progress, cancel, log)
    if warn is not None and any(survey.fill_value is not None for survey in plan.surveys):
        declared = differing_nodata_warning({enc.source.band: enc.source.info.nodata for enc in bands.by_source})
        if declared is not None:  # a fill found in some bands only: one GeoTIFF nodata (compress_file warned of
            warn(declared)  # the values the bands declare before pass 1)
    _stage(log, "coding at the chosen step" if target_bpp is not None else "coding")
    with contextlib.ExitStack() as stack:
        if open_sink is not None:
            info = stack_infos([as_decoded(enc.source.info, enc.layout.kind) for enc in bands.by_source])
            info = replace(info, dtype=output_dtype([enc.layout.kind for enc in bands.passes], info.dtype))
            sinks = stack.enter_context(open_sink(info))
            stack.enter_context(bands.reconstructing(sinks, spool_parent))
        size = write(bands.header, bands.chunks(), cancel)
        bands.flush_deferred()
    return _compress_stats(bands, size, time.perf_counter() - start, **paths)


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
    interband: bool = True,
    loop_filter: bool = True,
    interscale: bool = True,
    sign_contexts: bool = False,
    phase_prediction: bool = True,
    neighbour_bits: bool = True,
    cog: bool = False,
    overwrite: bool = True,
    progress: Progress = None,
    cancel: Cancel = None,
    log: Log = None,
    warn: Log = None,
) -> CompressStats:
    """Compress every band of a raster (or only `band`) into one .sarz file (atomic), each band with its own kind
    (`kind` applies to all; "auto" detects each), range, nodata, description and tags. `reconstruction`: also write the
    raster the decoder will produce (equal to `decompress_file`'s output), computed during compression. `target_bpp`:
    code to at most this many bits per pixel (whole file, all bands at one step of their dB ranges) instead of at
    `quality`, by coding the raster at trial steps first (engine.codec.passes.rate_control: 3-7 extra passes measured).
    `tune`: "ssim" (rate-distortion decisions weighted where SSIM is sensitive; default) or "psnr" (plain squared
    error). `interband`: predict bands from one another where it pays. `loop_filter`: fit each tile's adaptive loop
    filter where it pays (engine.codec.restoration.loop_filter). `interscale`: predict each tile's finest levels from
    the level above where it pays (engine.codec.transform.interscale). `sign_contexts`: code signs under their
    neighbours' where it pays (engine.codec.entropy.sign_contexts; off by default: with phase prediction it buys
    nothing measurable), `phase_prediction`: predict each subband's second checkerboard phase from its first where it
    pays (engine.codec.entropy.phase_prediction), `neighbour_bits`: count, in the rate-distortion lowering, the bits
    a value costs its neighbours' contexts (engine.codec.entropy.rd_lowering); the three switched only to measure what
    they buy. `warn`: called
    with each of the input's warnings before any coding (a photo's, from its metadata, then pass 1's; the CLI prints
    them); pass 1's are in the returned statistics too. `overwrite`: replace existing outputs (the default); False
    refuses them, at the start and again as the files go into place (one that appeared meanwhile)."""
    start = time.perf_counter()
    info = open_info(src)
    bands = list(range(1, info.count + 1)) if band is None else [info.check_band(band)]
    check_one_dtype(info.band_dtypes, bands)
    dtype = info.band(bands[0]).dtype
    pp.check_dtype(dtype)
    check_kind_fits(dtype, kind)
    check_not_paletted(info.color_interp, bands)
    if warn is not None:
        checks = (photo_warning(src), mask_warning(src, bands), nodata_warning(info, bands))
        for warning in filter(None, (*checks, complex_warning(info, bands))):
            warn(warning)
    dst = Path(dst)
    check_sarz_name(dst)
    check_geotiff_name(reconstruction)
    recon = Path(reconstruction) if reconstruction is not None else None
    check_outputs([src], [dst, recon], overwrite)  # never the input, never a folder/FIFO/device
    staged = temp_path(dst)  # renamed to dst only once the reconstruction is complete too: all or nothing
    kept = held_back(recon) if recon is not None and overwrite else []  # the old one, should the .sarz fail
    placed = None  # the reconstruction this run put in place

    def write(header_fn: Callable[[], dict], chunks: Iterator[bytes], cancel_fn: Cancel) -> int:
        return write_container(staged, header_fn, chunks, cancel_fn)

    options = EncodeOptions(
        quality,
        kind,
        mean_correction,
        tune,
        interband,
        loop_filter,
        interscale,
        sign_contexts,
        phase_prediction,
        neighbour_bits,
    )
    try:
        with bounded_gdal_cache(streaming_cache_mb(info.width, dtype)), RasterReader(src) as reader:
            sources = [BandSource(info.band(b), b, _row_reader(reader, b)) for b in bands]
            stats = _encode(
                sources,
                options,
                write,
                start,
                target_bpp=target_bpp,
                open_sink=_file_sink(recon, cog, overwrite=overwrite, cancel=cancel, warn=warn) if recon else None,
                spool_parent=dst.parent,
                progress=progress,
                cancel=cancel,
                log=log,
                warn=warn,
                output=str(dst),
                reconstruction=str(recon) if recon else None,
            )
        placed = file_identity(recon) if kept else None
        _commit_sarz(staged, dst, overwrite, recon)
    except BaseException:
        staged.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a reconstruction in place of the old one, and no .sarz with it: the old
            put_back(kept, placed)  # one back, with its sidecars (its own failure never hides the run's)
        raise
    put_back(kept, placed=None)
    if log is not None:
        log(f"wrote {dst}: {stats.summary()}")
    return stats


def _commit_sarz(staged: Path, dst: Path, overwrite: bool, recon: Optional[Path]) -> None:
    """The .sarz into place, after the reconstruction (all or nothing: a .sarz refused there because a file appeared
    at its name meanwhile takes back the reconstruction this run just put in place, which did not exist before)."""
    try:
        replace_into(staged, dst, overwrite)
    except OutputError:
        if recon is not None and not overwrite:
            recon.unlink(missing_ok=True)
        raise


def _row_reader(reader: RasterReader, band: int) -> Callable[[int, int], np.ndarray]:
    return lambda r0, r1: reader.read_rows(band, r0, r1)


def _scalings(scale: float, offset: float, count: int) -> dict[str, list[float]]:
    """RasterInfo's scales and offsets for `count` bands sharing one scale and offset (none when they are 1 and 0)."""
    if (float(scale), float(offset)) == pp.IDENTITY:
        return {}
    return {"scales": [float(scale)] * count, "offsets": [float(offset)] * count}


def compress_array(
    arr: np.ndarray,
    *,
    quality: int = DEFAULT_QUALITY,
    kind: str = "auto",
    nodata: Optional[float] = None,
    description: Optional[Union[str, list[Optional[str]]]] = None,
    scale: float = 1.0,
    offset: float = 0.0,
    mean_correction: str = "block",
    target_bpp: Optional[float] = None,
    tune: str = "ssim",
    interband: bool = True,
    loop_filter: bool = True,
    interscale: bool = True,
    sign_contexts: bool = False,
    phase_prediction: bool = True,
    neighbour_bits: bool = True,
    progress: Progress = None,
    cancel: Cancel = None,
) -> ArrayResult:
    """The codec on a 2-D array (one band) or a 3-D one (bands, rows, columns), in memory: .sarz bytes, the
    decoder's reconstruction (same shape) and the statistics. `description`: one, or one per band; `scale` and
    `offset`: what the values mean (value = raw * scale + offset, as a GDAL band's: a dB x 100 int16 array's 0.01),
    every band's."""
    start = time.perf_counter()
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise InputError(f"expected a non-empty 2-D array or a 3-D (bands, rows, columns) one, got shape {arr.shape}")
    stack = arr if arr.ndim == 3 else arr[None]
    descriptions = description if isinstance(description, list) else [description] * stack.shape[0]
    if len(descriptions) != stack.shape[0]:
        raise InputError(f"{len(descriptions)} descriptions for {stack.shape[0]} bands")
    check_kind_fits(str(arr.dtype), kind)
    info = RasterInfo(
        width=stack.shape[2],
        height=stack.shape[1],
        count=stack.shape[0],
        dtype=pp.check_dtype(arr.dtype),
        nodata=None if nodata is None else float(nodata),
        descriptions=list(descriptions),
        **_scalings(scale, offset, stack.shape[0]),
    )
    sink, data = _ArraySink(), bytearray()

    def write(header_fn: Callable[[], dict], chunks: Iterator[bytes], cancel_fn: Cancel) -> int:
        data.extend(container_bytes(header_fn, chunks, cancel_fn))
        return len(data)

    sources = [BandSource(info.band(b + 1), b + 1, _array_reader(stack[b])) for b in range(stack.shape[0])]
    options = EncodeOptions(
        quality,
        kind,
        mean_correction,
        tune,
        interband,
        loop_filter,
        interscale,
        sign_contexts,
        phase_prediction,
        neighbour_bits,
    )
    stats = _encode(
        sources, options, write, start, target_bpp=target_bpp, open_sink=sink, progress=progress, cancel=cancel
    )
    return ArrayResult(bytes(data), sink.out, stats)


def _array_reader(band: np.ndarray) -> Callable[[int, int], np.ndarray]:
    return lambda r0, r1: band[max(0, r0) : min(band.shape[0], r1)]


def _options_for_target(
    sources: list[BandSource],
    options: EncodeOptions,
    plan: BandPlan,
    target_bpp: float,
    progress: Progress,
    cancel: Cancel,
    log: Log,
    warn: Log = None,
) -> tuple[EncodeOptions, float]:
    """The options with the step that fills `target_bpp` for the whole file, and the share of the progress
    bar the search took (each trial pass gets 1 / (MAX_PASSES + 1) of it); `warn` hears where the file stays
    well under the target (rate_control.shortfall_warning). Every band gets the same step of
    its own dB range: equal quantizer steps in the bands' normalized domains are equal distortion slopes of
    their refinement layers (a uniform quantizer's D(R) slope follows its step), which is where a bit buys the
    same in every band. Measured on the bands coded alone (qualities 4-8, range-scaled MSE per bit): the bands'
    slopes at one step lie within 1-3 % of each other on AIRSAR T11/T22/T33 and Sen1Floods11 VV/VH, within
    11 % on single-look C11/C22/C33; with prediction, coding the reference band at 0.85 or 0.7 of the step
    moved the T11/T22/T33 pooled PSNR at equal bytes by -0.04 to +0.02 dB: the equal step stays."""
    share = 1.0 / (rate_control.MAX_PASSES + 1)
    pixels = sources[0].info.width * sources[0].info.height
    done, last, tried = 0, [], {}

    def at_step(step: float) -> EncodeOptions:
        return replace(options, refine_step=step, quality=rate_control.nearest_quality(step))

    def bpp_at(step: float) -> float:
        nonlocal done
        bar = scaled_progress(progress, done * share, (done + 1) * share)
        _stage(log, f"rate-control pass {done + 1} of at most {rate_control.MAX_PASSES}")
        trial = BandSetEncoder(sources, at_step(step), plan, bar, cancel)
        bpp = 8.0 * len(container_bytes(trial.header, trial.chunks(), cancel)) / pixels
        done, last[:], tried[step] = done + 1, [trial], bpp
        if log is not None:
            log(f"rate control: step {step:.4g} of the dB ranges -> {bpp:.4f} bpp")
        return bpp

    try:
        step = rate_control.find_step(bpp_at, target_bpp)
    except UnreachableTarget as err:
        raise UnreachableTarget(f"{err}{_mask_hint(last[0].passes, pixels)}") from None
    shortfall = rate_control.shortfall_warning(step, tried[step], target_bpp, done)
    if shortfall is not None and warn is not None:
        warn(shortfall)
    return at_step(step), done * share


def _mask_hint(passes: list[EncodePass], pixels: int) -> str:
    """Why a target may be out of reach whatever the step: the pixels the mask restores exactly, where they are
    more than 1 % of the raster (noise-clipped zeros a nodata 0 marks: a simulated scene with 10 % of them needs
    0.34 bpp for its mask alone, a sweep)."""
    masked = sum(pixels - enc.n_valid - enc.n_scattered for enc in passes)
    if masked <= 0.01 * pixels * len(passes):
        return ""
    return (
        f"; {masked} pixels are nodata or no-signal, restored exactly at any step (scattered ones cost the mask "
        "about 2 bytes each: if a nodata value also marks pixels of the signal, noise-clipped zeros under nodata 0 "
        "for instance, a copy without it, gdal_edit.py -unsetnodata, has those coded as data)"
    )


def _stage(log: Log, text: str) -> None:
    """Announce a stage (survey, coding, rate-control pass n) to a log callback that takes them: one with an
    `announce_stage(text)` method (the QGIS plugin's progress text); plain log functions (the CLI) see nothing."""
    announce = getattr(log, "announce_stage", None)
    if announce is not None:
        announce(text)


# --------------------------------------------------------------------------- decompression


def _decode(
    reader: ContainerReader,
    open_sink: SinkOpener,
    band: Optional[int],
    progress: Progress,
    cancel: Cancel,
    warn: Log = None,
) -> list[DecodePass]:
    """Every band of the file (or the one whose source number is `band`) into `open_sink`'s sinks; the
    finished passes (their layouts), in output band order. `warn`: what the sink cannot hold (a GeoTIFF's one
    nodata value for bands whose values differ), before any decoding."""
    passes = band_passes(reader, band)
    if warn is not None and len(passes) > 1:
        bands = reader.header["bands"]
        nodata = {int(bands[dec.layout.band_index]["source_band"]): dec.info.nodata for dec in passes}
        warning = differing_nodata_warning(nodata)
        if warning is not None:
            warn(warning)
    info = stack_infos([dec.info for dec in passes])
    info = replace(info, dtype=output_dtype([dec.layout.kind for dec in passes], info.dtype))
    with open_sink(info) as sinks:
        run_passes(passes, sinks, progress, cancel)
    return passes


def decompress_file(
    src: PathLike,
    dst: PathLike,
    *,
    band: Optional[int] = None,
    cog: bool = False,
    overwrite: bool = True,
    progress: Progress = None,
    cancel: Cancel = None,
    log: Log = None,
    warn: Log = None,
) -> DecompressStats:
    """Decode a .sarz into a tiled, DEFLATE GeoTIFF (COG with overviews when asked), every band (or only the
    one whose source band number is `band`: only its chunks are read, and its reference band's if it is
    predicted) with the original CRS, transform, nodata, descriptions and dtype (complex input -> float32
    intensity); atomic. `warn`: called before decoding where the GeoTIFF cannot say what the file does (bands
    whose nodata values differ). `overwrite`: as compress_file's."""
    start = time.perf_counter()
    dst = Path(dst)
    check_geotiff_name(dst)
    check_outputs([src], [dst], overwrite)  # never the input, never a folder/FIFO/device
    with ContainerReader(src) as reader:
        layouts, _ = layouts_from_header(reader.header)  # checked before anything reads it
        size, layout = reader.file_size, layouts[0]
        with bounded_gdal_cache(streaming_cache_mb(layout.width, layout.dtype)):
            passes = _decode(reader, _file_sink(dst, cog, log, overwrite, cancel, warn), band, progress, cancel, warn)
    layout = passes[0].layout
    stats = DecompressStats(
        input_bytes=size,
        output_bytes=dst.stat().st_size,
        pixels=layout.width * layout.height,
        width=layout.width,
        height=layout.height,
        seconds=time.perf_counter() - start,
        kind=layout.kind,
        dtype=output_dtype([dec.layout.kind for dec in passes], layout.dtype),
        output=str(dst),
        bands=len(passes),
    )
    if log is not None:
        log(f"wrote {dst}: {stats.summary()}")
    return stats


def decompress_array(
    data: Union[bytes, PathLike], *, band: Optional[int] = None, progress: Progress = None, cancel: Cancel = None
) -> np.ndarray:
    """A .sarz (bytes or path) -> the decoded array (the input's dtype; complex -> float32 intensity): 2-D for
    a one-band file or `band` (a source band number), else bands x rows x columns in source band order."""
    sink = _ArraySink()
    with ContainerReader(data) as reader:
        _decode(reader, sink, band, progress, cancel)
    return sink.out


def _dict_list(value: Any) -> bool:
    """Whether `value` is a non-empty list of dictionaries (a header's band entries)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def read_header(src: Union[PathLike, bytes]) -> dict[str, Any]:
    """The JSON header of a .sarz file (structure validated), plus `file_bytes`, `n_chunks`, `file_id` (hex) and
    `band_bytes` (the payload bytes of each band's chunks, in the order of `bands`, from the index), for `info`."""
    with ContainerReader(src) as reader:
        header, lengths = reader.header, reader.chunk_lengths
        if not (isinstance(header.get("raster"), dict) and _dict_list(header.get("bands"))):
            raise ContainerError(f"{reader.name}: the .sarz header has no raster or band entries")
        per_band = len(lengths) // max(len(header["bands"]), 1)
        band_bytes = [sum(lengths[i * per_band : (i + 1) * per_band]) for i in range(len(header["bands"]))]
        extra = {"file_bytes": reader.file_size, "n_chunks": reader.n_chunks, "file_id": reader.file_id}
        return {**header, **extra, "band_bytes": band_bytes}
