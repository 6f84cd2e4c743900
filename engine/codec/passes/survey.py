"""Compression pass 1: a bounded, strided sample of a band's valid pixels fixes the input kind, the dB range
(the raster's robust percentiles), the linear mean and the fill value for invalid pixels, before any strip is
encoded (the range must be known for the first strip and stay the same for all); bounded tiles of it fix the
reference of the SSIM weights (ssim_weights), the same for every strip."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from ... import preprocessing as pp
from ...io.raster_io import RasterInfo
from ...metrics import SSIM_WINDOW
from ..entropy import ssim_weights
from ..format.layout import STRIP_ROWS
from .quality import step_floor

RANGE_PERCENTILES = (0.5, 99.9)
"""The coding range: the sample's percentiles. Below the first, speckle's deepest fades are clipped (they cost bits
and carry no signal); above the second, bright targets are kept as residuals over the range's top."""
NATIVE_RANGE_PERCENTILES = (0.0, 99.9)
"""Native values (display products, DEMs, calibrated values with negatives) keep their low tail: nothing there is
speckle, and the 0.5th percentile flattened the lowest 0.5 % of such a raster (a robustness sweep's int16 product:
-2957 decoded as -2132)."""
SAMPLE_VALUES = pp.MAX_SAMPLE
"""Pass 1 keeps at most about this many pixels (every k-th row and column): bounded memory on any raster."""
TEXTURE_PIXELS = 1 << 20
"""The SSIM weights' reference is measured on the whole raster up to this many pixels, else on about this many
in tiles spread over it: a bounded cost (about 0.2 s)."""
TEXTURE_TILE = 256

RowReader = Callable[[int, int], np.ndarray]
"""read(row0, row1) -> the band's rows row0..row1-1."""


@dataclass
class Survey:
    kind: str
    rng: pp.Range
    linear_mean: float
    fill_db: float
    ssim: Optional[ssim_weights.SsimScale] = None
    kind_reason: str = ""
    warnings: list[str] = field(default_factory=list)
    step_floor: float = 0.0
    """The finest refinement step worth coding (a fraction of the range): quality.step_floor."""
    scaling: pp.Scaling = pp.IDENTITY
    """The band's GDAL scale and offset, applied before anything else (pp.band_scaling; none for complex)."""
    constant: bool = False
    """Every valid pixel of the sample has one value: the range is centred on it exactly (not rounded), so the
    flat base is the value and the band decodes to it."""
    fill_value: Optional[float] = None
    """A fill the band holds without declaring it (undeclared_fill): coded as its nodata value (`declared`)."""


def declared(info: RasterInfo, survey: Survey) -> RasterInfo:
    """The band's info with the fill pass 1 found declared as its nodata: what the encoder masks, the header says
    and the decoded file declares."""
    return info if survey.fill_value is None else replace(info, nodata=survey.fill_value)


EMPTY_RANGE = pp.Range(-0.5 * pp.MIN_SPAN_DB, 0.5 * pp.MIN_SPAN_DB)
"""The range of a band without a valid pixel (only its mask is coded)."""


def survey_band(info: RasterInfo, read: RowReader, kind: str, ssim: bool = False) -> Survey:
    """Kind ("auto" detects it) and why, range (the sample's percentiles), linear mean, fill, warnings, step
    floor; with `ssim`, the SSIM weights' scale. No-signal zeros are outside every statistic."""
    tiles = _TextureTiles(info) if ssim else None
    info, raw, fill, notices = without_fill(info, sample_band(info, read, tiles), kind)
    if tiles is not None:
        tiles.info = info
    choice, scaling, sample = kind_and_values(info, raw, kind)
    warnings = notices + pp.value_warnings(choice.kind, sample, kind)
    if pp.zeros_uncounted(choice.kind, info.dtype):
        sample = sample[raw != 0]
    constant = pp.is_constant(sample)
    db = pp.to_db(sample, choice.kind)
    linear = pp.mean_values(db, choice.kind)
    linear_mean = float(np.mean(linear, dtype=np.float64)) if db.size else 0.0
    if choice.kind == "intensity":  # noise-subtracted negative values lie below the range, not in it
        db = db[sample > 0]
    rng = _range(db, choice.kind, constant) if db.size else EMPTY_RANGE
    saturated = _saturated(db, choice.kind)
    if saturated.any():  # above the range, as bright-target residuals, where it would stretch the range
        below = _range(db[~saturated], choice.kind, constant)
        rng = below if rng.vmax - below.vmax > SATURATED_STRETCH_DB else rng
    warnings += gap_warnings(db, rng, choice.kind)
    fill_db = float(np.clip(np.median(db), rng.vmin, rng.vmax)) if db.size else 0.5 * (rng.vmin + rng.vmax)
    scale = None if tiles is None else tiles.scale(choice.kind, rng, fill_db, scaling)
    floor = step_floor(choice.kind, info.dtype, db, rng, scaling[0])
    return Survey(
        choice.kind, rng, linear_mean, fill_db, scale, choice.reason, warnings, floor, scaling, constant, fill
    )


