"""Tiles with overlap and raised-cosine blending, for running an image->image function on any raster size.

This module is the tool for functions that must run on independent windows (a learned filter over a decoded
raster, for example): tiles overlap, each tile's output is weighted by a partition of
unity (raised-cosine ramps over the overlap, flat 1 inside) and the weighted sum is divided by the accumulated weight,
so the blend is exact everywhere, borders and the edge-aligned last tile included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from .errors import CancelledError, InputError

Progress = Optional[Callable[[int, int], None]]
Cancel = Optional[Callable[[], bool]]


@dataclass(frozen=True)
class TileWindow:
    """A tile's position and size in pixels."""

    row: int
    col: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: stride tile - overlap, the last tile flush with the edge."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def _check_tile(tile: int, overlap: int) -> None:
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"overlap must be in [0, tile/2] = [0, {tile // 2}], got {overlap}")


def tile_grid(height: int, width: int, tile: int = 256, overlap: int = 32) -> list[TileWindow]:
    """Windows covering a height x width raster, row-major; tiles are min(tile, size) on each axis."""
    _check_tile(tile, overlap)
    th, tw = min(tile, height), min(tile, width)
    return [TileWindow(r, c, th, tw) for r in _starts(height, tile, overlap) for c in _starts(width, tile, overlap)]


def _ramp(size: int, overlap: int) -> np.ndarray:
    """1D weights: sin^2 ramp up over `overlap` pixels, 1 inside, mirrored ramp down.

    Two tiles offset by size - overlap sum to exactly 1 on their overlap (sin^2 + cos^2); weights stay > 0.
    """
    w = np.ones(size, dtype=np.float64)
    n = min(overlap, size // 2)
    if n > 0:
        up = np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2
        w[:n] = up
        w[size - n :] = up[::-1]
    return w


def hann_weights(tile: Union[int, tuple[int, int]], overlap: int) -> np.ndarray:
    """2D blending weights (float32) of a tile: outer product of raised-cosine ramps."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    return np.outer(_ramp(th, overlap), _ramp(tw, overlap)).astype(np.float32)


def pad_to_multiple(arr: np.ndarray, m: int, mode: str = "reflect", min_size: int = 0) -> np.ndarray:
    """Pad the last two axes at the bottom/right up to a multiple of `m` (and at least `min_size`).

    "reflect" needs more than one pixel on an axis: a 1-pixel axis falls back to "edge"; numpy repeats the
    reflection when the padding exceeds the size, so rasters smaller than a tile work too.
    """
    arr = np.asarray(arr)
    if arr.ndim < 2:
        raise InputError(f"expected an image of at least 2 dimensions, got shape {arr.shape}")
    h, w = arr.shape[-2:]
    if h == 0 or w == 0:
        raise InputError(f"cannot pad an empty image of shape {arr.shape}")
    ph = max(-(-h // m) * m, min_size) - h
    pw = max(-(-w // m) * m, min_size) - w
    if ph == 0 and pw == 0:
        return arr
    lead = [(0, 0)] * (arr.ndim - 2)
    for axis, (size, pad) in enumerate(((h, ph), (w, pw))):
        if pad == 0:
            continue
        widths = [*lead, (0, 0), (0, 0)]
        widths[arr.ndim - 2 + axis] = (0, pad)
        axis_mode = "edge" if mode == "reflect" and size == 1 else mode
        arr = np.pad(arr, widths, mode=axis_mode)
    return arr


class TileBlender:
    """Accumulates weighted tile outputs and returns their normalised blend (the `blend_tiles` of the design)."""

    def __init__(self, height: int, width: int, overlap: int):
        self.overlap = overlap
        self._sum = np.zeros((height, width), dtype=np.float32)
        self._weight = np.zeros((height, width), dtype=np.float32)
        self._weights: dict[tuple[int, int], np.ndarray] = {}

    def add(self, window: TileWindow, values: np.ndarray) -> None:
        shape = (window.height, window.width)
        if shape not in self._weights:
            self._weights[shape] = hann_weights(shape, self.overlap)
        weights = self._weights[shape]
        rows, cols = window.slices
        self._sum[rows, cols] += weights * values
        self._weight[rows, cols] += weights

    def result(self) -> np.ndarray:
        if not np.all(self._weight > 0):
            raise RuntimeError("some pixels are covered by no tile")
        return self._sum / self._weight


def process_array(
    arr: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 8,
    multiple: int = 16,
    progress: Progress = None,
    cancel: Cancel = None,
) -> np.ndarray:
    """Apply `fn` (float32 [N, th, tw] -> [N, th, tw]) over overlapping tiles of a 2D array and blend.

    The array is reflect-padded to a multiple of `multiple` (the model's downsampling) where it is smaller than a
    tile, so tiles are min(tile, padded size) per axis and a 1 x 300 strip costs one 16 x 256 row of tiles, not a
    256 x 256 one. `progress(done, total)` counts tiles after each batch; `cancel()` is checked before each
    batch and raises CancelledError. Returns float32 of the input's shape.
    """
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"process_array needs a 2D array, got shape {arr.shape}")
    if tile % multiple:
        raise ValueError(f"tile {tile} must be a multiple of {multiple}")
    h, w = arr.shape
    padded = pad_to_multiple(arr, multiple)
    ph, pw = padded.shape
    windows = tile_grid(ph, pw, tile, overlap)
    blender = TileBlender(ph, pw, overlap)
    total = len(windows)
    for start in range(0, total, max(1, batch_size)):
        if cancel is not None and cancel():
            raise CancelledError("cancelled")
        batch = windows[start : start + batch_size]
        tiles = np.stack([padded[win.slices] for win in batch])
        out = np.asarray(fn(tiles), dtype=np.float32)
        if out.shape != tiles.shape:
            raise ValueError(f"tile function returned shape {out.shape}, expected {tiles.shape}")
        for win, values in zip(batch, out):
            blender.add(win, values)
        if progress is not None:
            progress(start + len(batch), total)
    return blender.result()[:h, :w]
