"""The table bank: the quantized-Laplace laws a group of coefficients is coded under (one of N_SCALES scales, chosen
by the encoder per group), the dead-zone quantizer they model, and the code of each group's table index (a
difference from its prediction, contexts.ScalePrediction). Built from math on constants and rounded to integers, so
every machine holds the same tables."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from .codes import TOTAL, quantize_pmf

DEAD_ZONE = 0.05
"""Rounding threshold offset: |c| / step below 0.5 + DEAD_ZONE is 0 (cheaper zeros). With the
rate-distortion zeroing below, 0.05 measured best of 0 / 0.05 / 0.1 on the real crops (0.1 without it); with the
lowering of larger values, 0 and 0.05 measured the same (mean +0.003 dB for 0)."""

ALPHABET = 24
"""Symbols -ALPHABET..ALPHABET are in the tables; larger magnitudes escape to a varint side stream."""
N_SCALES = 56
SCALES = 2.0 ** (np.arange(N_SCALES) / 4.0 - 6.0)
"""Laplace scales of the table bank (in steps), 1/64 to about 200."""


def quantize(c: np.ndarray, step: float) -> np.ndarray:
    """int32: a strip's symbols are as many as its pixels (peak memory); |values| stay far below 2**31 (the
    clipped dB range over a step of at least 0.002 of it, times the low band's gain of 2**LEVELS)."""
    return (np.sign(c) * np.floor(np.abs(c) / step + 0.5 - DEAD_ZONE)).astype(np.int32)


@lru_cache(maxsize=1)
def _laplace_masses() -> tuple[tuple[float, np.ndarray, float], ...]:
    """Per scale of the bank: the probabilities of a dead-zone-quantized Laplace value at 0, at each magnitude
    1..ALPHABET on one side, and beyond (the escape)."""
    k = np.arange(1, ALPHABET + 1, dtype=np.float64)
    out = []
    for b in SCALES:
        zero = 1.0 - np.exp(-(0.5 + DEAD_ZONE) / b)
        side = 0.5 * (np.exp(-(k - 0.5 + DEAD_ZONE) / b) - np.exp(-(k + 0.5 + DEAD_ZONE) / b))
        out.append((zero, side, np.exp(-(ALPHABET + 0.5 + DEAD_ZONE) / b)))
    return tuple(out)


@lru_cache(maxsize=1)
def bank() -> tuple[np.ndarray, np.ndarray]:
    """Integer frequencies (N_SCALES, 2 * ALPHABET + 2; the last is the escape) of dead-zone-quantized Laplace
    densities, and their code lengths in bits. Built from math on constants, rounded to 16-bit integers."""
    masses = _laplace_masses()
    freqs = np.array(
        [quantize_pmf(np.concatenate([side[::-1], [zero], side, [escape]])) for zero, side, escape in masses],
        dtype=np.int64,
    )
    return freqs, np.log2(TOTAL) - np.log2(freqs)


@lru_cache(maxsize=1)
def _folded_bank() -> np.ndarray:
    """The bank's laws of magnitudes (N_SCALES, ALPHABET + 2: 0, 1..ALPHABET, the escape), for values whose signs
    are coded apart (sign_contexts)."""
    return np.array(
        [quantize_pmf(np.concatenate([[zero], 2.0 * side, [escape]])) for zero, side, escape in _laplace_masses()],
        dtype=np.int64,
    )


@lru_cache(maxsize=2 * N_SCALES)
def categorical(scale: int, folded: bool = False) -> Any:
    import constriction

    table = _folded_bank()[scale] if folded else bank()[0][scale]
    return constriction.stream.model.Categorical(table.astype(np.float64) / TOTAL, perfect=False)


def table_indices(q: np.ndarray) -> np.ndarray:
    """Table index of each symbol (escape = 2 * ALPHABET + 1)."""
    return np.where(np.abs(q) > ALPHABET, 2 * ALPHABET + 1, q + ALPHABET).astype(np.int32)


@lru_cache(maxsize=2)
def _delta_freqs(delta_scale: float) -> np.ndarray:
    """Integer frequencies of the table-index differences -(N_SCALES - 1)..N_SCALES - 1 (symbol = difference +
    N_SCALES - 1): a discrete Laplace of `delta_scale`."""
    d = np.arange(-(N_SCALES - 1), N_SCALES, dtype=np.float64)
    return quantize_pmf(np.exp(-np.abs(d) / delta_scale))


@lru_cache(maxsize=2)
def index_bits(delta_scale: float) -> np.ndarray:
    """The code length of each table-index difference's symbol."""
    return np.log2(TOTAL) - np.log2(_delta_freqs(delta_scale))


@lru_cache(maxsize=2)
def index_delta_model(delta_scale: float) -> Any:
    import constriction

    return constriction.stream.model.Categorical(_delta_freqs(delta_scale).astype(np.float64) / TOTAL, perfect=False)


def table_costs(indices: np.ndarray) -> np.ndarray:
    """The bits of table indices `indices` under each table of the bank."""
    return bank()[1] @ np.bincount(indices, minlength=2 * ALPHABET + 2)


def best_scale(indices: np.ndarray) -> int:
    """The table that codes `indices` in the fewest bits: what the lowering assumes a group gets (it ignores the
    index's bits, which only small groups' choices feel: their prediction chains too measured within 0.01 dB)."""
    return int(np.argmin(table_costs(indices)))


@lru_cache(maxsize=1)
def saved_bits() -> np.ndarray:
    """Per table and magnitude m = 1..ALPHABET (column m - 1): the bits coding m - 1 instead of m saves."""
    bits = bank()[1]
    return bits[:, ALPHABET + 1 : 2 * ALPHABET + 1] - bits[:, ALPHABET : 2 * ALPHABET]


def table_bits(symbols: np.ndarray) -> float:
    """The bits of a subband's symbols under the one table that codes them best: what the encoder compares a
    subband's coding with and without its inter-scale predictor or phase law by (its contexts would split it
    finer)."""
    return float(np.min(table_costs(table_indices(symbols.reshape(-1)))))


def in_tables(values: np.ndarray) -> np.ndarray:
    """Where `values` (a phase's, or the decoder's magnitudes before their signs) are non-zero and within the tables:
    what the lowering may lower and the sign laws code a sign for (an escaped value keeps its value, and its sign
    rides with its distance in the escape stream)."""
    return np.flatnonzero((values != 0) & (np.abs(values) <= ALPHABET))
