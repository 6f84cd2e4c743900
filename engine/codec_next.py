"""compress_file / decompress_file: the one entry point for the plugin, the CLI and the benchmark.

Compression streams a raster twice, strip by strip (256 rows), never holding it whole:
1. a strided sample of valid pixels -> input kind, robust dB range, linear mean (survey);
2. per strip: read with a 32-row halo -> dB -> [0, 1] -> encoder -> quantize -> entropy-code. The quantized
   latents are decoded again at once (strip_window: a rolling window of strips gives the decoder its latent
   halo), so the chunk can carry what the network alone gets wrong (radiometry): per 64x64 block a
   linear-intensity gain (restores the mean that a dB-domain codec biases), bright targets above the range as
   sparse residuals, the nodata mask (strip_payload has the chunk layout, sarz_header the JSON header).
   The same decoded strips give the optional reconstruction raster without a second network pass.
Decompression runs the identical decode path, so its output equals that reconstruction.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from . import preprocessing as pp
from .compressor import HALO, SARCompressor
from .container import ContainerReader, container_bytes, write_container
from .errors import ContainerError, InputError, ModelError
from .layout import Layout
from .radiometry import (
    MEAN_CORRECTIONS,
    block_sums,
    bright_residuals,
    finalize_strip,
    gain_codes,
    global_gain_db,
)
from .raster_io import RasterInfo, RasterReader, StripWriter, open_info
from .sarz_header import build_header, layout_from_header, model_identity
from .strip_payload import Strip, invalid_codes
from .strip_window import Cancel, Progress, Sink, StripPass, TileProgress, check_cancel
from .survey import RANGE_MODES, RowReader, Survey, survey_band

DEFAULT_QUALITY = 3

Log = Optional[Callable[[str], None]]
PathLike = Union[str, "os.PathLike[str]"]
ModelArg = Union[str, Path, Any, None]
SinkOpener = Callable[[Layout, RasterInfo], "contextlib.AbstractContextManager[Sink]"]
ContainerWriter = Callable[[Callable[[], dict], Iterator[bytes], Cancel], int]
"""write(header_fn, chunks, cancel) -> the container's size in bytes."""


# --------------------------------------------------------------------------- statistics


@dataclass
class CompressStats:
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
    seconds_network: float
    device_name: str
    quality: int
    model_name: str
    model_sha256: str
    kind: str
    dtype: str
    vmin: float
    vmax: float
    range_mode: str
    mean_correction: str
    global_gain: float
    linear_mean: float
    clipped_fraction: float
    n_bright_residuals: int
    output: Optional[str] = None
    reconstruction: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"ratio {self.ratio:.1f}:1, {self.bpp:.3f} bpp, {self.seconds:.1f} s "
            f"({self.seconds_network:.1f} s network), {self.device_name}"
        )


@dataclass
class DecompressStats:
    """What a decompression produced."""

    input_bytes: int
    output_bytes: int
    pixels: int
    width: int
    height: int
    seconds: float
    seconds_network: float
    device_name: str
    model_name: str
    kind: str
    dtype: str
    output: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.width}x{self.height} {self.dtype}, {self.seconds:.1f} s "
            f"({self.seconds_network:.1f} s network), {self.device_name}"
        )


@dataclass
class ArrayResult:
    """compress_array's result: the .sarz bytes, the reconstruction the decoder will produce, the stats."""

    data: bytes
    reconstruction: np.ndarray
    stats: CompressStats


# --------------------------------------------------------------------------- shared helpers


def _compressor(compressor: Optional[SARCompressor], model: ModelArg, device: str) -> SARCompressor:
    return compressor if compressor is not None else SARCompressor(model or "default", device=device)


def _check_output_folder(path: Path) -> None:
    if not path.parent.is_dir():
        raise InputError(f"output folder does not exist: {path.parent}")


def _raw_bytes(info: RasterInfo) -> int:
    return info.width * info.height * np.dtype(info.dtype).itemsize


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


# --------------------------------------------------------------------------- encoder


@dataclass
class _Source:
    """The band being compressed: its (single-band) info, its number in the input, a row reader."""

    info: RasterInfo
    band: int
    read: RowReader


