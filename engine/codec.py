"""compress_file / decompress_file: the one entry point for the plugin, the CLI and the benchmark.

Compression streams a raster twice, strip by strip (256 rows), never holding it whole:
1. a strided sample of valid pixels -> input kind, robust dB range, linear mean;
2. per strip: read with a 32-row halo -> dB -> [0, 1] -> encoder -> quantize -> entropy-code. The quantized
   latents are decoded again at once (a rolling window of 3 strips gives the decoder its latent halo), so the
   chunk can carry what the network alone gets wrong: per 64x64 block a linear-intensity gain (restores the
   mean that a dB-domain codec biases), bright targets above the range as sparse residuals, the nodata mask.
   The same decoded strips give the optional reconstruction raster without a second network pass.
Decompression runs the identical decode path, so its output equals that reconstruction.

Chunk payload (one per strip), little-endian:
    u16 rows | u16 latent rows | 5 x u32 section lengths | latents | gains | bright | mask | mask codes
latents: EntropyModel.encode bytes; gains: zlib(uint8 codes, block rows x block cols), 128 = gain 1, step
1/32 in log2; bright: zlib(u32 count | varint position deltas | varint excess over the threshold in
0.05-dB steps); mask: zlib(np.packbits(invalid)); mask codes: zlib(u8 per invalid pixel: 0 nodata, 1 NaN,
2 +inf, 3 -inf).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from . import preprocessing as pp
from .compressor import DOWNSAMPLE, HALO, LATENT_HALO, TILE, SARCompressor
from .container import FORMAT_VERSION, ContainerReader, container_bytes, write_container
from .errors import CancelledError, ContainerError, InputError, ModelError, SARCompressorError
from .raster_io import RasterInfo, RasterReader, StripWriter, open_info

STRIP_ROWS = 256
BLOCK = 64
GAIN_LOG2_STEP = 1.0 / 32.0
GAIN_CENTER = 128
BRIGHT_STEP_DB = 0.05
RANGE_PERCENTILES = (0.5, 99.9)
SAMPLE_VALUES = pp.MAX_SAMPLE
"""Pass 1 keeps at most about this many pixels (every k-th row and column): bounded memory on any raster."""
MEAN_CORRECTIONS = ("block", "global", "none")
RANGE_MODES = ("percentile", "model")
DEFAULT_QUALITY = 3
CHUNK_VERSION = 1

_CHUNK_HEAD = struct.Struct("<HH5I")
_DB_PER_LOG2 = 10.0 * math.log10(2.0)

Progress = Optional[Callable[[int, int], None]]
Cancel = Optional[Callable[[], bool]]
Log = Optional[Callable[[str], None]]
PathLike = Union[str, "os.PathLike[str]"]


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


# --------------------------------------------------------------------------- small codecs


def _varint_encode(values: np.ndarray) -> bytes:
    """Unsigned LEB128 varints, vectorised."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size == 0:
        return b""
    nbytes = np.ones(v.size, dtype=np.int64)
    rest = v >> np.uint64(7)
    while np.any(rest):
        nbytes += rest > 0
        rest = rest >> np.uint64(7)
    k = np.arange(int(nbytes.max()), dtype=np.uint64)
    groups = ((v[:, None] >> (np.uint64(7) * k)) & np.uint64(0x7F)).astype(np.uint8)
    groups |= np.where(k[None, :] < (nbytes[:, None] - 1).astype(np.uint64), 0x80, 0).astype(np.uint8)
    return groups[k[None, :] < nbytes[:, None].astype(np.uint64)].tobytes()


def _varint_decode(data: bytes, count: int) -> tuple[np.ndarray, int]:
    """The first `count` varints of `data` and the number of bytes they use."""
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.nonzero((b & 0x80) == 0)[0][:count]
    if len(ends) != count:
        raise ContainerError("bright-target residuals are truncated")
    if count == 0:
        return np.zeros(0, dtype=np.int64), 0
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if np.any(lengths > 8):
        raise ContainerError("bright-target residual out of range")
    used = int(ends[-1]) + 1
    pos = np.arange(used) - np.repeat(starts, lengths)
    parts = (b[:used] & 0x7F).astype(np.uint64) << (np.uint64(7) * pos.astype(np.uint64))
    return np.add.reduceat(parts, starts).astype(np.int64), used


def _inflate(data: bytes, what: str) -> bytes:
    try:
        return zlib.decompress(data)
    except zlib.error as exc:
        raise ContainerError(f"{what} is corrupt ({exc})") from exc


