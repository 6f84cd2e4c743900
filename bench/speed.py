"""Throughput: our compress/decompress in megapixels per second, next to OpenJPEG on the same raster in the
same run.

Both sides go file to file (read the GeoTIFF band, dB, code, write), so the I/O and conversions are in both.
J2K runs at the bpp our codec reached.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..engine.api import compress_file, decompress_file
from . import jpeg2000
from .datasets import Dataset


def measure(ds: Dataset, quality: int, workdir: Path) -> dict:
    """Speed of our codec and of OpenJPEG on the same raster; ratios ours / J2K."""
    mpx = ds.pixels / 1e6
    sarz, recon = workdir / "speed.sarz", workdir / "speed_out.tif"
    start = time.perf_counter()
    cs = compress_file(ds.path, sarz, quality=quality, band=1, kind=ds.kind)
    t_c = time.perf_counter() - start
    start = time.perf_counter()
    decompress_file(sarz, recon)
    t_d = time.perf_counter() - start
    ours = {
        "bpp": cs.bpp,
        "compress_s": t_c,
        "decompress_s": t_d,
        "compress_mpx_s": mpx / t_c,
        "decompress_mpx_s": mpx / t_d,
    }
    j2k = _jpeg2000(ds, cs.bpp, workdir)
    ours["compress_vs_jpeg2000"] = ours["compress_mpx_s"] / j2k["compress_mpx_s"]
    ours["decompress_vs_jpeg2000"] = ours["decompress_mpx_s"] / j2k["decompress_mpx_s"]
    for path in (sarz, recon):
        path.unlink(missing_ok=True)
    return {"raster": ds.describe(), "quality": quality, "ours": ours, "jpeg2000": j2k}


def _jpeg2000(ds: Dataset, bpp: float, workdir: Path) -> dict:
    """OpenJPEG file to file at `bpp` (QUALITY found beforehand, untimed)."""
    jp2, back = workdir / "speed.jp2", workdir / "speed_j2k.tif"
    tuned = jpeg2000.compress_to_bpp(ds.db, ds.rng, bpp, jp2)
    import rasterio

    with rasterio.open(ds.path) as src:
        dtype = src.dtypes[0]
    t_c = jpeg2000.compress_file(ds.path, jp2, ds.rng, tuned.quality, ds.kind)
    t_d = jpeg2000.decompress_file(jp2, back, ds.rng, ds.kind, dtype)
    for path in (jp2, back):
        path.unlink(missing_ok=True)
    mpx = ds.pixels / 1e6
    return {
        "bpp": tuned.bpp,
        "compress_s": t_c,
        "decompress_s": t_d,
        "compress_mpx_s": mpx / t_c,
        "decompress_mpx_s": mpx / t_d,
    }
