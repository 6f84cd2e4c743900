"""What the dB-domain coding alone gets wrong, measured by the encoder and put back by the decoder.

A codec that works in dB biases the linear-intensity mean that SAR users measure (what it smooths away is speckle and
texture, whose linear mean is above their dB mean): per block (256x256 pixels; 64x64 before format 11) or for the
whole raster the original's linear intensity restores it. Under "block" correction each block carries its mean linear
intensity as an int16 code in log2 steps (the gain is that over the decoded block's mean: the same precision as
coding the gain, and an overview gets the block means without decoding a pixel); under "global" the header carries
sum(original) / sum(decoded). The codes go into the chunk as their difference from a prediction made from the
refinement layer's 1/8 approximation (mean_code_prediction): airsar T11 at quality 2 measured 0.0299 bpp that way,
0.0307 with the plain means, 0.0295 with the gains of format 6 before tiles (PREDICTION_LEVEL 6 / 4 / 3 / 2: gains
stream 329 / 272 / 237 / 219 bytes, gains 193; 3 keeps overviews from 1/8 on cheap). The decoder turns a block's gain
into dB offsets spread in proportion to each pixel's decoded intensity (capped): the smallest squared dB error that
puts the missing intensity back (a uniform offset cost 0.2-1 dB of PSNR at low rates, this 0.1-0.4), one offset per
block (format 6 interpolated them between block centres: offset_field). Bright targets above the dB range would be
clipped by the refinement layer: they are kept as residuals over the range's top instead. `finalize_strip` applies
both and restores invalid pixels (nodata, non-finite, no-signal zeros) exactly; encoder and decoder share it, which
is why the reconstruction written during compression equals the decompressed raster."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from .. import preprocessing as pp
from ..errors import ContainerError
from .entropy import refine
from .format.layout import Layout
from .format.strip_payload import BRIGHT_CONTEXTS, BRIGHT_SPAN, BrightResiduals, Strip

GAIN_CODE_LIMIT = 2**15 - 1

WEIGHT_CAP = 8.0
"""A pixel's share of its block's offset is its decoded intensity over the block's mean, at most this: a lone
bright pixel in a dark block would otherwise take the whole correction. Measured on the real crops: 4 -> 8
gained up to 0.4 dB at 0.25 bpp on single-look data, 16 another 0.01-0.12 dB for offsets twice as large on
isolated bright pixels."""
NEWTON_STEPS = 3
"""Newton steps for a block's offset from its gain alone (a start: the fixes below make the sums exact)."""
OFFSET_LIMIT_DB = 150.0
"""Bound on |c s| in the solver: keeps its float32 exponentials finite whatever the gain codes say."""
FIX_ROUNDS = 1
FIX_NEWTON_STEPS = 2
"""Rounds of per-block fixes once offsets are spread, and Newton steps per fix (small corrections: the first-order
start is close). Format 6 interpolated offsets, and each further round moved the interpolation nodes towards a
seamless field that needed larger offsets: 1 / 2 / 3 rounds measured +0.32 / +0.25 / +0.21 dB over JPEG 2000 on
T33 at 1 bpp. Per-block offsets (format 7) need the fix only to finish the Newton steps."""
CAP_NEWTON_STEPS = 6
"""Newton steps for a block whose offsets are capped at the bright threshold (format 12: _cap_band), from the
uncapped offset; the capped terms make the function flatten, so it takes more steps than the fixes."""
_K = math.log(10.0) / 10.0

Gain = Union[np.ndarray, np.float32]
"""A dB gain: a per-pixel field over the strip or one value for all of it."""