@dataclass
class _Bright:
    """Valid pixels above the bright threshold, kept to 0.025 dB: flat positions in the strip, steps."""

    positions: np.ndarray
    steps: np.ndarray

    def encode(self) -> bytes:
        if self.positions.size == 0:
            return b""
        deltas = np.diff(self.positions, prepend=0)
        body = struct.pack("<I", self.positions.size) + _varint_encode(deltas) + _varint_encode(self.steps)
        return zlib.compress(body, 9)

    @classmethod
    def decode(cls, data: bytes, n_pixels: int) -> _Bright:
        if not data:
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        raw = _inflate(data, "bright-target residuals")
        if len(raw) < 4:
            raise ContainerError("bright-target residuals are truncated")
        (count,) = struct.unpack_from("<I", raw)
        if count > n_pixels:
            raise ContainerError("bright-target residuals list more pixels than the strip has")
        deltas, used = _varint_decode(raw[4:], count)
        steps, used_steps = _varint_decode(raw[4 + used :], count)
        if len(raw) != 4 + used + used_steps:
            raise ContainerError("bright-target residuals have the wrong size")
        positions = np.cumsum(deltas)
        if count and (positions[-1] >= n_pixels or (count > 1 and np.any(deltas[1:] == 0))):
            raise ContainerError("bright-target positions fall outside the strip")
        return cls(positions, steps)


def _invalid_codes(raw: np.ndarray, invalid: np.ndarray, nodata: Optional[float]) -> np.ndarray:
    """What each invalid pixel was, so it is restored exactly: 0 nodata, 1 NaN, 2 +inf, 3 -inf."""
    values = raw[invalid]
    codes = np.zeros(values.shape, dtype=np.uint8)
    if values.dtype.kind in "fc":
        nan = np.isnan(values)
        if nodata is None:
            is_nodata = np.zeros(values.shape, dtype=bool)
        else:
            is_nodata = nan if math.isnan(nodata) else values == nodata
        if values.dtype.kind == "c":
            posinf, neginf = np.isinf(values), np.zeros(values.shape, dtype=bool)
        else:
            posinf, neginf = np.isposinf(values), np.isneginf(values)
        codes[~is_nodata & nan] = 1
        codes[~is_nodata & posinf] = 2
        codes[~is_nodata & neginf] = 3
    return codes


# --------------------------------------------------------------------------- layout


@dataclass
class _Layout:
    """Geometry and coding parameters shared by encoder and decoder (the decoder's come from the header)."""

    width: int
    height: int
    kind: str
    dtype: str
    nodata: Optional[float]
    rng: pp.Range
    level: int
    mean_correction: str
    bright_threshold: float
    latent_channels: int

    @property
    def out_dtype(self) -> str:
        return pp.output_dtype(self.kind, self.dtype)

    @property
    def n_strips(self) -> int:
        return math.ceil(self.height / STRIP_ROWS)

    @property
    def latent_width(self) -> int:
        return math.ceil(self.width / DOWNSAMPLE)

    @property
    def latent_height(self) -> int:
        return math.ceil(self.height / DOWNSAMPLE)

    @property
    def block_rows(self) -> int:
        return math.ceil(self.height / BLOCK)

    @property
    def block_cols(self) -> int:
        return math.ceil(self.width / BLOCK)

    def strip_rows(self, k: int) -> tuple[int, int]:
        row0 = k * STRIP_ROWS
        return row0, min(STRIP_ROWS, self.height - row0)

    def latent_rows(self, k: int) -> int:
        return math.ceil(self.strip_rows(k)[1] / DOWNSAMPLE)


@dataclass
class _Strip:
    """One strip in the rolling window (the encoder also keeps orig_db/use until its gains are known)."""

    index: int
    row0: int
    rows: int
    y_hat: np.ndarray
    bright: _Bright
    invalid: Optional[np.ndarray]
    codes: np.ndarray
    latents: bytes = b""
    orig_db: Optional[np.ndarray] = None
    use: Optional[np.ndarray] = None
    raw_db: Optional[np.ndarray] = None
    gains: Optional[np.ndarray] = None

    def payload(self) -> bytes:
        """The chunk bytes of this strip."""
        gains = zlib.compress(self.gains.tobytes(), 9) if self.gains is not None else b""
        mask = zlib.compress(np.packbits(self.invalid).tobytes(), 9) if self.invalid is not None else b""
        codes = zlib.compress(self.codes.tobytes(), 9) if self.invalid is not None else b""
        sections = [self.latents, gains, self.bright.encode(), mask, codes]
        head = _CHUNK_HEAD.pack(self.rows, self.y_hat.shape[1], *(len(s) for s in sections))
        return head + b"".join(sections)


def _split_chunk(payload: bytes, k: int, layout: _Layout) -> tuple[int, list[bytes]]:
    if len(payload) < _CHUNK_HEAD.size:
        raise ContainerError(f"chunk {k} is too short")
    rows, lat_rows, *lengths = _CHUNK_HEAD.unpack_from(payload)
    if (rows, lat_rows) != (layout.strip_rows(k)[1], layout.latent_rows(k)):
        raise ContainerError(f"chunk {k} does not match the raster size in the header")
    if _CHUNK_HEAD.size + sum(lengths) != len(payload):
        raise ContainerError(f"chunk {k} section lengths do not add up")
    sections, pos = [], _CHUNK_HEAD.size
    for n in lengths:
        sections.append(payload[pos : pos + n])
        pos += n
    return rows, sections


