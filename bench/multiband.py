"""Multi-band products in one .sarz (issue 20): the file against one single-band file per band, and JPEG 2000.

    python -m sar_compressor.bench.multiband [--data ../shared/sar-data] [--out bench/results]
    (or `bench --multiband`, a section of the whole benchmark)

Stacks: the AIRSAR T11/T22/T33 crops (multilooked) and C11/C22/C33 (single-look) each stacked into one
3-band raster, and the Sen1Floods11 VV/VH and GEFOLKI two-band files. For each, at a few qualities:
- the multi-band file (every band, inter-band prediction where the encoder measures it pays) and each band
  coded alone into its own file, at the same quality and the one below, all measured per band by
  engine.metrics over each band's original 0.5-99.5 pct dB range (as the main benchmark);
- bytes at equal per-band PSNR: each band's single-file size interpolated (log bytes, linear in PSNR) at the
  PSNR that band reached in the multi-band file, summed, against the multi-band file's size;
- PSNR at equal total bytes: the pooled PSNR (mean of the bands' range-scaled MSEs) of the single files,
  interpolated at the multi-band file's size, against the multi-band file's;
- JPEG 2000 per band at the bpp the band takes in the multi-band file (its chunks and its share of the header).
"""

from __future__ import annotations

import argparse
import datetime
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..engine.api import compress_array
from ..engine.json_text import null, write_json
from ..engine.metrics import detect_file_kind, evaluate_arrays, metric_range, to_domains, valid_mask
from . import jpeg2000
from .datasets import RANGE_LABEL, SHARED_SAR

QUALITIES = (4, 6, 8, 10)
"""About 0.1 to 1 bpp per band on the 900x1024 crops."""
STACKS = {
    "AIRSAR T11/T22/T33 (multilooked)": [f"airsar_sf_T{i}{i}_900x1024.tif" for i in (1, 2, 3)],
    "AIRSAR C11/C22/C33 (single-look)": [f"sanfrancisco_airsar_C{i}{i}.tif" for i in (1, 2, 3)],
    "Sen1Floods11 VV/VH": ["sen1floods11_spain_vv_vh_db.tif"],
    "GEFOLKI two bands": ["gefolki_s1_patch_rescaled.tif"],
}
Log = Callable[[str], None]