def undeclared_fill(info: RasterInfo, raw: np.ndarray, kind: str) -> Optional[float]:
    """The value of a fill the band holds without declaring a nodata value (pp.undeclared_fill on pass 1's sample,
    the rest's kind as `kind` or detected); None where it declares one or holds none."""
    if info.nodata is not None:
        return None

    def kind_of(rest: np.ndarray) -> tuple[str, pp.Scaling]:
        choice, scaling, _ = kind_and_values(info, rest, kind)
        return choice.kind, scaling

    return pp.undeclared_fill(raw, kind_of)


def without_fill(
    info: RasterInfo, raw: np.ndarray, kind: str
) -> tuple[RasterInfo, np.ndarray, Optional[float], list[str]]:
    """Pass 1's sample `raw` of a band as compression codes it: where the band holds a fill it does not declare
    (undeclared_fill), the info with it as nodata, the sample without it, the fill and what to say of it (else
    all as given, None and nothing). Compression and `inspect` both read a band so."""
    fill = undeclared_fill(info, raw, kind)
    if fill is None:
        return info, raw, None, []
    share = 100.0 * np.count_nonzero(raw == fill) / raw.size
    notice = (
        f"no nodata value declared: {share:.3g} % of the pixels hold {fill:g}, far from the rest: taken for "
        "a fill, restored exactly and declared as the band's nodata value"
    )
    return replace(info, nodata=fill), raw[raw != fill], fill, [notice]


def kind_and_values(info: RasterInfo, raw: np.ndarray, kind: str) -> tuple[pp.KindChoice, pp.Scaling, np.ndarray]:
    """The kind (`kind`, or detected on the band's values in its own units), the scaling the codec applies for it,
    and `raw` in those units: what compression (survey_band) and `inspect` both judge."""
    choice = choose_band_kind(info, pp.scaled(raw, info_scaling(info)), kind)
    scaling = info_scaling(info, choice.kind)
    return choice, scaling, pp.scaled(raw, scaling)


def info_scaling(info: RasterInfo, kind: Optional[str] = None) -> pp.Scaling:
    """A single-band info's GDAL scale and offset as the codec applies them to a band of `kind` (pp.band_scaling)."""
    return pp.band_scaling(info.scales[0] if info.scales else None, info.offsets[0] if info.offsets else None, kind)


def choose_band_kind(info: RasterInfo, sample: np.ndarray, kind: str) -> pp.KindChoice:
    """`kind`, or with "auto" the detected one (preprocessing.choose_kind on the band's sample in its own units,
    unit, description and tags), with the reason."""
    if kind != "auto":
        return pp.KindChoice(pp.check_kind(kind), "chosen by the user")
    description = info.descriptions[0] if info.descriptions else None
    unit = info.units[0] if info.units else None
    tags = {**info.tags, **(info.band_tags[0] if info.band_tags else {})}
    scaled = info_scaling(info) != pp.IDENTITY
    return pp.choose_kind(info.dtype, sample, description, tags, unit, scaled)


