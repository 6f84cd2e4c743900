"""What the network alone gets wrong, measured by the encoder and put back by the decoder.

A codec trained in dB biases the linear-intensity mean that SAR users measure: per 64x64 block (or for the
whole raster) a gain sum(original) / sum(decoded) in linear intensity restores it. Gains are int16 codes in
log2 steps, wide enough that a badly biased block (bright urban above all) is never clipped, and are applied
as a smooth (bilinearly interpolated) field so block edges do not show. Bright targets above the dB range
would be clipped by the network: they are kept as residuals over the range's top instead.
`finalize_strip` applies both and restores invalid pixels exactly; encoder and decoder share it, which is why
the reconstruction written during compression equals the decompressed raster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np

from . import preprocessing as pp
from .errors import ContainerError
from .layout import BLOCK, Layout
from .strip_payload import BrightResiduals, Strip

MEAN_CORRECTIONS = ("block", "global", "none")
GAIN_LOG2_STEP = 1.0 / 32.0
GAIN_CODE_LIMIT = 2**15 - 1

_DB_PER_LOG2 = 10.0 * math.log10(2.0)

Gain = Union[np.ndarray, np.float32]
"""A dB gain: a field over the strip or one value for all of it."""


def bright_residuals(
    orig_db: np.ndarray, valid: np.ndarray, threshold: float, step_db: float
) -> tuple[np.ndarray, BrightResiduals]:
    """Mask of the valid pixels above `threshold` and their excess over it in steps of `step_db`."""
    bright = valid & (orig_db > threshold)
    steps = np.clip(np.rint((orig_db[bright] - threshold) / step_db), 0, 2**32)
    return bright, BrightResiduals(np.flatnonzero(bright).astype(np.int64), steps.astype(np.int64))


def block_sums(orig_db: np.ndarray, raw_db: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 64x64 block: sum of original and of reconstructed linear intensity over the `use` pixels."""
    rows, width = use.shape
    pad = ((0, -rows % BLOCK), (0, -width % BLOCK))
    w = np.pad(use, pad).astype(np.float64)
    lin_o = np.pad(pp.db_to_linear(orig_db), pad).astype(np.float64) * w
    lin_r = np.pad(pp.db_to_linear(raw_db), pad).astype(np.float64) * w
    shape = (lin_o.shape[0] // BLOCK, BLOCK, lin_o.shape[1] // BLOCK, BLOCK)
    return lin_o.reshape(shape).sum(axis=(1, 3)), lin_r.reshape(shape).sum(axis=(1, 3))


def gain_codes(sum_o: np.ndarray, sum_r: np.ndarray) -> np.ndarray:
    """int16 log2-step codes of sum_o/sum_r per block (0 = factor 1); empty blocks take the strip's mean code."""
    ok = (sum_o > 0) & (sum_r > 0)
    log2 = np.zeros(sum_o.shape)
    log2[ok] = np.log2(sum_o[ok] / sum_r[ok])
    codes = np.clip(np.rint(log2 / GAIN_LOG2_STEP), -GAIN_CODE_LIMIT, GAIN_CODE_LIMIT)
    fill = float(np.rint(codes[ok].mean())) if ok.any() else 0.0
    return np.where(ok, codes, fill).astype(np.int16)


def gain_field(layout: Layout, strips: Sequence[Optional[Strip]], cur: Strip) -> np.ndarray:
    """Bilinear interpolation (between block centres) of the log-gain field over the strip, in dB."""
    rows_blocks = {}
    for s in strips:
        if s is not None:
            first = s.row0 // BLOCK
            for i, row in enumerate(s.gains.astype(np.float64)):
                rows_blocks[first + i] = row * GAIN_LOG2_STEP * _DB_PER_LOG2

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


def global_gain_db(global_gain: float) -> np.float32:
    return np.float32(10.0 * math.log10(global_gain))


def strip_gain_db(layout: Layout, window: Sequence[Optional[Strip]], cur: Strip, global_gain: float) -> Gain:
    """The dB gain for strip `cur` under the layout's mean correction (`window`: it and its neighbours)."""
    if layout.mean_correction == "block":
        return gain_field(layout, window, cur)
    if layout.mean_correction == "global":
        return global_gain_db(global_gain)
    return np.float32(0)


def finalize_strip(layout: Layout, raw_db: np.ndarray, gain_db: Gain, strip: Strip) -> np.ndarray:
    """Decoded dB + gain + bright residuals -> the input's kind and dtype, invalid pixels restored exactly."""
    db = raw_db + gain_db
    if strip.bright.positions.size:
        flat = db.reshape(-1)
        flat[strip.bright.positions] = layout.bright_threshold + strip.bright.steps * layout.bright_step_db
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
