"""The walk and its contexts: subbands coarse to fine, each in two checkerboard phases, a coefficient's context the
activity of its already decoded parent's 3x3 neighbourhood, its siblings and (second phase) its four first-phase
neighbours, cut into buckets at a format version's edges (`Contexts`); and the prediction of each group's table
index from the groups before it. The encoder and the decoder walk the same code (`traverse`), so their contexts agree
by construction; everything here is integer arithmetic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Optional

import numpy as np

from .tables import ALPHABET, N_SCALES, index_bits, table_costs

ACTIVITY_UNIT = 18
"""Activity is counted in 1/18ths so that its weights stay integers (the decoder must agree to the bit):
2 x the parent's 3x3 mean (4/18 per magnitude in the box), each sibling's magnitude and its 3x3 mean half
and half (9/18 + 1/18 per magnitude in the box), 2 x each of the four neighbours (36/18); weights measured
best on the real crops (+0.1 dB over parent x2 + siblings + neighbours)."""
NEIGHBOUR_WEIGHT = 2 * ACTIVITY_UNIT
"""A first-phase magnitude's weight in each of its second-phase neighbours' activity."""


@dataclass(frozen=True)
class Contexts:
    """What decides which table codes a coefficient, besides the walk: the activity edges (ACTIVITY_UNIT ths) that
    cut a phase's coefficients into groups, and the Laplace scale of the difference between a group's table index
    and its prediction. The decoder must use the writer's: a file's format version names them."""

    edges: tuple[int, ...]
    delta_scale: float

    @property
    def n_buckets(self) -> int:
        return len(self.edges) + 1

    @property
    def n_contexts(self) -> int:
        """Groups per subband: each bucket in each checkerboard phase."""
        return 2 * self.n_buckets

    @cached_property
    def bucket_of(self) -> np.ndarray:
        """Bucket of each activity up to the last edge (a table: activities are small non-negative integers)."""
        return np.searchsorted(self.edges, np.arange(self.edges[-1] + 1), side="right").astype(np.int8)


CONTEXTS = Contexts((4, 9, 18, 27, 36, 54, 72, 90, 108, 144, 198, 270, 360, 504, 720, 1080), delta_scale=1.5)
"""Format 8's, what the encoder writes: 17 buckets, edges at 0.22, 0.5, 1, 1.5, 2, 3, ... 60 magnitudes of activity.
Against format 7's (below), in one change with the encoder's choice of each group's table by its whole cost
(`refine._encode_groups`), measured on the 8 real crops coded to 0.25 / 0.5 / 1 bpp by rate control: PSNR +0.033 /
+0.022 / +0.006 dB on the multilooked and oversampled crops, +0.034 / +0.016 / +0.041 on single-look (probe). The
finer buckets at low activity, where most coefficients are at these rates, fit the tables closer; with tables
chosen by their whole cost a group's index is mostly its prediction, so a narrower law of the differences (1.5
instead of 3) makes it cheaper: about 1.6 bits where it is the prediction, instead of 2.6."""
CONTEXTS_7 = Contexts((18, 36, 54, 72, 108, 144, 198, 270, 360, 504, 720, 1080), delta_scale=3.0)
"""Formats 6 and 7's: 13 buckets (edges at 1, 2, 3, 4, 6, ... 60), differences at scale 3."""


class ScalePrediction:
    """The table index each group is predicted to use, from the groups coded before it (both sides walk the
    same groups in the same order)."""

    def __init__(self, n_bands: int, contexts: Contexts):
        self.n_buckets = contexts.n_buckets
        self.delta_scale = contexts.delta_scale
        self.scales = np.full((n_bands, contexts.n_contexts), -1, dtype=np.int64)
        self.last = N_SCALES // 2

    def predict(self, k: int, ctx: int) -> int:
        phase = ctx // self.n_buckets
        below = self.scales[k, phase * self.n_buckets : ctx][::-1]
        below = below[below >= 0]
        if below.size:
            return int(below[0])
        if k > 3 and self.scales[k - 3, ctx] >= 0:
            return int(self.scales[k - 3, ctx])
        return self.last

    def update(self, k: int, ctx: int, scale: int) -> None:
        self.scales[k, ctx] = self.last = scale

    def choose(self, k: int, ctx: int, indices: np.ndarray) -> tuple[int, int]:
        """(table, its index's symbol) of a group (encoder): the table whose symbols and index cost least
        together, so a small group keeps its prediction where another table would save fewer bits than its index
        costs; then the update."""
        delta = np.arange(N_SCALES) - self.predict(k, ctx) + N_SCALES - 1  # each table's symbol
        cost = table_costs(indices) + index_bits(self.delta_scale)[delta]
        scale = int(np.argmin(cost))
        self.update(k, ctx, scale)
        return scale, int(delta[scale])