class _TextureTiles:
    """Raw tiles of the band, kept while pass 1 reads it, where the SSIM weights' reference is measured: the
    whole raster when it is small (then the reference is exactly what the encoder would measure on it), else
    every k-th of the TEXTURE_TILE squares from the middle rows of the STRIP_ROWS bands."""

    def __init__(self, info: RasterInfo):
        self.info = info
        self.whole = info.width * info.height <= TEXTURE_PIXELS
        bands = math.ceil(info.height / STRIP_ROWS)
        self.every = max(1, math.ceil(bands * TEXTURE_TILE * info.width / TEXTURE_PIXELS))
        self.tiles: list[np.ndarray] = []

    def add(self, row0: int, rows: np.ndarray) -> None:
        if self.whole:
            self.tiles.append(rows.copy())
            return
        top = max(0, (rows.shape[0] - TEXTURE_TILE) // 2)
        band = rows[top : top + TEXTURE_TILE]
        k = row0 // STRIP_ROWS
        first = k * math.ceil(self.info.width / TEXTURE_TILE)  # tiles numbered over the raster, band by band
        for j, col in enumerate(range(0, self.info.width, TEXTURE_TILE)):
            if (first + j + k) % self.every == 0:  # + k: staggered from band to band
                self.tiles.append(band[:, col : col + TEXTURE_TILE].copy())

    def scale(self, kind: str, rng: pp.Range, fill_db: float, scaling: pp.Scaling) -> ssim_weights.SsimScale:
        """As the encoder sees the pixels: dB clipped to the range, invalid ones at the fill value. (No-signal pixels
        the encoder codes as data, pp.scattered_no_signal, count here as invalid: seen as signal at the range's
        bottom they made the weights of a noise-clipped scene (10.9 % zeros) cost it 0.06 / 0.11 / 0.17 dB at 0.25 /
        0.5 / 1 bpp.)"""
        raws = [np.concatenate(self.tiles)] if self.whole else self.tiles
        blocks, zero_fill = [], pp.zero_is_fill(kind, self.info.dtype)
        for raw in raws:
            valid = pp.valid_mask(raw, self.info.nodata, zero_fill)
            db = np.clip(pp.to_db(raw, kind, scaling), rng.vmin, rng.vmax)
            blocks.append((np.where(valid, db, np.float32(fill_db)).astype(np.float32), valid))
        margin = 0 if self.whole else SSIM_WINDOW // 2
        return ssim_weights.SsimScale(rng.span, ssim_weights.reference(blocks, rng.span, margin))


def _range(db: np.ndarray, kind: str, constant: bool) -> pp.Range:
    """The sample's percentile range (a native band's from its minimum), rounded (_rounded) unless the band is
    constant: rounding would move its centre, the flat base every pixel decodes to, off the value (0.1234567
    decoded as 0.1235 in native)."""
    if kind != "native":
        rng = pp.robust_range(db, *RANGE_PERCENTILES)
        return rng if constant else _rounded(rng, 4)
    rng = pp.robust_range(db, *NATIVE_RANGE_PERCENTILES, min_span=pp.native_min_span(db))
    return rng if constant else _rounded(rng, 4 - math.floor(math.log10(rng.span)))


SATURATED_SHARE = 1e-4
"""Pixels at the sample's largest value, at least this share of them (and SATURATED_MIN), above its 99th percentile:
a saturated sensor or a clipped product, not a scene (no two bright targets have one value in floats, and one in
ten thousand in DN). Their value is left out of the range (they are coded as bright-target residuals): in it, the
99.9th percentile of a RADARSAT-2-like amplitude product with 0.16 % of its pixels at 65535 (the rest mostly 12
to 1298) was 65535, a range of 75 dB instead of 41 and a step twice as coarse, and its decoded intensity mean 0.74
of the original's (a robustness sweep)."""
SATURATED_MIN = 16
SATURATED_STRETCH_DB = 1.0
"""...where they stretch the range's top by more than this: a product clipped at the top of its own values (GEFOLKI's
crop, 0.35 % at 1.0, the rest up to 0.99) keeps them in the range (left out, its files grew 25 bytes at qualities
3 and 6)."""


def _saturated(db: np.ndarray, kind: str) -> np.ndarray:
    """Where the sample sits at a saturated top (SATURATED_SHARE): dB kinds only (native values keep their range)."""
    if kind == "native" or db.size == 0:
        return np.zeros(db.shape, dtype=bool)
    top = db.max()
    at_top = db == top
    count = int(np.count_nonzero(at_top))
    if count < max(SATURATED_MIN, SATURATED_SHARE * db.size) or count > 0.01 * db.size:  # most rasters stop here
        return np.zeros(db.shape, dtype=bool)
    return at_top if top > np.percentile(db, 99) else np.zeros(db.shape, dtype=bool)


GAP_DB = pp.FILL_GAP_DB
"""An empty stretch of the coded range at least this wide (dB) splits the valid pixels into two populations: speckle
and real scenes fill their range continuously (the 8 real crops' widest empty 1 dB bin run: 0), fill at a tiny value
(1e-10 where a product has no data, and no nodata declared) does not."""
HISTOGRAM_CELLS = 1 << 16
"""Ranges up to this many dB are cut into cells by a histogram: sorting the sample's cells instead (for any width)
took 90 MB more in pass 1 of a 65536x512 raster, its peak RSS 295 MiB instead of 255 (bench --performance)."""
GAP_MIN_SAMPLE = 10_000
"""Fewer sampled values leave 1 dB bins empty by chance: no gap is looked for."""


def gap_warnings(db: np.ndarray, rng: pp.Range, kind: str) -> list[str]:
    """A warning where the coded range holds two populations GAP_DB apart: quality steps are fractions of the range,
    so a dark population (fill at a tiny value, no nodata declared) coarsens the rest. Measured by a robustness
    sweep: a single-look scene with half its pixels at 1e-10 times their intensity got a range of 132 dB instead of
    36, a step 3.7 times coarser, 0.005 bpp at quality 5 and 19 dB errors on the other half, with no word."""
    if kind == "native" or db.size < GAP_MIN_SAMPLE or rng.span < 2 * GAP_DB:
        return []
    n = math.ceil(rng.span)  # cells of about 1 dB over the range
    width = rng.span / n
    if n <= HISTOGRAM_CELLS:
        filled = np.flatnonzero(np.histogram(db, bins=n, range=(rng.vmin, rng.vmax))[0])
    else:  # a histogram of so many bins failed on a 1e38 dB range; the cells that hold values, sorted
        inside = db[(db >= rng.vmin) & (db <= rng.vmax)].astype(np.float64)
        filled = np.unique(np.minimum(np.floor((inside - rng.vmin) / width), n - 1))
    gaps = (np.diff(filled) - 1) * width  # dB of empty cells between consecutive filled ones
    if gaps.size == 0 or gaps.max() < GAP_DB:
        return []
    at = int(np.argmax(gaps))
    low_top, high_bottom = rng.vmin + (filled[at] + 1) * width, rng.vmin + filled[at + 1] * width
    low = db < low_top
    if np.count_nonzero(low) <= db.size / 2:  # the smaller population is the one apart (fill, or bright outliers)
        apart, where = low, f"at {low_top:.1f} dB or below, {gaps[at]:.0f} dB under the rest"
    else:
        apart, where = ~low, f"at {high_bottom:.1f} dB or above, {gaps[at]:.0f} dB over the rest"
    share = 100.0 * np.count_nonzero(apart) / db.size
    rest = _range(db[~apart], kind, constant=False)  # the rest's range, as it would be alone
    return [
        f"{share:.1f} % of the valid pixels lie {where}: the coded range spans {rng.span:.0f} dB instead of about "
        f"{rest.span:.0f}, and quality steps are fractions of it, so the rest is coded {rng.span / rest.span:.1f} "
        "times coarser; if those pixels are fill, declare their value as the band's nodata (or code to a "
        "--target-bpp)"
    ]


def _rounded(rng: pp.Range, decimals: int) -> pp.Range:
    """The range to `decimals` decimals (1e-4 for dB, four more digits than a native span's order): the header stores
    it in a few digits instead of 17, the same numbers both sides."""
    decimals = max(decimals, 4)
    return pp.Range(round(rng.vmin, decimals), round(rng.vmax, decimals))


def sample_band(info: RasterInfo, read: RowReader, tiles: Optional[_TextureTiles] = None) -> np.ndarray:
    """Every k-th row and column (about SAMPLE_VALUES at most) of the pixels that are not nodata or non-finite
    (zeros included: the kind decides whether they are fill), strip by strip (and the texture tiles, when asked
    for); empty when there are none."""
    parts: list[np.ndarray] = []
    for row0, rows, grid in pp.strided_strips(read, info.height, info.width, STRIP_ROWS, SAMPLE_VALUES):
        if tiles is not None:
            tiles.add(row0, rows)
        picked = grid[pp.valid_mask(grid, info.nodata)]
        if picked.size == 0:  # sparse data between the grid points: still let it count
            picked = rows[pp.valid_mask(rows, info.nodata)][:1024]
        parts.append(picked)
    return np.concatenate(parts)
