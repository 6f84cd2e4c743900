"""The qualities users choose from: quality 1 is the network alone at its smallest rate; every higher quality
adds the refinement layer (engine.refine) at a finer quantizer step.

Why the network's own higher levels are not on the ladder: on the real crops its reconstruction saturates
near 0.3-0.5 bpp, and from level 2 up each of its levels is both larger and worse than level 1 plus
refinement at the same rate. Steps are fractions of the raster's dB range (about 0.9-17 dB on a 30 dB range),
spaced by ~sqrt(2): each quality costs roughly 0.1-0.5 bit per pixel more than the one below.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional

from .errors import InputError


@dataclass(frozen=True)
class Quality:
    """What one quality means: the network's level (0-based) and the refinement step (None: none)."""

    model_level: int
    refine_step: Optional[float]


REFINE_STEPS = (0.56, 0.4, 0.28, 0.2, 0.14, 0.1, 0.07, 0.05, 0.035, 0.025, 0.018)
LADDER = (Quality(0, None),) + tuple(Quality(0, step) for step in REFINE_STEPS)
N_QUALITIES = len(LADDER)
DEFAULT_QUALITY = 5


def quality_level(quality: object) -> Quality:
    """The ladder entry of a 1-based quality; InputError naming the valid range."""
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral) or not 1 <= quality <= N_QUALITIES:
        raise InputError(f"quality must be an integer in 1..{N_QUALITIES}, got {quality!r}")
    return LADDER[int(quality) - 1]