@dataclass
class _Options:
    """The user's coding choices, checked against the model by `level`."""

    quality: int
    kind: str
    range_mode: str
    mean_correction: str

    def level(self, comp: SARCompressor) -> int:
        """The 0-based quality level; ModelError / InputError naming what is wrong."""
        if comp.entropy is None:
            raise ModelError(
                f"model {comp.loaded.name} ({comp.loaded.path}) has no entropy tables "
                "(a prototype checkpoint): it cannot write .sarz files"
            )
        n, quality = comp.n_qualities, self.quality
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= n:
            raise InputError(f"quality must be an integer in 1..{n}, got {quality!r}")
        if self.range_mode not in RANGE_MODES:
            raise InputError(f"range mode must be one of {', '.join(RANGE_MODES)}, got {self.range_mode!r}")
        if self.mean_correction not in MEAN_CORRECTIONS:
            raise InputError(
                f"mean correction must be one of {', '.join(MEAN_CORRECTIONS)}, got {self.mean_correction!r}"
            )
        return int(quality) - 1


class _Encoder(StripPass):
    """Pass 2 as a chunk generator (consumed by the container writer); `header()` once it is exhausted."""

    def __init__(
        self,
        source: _Source,
        comp: SARCompressor,
        plan: tuple[Layout, Survey],
        range_mode: str,
        progress: Progress,
        cancel: Cancel,
    ):
        layout, self.survey = plan
        ticker = TileProgress(2 * layout.n_strips * comp.tiles_per_strip(layout.width), progress)
        super().__init__(comp, layout, ticker, cancel)
        self.source, self.range_mode = source, range_mode
        self.spool_dir: Optional[Path] = None
        self.sum_o = self.sum_r = 0.0
        self.n_valid = self.n_clipped = self.n_bright = 0
        self.deferred: list[tuple[Path, Strip]] = []

    def load(self, k: int) -> Strip:
        """Read strip k with its halo, encode, quantize, entropy-code; keep what the gains need."""
        row0, rows = self.layout.strip_rows(k)
        lo, hi = max(0, row0 - HALO), min(self.layout.height, row0 + rows + HALO)
        raw = self.source.read(lo, hi)
        top, bottom = row0 - lo, hi - row0 - rows
        valid = pp.valid_mask(raw, self.layout.nodata)
        db = pp.to_db(raw, self.layout.kind)
        symbols = self._symbols(np.where(valid, db, np.float32(self.survey.fill_db)), top, bottom)
        core = slice(top, top + rows)
        return self._strip(k, symbols, raw[core], db[core], valid[core])

    def _symbols(self, db: np.ndarray, top: int, bottom: int) -> np.ndarray:
        """Quantized latents of the strip's core rows (the halo rows are context only)."""
        import torch

        x01 = pp.normalize(db, self.layout.rng)
        latents = self.comp.encode_strip(x01, top, bottom, cancel=self.cancel, on_batch=self.ticker)
        return self.comp.entropy.quantize(torch.from_numpy(latents), self.layout.level)

    def _strip(
        self, k: int, symbols: np.ndarray, raw: np.ndarray, orig_db: np.ndarray, valid: np.ndarray
    ) -> Strip:
        """Strip k from its quantized latents and its core rows (raw, dB, valid); counts the statistics."""
        layout = self.layout
        row0, rows = layout.strip_rows(k)
        bright, residuals = bright_residuals(orig_db, valid, layout.bright_threshold)
        outside = (orig_db < layout.rng.vmin) | (orig_db > layout.rng.vmax)
        self.n_valid += int(valid.sum())
        self.n_clipped += int(np.count_nonzero(valid & outside))
        self.n_bright += int(residuals.steps.size)
        invalid = ~valid
        has_invalid = bool(invalid.any())
        return Strip(
            index=k,
            row0=row0,
            rows=rows,
            y_hat=self.y_hat(symbols),
            bright=residuals,
            invalid=invalid if has_invalid else None,
            codes=invalid_codes(raw, invalid, layout.nodata) if has_invalid else np.zeros(0, np.uint8),
            latents=self.comp.entropy.encode(symbols, layout.level),
            orig_db=orig_db,
            use=valid & ~bright,
        )

    def after_decode(self, strip: Strip) -> bytes:
        """Block gains from original vs decoded linear intensity, then the chunk is complete."""
        sum_o, sum_r = block_sums(strip.orig_db, strip.raw_db, strip.use)
        self.sum_o += float(sum_o.sum())
        self.sum_r += float(sum_r.sum())
        if self.layout.mean_correction == "block":
            strip.gains = gain_codes(sum_o, sum_r)
        strip.orig_db = strip.use = None
        return strip.payload()

    def finalize(self, prev: Optional[Strip], cur: Strip, nxt: Optional[Strip]) -> None:
        if self.sink is not None and self.layout.mean_correction == "global":
            self._defer(cur)
        else:
            super().finalize(prev, cur, nxt)

    def _defer(self, strip: Strip) -> None:
        """The global gain is known only at the end: keep the decoded strip on disk until then."""
        name = self.spool_dir / f"{strip.index}.npz"
        invalid = strip.invalid if strip.invalid is not None else np.zeros((0, 0), bool)
        np.savez(name, raw_db=strip.raw_db, invalid=invalid)
        light = replace(strip, y_hat=strip.y_hat[:, :0].copy(), raw_db=None, invalid=None)
        self.deferred.append((name, light))

    def flush_deferred(self) -> None:
        """Finish the strips `_defer` kept, now that the global gain is known."""
        gain_db = global_gain_db(self.global_gain)
        for name, strip in self.deferred:
            check_cancel(self.cancel)
            with np.load(name) as saved:
                raw_db, invalid = saved["raw_db"], saved["invalid"]
            strip.invalid = invalid if invalid.size else None
            self.sink(strip.row0, finalize_strip(self.layout, raw_db, gain_db, strip))
            name.unlink()
        self.deferred.clear()

    @property
    def global_gain(self) -> float:
        return self.sum_o / self.sum_r if self.sum_o > 0 and self.sum_r > 0 else 1.0

    @property
    def clipped_fraction(self) -> float:
        return self.n_clipped / self.n_valid if self.n_valid else 0.0

    def header(self) -> dict[str, Any]:
        layout, info, comp = self.layout, self.source.info, self.comp
        stats = {
            "pixels": layout.width * layout.height,
            "valid_pixels": self.n_valid,
            "input_bytes": _raw_bytes(info),
            "clipped_fraction": self.clipped_fraction,
            "n_bright_residuals": self.n_bright,
            "linear_mean": self.survey.linear_mean,
        }
        return build_header(
            layout,
            info,
            self.source.band,
            comp.loaded,
            comp.n_qualities,
            self.range_mode,
            self.global_gain,
            stats,
        )

    def stats(self, size: int, seconds: float, net: float, **paths: Optional[str]) -> CompressStats:
        layout, loaded = self.layout, self.comp.loaded
        pixels = layout.width * layout.height
        raw = _raw_bytes(self.source.info)
        return CompressStats(
            input_bytes=raw,
            output_bytes=size,
            ratio=raw / size,
            bpp=8.0 * size / pixels,
            pixels=pixels,
            valid_pixels=self.n_valid,
            width=layout.width,
            height=layout.height,
            seconds=seconds,
            seconds_network=net,
            device_name=self.comp.device_name,
            quality=layout.level + 1,
            model_name=loaded.name,
            model_sha256=loaded.sha256,
            kind=layout.kind,
            dtype=layout.dtype,
            vmin=layout.rng.vmin,
            vmax=layout.rng.vmax,
            range_mode=self.range_mode,
            mean_correction=layout.mean_correction,
            global_gain=self.global_gain,
            linear_mean=self.survey.linear_mean,
            clipped_fraction=self.clipped_fraction,
            n_bright_residuals=self.n_bright,
            **paths,
        )


