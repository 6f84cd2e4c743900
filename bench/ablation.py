"""Ablation (issue 17): each fitted or tuned part of the codec on and off, at equal rate (every variant coded to
the same target bpp by rate control), on the real crops and the simulated scenes.

Variants: the default (SSIM-weighted rate-distortion decisions, adaptive loop filter, inter-scale prediction, phase
prediction), the loop filter off, inter-scale prediction off, sign contexts on (off by default since they stopped
paying beside phase prediction), phase prediction off, and the first two again with plain squared-error decisions
(tune "psnr"). Each row is the change against the default in PSNR, SSIM and multilooked (5x5) PSNR, so what a part
buys on one metric and costs on another shows side by side.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, Optional

import numpy as np

from ..engine.api import compress_array
from ..engine.metrics import evaluate_arrays
from .datasets import BAND, Dataset

Log = Callable[[str], None]
TARGETS = (0.25, 0.5, 1.0)
VARIANTS = {
    "default": {"tune": "ssim"},
    "no loop filter": {"tune": "ssim", "loop_filter": False},
    "no inter-scale prediction": {"tune": "ssim", "interscale": False},
    "with sign contexts": {"tune": "ssim", "sign_contexts": True},
    "no phase prediction": {"tune": "ssim", "phase_prediction": False},
    "no neighbour bits": {"tune": "ssim", "neighbour_bits": False},
    "tune psnr": {"tune": "psnr"},
    "tune psnr, no loop filter": {"tune": "psnr", "loop_filter": False},
}
METRICS = ("psnr_db", "ssim", "multilook_psnr_db")
SINGLE_LOOK = ("sanfrancisco_airsar_C",)
"""Name prefixes of the single-look real crops (the issue's groups: single-look vs multilooked and oversampled)."""


def _band(ds: Dataset) -> tuple[np.ndarray, Optional[float]]:
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(ds.path) as src:
            return src.read(BAND), src.nodatavals[BAND - 1]


def group(ds_name: str, source: str) -> str:
    """Which mean a dataset's row enters."""
    if source != "shared":
        return "simulated"
    return "real single-look" if ds_name.startswith(SINGLE_LOOK) else "real multilooked / oversampled"


def run(datasets: list[Dataset], log: Log = print, targets: tuple[float, ...] = TARGETS) -> dict:
    """Every dataset at every target under every variant: bpp, seconds, metrics."""
    rows = []
    for ds in datasets:
        arr, nodata = _band(ds)
        log(f"ablation: {ds.name}")
        for target in targets:
            for name, options in VARIANTS.items():
                start = time.perf_counter()
                coded = compress_array(arr, kind=ds.kind, nodata=nodata, target_bpp=target, **options)
                seconds = time.perf_counter() - start
                m = evaluate_arrays(arr, coded.reconstruction, ds.kind, ds.rng, nodata=nodata)
                rows.append(
                    {
                        "dataset": ds.name,
                        "group": group(ds.name, ds.source),
                        "target_bpp": target,
                        "variant": name,
                        "bpp": 8.0 * len(coded.data) / arr.size,
                        "seconds": seconds,
                        "loop_filtered_tiles": coded.stats.bands[0]["loop_filtered_tiles"],
                        "interscale_tiles": coded.stats.bands[0]["interscale_tiles"],
                        **{k: m[k] for k in METRICS},
                    }
                )
    return {"variants": VARIANTS, "targets": list(targets), "rows": rows}


def deltas(result: dict) -> dict[tuple[str, str, float], dict[str, float]]:
    """(group, variant, target) -> mean change of each metric against the default (and of bpp), over the
    group's datasets."""
    rows = result["rows"]
    default = {(r["dataset"], r["target_bpp"]): r for r in rows if r["variant"] == "default"}
    sums: dict[tuple[str, str, float], list[dict[str, float]]] = {}
    for r in rows:
        base = default[(r["dataset"], r["target_bpp"])]
        change = {k: r[k] - base[k] for k in (*METRICS, "bpp") if r[k] is not None and base[k] is not None}
        sums.setdefault((r["group"], r["variant"], r["target_bpp"]), []).append(change)
    return {key: {k: float(np.mean([c[k] for c in changes])) for k in changes[0]} for key, changes in sums.items()}


def markdown(result: Optional[dict]) -> list[str]:
    """The ablation table: each variant's mean change against the default, per group and target."""
    if not result:
        return []
    lines = [
        "## Ablation (each part switched, at equal rate: every variant coded to the target by rate control)",
        "",
        "Mean change against the default (SSIM-weighted decisions + adaptive loop filter + inter-scale prediction + "
        "phase prediction; sign contexts off) over each group's files; negative = the default is better there.",
        "",
        "| group | variant | target bpp | PSNR dB | SSIM | multilooked PSNR dB | bpp |",
        "|---|---|---|---|---|---|---|",
    ]
    for (grp, variant, target), d in sorted(deltas(result).items()):
        if variant == "default":
            continue
        psnr, ssim, ml = (d.get(k, float("nan")) for k in METRICS)
        lines.append(f"| {grp} | {variant} | {target} | {psnr:+.3f} | {ssim:+.4f} | {ml:+.3f} | {d['bpp']:+.4f} |")
    filtered = [r for r in result["rows"] if r["variant"] == "default"]
    lines += [
        "",
        f"Loop filter kept on {sum(r['loop_filtered_tiles'] > 0 for r in filtered)} of {len(filtered)} default "
        "codings, inter-scale prediction on "
        f"{sum(r.get('interscale_tiles', 0) > 0 for r in filtered)} (a file counts when any of its tiles kept it).",
        "",
    ]
    return lines
