"""Byte-level pieces shared by the coders (refinement layer, chunk sections): 16-bit frequency tables,
the zig-zag varints that carry escaped symbols, plain LEB128 varints (bright targets, masks), checked inflation,
the flagged int8 pairs of the per-subband laws. Torch-free."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Optional

import numpy as np

from ...errors import ContainerError

PRECISION = 16
TOTAL = 1 << PRECISION
"""Every frequency table sums to this; constriction gets freq / TOTAL, exact in float64."""


def quantize_pmf(p: np.ndarray) -> np.ndarray:
    """Integer frequencies summing to 2^16, each >= 1, closest to p (largest-remainder rounding)."""
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    p = p / p.sum() if p.sum() > 0 else np.full(len(p), 1.0 / len(p))
    n = len(p)
    scaled = p * (TOTAL - n)
    base = np.floor(scaled)
    freq = base.astype(np.int64) + 1
    remainder = TOTAL - int(freq.sum())
    order = np.argsort(-(scaled - base), kind="stable")
    freq[order[: max(0, min(remainder, n))]] += 1
    freq[int(np.argmax(freq))] += TOTAL - int(freq.sum())  # float slack, if any
    return freq


def zigzag_encode(values: np.ndarray) -> bytes:
    """Zig-zag LEB128 varints of int64 values, vectorised."""
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return b""
    zz = ((v << 1) ^ (v >> 63)).astype(np.uint64)
    nbytes = np.ones(len(zz), dtype=np.int64)
    rest = zz >> np.uint64(7)
    while np.any(rest):
        nbytes += rest > 0
        rest = rest >> np.uint64(7)
    k = np.arange(10, dtype=np.uint64)
    groups = ((zz[:, None] >> (np.uint64(7) * k)) & np.uint64(0x7F)).astype(np.uint8)
    groups |= np.where(k[None, :] < (nbytes[:, None] - 1).astype(np.uint64), 0x80, 0).astype(np.uint8)
    return groups[k[None, :] < nbytes[:, None].astype(np.uint64)].tobytes()


def zigzag_decode(data: bytes, count: int, what: str) -> np.ndarray:
    """Exactly `count` zig-zag varints that must use up all of `data`."""
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.nonzero((b & 0x80) == 0)[0]
    if len(ends) != count or (count and ends[-1] != len(b) - 1) or (not count and len(b)):
        raise ContainerError(f"escape side stream of the {what} is corrupt")
    if not count:
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if np.any(lengths > 9):
        raise ContainerError(f"escape value too long in the {what}")
    pos = np.arange(len(b)) - np.repeat(starts, lengths)
    parts = (b & 0x7F).astype(np.uint64) << (np.uint64(7) * pos.astype(np.uint64))
    zz = np.add.reduceat(parts, starts)
    return (zz >> np.uint64(1)).astype(np.int64) ^ -(zz & np.uint64(1)).astype(np.int64)


def inflate(data: bytes, what: str, limit: int) -> bytes:
    """zlib.decompress of at most `limit` bytes (what the section can hold at most: a 316 KB file whose mask stream
    inflated to 300 MB took the decoder past 3 GB), with a ContainerError naming the section instead of zlib.error."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ContainerError(f"{what} is corrupt ({exc})") from exc
    if len(raw) > limit:
        raise ContainerError(f"{what} is corrupt (it inflates past the {limit} bytes it can hold)")
    if not inflater.eof:
        raise ContainerError(f"{what} is corrupt (incomplete deflate stream)")
    return raw


def varint_bytes(largest: int) -> int:
    """The bytes of the longest varint a value up to `largest` takes (a bound on a varint section's size)."""
    return max(1, -(-int(largest).bit_length() // 7))


MAX_VARINT_BYTES = 8
"""The longest varint `varint_decode` reads (56 bits: far above any count or step the format holds)."""


def varint_encode(values: np.ndarray) -> bytes:
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


def varint_decode(data: bytes, count: int) -> tuple[np.ndarray, int]:
    """The first `count` varints of `data` and the number of bytes they use."""
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.nonzero((b & 0x80) == 0)[0][:count]
    if len(ends) != count:
        raise ContainerError("bright-target residuals are truncated")
    if count == 0:
        return np.zeros(0, dtype=np.int64), 0
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if np.any(lengths > MAX_VARINT_BYTES):
        raise ContainerError("bright-target residual out of range")
    used = int(ends[-1]) + 1
    pos = np.arange(used) - np.repeat(starts, lengths)
    parts = (b[:used] & 0x7F).astype(np.uint64) << (np.uint64(7) * pos.astype(np.uint64))
    return np.add.reduceat(parts, starts).astype(np.int64), used


_PAIR = struct.Struct("<bb")
PAIR_BITS = 8 * _PAIR.size
"""What one flagged pair (a per-subband law's two int8 weights) costs in the side information before deflating."""


def encode_pairs(pairs: Sequence[Optional[tuple[int, int]]]) -> bytes:
    """A flag bit per entry (least significant first: has a pair), always ceil(n / 8) bytes, then each pair's two
    int8 values: how a tile's side information carries a law per detail subband."""
    flags = sum(1 << i for i, pair in enumerate(pairs) if pair is not None)
    mask = flags.to_bytes((len(pairs) + 7) // 8, "little")
    return mask + b"".join(_PAIR.pack(*pair) for pair in pairs if pair is not None)


def split_pairs(data: bytes, n: int) -> tuple[bytes, bytes]:
    """The bytes of `encode_pairs`' `n` entries at the start of `data` (its flags say how many pairs follow) and
    what follows them (too short: `decode_pairs` says so)."""
    size = (n + 7) // 8
    flags = int.from_bytes(data[:size], "little")
    end = size + bin(flags).count("1") * _PAIR.size
    return data[:end], data[end:]


def decode_pairs(data: bytes, n: int, limit: int, what: str) -> list[Optional[tuple[int, int]]]:
    """`encode_pairs`' `n` entries back; ContainerError naming `what` when `data` is not exactly that or a value is
    beyond +-`limit`."""
    size = (n + 7) // 8
    if len(data) < size:
        raise ContainerError(f"refinement layer side information: truncated {what}s")
    flags, pos, out = int.from_bytes(data[:size], "little"), size, []
    if flags >> n:
        raise ContainerError(f"refinement layer side information: a {what} for a subband the tile does not have")
    for i in range(n):
        if not flags >> i & 1:
            out.append(None)
            continue
        if len(data) < pos + _PAIR.size:
            raise ContainerError(f"refinement layer side information: truncated {what}s")
        pair = _PAIR.unpack_from(data, pos)
        if max(abs(pair[0]), abs(pair[1])) > limit:
            raise ContainerError(f"refinement layer side information: {what} out of range")
        out.append(pair)
        pos += _PAIR.size
    if pos != len(data):
        raise ContainerError(f"refinement layer side information: trailing bytes after the {what}s")
    return out
