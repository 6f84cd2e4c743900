"""Where SSIM is sensitive: weights for the refinement layer's rate-distortion decisions (encoder only).

SSIM's contrast-structure term loses about e^2 / (2 sigma^2 + C2) for an added squared error e^2, sigma^2 being the
original's variance over SSIM's own window: the same error costs far more SSIM in a quiet area (calm or clipped dark
water, a flat field) than in a busy one (urban, speckle at full strength). Rate-distortion quantization that weighs
every error alike strips the quiet areas of their texture first. Here an error weighs that sensitivity relative to
the one at the raster's 70th percentile of local variance, and never less than plain squared error: the busiest 30 %
of the raster is coded as before, quieter areas keep more of their texture, and rate control pays for it with a
slightly coarser step. The reference is the raster's, measured once in pass 1 (`reference`), not each strip's: with
a per-strip reference, continuous texture beside calm water in one strip and beside a city in the next was coded 1.3
dB / 0.26 SSIM better in the second, a visible step at the strip boundary. Measured by make bench on the real crops
coded to 0.25 / 0.5 / 1 bpp, against the same codec without them (tune="psnr"): SSIM +0.0016 to +0.023, PSNR -0.01
to -0.16 dB (mean -0.07); single-look C11 at 0.5 bpp SSIM 0.511 -> 0.534, from below JPEG 2000's to above.
The decoder neither knows nor needs the weights; refine.encode computes them once a strip's wavelet bands
are built (peak memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...metrics import SSIM_K2, SSIM_WINDOW, gaussian_kernel

TUNES = ("ssim", "psnr")
"""What an encoder's rate-distortion decisions weigh: these weights, or plain squared error."""
BUSY_FRACTION = 0.3
"""Share of a raster (its busiest pixels) coded with plain squared error. With 0.5, C11 at 0.5 bpp measured
+0.002 SSIM over JPEG 2000 where 0.3 gave +0.010; 0.3 costs up to 0.09 dB more PSNR at 1 bpp (T11, T22)."""
MAX_WEIGHT = 16.0
"""A quiet pixel's error counts at most this many times a busy one's."""
LEVEL_EXPONENTS = (1.0, 0.25)
"""Each wavelet level's pooled weights raised to this power, finest first (the levels beyond: 1): the second-finest
level's are tempered to their fourth root. Its 4x4-pixel footprint carries much of the 5x5 means analysts
multilook, and full weights there moved its bits from busy to quiet areas. Measured (0.7.7's session: the 8 real
crops coded to 0.25 / 0.5 / 1 bpp by rate control, against full weights at every level): multilooked (5x5) PSNR
+0.108 / +0.107 / +0.021 dB on average, PSNR +0.018 / +0.040 / +0.016 on the multilooked and oversampled crops and
+0.029 / +0.031 / +0.009 on the single-look ones, for SSIM -0.0032 / -0.0017 / -0.0005 and -0.0024 / -0.0037 /
-0.0027. Tried too: that level unweighted (multilooked PSNR +0.143 / +0.107 / +0.026 for SSIM down to -0.0054),
square roots on the two finest (+0.105 / +0.117 / +0.185 for single-look SSIM -0.0034 / -0.0086 / -0.0082), the
finest unweighted (+0.035 / +0.096 / +0.313, single-look SSIM -0.0149 at 1 bpp), the coarser levels' square roots
(multilooked PSNR down: the coarse weights keep local means), 1.5 on them (no better)."""


BLUR_BLOCK = 32768
"""Values per block of rows the blur works through (128 KB of float32: the block and its taps stay in the cache)."""


def blur(x: np.ndarray) -> np.ndarray:
    """SSIM's gaussian window (11 taps, sigma 1.5), separable, mirrored at the edges (repeatedly on strips
    narrower than the window)."""
    r = SSIM_WINDOW // 2
    k = gaussian_kernel().astype(np.float32)
    for axis in (0, 1):
        padded = np.pad(x, [(r, r) if a == axis else (0, 0) for a in (0, 1)], mode="reflect")
        p = np.ascontiguousarray(np.moveaxis(padded, axis, 0))  # taps along the first axis, rows contiguous
        n = p.shape[0] - 2 * r
        acc = np.empty((n,) + p.shape[1:], dtype=p.dtype)
        rows = max(1, BLUR_BLOCK // max(p.shape[1], 1))
        for r0 in range(0, n, rows):  # a block of rows at a time: its taps stay in the cache
            r1 = min(r0 + rows, n)
            out, tap = acc[r0:r1], np.empty((r1 - r0,) + p.shape[1:], dtype=p.dtype)
            np.multiply(k[0], p[r0:r1], out=out)
            for i in range(1, SSIM_WINDOW):
                out += np.multiply(k[i], p[r0 + i : r1 + i], out=tap)
        x = np.moveaxis(acc, 0, axis)
    return x


@dataclass(frozen=True)
class SsimScale:
    """What the weights are relative to: SSIM's data range (the raster's dB range width, which sets C2) and
    the sensitivity at the raster's BUSY_FRACTION quantile (`reference`)."""

    span: float
    reference: float


def sensitivity(target: np.ndarray, span: float) -> np.ndarray:
    """Per pixel, SSIM's loss per unit of squared error: `target` in dB, `span` SSIM's data range."""
    x = target.astype(np.float32)
    mean = blur(x)
    var = np.maximum(blur(x * x) - mean * mean, 0.0)
    return 1.0 / (2.0 * var + (SSIM_K2 * span) ** 2)


def reference(blocks: list[tuple[np.ndarray, np.ndarray]], span: float, margin: int) -> float:
    """The sensitivity at the BUSY_FRACTION quantile over (dB block, valid mask) pairs cut from a raster, each
    block's `margin` rows and columns left out where the block is large enough (there the window reaches past
    it, into pixels it lacks). A raster with no valid pixel there weighs like plain squared error."""
    values = []
    for db, valid in blocks:
        s = sensitivity(db, span)
        inner = tuple(slice(margin, n - margin) if n > 4 * margin else slice(0, n) for n in s.shape)
        values.append(s[inner][valid[inner]])
    pooled_values = np.concatenate(values)
    if pooled_values.size == 0:
        return float(1.0 / (SSIM_K2 * span) ** 2)
    return float(np.quantile(pooled_values, BUSY_FRACTION))


def pixel_weights(target: np.ndarray, scale: SsimScale) -> np.ndarray:
    """Per pixel, how much an error there counts (>= 1): `target` in dB."""
    return np.clip(sensitivity(target, scale.span) / scale.reference, 1.0, MAX_WEIGHT).astype(np.float32)


def pooled(weights: np.ndarray, levels: int) -> list[np.ndarray]:
    """The weights averaged over each wavelet level's footprint (2x2, 4x4, ... pixels), finest first: a
    coefficient's error spreads over the pixels it synthesises; each level's raised to its LEVEL_EXPONENTS."""
    out = []
    w = weights
    for level in range(levels):
        h, wd = w.shape
        w = np.pad(w, ((0, h % 2), (0, wd % 2)), mode="edge")
        w = w.reshape(w.shape[0] // 2, 2, w.shape[1] // 2, 2).mean(axis=(1, 3))
        exponent = LEVEL_EXPONENTS[level] if level < len(LEVEL_EXPONENTS) else 1.0
        out.append(w if exponent == 1.0 else np.power(w, np.float32(exponent)))
    return out
