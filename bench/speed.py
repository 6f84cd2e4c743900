"""Throughput: our compress/decompress in megapixels per second per device, next to OpenJPEG on the same
raster in the same run, and the share of wall time spent outside the network's forward passes.

Both sides go file to file (read the GeoTIFF band, dB, code, write), so the I/O and conversions are in both.
The model is loaded and warmed up before timing; J2K runs at the bpp our codec reached.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..engine.codec import compress_file, decompress_file
from ..engine.compressor import SARCompressor
from . import jpeg2000
from .datasets import Dataset


def devices() -> list[str]:
    """CPU always, CUDA when torch sees a GPU."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _warm_up(comp: SARCompressor) -> None:
    y = comp.encode_strip(np.zeros((256, 256), dtype=np.float32))
    comp.decode_strip(y)


def measure(ds: Dataset, model: str, quality: int, workdir: Path) -> dict:
    """Speed of our codec on every device and of OpenJPEG on the same raster; ratios ours / J2K."""
    mpx = ds.pixels / 1e6
    out: dict = {"raster": ds.describe(), "quality": quality, "model": str(model), "devices": {}}
    sarz, recon = workdir / "speed.sarz", workdir / "speed_out.tif"
    for dev in devices():
        comp = SARCompressor(model, device=dev)
        _warm_up(comp)
        start = time.perf_counter()
        cs = compress_file(ds.path, sarz, quality=quality, band=1, kind=ds.kind, compressor=comp)
        t_c = time.perf_counter() - start
        start = time.perf_counter()
        dstats = decompress_file(sarz, recon, compressor=comp)
        t_d = time.perf_counter() - start
        out["devices"][dev] = {
            "device_name": comp.device_name,
            "bpp": cs.bpp,
            "compress_s": t_c,
            "decompress_s": t_d,
            "compress_mpx_s": mpx / t_c,
            "decompress_mpx_s": mpx / t_d,
            "compress_outside_network_share": 1.0 - cs.seconds_network / t_c,
            "decompress_outside_network_share": 1.0 - dstats.seconds_network / t_d,
        }
    bpp = out["devices"]["cpu"]["bpp"]
    out["jpeg2000"] = _jpeg2000(ds, bpp, workdir)
    for d in out["devices"].values():
        d["compress_vs_jpeg2000"] = d["compress_mpx_s"] / out["jpeg2000"]["compress_mpx_s"]
        d["decompress_vs_jpeg2000"] = d["decompress_mpx_s"] / out["jpeg2000"]["decompress_mpx_s"]
    for path in (sarz, recon):
        path.unlink(missing_ok=True)
    return out


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
