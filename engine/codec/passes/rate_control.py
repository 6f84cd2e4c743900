"""Compression to a bit budget: the refinement step that fills a target bits per pixel.

A file's size is known only once it is coded, and it depends on the content, so the step is searched by
coding the whole raster at trial steps: bits per pixel fall roughly as a power of the step, so a secant in
log-log space between the closest steps on either side of the target lands within 1 % in 3-7 passes
(measured on the real crops at 0.25-1 bpp). What a user gets is the finest step whose file stays within the
budget (JPEG 2000's rate targets mean the same); the steps in between the ladder's are as valid as its own
(the header records the step)."""

from __future__ import annotations

import math
import numbers
from typing import Callable, Optional

from ...errors import InputError, UnreachableTarget
from .quality import REFINE_STEPS

TOLERANCE = 0.01
"""A step is good enough once its file is within 1 % under the target."""
SHORTFALL = 0.05
"""A file more than 5 % under its target is reported (rate_control.shortfall_warning): past the tolerance, at the
finest step or after the last pass."""
MAX_PASSES = 16
"""Codings at most: the real crops land in 3-7; smooth sea scenes, whose bits fall off a cliff with the step, in
11-12 (10 left them at half the target)."""
COARSEST_STEP, FINEST_STEP = 1.0, 0.002
"""Steps searched (fractions of the dB range): the header's upper limit, and ~0.06 dB on a 30 dB range."""
FIRST_STEP = 0.1
SLOPE = -1.5
"""d log(bpp) / d log(step) assumed until the target is bracketed (measured -1.2 to -2 on the real crops)."""


def nearest_quality(step: float) -> int:
    """The ladder's quality (1-based) nearest to `step` in log: what the header and the statistics show."""
    return 1 + min(range(len(REFINE_STEPS)), key=lambda i: abs(math.log(REFINE_STEPS[i] / step)))


def is_target(target_bpp: object) -> bool:
    """Whether `target_bpp` can be a target bit rate: a finite positive number (the one rule for rate control,
    batch and the Zarr codec, each of which refuses in its own terms)."""
    real = isinstance(target_bpp, numbers.Real) and not isinstance(target_bpp, bool)
    return real and math.isfinite(target_bpp) and target_bpp > 0


def find_step(bpp_at: Callable[[float], float], target_bpp: float) -> float:
    """The finest step whose `bpp_at(step)` is at most `target_bpp` (within TOLERANCE below it, or the best
    of MAX_PASSES tries). InputError when even the coarsest step needs more bits than the target."""
    if not is_target(target_bpp):
        raise InputError(f"target bits per pixel must be a positive number, got {target_bpp!r}")
    tried: dict[float, float] = {}
    step = FIRST_STEP
    for _ in range(MAX_PASSES):
        tried[step] = bpp = bpp_at(step)
        if target_bpp * (1.0 - TOLERANCE) <= bpp <= target_bpp:
            return step
        nxt = _next_step(tried, target_bpp)
        if nxt is None or nxt in tried:
            break
        step = nxt
    within = [s for s, b in tried.items() if b <= target_bpp]
    if not within:
        fewest = min(tried, key=tried.__getitem__)  # not always the coarsest step: headers and masks do not shrink
        raise UnreachableTarget(
            f"target of {target_bpp:g} bits per pixel is below what this raster can be coded in: the fewest "
            f"tried took {tried[fewest]:.4f} bpp (step {fewest:g} of the coded range)"
        )
    return min(within)


def shortfall_warning(step: float, bpp: float, target_bpp: float, passes: int) -> Optional[str]:
    """What to tell a user whose file stays more than SHORTFALL under the target (None otherwise): at the finest
    step the file cannot grow (a target of 100 bpp took the finest step's 9.19 bpp silently), else the search ran out
    of passes. Within the tolerance the file is what was asked."""
    if bpp >= target_bpp * (1.0 - SHORTFALL):
        return None
    if step <= FINEST_STEP:
        why = (
            f"the codec's finest step ({FINEST_STEP:g} of the coded range, about 0.06 dB on a 30 dB range) needs no "
            "more, and a larger target adds nothing"
        )
    else:
        why = f"rate control stopped after {passes} passes at step {step:.4g}, the finest within the target"
    return f"the file takes {bpp:.4f} bits per pixel, under the target of {target_bpp:g}: {why}"


def _next_step(tried: dict[float, float], target: float) -> Optional[float]:
    """Secant (log-log) aimed at the middle of the tolerance window: between the closest steps over and
    under the target once both exist, else through the two nearest tries (SLOPE from a single one); None when
    the search is pinned at a limit. Once bracketed, tries in a row on one side halve the other end's distance to
    the aim each time (the Illinois method: `_stuck_factor`): on a smooth sea scene whose bits fall off a cliff
    (0.80 bpp at step 0.36, 0.0055 at 0.72) every plain secant landed on the side of too many bits, and after 10
    passes the file was the 0.0055 bpp try for a target of 0.5 (`tried` holds the tries in order)."""
    aim = math.log(target * (1.0 - TOLERANCE / 2))
    over = [s for s, b in tried.items() if b > target]  # too many bits: the step must grow
    under = [s for s, b in tried.items() if b <= target]
    if over and under:
        s0, s1 = max(over), min(under)
        b0, b1 = tried[s0], tried[s1]
        factor = _stuck_factor([b > target for b in tried.values()])
        if tried[list(tried)[-1]] > target:  # the last tries had too many bits: the under end is the stuck one
            b1 = math.exp(aim + (math.log(b1) - aim) * factor)
        else:
            b0 = math.exp(aim + (math.log(b0) - aim) * factor)
        step = _secant(s0, b0, s1, b1, aim)
        return step if step is not None and s0 < step < s1 else math.sqrt(s0 * s1)
    if not under and max(over) >= COARSEST_STEP or not over and min(under) <= FINEST_STEP:
        return None
    near = sorted(tried, key=lambda s: abs(math.log(s) - math.log(max(over) if over else min(under))))[:2]
    step = _secant(near[0], tried[near[0]], near[1], tried[near[1]], aim) if len(near) == 2 else None
    if step is None:
        s = near[0]
        step = s * math.exp((aim - math.log(tried[s])) / SLOPE)
    return min(max(step, FINEST_STEP), COARSEST_STEP)


def _stuck_factor(over: list[bool]) -> float:
    """How much of the stuck end's distance to the aim the secant sees: halved for each try after the first in the
    trailing run on one side (`over`: each try's side, in order), 1 when the last two differ."""
    run = next((i for i, side in enumerate(reversed(over)) if side != over[-1]), len(over))
    return 0.5 ** max(run - 1, 0)


def _secant(s0: float, b0: float, s1: float, b1: float, aim: float) -> Optional[float]:
    """The step where the line through (log s, log bpp) of two tries reaches `aim`; None if it is flat or
    rising (sizes that do not fall with the step: no slope to follow), or so nearly flat that it points outside
    the steps searched (a mask-like raster's sizes barely move: math.exp overflowed)."""
    if b0 <= 0 or b1 <= 0 or s0 == s1:
        return None
    slope = (math.log(b1) - math.log(b0)) / (math.log(s1) - math.log(s0))
    if not slope < 0:
        return None
    log_step = math.log(s0) + (aim - math.log(b0)) / slope
    if not math.log(FINEST_STEP) - 1.0 < log_step < math.log(COARSEST_STEP) + 1.0:
        return None
    return math.exp(log_step)
