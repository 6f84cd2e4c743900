"""`make bench`: rate-distortion vs JPEG 2000, speed and memory -> bench/results/<date>.{json,md}, figures.

    python -m sar_compressor.bench.run [--quick] [--large-size N] [--out bench/results]
    python -m sar_compressor.bench.run --scale [--scale-files 8] [--scale-size 2048] [--scale-workers 1 2]
    python -m sar_compressor.bench.run [--multiband]
    python -m sar_compressor.bench.run --cli-speed [--cli-size 4096] [--cli-runs 3]
    python -m sar_compressor.bench.run --performance [--large-size N] [--window-size N]

Runs within a time budget (default 20 min): rate-distortion, the ablation (bench.ablation) and speed first,
then the large-raster memory test
at the biggest size (up to --large-size) that the measured throughput says will fit; the size used and why are
recorded in the JSON.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

from ..engine.cli import OneLineParser
from ..engine.codec.passes.quality import DEFAULT_QUALITY, N_QUALITIES
from ..engine.errors import SARCompressorError
from . import ablation, cli_speed, jpeg2000, memory, multiband, plots, products, report, scale, speed, window
from .datasets import SHARED_SAR, Dataset, load, shared_datasets, simulated_datasets
from .rate_distortion import FIXED_TARGETS, jpeg2000_db, run_dataset

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "results"
RESERVE_S = 90.0  # kept free at the end of the budget for reports and slack
CHILD_OVERHEAD_S = 5.0  # two subprocesses importing numpy, rasterio and the engine
CROP_PREFERENCE = "airsar_sf_T11"
QUICK_LARGE = 512  # --quick keeps the memory test small


class Clock:
    """Elapsed time and a log line prefix."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def log(self, message: str) -> None:
        print(f"[{self.elapsed:7.1f} s] {message}", flush=True)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = OneLineParser(prog="sar-compressor bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small subset (simulated 256x256 only) for tests")
    p.add_argument("--large-size", type=int, default=20000, help="side of the memory-test raster (upper bound)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    p.add_argument("--data", type=Path, default=SHARED_SAR, help="folder of real SAR GeoTIFFs")
    p.add_argument("--sim-size", type=int, default=None, help="simulated scene side (default 1024; quick 256)")
    p.add_argument("--window-size", type=int, default=20000, help="side of the random-access raster (quick: 512)")
    p.add_argument("--budget-min", type=float, default=20.0, help="wall-time budget in minutes")
    p.add_argument("--scale", action="store_true", help="only the Dask batch scaling section (bench/scale.py)")
    p.add_argument("--scale-files", type=int, default=8, help="simulated rasters for --scale")
    p.add_argument("--scale-size", type=int, default=2048, help="their side in pixels")
    p.add_argument("--scale-workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    p.add_argument(
        "--cli-speed",
        action="store_true",
        help="only the command-line speed section (bench/cli_speed.py: fresh processes vs gdal_translate JPEG 2000, "
        "~4 min)",
    )
    p.add_argument(
        "--performance",
        action="store_true",
        help="only speed, memory and random access (the sections a change that keeps every byte can move; "
        "performance_<date>.{json,md}, ~30 min at the default sizes)",
    )
    p.add_argument("--cli-size", type=int, default=cli_speed.SIZE, help="side of the --cli-speed scene")
    p.add_argument("--cli-runs", type=int, default=cli_speed.RUNS, help="runs per step (median) for --cli-speed")
    p.add_argument(
        "--multiband",
        action="store_true",
        help="also the multi-band section (bench/multiband.py: one file vs a file per band, ~3 min)",
    )
    return p.parse_args(argv)


def machine_info() -> dict:
    import numpy
    import rasterio

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _mem_total(),
        "numpy": numpy.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "jpeg2000_driver": jpeg2000.DRIVER,
    }


