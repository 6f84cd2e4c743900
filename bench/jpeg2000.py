"""JPEG 2000 reference codec: GDAL's JP2OpenJPEG driver through rasterio, on dB scaled to uint16 over a range.

The benchmark compares at equal bits per pixel, counting the whole .jp2 file. The driver's QUALITY option is
a percentage of the uncompressed size (16 or 8 bits/pixel), so QUALITY = 100 * bpp / bits is a close guess;
a few secant steps in log space then approach the target (tiny images allocate rate in coarse steps).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..engine.errors import InputError

DRIVER = "JP2OpenJPEG"
LEVELS = 65535
MIN_QUALITY, MAX_QUALITY = 1e-3, 100.0
PathLike = Union[str, Path]


@dataclass
class J2KResult:
    """One JPEG 2000 encode/decode at a target rate."""

    db: np.ndarray  # decoded dB values
    bpp: float  # whole-file bits per pixel
    nbytes: int
    quality: float  # the QUALITY option that produced it
    target_bpp: float
    hit: bool  # within tolerance of the target
    encode_s: float
    decode_s: float


def available() -> bool:
    """True if this GDAL build has the JP2OpenJPEG driver (write support)."""
    import rasterio

    with rasterio.Env() as env:
        return DRIVER in env.drivers()


def require() -> None:
    if not available():
        raise InputError(f"GDAL has no {DRIVER} driver: install GDAL with OpenJPEG to run the JPEG 2000 baseline")


def db_to_uint16(db: np.ndarray, rng: tuple[float, float]) -> np.ndarray:
    """dB clipped to rng -> 0..65535 (non-finite -> 0: those pixels are excluded from the metrics)."""
    vmin, vmax = rng
    x = (np.clip(np.asarray(db, dtype=np.float64), vmin, vmax) - vmin) / (vmax - vmin)
    return np.rint(np.nan_to_num(x, nan=0.0) * LEVELS).astype(np.uint16)


def uint16_to_db(q: np.ndarray, rng: tuple[float, float]) -> np.ndarray:
    vmin, vmax = rng
    return (q.astype(np.float64) / LEVELS * (vmax - vmin) + vmin).astype(np.float32)


def write_jp2(q16: np.ndarray, path: PathLike, quality: float) -> int:
    """Encode a uint16 (or uint8) image (irreversible wavelet) at QUALITY percent of its uncompressed size;
    returns the file size."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    profile = {"driver": DRIVER, "width": q16.shape[1], "height": q16.shape[0], "count": 1, "dtype": str(q16.dtype)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", QUALITY=f"{quality:.6g}", REVERSIBLE="NO", **profile) as dst:
            dst.write(q16, 1)
    return Path(path).stat().st_size


def read_jp2(path: PathLike) -> np.ndarray:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(1)


def compress_to_bpp(
    db: np.ndarray,
    rng: tuple[float, float],
    target_bpp: float,
    path: PathLike,
    tol: float = 0.05,
    max_steps: int = 10,
) -> J2KResult:
    """JPEG 2000 of a dB image at `target_bpp` (whole file) within `tol` (relative); decoded back to dB.

    The last encode is the one kept on disk and reported; if the target cannot be reached (e.g. below the
    header cost of a tiny image) the closest attempt is returned with hit=False.
    """
    r = integers_to_bpp(db_to_uint16(db, rng), target_bpp, path, tol, max_steps)
    r.db = uint16_to_db(r.db, rng)
    return r


def integers_to_bpp(
    q16: np.ndarray, target_bpp: float, path: PathLike, tol: float = 0.05, max_steps: int = 10
) -> J2KResult:
    """JPEG 2000 of an unsigned-integer image as it is (uint16, or a uint8 product's own 8 bits) at
    `target_bpp`, like `compress_to_bpp`; the result's `db` holds the decoded integers."""
    require()
    if target_bpp <= 0:
        raise InputError(f"target bpp must be positive, got {target_bpp}")
    pixels = q16.size
    quality = min(MAX_QUALITY, 100.0 * target_bpp / (8 * q16.dtype.itemsize))
    lo, hi = MIN_QUALITY, MAX_QUALITY
    best = None
    for _ in range(max_steps):
        start = time.perf_counter()
        nbytes = write_jp2(q16, path, quality)
        encode_s = time.perf_counter() - start
        bpp = 8.0 * nbytes / pixels
        err = abs(bpp / target_bpp - 1.0)
        if best is None or err < best[0]:
            best = (err, quality, nbytes, encode_s)
        if err <= tol:
            break
        lo, hi = (quality, hi) if bpp < target_bpp else (lo, quality)
        step = quality * target_bpp / max(bpp, 1e-9)  # size is close to proportional to QUALITY
        quality = step if lo < step < hi else math.sqrt(lo * hi)
    err, quality, nbytes, encode_s = best
    if Path(path).stat().st_size != nbytes:  # the last attempt was not the closest: write the best again
        start = time.perf_counter()
        nbytes = write_jp2(q16, path, quality)
        encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = read_jp2(path)
    decode_s = time.perf_counter() - start
    return J2KResult(
        db=decoded,
        bpp=8.0 * nbytes / pixels,
        nbytes=nbytes,
        quality=quality,
        target_bpp=target_bpp,
        hit=err <= tol,
        encode_s=encode_s,
        decode_s=decode_s,
    )


def compress_file(src: PathLike, dst: PathLike, rng: tuple[float, float], quality: float, kind: str) -> float:
    """File to file like the codec (read band 1, to dB, uint16, .jp2): seconds, for the speed comparison."""
    import rasterio

    from ..engine.metrics import to_domains

    start = time.perf_counter()
    with rasterio.open(src) as ds:
        db, _ = to_domains(ds.read(1), kind)
    write_jp2(db_to_uint16(db, rng), dst, quality)
    return time.perf_counter() - start


def decompress_file(src: PathLike, dst: PathLike, rng: tuple[float, float], kind: str, dtype: str) -> float:
    """.jp2 back to a tiled DEFLATE GeoTIFF in the original kind and dtype (as the codec writes): seconds."""
    import rasterio

    from ..engine.preprocessing import from_db

    start = time.perf_counter()
    values = from_db(uint16_to_db(read_jp2(src), rng), kind, dtype)
    profile = {"driver": "GTiff", "width": values.shape[1], "height": values.shape[0], "count": 1}
    profile.update(dtype=str(values.dtype), tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(dst, "w", **profile) as out:
            out.write(values, 1)
    return time.perf_counter() - start
