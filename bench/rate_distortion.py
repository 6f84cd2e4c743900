"""Rate-distortion on one dataset: every quality level and JPEG 2000 at matched rates, all measured by
engine.metrics over one range (the original's 0.5-99.5 pct dB).

bpp always counts the whole file (.sarz or .jp2). Our metrics come from the reconstruction raster that
compress_file writes (equal to decompress_file's output by design).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..engine.api import compress_file
from ..engine.codec.passes.quality import DEFAULT_QUALITY
from ..engine.metrics import evaluate_arrays, evaluate_files, to_domains
from . import jpeg2000
from .datasets import BAND, RANGE_LABEL, Dataset

FIXED_TARGETS = (0.125, 0.25, 0.5, 1.0, 2.0)
MERGE_TOLERANCE = 0.03  # J2K targets closer than this (relative) are measured once
Log = Callable[[str], None]


def _metrics(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("domain", "range", "band")}


def _entry(family: str, codec: str, bpp: float, nbytes: int, metrics: dict, **extra) -> dict:
    return {
        "family": family,
        "codec": codec,
        "bpp": bpp,
        "bytes": nbytes,
        "metrics": _metrics(metrics),
        **extra,
    }


def merged_targets(bpps: list[float], tolerance: float = MERGE_TOLERANCE) -> list[float]:
    """Sorted targets with near-duplicates (within `tolerance`, relative) dropped."""
    out: list[float] = []
    for b in sorted(b for b in bpps if b > 0):
        if not out or b > out[-1] * (1.0 + tolerance):
            out.append(b)
    return out


def run_dataset(
    ds: Dataset,
    qualities: list[int],
    workdir: Path,
    fixed_targets: tuple[float, ...] = FIXED_TARGETS,
    keep: Optional[int] = None,
    log: Log = print,
    rate_targets: tuple[float, ...] = (),
) -> tuple[dict, Optional[np.ndarray]]:
    """All codecs on one dataset -> (JSON-ready result, dB reconstruction at quality `keep`). Ours is also
    coded to each of `rate_targets` bpp by rate control (the model card's table: no interpolation between our
    qualities)."""
    entries: list[dict] = []
    kept = None
    domains = None
    for q in qualities:
        result, recon_db = _ours(ds, q, workdir, want_db=keep == q)
        domains = domains or result.pop("domain")
        entries.append(result)
        kept = recon_db if recon_db is not None else kept
        log(f"  q{q}: {result['bpp']:.3f} bpp, PSNR {result['metrics']['psnr_db']:.2f} dB")
    for target in rate_targets:
        result, _ = _ours(ds, DEFAULT_QUALITY, workdir, want_db=False, target_bpp=target)
        result.pop("domain")
        entries.append(result)
        log(f"  at {target} bpp: {result['bpp']:.4f} bpp, PSNR {result['metrics']['psnr_db']:.2f} dB")
    our_bpps = [e["bpp"] for e in entries if e["family"] == "ours"]
    for target in merged_targets(our_bpps + list(fixed_targets)):
        entries.append(_jpeg2000(ds, target, workdir / f"{ds.name}.jp2"))
    log(f"  jpeg2000: {sum(e['family'] == 'jpeg2000' for e in entries)} rates")
    return {**ds.describe(), "metric_domains": domains, "entries": entries}, kept


def _ours(
    ds: Dataset, q: int, workdir: Path, want_db: bool, target_bpp: Optional[float] = None
) -> tuple[dict, Optional[np.ndarray]]:
    """One compression at quality `q`, or (family "ours_target") at `target_bpp` by rate control."""
    tag = f"q{q}" if target_bpp is None else f"t{target_bpp}"
    sarz = workdir / f"{ds.name}_{tag}.sarz"
    recon = workdir / f"{ds.name}_{tag}.tif"
    start = time.perf_counter()
    stats = compress_file(
        ds.path, sarz, quality=q, band=BAND, kind=ds.kind, reconstruction=recon, target_bpp=target_bpp
    )
    seconds = time.perf_counter() - start
    nbytes = sarz.stat().st_size
    metrics = evaluate_files(ds.path, recon, band=BAND, kind=ds.kind, rng=ds.rng, rng_label=RANGE_LABEL)
    recon_db = _read_db(recon, ds.kind) if want_db else None
    sarz.unlink()
    recon.unlink()
    entry = _entry(
        "ours" if target_bpp is None else "ours_target",
        "sarz" if target_bpp is None else "sarz, rate control",
        8.0 * nbytes / ds.pixels,
        nbytes,
        metrics,
        quality=stats.quality,
        target_bpp=target_bpp,
        seconds=seconds,  # with the reconstruction and no warm-up: not a speed figure
        codec_range_db=[stats.vmin, stats.vmax],
        n_bright_residuals=stats.n_bright_residuals,
    )
    entry["domain"] = metrics["domain"]
    return entry, recon_db


def _read_db(path: Path, kind: str) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        db, _ = to_domains(src.read(1), kind)
    return db


def _jpeg2000(ds: Dataset, target: float, path: Path) -> dict:
    r = jpeg2000.compress_to_bpp(ds.db, ds.rng, target, path)
    path.unlink()
    recon = np.where(np.isfinite(ds.db), r.db, np.nan)
    metrics = evaluate_arrays(ds.db, recon, kind="db", rng=ds.rng, rng_label=RANGE_LABEL)
    return _entry(
        "jpeg2000",
        "JPEG 2000",
        r.bpp,
        r.nbytes,
        metrics,
        target_bpp=target,
        hit=r.hit,
        j2k_quality=r.quality,
        encode_s=r.encode_s,
        decode_s=r.decode_s,
    )


def jpeg2000_db(ds: Dataset, bpp: float, path: Path) -> tuple[np.ndarray, float]:
    """J2K reconstruction (dB) of a dataset at `bpp`, for the equal-rate crop figure."""
    r = jpeg2000.compress_to_bpp(ds.db, ds.rng, bpp, path)
    path.unlink()
    return np.where(np.isfinite(ds.db), r.db, np.nan), r.bpp
