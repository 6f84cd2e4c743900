"""The qualities users choose from: each is a quantizer step of the refinement layer (engine.refine), coded
over a flat base at mid-range.

Steps are fractions of the raster's dB range (about 0.5-24 dB on a 30 dB range), spaced by ~sqrt(2): each
quality costs roughly 0.05-0.5 bit per pixel more than the one below.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from .errors import InputError


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