def load_stack(folder: Path, files: list[str]) -> tuple[np.ndarray, list[str], Optional[float]]:
    """Every band of the files, stacked (bands, rows, columns), their kinds, the first file's nodata."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    bands, kinds, nodata = [], [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for name in files:
            with rasterio.open(folder / name) as ds:
                nodata = ds.nodata if nodata is None else nodata
                for b in range(1, ds.count + 1):
                    bands.append(ds.read(b))
                    kinds.append(detect_file_kind(ds, b))
    return np.stack(bands), kinds, nodata


def _band_psnr(orig: np.ndarray, recon: np.ndarray, kind: str, nodata: Optional[float]) -> float:
    rng = metric_range(orig, kind, nodata)
    return evaluate_arrays(orig, recon, kind=kind, rng=rng, nodata=nodata, rng_label=RANGE_LABEL)["psnr_db"]


def _pooled(psnrs: list[float]) -> float:
    """PSNR of the bands' mean range-scaled MSE (engine.metrics.evaluate_bands' overall figure)."""
    return -10.0 * math.log10(sum(10.0 ** (-p / 10.0) for p in psnrs) / len(psnrs))


def _interpolate(xs: list[float], ys: list[float], x: float) -> float:
    """y at x on the piecewise-linear curve through (xs, ys), extended linearly past its ends."""
    order = np.argsort(xs)
    xs_sorted, ys_sorted = np.asarray(xs)[order], np.asarray(ys)[order]
    i = int(np.clip(np.searchsorted(xs_sorted, x), 1, len(xs_sorted) - 1))
    x0, x1, y0, y1 = xs_sorted[i - 1], xs_sorted[i], ys_sorted[i - 1], ys_sorted[i]
    return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0)) if x1 != x0 else float(y0)


def _separate(stack, kinds, nodata, qualities) -> dict[int, list[tuple[int, float]]]:
    """Per quality, each band coded alone into its own file: [(file bytes, PSNR)] per band."""
    out = {}
    for q in qualities:
        out[q] = []
        for band, kind in zip(stack, kinds):
            r = compress_array(band, quality=q, nodata=nodata)
            out[q].append((len(r.data), _band_psnr(band, r.reconstruction, kind, nodata)))
    return out


def run_stack(name: str, stack: np.ndarray, kinds: list[str], nodata, workdir: Path, log: Log) -> dict:
    """Every comparison on one stack (see the module docstring)."""
    n, pixels = stack.shape[0], stack.shape[1] * stack.shape[2]
    separate = _separate(stack, kinds, nodata, sorted({q - 1 for q in QUALITIES} | set(QUALITIES)))
    rows = []
    for q in QUALITIES:
        start = time.perf_counter()
        joint = compress_array(stack, quality=q, nodata=nodata)
        seconds = time.perf_counter() - start
        psnrs = [_band_psnr(b, r, k, nodata) for b, r, k in zip(stack, joint.reconstruction, kinds)]
        size = len(joint.data)
        overhead = (size - sum(b["bytes"] for b in joint.stats.bands)) / n
        at_psnr = []
        for i, psnr in enumerate(psnrs):
            curve = [separate[s][i] for s in separate]
            log_bytes = _interpolate([p for _, p in curve], [math.log(b) for b, _ in curve], psnr)
            at_psnr.append(math.exp(log_bytes))
        sep_sizes = {s: sum(b for b, _ in separate[s]) for s in separate}
        sep_pooled = {s: _pooled([p for _, p in separate[s]]) for s in separate}
        sep_psnr_at_size = _interpolate(
            [math.log(sep_sizes[s]) for s in separate], [sep_pooled[s] for s in separate], math.log(size)
        )
        bands = []
        for i, b in enumerate(joint.stats.bands):
            band_bpp = 8.0 * (b["bytes"] + overhead) / pixels
            j2k = jpeg2000.compress_to_bpp(*_db_and_range(stack[i], kinds[i], nodata), band_bpp, workdir / "b.jp2")
            (workdir / "b.jp2").unlink()
            bands.append(
                {
                    "band": i + 1,
                    "kind": kinds[i],
                    "reference": b["reference"],
                    "bytes": b["bytes"],
                    "bpp": band_bpp,
                    "psnr_db": psnrs[i],
                    "separate_bytes_at_psnr": at_psnr[i],
                    "separate_file_bytes_same_quality": separate[q][i][0],
                    "separate_psnr_same_quality": separate[q][i][1],
                    "jpeg2000_bpp": j2k.bpp,
                    "jpeg2000_hit": j2k.hit,
                    "jpeg2000_psnr_db": _j2k_psnr(stack[i], j2k.db, kinds[i], nodata),
                }
            )
        row = {
            "quality": q,
            "bytes": size,
            "bpp": 8.0 * size / pixels,
            "seconds": seconds,
            "separate_bytes_at_equal_psnr": sum(at_psnr),
            "saving_at_equal_psnr": 1.0 - size / sum(at_psnr),
            "separate_bytes_same_quality": sep_sizes[q],
            "pooled_psnr_db": _pooled(psnrs),
            "separate_pooled_psnr_at_equal_bytes": sep_psnr_at_size,
            "bands": bands,
        }
        rows.append(row)
        log(
            f"  q{q}: {size} bytes ({row['bpp']:.3f} bpp) vs {sum(at_psnr):.0f} separate at equal PSNR: "
            f"{100 * row['saving_at_equal_psnr']:.1f} % fewer; pooled PSNR {row['pooled_psnr_db']:.2f} vs "
            f"{sep_psnr_at_size:.2f} dB at equal bytes"
        )
    return {"name": name, "bands": n, "height": stack.shape[1], "width": stack.shape[2], "rows": rows}


def _db_and_range(band: np.ndarray, kind: str, nodata) -> tuple[np.ndarray, tuple[float, float]]:
    db, _ = to_domains(band, kind)
    return np.where(valid_mask(band, nodata), db, np.nan), metric_range(band, kind, nodata)


def _j2k_psnr(band: np.ndarray, j2k_db: np.ndarray, kind: str, nodata) -> float:
    db, rng = _db_and_range(band, kind, nodata)
    recon = np.where(np.isfinite(db), j2k_db, np.nan)
    return evaluate_arrays(db, recon, kind="db", rng=rng, rng_label=RANGE_LABEL)["psnr_db"]


def run(folder: Path, log: Log = print) -> dict:
    """Every stack whose files are in `folder` (missing ones are noted)."""
    jpeg2000.require()
    result: dict = {"qualities": list(QUALITIES), "stacks": [], "skipped": []}
    with tempfile.TemporaryDirectory(prefix="sar-multiband-") as tmp:
        for name, files in STACKS.items():
            if not all((folder / f).is_file() for f in files):
                result["skipped"].append(name)
                continue
            log(f"multi-band: {name}")
            stack, kinds, nodata = load_stack(folder, files)
            result["stacks"].append(run_stack(name, stack, kinds, nodata, Path(tmp), log))
    return result


def markdown(result: dict) -> list[str]:
    """The section's tables for the benchmark report."""
    lines = [
        "## Multi-band files (issue 20)",
        "",
        "One .sarz holding every band (inter-band prediction) against one file per band at equal per-band PSNR "
        "(each band's single-file size interpolated at the PSNR it reached in the multi-band file), and pooled "
        "PSNR at equal total bytes; JPEG 2000 per band at the bpp the band takes in the multi-band file. PSNR in "
        "dB over each band's original 0.5-99.5 pct dB range; 'from N': the band is predicted from band N.",
        "",
        "| stack | q | multi-band bytes (bpp, all bands) | separate bytes at equal PSNR | saving | pooled PSNR multi / "
        "separate at equal bytes | per band: PSNR ours / JPEG 2000 (predicted from) |",
        "|---|---|---|---|---|---|---|",
    ]
    for stack in result["stacks"]:
        for row in stack["rows"]:
            per_band = "; ".join(
                f"{b['band']}: {b['psnr_db']:.2f} / {b['jpeg2000_psnr_db']:.2f}{'' if b['jpeg2000_hit'] else '*'}"
                + (f" (from {b['reference']})" if b["reference"] is not None else "")
                for b in row["bands"]
            )
            lines.append(
                f"| {stack['name']} | {row['quality']} | {row['bytes']} ({row['bpp']:.3f}) | "
                f"{row['separate_bytes_at_equal_psnr']:.0f} | {100 * row['saving_at_equal_psnr']:.1f} % | "
                f"{row['pooled_psnr_db']:.2f} / {row['separate_pooled_psnr_at_equal_bytes']:.2f} | {per_band} |"
            )
    lines += [
        "",
        "\\* JPEG 2000 missed the band's rate by more than 5 % (at such rates its smallest file is larger): "
        "the closest rate it made.",
    ]
    if result["skipped"]:
        lines += ["", f"Skipped (files absent): {', '.join(result['skipped'])}."]
    return lines + [""]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sar_compressor.bench.multiband", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=SHARED_SAR, help="folder of the real SAR crops")
    p.add_argument("--out", type=Path, default=None, help="write multiband_<date>.json and .md there")
    args = p.parse_args(argv)
    result = run(args.data)
    text = "\n".join(markdown(result))
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        date = datetime.date.today().isoformat()
        write_json(result, args.out / f"multiband_{date}.json", null)
        (args.out / f"multiband_{date}.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
