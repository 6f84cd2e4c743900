"""The bytes of one chunk: everything a tile of the raster needs to be decoded, packed and checked.

Chunk payload (one per tile), little-endian:
    u32 rows | u32 columns | u8 stream count | stream count x u32 stream lengths | the streams
The streams, in the order the header's `streams` list names them (layout.STREAMS today):
refinement: codec.entropy.refine bytes; block_means: zlib(int16 little-endian block-mean codes less their prediction
from the refinement layer's coarse approximation, block rows x block cols, each as its difference from the block
to its left, the first column from the block above) (see radiometry), empty unless the mean correction is
"block"; bright: BrightResiduals.encode (positions context-coded from the decoded tile, steps deflated); mask:
mask_coding.encode_mask (change columns per row); mask codes: mask_coding.encode_codes (u8 per invalid pixel:
0 nodata, 1 NaN, 2 +inf, 3 -inf, 4 no-signal zero); loop_filter: codec.restoration.loop_filter.LoopFilter.encode,
empty where the tile has none (files written before the loop filter have the first five streams only: the
header's `streams` says which, Layout.n_streams).
Every size is checked against the layout on reading, so a corrupt chunk is a ContainerError, never a crash.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ...errors import ContainerError
from ..entropy.codes import MAX_VARINT_BYTES, inflate, varint_decode, varint_encode
from ..entropy.mask_coding import decode_codes, decode_mask, encode_codes, encode_mask
from .layout import Layout, TileGeometry, tile_blocks

_CHUNK_HEAD = struct.Struct("<IIB")  # rows, columns, stream count
_LENGTH = struct.Struct("<I")


BRIGHT_SPAN = 1 << 20
"""Pixels of a strip handled at a time by the bright-target coding (contexts, flags): temporaries of a span,
not of a 20000-wide strip."""
BRIGHT_CONTEXTS = 17
"""Contexts of the bright-target flags: eighths of a refinement step below the range's top in the decoded
strip (a bright target was clipped to the top, so the refinement lands near it), the last one for every
pixel further down (radiometry.bright_contexts)."""


@dataclass
class BrightResiduals:
    """Valid pixels above the bright threshold, kept to a fraction of a step: flat positions in the strip, steps."""

    positions: np.ndarray
    steps: np.ndarray

    def encode(self, contexts: Optional[np.ndarray]) -> bytes:
        """varint count per context | u32 word count | ANS words (each context's flags under its own frequency)
        | zlib(varint steps). `contexts`: one per pixel of the strip, from the decoded strip on both sides (only
        needed when there are bright targets: nothing is written without)."""
        if self.positions.size == 0:
            return b""
        import constriction

        bright = np.zeros(contexts.size, dtype=bool)
        bright[self.positions] = True
        counts = np.bincount(contexts[self.positions], minlength=BRIGHT_CONTEXTS)
        per_context = np.bincount(contexts, minlength=BRIGHT_CONTEXTS)
        coder = constriction.stream.stack.AnsCoder()
        for ctx, span in reversed(_pieces(contexts, counts, per_context)):  # a stack: the last piece goes first
            members = _members(contexts, ctx, span)
            if members.size:
                coder.encode_reverse(bright[members].astype(np.int32), _flag_model(counts[ctx], per_context[ctx]))
        words = coder.get_compressed().astype("<u4", copy=False)
        steps = zlib.compress(varint_encode(self.steps), 9)
        return varint_encode(counts) + struct.pack("<I", words.size) + words.tobytes() + steps

    @classmethod
    def decode(cls, data: bytes, contexts: Optional[np.ndarray]) -> BrightResiduals:
        """The residuals back; `contexts` as given to `encode` (may be None for an empty section)."""
        import constriction

        if not data:
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        counts, used = varint_decode(data, BRIGHT_CONTEXTS)
        if len(data) < used + 4:
            raise ContainerError("bright-target residuals are truncated")
        (n_words,) = struct.unpack_from("<I", data, used)
        start = used + 4
        if len(data) < start + 4 * n_words:
            raise ContainerError("bright-target residuals are truncated")
        per_context = np.bincount(contexts, minlength=BRIGHT_CONTEXTS)
        if np.any(counts > per_context) or counts.sum() == 0:
            raise ContainerError("bright-target residuals do not fit the strip")
        words = np.frombuffer(data, dtype="<u4", count=n_words, offset=start).astype(np.uint32)
        found = [np.flatnonzero(contexts == ctx) for ctx in np.flatnonzero((counts == per_context) & (counts > 0))]
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            for ctx, span in _pieces(contexts, counts, per_context):
                members = _members(contexts, ctx, span)
                if members.size:
                    flags = np.asarray(coder.decode(_flag_model(counts[ctx], per_context[ctx]), members.size))
                    found.append(members[flags == 1])
            exhausted = coder.is_empty()
        except Exception as exc:  # constriction raises plain exceptions for garbage input
            raise ContainerError(f"bright-target positions are corrupt ({exc})") from exc
        positions = np.sort(np.concatenate(found))
        if positions.size != counts.sum() or not exhausted:
            raise ContainerError("bright-target positions are corrupt")
        raw = inflate(data[start + 4 * n_words :], "bright-target residuals", MAX_VARINT_BYTES * positions.size)
        steps, used_steps = varint_decode(raw, positions.size)
        if used_steps != len(raw):
            raise ContainerError("bright-target residuals have the wrong size")
        return cls(positions, steps)


def _pieces(contexts: np.ndarray, counts: np.ndarray, per_context: np.ndarray) -> list[tuple[int, int]]:
    """(context, first pixel of a span) in coding order: each context with bright and other pixels (the only
    flags to code; the counts say the rest), its pixels in raster order, one span of BRIGHT_SPAN pixels at a time."""
    mixed = np.flatnonzero((counts > 0) & (counts < per_context))
    return [(int(ctx), start) for ctx in mixed for start in range(0, contexts.size, BRIGHT_SPAN)]


def _members(contexts: np.ndarray, ctx: int, start: int) -> np.ndarray:
    """The pixels of context `ctx` in the span starting at `start`."""
    return np.flatnonzero(contexts[start : start + BRIGHT_SPAN] == ctx) + start


def _flag_model(count: int, total: int) -> Any:
    """Flags of a context under its exact frequency count / total (both sides know both)."""
    import constriction

    p = count / total
    return constriction.stream.model.Categorical(np.array([1.0 - p, p]), perfect=False)


NO_SIGNAL_CODE = 4
MASK_CODES = 5


def invalid_codes(raw: np.ndarray, invalid: np.ndarray, nodata: Optional[float]) -> np.ndarray:
    """What each invalid pixel was, so it is restored exactly: 0 nodata, 1 NaN, 2 +inf, 3 -inf, 4 no-signal
    zero (preprocessing.zero_is_fill)."""
    values = raw[invalid]
    codes = np.zeros(values.shape, dtype=np.uint8)
    floating = values.dtype.kind in "fc"
    if nodata is None:
        is_nodata = np.zeros(values.shape, dtype=bool)
    elif math.isnan(nodata):
        is_nodata = np.isnan(values) if floating else np.zeros(values.shape, dtype=bool)
    else:
        is_nodata = values == nodata
    codes[(values == 0) & ~is_nodata] = NO_SIGNAL_CODE
    if floating:
        nan = np.isnan(values)
        if values.dtype.kind == "c":
            posinf, neginf = np.isinf(values), np.zeros(values.shape, dtype=bool)
        else:
            posinf, neginf = np.isposinf(values), np.isneginf(values)
        codes[~is_nodata & nan] = 1
        codes[~is_nodata & posinf] = 2
        codes[~is_nodata & neginf] = 3
    return codes


@dataclass
class Strip:
    """One tile being coded or decoded, rows x cols pixels at (row0, col0) of the raster (the encoder also keeps
    orig_db until its gains are known; offsets are derived from the gains and the refined raw_db when the tile is
    finished; the decoder reads `bright` from `bright_section` once raw_db is refined, its contexts come from
    there)."""

    index: int
    row0: int
    rows: int
    col0: int
    cols: int
    bright: Optional[BrightResiduals]
    invalid: Optional[np.ndarray]
    codes: np.ndarray
    refinement: bytes = b""
    orig_db: Optional[np.ndarray] = None
    scattered: Optional[np.ndarray] = None
    """Encoder: the no-signal pixels coded as data (preprocessing.scattered_no_signal), outside the band's PSNR;
    None where there are none."""
    below_zero: Optional[np.ndarray] = None
    """Encoder: per gain block, the sum of the tile's negative intensities (a noise-subtracted product's), which
    its block means count (orig_db holds them at the noise floor); None where there are none."""
    raw_db: Optional[np.ndarray] = None
    refined_db: Optional[np.ndarray] = None
    """The refinement layer's pixels before the loop filter (raw_db after it): what a reference band hands on."""
    gains: Optional[np.ndarray] = None
    """Block-mean codes (radiometry); the chunk carries them minus `gain_prediction`."""
    gain_prediction: Optional[np.ndarray] = None
    coarse_db: Optional[tuple[int, np.ndarray]] = None
    """(level, image) of the refinement layer's coarse approximation once the block means' prediction made it."""
    level_db: Optional[dict[int, np.ndarray]] = None
    """An overview's coarse approximations by level (window_decode)."""
    reference: Optional[np.ndarray] = None
    """A predicted band's reference tile (interband.ReferenceBand.deviation), which its refinement layer needs
    at every level."""
    offsets: Optional[tuple[np.ndarray, np.ndarray]] = None
    bright_section: bytes = b""
    loop_filter: bytes = b""
    """The tile's loop filter (codec.restoration.loop_filter), empty when it has none."""
    chunk: str = ""
    """How errors name the decoded tile's chunk (container.chunk_name: "chunk 3 of 8"); empty while encoding."""

    def payload(self, bright_contexts: Optional[np.ndarray]) -> bytes:
        """The chunk bytes of this tile (`bright_contexts`: radiometry.bright_contexts of its decoded pixels; None
        when it has no bright targets)."""
        gains = b""
        if self.gains is not None:
            residuals = (self.gains.astype(np.int32) - self.gain_prediction).astype("<i2")
            gains = zlib.compress(_delta(residuals).tobytes(), 9)
        mask = encode_mask(self.invalid) if self.invalid is not None else b""
        codes = encode_codes(self.codes) if self.invalid is not None else b""
        streams = [self.refinement, gains, self.bright.encode(bright_contexts), mask, codes, self.loop_filter]
        head = _CHUNK_HEAD.pack(self.rows, self.cols, len(streams)) + b"".join(_LENGTH.pack(len(s)) for s in streams)
        return head + b"".join(streams)

    @classmethod
    def at(cls, tile: TileGeometry, **fields: Any) -> Strip:
        """A strip (tile) at `tile`'s place in the raster, with `fields` (bright, invalid, codes, ...)."""
        return cls(index=tile.index, row0=tile.row0, rows=tile.rows, col0=tile.col0, cols=tile.cols, **fields)

    @classmethod
    def from_payload(cls, payload: bytes, k: int, layout: Layout, chunk: str) -> Strip:
        """Tile k back from its chunk bytes; ContainerError naming the chunk (`chunk`, as container.chunk_name
        names it) for anything inconsistent."""
        tile = layout.tile(k)
        streams = _split_chunk(payload, chunk, (tile.rows, tile.cols), layout.n_streams)
        refinement, gains, bright, mask, codes = streams[:5]
        strip = cls.at(
            tile,
            bright=None,
            invalid=None,
            codes=np.zeros(0, np.uint8),
            refinement=refinement,
            bright_section=bright,
            loop_filter=streams[5] if len(streams) > 5 else b"",
            chunk=chunk,
        )
        if not refinement:
            raise ContainerError(f"{chunk} has no refinement layer")
        if layout.mean_correction == "block":
            strip.gains = _read_gains(gains, chunk, tile_blocks(tile.rows, tile.cols, layout.block))
        if mask:
            strip.invalid, strip.codes = _read_invalid(mask, codes, chunk, (tile.rows, tile.cols))
        return strip