SHARED_VALUE_MIN = 16
"""Bright pixels of one value, at least this many in a tile (a sensor's saturation: no two targets share a value
otherwise), are rounded so that their linear intensity is kept (`_mean_keeping`), not each to its nearest step."""
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def bright_residuals(
    orig_db: np.ndarray,
    valid: np.ndarray,
    threshold: float,
    step_db: float,
    ceiling_db: float = math.inf,
    keep_means: bool = True,
) -> BrightResiduals:
    """The valid pixels above `threshold` and their excess over it in steps of `step_db`: each to the nearest step,
    but a value at `ceiling_db` (the largest the output's type holds) to the step above (written back at it exactly)
    and, with `keep_means` (dB kinds: native values have no linear intensity), values many pixels share to steps
    that keep their linear intensity (SHARED_VALUE_MIN), the others as `_sum_keeping` says. Rounded each to its
    nearest step, a product's 825 pixels saturated at 65535 all decoded to 63976 and its intensity mean was 0.959 of
    the original's (a robustness sweep). The encoder's choice: any step decodes."""
    bright = valid & (orig_db > threshold)
    values = orig_db[bright].astype(np.float64)
    x = (values - threshold) / step_db
    steps = np.rint(x)
    at_ceiling = values >= ceiling_db
    steps[at_ceiling] = np.ceil(x[at_ceiling])
    shared = _shared(values) & ~at_ceiling if keep_means else np.zeros(values.shape, dtype=bool)
    if shared.any():
        steps[shared] = _mean_keeping(values[shared], x[shared], step_db)
    if keep_means:
        free = ~(shared | at_ceiling)
        steps[free] = _sum_keeping(x[free], steps[free], step_db)
    steps = np.clip(steps, 0, 2**32)
    return BrightResiduals(np.flatnonzero(bright).astype(np.int64), steps.astype(np.int64))


def _shared(values: np.ndarray) -> np.ndarray:
    """Where a value is held by at least SHARED_VALUE_MIN pixels."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return counts[inverse] >= SHARED_VALUE_MIN


def _mean_keeping(values: np.ndarray, x: np.ndarray, step_db: float) -> np.ndarray:
    """Steps for pixels of shared values (`x`: their exact excess in steps): each group's pixels go to the step below
    or above it, the share above chosen so that the group's mean linear intensity is its value's, spread over the
    group by a golden-ratio sequence (deterministic)."""
    low = np.floor(x)
    up_share = (10.0 ** ((x - low) * step_db / 10.0) - 1.0) / (10.0 ** (step_db / 10.0) - 1.0)
    _, inverse = np.unique(values, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], inverse[order])
    rank = np.empty(values.size, dtype=np.float64)
    rank[order] = np.arange(values.size) - starts
    return low + (((rank + 0.5) * GOLDEN) % 1.0 < up_share)


FLIP_LIMIT = 0.75
"""How far from its value (in bright steps) `_sum_keeping` may round a pixel: only pixels already more than a quarter
of a step from their nearest step go the other way, so none ends more than 3/4 of a step off."""


def _sum_keeping(x: np.ndarray, steps: np.ndarray, step_db: float) -> np.ndarray:
    """The nearest steps (`steps`, of exact excesses `x`) with some pixels rounded the other way, so that the tile's
    bright pixels keep their linear intensity: a few bright targets can hold much of a scene's intensity, and the
    block means leave them out (they keep the rest). Rounded each to its nearest step of 1 dB, a simulated 256x256
    scene's 27 bright pixels, 39 % of its intensity, decoded at 1.048 times theirs (mean ratio 1.020, a sweep).
    Greedy, largest change first: a pixel is rounded the other way where that brings the sum closer, and only where
    it ends within FLIP_LIMIT of a step from its value. The encoder's choice: any step decodes."""
    error = 10.0 ** ((steps - x) * step_db / 10.0) - 1.0  # each pixel's relative linear error
    scale = 10.0 ** (x * step_db / 10.0)  # its intensity over the threshold's
    other = np.where(steps > x, steps - 1, steps + 1)
    change = scale * (10.0 ** ((other - x) * step_db / 10.0) - 1.0 - error)
    allowed = (np.abs(other - x) <= FLIP_LIMIT) & (other >= 0)
    total = float(np.sum(scale * error))
    out = steps.copy()
    for i in np.argsort(-np.abs(change), kind="stable"):
        if allowed[i] and abs(total + change[i]) < abs(total):
            total += change[i]
            out[i] = other[i]
    return out


