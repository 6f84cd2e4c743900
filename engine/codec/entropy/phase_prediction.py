"""Phase prediction (format 10): a detail subband's second checkerboard phase predicted from its first, by a
two-weight linear law of each cell's four decoded neighbours that the encoder fits to each subband of each tile and
keeps where the bits it saves outweigh its own and the error it adds.

Why: the CDF 9/7 decorrelates an image whose spectrum falls with frequency; a SAR product whose samples are
correlated (an impulse response wider than a pixel, multilooking, resampling onto a map grid) keeps much of its
detail subbands' energy predictable from neighbouring coefficients of the same subband. Measured on the real crops
(least squares of a second-phase coefficient on the sums of its horizontal and of its vertical neighbours): the
finest LH 42 % of its energy on AIRSAR T11-T33, 74 % on GEFOLKI, 47 % on Sen1Floods11, 6-11 % on the single-look
C11-C33; on the coded symbols themselves, 19-26 % of all second-phase energy on AIRSAR, 7-9 % on GEFOLKI and
Sen1Floods11, 5-12 % single-look. The inter-scale predictors (transform.interscale) find 0.2-21 % from the level above;
this is the same idea inside a level: lifting's predict step, one more time, on the quantized values (a DPCM step in
the quantization loop, as in near-lossless wavelet coders; closed loop, so the decoder predicts from what it has).

How: the prediction is in quantizer steps, u = (horizontal (q(left) + q(right)) + vertical (q(up) + q(down))) /
2**SHIFT from the first-phase neighbours' decoded integers q (0 outside the subband), so it is exact in float64 on
every machine; the second phase's value is its prediction plus (symbol + u) steps, the encoder quantizes what is left
after u, and the decoder adds u once the walk (and the escapes) have given it the first phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .codes import PAIR_BITS, decode_pairs, encode_pairs

SHIFT = 6
"""Weights in 1/64 of a step per unit of the neighbours' sum: a least-squares weight of 0.4 is 26 units, rounded by at
most half a unit."""
MAX_WEIGHT = 127
MIN_SHARE = 0.01
"""A second phase whose law would predict less than this share of its energy gets none, before the encoder prices
one (a pricing, a quantization and two lowering passes of the phase): on a single-look 1024x1024 tile the finest
level's laws that paid predicted 0.07-0.4 % and saved 0.03 % of its bytes, for 40 % more encoding time."""
LAW_BITS = PAIR_BITS
"""What a law costs in the side information (two int8 weights) before it is deflated."""


@dataclass(frozen=True)
class PhaseLaw:
    """A subband's phase law: the weights of its horizontal (left + right) and vertical (up + down) neighbours."""

    horizontal: int
    vertical: int

    def offsets(self, horizontal_sums: np.ndarray, vertical_sums: np.ndarray) -> np.ndarray:
        """u (in steps, float64, exact: an integer over 2**SHIFT) from second-phase cells' sums of their
        neighbours' symbols (`second_phase_sums`)."""
        return (self.horizontal * horizontal_sums + self.vertical * vertical_sums) / float(1 << SHIFT)


def second_phase_sums(values: np.ndarray, second: np.ndarray, dtype: Any = np.int64) -> tuple[np.ndarray, np.ndarray]:
    """The sums of the left + right and up + down neighbours' `values` (cells outside the subband count 0), in
    `dtype`, at flat positions `second`: second-phase cells, whose four neighbours are all first-phase cells. int64
    for symbols (two escaped neighbours overflow int32); the sign laws pass signs in int8."""
    p = np.pad(values.astype(dtype), 1)
    horizontal, vertical = p[1:-1, :-2] + p[1:-1, 2:], p[:-2, 1:-1] + p[2:, 1:-1]
    return horizontal.reshape(-1)[second], vertical.reshape(-1)[second]


Laws = list[Optional[PhaseLaw]]
"""One per detail subband in coding order (refine's subband k at index k - 1), None where it is not predicted."""


def fit(residual: np.ndarray, horizontal_sums: np.ndarray, vertical_sums: np.ndarray) -> Optional[PhaseLaw]:
    """The least-squares law predicting `residual` (second-phase values, in steps) from its neighbours' sums of
    symbols, rounded to the weights' grid; None where it rounds to nothing or would predict less than MIN_SHARE of
    the phase's energy (encoder; whether it pays is the caller's to price)."""
    x = np.stack([horizontal_sums, vertical_sums], axis=1).astype(np.float64)
    gram, cross = x.T @ x, x.T @ residual
    energy = float(residual @ residual)
    if energy <= 0.0 or np.linalg.matrix_rank(gram) < 2:
        return None
    w = np.linalg.solve(gram, cross)
    if float(w @ cross) < MIN_SHARE * energy:
        return None
    weights = np.clip(np.rint(w * (1 << SHIFT)), -MAX_WEIGHT, MAX_WEIGHT).astype(int)
    return PhaseLaw(int(weights[0]), int(weights[1])) if np.any(weights) else None


def encode(laws: Sequence[Optional[PhaseLaw]]) -> bytes:
    """Flag bytes (a bit per detail subband), then each law's two int8 weights (codes.encode_pairs)."""
    return encode_pairs([None if law is None else (law.horizontal, law.vertical) for law in laws])


def decode(data: bytes, n: int) -> Laws:
    """`encode`'s laws of `n` detail subbands back; ContainerError when `data` is not exactly that."""
    return [None if p is None else PhaseLaw(*p) for p in decode_pairs(data, n, MAX_WEIGHT, "phase law")]
