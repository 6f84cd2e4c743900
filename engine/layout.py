"""Where everything of a .sarz sits: strips of rows, gain blocks, and the coding parameters.

The encoder builds a Layout from its survey of the input, the decoder from the file header; both then walk the
same strips, so every size they compare (chunk rows, gain blocks) comes from one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import preprocessing as pp

STRIP_ROWS = 512
"""The unit of strip heights (one chunk per strip): a multiple of BLOCK."""
STRIP_PIXELS = 1 << 22
"""Strips are as many STRIP_ROWS tall as fit this many pixels (at least one): every strip is transformed
on its own, and each border costs bits and shows (one 1024-row strip instead of two measured +0.03-0.04 dB
at 0.25 bpp on the 900x1024 crops), while memory follows the strip's pixels (a 20000-wide raster keeps
512-row strips, 10M pixels, which is what the memory benchmark measures)."""
BLOCK = 64
"""Side of the square blocks that each get one mean-correction gain."""
BRIGHT_STEP_DB = (0.05, 1.0)
"""Range of the quantizer step of bright-target residuals."""
BRIGHT_STEP_FRACTION = 8
"""Bright-target residuals are kept to 1/8 of the refinement step, within 0.05-1 dB: finer than the rest of
the raster at every quality, but not 0.05 dB everywhere (at low qualities that cost ~10 % of the file on
urban scenes). A uniform error of even 1 dB biases a target's linear intensity by only 0.2 %."""

BRIGHT_MARGIN = (0.5, 3.0)
"""Pixels up to half a refinement step (at most 3 dB) above the range are clipped to it like any error of that
size (the block gains make up their linear intensity); only those beyond are bright targets with their own
residuals. The cap: a wider margin left a few far-clipped pixels to dominate a block's gain, which the gain
field's interpolation then failed to keep (mean ratio 0.94-0.96 at quality 1, measured; 0.99-1.00 with it)."""


def strip_height(width: int) -> int:
    """Rows per strip for a raster `width` pixels wide (a function of the width alone: the decoder checks it)."""
    return max(1, STRIP_PIXELS // (max(width, 1) * STRIP_ROWS)) * STRIP_ROWS


def bright_threshold(rng: pp.Range, refine_step: float) -> float:
    """Where bright-target residuals start (dB), to 1e-4 dB (a short number in the header)."""
    fraction, cap_db = BRIGHT_MARGIN
    return round(rng.vmax + min(fraction * refine_step * rng.span, cap_db), 4)


@dataclass
class Layout:
    """Geometry and coding parameters shared by encoder and decoder (the decoder's come from the header)."""

    width: int
    height: int
    kind: str
    dtype: str
    nodata: Optional[float]
    rng: pp.Range
    quality: int
    """The user's quality (engine.quality)."""
    refine_step: float
    """Refinement quantizer step as a fraction of the dB range."""
    mean_correction: str
    bright_threshold: float
    strip_height: int = STRIP_ROWS
    """Rows per strip: `strip_height(width)` in files."""
    band_index: int = 0
    """The band's place in the file's `bands` list (its coding order): its chunks follow those of the bands
    before it (chunk order "band, tile row, tile column")."""
    reference: Optional[int] = None
    """The place of the band it is predicted from (engine.interband), None when coded on its own."""

    @property
    def out_dtype(self) -> str:
        return pp.output_dtype(self.kind, self.dtype)

    @property
    def n_strips(self) -> int:
        return math.ceil(self.height / self.strip_height)

    @property
    def block_rows(self) -> int:
        return math.ceil(self.height / BLOCK)

    @property
    def block_cols(self) -> int:
        return math.ceil(self.width / BLOCK)

    def chunk_number(self, k: int) -> int:
        """The file's chunk that holds strip k of this band."""
        return self.band_index * self.n_strips + k

    def strip_rows(self, k: int) -> tuple[int, int]:
        """First row and row count of strip k (the last strip may be short)."""
        row0 = k * self.strip_height
        return row0, min(self.strip_height, self.height - row0)

    @property
    def refine_step_db(self) -> float:
        return self.refine_step * self.rng.span

    @property
    def bright_step_db(self) -> float:
        lo, hi = BRIGHT_STEP_DB
        return float(min(max(self.refine_step_db / BRIGHT_STEP_FRACTION, lo), hi))

    def flat_db(self, rows: int) -> np.ndarray:
        """The base the refinement layer codes over: mid-range, computed from the header's numbers, so both sides
        add to the same."""
        return np.full((rows, self.width), 0.5 * (self.rng.vmin + self.rng.vmax), dtype=np.float32)

    def strip_blocks(self, rows: int) -> tuple[int, int]:
        """Gain blocks (rows, cols) of a strip with `rows` rows."""
        return math.ceil(rows / BLOCK), self.block_cols