def _cpu_model() -> Optional[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _crop_dataset(datasets: list[Dataset]) -> Dataset:
    preferred = [d for d in datasets if d.name.startswith(CROP_PREFERENCE)]
    return (preferred or [d for d in datasets if d.source == "shared"] or datasets)[0]


def _rate_distortion(args, datasets, qualities, workdir, clock, results) -> None:
    crop_q = DEFAULT_QUALITY if DEFAULT_QUALITY in qualities else qualities[-1]
    crop_ds = _crop_dataset(datasets)
    for ds in datasets:
        clock.log(f"rate-distortion: {ds.name} ({ds.height}x{ds.width}, {ds.kind})")
        keep = crop_q if ds is crop_ds else None
        targets = (0.25, 1.0) if args.quick else FIXED_TARGETS
        entry, kept = run_dataset(
            ds, qualities, workdir, targets, keep=keep, log=clock.log, rate_targets=report.TARGET_BPPS
        )
        results["datasets"].append(entry)
        if kept is not None:
            ours = next(e for e in entry["entries"] if e["family"] == "ours" and e["quality"] == crop_q)
            j2k_db, j2k_bpp = jpeg2000_db(ds, ours["bpp"], workdir / "crop.jp2")
            name = f"crop_{results['date']}.png"
            plots.crop_figure(
                [
                    ("original", ds.db),
                    (f"ours (q{crop_q}), {ours['bpp']:.3f} bpp", kept),
                    (f"JPEG 2000, {j2k_bpp:.3f} bpp", j2k_db),
                ],
                ds.rng,
                args.out / name,
                title=ds.name,
            )
            results["figures"]["crop"] = name


def _memory(args, quality: int, speed_result: dict, clock: Clock, workdir: Path) -> dict:
    """Pick the largest size that fits the remaining budget (measured speed), then measure it."""
    d = speed_result["ours"]
    s_per_mpx = 1.0 / d["compress_mpx_s"] + 1.0 / d["decompress_mpx_s"] + speed_result["generate_s_per_mpx"]
    remaining = args.budget_min * 60.0 - clock.elapsed - RESERVE_S - CHILD_OVERHEAD_S
    fit = int(math.sqrt(max(remaining, 0.0) / s_per_mpx * 1e6) // 256 * 256)
    size = min(args.large_size, fit, QUICK_LARGE if args.quick else args.large_size)
    estimate = (args.large_size**2 / 1e6) * s_per_mpx + CHILD_OVERHEAD_S
    note = None
    if args.quick:
        note = f"Quick run: {size}x{size}."
    elif size < args.large_size:
        note = (
            f"Requested {args.large_size}x{args.large_size}: estimated {estimate / 60:.0f} min at the "
            f"measured {s_per_mpx:.2f} s/Mpx (generate + compress + decompress), over the "
            f"{remaining / 60:.1f} min left of the {args.budget_min:g} min budget; measured {size}x{size}."
        )
    if size < 512:
        return {"skipped": note or "no time left", "requested_size": args.large_size}
    clock.log(f"memory: {size}x{size} float32 (estimate {(size**2 / 1e6) * s_per_mpx:.0f} s)")
    timeout = 3.0 * (size**2 / 1e6) * s_per_mpx + 300.0
    result = memory.large_raster(size, quality, workdir, timeout)
    result.update(requested_size=args.large_size, size_note=note, seconds_per_mpx_estimate=s_per_mpx)
    return result


def _speed(args, quality: int, workdir: Path, clock: Clock) -> dict:
    from ..engine.simulate import write_scene

    size = 512 if args.quick else 2048
    clock.log(f"speed: simulated {size}x{size} raster")
    start = time.perf_counter()
    path = write_scene(workdir / f"speed_{size}.tif", size, size, looks=1, seed=3)
    generate_s = time.perf_counter() - start
    result = speed.measure(load(path, "simulated"), quality, workdir)
    result["generate_s_per_mpx"] = generate_s / (size * size / 1e6)
    return result


def _stage(name: str, results: dict, clock: Clock, fn: Callable[[], dict]) -> Optional[dict]:
    """Run a later stage; a failure is recorded in the notes instead of losing the results so far."""
    start = clock.elapsed
    try:
        return fn()
    except (SARCompressorError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        clock.log(f"{name} failed: {exc}")
        results["notes"].append(f"{name} failed: {type(exc).__name__}: {exc}")
        return None
    finally:
        results["timings"][f"{name}_s"] = clock.elapsed - start


def run(args: argparse.Namespace) -> dict:
    clock = Clock()
    warnings.filterwarnings("ignore", category=UserWarning, module="rasterio")
    jpeg2000.require()
    args.out.mkdir(parents=True, exist_ok=True)
    results = _header(args)
    with tempfile.TemporaryDirectory(prefix="sar-bench-") as tmp:
        workdir = Path(tmp)
        datasets = _datasets(args, workdir, results, clock)
        _rate_distortion(args, datasets, results["settings"]["qualities"], workdir, clock, results)
        results["figures"]["rd"] = f"rd_{results['date']}.png"
        plots.rd_figure(results["datasets"], args.out / results["figures"]["rd"])
        results["timings"] = {"rate_distortion_s": clock.elapsed}
        results["products"] = _stage(
            "products", results, clock, lambda: products.run(workdir, _sim_size(args), clock.log)
        )
        targets = (0.5,) if args.quick else ablation.TARGETS
        results["ablation"] = _stage("ablation", results, clock, lambda: ablation.run(datasets, clock.log, targets))
        if args.multiband and not args.quick:
            results["multiband"] = _stage("multiband", results, clock, lambda: multiband.run(args.data, clock.log))
        _speed_and_memory(args, workdir, clock, results)
    results["duration_s"] = clock.elapsed
    _write(results, args.out, clock)
    return results


def run_performance(args: argparse.Namespace) -> dict:
    """Speed, memory and random access alone -> performance_<date>.{json,md}."""
    clock = Clock()
    jpeg2000.require()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {**_header(args), "timings": {}}
    with tempfile.TemporaryDirectory(prefix="sar-bench-") as tmp:
        _speed_and_memory(args, Path(tmp), clock, results)
    results["duration_s"] = clock.elapsed
    name = f"performance_{results['date']}"
    report.write_json(results, args.out / f"{name}.json")
    (args.out / f"{name}.md").write_text(report.performance_markdown(results), encoding="utf-8")
    clock.log(f"wrote {args.out / name}.json and .md")
    return results


def _speed_and_memory(args, workdir: Path, clock: Clock, results: dict) -> None:
    """Speed, then memory sized by the measured speed; failures become notes."""
    quality = min(DEFAULT_QUALITY, results["settings"]["n_qualities"])
    results["speed"] = _stage("speed", results, clock, lambda: _speed(args, quality, workdir, clock))
    if results["speed"] is None:
        results["memory"] = {"skipped": "no speed measurement to size the raster with"}
        return
    measured = _stage("memory", results, clock, lambda: _memory(args, quality, results["speed"], clock, workdir))
    results["memory"] = measured or {"skipped": "failed, see notes"}
    tall = _stage("memory_tall", results, clock, lambda: _tall(args, quality, workdir, clock))
    results["memory_tall"] = tall or {"skipped": "failed, see notes"}
    size = 512 if args.quick else args.window_size
    clock.log(f"random access: simulated {size}x{size} raster, a window and an overview")
    results["window"] = _stage("window", results, clock, lambda: window.measure(size, quality, workdir))


def _tall(args, quality: int, workdir: Path, clock: Clock) -> dict:
    """Peak RSS against the raster's height at a fixed width (quick: a tiny run of the same code)."""
    width, heights = (64, (256, 512)) if args.quick else (memory.TALL_WIDTH, memory.TALL_HEIGHTS)
    clock.log(f"memory: {width}-pixel-wide float32 rasters, {' and '.join(map(str, heights))} rows")
    return memory.tall_rasters(width, heights, quality, workdir, timeout=1800.0)


def _header(args) -> dict:
    """The results dict before any measurement: date, machine, settings."""
    n_q = N_QUALITIES
    return {
        "date": datetime.date.today().isoformat(),
        "quick": bool(args.quick),
        "machine": machine_info(),
        "settings": {
            "qualities": [1, n_q] if args.quick else list(range(1, n_q + 1)),
            "n_qualities": n_q,
            "metric_range": "original 0.5-99.5 percentile dB (per dataset, the same for every codec)",
            "jpeg2000": "GDAL JP2OpenJPEG via rasterio, dB clipped to the metric range -> uint16, "
            "irreversible wavelet, QUALITY tuned to each target bpp within 5% (whole .jp2 file)",
            "refinement": "every quality is a wavelet refinement step over a flat base",
        },
        "datasets": [],
        "figures": {},
        "notes": [],
    }


def _datasets(args, workdir: Path, results: dict, clock: Clock) -> list[Dataset]:
    datasets: list[Dataset] = []
    if not args.quick:
        datasets, skipped = shared_datasets(args.data)
        if skipped:
            clock.log(skipped)
            results["notes"].append(skipped)
    return datasets + simulated_datasets(workdir, _sim_size(args), (1,) if args.quick else (1, 4))


def _sim_size(args) -> int:
    """Side of the simulated scenes and products."""
    return args.sim_size or (256 if args.quick else 1024)


def _write(results: dict, out: Path, clock: Clock) -> None:
    date = results["date"]
    report.write_json(results, out / f"{date}.json")
    md = out / f"{date}.md"
    md.write_text(report.markdown(results), encoding="utf-8")
    shutil.copyfile(md, out / "latest.md")
    clock.log(f"wrote {out / f'{date}.json'}, {md.name}, latest.md and the figures")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.scale:
            scale.run(args.out, args.scale_files, args.scale_size, args.scale_workers, machine_info(), Clock().log)
        elif args.cli_speed:
            cli_speed.run(args.out, args.cli_size, args.cli_runs, machine_info(), Clock().log)
        elif args.performance:
            run_performance(args)
        else:
            run(args)
    except SARCompressorError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
