"""What an input raster is, before it is coded: one function the CLI, the Processing algorithm and the dock's
input summary share, so all three warn about the same things in the same words.

It reads the band the way compression's pass 1 does (survey.sample_band: a bounded, strided sample) and
applies the same kind rule (survey.kind_and_values), so the kind it reports is the one compression will use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from . import preprocessing as pp
from .codec.format.layout import STRIP_ROWS
from .codec.passes.survey import SAMPLE_VALUES, kind_and_values, sample_band, without_fill
from .errors import InputError
from .input_checks import check_kind_fits, check_not_paletted
from .io.raster_io import RasterInfo, RasterReader, differing_nodata


@dataclass
class InputSummary:
    """One band of a raster as the codec sees it. Fractions are of the sampled pixels (pass 1's sample)."""

    path: str
    band: int
    bands: int
    width: int
    height: int
    dtype: str
    kind: str
    """The kind compression will use ("auto" resolved)."""
    kind_reason: str
    nodata: Optional[float]
    vmin: Optional[float]
    """Smallest and largest valid value (no-signal zeros excluded), None when there is none; of complex pixels,
    which have no order, the intensity |z|^2 (range_label)."""
    vmax: Optional[float]
    nodata_fraction: float
    """Pixels that are nodata or non-finite."""
    zero_fraction: float
    """Exact zeros, no-signal (0 when the kind keeps zeros as data): the fill, restored exactly, and any scattered
    densely inside the signal, which compression codes as data (preprocessing.scattered_no_signal)."""
    negative_fraction: float
    warnings: list[str] = field(default_factory=list)
    refusal: Optional[str] = None
    """Why compression would refuse this band with this kind (None: it will code it)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def range_label(self) -> str:
        """What vmin and vmax measure: the values, or for complex pixels the intensity |z|^2 that compression
        codes and decompression returns."""
        return "intensity |z|^2" if self.dtype.startswith("complex") else "values"

    def facts(self) -> list[str]:
        """What the band is, one fact a line (the dock's input summary, the Processing log)."""
        rng = "no valid value" if self.vmin is None else f"{self.range_label} {self.vmin:g} .. {self.vmax:g}"
        return [
            f"{self.width}x{self.height} {self.dtype}, band {self.band} of {self.bands}, nodata {self.nodata}",
            f"kind {self.kind}: {self.kind_reason}",
            f"{rng}; nodata/non-finite {100 * self.nodata_fraction:.2f} %, no-signal zeros "
            f"{100 * self.zero_fraction:.2f} %, negative {100 * self.negative_fraction:.2f} %",
        ]

    def lines(self) -> list[str]:
        """The facts, then the warnings and the refusal (the CLI's `inspect`)."""
        out = self.facts() + [f"warning: {w}" for w in self.warnings]
        if self.refusal:
            out.append(f"refused: {self.refusal}")
        return out


def photo_warning(path: Union[str, Path]) -> Optional[str]:
    """A warning when the file looks like a photo (three uint8 bands, or RGB colour interpretation), from its
    metadata alone."""
    import rasterio

    with rasterio.open(path) as src:
        interp, count, dtype = [ci.name for ci in src.colorinterp], src.count, src.dtypes[0]
    rgb = interp[:3] == ["red", "green", "blue"]
    if rgb or (count in (3, 4) and dtype == "uint8"):
        why = "RGB colour interpretation" if rgb else f"{count} bands of uint8"
        return (
            f"{why}: an optical photo, not SAR backscatter; a band is coded as 'native' values, the other bands "
            "are not coded (a photo codec such as JPEG 2000 suits it better)"
        )
    return None


def mask_warning(path: Union[str, Path], bands: list[int]) -> Optional[str]:
    """A warning when a band has a GDAL mask of its own (internal, .msk or alpha) that no value of its type can
    mark (preprocessing.mask_marker): its masked pixels are coded as values. Masks that can be marked need none:
    their pixels are read as NaN or no-signal zeros, and decoded as such."""
    with RasterReader(path) as reader:
        unmarked = [b for b in bands if reader.unmarked_mask(b)]
        dtype = reader.info.dtype
    if not unmarked:
        return None
    which = "band " + ", ".join(map(str, unmarked))
    return (
        f"{which}: a GDAL mask (internal, .msk or alpha band) and no nodata value; no {dtype} value can mark a masked "
        "pixel, so the masked pixels are coded as values (set a nodata value on the raster to keep them out)"
    )


def complex_warning(info: RasterInfo, bands: list[int]) -> Optional[str]:
    """A warning when a band to code is complex (SLC): the codec keeps its intensity, not its phase, which nothing
    else said before the decoded file came back as float32 intensity; and where such a band has a GDAL scale or
    offset, that they are not applied: it decodes to the intensity of its raw values (|z|**2), where the scaled
    values' intensity is what the scale means (4 times lower with a scale of 2)."""
    complex_bands = [b for b in bands if info.band(b).dtype.startswith("complex")]
    if not complex_bands:
        return None
    scaled = []
    for b in complex_bands:
        one = info.band(b)
        scale = one.scales[0] if one.scales else 1.0
        offset = one.offsets[0] if one.offsets else 0.0
        if (scale, offset) != (1.0, 0.0):
            scaled.append(f"band {b} (scale {scale:g}, offset {offset:g})")
    named = ", ".join(map(str, complex_bands))
    text = (
        f"{'bands' if len(complex_bands) > 1 else 'band'} {named} {'are' if len(complex_bands) > 1 else 'is'} complex "
        "(SLC): the .sarz keeps the intensity |z|^2, not the phase, and decodes to float32 intensity (keep the SLC "
        "for interferometry or polarimetry)"
    )
    if scaled:
        text += (
            f"; {', '.join(scaled)}: a complex band's GDAL scale and offset are not applied, it decodes to the "
            "intensity of its raw values (with an offset of 0, the scaled values' intensity is that times the scale "
            "squared)"
        )
    return text


def nodata_warning(info: RasterInfo, bands: list[int]) -> Optional[str]:
    """A warning when the bands to code have other nodata values than the first of them: a GeoTIFF holds one."""
    return differing_nodata_warning({b: info.band(b).nodata for b in bands})


def differing_nodata_warning(values: dict[int, Optional[float]]) -> Optional[str]:
    """A warning when bands (source number: nodata value, in output order) have other nodata values than the
    first: what a multi-band GeoTIFF written from them cannot say (compression warns, and decompression again:
    whoever decodes may not be whoever coded)."""
    first, *rest = values
    others = [b for b in rest if differing_nodata([values[first], values[b]])]
    if not others:
        return None
    listed = ", ".join(f"band {b} ({values[b]})" for b in others)
    return (
        f"nodata values differ: {listed} against band {first} ({values[first]}). A multi-band GeoTIFF holds one, "
        f"band {first}'s, so the other bands' nodata pixels decode to their own value without being flagged: decode "
        "such a band alone (decompress --band N, or Decompress's BAND) or open the .sarz as a layer (its VRT keeps "
        "each band's)"
    )


def inspect_input(path: Union[str, Path], band: int = 1, kind: str = "auto") -> InputSummary:
    """The summary of `band` of the raster at `path` as compression with `kind` would see it; InputError when
    the file cannot be read or the band does not exist. Refusals are reported, not raised (`refusal`)."""
    with RasterReader(path) as reader:
        info = reader.info.band(reader.info.check_band(band))
        raw = sample_band(info, lambda r0, r1: reader.read_rows(band, r0, r1))
        total = max(1, pp.sampled_pixels(info.height, info.width, STRIP_ROWS, SAMPLE_VALUES))
    photo = photo_warning(path)
    declared = info.nodata
    info, raw, _, notices = without_fill(info, raw, kind)  # as compression declares a fill the band holds
    choice, _, sample = kind_and_values(info, raw, kind)  # in the band's own units (its GDAL scale and offset)
    warnings, refusal = [w for w in (photo, *notices, complex_warning(info, [1])) if w], None
    try:
        check_kind_fits(info.dtype, kind)  # compression's first refusals, before it reads a pixel
        check_not_paletted(info.color_interp, [1])  # `info` is the band alone
        warnings += pp.value_warnings(choice.kind, sample, kind)
    except InputError as exc:
        refusal = str(exc)
    # zeros out of the statistics as pass 1 leaves them out (a float dB band's zero-filled footprint read 0 % zeros)
    zero_fill = pp.zeros_uncounted(choice.kind, info.dtype)
    valid = sample[raw != 0] if zero_fill else sample
    measured = np.abs(valid) ** 2 if valid.dtype.kind == "c" else valid  # range_label
    return InputSummary(
        path=str(path),
        band=band,
        bands=reader.info.count,
        width=info.width,
        height=info.height,
        dtype=info.dtype,
        kind=choice.kind,
        kind_reason=choice.reason,
        nodata=declared,
        vmin=float(np.min(measured)) if measured.size else None,
        vmax=float(np.max(measured)) if measured.size else None,
        nodata_fraction=max(0.0, 1.0 - sample.size / total),
        zero_fraction=float(np.count_nonzero(raw == 0)) / total if zero_fill else 0.0,
        negative_fraction=pp.negative_share(sample),
        warnings=warnings,
        refusal=refusal,
    )
