"""Inter-scale prediction (format 9): a detail level's LH and HL subbands predicted from the decoded image one level
up (the approximation at that level's resolution) by a 7x7 linear filter the encoder fits on each tile.

Why: a product sampled finer than its resolution (Sentinel-1 GRD: 10 m pixels for ~20 m resolution; anything
resampled onto a map grid) has little signal at its finest scale, and what the 9/7's fixed predict steps leave in
the finest subbands there is largely the filters' transition band, linear in the band above. Measured on the real
crops (least squares on the decoded approximation at 0.25-1 bpp): 18-21 % of the finest LH's and HL's energy on the
rescaled Sentinel-1 patch (GEFOLKI), 7 % and 3 % on Sentinel-1 GRD (Sen1Floods11), 2 % and 0.2 % on AIRSAR T22,
and under 1.5 % of HH's anywhere, so HH is not predicted. A product four times oversampled has an empty finest level
and the same structure one level up, so the level above is predicted too (on an ideally 4x oversampled scene: 10-22
% fewer bytes); the format leaves room for four levels (LEVELS), the encoder tries two (refine.INTERSCALE_LEVELS).

How: one more predict step after the fixed CDF 9/7 lifting, as learned lifting adds trained ones while keeping the
9/7 steps (Li, Naman & Taubman, "Exploration of learned lifting-based transform structures for fully scalable and
accessible wavelet-like image compression", arXiv 2402.18761: retaining the fixed steps is what matters most),
but linear and fitted to each tile, as adaptive lifting optimizes its prediction filters to the image (Kaaniche,
Pesquet-Popescu, Benazza-Benyahia & Pesquet, "Adaptive lifting scheme with sparse criteria for image coding",
EURASIP J. Adv. Signal Process. 2012:10), and by least squares like the loop filter
(engine.codec.restoration.loop_filter): no training set, no bundled weights, and it follows whatever oversampling a
sensor or a resampling left. Closed loop: the filter reads the approximation the decoder has (the coarser subbands
as coded, their own predictions included), the encoder codes what it leaves of LH and HL, and the decoder adds the
same prediction back. The prediction is elementwise float64 arithmetic in a fixed order on decoded values, so every
machine computes the same one (the decoded tile drives the bright targets' contexts).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...errors import ContainerError

RADIUS = 3
"""7x7 support. Measured on GEFOLKI (share of LH's energy predicted, and PSNR at 1 bpp in the codec): radius 1
7.5 % (+0.07 dB), 3 21 % (+0.30 dB); radius 4 (80 taps) gained GEFOLKI 0.01-0.03 dB more, Sen1Floods11 0.01 less."""
OFFSETS = tuple((dy, dx) for dy in range(-RADIUS, RADIUS + 1) for dx in range(-RADIUS, RADIUS + 1) if dy or dx)
"""The 48 taps act on x(p + d) - x(p): a flat approximation predicts nothing, so the fit ignores the tile's level."""
BANDS = (0, 1)
"""LH and HL (a level's first two subbands in coding order); HH is not predicted."""
LEVELS = 4
"""The detail levels a file may predict, from the finest: one flags byte holds two bits for each."""
SLOTS = LEVELS * len(BANDS)
FIT_ROW_STEP = 4
"""The fit sees one subband row in four (a 1024x1024 tile: 65,536 samples for 48 taps)..."""
SCREEN_ROW_STEP = 32
"""...after a fit on one row in 32 said it pays (MIN_SHARE; 8,192 samples on a 1024x1024 tile): an eighth of the
fit's time where it does not (a single-look 1024x1024 tile, best of 6: the refinement layer's encoding took 105-106
ms without the predict step, 115 ms with a screen on one row in 16, 110 ms on one in 32)."""
MIN_SAMPLES = 64 * len(OFFSETS)
"""A subband fits only with this many samples (fewer: the taps would fit the noise)."""
_SCREEN_STEPS = tuple(SCREEN_ROW_STEP >> i for i in range(8) if SCREEN_ROW_STEP >> i > FIT_ROW_STEP)
MIN_SHARE = 0.02
"""A subband whose fit predicts less than this share of its sampled energy gets no predictor, before the encoder
prices one (which costs a prediction and a quantization of the subband): below it the bits saved paid for the
predictor only at rates near 3 bpp, where they were 0.02 % of the file (a single-look scene) for a quarter more
coding time. GEFOLKI's LH and HL measured 21 % and 18 %, Sen1Floods11's 7 % and 3 %, AIRSAR T22's 2 % and 0.2 %."""
MAX_SHIFT = 30
_HEAD = struct.Struct("<b")
PREDICTOR_BYTES = _HEAD.size + len(OFFSETS)
PREDICTOR_BITS = 8 * PREDICTOR_BYTES
"""What a predictor costs in the side information before it is deflated: its scale and 48 int8 taps."""


def slot(level: int, band: int) -> int:
    """A predictor's place in the side information: level 1 (the finest) LH, HL, then level 2's, ..."""
    return (level - 1) * len(BANDS) + band


@dataclass(frozen=True)
class Predictor:
    """A subband's prediction filter: int8 taps on x(p + d) - x(p) over OFFSETS, in units of 2**-shift."""

    shift: int
    taps: np.ndarray

    def apply(self, approx: np.ndarray, shape: tuple[int, int], row_step: int = 1) -> np.ndarray:
        """The prediction of a subband of `shape` (or of one row in `row_step` of it) from the approximation (at
        least that large; its top-left part is the subband's grid): -(sum of the taps) x(p), then each tap's
        x(p + d) added in OFFSETS order, in float64 (the taps' scale is a power of two and their sum an integer:
        every weight is exact), so every machine computes the same values."""
        x, (h, w) = _padded(approx, shape), shape
        scale = 2.0**-self.shift
        taps = self.taps.tolist()
        out = x[RADIUS : RADIUS + h : row_step, RADIUS : RADIUS + w] * (-sum(taps) * scale)
        term = np.empty_like(out)
        for (dy, dx), tap in zip(OFFSETS, taps):
            if tap:
                np.multiply(
                    x[RADIUS + dy : RADIUS + dy + h : row_step, RADIUS + dx : RADIUS + dx + w], tap * scale, out=term
                )
                out += term
        return out


def _padded(approx: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The approximation cut to the subband's grid (LH drops its last row on odd heights, HL its last column), with
    RADIUS mirrored samples around it."""
    h, w = shape
    if approx.shape[0] < h or approx.shape[1] < w:
        raise ValueError(f"approximation {approx.shape} is smaller than the subband {shape}")
    return np.pad(
        np.ascontiguousarray(approx[:h, :w], dtype=np.float64), RADIUS, mode="symmetric"
    )  # C order: fast rows


def fit(approx: np.ndarray, target: np.ndarray) -> Optional[Predictor]:
    """Least-squares taps predicting `target` (a subband's values, before quantization) from the approximation, on
    one row in FIT_ROW_STEP, quantized to int8 under the finest scale that holds them; None when the subband is too
    small to fit or they would predict less than MIN_SHARE of its energy (judged first on one row in
    SCREEN_ROW_STEP, or in the coarsest step that holds enough samples: most tiles of most products stop there)."""
    rows = target.shape[0]

    def enough(row_step: int) -> bool:
        return len(range(0, rows, row_step)) * target.shape[1] >= MIN_SAMPLES

    if not enough(FIT_ROW_STEP):
        return None
    x = _padded(approx, target.shape)
    screen = next((step for step in _SCREEN_STEPS if enough(step)), None)
    if screen is not None and _least_squares(x, target, screen)[1] < MIN_SHARE:
        return None
    coef, share = _least_squares(x, target, FIT_ROW_STEP)
    if share < MIN_SHARE:
        return None
    peak = float(np.max(np.abs(coef)))
    shift = int(np.clip(np.floor(np.log2(127.0 / peak)), 0, MAX_SHIFT))
    taps = np.clip(np.rint(coef * 2.0**shift), -127, 127).astype(np.int8)
    return Predictor(shift, taps) if np.any(taps) else None


def _least_squares(x: np.ndarray, target: np.ndarray, row_step: int) -> tuple[np.ndarray, float]:
    """The taps fitted on one row in `row_step` of the padded approximation `x`, and the share of those rows'
    energy they predict beyond what as many taps would explain of white noise (adjusted R^2: the screen's 4,096
    samples would otherwise read 1.2 % into noise), 0 where nothing is."""
    h, w = target.shape
    centre = x[RADIUS : RADIUS + h : row_step, RADIUS : RADIUS + w]
    features = np.stack(
        [
            (x[RADIUS + dy : RADIUS + dy + h : row_step, RADIUS + dx : RADIUS + dx + w] - centre).reshape(-1)
            for dy, dx in OFFSETS
        ],
        axis=1,
    )
    y = np.asarray(target[::row_step], dtype=np.float64).reshape(-1)
    cross = features.T @ y
    coef = np.linalg.lstsq(features.T @ features, cross, rcond=None)[0]
    energy, explained = float(y @ y), float(coef @ cross)
    if not (np.all(np.isfinite(coef)) and energy > 0.0 and np.any(coef)):
        return coef, 0.0
    return coef, explained / energy - len(OFFSETS) / y.size  # less what 48 taps explain of pure noise


def encode(predictors: list[Optional[Predictor]]) -> bytes:
    """A flags byte (bit i: slot i has a predictor), then each predictor's shift and taps in slot order."""
    flags = sum(1 << i for i, p in enumerate(predictors) if p is not None)
    return bytes([flags]) + b"".join(_HEAD.pack(p.shift) + p.taps.astype(np.int8).tobytes() for p in predictors if p)


def split(data: bytes) -> tuple[bytes, bytes]:
    """The predictors' part of `data` (what `decode` reads: its flags say how long it is) and what follows it."""
    if not data:
        raise ContainerError("refinement layer side information: no inter-scale prediction flags")
    size = 1 + bin(data[0]).count("1") * PREDICTOR_BYTES  # a flags byte: SLOTS bits
    return data[:size], data[size:]


def decode(data: bytes) -> list[Optional[Predictor]]:
    """`encode`'s predictors back, one per slot (None where there is none); ContainerError when `data` is not
    exactly that."""
    if not data:
        raise ContainerError("refinement layer side information: no inter-scale prediction flags")
    flags, pos, out = data[0], 1, []
    for i in range(SLOTS):
        if not flags >> i & 1:
            out.append(None)
            continue
        end = pos + PREDICTOR_BYTES
        if len(data) < end:
            raise ContainerError("refinement layer side information: truncated inter-scale predictor")
        (shift,) = _HEAD.unpack_from(data, pos)
        if not 0 <= shift <= MAX_SHIFT:
            raise ContainerError("refinement layer side information: inter-scale predictor out of range")
        out.append(Predictor(shift, np.frombuffer(data, dtype=np.int8, count=len(OFFSETS), offset=pos + 1).copy()))
        pos = end
    if pos != len(data):
        raise ContainerError("refinement layer side information: trailing bytes after the inter-scale predictors")
    return out
