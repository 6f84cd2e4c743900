"""Peak memory of one codec step, measured in a fresh subprocess: no step inherits another's high-water mark.

The parent calls `measure(...)`; the child (`python -m sar_compressor.bench.memory STEP SRC DST ...`) loads
the model, notes its resident memory, runs compress_file or decompress_file and prints one JSON line with its
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


def measure(step: str, src: Path, dst: Path, model: str, quality: int, device: str, timeout: float) -> dict:
    """Run one step in a subprocess; its JSON report plus the wall time seen from outside."""
    cmd = [sys.executable, "-m", "sar_compressor.bench.memory", step, str(src), str(dst)]
    cmd += ["--model", str(model), "--quality", str(quality), "--device", device]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{step} subprocess failed (exit {proc.returncode}): " + " | ".join(tail))
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["subprocess_wall_s"] = wall
    return report


def large_raster(size: int, model: str, quality: int, device: str, workdir: Path, timeout: float) -> dict:
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
        compress = measure("compress", src, sarz, model, quality, device, timeout)
        decompress = measure("decompress", sarz, out, model, quality, device, timeout)
        file_bytes = {"input": src.stat().st_size, "sarz": sarz.stat().st_size, "output": out.stat().st_size}
    finally:
        for path in (src, sarz, out):
            path.unlink(missing_ok=True)
    raster_bytes = size * size * 4
    return {
        "size": size,
        "device": device,
        "raster_bytes": raster_bytes,
        "file_bytes": file_bytes,
        "generate_s": generate_s,
        "compress": compress,
        "decompress": decompress,
        "compress_peak_over_raster": compress["peak_rss_bytes"] / raster_bytes,
        "decompress_peak_over_raster": decompress["peak_rss_bytes"] / raster_bytes,
    }


def _child(args: argparse.Namespace) -> dict:
    from ..engine.codec import compress_file, decompress_file
    from ..engine.compressor import resolve_device
    from ..engine.models.checkpoint import load_checkpoint, resolve_model

    dev = resolve_device(args.device)
    load_checkpoint(resolve_model(args.model), device=dev)  # cached: the step below reuses it
    before = {"rss_before_bytes": _status_bytes("VmRSS"), "peak_before_bytes": peak_rss()}
    start = time.perf_counter()
    if args.step == "compress":
        stats = compress_file(args.src, args.dst, model=args.model, quality=args.quality, device=args.device)
    else:
        stats = decompress_file(args.src, args.dst, model=args.model, device=args.device)
    seconds = time.perf_counter() - start
    report = {"step": args.step, "seconds": seconds, "peak_rss_bytes": peak_rss(), **before}
    if dev.type == "cuda":
        import torch

        report["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(dev))
    report["stats"] = stats.to_dict()
    return report


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="one codec step with its peak RSS (benchmark child process)")
    parser.add_argument("step", choices=("compress", "decompress"))
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--model", required=True)
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    print(json.dumps(_child(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
