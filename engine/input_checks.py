"""Input combinations that cannot be right, refused before any work starts (InputError naming the problem)."""

from __future__ import annotations

from typing import Optional

from .errors import InputError

REAL_KINDS = ("intensity", "amplitude", "db", "native")
"""Kinds that read one real value per pixel: on a complex raster they would keep the real part only ('native',
values as they are, too: a complex value has no single real one)."""


def check_kind_fits(dtype: str, kind: str) -> None:
    """Refuse a --kind the raster's data type contradicts: a real kind on complex (SLC) pixels drops the
    imaginary part (the issue-22 sweep: mean 37 where the intensity mean was 19982), `complex` on real pixels
    has no phase to code. `auto` and kinds not listed here (other helpers' additions) pass."""
    is_complex = str(dtype).startswith("complex")
    if is_complex and kind in REAL_KINDS:
        raise InputError(
            f"kind '{kind}' does not fit a complex ({dtype}) raster: it would drop the imaginary part; "
            "use kind complex (or auto): complex pixels are coded as intensity |z|^2"
        )
    if not is_complex and kind == "complex":
        raise InputError(f"kind 'complex' needs a complex raster (CInt16, CFloat32...); this one is {dtype}")


def check_not_paletted(color_interp: list[str], bands: list[int]) -> None:
    """Refuse a band with a colour table (`color_interp`: a RasterInfo's, "palette"): its values are classes (a
    flood map, a land-cover map), and the codec's lossy coding would turn them into other classes; the colour table
    would be lost as well. Nothing in such a band is backscatter."""
    paletted = [band for band in bands if band <= len(color_interp) and color_interp[band - 1] == "palette"]
    if paletted:
        raise InputError(
            f"band {paletted[0]} has a colour table: its values are classes, not backscatter, and lossy coding would "
            "change them; keep it in a lossless format (a DEFLATE GeoTIFF)"
        )


def check_one_dtype(band_dtypes: list[str], bands: list[int]) -> None:
    """Refuse bands of different data types in one file (`band_dtypes`: a RasterInfo's, empty when the bands share
    one): a .sarz holds one type, and band 1's was taken for all (a complex band beside float ones was coded as its
    real part, a float dB band beside a uint16 one decoded as uint16, both with exit code 0)."""
    types = {band: band_dtypes[band - 1] for band in bands if band <= len(band_dtypes)}
    if len(set(types.values())) > 1:
        listed = ", ".join(f"band {band} {dtype}" for band, dtype in types.items())
        raise InputError(
            f"the bands have different data types ({listed}): a .sarz holds bands of one type; compress them one at "
            "a time (--band N, Processing's BAND)"
        )


def check_rate_options(quality: Optional[int], target_bpp: Optional[float]) -> None:
    """Refuse a quality and a target bit rate together: one of them would be silently ignored."""
    if quality is not None and target_bpp is not None:
        raise InputError("give either --quality or --target-bpp, not both: the target bit rate picks the quality")