def bright_contexts(layout: Layout, raw_db: np.ndarray) -> np.ndarray:
    """Per pixel of a decoded strip (flat), the context of its bright-target flag: eighths of a refinement
    step below the range's top (a bright target's pixel was coded clipped to the top). The decoded strip is
    numpy arithmetic on decoded integers over a flat base, the same on every machine, so both sides agree
    exactly."""
    last = BRIGHT_CONTEXTS - 1
    flat, out = raw_db.reshape(-1), np.empty(raw_db.size, dtype=np.uint8)
    scale = 8.0 / layout.refine_step_db
    for start in range(0, flat.size, BRIGHT_SPAN):
        part = slice(start, start + BRIGHT_SPAN)
        out[part] = np.clip(np.floor((layout.rng.vmax - flat[part].astype(np.float64)) * scale), 0, last)
    return out


def cell_sums(a: np.ndarray, f: int) -> np.ndarray:
    """Sums over the f x f cells of `a`'s grid (the last row and column of cells may be partial). An axis shorter than
    a cell is not padded to one: a 1-pixel-wide tile was 256 times the work of its pixels (a 500,000 x 1 raster
    decoded in 3.2 s, 2.5 times a 1 x 500,000 one)."""
    rows, cols = a.shape
    fr, fc = min(f, rows), min(f, cols)
    p = np.pad(a, ((0, -rows % fr), (0, -cols % fc)))
    return p.reshape(p.shape[0] // fr, fr, p.shape[1] // fc, fc).sum(axis=(1, 3))


def block_sums(orig_db: np.ndarray, raw_db: np.ndarray, use: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block x block block: sum of original and of reconstructed linear intensity over the `use` pixels."""
    w = use.astype(np.float64)
    lin_o = pp.db_to_linear(orig_db).astype(np.float64) * w
    lin_r = pp.db_to_linear(raw_db).astype(np.float64) * w
    return cell_sums(lin_o, block), cell_sums(lin_r, block)


def mean_codes(sum_o: np.ndarray, count: np.ndarray, step: float) -> np.ndarray:
    """int16 codes of each block's mean linear intensity over its used pixels (sum_o / count) in log2 `step`s: the
    decoder scales the decoded block to it (offset_field), and an overview gets its means from them without
    decoding the pixels. Blocks with nothing to measure take the tile's mean code; a block whose sum is not positive
    (noise-subtracted values, or dB far below any backscatter) the lowest code."""
    measured = count > 0
    ok = measured & (sum_o > 0)
    log2 = np.zeros(sum_o.shape)
    log2[ok] = np.log2(sum_o[ok] / count[ok])
    codes = np.clip(np.rint(log2 / step), -GAIN_CODE_LIMIT, GAIN_CODE_LIMIT)
    codes[measured & ~ok] = -GAIN_CODE_LIMIT  # a mean at or below zero (noise-subtracted intensity): the lowest
    fill = float(np.rint(codes[ok].mean())) if ok.any() else 0.0
    return np.where(measured, codes, fill).astype(np.int16)


PREDICTION_LEVEL = 3
"""The wavelet level block means are predicted from (measured: see the module docstring)."""


def mean_code_prediction(layout: Layout, strip: Strip) -> np.ndarray:
    """What each block's mean code is predicted to be from the tile's refinement layer alone (its 1/64 wavelet
    approximation, or the coarsest the tile has, averaged over the block in linear intensity): the chunk carries
    the codes minus this (the speckle's bias, small and smooth like the gains the codes replaced), and an overview
    decodes it as cheaply as the codes. int32, the tile's blocks. The approximation comes from (or stays on) the
    tile's `coarse_db` (level, dB): the full decode makes it in the same pass, an overview at that level reuses it."""
    level = prediction_level(strip)
    if strip.coarse_db is None or strip.coarse_db[0] != level:
        flat = refine.FlatBase(layout.flat_db, (strip.rows, strip.cols))
        step = layout.refine_step_db
        strip.coarse_db = (
            level,
            refine.decode_level(strip.refinement, flat, step, level, strip.reference, layout.syntax),
        )
    db = strip.coarse_db[1].astype(np.float64)
    f = layout.block >> level
    mean = cell_sums(np.power(10.0, db / 10.0), f) / cell_sums(np.ones(db.shape), f)
    codes = np.rint(np.log2(mean) / layout.mean_log2_step)
    return np.clip(codes, -GAIN_CODE_LIMIT, GAIN_CODE_LIMIT).astype(np.int32)


def prediction_level(strip: Strip) -> int:
    """The wavelet level a tile's block means are predicted from (its coarsest where it has fewer levels)."""
    return min(PREDICTION_LEVEL, refine.coarse_levels((strip.rows, strip.cols)))


def restore_mean_codes(layout: Layout, strip: Strip) -> None:
    """A decoded chunk's gains stream holds codes less their prediction: the codes back."""
    if strip.gains is not None:
        prediction = mean_code_prediction(layout, strip)
        strip.gains = predicted_codes(strip.gains.astype(np.int32) + prediction, prediction)


def predicted_codes(codes: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Codes (or residuals) kept within int16 of the prediction and of zero: what both sides use."""
    return (
        np.clip(codes, prediction - GAIN_CODE_LIMIT, prediction + GAIN_CODE_LIMIT)
        .clip(-GAIN_CODE_LIMIT, GAIN_CODE_LIMIT)
        .astype(np.int16)
    )


def block_means(codes: np.ndarray, step: float) -> np.ndarray:
    """Mean linear intensity of each block, from its code in log2 `step`s."""
    return np.exp2(codes.astype(np.float64) * step)


def block_counts(use: np.ndarray, block: int) -> np.ndarray:
    """Pixels of `use` per block x block block."""
    return cell_sums(use, block)


def use_mask(strip: Strip) -> np.ndarray:
    """The pixels block gains are measured over: valid and not a bright target (encoder and decoder agree)."""
    use = np.ones((strip.rows, strip.cols), dtype=bool) if strip.invalid is None else ~strip.invalid
    use[np.unravel_index(strip.bright.positions, use.shape)] = False
    return use


def _by_block(a: np.ndarray, block: int) -> np.ndarray:
    """A band of at most `block` rows, (rows, width) -> (block cols, rows * block), the last block's columns zero-padded
    (a band narrower than a block: (1, rows * width)). A band shorter than a block is not padded to one: a 1-row
    raster's tiles were 256 times the work (a 1 x 2,000,000 raster decoded in 40 s, 31 s of it here)."""
    rows, width = a.shape
    side = min(block, width)  # a band narrower than a block is not padded to one either
    a = np.pad(a, ((0, 0), (0, -width % side)))
    return a.reshape(rows, -1, side).transpose(1, 0, 2).reshape(-1, rows * side)


def _weights(w: np.ndarray, wbar: np.ndarray) -> np.ndarray:
    """A pixel's share of the offset: minimising the sum of squared dB offsets d subject to the block's sum of
    w 10**(d/10) gives d proportional to w (to first order)."""
    return np.minimum(w / wbar, WEIGHT_CAP)


def _first_order(a: np.ndarray, s: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per row, c with sum(a 10**(c s/10)) = target to first order (exact when every s is 1)."""
    sa, sas = a.sum(-1, dtype=np.float64), (a * s).sum(-1, dtype=np.float64)
    ok = (sa > 0) & (sas > 0) & (target > 0)
    ratio = np.where(ok, target / np.where(ok, sa, 1.0), 1.0)
    return np.where(ok, np.log(ratio) / _K * sa / np.where(ok, sas, 1.0), 0.0)


def _solve(a: np.ndarray, s: np.ndarray, target: np.ndarray, steps: int) -> np.ndarray:
    """Per row, c with sum(a 10**(c s/10)) = target: Newton from the first-order value on a convex increasing
    function of c (a, s >= 0), a fixed number of steps so that encoder and decoder do the same arithmetic.
    Pixels in float32, sums in float64; |c s| stays below OFFSET_LIMIT_DB so nothing overflows."""
    c = _first_order(a, s, target)
    limit = OFFSET_LIMIT_DB / WEIGHT_CAP
    for _ in range(steps):
        c = np.clip(c, -limit, limit)
        e = np.exp(np.float32(_K) * c.astype(np.float32)[:, None] * s)
        ae = a * e
        h, dh = ae.sum(-1, dtype=np.float64) - target, _K * (ae * s).sum(-1, dtype=np.float64)
        c = np.where(dh > 0, c - h / np.where(dh > 0, dh, 1.0), c)
    return np.clip(c, -limit, limit)


def block_offsets(
    raw_db: np.ndarray, use: np.ndarray, targets: np.ndarray, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per block (of a tile): the offset c (dB at the block's mean intensity) such that sum(w 10**(c s/10)) =
    the block's target sum over the used pixels (s = _weights), and log10 of that mean; blocks with nothing to
    measure take the tile's means."""
    c, logm, ok = np.zeros(targets.shape), np.zeros(targets.shape), np.zeros(targets.shape, dtype=bool)
    for r in range(targets.shape[0]):
        band = slice(r * block, (r + 1) * block)
        w = _by_block(pp.db_to_linear(raw_db[band]) * use[band], block)
        sw = w.sum(-1, dtype=np.float64)
        ok[r] = sw > 0
        wbar = np.where(ok[r], sw / np.maximum(_by_block(use[band], block).sum(-1), 1), 1.0)
        c[r] = _solve(w, _weights(w, wbar[:, None].astype(np.float32)), targets[r], NEWTON_STEPS)
        logm[r] = np.log10(wbar)
    if not ok.any():
        return np.zeros(targets.shape), np.zeros(targets.shape)
    return np.where(ok, c, c[ok].mean()), np.where(ok, logm, logm[ok].mean())


def level_offsets(db: np.ndarray, weights: np.ndarray, targets: np.ndarray, block: int) -> np.ndarray:
    """dB offsets of an image at a coarser level (a window decode's overview; `block` the gain blocks' side there,
    `weights` the share of valid pixels each pixel covers, 0 to 1) that give each block its coded linear sum
    (`targets`), shared among its pixels by intensity as the full decode shares them (_weights): a uniform scale
    per block lifted the darker pixels of a textured block by the brighter ones' missing intensity (overview pixels
    1.2 to 2.1 times the full decode's means on simulated scenes; 0.98-1.07 this way: docs/FORMAT.md, "Overviews")."""
    c, logm = block_offsets(db, weights, targets, block)
    rows, cols = db.shape
    mean = np.power(np.float32(10.0), _per_block(logm, 0, rows, cols, block))
    return _per_block(c, 0, rows, cols, block) * _weights(pp.db_to_linear(db), mean)


def _interpolate(grid: np.ndarray, row0: int, rows: int, cols: int, block: int) -> np.ndarray:
    """Bilinear interpolation between block centres of per-block values (a tile's blocks) over the tile's rows
    row0 .. row0 + rows; flat beyond the outer centres (a tile is decoded on its own)."""

    def axis(n: int, start: int, nblocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = np.clip((np.arange(start, start + n) + 0.5) / block - 0.5, 0, nblocks - 1)
        i0 = np.floor(u).astype(np.int64)
        return i0, np.minimum(i0 + 1, nblocks - 1), (u - i0).astype(np.float32)

    r0, r1, wr = axis(rows, row0, grid.shape[0])
    c0, c1, wc = axis(cols, 0, grid.shape[1])
    g = grid.astype(np.float32)
    across = g[:, c0] * (1 - wc) + g[:, c1] * wc
    return across[r0] * (1 - wr)[:, None] + across[r1] * wr[:, None]


def _per_block(grid: np.ndarray, row0: int, rows: int, cols: int, block: int) -> np.ndarray:
    """Per-block values (a tile's blocks) over the tile's rows row0 .. row0 + rows, each block's own."""
    r = np.minimum(np.arange(row0, row0 + rows) // block, grid.shape[0] - 1)
    c = np.minimum(np.arange(cols) // block, grid.shape[1] - 1)
    return grid.astype(np.float32)[r][:, c]


def offset_field(layout: Layout, cur: Strip) -> np.ndarray:
    """The dB offset of every pixel of tile `cur`: each block's offset, each pixel's share from its intensity
    against its block's mean. Format 6 interpolated offsets and means between block centres so that block edges
    would not show as steps, which mixed in the neighbours' offsets; at high rates, where the decoded means are
    nearly right, that cost more than it smoothed (T11 at quality 10: multilooked PSNR 50.91 dB interpolated,
    51.80 per block; PSNR 39.865 / 39.923; resources/models/MODELS.md). Per-block fixes (FIX_ROUNDS) make each
    block's sum exact. Works in bands of a block's rows (memory: a band, not a tile, of float32 temporaries)."""
    use = use_mask(cur)
    block = layout.block
    targets = block_means(cur.gains, layout.mean_log2_step) * block_counts(use, block)
    c, logm = block_offsets(cur.raw_db, use, targets, block)
    spread = _interpolate if layout.legacy_means else _per_block
    out = np.empty((cur.rows, cur.cols), dtype=np.float32)
    for last in [False] * (FIX_ROUNDS - 1) + [True]:
        fix = np.zeros_like(c)
        for r in range(len(c)):
            band = slice(r * block, min((r + 1) * block, cur.rows))
            rows = band.stop - band.start
            w = pp.db_to_linear(cur.raw_db[band])
            share = _weights(w, np.power(np.float32(10.0), spread(logm, band.start, rows, cur.cols, block)))
            offset = spread(c, band.start, rows, cur.cols, block) * share
            wu = _by_block(w * use[band], block)
            a = wu * np.exp(np.float32(_K) * _by_block(offset, block))
            fix[r] = _solve(a, _by_block(share, block), targets[r], FIX_NEWTON_STEPS)
            if last:
                per_pixel = np.repeat(fix[r].astype(np.float32), block)[: cur.cols]
                out[band] = offset + per_pixel * share
                if layout.caps_offsets:
                    at = _Band(cur.raw_db[band], use[band], wu, share, block)
                    _cap_band(out[band], at, layout.bright_threshold, targets[r], c[r] + fix[r])
        c = c + fix
    return out


@dataclass
class _Band:
    """A band of blocks of a tile as offset_field sees it: decoded dB, the pixels the means count, their linear
    intensity by block (`wu`, _by_block), each pixel's share of its block's offset."""

    raw_db: np.ndarray
    use: np.ndarray
    wu: np.ndarray
    share: np.ndarray
    block: int


def _cap_band(out: np.ndarray, at: _Band, top: float, target: np.ndarray, c: np.ndarray) -> None:
    """Format 12: no pixel but a coded bright target ends above the bright threshold `top`. Where a band's offsets
    (`out`, in place; `c` its blocks' offsets at their mean intensity) would lift a counted pixel past it, those
    blocks' offsets are solved again with each pixel's capped at what takes it to `top`, so that the block's sum
    stays its coded mean (the rest of the block takes more). Spread by intensity, a block's offset lifted pixels
    a few times brighter than the block's mean (the decoded bright spots of a smoothed single-look scene) by up to
    WEIGHT_CAP times its own: at qualities 1-3 on single-look scenes, pixels up to 10 times the raster's largest
    value and 20-40 dB above their own (resources/models/MODELS.md)."""
    cap = np.maximum(np.float32(top) - at.raw_db, np.float32(0))
    lifted = (out > cap) & at.use
    if not lifted.any():  # the usual case: nothing to solve again
        return
    over = _by_block(lifted, at.block).any(-1)
    s, capped = _by_block(at.share, at.block)[over], _by_block(cap, at.block)[over]
    solved = np.array(c, dtype=np.float64)
    solved[over] = _solve_capped(at.wu[over], s, capped, target[over], solved[over], CAP_NEWTON_STEPS)
    cols = np.repeat(over, at.block)[: out.shape[1]]
    per_pixel = np.repeat(solved.astype(np.float32), at.block)[: out.shape[1]]
    out[:, cols] = np.minimum(per_pixel[cols] * at.share[:, cols], cap[:, cols])


def _solve_capped(
    a: np.ndarray, s: np.ndarray, cap: np.ndarray, target: np.ndarray, c: np.ndarray, steps: int
) -> np.ndarray:
    """Per row, c with sum(a 10**(min(c s, cap)/10)) = target: `_solve`'s Newton steps from `c` on a function whose
    capped terms stop growing (a, s, cap >= 0); a row whose every pixel is capped keeps its start."""
    limit = OFFSET_LIMIT_DB / WEIGHT_CAP
    for _ in range(steps):
        c = np.clip(c, -limit, limit)
        d = c.astype(np.float32)[:, None] * s
        free = d < cap
        ae = a * np.exp(np.float32(_K) * np.minimum(d, cap))
        h, dh = ae.sum(-1, dtype=np.float64) - target, _K * (ae * s * free).sum(-1, dtype=np.float64)
        c = np.where(dh > 0, c - h / np.where(dh > 0, dh, 1.0), c)
    return np.clip(c, -limit, limit)


def global_gain_db(global_gain: float) -> np.float32:
    return np.float32(10.0 * math.log10(global_gain))


def strip_gain_db(layout: Layout, cur: Strip, global_gain: float) -> Gain:
    """The dB gain for tile `cur` under the layout's mean correction."""
    if layout.mean_correction == "block":
        return offset_field(layout, cur)
    if layout.mean_correction == "global":
        return global_gain_db(global_gain)
    return np.float32(0)


def finalize_strip(layout: Layout, raw_db: np.ndarray, gain_db: Gain, strip: Strip) -> np.ndarray:
    """Decoded dB + gain + bright residuals -> the input's kind and dtype, invalid pixels restored exactly."""
    db = raw_db + gain_db
    if strip.bright.positions.size:  # positions count in row-major order; raw_db comes column-major
        at = np.unravel_index(strip.bright.positions, db.shape)
        db[at] = layout.bright_threshold + strip.bright.steps * layout.bright_step_db
    out = pp.from_db(db, layout.kind, layout.dtype, layout.scaling)
    keep_off_markers(layout, out)
    if strip.invalid is not None:
        out[strip.invalid] = invalid_values(layout, strip.codes, strip.chunk, out.dtype)
    return out


def keep_off_markers(layout: Layout, out: np.ndarray) -> None:
    """Decoded integer values moved one unit off the values that mark invalid pixels (the band's nodata, and 0 where
    zeros are fill), before the invalid pixels are restored: a valid pixel decoded onto one read back as invalid (a
    dB x 100 band with nodata 0, where 0 dB is raw 0: 28 of 890,694 pixels, a robustness sweep)."""
    if out.dtype.kind not in "iu":
        return
    fill = 0 if pp.zero_is_fill(layout.kind, layout.dtype) else None
    markers = {int(m) for m in (layout.nodata, fill) if m is not None and math.isfinite(m) and float(m).is_integer()}
    limits = np.iinfo(out.dtype)
    for marker in markers:
        hit = out == marker
        if hit.any():  # the nearest value that marks nothing (two markers side by side: nodata 1 beside fill 0)
            near = (marker + d * s for d in range(1, len(markers) + 1) for s in (1, -1))
            out[hit] = next(v for v in near if limits.min <= v <= limits.max and v not in markers)


def invalid_values(layout: Layout, codes: np.ndarray, chunk: str, dtype: np.dtype) -> np.ndarray:
    """The values invalid pixels of `chunk` (Strip.chunk, for errors) had, from their codes (0 nodata, 1 NaN,
    2 +inf, 3 -inf, 4 no-signal zero: strip_payload.invalid_codes)."""
    table = np.array([np.nan, np.nan, np.inf, -np.inf, 0.0], dtype=np.float64)
    if layout.nodata is not None:
        table[0] = layout.nodata
    elif np.any(codes == 0):
        raise ContainerError(f"{chunk}: nodata pixels but no nodata value in the header")
    values = table[codes]
    if np.dtype(dtype).kind in "iu" and not np.all(np.isfinite(values)):
        raise ContainerError(f"{chunk}: non-finite pixels in an integer raster")
    return values.astype(dtype)