def _split_chunk(payload: bytes, chunk: str, shape: tuple[int, int], n_streams_listed: int) -> list[bytes]:
    """The streams of a chunk, its size checked against the tile's `shape` in the layout and its stream count
    against the header's list."""
    if len(payload) < _CHUNK_HEAD.size:
        raise ContainerError(f"{chunk} is too short")
    rows, cols, n_streams = _CHUNK_HEAD.unpack_from(payload)
    if (rows, cols) != shape:
        raise ContainerError(f"{chunk} does not match the tiling in the header")
    start = _CHUNK_HEAD.size + n_streams * _LENGTH.size
    if n_streams != n_streams_listed or len(payload) < start:
        raise ContainerError(f"{chunk} has {n_streams} streams, the header lists {n_streams_listed}")
    lengths = [length for (length,) in _LENGTH.iter_unpack(payload[_CHUNK_HEAD.size : start])]
    if start + sum(lengths) != len(payload):
        raise ContainerError(f"{chunk} stream lengths do not add up")
    streams, pos = [], start
    for n in lengths:
        streams.append(payload[pos : pos + n])
        pos += n
    return streams


def _delta(codes: np.ndarray) -> np.ndarray:
    """Block-mean codes as differences from their left neighbour (the first column from the one above): means
    follow the scene, their differences stay small (int16 wraps, `_undelta` unwraps)."""
    first = np.diff(codes[:, :1], axis=0, prepend=np.int16(0))
    return np.concatenate([first, np.diff(codes, axis=1)], axis=1).astype(np.int16)


def _undelta(deltas: np.ndarray) -> np.ndarray:
    first = np.cumsum(deltas[:, :1], axis=0, dtype=np.int16)
    return np.cumsum(np.concatenate([first, deltas[:, 1:]], axis=1), axis=1, dtype=np.int16)


def _read_gains(section: bytes, chunk: str, blocks: tuple[int, int]) -> np.ndarray:
    raw = inflate(section, f"{chunk} gains", 2 * blocks[0] * blocks[1])
    if len(raw) != 2 * blocks[0] * blocks[1]:
        raise ContainerError(f"{chunk}: gain block count does not match the raster size")
    return _undelta(np.frombuffer(raw, dtype="<i2").reshape(blocks))


def _read_invalid(mask: bytes, codes: bytes, chunk: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The invalid-pixel mask of a chunk and the code of each invalid pixel."""
    invalid = decode_mask(mask, shape, f"{chunk} nodata mask")
    values = decode_codes(codes, int(invalid.sum()), f"{chunk} mask codes")
    if values.size != int(invalid.sum()) or np.any(values >= MASK_CODES):
        raise ContainerError(f"{chunk}: nodata codes do not match the mask")
    return invalid, values
