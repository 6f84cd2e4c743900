"""Which base the refinement layer is coded over, picked per file by a trial on sample strips.

The network's reconstruction pays for itself only where it saves the refinement layer more bits than its
latents cost. The bundled models, trained briefly on a CPU, do not: on the real crops their level-1 bits buy
less than the same bits spent in the refinement layer over a flat image. A better model may. So "auto" codes
a few strips both ways at the file's step and keeps the base with the lower rate-distortion cost
D + lambda R, with lambda the slope of a uniform quantizer at that step (ln 2 step^2 / 6 per bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .layout import BASES
from .strip_window import check_cancel

if TYPE_CHECKING:
    from .encode_pass import EncodePass

BASE_OPTIONS = ("auto",) + BASES
TRIAL_STRIPS = 2


@dataclass
class Trial:
    """The sample strips and each base's rate-distortion cost over them (squared dB error + lambda bits)."""

    strips: list[int]
    costs: dict[str, float]

    @property
    def best(self) -> str:
        return min(BASES, key=lambda base: self.costs[base])

    def to_dict(self) -> dict[str, Any]:
        costs = {name: float(f"{cost:.6g}") for name, cost in self.costs.items()}
        return {"strips": self.strips, "costs": costs, "chosen": self.best}


def describe(trial: dict[str, Any]) -> str:
    """One line for logs and `info`, from `Trial.to_dict()` (what the header keeps)."""
    costs = ", ".join(f"{name} {cost:.4g}" for name, cost in trial["costs"].items())
    return f"base picked by a trial on strips {trial['strips']} (cost {costs})"


def sample_strips(n_strips: int) -> list[int]:
    """Up to TRIAL_STRIPS strips spread over the raster (away from its edges when there are enough)."""
    if n_strips <= TRIAL_STRIPS:
        return list(range(n_strips))
    return sorted({(i + 1) * n_strips // (TRIAL_STRIPS + 1) for i in range(TRIAL_STRIPS)})


def run_trial(enc: EncodePass) -> Trial:
    """Code the sample strips over both bases; `enc` must have the network base (its strips carry latents).
    Each sample is decoded alone (no neighbour halo), which slightly favours the flat base at strip borders."""
    step = enc.layout.refine_step_db
    lam = math.log(2.0) * step * step / 6.0
    costs = dict.fromkeys(BASES, 0.0)
    strips = sample_strips(enc.layout.n_strips)
    for k in strips:
        check_cancel(enc.cancel)
        strip = enc.load(k)
        bases = {"network": enc.decode_raw(None, strip, None), "flat": enc.layout.flat_db(strip.rows)}
        for name, base in bases.items():
            target = enc.refine_target(strip, base)
            payload, refined = enc.code_refinement(target, base)
            bits = 8 * (len(payload) + (len(strip.latents) if name == "network" else 0))
            err = enc.clip_refined(refined).astype(np.float64) - target
            costs[name] += float(np.sum(err * err)) + lam * bits
    return Trial(strips, costs)
