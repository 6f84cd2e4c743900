"""The invalid-pixel mask of a chunk and the code of each invalid pixel, coded compactly.

A footprint's boundary (the zero fill around a map-projected product, a slanted swath edge) moves by a pixel or
a few from one row to the next: each row is coded as the columns where the mask changes, as differences from
the previous row's when it has as many changes, else as gaps along the row; zigzag varints, deflated. On a
1024x1024 display product with a rotated footprint: 188 bytes against 1873 for the deflated bitmap it replaces
(2048x2048: 254 against 4628), so the boundary costs about 0.001-0.002 bpp. A row of isolated zeros costs its
gaps, as the bitmap would. Mask codes that are all the same (the usual case: all fill, or all nodata) are one
byte instead of a deflated run.
"""

from __future__ import annotations

import zlib

import numpy as np

from ...errors import ContainerError
from .codes import inflate, varint_bytes, varint_decode, varint_encode


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def _unzigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v % 2 == 0, v // 2, -(v + 1) // 2)


def encode_mask(invalid: np.ndarray) -> bytes:
    """Per row: 0 then the zigzagged moves of each change column when the row has as many changes as the one
    above (and some), else the count + 1 then the gaps between its change columns; varints, deflated."""
    rows = invalid.shape[0]
    changes = np.diff(invalid.astype(np.int8), axis=1, prepend=0, append=0) != 0
    r, c = np.nonzero(changes)
    per_row = np.split(c.astype(np.int64), np.cumsum(np.bincount(r, minlength=rows))[:-1])
    parts, prev = [], np.zeros(0, np.int64)
    for cols in per_row:
        if cols.size and cols.size == prev.size:
            parts += [np.zeros(1, np.int64), _zigzag(cols - prev)]
        else:
            parts += [np.array([cols.size + 1]), np.diff(cols, prepend=0)]
        prev = cols
    return zlib.compress(varint_encode(np.concatenate(parts)), 9)


def decode_mask(data: bytes, shape: tuple[int, int], what: str) -> np.ndarray:
    """The mask `encode_mask` coded; ContainerError naming `what` when the bytes do not fit `shape`."""
    rows, width = shape
    raw = inflate(data, what, rows * (width + 3) * varint_bytes(2 * width + 3))  # every column a change, at most
    b = np.frombuffer(raw, dtype=np.uint8)
    values, used = varint_decode(raw, int(np.count_nonzero(b < 0x80)))
    if used != len(raw):
        raise ContainerError(f"{what} is truncated")
    edges = np.zeros((rows, width + 1), dtype=np.int8)
    pos, prev = 0, np.zeros(0, np.int64)
    for row in range(rows):
        if pos >= values.size:
            raise ContainerError(f"{what} is truncated")
        head, pos = int(values[pos]), pos + 1
        n = prev.size if head == 0 else head - 1
        step = values[pos : pos + n]
        pos += n
        cols = prev + _unzigzag(step) if head == 0 else np.cumsum(step)
        if step.size != n or n % 2 or (n and (cols[0] < 0 or cols[-1] > width or np.any(np.diff(cols) <= 0))):
            raise ContainerError(f"{what} does not fit the strip")
        edges[row, cols[0::2]] = 1
        edges[row, cols[1::2]] = -1
        prev = cols
    if pos != values.size:
        raise ContainerError(f"{what} has the wrong size")
    return np.cumsum(edges[:, :width], axis=1, dtype=np.int8).astype(bool)


def encode_codes(codes: np.ndarray) -> bytes:
    """One byte when every code is the same (a deflated stream is never one byte long), else deflated."""
    if codes.size and np.all(codes == codes[0]):
        return bytes([int(codes[0])])
    return zlib.compress(codes.astype(np.uint8).tobytes(), 9)


def decode_codes(data: bytes, count: int, what: str) -> np.ndarray:
    """The `count` codes `encode_codes` coded."""
    if len(data) == 1:
        return np.full(count, data[0], dtype=np.uint8)
    return np.frombuffer(inflate(data, what, count), dtype=np.uint8)