def _plan(source: _Source, comp: SARCompressor, options: _Options, log: Log) -> tuple[Layout, Survey]:
    """Options checked and pass 1 done: the layout every strip is coded with."""
    level = options.level(comp)
    pp.check_dtype(source.info.dtype)
    model_range = pp.Range(comp.loaded.vmin, comp.loaded.vmax) if options.range_mode == "model" else None
    survey = survey_band(source.info, source.read, options.kind, model_range)
    layout = Layout(
        width=source.info.width,
        height=source.info.height,
        kind=survey.kind,
        dtype=source.info.dtype,
        nodata=source.info.nodata,
        rng=survey.rng,
        level=level,
        mean_correction=options.mean_correction,
        bright_threshold=survey.rng.vmax,
        latent_channels=comp.latent_channels,
    )
    if log is not None:
        log(
            f"{layout.width}x{layout.height} {layout.dtype} as {layout.kind}, range [{survey.rng.vmin:.2f}, "
            f"{survey.rng.vmax:.2f}] dB ({options.range_mode}), model {comp.loaded.name}, quality "
            f"{level + 1}/{comp.n_qualities}, {comp.device_name}, batch {comp.batch_size}"
        )
    return layout, survey


def _encode(
    source: _Source,
    comp: SARCompressor,
    options: _Options,
    write: ContainerWriter,
    start: float,
    *,
    open_sink: Optional[SinkOpener] = None,
    spool_parent: Optional[Path] = None,
    progress: Progress = None,
    cancel: Cancel = None,
    log: Log = None,
    **paths: Optional[str],
) -> CompressStats:
    """Pass 1, then pass 2 into `write` (and the finished strips into `open_sink`'s sink when given)."""
    net0 = comp.seconds_network
    enc = _Encoder(source, comp, _plan(source, comp, options, log), options.range_mode, progress, cancel)
    layout = enc.layout
    with contextlib.ExitStack() as stack:
        if open_sink is not None:
            enc.sink = stack.enter_context(open_sink(layout, source.info))
            if layout.mean_correction == "global":
                spool = tempfile.TemporaryDirectory(prefix=".sarz-spool-", dir=spool_parent)
                enc.spool_dir = Path(stack.enter_context(spool))
        size = write(enc.header, enc.strips(), cancel)
        enc.flush_deferred()
    return enc.stats(size, time.perf_counter() - start, comp.seconds_network - net0, **paths)