def fit_shape(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`a` cropped or edge-padded to `shape` (subbands of odd-sized strips differ by a row or column); `a` itself
    when it has that shape (callers only read it)."""
    if a.shape == shape:
        return a
    a = a[: shape[0], : shape[1]]
    return np.pad(a, ((0, shape[0] - a.shape[0]), (0, shape[1] - a.shape[1])), mode="edge")


def _neighbour_sum(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, 1)
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


def _box_sum(a: np.ndarray) -> np.ndarray:
    """Sum over each 3x3 neighbourhood (edges repeated), as three rows then three columns (integers: exact)."""
    p = np.pad(a, 1, mode="edge")
    rows = p[:-2] + p[1:-1] + p[2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


class Done:
    """The magnitudes of the subbands walked so far and, made once when first asked for, their 3x3 box sums (a
    subband's serves its children and its later siblings). From `symbols` (the encoder's, as they stand): those of
    any subband, made when first asked for."""

    def __init__(self, symbols: Optional[list[np.ndarray]] = None) -> None:
        self.mags: Any = [] if symbols is None else _CappedMagnitudes(symbols)
        self._boxes: dict[int, np.ndarray] = {}

    def box(self, k: int) -> np.ndarray:
        if k not in self._boxes:
            self._boxes[k] = _box_sum(self.mags[k])
        return self._boxes[k]


class _CappedMagnitudes:
    """Subbands' magnitudes capped at the escape, as a walk records them, made from symbols when first asked for."""

    def __init__(self, symbols: list[np.ndarray]) -> None:
        self.symbols, self._made = symbols, {}

    def __getitem__(self, k: int) -> np.ndarray:
        if k not in self._made:
            self._made[k] = np.minimum(np.abs(self.symbols[k]), ALPHABET + 1).astype(np.int16)
        return self._made[k]


def _context_base(done: Done, k: int, shape: tuple[int, int]) -> np.ndarray:
    """Activity (ACTIVITY_UNIT ths) from the magnitudes around the parent (same orientation, one level
    coarser) and of the siblings decoded before."""
    act = np.zeros(shape, dtype=np.int32)
    if k == 0:
        return act
    orient = (k - 1) % 3
    if k > 3:
        act += 4 * fit_shape(_doubled(done.box(k - 3)), shape)
    for sib in range(k - orient, k):
        act += fit_shape(9 * done.mags[sib].astype(np.int32) + done.box(sib), shape)
    return act


def _doubled(a: np.ndarray) -> np.ndarray:
    """`a` with each value repeated over 2x2 (int32): a parent's box sum at each of its children's places."""
    out = np.empty((a.shape[0], 2, a.shape[1], 2), dtype=np.int32)
    out[...] = a[:, None, :, None]
    return out.reshape(2 * a.shape[0], 2 * a.shape[1])


@dataclass(frozen=True)
class Phase:
    """One checkerboard phase of subband k, its cells grouped by context: group b (context phase * buckets + b)
    is order[cuts[b] : cuts[b + 1]], positions ascending within it; groups in context order are the walk order.
    `act`: each cell's activity, the phase's cells in ascending position (what the encoder's lowering asks of a
    cell's context)."""

    k: int
    phase: int
    order: np.ndarray
    cuts: np.ndarray
    act: np.ndarray

    def groups(self) -> list[tuple[int, int, int]]:
        """(context, start, stop) in `order` of each non-empty group, in walk order."""
        c, n = self.cuts.tolist(), len(self.cuts) - 1
        return [(self.phase * n + b, c[b], c[b + 1]) for b in range(n) if c[b + 1] > c[b]]


Visit = Callable[[Phase], np.ndarray]
"""visit(phase) -> the symbols at phase.order (what the walk has coded or decoded there, group by group)."""


def traverse(shapes: list[tuple[int, int]], visit: Visit, contexts: Contexts, n_bands: Optional[int] = None) -> None:
    """Subbands in coding order (the first `n_bands` of them: a coarse decode), each in two checkerboard phases
    grouped by context; what the encoder and the decoder both walk, so their contexts agree by construction.
    Contexts see magnitudes capped at the escape (the decoder learns an escaped value only after the walk). A
    phase's contexts depend only on what was walked before it, so it is visited whole."""
    done = Done()
    for k, shape in enumerate(shapes[:n_bands]):
        mag = np.zeros(shape, dtype=np.int16)  # <= ALPHABET + 1; activities stay far below 2**15 (int32 anyway)
        base = _context_base(done, k, shape).reshape(-1)
        for phase in (0, 1):
            ph = _grouped(k, phase, base, mag, contexts)
            values = visit(ph)
            mag.reshape(-1)[ph.order] = np.minimum(np.abs(values), ALPHABET + 1)
        done.mags.append(mag)


def _grouped(k: int, phase: int, base: np.ndarray, mag: np.ndarray, contexts: Contexts) -> Phase:
    """Subband k's `phase` grouped by context: `base` its activity from the parent and the siblings (flat), `mag`
    its first phase's capped magnitudes (the second phase's neighbours)."""
    cells = phase_cells(mag.shape)[phase]
    act = base[cells]
    if phase:
        act = act + NEIGHBOUR_WEIGHT * _neighbour_sum(mag).reshape(-1)[cells].astype(np.int32)
    bucket = np.take(contexts.bucket_of, act, mode="clip")  # past the last edge: the last bucket
    order = cells[np.argsort(bucket, kind="stable")]
    cuts = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=contexts.n_buckets))])
    return Phase(k, phase, order, cuts, act)


def second_phase(done: Done, k: int) -> Phase:
    """Subband k's second phase grouped as the walk would group it, `done` made from the symbols as they stand
    (encoder: what the lowering of one phase needs, without walking every subband before it)."""
    mag = done.mags[k]
    base = _context_base(done, k, mag.shape).reshape(-1)
    return _grouped(k, 1, base, mag, CONTEXTS)  # a second-phase cell's neighbours are first-phase cells


@lru_cache(maxsize=64)
def phase_cells(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of a subband's two checkerboard phases, ascending: (row + column) even, then odd."""
    odd = np.add.outer(np.arange(shape[0]), np.arange(shape[1])).reshape(-1) % 2 == 1
    return np.flatnonzero(~odd), np.flatnonzero(odd)
