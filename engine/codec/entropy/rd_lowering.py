"""The encoder's rate-distortion lowering: a coded value becomes one step smaller where the bits that saves (its
own, under its group's table, and those its four second-phase neighbours save in quieter contexts) are worth more
than the error it adds, weighted where SSIM is sensitive (ssim_weights). Encoder only: the decoder never sees it."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, Optional

import numpy as np

from . import ssim_weights
from .contexts import CONTEXTS, NEIGHBOUR_WEIGHT, Done, Phase, fit_shape, phase_cells, second_phase, traverse
from .tables import bank, best_scale, in_tables, saved_bits, table_indices

RDO_LAMBDA = 0.12
"""Squared steps of error one bit is worth: near the slope of a uniform quantizer at high rate (D = step^2 / 12
per coefficient, -2 ln 2 D per bit: ln 2 / 6 = 0.116). Earlier rounds measured PSNR and SSIM only and kept 0.10
(0.08 / 0.09 / 0.10 / 0.116, then 0.085 / 0.10 / 0.12 once values above 1 were lowered too). With format 8 and the
multilooked (5x5) PSNR measured too (8 real crops coded to 0.25 / 0.5 / 1 bpp, mean over the three rates, against
0.10): 0.085 multilooked PSNR -0.12 dB on the multilooked crops; 0.11 +0.07; 0.12 +0.14 for PSNR -0.003 (single-
look PSNR +0.018, SSIM -0.0016); 0.13 +0.19 for PSNR -0.015; 0.15 +0.27 for -0.029; 0.2 +0.45 for -0.086. A
larger lambda lowers more fine detail, and rate control pays with a finer step, which the coarse scales (what 5x5
means see) keep. 0.12 is where that costs PSNR nothing measurable; a larger one on the finest level only, or on all
but it, traded worse."""
RDO_PASSES = 2
"""Rounds of lowering (each changes the contexts the next one sees); the second adds ~0.01 dB, a third nothing."""


def error_weights(
    target: np.ndarray, ssim: Optional[ssim_weights.SsimScale], shapes: list[tuple[int, int]]
) -> list[Any]:
    """Each subband's error weights (coding order): SSIM's, pooled over each level's footprint; 1.0 without."""
    if ssim is None:
        return [1.0] * len(shapes)
    levels = (len(shapes) - 1) // 3
    weights = ssim_weights.pixel_weights(target, ssim)
    per_level = ssim_weights.pooled(weights, levels)[::-1]  # coarsest first, as the subbands
    low = per_level[0] if levels else weights  # the low band has the coarsest level's footprint
    return [fit_shape(low, shapes[0])] + [fit_shape(per_level[(k - 1) // 3], s) for k, s in enumerate(shapes) if k]


def rdo_lower(
    symbols: list[np.ndarray],
    residuals: list[np.ndarray],
    steps: list[float],
    weights: list[Any],
    start: int = 0,
    neighbour_bits: bool = True,
) -> None:
    """Encoder-only rate-distortion quantization: a coefficient m steps out becomes m - 1 where the bits that
    saves, under the table its group gets, are worth more than the squared error it adds ((2 (x - m) + 1)
    steps^2 for a coefficient x steps from 0; 2x - 1 for a 1 that becomes 0), times the error's weight where
    it lands (ssim_weights: where the original varies little, errors count more). An isolated 1 in a quiet
    neighbourhood goes, a 1 among busy ones stays: what JPEG 2000's rate allocation gets by truncating each
    code-block's bit-planes where its slope is too low. Lowering larger values too (not only 1 -> 0) measured
    +0.01 to +0.04 dB at 0.25-1 bpp on the real crops, and lifted SSIM at 0.25 bpp. Only subbands from `start`
    (coding order) are lowered: a subband's decisions depend on coarser ones only, so the coarse subbands can be
    settled before a finer level is predicted from them. A lowered first-phase magnitude also quiets its four
    second-phase neighbours' contexts, and the bits that saves in their groups count with its own (`Walk.fed`):
    an isolated value in a quiet neighbourhood costs more than its own bits. Measured against the lowering on own
    bits alone (8 real crops coded to 0.25 / 0.5 / 1 bpp by rate control, probe): PSNR +0.023 / +0.023 / +0.028 dB
    on the multilooked and oversampled crops, +0.026 / +0.015 / +0.013 on single-look, SSIM within 0.002,
    multilooked PSNR +0.025 / +0.010 / +0.049 and +0.016 / -0.013 / +0.005. Counting the children's and later
    siblings' contexts too (whose activity a magnitude also feeds) added at most 0.004 dB for twice the time.
    Without `neighbour_bits`, each value is priced on its own bits (0.5.0's encoder: the ablation)."""
    walk = Walk(symbols, neighbour_bits)
    lowered = [walk.lowering(ph, values, residuals, steps, weights) for ph, values in walk.phases if ph.k >= start]
    for k, at, v in lowered:
        symbols[k].reshape(-1)[at] = v


_STEPS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
"""The four neighbours' (row, column) offsets."""


class Walk:
    """One walk over the encoder's symbols as they stand (`phases`: each phase as grouped, with its symbols in
    order), and what the lowering prices with: each phase's per-bucket tables, made when first asked for, and the
    bits a first-phase magnitude saves in its neighbours' contexts."""

    def __init__(self, symbols: list[np.ndarray], neighbour_bits: bool = True) -> None:
        self.symbols, self.neighbour_bits = symbols, neighbour_bits
        self.phases: list[tuple[Phase, np.ndarray]] = []

        def visit(ph: Phase) -> np.ndarray:
            values = symbols[ph.k].reshape(-1)[ph.order]
            self.phases.append((ph, values))
            return values

        traverse([s.shape for s in symbols], visit, CONTEXTS)
        self._at = {(ph.k, ph.phase): i for i, (ph, _) in enumerate(self.phases)}
        self._tables: dict[tuple[int, int], np.ndarray] = {}
        self._quieter: dict[int, np.ndarray] = {}

    def lowering(
        self, ph: Phase, values: np.ndarray, residuals: list[np.ndarray], steps: list[float], weights: list[Any]
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """`_lowering` of one walked phase, a first phase's bits saved in its neighbours' contexts counted too."""
        if not in_tables(values).size:  # nothing to lower: no tables to make
            return ph.k, np.zeros(0, np.intp), np.zeros(0, values.dtype)
        fed = (lambda at: self.fed(ph.k, at)) if ph.phase == 0 and self.neighbour_bits else None
        return _lowering(ph, values, residuals, steps, weights, self.tables(ph.k, ph.phase), fed)

    def tables(self, k: int, phase: int) -> np.ndarray:
        """The table of each bucket of a phase (`_group_scales`)."""
        if (k, phase) not in self._tables:
            ph, values = self.phases[self._at[(k, phase)]]
            self._tables[(k, phase)] = _group_scales(ph, table_indices(values))
        return self._tables[(k, phase)]

    def fed(self, k: int, at: np.ndarray) -> np.ndarray:
        """At the first-phase cells `at` (flat positions) of subband k, the bits a magnitude one lower would save
        in its four second-phase neighbours' groups (`quieter`), whose activity it is NEIGHBOUR_WEIGHT of."""
        (rows, cols), saved = self.symbols[k].shape, self.quieter(k)
        r, c = divmod(at, cols)
        r, c = r + _STEPS[:, :1], c + _STEPS[:, 1:]  # the four neighbours, one row each
        inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        return np.sum(saved[np.where(inside, r * cols + c, 0)] * inside, axis=0)

    def quieter(self, k: int) -> np.ndarray:
        """Per cell of subband k (flat), the bits its symbol would save if its activity were NEIGHBOUR_WEIGHT lower:
        under the table of the bucket it would fall into instead of its own (negative where a quieter context costs
        it more; 0 where the bucket stays, and in the first phase, whose contexts no neighbour feeds)."""
        if k not in self._quieter:
            ph = self.phases[self._at[(k, 1)]][0]
            moved = np.flatnonzero(np.take(_neighbour_moves(), ph.act, mode="clip"))
            act, scales = ph.act[moved], self.tables(k, 1)
            cells = phase_cells(self.symbols[k].shape)[1][moved]
            index = table_indices(self.symbols[k].reshape(-1)[cells])
            now = np.take(CONTEXTS.bucket_of, act, mode="clip")
            then = np.take(CONTEXTS.bucket_of, np.maximum(act - NEIGHBOUR_WEIGHT, 0), mode="clip")
            bits = bank()[1]
            saved = np.zeros(self.symbols[k].size)
            saved[cells] = bits[scales[now], index] - bits[scales[then], index]
            self._quieter[k] = saved
        return self._quieter[k]


@lru_cache(maxsize=1)
def _neighbour_moves() -> np.ndarray:
    """Per activity (the last entry standing for all above it), whether NEIGHBOUR_WEIGHT less moves it to another
    bucket."""
    act = np.arange(CONTEXTS.edges[-1] + NEIGHBOUR_WEIGHT + 1)
    quieter = np.maximum(act - NEIGHBOUR_WEIGHT, 0)
    return np.take(CONTEXTS.bucket_of, act, mode="clip") != np.take(CONTEXTS.bucket_of, quieter, mode="clip")


def lower_second_phases(
    symbols: list[np.ndarray], residuals: list[np.ndarray], steps: list[float], weights: list[Any], subbands: set[int]
) -> None:
    """`rdo_lower` on the second phases of `subbands` only, each grouped from the symbols as they stand instead of
    walked to (encoder: after their phase laws changed them, RDO_PASSES times)."""
    for _ in range(RDO_PASSES):
        done = Done(symbols)  # a pass's decisions are applied after it: every phase sees the same magnitudes
        phases = [second_phase(done, k) for k in sorted(subbands)]
        lowered = [_lowering(ph, symbols[ph.k].reshape(-1)[ph.order], residuals, steps, weights) for ph in phases]
        for k, at, v in lowered:
            symbols[k].reshape(-1)[at] = v


def _lowering(
    ph: Phase,
    values: np.ndarray,
    residuals: list[np.ndarray],
    steps: list[float],
    weights: list[Any],
    scales: Optional[np.ndarray] = None,
    fed: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> tuple[int, np.ndarray, np.ndarray]:
    """One phase's lowering decisions (`rdo_lower`) from its `values` (the symbols at ph.order): its subband, the
    flat positions to lower and their values. `scales`: the table of each of its buckets where the caller has them
    (`_group_scales`, else made here once there is something to lower); `fed`: the bits lowering the cells at given
    positions saves in the contexts they feed (`Walk.fed`)."""
    k = ph.k
    coded = in_tables(values)
    if not coded.size:
        return k, coded, coded
    if scales is None:
        scales = _group_scales(ph, table_indices(values))
    scale = scales[np.searchsorted(ph.cuts, coded, side="right") - 1]
    at, v = ph.order[coded], values[coded]
    m = np.abs(v)
    x = np.abs(residuals[k].reshape(-1)[at]) / steps[k]
    weight = weights[k] if np.isscalar(weights[k]) else weights[k].reshape(-1)[at]
    saved = saved_bits()[scale, m - 1] if fed is None else saved_bits()[scale, m - 1] + fed(at)
    lower = np.flatnonzero(weight * (2.0 * (x - m) + 1.0) < RDO_LAMBDA * saved)
    v = v[lower]
    return k, at[lower], v - np.sign(v)


def _group_scales(ph: Phase, indices: np.ndarray) -> np.ndarray:
    """The table that codes each bucket's group of a phase in the fewest bits (`best_scale`; `indices` those of
    the phase's symbols in order), an empty bucket taking its nearest non-empty one's."""
    n = CONTEXTS.n_buckets
    scales = np.full(n, -1, dtype=np.intp)
    for ctx, a, b in ph.groups():
        scales[ctx % n] = best_scale(indices[a:b])
    full = np.flatnonzero(scales >= 0)
    if not full.size:
        return np.zeros(n, dtype=np.intp)
    return scales[full[np.argmin(np.abs(full[None, :] - np.arange(n)[:, None]), axis=1)]]
