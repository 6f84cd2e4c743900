"""Inter-band prediction: which band predicts which (measured), and the reference strips both sides predict from.

Co- and cross-polarized channels (VV/VH, T11/T22/T33) share their structure: fields, coastlines, urban blocks.
A predicted band's refinement layer predicts each of its wavelet subbands from the same subband of an already
decoded reference band (codec.entropy.refine: a least-squares weight per subband, 0 where it does not pay), in the
normalized dB domain (the reference's dB minus its range's middle, scaled by the ratio of the two ranges).
JPEG 2000 Part 2's multi-component transforms decorrelate bands linearly too, with one weight per band; here
the weight is per subband and the reference is the decoded band, so the decoder has exactly what the encoder had.

The references form a star: one root band coded on its own, the others predicted from it or coded on their own
too; a reference is never itself predicted, so decoding one band needs at most one other band's chunks. The
root and which bands are predicted are chosen by measurement on a window of the raster: the bits per pixel each
band would save, sum over subbands of -1/2 log2(1 - rho^2) per coefficient (rho: the subbands' correlation),
the high-rate gain of a linear prediction.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..entropy import refine
from ..format.layout import Layout
from ..transform import wavelet

SAMPLE_ROWS = 512
SAMPLE_COLUMNS = 2048
"""The window the references are chosen on: at most 512 rows x 2048 columns from the middle of the raster."""
SAMPLE_LEVELS = 4
MAX_RHO2 = 0.99
"""Correlations are capped (a band against a copy of itself would save infinite bits)."""
MIN_SAVING_BPP = 0.02
"""A band is predicted only if the measurement says it saves at least this many bits per pixel (below, the
weights' side information and the reference's decoding are not worth it)."""

Refinement = Callable[[int], bytes]
"""refinement(k) -> the reference band's refinement stream of strip k (from the file, or kept by the encoder)."""


def sample_window(height: int, width: int) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of the window the references are chosen on."""
    rows, cols = min(height, SAMPLE_ROWS), min(width, SAMPLE_COLUMNS)
    row0, col0 = (height - rows) // 2, (width - cols) // 2
    return row0, row0 + rows, col0, col0 + cols


def _subbands(x: np.ndarray) -> list[np.ndarray]:
    levels = wavelet.max_levels(x.shape, SAMPLE_LEVELS)
    ll, details = wavelet.forward(x.astype(np.float64), levels)
    return [ll - ll.mean()] + [b for trio in details for b in trio]


def saving_bpp(target: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Bits per pixel a linear per-subband prediction of `target` from `reference` saves at high rate."""
    bits = 0.0
    pixels = sum(t.size for t in target[1:]) + target[0].size
    for t, r in zip(target, reference):
        tt, rr = float(np.sum(t * t)), float(np.sum(r * r))
        if tt <= 0.0 or rr <= 0.0:
            continue
        rho2 = min(float(np.sum(t * r)) ** 2 / (tt * rr), MAX_RHO2)
        bits += -0.5 * np.log2(1.0 - rho2) * t.size
    return bits / pixels


def choose_references(windows: list[np.ndarray]) -> tuple[list[int], list[Optional[int]]]:
    """From each band's window (normalized dB: dB over its range's span), the coding order (indices into
    `windows`, the root first) and, per position in that order, the position of the band it is predicted from
    (None: coded on its own). One band: ([0], [None])."""
    n = len(windows)
    if n == 1:
        return [0], [None]
    subbands = [_subbands(w) for w in windows]
    saving = np.zeros((n, n))
    for b in range(n):
        for r in range(n):
            if b != r:
                saving[b, r] = saving_bpp(subbands[b], subbands[r])
    useful = np.where(saving >= MIN_SAVING_BPP, saving, 0.0)
    root = int(np.argmax(useful.sum(axis=0)))  # ties: the first band
    order = [root] + [b for b in range(n) if b != root]
    references = [None] + [0 if useful[b, root] > 0 else None for b in order[1:]]
    return order, references


class ReferenceBand:
    """The decoded tiles of a reference band, as the predicted band's refinement layer sees them: its refined
    dB (before mean correction and bright targets, which a reference does not need) minus its range's middle,
    scaled into the predicted band's range. Decoded from the reference's refinement streams on demand, the
    same code on both sides, so the encoder predicts from exactly what the decoder will have."""

    def __init__(self, layout: Layout, refinement: Refinement):
        self.layout, self.refinement = layout, refinement
        self._last: tuple[int, Optional[np.ndarray]] = (-1, None)

    def remember(self, k: int, refined: np.ndarray) -> None:
        """Strip k as the reference band's own pass just refined it (the same array `refined(k)` would decode:
        the encoder's refined strip is the decoder's, and neither modifies it after): a raster of one strip
        then never decodes its reference twice."""
        self._last = (k, refined)

    def refined(self, k: int) -> np.ndarray:
        """The reference's strip k decoded, clipped to its range; the last one is kept (one strip of memory),
        so bands predicted from one reference decode it once where the raster is a single strip."""
        if self._last[0] != k:
            ref, tile = self.layout, self.layout.tile(k)
            base = refine.FlatBase(ref.flat_db, (tile.rows, tile.cols))
            decoded = refine.decode(self.refinement(k), base, ref.refine_step_db, syntax=ref.syntax)
            self._last = (k, np.clip(decoded, ref.rng.vmin, ref.rng.vmax))
        return self._last[1]

    def deviation(self, k: int, target: Layout) -> np.ndarray:
        """Strip k of the reference, in `target`'s dB units around 0."""
        ref = self.layout
        refined = self.refined(k)
        middle = 0.5 * (ref.rng.vmin + ref.rng.vmax)
        return ((refined - np.float32(middle)) * np.float32(target.rng.span / ref.rng.span)).astype(np.float32)
