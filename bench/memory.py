"""Peak memory of one codec step, measured in a fresh subprocess: no step inherits another's high-water mark.

The parent calls `measure(...)`; the child (`python -m sar_compressor.bench.memory STEP SRC DST ...`) loads
the engine, notes its resident memory, runs compress_file or decompress_file and prints one JSON line with its
peak RSS (VmHWM from /proc, else getrusage) and the codec's stats.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional


def _status_bytes(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss() -> int:
    """This process's peak resident set size in bytes."""
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB on Linux


def measure(step: str, src: Path, dst: Path, quality: int, timeout: float) -> dict:
    """Run one step in a subprocess; its JSON report plus the wall time seen from outside."""
    cmd = [sys.executable, "-m", "sar_compressor.bench.memory", step, str(src), str(dst), "--quality", str(quality)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{step} subprocess failed (exit {proc.returncode}): " + " | ".join(tail))
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["subprocess_wall_s"] = wall
    return report


def large_raster(size: int, quality: int, workdir: Path, timeout: float) -> dict:
    """Peak RSS compressing and decompressing a size x size float32 scene (written in strips, deleted)."""
    from ..engine.simulate import write_scene

    src, sarz, out = (
        workdir / f"large_{size}.tif",
        workdir / f"large_{size}.sarz",
        workdir / f"large_{size}_out.tif",
    )
    try:
        start = time.perf_counter()
        write_scene(src, size, size, looks=1, seed=7)
        generate_s = time.perf_counter() - start
        compress = measure("compress", src, sarz, quality, timeout)
        decompress = measure("decompress", sarz, out, quality, timeout)
        file_bytes = {"input": src.stat().st_size, "sarz": sarz.stat().st_size, "output": out.stat().st_size}
    finally:
        for path in (src, sarz, out):
            path.unlink(missing_ok=True)
    raster_bytes = size * size * 4
    return {
        "size": size,
        "raster_bytes": raster_bytes,
        "file_bytes": file_bytes,
        "generate_s": generate_s,
        "compress": compress,
        "decompress": decompress,
        "compress_peak_over_raster": compress["peak_rss_bytes"] / raster_bytes,
        "decompress_peak_over_raster": decompress["peak_rss_bytes"] / raster_bytes,
    }


TALL_WIDTH = 512
TALL_HEIGHTS = (16384, 65536)
"""The tall-raster row: 512-pixel-wide float32 rasters get 8192-row strips (2 and 8 of them). Peak RSS that grows
with the height means something is kept per strip (GDAL's block cache filled with strips read once: 22 MB a strip
before the cache was sized by the width)."""


def tall_rasters(width: int, heights: tuple[int, ...], quality: int, workdir: Path, timeout: float) -> dict:
    """Peak RSS compressing `width`-wide float32 scenes of each height (one subprocess each); `growth_per_strip_mb`
    is the slope between the shortest and the tallest, per strip of the codec."""
    from ..engine.codec.format.layout import tile_size
    from ..engine.simulate import write_scene

    peaks = {}
    for height in heights:
        src, sarz = workdir / f"tall_{height}.tif", workdir / f"tall_{height}.sarz"
        try:
            write_scene(src, height, width, looks=1, seed=5)
            peaks[height] = measure("compress", src, sarz, quality, timeout)["peak_rss_bytes"]
        finally:
            for path in (src, sarz):
                path.unlink(missing_ok=True)
    strip = tile_size(width, max(heights))[1]  # rows per row of tiles
    low, high = min(heights), max(heights)
    strips = (high - low) / strip
    growth = (peaks[high] - peaks[low]) / strips / 2**20 if strips else 0.0
    return {
        "width": width,
        "strip_rows": strip,
        "peak_rss_bytes": {str(h): peaks[h] for h in heights},
        "growth_per_strip_mb": growth,
    }


def _child(args: argparse.Namespace) -> dict:
    from ..engine.api import compress_file, decompress_file

    before = {"rss_before_bytes": _status_bytes("VmRSS"), "peak_before_bytes": peak_rss()}
    start = time.perf_counter()
    if args.step == "compress":
        stats = compress_file(args.src, args.dst, quality=args.quality)
    else:
        stats = decompress_file(args.src, args.dst)
    seconds = time.perf_counter() - start
    report = {"step": args.step, "seconds": seconds, "peak_rss_bytes": peak_rss(), **before}
    report["stats"] = stats.to_dict()
    return report


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="one codec step with its peak RSS (benchmark child process)")
    parser.add_argument("step", choices=("compress", "decompress"))
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--quality", type=int, default=3)
    print(json.dumps(_child(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