def compress_file(
    src: PathLike,
    dst: PathLike,
    *,
    model: ModelArg = None,
    quality: int = DEFAULT_QUALITY,
    band: Optional[int] = None,
    kind: str = "auto",
    device: str = "auto",
    range_mode: str = "percentile",
    reconstruction: Optional[PathLike] = None,
    mean_correction: str = "block",
    cog: bool = False,
    progress: Progress = None,
    cancel: Cancel = None,
    log: Log = None,
    compressor: Optional[SARCompressor] = None,
) -> CompressStats:
    """Compress one band of a raster into a .sarz file (atomic). `reconstruction`: also write the raster the
    decoder will produce (equal to `decompress_file`'s output), computed during compression. `compressor`
    reuses a loaded SARCompressor (model/device are then ignored)."""
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
    comp = _compressor(compressor, model, device)
    written = []

    def write(header_fn: Callable[[], dict], chunks: Iterator[bytes], cancel_fn: Cancel) -> int:
        size = write_container(dst, header_fn, chunks, cancel_fn)
        written.append(dst)
        return size

    options = _Options(quality, kind, range_mode, mean_correction)
    band_info = info.band(band)
    try:
        with RasterReader(src) as reader:
            source = _Source(band_info, band, lambda r0, r1: reader.read_rows(band, r0, r1))
            stats = _encode(
                source,
                comp,
                options,
                write,
                start,
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
    range_mode: str = "percentile",
    mean_correction: str = "block",
    model: ModelArg = None,
    device: str = "auto",
    compressor: Optional[SARCompressor] = None,
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
    comp = _compressor(compressor, model, device)
    sink, data = _ArraySink(), bytearray()

    def write(header_fn: Callable[[], dict], chunks: Iterator[bytes], cancel_fn: Cancel) -> int:
        data.extend(container_bytes(header_fn, chunks, cancel_fn))
        return len(data)

    source = _Source(info, 1, lambda r0, r1: arr[max(0, r0) : min(arr.shape[0], r1)])
    options = _Options(quality, kind, range_mode, mean_correction)
    stats = _encode(source, comp, options, write, start, open_sink=sink, progress=progress, cancel=cancel)
    return ArrayResult(bytes(data), sink.out, stats)


# --------------------------------------------------------------------------- decoder


def _decoder_for(header: dict[str, Any], model: ModelArg, device: str, compressor: Optional[SARCompressor]):
    """The model named in the header (or the one given), verified by sha256."""
    want_name, want_sha = model_identity(header)
    if compressor is None:
        try:
            compressor = SARCompressor(model if model is not None else want_name, device=device)
        except ModelError as exc:
            raise ModelError(
                f"file was made with model {want_name} (sha256 {want_sha[:12]}...), which cannot be loaded: "
                f"{exc}. Pass the model file with --model."
            ) from exc
    got = compressor.loaded
    if got.sha256 != want_sha:
        raise ModelError(
            f"file was made with model {want_name} (sha256 {want_sha[:12]}...), got {got.name} "
            f"(sha256 {got.sha256[:12]}..., {got.path}); pass the matching model file with --model"
        )
    return compressor


def _check_model_fits(layout: Layout, comp: SARCompressor) -> None:
    if layout.latent_channels != comp.latent_channels or not 0 <= layout.level < comp.n_qualities:
        raise ModelError(
            f"the model {comp.loaded.name} ({comp.latent_channels} channels, {comp.n_qualities} qualities) "
            f"cannot decode this file ({layout.latent_channels} channels, quality {layout.level + 1})"
        )


class _Decoder(StripPass):
    """The decode pass: strips come from the file's chunks, the global gain from its header."""

    def __init__(
        self, reader: ContainerReader, comp: SARCompressor, layout: Layout, progress: Progress, cancel: Cancel
    ):
        super().__init__(
            comp, layout, TileProgress(layout.n_strips * comp.tiles_per_strip(layout.width), progress), cancel
        )
        self.reader = reader
        self._global_gain = float(reader.header["gain"]["global"])

    @property
    def global_gain(self) -> float:
        return self._global_gain

    def load(self, k: int) -> Strip:
        check_cancel(self.cancel)
        return Strip.from_payload(self.reader.read_chunk(k), k, self.layout, self._latents)

    def _latents(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        return self.y_hat(self.comp.entropy.decode(data, self.layout.level, shape))


def _decode(
    reader: ContainerReader,
    comp_args: tuple[ModelArg, str, Optional[SARCompressor]],
    open_sink: SinkOpener,
    progress: Progress,
    cancel: Cancel,
) -> tuple[SARCompressor, Layout, float]:
    """The whole file into `open_sink`'s sink; (compressor, layout, network seconds)."""
    header = reader.header
    comp = _decoder_for(header, *comp_args)
    layout, info = layout_from_header(header)
    _check_model_fits(layout, comp)
    if reader.n_chunks != layout.n_strips:
        raise ContainerError(f"the file has {reader.n_chunks} chunks, its header implies {layout.n_strips}")
    dec = _Decoder(reader, comp, layout, progress, cancel)
    net0 = comp.seconds_network
    with open_sink(layout, info) as sink:
        dec.sink = sink
        for _ in dec.strips():
            pass
    return comp, layout, comp.seconds_network - net0


def decompress_file(
    src: PathLike,
    dst: PathLike,
    *,
    device: str = "auto",
    model: ModelArg = None,
    cog: bool = False,
    progress: Progress = None,
    cancel: Cancel = None,
    log: Log = None,
    compressor: Optional[SARCompressor] = None,
) -> DecompressStats:
    """Decode a .sarz into a tiled, DEFLATE GeoTIFF (COG with overviews when asked) with the original CRS,
    transform, nodata, description and dtype (complex input -> float32 intensity); atomic."""
    start = time.perf_counter()
    dst = Path(dst)
    _check_output_folder(dst)
    with ContainerReader(src) as reader:
        size = reader.file_size
        comp, layout, net = _decode(
            reader, (model, device, compressor), _file_sink(dst, cog, log), progress, cancel
        )
    stats = DecompressStats(
        input_bytes=size,
        output_bytes=dst.stat().st_size,
        pixels=layout.width * layout.height,
        width=layout.width,
        height=layout.height,
        seconds=time.perf_counter() - start,
        seconds_network=net,
        device_name=comp.device_name,
        model_name=comp.loaded.name,
        kind=layout.kind,
        dtype=layout.out_dtype,
        output=str(dst),
    )
    if log is not None:
        log(f"wrote {dst}: {stats.summary()}")
    return stats


def decompress_array(
    data: Union[bytes, PathLike],
    *,
    model: ModelArg = None,
    device: str = "auto",
    compressor: Optional[SARCompressor] = None,
    progress: Progress = None,
    cancel: Cancel = None,
) -> np.ndarray:
    """A .sarz (bytes or path) -> the decoded 2-D array (the input's dtype; complex -> float32 intensity)."""
    sink = _ArraySink()
    with ContainerReader(data) as reader:
        _decode(reader, (model, device, compressor), sink, progress, cancel)
    return sink.out


def read_header(src: Union[PathLike, bytes]) -> dict[str, Any]:
    """The JSON header of a .sarz file (structure validated), plus `file_bytes`, for `info`."""
    with ContainerReader(src) as reader:
        return {**reader.header, "file_bytes": reader.file_size, "n_chunks": reader.n_chunks}