# --------------------------------------------------------------------------- shared decode path


def _decode_raw(comp: SARCompressor, layout: _Layout, prev: Optional[_Strip], cur: _Strip, nxt, cancel, tick):
    """Decoder output of a strip in dB (before the gain), with latent rows of the neighbours as halo."""
    parts, top, bottom = [cur.y_hat], 0, 0
    if prev is not None:
        top = min(LATENT_HALO, prev.y_hat.shape[1])
        parts.insert(0, prev.y_hat[:, -top:])
    if nxt is not None:
        bottom = min(LATENT_HALO, nxt.y_hat.shape[1])
        parts.append(nxt.y_hat[:, :bottom])
    x01 = comp.decode_strip(np.concatenate(parts, axis=1), top, bottom, cancel=cancel, on_batch=tick)
    return pp.denormalize(x01[: cur.rows, : layout.width], layout.rng)


def _block_sums(orig_db: np.ndarray, raw_db: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 64x64 block: sum of original and of reconstructed linear intensity over the `use` pixels."""
    rows, width = use.shape
    pad = ((0, -rows % BLOCK), (0, -width % BLOCK))
    w = np.pad(use, pad).astype(np.float64)
    lin_o = np.pad(pp.db_to_linear(orig_db), pad).astype(np.float64) * w
    lin_r = np.pad(pp.db_to_linear(raw_db), pad).astype(np.float64) * w
    shape = (lin_o.shape[0] // BLOCK, BLOCK, lin_o.shape[1] // BLOCK, BLOCK)
    return lin_o.reshape(shape).sum(axis=(1, 3)), lin_r.reshape(shape).sum(axis=(1, 3))


def _gain_codes(sum_o: np.ndarray, sum_r: np.ndarray) -> np.ndarray:
    """uint8 log2-step codes of sum_o/sum_r per block; empty blocks take the strip's mean code."""
    ok = (sum_o > 0) & (sum_r > 0)
    log2 = np.zeros(sum_o.shape)
    log2[ok] = np.log2(sum_o[ok] / sum_r[ok])
    codes = np.clip(np.rint(log2 / GAIN_LOG2_STEP) + GAIN_CENTER, 0, 255)
    fill = float(np.rint(codes[ok].mean())) if ok.any() else GAIN_CENTER
    return np.where(ok, codes, fill).astype(np.uint8)


def _gain_field(layout: _Layout, strips: list[Optional[_Strip]], cur: _Strip) -> np.ndarray:
    """Bilinear interpolation (between block centres) of the log-gain field over the strip, in dB."""
    rows_blocks = {}
    for s in strips:
        if s is not None:
            first = s.row0 // BLOCK
            for i, row in enumerate(s.gains.astype(np.float64)):
                rows_blocks[first + i] = (row - GAIN_CENTER) * GAIN_LOG2_STEP * _DB_PER_LOG2

    def axis(n: int, start: int, nblocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = np.clip((np.arange(start, start + n) + 0.5) / BLOCK - 0.5, 0, nblocks - 1)
        i0 = np.floor(u).astype(np.int64)
        return i0, np.minimum(i0 + 1, nblocks - 1), u - i0

    r0, r1, wr = axis(cur.rows, cur.row0, layout.block_rows)
    c0, c1, wc = axis(layout.width, 0, layout.block_cols)
    lo = int(r0.min())
    grid = np.stack([rows_blocks[i] for i in range(lo, int(r1.max()) + 1)])
    cols = grid[:, c0] * (1 - wc) + grid[:, c1] * wc
    return (cols[r0 - lo] * (1 - wr)[:, None] + cols[r1 - lo] * wr[:, None]).astype(np.float32)


def _finalize(layout: _Layout, raw_db: np.ndarray, gain_db, strip: _Strip) -> np.ndarray:
    """Decoded dB + gain + bright residuals -> the input's kind and dtype, invalid pixels restored exactly."""
    db = raw_db + gain_db
    if strip.bright.positions.size:
        flat = db.reshape(-1)
        flat[strip.bright.positions] = layout.bright_threshold + strip.bright.steps * BRIGHT_STEP_DB
    out = pp.from_db(db, layout.kind, layout.dtype)
    if strip.invalid is not None:
        table = np.array([np.nan, np.nan, np.inf, -np.inf], dtype=np.float64)
        if layout.nodata is not None:
            table[0] = layout.nodata
        elif np.any(strip.codes == 0):
            raise ContainerError(f"chunk {strip.index}: nodata pixels but no nodata value in the header")
        values = table[strip.codes]
        if out.dtype.kind in "iu" and not np.all(np.isfinite(values)):
            raise ContainerError(f"chunk {strip.index}: non-finite pixels in an integer raster")
        out[strip.invalid] = values.astype(out.dtype)
    return out


def _pipeline(layout: _Layout, load, decode_raw, after_decode, finalize) -> Iterator[bytes]:
    """Rolling window over strips: decode strip k-1 once strip k's latents exist (decoder halo), finalize
    strip k-2 once strip k-1's gains exist (gain interpolation). At most 4 strips are alive."""
    n = layout.n_strips
    strips: dict[int, _Strip] = {}
    for k in range(n + 2):
        if k < n:
            strips[k] = load(k)
        j = k - 1
        if 0 <= j < n:
            strips[j].raw_db = decode_raw(strips.get(j - 1), strips[j], strips.get(j + 1))
            payload = after_decode(strips[j])
            if payload is not None:
                yield payload
        i = k - 2
        if 0 <= i < n:
            finalize(strips.get(i - 1), strips[i], strips.get(i + 1))
            strips.pop(i - 1, None)


# --------------------------------------------------------------------------- sources and sinks


@dataclass
class _Source:
    info: RasterInfo
    band: int
    read: Callable[[int, int], np.ndarray]


class _Progress:
    """Counts network tiles into progress(done, total)."""

    def __init__(self, total: int, progress: Progress):
        self.total, self.done, self.progress = max(total, 1), 0, progress

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)


def _software_version() -> str:
    meta = Path(__file__).resolve().parents[1] / "metadata.txt"
    with contextlib.suppress(OSError):
        for line in meta.read_text(encoding="utf-8").splitlines():
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    return "unknown"


def _compressor(compressor: Optional[SARCompressor], model, device: str) -> SARCompressor:
    return compressor if compressor is not None else SARCompressor(model or "default", device=device)


def _check_options(quality: int, range_mode: str, mean_correction: str, comp: SARCompressor) -> int:
    if comp.entropy is None:
        raise ModelError(
            f"model {comp.loaded.name} ({comp.loaded.path}) has no entropy tables (a prototype checkpoint): "
            "it cannot write .sarz files"
        )
    n = comp.n_qualities
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= n:
        raise InputError(f"quality must be an integer in 1..{n}, got {quality!r}")
    if range_mode not in RANGE_MODES:
        raise InputError(f"range mode must be one of {', '.join(RANGE_MODES)}, got {range_mode!r}")
    if mean_correction not in MEAN_CORRECTIONS:
        raise InputError(
            f"mean correction must be one of {', '.join(MEAN_CORRECTIONS)}, got {mean_correction!r}"
        )
    return int(quality) - 1


# --------------------------------------------------------------------------- encoder


@dataclass
class _Survey:
    kind: str
    rng: pp.Range
    linear_mean: float
    fill_db: float


def _survey(source: _Source, kind: str, range_mode: str, comp: SARCompressor) -> _Survey:
    """Pass 1: a strided sample of valid pixels (about SAMPLE_VALUES at most) -> kind, range, linear mean."""
    info = source.info
    step = pp.sample_stride(info.height, info.width, SAMPLE_VALUES)
    parts: list[np.ndarray] = []
    for row0 in range(0, info.height, STRIP_ROWS):
        rows = source.read(row0, min(row0 + STRIP_ROWS, info.height))
        grid = rows[(-row0) % step :: step, ::step]
        picked = grid[pp.valid_mask(grid, info.nodata)]
        if picked.size == 0:  # sparse data between the grid points: still let it count
            picked = rows[pp.valid_mask(rows, info.nodata)][:1024]
        parts.append(picked)
    sample = np.concatenate(parts)
    if sample.size == 0:
        raise InputError("the raster has no valid pixels (every pixel is nodata or NaN)")
    description = info.descriptions[0] if info.descriptions else None
    tags = {**info.tags, **(info.band_tags[0] if info.band_tags else {})}
    kind = pp.detect_kind(info.dtype, sample, description, tags) if kind == "auto" else pp.check_kind(kind)
    db = pp.to_db(sample, kind)
    if range_mode == "model":
        rng = pp.Range(comp.loaded.vmin, comp.loaded.vmax)
    else:
        rng = pp.robust_range(db, *RANGE_PERCENTILES)
    linear_mean = float(np.mean(pp.db_to_linear(db), dtype=np.float64))
    return _Survey(kind, rng, linear_mean, float(np.clip(np.median(db), rng.vmin, rng.vmax)))


class _Encoder:
    """Pass 2 as a chunk generator (consumed by the container writer); `header()` once it is exhausted."""

    def __init__(
        self, source: _Source, comp: SARCompressor, layout: _Layout, survey: _Survey, range_mode: str
    ):
        self.source, self.comp, self.layout, self.survey = source, comp, layout, survey
        self.range_mode = range_mode
        self.sink: Optional[Callable[[int, np.ndarray], None]] = None
        self.spool_dir: Optional[Path] = None
        self.ticker: Optional[_Progress] = None
        self.cancel: Cancel = None
        self.sum_o = self.sum_r = 0.0
        self.n_valid = self.n_clipped = self.n_bright = 0
        self.deferred: list[tuple[int, Path, _Strip]] = []

    def load(self, k: int) -> _Strip:
        """Read strip k with its halo, encode, quantize, entropy-code; keep what the gains need."""
        import torch

        layout, nodata = self.layout, self.source.info.nodata
        row0, rows = layout.strip_rows(k)
        lo, hi = max(0, row0 - HALO), min(layout.height, row0 + rows + HALO)
        raw = self.source.read(lo, hi)
        top, bottom = row0 - lo, hi - row0 - rows
        valid = pp.valid_mask(raw, nodata)
        db = pp.to_db(raw, layout.kind)
        x01 = pp.normalize(np.where(valid, db, np.float32(self.survey.fill_db)), layout.rng)
        latents = self.comp.encode_strip(x01, top, bottom, cancel=self.cancel, on_batch=self.ticker)
        symbols = self.comp.entropy.quantize(torch.from_numpy(latents), layout.level)
        y_hat = self.comp.entropy.dequantize(symbols, layout.level).numpy()
        core = slice(top, top + rows)
        orig_db, valid, raw = db[core], valid[core], raw[core]
        bright = valid & (orig_db > layout.bright_threshold)
        steps = np.clip(np.rint((orig_db[bright] - layout.bright_threshold) / BRIGHT_STEP_DB), 0, 2**32)
        outside = (orig_db < layout.rng.vmin) | (orig_db > layout.rng.vmax)
        self.n_valid += int(valid.sum())
        self.n_clipped += int(np.count_nonzero(valid & outside))
        self.n_bright += int(steps.size)
        invalid = ~valid
        has_invalid = bool(invalid.any())
        return _Strip(
            index=k,
            row0=row0,
            rows=rows,
            y_hat=y_hat,
            bright=_Bright(np.flatnonzero(bright).astype(np.int64), steps.astype(np.int64)),
            invalid=invalid if has_invalid else None,
            codes=_invalid_codes(raw, invalid, nodata) if has_invalid else np.zeros(0, np.uint8),
            latents=self.comp.entropy.encode(symbols, layout.level),
            orig_db=orig_db,
            use=valid & ~bright,
        )

    def decode_raw(self, prev, cur, nxt) -> np.ndarray:
        return _decode_raw(self.comp, self.layout, prev, cur, nxt, self.cancel, self.ticker)

    def after_decode(self, strip: _Strip) -> bytes:
        """Block gains from original vs decoded linear intensity, then the chunk is complete."""
        sum_o, sum_r = _block_sums(strip.orig_db, strip.raw_db, strip.use)
        self.sum_o += float(sum_o.sum())
        self.sum_r += float(sum_r.sum())
        if self.layout.mean_correction == "block":
            strip.gains = _gain_codes(sum_o, sum_r)
        strip.orig_db = strip.use = None
        return strip.payload()

    def finalize(self, prev, cur, nxt) -> None:
        if self.sink is None:
            return
        if self.layout.mean_correction == "global":
            # the global gain is known only at the end: keep the decoded strip on disk until then
            name = self.spool_dir / f"{cur.index}.npz"
            invalid = cur.invalid if cur.invalid is not None else np.zeros((0, 0), bool)
            np.savez(name, raw_db=cur.raw_db, invalid=invalid)
            light = replace(cur, y_hat=cur.y_hat[:, :0], raw_db=None, invalid=None)
            self.deferred.append((cur.row0, name, light))
            return
        gain = _gain_field(self.layout, [prev, cur, nxt], cur) if cur.gains is not None else np.float32(0)
        self.sink(cur.row0, _finalize(self.layout, cur.raw_db, gain, cur))

    def chunks(self, cancel: Cancel) -> Iterator[bytes]:
        self.cancel = cancel
        yield from _pipeline(self.layout, self.load, self.decode_raw, self.after_decode, self.finalize)

    def flush_deferred(self) -> None:
        gain_db = np.float32(10.0 * math.log10(self.global_gain))
        for row0, name, strip in self.deferred:
            if self.cancel is not None and self.cancel():
                raise CancelledError("cancelled by the user")
            with np.load(name) as saved:
                raw_db, invalid = saved["raw_db"], saved["invalid"]
            strip.invalid = invalid if invalid.size else None
            self.sink(row0, _finalize(self.layout, raw_db, gain_db, strip))
            name.unlink()
        self.deferred.clear()

    @property
    def global_gain(self) -> float:
        return self.sum_o / self.sum_r if self.sum_o > 0 and self.sum_r > 0 else 1.0

    @property
    def clipped_fraction(self) -> float:
        return self.n_clipped / self.n_valid if self.n_valid else 0.0

    def header(self) -> dict[str, Any]:
        layout, info, loaded = self.layout, self.source.info, self.comp.loaded
        input_dict = info.to_dict()
        input_dict.update(
            kind=layout.kind,
            band=self.source.band,
            description=info.descriptions[0] if info.descriptions else None,
        )
        return {
            "format": "sarz",
            "format_version": FORMAT_VERSION,
            "software": {"name": "sar_compressor", "version": _software_version()},
            "model": {"name": loaded.name, "sha256": loaded.sha256, "arch": loaded.config.get("model", {})},
            "quality": layout.level + 1,
            "n_qualities": self.comp.n_qualities,
            "input": input_dict,
            "range": {**layout.rng.to_dict(), "mode": self.range_mode},
            "strip_rows": STRIP_ROWS,
            "chunk_version": CHUNK_VERSION,
            "latent": {
                "channels": layout.latent_channels,
                "height": layout.latent_height,
                "width": layout.latent_width,
                "tile": TILE,
                "halo": HALO,
                "latent_halo": LATENT_HALO,
            },
            "gain": {
                "mode": layout.mean_correction,
                "block_size": BLOCK,
                "log2_step": GAIN_LOG2_STEP,
                "global": self.global_gain,
            },
            "bright": {"threshold_db": layout.bright_threshold, "step_db": BRIGHT_STEP_DB},
            "stats": {
                "pixels": layout.width * layout.height,
                "valid_pixels": self.n_valid,
                "input_bytes": _raw_bytes(info),
                "clipped_fraction": self.clipped_fraction,
                "n_bright_residuals": self.n_bright,
                "linear_mean": self.survey.linear_mean,
            },
        }

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


def _raw_bytes(info: RasterInfo) -> int:
    return info.width * info.height * np.dtype(info.dtype).itemsize


SinkOpener = Callable[[_Layout], "contextlib.AbstractContextManager[Callable[[int, np.ndarray], None]]"]


def _encode(
    source: _Source,
    comp: SARCompressor,
    options: dict[str, Any],
    write: Callable[[Callable[[], dict], Iterator[bytes], Cancel], int],
    open_sink: Optional[SinkOpener],
    spool_parent: Optional[Path],
    progress: Progress,
    cancel: Cancel,
    log: Log,
) -> tuple[_Encoder, int]:
    """Pass 1, then pass 2 into `write(header_fn, chunks, cancel)` (returns the container size)."""
    level = _check_options(options["quality"], options["range_mode"], options["mean_correction"], comp)
    pp.check_dtype(source.info.dtype)
    survey = _survey(source, options["kind"], options["range_mode"], comp)
    layout = _Layout(
        width=source.info.width,
        height=source.info.height,
        kind=survey.kind,
        dtype=source.info.dtype,
        nodata=source.info.nodata,
        rng=survey.rng,
        level=level,
        mean_correction=options["mean_correction"],
        bright_threshold=survey.rng.vmax,
        latent_channels=comp.latent_channels,
    )
    if log is not None:
        log(
            f"{layout.width}x{layout.height} {layout.dtype} as {layout.kind}, range [{survey.rng.vmin:.2f}, "
            f"{survey.rng.vmax:.2f}] dB ({options['range_mode']}), model {comp.loaded.name}, quality "
            f"{level + 1}/{comp.n_qualities}, {comp.device_name}, batch {comp.batch_size}"
        )
    enc = _Encoder(source, comp, layout, survey, options["range_mode"])
    enc.ticker = _Progress(2 * layout.n_strips * comp.tiles_per_strip(layout.width), progress)
    with contextlib.ExitStack() as stack:
        if open_sink is not None:
            enc.sink = stack.enter_context(open_sink(layout))
            if layout.mean_correction == "global":
                spool = tempfile.TemporaryDirectory(prefix=".sarz-spool-", dir=spool_parent)
                enc.spool_dir = Path(stack.enter_context(spool))
        size = write(enc.header, enc.chunks(cancel), cancel)
        enc.flush_deferred()
    return enc, size


@contextlib.contextmanager
def _file_sink(path: Path, info: RasterInfo, layout: _Layout, cog: bool):
    with StripWriter(path, replace(info, dtype=layout.out_dtype), cog=cog) as writer:
        yield writer.write


def compress_file(
    src: PathLike,
    dst: PathLike,
    *,
    model: Union[str, Path, Any, None] = None,
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
        if not out.parent.is_dir():
            raise InputError(f"output folder does not exist: {out.parent}")
    comp = _compressor(compressor, model, device)
    net0 = comp.seconds_network
    band_info = info.band(band)
    written = []

    def write(header_fn, chunks, cancel_fn) -> int:
        size = write_container(dst, header_fn, chunks, cancel_fn)
        written.append(dst)
        return size

    open_sink = (lambda layout: _file_sink(recon, band_info, layout, cog)) if recon else None
    options = dict(quality=quality, kind=kind, range_mode=range_mode, mean_correction=mean_correction)
    try:
        with RasterReader(src) as reader:
            source = _Source(band_info, band, lambda r0, r1: reader.read_rows(band, r0, r1))
            enc, size = _encode(source, comp, options, write, open_sink, dst.parent, progress, cancel, log)
    except BaseException:
        for path in written:  # the reconstruction failed after the .sarz was renamed into place
            path.unlink(missing_ok=True)
        raise
    stats = enc.stats(
        size,
        time.perf_counter() - start,
        comp.seconds_network - net0,
        output=str(dst),
        reconstruction=str(recon) if recon else None,
    )
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
    model: Union[str, Path, Any, None] = None,
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
    net0 = comp.seconds_network
    holder: dict[str, np.ndarray] = {}

    @contextlib.contextmanager
    def open_sink(layout: _Layout):
        out = holder["out"] = np.empty(arr.shape, dtype=layout.out_dtype)

        def sink(row0: int, rows: np.ndarray) -> None:
            out[row0 : row0 + rows.shape[0]] = rows

        yield sink

    def write(header_fn, chunks, cancel_fn) -> int:
        holder["data"] = container_bytes(header_fn, chunks, cancel_fn)
        return len(holder["data"])

    source = _Source(info, 1, lambda r0, r1: arr[max(0, r0) : min(arr.shape[0], r1)])
    options = dict(quality=quality, kind=kind, range_mode=range_mode, mean_correction=mean_correction)
    enc, size = _encode(source, comp, options, write, open_sink, None, progress, cancel, None)
    stats = enc.stats(size, time.perf_counter() - start, comp.seconds_network - net0)
    return ArrayResult(holder["data"], holder["out"], stats)


# --------------------------------------------------------------------------- decoder


def _header_layout(header: dict[str, Any], comp: SARCompressor) -> tuple[_Layout, RasterInfo]:
    """Validated layout from a header; ContainerError naming the field that is missing or wrong."""
    try:
        inp = header["input"]
        info = RasterInfo.from_dict(inp)
        gain, lat = header["gain"], header["latent"]
        layout = _Layout(
            width=int(info.width),
            height=int(info.height),
            kind=pp.check_kind(inp["kind"]),
            dtype=pp.check_dtype(info.dtype),
            nodata=info.nodata,
            rng=pp.Range.from_dict(header["range"]),
            level=int(header["quality"]) - 1,
            mean_correction=str(gain["mode"]),
            bright_threshold=float(header["bright"]["threshold_db"]),
            latent_channels=int(lat["channels"]),
        )
        checks = {
            "size": layout.width >= 1 and layout.height >= 1 and info.count == 1,
            "strip_rows": header["strip_rows"] == STRIP_ROWS and header["chunk_version"] == CHUNK_VERSION,
            "gain": layout.mean_correction in MEAN_CORRECTIONS
            and gain["block_size"] == BLOCK
            and gain["log2_step"] == GAIN_LOG2_STEP
            and math.isfinite(float(gain["global"]))
            and float(gain["global"]) > 0,
            "bright": header["bright"]["step_db"] == BRIGHT_STEP_DB
            and math.isfinite(layout.bright_threshold),
            "latent": (lat["height"], lat["width"]) == (layout.latent_height, layout.latent_width),
        }
    except (KeyError, TypeError, ValueError, AttributeError, SARCompressorError) as exc:
        raise ContainerError(
            f"the .sarz header is incomplete or invalid ({type(exc).__name__}: {exc})"
        ) from exc
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ContainerError(f"the .sarz header has invalid fields: {', '.join(bad)}")
    if layout.latent_channels != comp.latent_channels or not 0 <= layout.level < comp.n_qualities:
        raise ModelError(
            f"the model {comp.loaded.name} ({comp.latent_channels} channels, {comp.n_qualities} qualities) "
            f"cannot decode this file ({layout.latent_channels} channels, quality {layout.level + 1})"
        )
    return layout, info


def _decoder_for(header: dict[str, Any], model, device: str, compressor: Optional[SARCompressor]):
    """The model named in the header (or the one given), verified by sha256."""
    try:
        want_name, want_sha = str(header["model"]["name"]), str(header["model"]["sha256"])
    except (KeyError, TypeError) as exc:
        raise ContainerError("the .sarz header does not name its model") from exc
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


class _Decoder:
    def __init__(self, reader: ContainerReader, comp: SARCompressor, layout: _Layout, cancel: Cancel, ticker):
        self.reader, self.comp, self.layout, self.cancel, self.ticker = reader, comp, layout, cancel, ticker
        self.sink: Callable[[int, np.ndarray], None] = lambda row0, rows: None

    def load(self, k: int) -> _Strip:
        if self.cancel is not None and self.cancel():
            raise CancelledError("cancelled by the user")
        layout = self.layout
        rows, (latents, gains, bright, mask, codes) = _split_chunk(self.reader.read_chunk(k), k, layout)
        row0 = layout.strip_rows(k)[0]
        shape = (layout.latent_channels, layout.latent_rows(k), layout.latent_width)
        symbols = self.comp.entropy.decode(latents, layout.level, shape)
        strip = _Strip(
            index=k,
            row0=row0,
            rows=rows,
            y_hat=self.comp.entropy.dequantize(symbols, layout.level).numpy(),
            bright=_Bright.decode(bright, rows * layout.width),
            invalid=None,
            codes=np.zeros(0, np.uint8),
        )
        if layout.mean_correction == "block":
            nb = (math.ceil(rows / BLOCK), layout.block_cols)
            raw = _inflate(gains, f"chunk {k} gains")
            if len(raw) != nb[0] * nb[1]:
                raise ContainerError(f"chunk {k}: gain block count does not match the raster size")
            strip.gains = np.frombuffer(raw, dtype=np.uint8).reshape(nb)
        if mask:
            bits = np.frombuffer(_inflate(mask, f"chunk {k} nodata mask"), dtype=np.uint8)
            n = rows * layout.width
            if bits.size != (n + 7) // 8:
                raise ContainerError(f"chunk {k}: nodata mask has the wrong size")
            strip.invalid = np.unpackbits(bits, count=n).astype(bool).reshape(rows, layout.width)
            strip.codes = np.frombuffer(_inflate(codes, f"chunk {k} mask codes"), dtype=np.uint8)
            if strip.codes.size != int(strip.invalid.sum()) or np.any(strip.codes > 3):
                raise ContainerError(f"chunk {k}: nodata codes do not match the mask")
        return strip

    def decode_raw(self, prev, cur, nxt) -> np.ndarray:
        return _decode_raw(self.comp, self.layout, prev, cur, nxt, self.cancel, self.ticker)

    def finalize(self, prev, cur, nxt) -> None:
        if self.layout.mean_correction == "block":
            gain = _gain_field(self.layout, [prev, cur, nxt], cur)
        elif self.layout.mean_correction == "global":
            gain = np.float32(10.0 * math.log10(self.global_gain))
        else:
            gain = np.float32(0)
        self.sink(cur.row0, _finalize(self.layout, cur.raw_db, gain, cur))

    def run(self, sink: Callable[[int, np.ndarray], None], global_gain: float) -> None:
        self.sink, self.global_gain = sink, global_gain
        for _ in _pipeline(self.layout, self.load, self.decode_raw, lambda strip: None, self.finalize):
            pass


def _decode(reader: ContainerReader, comp_args, sink_opener, progress: Progress, cancel: Cancel):
    header = reader.header
    comp = _decoder_for(header, *comp_args)
    layout, info = _header_layout(header, comp)
    if reader.n_chunks != layout.n_strips:
        raise ContainerError(f"the file has {reader.n_chunks} chunks, its header implies {layout.n_strips}")
    ticker = _Progress(layout.n_strips * comp.tiles_per_strip(layout.width), progress)
    net0 = comp.seconds_network
    with sink_opener(layout, info) as sink:
        _Decoder(reader, comp, layout, cancel, ticker).run(sink, float(header["gain"]["global"]))
    return comp, layout, comp.seconds_network - net0


def decompress_file(
    src: PathLike,
    dst: PathLike,
    *,
    device: str = "auto",
    model: Union[str, Path, Any, None] = None,
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
    if not dst.parent.is_dir():
        raise InputError(f"output folder does not exist: {dst.parent}")

    @contextlib.contextmanager
    def open_sink(layout: _Layout, info: RasterInfo):
        if log is not None:
            log(f"decoding {layout.width}x{layout.height} {layout.kind} -> {layout.out_dtype} {dst}")
        with StripWriter(dst, replace(info, dtype=layout.out_dtype), cog=cog) as writer:
            yield writer.write

    with ContainerReader(src) as reader:
        size = reader.file_size
        comp, layout, net = _decode(reader, (model, device, compressor), open_sink, progress, cancel)
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
    model: Union[str, Path, Any, None] = None,
    device: str = "auto",
    compressor: Optional[SARCompressor] = None,
    progress: Progress = None,
    cancel: Cancel = None,
) -> np.ndarray:
    """A .sarz (bytes or path) -> the decoded 2-D array (the input's dtype; complex -> float32 intensity)."""
    holder: dict[str, np.ndarray] = {}

    @contextlib.contextmanager
    def open_sink(layout: _Layout, info: RasterInfo):
        out = holder["out"] = np.empty((layout.height, layout.width), dtype=layout.out_dtype)

        def sink(row0: int, rows: np.ndarray) -> None:
            out[row0 : row0 + rows.shape[0]] = rows

        yield sink

    with ContainerReader(data) as reader:
        _decode(reader, (model, device, compressor), open_sink, progress, cancel)
    return holder["out"]


def read_header(src: Union[PathLike, bytes]) -> dict[str, Any]:
    """The JSON header of a .sarz file (structure validated), plus `file_bytes`, for `info`."""
    with ContainerReader(src) as reader:
        return {**reader.header, "file_bytes": reader.file_size, "n_chunks": reader.n_chunks}
