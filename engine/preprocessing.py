"""SAR radiometry: input kinds, the coding domain and back, nodata and no-signal masks, robust per-raster range.

The codec works in a coding domain scaled to [0, 1]: dB for linear backscatter (speckle is multiplicative, so dB
makes it additive and roughly stationary), the values as they are for the `native` kind (display-scaled
products, whose users judge them in their own values, and anything that is not backscatter). A per-raster robust
range (percentiles of valid values in the coding domain) fits any calibration (DN, sigma0, amplitude, dB).
Exact zeros of intensity, amplitude, complex and unsigned-integer native rasters are no signal (the fill outside
a product's footprint): masked like nodata, outside every statistic, restored as exact zeros.
The functions keep the names `to_db` / `from_db`: for `db` and `native` the "dB" they return is the value itself.
numpy only: no torch, no rasterio, so the statistics can run anywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import numpy as np

from .errors import InputError

Kind = Literal["intensity", "amplitude", "db", "complex", "native"]
KINDS: tuple[str, ...] = ("intensity", "amplitude", "db", "complex", "native")
LINEAR_KINDS: tuple[str, ...] = ("intensity", "amplitude", "complex")
"""Kinds whose values are linear backscatter (coded in dB): negative values cannot be one of them."""
SUPPORTED_DTYPES: tuple[str, ...] = (
    "uint8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "float32",
    "float64",
    "complex64",
    "complex128",
    "complex_int16",
)
INTEGER_DTYPES: tuple[str, ...] = ("uint8", "uint16", "int16", "uint32", "int32")

NOISE_FLOOR = float(np.finfo(np.float32).tiny)
"""The smallest linear intensity taken as it is (float32's smallest normal number, -379.3 dB), given to pixels
<= 0 or non-finite so that dB stays finite: any normal positive intensity a float32 holds keeps its dB, and a band
whose values lie under it is refused (`_check_noise_floor`). (At 1e-10, -100 dB, a product in other units,
intensities near 1e-13, was clamped whole to one value and decoded as 1e-10.)"""
FLOOR_DB = -100.0
FLOAT32_MAX = float(np.finfo(np.float32).max)
MIN_SPAN_DB = 1.0
"""Smallest dB range: a constant image still gets a usable, invertible range."""
MAX_SAMPLE = 4_000_000
"""Values kept by the strided range estimator: percentiles of 4M values are exact to far below 0.1 dB."""

Scaling = tuple[float, float]
IDENTITY: Scaling = (1.0, 0.0)
"""A band's GDAL scale and offset (value = raw * scale + offset) as the codec applies them; IDENTITY: none."""


def band_scaling(scale: Optional[float], offset: Optional[float], kind: Optional[str] = None) -> Scaling:
    """What the band's pixels mean in its own units: GDAL's scale and offset (a dB x 100 int16 product stores
    scale 0.01). The codec codes those values and writes the raw ones back; a missing, zero or non-finite scale is
    none (GDAL's own default), and so is any for complex SLC, which decodes to intensity, not to its raw values."""
    if kind == "complex":
        return IDENTITY
    s = 1.0 if scale is None else float(scale)
    o = 0.0 if offset is None else float(offset)
    if not (math.isfinite(s) and math.isfinite(o)) or s == 0.0:
        return IDENTITY
    return (s, o)


def scaled(raw: np.ndarray, scaling: Scaling) -> np.ndarray:
    """The band's values in its own units (raw * scale + offset, float64); `raw` itself without a scaling."""
    if scaling == IDENTITY:
        return raw
    return np.asarray(raw).astype(np.complex128 if np.iscomplexobj(raw) else np.float64) * scaling[0] + scaling[1]


_DB_WORDS = re.compile(r"(?<![a-z])(db|decibels?)(?![a-z])")
_AMP_WORDS = re.compile(r"(?<![a-z])(amp|amplitude|magnitude)(?![a-z])")
_INTENSITY_WORDS = re.compile(r"(?<![a-z])(intensity|power|sigma0|sigma_0|beta0|gamma0|linear)(?![a-z])")


def check_dtype(dtype: object) -> str:
    """Canonical dtype name, or InputError naming a dtype the codec does not handle (e.g. int8, int64)."""
    name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
    if name not in SUPPORTED_DTYPES:
        supported = ", ".join(SUPPORTED_DTYPES).replace("complex_int16", "complex int16 (GDAL's CInt16)")
        raise InputError(f"unsupported raster data type {name!r}; supported: {supported}")
    return name


def check_kind(kind: str) -> str:
    """The kind itself, or InputError naming an unknown kind."""
    if kind not in KINDS:
        raise InputError(f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def zero_is_fill(kind: str, dtype: object) -> bool:
    """Whether exact zeros are no-signal fill: in linear backscatter (0 has no dB value, and real products fill
    outside their footprint with it) and in unsigned-integer native products (display and DN products use 0 as
    fill, their data starts at 1); not in dB or signed/float native values (a DEM's sea level is data)."""
    if kind in LINEAR_KINDS:
        return True
    return kind == "native" and str(dtype) in ("uint8", "uint16")


@dataclass(frozen=True)
class KindChoice:
    """A kind and why it was chosen (shown by `info`, the log and the dock's input summary)."""

    kind: str
    reason: str


DISPLAY_TAIL = 4.0
"""uint16 values whose 99.9th percentile is under this multiple of their median are display-scaled: linear
amplitude keeps speckle's and the scene's long upper tail (12.6-17.2 measured on simulated 4-look GRD-like DN
scenes, 17.7-18.8 at one look), a stretch squeezes it (1.8-2.0 log, 3.1-3.7 square root, same scenes). A
homogeneous linear scene (open sea: about 2 at 4 looks) has as short a tail: DISPLAY_REACH tells them apart."""
DISPLAY_REACH = 0.5
"""...where the values also reach up the type's range (their 99.9th percentile at least this share of its top): a
stretch for display spreads the scene over its 16 bits (the stretched scenes above: 1.0 of the top), a DN product's
calibration leaves it low in them (the simulated 4-look GRD-like scenes: 0.06-0.10). Without it, a homogeneous DN
amplitude scene (open sea, a multilooked crop with a tail 2-4 times its median) was taken for display-scaled and
coded native: 0.4-0.8 dB under JPEG 2000 where coding it as amplitude gave +0.6 to +1.0 dB (0.7.4's sweep)."""
SATURATED_SHARE = 0.001
SATURATED_MIN = 16
"""...or when at least this share (and this many) of the (nonzero) values sit at the maximum: a stretch clipped
at its top (0.3-0.6 % at 65535 on the square-root-stretched scenes above; 1 pixel on the linear ones)..."""
SATURATED_REACH = 0.25
"""...and the other values reach up toward it (their 99th percentile at least this share of it): a stretch spreads
the scene up to its clipped top, where a DN product's saturated targets sit far above the rest (a RADARSAT-2-like
amplitude scene of values 12-1298 with 0.16 % at 65535 was taken for display-scaled: coded native over [1, 65535],
13.7 dB where JPEG 2000 gave 17.4 at the same size, a robustness sweep)."""


def _display_scaled(values: np.ndarray, type_top: int) -> Optional[str]:
    """Why an unsigned-integer sample (zeros dropped; `type_top`: its type's largest value) looks display-scaled, or
    None if it looks linear."""
    if values.size == 0:
        return None
    top = values.max()
    tail, p999 = _upper_tail(values)
    if tail < DISPLAY_TAIL and p999 >= DISPLAY_REACH * type_top:
        return (
            f"short upper tail (99.9th percentile {tail:.2f}x the median < {DISPLAY_TAIL}) reaching "
            f"{100 * p999 / type_top:.0f} % of {type_top}"
        )
    below = values[values < top]
    at_top = values.size - below.size
    saturated = at_top >= max(SATURATED_SHARE * values.size, SATURATED_MIN) and top > np.percentile(values, 99)
    if saturated and below.size and np.percentile(below, 99) >= SATURATED_REACH * top:
        return f"{100 * at_top / values.size:.2f} % of the values saturated at {top}"
    return None


def _dn_shape(values: Optional[np.ndarray], name: str, scaled: bool) -> str:
    """What an integer band's values show that a DN product's do (for the reason `info` gives; `values` in the
    band's own units, `scaled` by a GDAL scale or offset)."""
    if values is None:
        return "no values sampled"
    if is_constant(values):
        return "one value"
    signal = values[values != 0]
    tail, p999 = _upper_tail(signal) if signal.size else (math.inf, 0.0)
    if tail >= DISPLAY_TAIL:
        return "a long upper tail"
    if name == "uint16" and not scaled:
        return f"a short upper tail low in its range (99.9th percentile at {100 * p999 / 65535:.1f} % of 65535)"
    return "a short upper tail"


def _upper_tail(values: np.ndarray) -> tuple[float, float]:
    """The 99.9th percentile of `values` (nonzero) over their median (inf for a zero median), and the percentile."""
    median, p999 = np.percentile(values, [50, 99.9])
    return (float(p999 / median) if median > 0 else math.inf), float(p999)


def choose_kind(
    dtype: object,
    sample: Optional[np.ndarray] = None,
    description: Optional[str] = None,
    tags: Optional[Mapping[str, object]] = None,
    unit: Optional[str] = None,
    scaled: bool = False,
) -> KindChoice:
    """Guess what the pixel values mean (`sample`: valid values in the band's own units, its GDAL scale and offset
    applied, zeros included); callers can always override with an explicit kind.

    Rules, first match wins:
    1. complex dtype -> "complex" (SLC; decompresses to float32 intensity).
    2. the band's unit (GDAL's unit type) says dB / decibel -> "db", amplitude / amp / magnitude -> "amplitude",
       intensity / power / linear -> "intensity": the one field that names the values' unit.
    3. the description, or a tag whose name is about units or a description, says dB / decibel -> "db". (Other
       tags do not count: a calibration constant in dB, CALIBRATION_CONSTANT_DB, says nothing of the pixels.)
    4. uint8 -> "native": 8 bits cannot hold SAR's linear dynamic range, such products are display-scaled and
       judged in their own values (not when `scaled`: a GDAL scale or offset says what the values mean).
    5. uint16 whose histogram says display scaling (a short upper tail high in the type's range, or a saturated
       top: `_display_scaled`)
       -> "native" (not when `scaled`).
    6. the description or those tags say amplitude / amp / magnitude -> "amplitude".
    7. they say intensity / power / sigma0 / beta0 / gamma0 / linear -> "intensity".
    8. values (finite ones of `sample`) mostly negative (> 50 %) and all within about [-60, 40] -> "db"
       (linear intensity and amplitude are never negative; a minority below DARK_TAIL_DB, undeclared fill, aside).
    9. a few negative values (AUTO_RESIDUE_SHARE at most) that thermal noise removal leaves (`noise_residue`: no
       deeper than the positive values' median, in calibrated backscatter), on a band with no unit -> "intensity":
       coded as native values, a Sentinel-1 sigma0 product with 0.5 % such values measured 7.2-7.7 dB under JPEG
       2000 (a sweep of product quirks). More of them stay native with a warning that names intensity: a DEM in km
       below sea level, a displacement map, an index (NDVI) look like that too, and would lose their signs.
    10. some negative values otherwise -> "native": not backscatter (a DEM, a difference image), coded as is.
    11. integer dtypes (uint16, int16, uint32, int32) -> "amplitude": DN products (Sentinel-1 GRD, TerraSAR-X MGD)
        store amplitude, so intensity would halve their dB contrast.
    12. otherwise -> "intensity".
    Words are checked against the values: a linear kind named where the values look like dB is "db" (sigma0 and
    gamma0 name a quantity, not its unit: Sentinel-1 "Sigma0_VV" products are often in dB), and "db" is not taken
    for values no dB can be (above DB_LIMIT).
    """
    name = check_dtype(dtype)
    if name.startswith("complex"):
        return KindChoice("complex", "complex data type")
    values = None if sample is None else np.asarray(sample).ravel()
    said = _said_kind((unit or "").lower(), values, "the band's unit says")
    if said is not None:
        return said
    text = _text_of(description, tags)
    if _DB_WORDS.search(text) and _can_be_db(values):
        return KindChoice("db", "description or tags say dB")
    if name == "uint8" and not scaled:
        return KindChoice("native", "uint8: a display-scaled product, coded in its own values")
    if name == "uint16" and values is not None and not scaled:
        why = _display_scaled(values[values != 0], np.iinfo(name).max)
        if why:
            return KindChoice("native", f"uint16 display-scaled ({why}), coded in its own values")
    said = _said_kind(text, values, "description or tags say", db_words=False)
    if said is not None:
        return said
    if values is not None and _looks_like_db(values):
        return KindChoice("db", "values mostly negative within [-60, 40]: dB")
    if values is not None and not unit and _auto_residue(values):
        share = 100 * negative_share(values)
        return KindChoice("intensity", f"{share:.2f} % negative values, noise left by its subtraction: intensity")
    if values is not None and negative_share(values) > 0:
        share = 100 * negative_share(values)
        return KindChoice("native", f"{share:.2f} % negative values: not backscatter, coded as they are")
    if name in INTEGER_DTYPES:
        return KindChoice(
            "amplitude", f"{name} with {_dn_shape(values, name, scaled)}: linear amplitude DN, coded in dB"
        )
    return KindChoice("intensity", "non-negative floating-point values: linear intensity, coded in dB")


def _said_kind(text: str, values: Optional[np.ndarray], says: str, db_words: bool = True) -> Optional[KindChoice]:
    """The kind `text` names (dB words first, unless `db_words` is off), checked against the values; None when it
    names none (or dB for values no dB can be). `says`: where the words are, for the reason."""
    if db_words and _DB_WORDS.search(text):
        return KindChoice("db", f"{says} dB") if _can_be_db(values) else None
    for words, kind in ((_AMP_WORDS, "amplitude"), (_INTENSITY_WORDS, "intensity")):
        if words.search(text):
            if values is not None and _looks_like_db(values):
                return KindChoice("db", f"{says} {kind}, but the values are mostly negative within [-60, 40]: dB")
            return KindChoice(kind, f"{says} {kind}")
    return None


DB_LIMIT = 10.0 * math.log10(FLOAT32_MAX)
"""The largest dB the codec can take (385.3 dB): 10**(dB/10) beyond it overflows float32. A dB x 100 integer
product without its scale (values in the thousands) crashed the survey with an infinite mean."""


def _can_be_db(values: Optional[np.ndarray]) -> bool:
    """Whether `values` (None: not known) can be dB at all: none above DB_LIMIT (far below zero, an undeclared
    -9999 fill, is only a very dark pixel: 10**(dB/10) goes to 0, not to infinity)."""
    if values is None or values.size == 0:
        return True
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    return finite.size == 0 or float(np.max(finite)) <= DB_LIMIT


def value_warnings(kind: str, sample: np.ndarray, chosen: str) -> list[str]:
    """What the user must hear about coding `sample` (the band's valid values, zeros included) as `kind`
    (`chosen`: "auto" or the user's kind); InputError for values the kind cannot represent.

    Negative values in linear backscatter would be floored to the noise floor behind good-looking metrics: refused,
    naming the kind that codes them. Negative values coded native (auto), an all-invalid or a constant band are
    coded, with a warning."""
    sample = np.asarray(sample).ravel()
    negative = negative_share(sample)
    residue = negative > 0 and noise_residue(sample)
    accepted = residue or (chosen == "intensity" and negative > 0 and noise_residue(sample, declared=True))
    if kind in LINEAR_KINDS and negative > 0 and not (kind == "intensity" and accepted):
        raise InputError(
            f"{100 * negative:.2f} % of the valid values are negative: not {kind} backscatter (a DEM or a "
            "difference image?); choose kind 'native' to code the values as they are ('db' if they are dB)"
        )
    _check_float32_range(sample, kind)
    warnings = []
    if kind == "intensity" and negative > 0:
        warnings.append(
            f"{100 * negative:.2f} % of the values are negative (noise-subtracted intensity): they are coded at the "
            "dark end of the coded range and decode as small positive values; the block means count them (a block "
            "whose negative values outweigh the rest decodes near zero)"
        )
    if chosen == "auto" and kind == "native" and negative > 0:
        if sample.dtype.kind in "iu":
            hint = (
                "if they are scaled dB (dB x 100), give their scale (a GDAL band's: gdal_edit.py -scale 0.01; the "
                "Zarr codec's: Sarz(scale=0.01)) so that they are coded as dB with their mean backscatter kept"
            )
        elif residue:
            hint = (
                "if this is noise-subtracted intensity (its negative values are noise below the floor), choose kind "
                "'intensity': coded as native values, its dark areas keep little of their detail and its linear "
                "mean is not kept (a simulated 4-look scene, 28 % negative: mean +7 % as native, -0.3 % as intensity)"
            )
        elif _within(sample, -60.0, 60.0):
            hint = (
                "if they are dB (a bright scene's dB values, all within [-60, 60]), choose kind 'db': coded as "
                "native values, their mean backscatter is not kept"
            )
        else:
            hint = "choose another kind if that is wrong"
        warnings.append(
            f"{100 * negative:.2f} % of the values are negative: not linear backscatter; coded as 'native' "
            f"(values as they are, no dB); {hint}"
        )
    if kind == "db" and chosen == "db" and not is_constant(sample) and _within(sample, 0.0, 1.0):
        warnings.append(
            "the values all lie between 0 and 1, a span no dB product has: if they are linear intensity or "
            "amplitude, choose that kind (as dB they code to noise)"
        )
    valid = sample[sample != 0] if zero_is_fill(kind, sample.dtype) else sample
    if valid.size == 0:
        warnings.append("no valid pixels: every pixel is nodata, NaN or no-signal zero; only its mask is coded")
    elif is_constant(valid):
        warnings.append(f"constant raster: every valid pixel is {valid[0]!r}; nothing to code but the value")
    elif chosen == "auto" and kind == "amplitude" and sample.dtype == np.uint16 and _display_like(valid):
        warnings.append(
            "uint16 with a short upper tail low in its range, coded as amplitude DN in dB: if it is a display stretch "
            "(values for viewing, not backscatter: a 12-bit or min-max stretch), choose kind 'native' to code its "
            "values as they are (as amplitude such stretches measured 0.3-1 dB under native coding)"
        )
    return warnings


DISPLAY_HINT_REACH = 1 / 32
"""A short-tailed uint16 band taken for DN whose 99.9th percentile reaches this share of 65535 (2048) is told that
a display stretch is coded native: a 12-bit stretch reaches 4095, a Sentinel-1-like DN scene of short tail some
hundreds (the simulated ones: 0.2-0.6 % of 65535), which the hint would only confuse."""


def _display_like(valid: np.ndarray) -> bool:
    """Whether uint16 values coded as DN could be a display stretch DISPLAY_REACH let through."""
    tail, p999 = _upper_tail(valid)
    return tail < DISPLAY_TAIL and p999 >= DISPLAY_HINT_REACH * 65535


def _within(sample: np.ndarray, lo: float, hi: float) -> bool:
    """Whether the finite values of `sample` (one at least) all lie within [lo, hi] (their 0.1-99.9 percentiles)."""
    finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    if finite.size == 0:
        return False
    low, high = np.percentile(finite, [0.1, 99.9])
    return bool(lo <= low and high <= hi)


def _check_float32_range(sample: np.ndarray, kind: str) -> None:
    """InputError for values the codec's float32 arithmetic cannot hold (a float64 raster's 1e45, or an amplitude
    whose square overflows): they came back as inf, or -100 everywhere when coded native."""
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return
    top = float(np.max(np.abs(finite)))
    if kind == "db" and not _can_be_db(finite):
        raise InputError(
            f"values up to {float(np.max(finite)):.6g} cannot be dB (at most {DB_LIMIT:.1f} dB: 10**(dB/10) "
            "overflows beyond): if they are scaled dB (dB x 100, dB x 10), give their scale (a GDAL band's: "
            "gdal_edit.py -scale 0.01; the Zarr codec's: Sarz(scale=0.01)); if a value marks missing data, declare "
            "it as the band's nodata; else choose kind 'native'"
        )
    limit = math.sqrt(FLOAT32_MAX) if kind in ("amplitude", "complex") else FLOAT32_MAX
    if top > limit:
        raise InputError(
            f"values up to {top:.3g} cannot be coded as {kind}: the codec works in float32 (up to {limit:.3g} here); "
            "rescale the raster first"
        )
    if kind in LINEAR_KINDS:
        _check_noise_floor(finite, kind)


TINY_SHARE = 0.01
"""Share of a linear band's positive intensities under NOISE_FLOOR past which it is refused (a few denormal pixels
lie far under any range and decode at its bottom anyway)."""


def _check_noise_floor(finite: np.ndarray, kind: str) -> None:
    """InputError for a linear band whose intensities lie under float32's smallest normal number (NOISE_FLOOR): they
    were clamped to it, a raster of 1e-40 intensities decoded to two values (mean 122 times the original's), one of
    1e-21 amplitudes to a constant, and evaluate, clamping alike, measured 107 dB (a sweep)."""
    power = np.abs(finite).astype(np.float64)
    power = power[(finite > 0) if kind == "intensity" else (power > 0)]
    power = power if kind == "intensity" else power * power
    tiny = float(np.mean(power < NOISE_FLOOR)) if power.size else 0.0
    if tiny > TINY_SHARE:
        smallest = float(np.min(power))
        raise InputError(
            f"{100 * tiny:.3g} % of the values are below {NOISE_FLOOR:.3g} as linear "
            f"intensity (down to {smallest:.3g}), under what float32 holds at full precision: rescale the raster "
            "first (multiply it by a power of ten; dB and the metrics shift by a constant)"
        )


def is_constant(valid: np.ndarray) -> bool:
    """Whether there is at least one valid value and every one equals it: nothing to code but the value."""
    return valid.size > 0 and bool(np.all(valid == valid.flat[0]))


NOISE_RESIDUE_SHARE = 0.5
"""At most this share of negative values in what noise_residue takes for noise-subtracted intensity..."""
DECLARED_RESIDUE_SHARE = 0.75
"""...and where the user declared intensity: noise less its mean is skewed, so a chunk of sea under the noise floor
has more negative values than positive ones (53.6 % in a sweep's Zarr chunks of a scene the command line took)."""
CALIBRATED_MEDIAN = 1.0
"""Calibrated linear backscatter (sigma0, beta0, gamma0) has its median below 1 (0 dB); dB values of a bright scene,
whose few negative values look like residue too, have theirs at several units."""


AUTO_RESIDUE_SHARE = 0.01
"""At most this share of negative values in what is taken for noise-subtracted intensity without being told (0.47 %
on the Sentinel-1 sigma0 product measured; a km DEM's sea-level dips, a displacement map's or an NDVI's negative
values are more: a review measured 2.8, 6.5 and 20 %)."""


def _auto_residue(values: np.ndarray) -> bool:
    """Whether `values` are noise-subtracted intensity beyond doubt: noise residue, and a few negative values only."""
    return 0 < negative_share(values) <= AUTO_RESIDUE_SHARE and noise_residue(values)


def noise_residue(values: np.ndarray, declared: bool = False) -> bool:
    """Whether the negative values of `values` are what subtracting the noise leaves in linear intensity
    (Sentinel-1's thermal noise removal, any NESZ subtracted): a minority (NOISE_RESIDUE_SHARE at most), no deeper
    than the positive values' median (the negatives' 99th percentile), in calibrated backscatter (CALIBRATED_MEDIAN).
    A DEM's or a difference image's negative values are as large as their positive ones, a bright dB scene's median
    is several dB. `declared` (the user chose intensity): DECLARED_RESIDUE_SHARE at most, no deeper than the positive
    values' 99th percentile, in any units (the sea in cross-polarisation, its signal under the noise, leaves more
    and deeper negative values)."""
    values = np.asarray(values)
    if values.dtype.kind == "c" or values.size == 0:
        return False
    finite = values[np.isfinite(values)].astype(np.float64) if values.dtype.kind == "f" else values.astype(np.float64)
    below, above = -finite[finite < 0], finite[finite > 0]
    share = DECLARED_RESIDUE_SHARE if declared else NOISE_RESIDUE_SHARE
    if below.size == 0 or above.size == 0 or below.size > share * finite.size:
        return False
    deepest = float(np.percentile(below, 99))
    if declared:
        return deepest <= float(np.percentile(above, 99))
    median = float(np.median(above))
    return deepest <= median < CALIBRATED_MEDIAN


def negative_share(values: np.ndarray) -> float:
    """Share of the finite values of `values` below zero."""
    values = np.asarray(values)
    if values.dtype.kind in "c" or values.size == 0:
        return 0.0
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    return float(np.mean(finite < 0)) if finite.size else 0.0


ABOUT_VALUES = frozenset({"unit", "units", "description", "desc", "long_name", "standard_name"})
"""Tags whose name says they are about the pixel values (UNITS, DESCRIPTION; netCDF's units and long_name, also as
GDAL's Band1#units): the only ones whose words count. A name that merely contains one (CALIBRATION_CONSTANT_UNIT)
does not."""


def _text_of(description: Optional[str], tags: Optional[Mapping[str, object]]) -> str:
    parts = [description or ""]
    if tags:
        parts += [str(v) for k, v in tags.items() if str(k).rsplit("#", 1)[-1].lower() in ABOUT_VALUES]
    return " ".join(parts).lower()


def detect_kind(
    dtype: object,
    sample: Optional[np.ndarray] = None,
    description: Optional[str] = None,
    tags: Optional[Mapping[str, object]] = None,
    unit: Optional[str] = None,
    scaled: bool = False,
) -> Kind:
    """`choose_kind`'s kind alone."""
    return choose_kind(dtype, sample, description, tags, unit, scaled).kind  # type: ignore[return-value]


DARK_TAIL_DB = -90.0
"""No backscatter product holds values this low in dB: a minority below it is fill nobody declared (-99.99 dB, a dB
x 100 product's -9999), not evidence against dB (it made such a product 'native', its mean 12 % off)."""


def _looks_like_db(sample: np.ndarray) -> bool:
    values = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample.ravel()
    core = values[values > DARK_TAIL_DB]
    values = core if core.size > values.size / 2 else values
    if values.size == 0:
        return False
    lo, hi = np.percentile(values, [0.1, 99.9])
    return bool(np.mean(values < 0) > 0.5 and lo >= -60.0 and hi <= 40.0)


MASK_FLAGS = frozenset({"per_dataset", "alpha"})
"""GDAL mask flags (rasterio's MaskFlags names) of a mask of the band's own: an internal or .msk mask, or an alpha
band. A nodata value's mask is the nodata value itself; "all_valid" masks nothing."""


def has_own_mask(flag_names: Iterable[str]) -> bool:
    """Whether a band's GDAL mask flags name a mask of its own (MASK_FLAGS) rather than its nodata value."""
    names = set(flag_names)
    return bool(names & MASK_FLAGS) and "nodata" not in names


def mask_marker(dtype: object, nodata: Optional[float] = None) -> Optional[float]:
    """The value a masked pixel is read as, so that every pass sees it as invalid and the decoder restores it: the
    band's nodata value where it has one, else NaN in floating-point and complex bands (CInt16 included, read as
    complex64), 0 (no-signal fill, `zero_is_fill`) in uint8 and uint16 bands; None where no value can mark it
    (other integers without a nodata value, whose every value may be data)."""
    if nodata is not None:
        return nodata
    name = str(dtype)
    if name.startswith("complex") or np.dtype(name).kind == "f":
        return math.nan
    return 0.0 if name in ("uint8", "uint16") else None


def read_masked(ds, band: int, **window) -> np.ndarray:
    """Band `band` of an open rasterio dataset (`window` or `out_shape` as rasterio takes them) with the pixels of its
    own GDAL mask at `mask_marker` (its nodata value, NaN or 0): how the codec and the metrics both read a raster."""
    return read_with_mask(ds, band, **window)[0]


def read_with_mask(ds, band: int, **window) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """`read_masked`'s values, and where the band's own GDAL mask hides pixels (None without one): a masked pixel
    of a uint8 band reads as 0, which is no zero of its data."""
    values = ds.read(band, **window)
    if not has_own_mask(f.name for f in ds.mask_flag_enums[band - 1]):
        return values, None
    masked = ds.read_masks(band, **window) == 0
    return mask_out(values, masked, ds.nodatavals[band - 1]), masked


def unmarked_mask(ds, band: int) -> bool:
    """Whether band `band` of an open rasterio dataset has a mask of its own that no value can mark (no nodata
    value, no `mask_marker` for its type): `read_masked` leaves its masked pixels as they are."""
    flags = (f.name for f in ds.mask_flag_enums[band - 1])
    return has_own_mask(flags) and mask_marker(ds.dtypes[band - 1], ds.nodatavals[band - 1]) is None


def mask_out(values: np.ndarray, masked: np.ndarray, nodata: Optional[float] = None) -> np.ndarray:
    """`values` with the pixels of a GDAL mask (`masked`: True where the mask is 0) at `mask_marker`; unchanged
    where it has none."""
    marker = mask_marker(values.dtype, nodata)
    if marker is None or not masked.any():
        return values
    return np.where(masked, np.array(marker).astype(values.dtype), values)


def valid_mask(arr: np.ndarray, nodata: Optional[float] = None, zero_fill: bool = False) -> np.ndarray:
    """True where a pixel carries data: not equal to `nodata` and finite (NaN/inf are invalid in every kind),
    and with `zero_fill` (`zero_is_fill` of the kind) not an exact zero.

    Apply it to the raw input, before `to_db` (which maps non-finite values to the noise floor). A NaN
    `nodata` is covered by the finiteness test. For dB input only non-finite values and the nodata value are
    invalid: very negative dB values are data.
    """
    arr = np.asarray(arr)
    mask = np.isfinite(arr) if arr.dtype.kind in "fc" else np.ones(arr.shape, dtype=bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        mask &= arr != nodata
    if zero_fill:
        mask &= arr != 0
    return mask


def isolated_count(mask: np.ndarray) -> int:
    """Pixels of `mask` none of whose 4 neighbours (inside the array) is in it: isolated zeros inside a
    footprint, as opposed to the fill around it."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0
    p = np.pad(m, 1)
    neighbour = p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return int(np.count_nonzero(m & ~neighbour))


FILL_RUN = 16
"""A no-signal pixel (an exact zero of a linear or DN product, -inf in dB) is fill, coded in the mask and restored
exactly, where it lies in a run of at least this many such pixels along its row or its column (one that reaches
the tile's edge counts half as long again) or in a blob that a 3x3 square of them fits in, or beside such a pixel:
a footprint's fill, a border, a masked area (an RTC product's layover and shadow holes, 3-20 pixels across: 0-74 %
of them decoded as data by size before the blob rule, a sweep). The others are scattered inside the signal, where
thermal noise removal clipped what fell under the noise (SNAP clips to zero; a cross-polarized band over water has
10 % and more): `scattered_no_signal`."""


LOCAL_WINDOW, LOCAL_SHARE = 15, 0.02
"""...and where such scattered pixels are at least this share of their 15x15 neighbourhood (of its part inside the
tile): where thermal noise removal clipped a dark area. A dead pixel or a few scattered ones stay in the mask,
restored exactly as isolated zeros always were, at about 2 bytes each; that is a choice of exactness over bits:
AIRSAR T22 in dB with 0.32 % of its pixels -inf at random measured +0.39 / +0.60 / +0.76 dB over JPEG 2000 at
0.25 / 0.5 / 1 bpp with them in the mask (1.0 % of them dense enough to be data), +1.74 / +1.92 / +1.91 with every
one coded as data (LOCAL_SHARE 0)."""


def no_signal_pixels(
    raw: np.ndarray, valid: np.ndarray, kind: str, dtype: object, nodata: Optional[float]
) -> np.ndarray:
    """The invalid pixels that say "no signal" rather than "no data": exact zeros where zeros are fill
    (`zero_is_fill`), -inf in dB; never the band's nodata value (a declared marker is restored exactly wherever it
    is)."""
    raw = np.asarray(raw)
    if float_db(kind, raw.dtype):
        marker = -np.inf
    elif zero_is_fill(kind, dtype):
        marker = 0
    else:
        return np.zeros(raw.shape, dtype=bool)
    if nodata is not None and nodata == marker:
        return np.zeros(raw.shape, dtype=bool)
    return ~valid & (raw == marker)


def signal_and_scattered(
    raw: np.ndarray, kind: str, dtype: object, nodata: Optional[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels the codec codes as data, in two masks: the signal (valid, not a dB band's zero fill) and the
    no-signal pixels scattered inside it (`scattered_no_signal`); the others are the mask's, restored exactly."""
    signal = valid_mask(raw, nodata, zero_is_fill(kind, dtype)) & ~db_zero_fill(raw, kind, nodata)
    return signal, scattered_no_signal(no_signal_pixels(raw, signal, kind, dtype, nodata))


def coded_pixels(raw: np.ndarray, kind: str, dtype: object, nodata: Optional[float]) -> np.ndarray:
    """The pixels the codec codes as data, either mask of `signal_and_scattered` (what the Zarr codec's bit budget
    counts)."""
    signal, scattered = signal_and_scattered(raw, kind, dtype, nodata)
    return signal | scattered


def scattered_no_signal(no_signal: np.ndarray) -> np.ndarray:
    """The no-signal pixels of a tile scattered inside the signal (not fill: FILL_RUN) where they are dense
    (LOCAL_SHARE): the codec codes these as data instead of in the mask, at the signal around them
    (`fill_scattered`). In the mask each costs two varints, so a simulated noise-clipped cross-polarized scene
    (10.9 % zeros) could not be coded under 0.55 bpp, where JPEG 2000 coded it at 0.25. They decode near their
    neighbours' values, not as exact zeros."""
    m = np.asarray(no_signal, dtype=bool)
    if not m.any():
        return np.zeros(m.shape, dtype=bool)
    scattered = m & ~_near_fill(m)
    return scattered & (_box_share(scattered) >= LOCAL_SHARE)


NEIGHBOUR_WINDOWS = (5, LOCAL_WINDOW)
"""The windows whose signal pixels' mean a scattered no-signal pixel is coded at (the larger one where the smaller
holds none)."""


def fill_scattered(db: np.ndarray, scattered: np.ndarray, signal: np.ndarray, floor: float) -> np.ndarray:
    """`db` (the coding domain, clipped to the range) with each scattered no-signal pixel at the mean of the signal
    around it (NEIGHBOUR_WINDOWS; `floor`, the range's bottom, where there is none): what the refinement layer codes
    there. No metric scores these pixels, and a dip to the range's bottom among dark neighbours costs bits and rings
    onto them: on a simulated noise-clipped scene (10.9 % zeros) coded at the bottom, -0.21 / +0.03 / +0.57 dB
    against JPEG 2000 at 0.25 / 0.5 / 1 bpp, SSIM 0.255 / 0.296 / 0.524 (JPEG 2000 0.255 / 0.292 / 0.344); at their
    neighbours' mean +1.39 / +1.91 / +2.51 dB, SSIM 0.358 / 0.509 / 0.733, the linear mean ratio 0.991 (0.995 /
    0.999 / 1.000 at the bottom: the block means still count them as zero)."""
    out = np.array(db, dtype=np.float32, copy=True)
    todo = np.array(scattered, dtype=bool, copy=True)
    for n in NEIGHBOUR_WINDOWS:
        if not todo.any():
            break
        total, count = _box_sum(np.where(signal, out, 0.0), n), _box_sum(signal, n)
        here = todo & (count > 0)
        out[here] = total[here] / count[here]
        todo &= ~here
    out[todo] = floor
    return out


def db_zero_fill(raw: np.ndarray, kind: str, nodata: Optional[float]) -> np.ndarray:
    """A floating-point dB band's exact zeros that are fill (FILL_RUN: runs, blobs and what lies beside them): a
    footprint filled with 0 and no nodata value (an export that writes masked pixels as 0), coded in the mask and
    restored as 0 (coded as 0 dB data, a sweep's fill decoded between -8.5 and +4.7 dB at 0.25 bpp). 0 dB is data
    elsewhere: scattered zeros stay data, and integer (scaled) dB bands keep theirs."""
    raw = np.asarray(raw)
    zeros = (raw == 0) if float_db(kind, raw.dtype) and nodata != 0 else np.zeros(raw.shape, bool)
    return zeros & _near_fill(zeros) if zeros.any() else zeros


def zeros_uncounted(kind: str, dtype: object) -> bool:
    """Whether a band's raw zeros stay out of its statistics (pass 1's and `inspect`'s): the fill where zeros are
    (`zero_is_fill`), and a float dB band's, whatever scaling makes of them (`db_zero_fill`)."""
    return zero_is_fill(kind, dtype) or float_db(kind, dtype)


def float_db(kind: str, dtype: object) -> bool:
    """A floating-point dB band: one whose exact zeros may be fill (`db_zero_fill`), left out of its statistics."""
    if kind != "db":
        return False
    try:
        return np.dtype(dtype).kind == "f"  # any byte order ('>f4')
    except TypeError:  # GDAL's complex_int16 names no numpy dtype
        return False


def _near_fill(m: np.ndarray) -> np.ndarray:
    """Pixels in or beside `m`'s fill: its runs of FILL_RUN and its blobs a 3x3 square fits in (a masked area, a
    lake under the noise)."""
    return _dilate(_in_long_runs(m) | _in_long_runs(m.T).T | _dilate(_erode(m)))


def _box_share(m: np.ndarray) -> np.ndarray:
    """The share of `m` in each pixel's LOCAL_WINDOW x LOCAL_WINDOW neighbourhood, of the part inside the array."""
    return _box_sum(m, LOCAL_WINDOW) / _box_sum(np.ones(m.shape, dtype=bool), LOCAL_WINDOW)


def _box_sum(values: np.ndarray, n: int) -> np.ndarray:
    """The sum of `values` (a mask counts its pixels) over each pixel's n x n neighbourhood (n odd; an integral
    image, float64 for values)."""
    r = n // 2
    kind = np.int64 if values.dtype == bool else np.float64
    sums = np.pad(values.astype(kind), ((r + 1, r), (r + 1, r))).cumsum(0).cumsum(1)
    return sums[n:, n:] - sums[:-n, n:] - sums[n:, :-n] + sums[:-n, :-n]


def _dilate(m: np.ndarray) -> np.ndarray:
    """Pixels with a pixel of `m` in their 3x3 neighbourhood."""
    out = np.zeros(m.shape, dtype=bool)
    for shifted in _neighbourhood(np.pad(m, 1), m.shape):
        out |= shifted
    return out


def _erode(m: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood (its part inside the array) is all in `m`."""
    out = m.copy()
    for shifted in _neighbourhood(np.pad(m, 1, mode="edge"), m.shape):
        out &= shifted
    return out


def _neighbourhood(padded: np.ndarray, shape: tuple[int, int]) -> Iterator[np.ndarray]:
    """The 9 shifts of an array padded by 1 that put each pixel's 3x3 neighbours on it."""
    h, w = shape
    return (padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))


def _in_long_runs(m: np.ndarray) -> np.ndarray:
    """Pixels of `m` in a run along their row of at least FILL_RUN, counting a run that reaches the array's edge as
    FILL_RUN // 2 longer (it may go on in the next tile; a lone zero on the edge is not fill for that)."""
    h, w = m.shape
    edge = np.ones((h, FILL_RUN // 2), dtype=np.int8)
    rows = np.concatenate([edge, m.astype(np.int8), edge, np.zeros((h, 1), np.int8)], axis=1).ravel()
    change = np.diff(rows, prepend=0, append=0)
    starts, ends = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    long = (ends - starts >= FILL_RUN).astype(np.int32)
    marks = np.zeros(rows.size + 1, dtype=np.int32)
    marks[starts] += long
    marks[ends] -= long
    inside = np.cumsum(marks[:-1]).reshape(h, -1) > 0
    return inside[:, FILL_RUN // 2 : FILL_RUN // 2 + w]


FILL_MIN_COUNT = 4
"""An undeclared fill's value is held by at least this many sampled pixels: exactly one value, repeated, where a
scene's darkest pixels differ (a single-look scene's lowest pixel lies 15 dB under the next in about 3 % of rasters,
the ratio of the two smallest of N uniform values)."""
FILL_REST_VALUES = 32
"""...the other values are a scene's: at least this many distinct ones (a dark sea's DN product holds about 50; a
classification, a mask or a two-valued band does not, and its majority value was taken for fill)..."""
FILL_GAP_DB = 15.0
"""...and it lies at least this far beyond the rest's extreme value in dB: no scene leaves such a gap at its bottom
(the widest empty 1 dB stretch inside the 8 real crops' values: none), a sentinel (-9999, -100 dB, 1e-10) does."""
FILL_SHARE = 0.01
"""A value held by at least this share of a floating-point band's sample needs only FILL_NEAR_GAP_DB: a third of a
dB scene filled with -50 where its speckle reaches -40 was coded as data, the fill decoded between -50 and -33 dB (a
robustness sweep)."""
FILL_TOP_SHARE = 0.05
"""A top value needs this share (and FILL_NEAR_GAP_DB, in any type: integers leave no gap at their top): fewer are a
sensor's saturated targets (a DN product's 1.2 % at 65535 held nearly all its intensity), coded as bright residuals
that decode to it (survey._saturated takes up to 1 %); a uint16 block at 65535 over 9 % of a product decoded between
30761 and 65535 (a robustness sweep)."""
FILL_NEAR_GAP_DB = 7.0
"""Just over the widest gap integer values leave at their bottom in dB (20 log10(2) = 6.02 dB between amplitude DN
1 and 2): a float product converted from DN keeps it."""


def undeclared_fill(raw: np.ndarray, kind_of: Callable[[np.ndarray], tuple[str, Scaling]]) -> Optional[float]:
    """The value of a fill a band holds without declaring a nodata value, in `raw` (a sample of its values in raw
    units; `kind_of(rest)`: the kind and scaling of the other values), or None. Candidates (`_fill_candidates`): the
    smallest value but 0 (the kinds' own rules take zeros), the smallest positive one under values noise subtraction
    left negative, the largest (in the band's units: a negative GDAL scale turns them over). One counts where
    FILL_MIN_COUNT sampled pixels hold it, the rest holds FILL_REST_VALUES distinct values, and it lies further
    beyond the rest than any scene reaches: FILL_GAP_DB (FILL_NEAR_GAP_DB for a float band's value of FILL_SHARE or a
    top value of FILL_TOP_SHARE, which a top value needs) beyond the rest's extreme value in dB (dB and linear kinds;
    measured from the 0.5th percentile, a single-look DN product's many pixels at 1 were taken for fill), or, where
    there is no dB (native values, a negative fill under linear backscatter), the rest's span beyond its extreme.
    Not in uint8 (display products: any value can be data). Coded as data, such a fill stretched the range and lost
    its value: a 4-look dB scene whose footprint was filled with -9999 measured 16.7 dB at 0.5 bpp (26.5 with a NaN
    fill), its fill decoded at the range's bottom; float32's lowest value (an Esri fill) failed in pass 1."""
    if raw.dtype.kind not in "iuf" or raw.dtype == np.uint8:
        return None
    valid = (np.isfinite(raw) & (raw != 0)) if raw.dtype.kind == "f" else raw != 0
    n = int(np.count_nonzero(valid))
    for value, low in _fill_candidates(raw, valid):  # no copy of the sample unless a value repeats (pass 1's peak)
        at_fill = (raw == value) & valid
        count = int(np.count_nonzero(at_fill))
        if count < FILL_MIN_COUNT or count == n:
            continue
        rest = raw[valid & ~at_fill]
        kind, scaling = kind_of(rest)
        fill, rest = float(scaled(np.array([value]), scaling)[0]), scaled(rest, scaling)
        below, share = low != (scaling[0] < 0), count / n  # a negative scale turns the values over
        near = share >= (FILL_SHARE if below else FILL_TOP_SHARE) and (raw.dtype.kind == "f" or not below)
        gap = FILL_NEAR_GAP_DB if near else FILL_GAP_DB
        if (below or near) and _varied(rest) and _apart(fill, rest, kind, gap, below, share):
            return float(value)
    return None


def _varied(rest: np.ndarray) -> bool:
    """Whether the values beside a candidate fill are a scene's (FILL_REST_VALUES distinct ones among a million)."""
    return np.unique(rest[:1_000_000]).size >= FILL_REST_VALUES


def _fill_candidates(raw: np.ndarray, valid: np.ndarray) -> list[tuple[object, bool]]:
    """The (raw value, at the raw bottom) pairs undeclared_fill tries among the `valid` values of `raw`, in order:
    the smallest, the smallest positive one under negative values, the largest."""
    if not valid.any():
        return []
    top, bottom = (np.inf, -np.inf) if raw.dtype.kind == "f" else (np.iinfo(raw.dtype).max, np.iinfo(raw.dtype).min)
    low = np.min(raw, where=valid, initial=top)
    out = [(low, True)]
    positive = valid & (raw > 0)
    if low < 0 and positive.any():
        out.append((np.min(raw, where=positive, initial=top), True))
    return [*out, (np.max(raw, where=valid, initial=bottom), False)]


def _apart(fill: float, rest: np.ndarray, kind: str, gap_db: float, below: bool, share: float) -> bool:
    """Whether `fill` (held by `share` of the sample) lies where no value of a scene like `rest` (both in the band's
    units) would, under it (`below`: beyond its lowest value) or over it (beyond its 99.9th percentile: a few bright
    targets near a uint16 fill at 65535 hid a fill over 36 % of a product, a quarter of which decoded to other
    values). One negative value over FILL_SHARE of linear backscatter is fill whatever its distance: noise
    subtraction leaves a continuum of negative values, never one (a -9999 fill in intensity of a 1.6e6 span, or -1,
    was coded native)."""
    if kind in LINEAR_KINDS and fill < 0 and share >= FILL_SHARE:
        return True
    if kind == "db" or (kind in LINEAR_KINDS and fill > 0):
        db = to_db(rest[rest > 0] if kind in LINEAR_KINDS else rest, kind)
        if db.size == 0:
            return False
        at = float(to_db(np.array([fill]), kind)[0])
        return at < float(np.min(db)) - gap_db if below else at > float(np.percentile(db, 99.9)) + gap_db
    lo, hi = np.percentile(rest, [0.1, 99.9])
    return hi > lo and (fill < np.min(rest) - (hi - lo) if below else fill > hi + (hi - lo))


def linear_to_db(intensity: np.ndarray) -> np.ndarray:
    """10*log10 of linear intensity as float32, with the noise floor (NOISE_FLOOR) for <= 0 or non-finite values."""
    x = np.asarray(intensity, dtype=np.float64)
    x = np.where(np.isfinite(x) & (x > NOISE_FLOOR), x, NOISE_FLOOR)
    return (10.0 * np.log10(x)).astype(np.float32)


def db_to_linear(db: np.ndarray) -> np.ndarray:
    """Linear intensity 10**(dB/10) as float32 (what metrics and the mean-restoring gain work on)."""
    return np.power(10.0, np.asarray(db, dtype=np.float32) / np.float32(10.0)).astype(np.float32)


def mean_values(coded: np.ndarray, kind: str) -> np.ndarray:
    """What a mean of coding-domain values is taken over: linear intensity from dB, native values as they are (no
    linear intensity: taken for dB, an int16 DEM's 10**(v/10) overflowed in its overviews)."""
    return coded if kind == "native" else db_to_linear(coded)


def from_mean_values(values: np.ndarray, kind: str) -> np.ndarray:
    """The coding domain of `mean_values` again (dB of linear intensity, floored at 1e-30; native values as is)."""
    if kind == "native":
        return values
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.maximum(values, 1e-30))


db_to_linear_intensity = db_to_linear


def to_db(arr: np.ndarray, kind: str, scaling: Scaling = IDENTITY) -> np.ndarray:
    """Input values of `kind` (raw, `scaling` applied first) -> float32 dB; never returns non-finite values (linear
    kinds' values <= 0 or non-finite take NOISE_FLOOR's dB, db and native ones FLOOR_DB: invalid pixels, restored
    exactly, or no-signal ones scattered inside the signal, coded at the signal around them: `fill_scattered`).

    intensity: 10*log10(x); amplitude: 20*log10(x) = 10*log10(x**2); complex: 10*log10(|z|**2); db and
    native: as they are.
    """
    check_kind(kind)
    arr = scaled(np.asarray(arr), scaling)
    if kind in ("db", "native"):
        db = arr.astype(np.float32)
        return np.where(np.isfinite(db), db, np.float32(FLOOR_DB)).astype(np.float32)
    if kind == "complex":
        z = arr.astype(np.complex128) if arr.dtype.kind != "c" else arr
        return linear_to_db(z.real.astype(np.float64) ** 2 + z.imag.astype(np.float64) ** 2)
    x = arr.astype(np.float64)
    if kind == "amplitude":
        x = np.where(np.isfinite(x) & (x > 0), x * x, 0.0)
    return linear_to_db(x)


def from_db(db: np.ndarray, kind: str, dtype: object, scaling: Scaling = IDENTITY) -> np.ndarray:
    """dB -> values of the input's `kind` and `dtype` (the inverse of `to_db` up to the noise floor; raw values
    again under a `scaling`).

    Integers are rounded and clipped to the dtype's range. Complex input cannot get its phase back: it
    decompresses to float32 linear intensity (|z|**2), whatever complex `dtype` is given.
    """
    check_kind(kind)
    name = check_dtype(dtype)
    db = np.asarray(db, dtype=np.float64)
    if kind in ("db", "native"):
        values = db
    elif kind == "amplitude":
        values = np.power(10.0, db / 20.0)
    else:
        values = np.power(10.0, db / 10.0)
    if kind == "complex" or name.startswith("complex"):
        return values.astype(np.float32)
    if scaling != IDENTITY:
        values = (values - scaling[1]) / scaling[0]
    if name in INTEGER_DTYPES:
        info = np.iinfo(name)
        return np.clip(np.rint(values), info.min, info.max).astype(name)
    return values.astype(name)


def type_ceiling_db(kind: str, dtype: object, scaling: Scaling = IDENTITY) -> float:
    """The coding-domain value (dB, or native) of the largest value an integer output holds, where from_db clips;
    inf for floating-point and complex input."""
    name = check_dtype(dtype)
    if name not in INTEGER_DTYPES or kind == "complex":
        return math.inf
    info = np.iinfo(name)
    return float(np.max(to_db(np.array([info.min, info.max], dtype=np.float64), kind, scaling)))


def output_dtype(kind: str, dtype: object) -> str:
    """The dtype a decompressed raster gets: the input's, except complex input -> float32 intensity."""
    name = check_dtype(dtype)
    return "float32" if kind == "complex" or name.startswith("complex") else name


@dataclass(frozen=True)
class Range:
    """dB interval mapped to [0, 1]; stored in the .sarz header."""

    vmin: float
    vmax: float

    @property
    def span(self) -> float:
        return self.vmax - self.vmin

    def to_dict(self) -> dict[str, float]:
        return {"vmin": float(self.vmin), "vmax": float(self.vmax)}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Range:
        try:
            vmin, vmax = float(d["vmin"]), float(d["vmax"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"range needs numeric 'vmin' and 'vmax', got {dict(d)!r}") from exc
        if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
            raise InputError(f"invalid dB range: vmin={vmin}, vmax={vmax} (need finite vmin < vmax)")
        return cls(vmin, vmax)


def native_min_span(values: np.ndarray) -> float:
    """The narrowest range of native values: MIN_SPAN_DB (1) in their units, or a thousandth of their magnitude
    where that is smaller. Values in other units (1e-13: noise-subtracted power in watts) fit in a span of 1 as one
    step's worth and decoded as 0 (the codec's range), and were measured over a span of 1 (the metrics' range: a
    noise-subtracted sigma0 within 0.11 measured 38.9 dB of PSNR where its own range gives 20.0)."""
    finite = np.abs(values[np.isfinite(values)])
    magnitude = float(finite.max()) if finite.size else 0.0
    return min(MIN_SPAN_DB, max(1e-3 * magnitude, NOISE_FLOOR))


def robust_range(db_values: np.ndarray, lo: float = 0.5, hi: float = 99.9, min_span: float = MIN_SPAN_DB) -> Range:
    """Percentile range of the finite dB values; robust to speckle extremes and bright targets.

    Non-finite entries are ignored (pass only valid pixels, e.g. `db[mask]`). A range narrower than
    `min_span` dB (constant image) is widened symmetrically so normalisation stays invertible.
    """
    values = np.asarray(db_values, dtype=np.float32).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError("no valid pixels: every pixel is nodata or non-finite")
    vmin, vmax = (float(v) for v in np.percentile(values, [lo, hi]))
    if vmax - vmin < min_span:
        centre = 0.5 * (vmin + vmax)
        vmin, vmax = centre - 0.5 * min_span, centre + 0.5 * min_span
    return Range(vmin, vmax)


def normalize(db: np.ndarray, rng: Range) -> np.ndarray:
    """dB -> [0, 1] float32, clipped; non-finite values map to 0 (they are nodata, masked elsewhere)."""
    x = (np.asarray(db, dtype=np.float32) - np.float32(rng.vmin)) / np.float32(rng.span)
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0).astype(np.float32)


def denormalize(x: np.ndarray, rng: Range) -> np.ndarray:
    """[0, 1] -> dB float32 (the inverse of `normalize` inside the range)."""
    return (np.asarray(x, dtype=np.float32) * np.float32(rng.span) + np.float32(rng.vmin)).astype(np.float32)


def clipped_fraction(db: np.ndarray, rng: Range, mask: Optional[np.ndarray] = None) -> float:
    """Share of (valid) pixels outside [vmin, vmax]: what normalisation alone would lose."""
    db = np.asarray(db)
    outside = (db < rng.vmin) | (db > rng.vmax)
    if mask is not None:
        n = int(np.count_nonzero(mask))
        return float(np.count_nonzero(outside & mask)) / n if n else 0.0
    return float(np.count_nonzero(outside)) / max(db.size, 1)


def sample_stride(height: int, width: int, max_values: int = MAX_SAMPLE) -> int:
    """Row and column step that keeps at most about `max_values` of height*width pixels."""
    return max(1, math.ceil(math.sqrt(height * width / max(max_values, 1))))


def strided_strips(
    read: Callable[[int, int], np.ndarray], height: int, width: int, strip_rows: int, max_values: int = MAX_SAMPLE
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(row0, rows, grid) for each strip of `strip_rows` rows, `read(row0, row1)` at full resolution, `grid` its
    pixels on the raster's sampling grid (every k-th row and column, about `max_values` in all): the grid depends
    only on the raster's size, not on how it is cut into strips, and a huge raster is never whole in memory. (A
    decimated read would be served from a file's overviews, whose averaged pixels have another histogram.)"""
    step = sample_stride(height, width, max_values)
    for row0 in range(0, height, strip_rows):
        rows = read(row0, min(row0 + strip_rows, height))
        yield row0, rows, rows[(-row0) % step :: step, ::step]


def sampled_pixels(height: int, width: int, strip_rows: int, max_values: int = MAX_SAMPLE) -> int:
    """How many pixels `strided_strips`' grids hold, without reading any."""
    step = sample_stride(height, width, max_values)
    rows = sum(len(range((-r0) % step, min(strip_rows, height - r0), step)) for r0 in range(0, height, strip_rows))
    return rows * len(range(0, width, step))
