"""Sign contexts (format 10): the sign of a detail subband's second-phase coefficient coded under a probability
from the signs of its four neighbours, which the first phase decoded, by a two-weight logistic law the encoder fits
to each subband of each tile and keeps where it saves more than its own two bytes.

Why: the refinement layer's tables are symmetric, so every non-zero value paid one bit for its sign, and signs were
17-21 % of a tile's bits. Where a sensor's or a resampling's impulse response spreads a feature over neighbouring
samples, neighbouring coefficients agree or alternate in sign. Measured on the real crops' final symbols
(quality 6 and 10; one fitted law per subband per tile, its two bytes and flag counted): 1.7-1.8 % of the refinement
layer's bits on AIRSAR T11/T22/T33, 1.8-4.5 % on GEFOLKI, 1.7-2.5 % on Sen1Floods11, 0.1-0.5 % on the single-look
C11-C33. A law trained on the other crops instead of fitted per tile saved less on the multilooked crops and lost
0.3-1 % on the single-look ones (there the neighbours' signs tell the opposite story), so the law is fitted per
tile, as the loop filter and the inter-scale predictors are. First-phase signs stay at one bit: their decoded
neighbours are in other subbands, and the parent's sign or the siblings' product told 0.1 % and under 1 % of them.

How: JPEG 2000's EBCOT codes each sign under a context of its horizontal and vertical neighbours' signs (Taubman,
"High performance scalable image compression with EBCOT", IEEE Trans. Image Processing 9(7), 2000; five contexts and
adaptive probabilities); here a sign's context is z = horizontal * (left + right) + vertical * (up + down), the law's
integer weights times the neighbours' signs, and its probability of being positive is a fixed 16-bit table of the
logistic of z / SCALE (float math on small integers, rounded once, as the Laplace bank is): every machine decodes the
same bits. Escaped neighbours count 0 (the decoder learns their sign after the walk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import numpy as np

from .codes import PAIR_BITS, TOTAL, decode_pairs, encode_pairs, quantize_pmf

SCALE = 8
"""Weight steps per unit of logit: a weight of 8 makes a sign whose two neighbours on that axis agree with it
e^2 = 7.4 times likelier than its opposite."""
MAX_WEIGHT = 64
"""|weight| at most: a context of 4 x 64 / 8 = 32 logits is certainty at 16-bit precision."""
Z_MAX = 4 * MAX_WEIGHT
"""The largest |z| a law gives (two neighbours on each axis agreeing at the largest weights)."""
MODEL_BITS = PAIR_BITS
"""What a law costs in the side information (two int8 weights) before it is deflated: the least it must save."""
_SUMS = np.arange(-2, 3)
"""The values a sum of two neighbours' signs takes."""


@dataclass(frozen=True)
class SignLaw:
    """A subband's sign law: the weights of its horizontal (left + right) and vertical (up + down) neighbours' sign
    sums."""

    horizontal: int
    vertical: int

    def contexts(self, horizontal_sums: np.ndarray, vertical_sums: np.ndarray) -> np.ndarray:
        """Each sign's context z (an integer within +-Z_MAX) from its neighbours' sign sums."""
        return self.horizontal * horizontal_sums.astype(np.int32) + self.vertical * vertical_sums.astype(np.int32)


Laws = list[Optional[SignLaw]]
"""One per detail subband in coding order (refine's subband k at index k - 1), None where its signs cost a bit."""


@lru_cache(maxsize=2 * Z_MAX + 1)
def freqs(z: int) -> np.ndarray:
    """Integer frequencies (negative, positive) of a sign in context z."""
    p = 1.0 / (1.0 + np.exp(-z / SCALE))
    return quantize_pmf(np.array([1.0 - p, p]))


@lru_cache(maxsize=2 * Z_MAX + 1)
def model(z: int) -> Any:
    """The coder's model of a sign in context z (`freqs`, exact in float64)."""
    import constriction

    return constriction.stream.model.Categorical(freqs(z).astype(np.float64) / TOTAL, perfect=False)


@lru_cache(maxsize=1)
def _bit_table() -> np.ndarray:
    """The code lengths of a negative and a positive sign in each context -Z_MAX..Z_MAX (rows)."""
    f = np.array([freqs(z) for z in range(-Z_MAX, Z_MAX + 1)], dtype=np.float64)
    return np.log2(TOTAL) - np.log2(f)


def groups(z: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The coding order of signs in contexts `z` (by context, stable), and each context's (z, start, stop) in it:
    both sides walk the same groups."""
    order = np.argsort(z.astype(np.int16), kind="stable")  # |z| <= Z_MAX: int16's stable sort is a radix sort
    values, starts = np.unique(z[order], return_index=True)
    stops = np.append(starts[1:], z.size)
    return order, [(int(v), int(a), int(b)) for v, a, b in zip(values, starts, stops)]


def fit(horizontal_sums: np.ndarray, vertical_sums: np.ndarray, positive: np.ndarray) -> Optional[SignLaw]:
    """The law that codes these signs in the fewest bits, when that saves more than MODEL_BITS against a bit each
    (encoder). Fitted on the counts of the 25 neighbour patterns: Newton's method on the logistic likelihood, then
    the best integer weights around the rounded optimum under the coder's own tables."""
    if positive.size * 0.05 < MODEL_BITS:  # even 5 % of their bits would not pay for the law
        return None
    pattern = (horizontal_sums.astype(np.intp) + 2) * 5 + (vertical_sums.astype(np.intp) + 2)
    plus = np.bincount(pattern[positive], minlength=25).astype(np.float64)
    total = np.bincount(pattern, minlength=25).astype(np.float64)
    x = np.stack(np.meshgrid(_SUMS, _SUMS, indexing="ij"), axis=-1).reshape(25, 2).astype(np.float64)
    w = _newton(x, plus, total)
    best, best_bits = None, float(positive.size) - MODEL_BITS
    centre = np.clip(np.rint(w * SCALE), -MAX_WEIGHT, MAX_WEIGHT).astype(int)
    for da in (-1, 0, 1):
        for db in (-1, 0, 1):
            a, b = (int(np.clip(c + d, -MAX_WEIGHT, MAX_WEIGHT)) for c, d in zip(centre, (da, db)))
            bits = _bit_table()[(a * x[:, 0] + b * x[:, 1]).astype(np.intp) + Z_MAX]
            bits = float(plus @ bits[:, 1] + (total - plus) @ bits[:, 0])
            if bits < best_bits:
                best, best_bits = SignLaw(a, b), bits
    return best


def _newton(x: np.ndarray, plus: np.ndarray, total: np.ndarray, iterations: int = 12) -> np.ndarray:
    """Maximum-likelihood weights (in logits) of the logistic law on pattern counts, to well within a weight step
    (a small ridge keeps a subband whose neighbours always agree finite: the weights are clipped anyway)."""
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (plus - total * p)
        hessian = (x * (total * p * (1.0 - p))[:, None]).T @ x + 1e-3 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w = w + step
        if np.max(np.abs(step)) < 1e-3 / SCALE:
            break
    return w


def encode(laws: Sequence[Optional[SignLaw]]) -> bytes:
    """Flag bytes (a bit per detail subband), then each law's two int8 weights (codes.encode_pairs)."""
    return encode_pairs([None if law is None else (law.horizontal, law.vertical) for law in laws])


def decode(data: bytes, n: int) -> Laws:
    """`encode`'s laws of `n` detail subbands back; ContainerError when `data` is not exactly that."""
    return [None if p is None else SignLaw(*p) for p in decode_pairs(data, n, MAX_WEIGHT, "sign law")]
