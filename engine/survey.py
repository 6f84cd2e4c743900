"""Compression pass 1: a bounded, strided sample of a band's valid pixels fixes the input kind, the dB range
that maps to the network's [0, 1], the linear mean and the fill value for invalid pixels, before any strip is
encoded (the range must be known for the first strip and stay the same for all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import preprocessing as pp
from .errors import InputError
from .layout import STRIP_ROWS
from .raster_io import RasterInfo

RANGE_PERCENTILES = (0.5, 99.9)
RANGE_MODES = ("percentile", "model")
SAMPLE_VALUES = pp.MAX_SAMPLE
"""Pass 1 keeps at most about this many pixels (every k-th row and column): bounded memory on any raster."""

RowReader = Callable[[int, int], np.ndarray]
"""read(row0, row1) -> the band's rows row0..row1-1."""


@dataclass
class Survey:
    kind: str
    rng: pp.Range
    linear_mean: float
    fill_db: float


def survey_band(info: RasterInfo, read: RowReader, kind: str, model_range: Optional[pp.Range]) -> Survey:
    """Kind ("auto" detects it), range (`model_range`, else the sample's percentiles), linear mean, fill."""
    sample = _sample_valid(info, read)
    description = info.descriptions[0] if info.descriptions else None
    tags = {**info.tags, **(info.band_tags[0] if info.band_tags else {})}
    kind = pp.detect_kind(info.dtype, sample, description, tags) if kind == "auto" else pp.check_kind(kind)
    db = pp.to_db(sample, kind)
    rng = model_range if model_range is not None else _rounded(pp.robust_range(db, *RANGE_PERCENTILES))
    linear_mean = float(np.mean(pp.db_to_linear(db), dtype=np.float64))
    return Survey(kind, rng, linear_mean, float(np.clip(np.median(db), rng.vmin, rng.vmax)))


def _rounded(rng: pp.Range) -> pp.Range:
    """The range to 1e-4 dB: the header stores it in a few digits instead of 17, the same numbers both sides."""
    return pp.Range(round(rng.vmin, 4), round(rng.vmax, 4))


def _sample_valid(info: RasterInfo, read: RowReader) -> np.ndarray:
    """Every k-th row and column (about SAMPLE_VALUES at most) of the valid pixels, strip by strip."""
    step = pp.sample_stride(info.height, info.width, SAMPLE_VALUES)
    parts: list[np.ndarray] = []
    for row0 in range(0, info.height, STRIP_ROWS):
        rows = read(row0, min(row0 + STRIP_ROWS, info.height))
        grid = rows[(-row0) % step :: step, ::step]
        picked = grid[pp.valid_mask(grid, info.nodata)]
        if picked.size == 0:  # sparse data between the grid points: still let it count
            picked = rows[pp.valid_mask(rows, info.nodata)][:1024]
        parts.append(picked)
    sample = np.concatenate(parts)
    if sample.size == 0:
        raise InputError("the raster has no valid pixels (every pixel is nodata or NaN)")
    return sample
