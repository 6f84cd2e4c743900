"""The qualities users choose from: each is a quantizer step of the refinement layer (codec.entropy.refine), coded
over a flat base at mid-range.

Steps are fractions of the raster's dB range (about 0.5-24 dB on a 30 dB range), spaced by ~sqrt(2): each
quality costs roughly 0.05-0.5 bit per pixel more than the one below.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ...preprocessing import INTEGER_DTYPES, Range


@dataclass(frozen=True)
class Quality:
    """What one quality means: the refinement step (a fraction of the dB range)."""

    refine_step: float


REFINE_STEPS = (0.8, 0.56, 0.4, 0.28, 0.2, 0.14, 0.1, 0.07, 0.05, 0.035, 0.025, 0.018)
LADDER = tuple(Quality(step) for step in REFINE_STEPS)
N_QUALITIES = len(LADDER)
DEFAULT_QUALITY = 5


def quality_level(quality: object) -> Quality:
    """The ladder entry of a 1-based quality; InputError naming the valid range."""
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral) or not 1 <= quality <= N_QUALITIES:
        raise InputError(f"quality must be an integer in 1..{N_QUALITIES}, got {quality!r}")
    return LADDER[int(quality) - 1]


NATIVE_STEP_FLOOR = 1.0
"""The finest refinement step on an integer raster coded native, in its own units: a step of one DN already
reproduces nearly every value (finer steps spend bits on precision the input does not have)."""


def step_floor(kind: str, dtype: str, db: np.ndarray, rng: Range, scale: float = 1.0) -> float:
    """The finest refinement step (a fraction of the range) worth coding: the coding-domain size of one unit of
    an integer input at its median valid value (native: one DN; amplitude/intensity DN: the dB between the
    median and the next integer; a dB x 100 product with its GDAL `scale`: 0.01 dB), 0 for floating-point input
    and for integer dB without a scale (as before 0.7.0). It caps the ladder's top qualities and rate control, so
    that no quality codes below the input's own quantization."""
    if dtype not in INTEGER_DTYPES or db.size == 0:
        return 0.0
    dn = abs(scale)  # one DN in the band's units
    if kind == "native":
        unit = NATIVE_STEP_FLOOR * dn
    elif kind in ("amplitude", "intensity"):
        factor = 20.0 if kind == "amplitude" else 10.0
        median = float(10.0 ** (np.median(db) / factor))
        unit = factor * math.log10(1.0 + dn / max(median, dn))
    elif kind == "db" and scale != 1.0:
        unit = dn
    else:
        return 0.0
    return min(unit / rng.span, 1.0)
