"""`sar-compressor` (also `python -m sar_compressor`): compress, decompress, info, vrt, evaluate, simulate, bench.

Engine errors print as `error: <message>` with exit code 2 and no traceback; Ctrl-C cancels the running job
at the next batch (no partial output) and exits with 130. Progress bars go to stderr, only on a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional

from .errors import CancelledError, SARCompressorError
from .quality import DEFAULT_QUALITY, N_QUALITIES
from .ssim_weights import TUNES

KINDS = ("auto", "intensity", "amplitude", "db", "complex")
EXIT_ERROR = 2
EXIT_CANCELLED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sar-compressor", description="Compression of SAR rasters into .sarz files.")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compress", help="compress one band of a raster into a .sarz file")
    c.add_argument("input", help="input raster (GeoTIFF or anything GDAL reads)")
    c.add_argument("output", help="output .sarz file")
    c.add_argument(
        "--quality",
        type=int,
        default=DEFAULT_QUALITY,
        help=f"1 (smallest file) .. {N_QUALITIES} (best); default {DEFAULT_QUALITY}",
    )
    c.add_argument(
        "--target-bpp",
        type=float,
        default=None,
        help="code to at most this many bits per pixel (whole file) instead of --quality (a few extra passes)",
    )
    c.add_argument("--band", type=int, default=None, help="band to compress (required for multi-band rasters)")
    c.add_argument("--kind", choices=KINDS, default="auto", help="what the values are (default: detect)")
    c.add_argument(
        "--mean-correction",
        choices=("block", "global", "none"),
        default="block",
        help="restore the linear mean per 64x64 block (default), once per raster, or not at all",
    )
    c.add_argument(
        "--tune",
        choices=TUNES,
        default="ssim",
        help="what rate-distortion decisions favour: ssim (default: quiet areas keep texture) or psnr (plain "
        "squared error: up to ~0.15 dB more PSNR, less SSIM)",
    )
    c.add_argument("--reconstruction", metavar="TIF", default=None, help="also write the decoded raster")

    d = sub.add_parser("decompress", help="decode a .sarz file into a GeoTIFF")
    d.add_argument("input", help="input .sarz file")
    d.add_argument("output", help="output GeoTIFF")
    d.add_argument("--cog", action="store_true", help="write a Cloud Optimized GeoTIFF with overviews")

    i = sub.add_parser("info", help="show what a .sarz file holds")
    i.add_argument("input", help=".sarz file")
    i.add_argument("--json", action="store_true", help="print the whole header as JSON")

    v = sub.add_parser(
        "vrt",
        help="write a GDAL VRT (with overview VRTs) that decodes a .sarz on demand",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="GDAL runs the VRT's Python pixel function only with\n"
        "  GDAL_VRT_ENABLE_PYTHON=TRUSTED_MODULES\n"
        "  GDAL_VRT_PYTHON_TRUSTED_MODULES=sar_compressor.engine.gdal_vrt\n"
        "set, and the sar_compressor package and its dependencies importable by GDAL's Python (PYTHONPATH).\n"
        "Then gdalinfo, gdal_translate (-srcwin, -ovr), rasterio and QGIS read it like any raster.",
    )
    v.add_argument("input", help=".sarz file")
    v.add_argument("output", nargs="?", default=None, help="VRT to write (default: INPUT.vrt beside the input)")

    e = sub.add_parser("evaluate", help="quality metrics of a reconstruction against its original")
    e.add_argument("original")
    e.add_argument("reconstruction")
    e.add_argument("--band", type=int, default=1)
    e.add_argument("--json", action="store_true")

    s = sub.add_parser("simulate", help="write a simulated, georeferenced SAR scene")
    s.add_argument("output")
    s.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(1024, 1024))
    s.add_argument("--looks", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--kind", choices=("intensity", "amplitude", "db"), default="intensity")
    s.add_argument("--dtype", choices=("float32", "uint16"), default="float32")

    for name, text in (("bench", "rate-distortion, speed and memory against JPEG 2000 (options: bench --help)"),):
        sub.add_parser(name, help=text, add_help=False)  # listed for --help; main() hands their arguments on
    return p


# --------------------------------------------------------------------------- progress and cancel


class _Job:
    """Progress bar (tqdm on stderr when it is a terminal) and Ctrl-C -> cancel at the next batch."""

    def __init__(self, label: str, quiet: bool):
        self.label, self.quiet = label, quiet
        self.cancelled = False
        self._bar = None

    def progress(self, done: int, total: int) -> None:
        if self.quiet or not sys.stderr.isatty():
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.label, unit="tile", file=sys.stderr, leave=False)
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def cancel(self) -> bool:
        return self.cancelled

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)

    @contextlib.contextmanager
    def running(self) -> Iterator[_Job]:
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield self
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if self._bar is not None:
                self._bar.close()

    def _on_sigint(self, signum, frame) -> None:
        if self.cancelled:  # second Ctrl-C: stop now (writers still remove their temp files)
            raise KeyboardInterrupt
        self.cancelled = True
        print("\ncancelling at the next batch (Ctrl-C again to stop at once)", file=sys.stderr)


# --------------------------------------------------------------------------- commands


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def _cmd_compress(args: argparse.Namespace, job: _Job) -> int:
    from .codec import compress_file

    stats = compress_file(
        args.input,
        args.output,
        quality=args.quality,
        band=args.band,
        kind=args.kind,
        mean_correction=args.mean_correction,
        target_bpp=args.target_bpp,
        tune=args.tune,
        reconstruction=args.reconstruction,
        progress=job.progress,
        cancel=job.cancel,
        log=job.log,
    )
    psnr = ""
    if args.reconstruction:
        from .metrics import evaluate_files

        metrics = evaluate_files(args.input, args.reconstruction, band=args.band or 1, reconstruction_band=1)
        psnr = f", PSNR {_fmt(metrics['psnr_db'], 2)} dB, SSIM {_fmt(metrics['ssim'])}"
    print(
        f"{args.output}: ratio {stats.ratio:.1f}:1, {stats.bpp:.4f} bpp{psnr}, quality {stats.quality}, "
        f"{stats.seconds:.1f} s"
    )
    return 0


def _cmd_decompress(args: argparse.Namespace, job: _Job) -> int:
    from .codec import decompress_file

    stats = decompress_file(
        args.input,
        args.output,
        cog=args.cog,
        progress=job.progress,
        cancel=job.cancel,
        log=job.log,
    )
    print(f"{args.output}: {stats.summary()}")
    return 0


def _crs_text(wkt: Optional[str]) -> str:
    if not wkt:
        return "none"
    with contextlib.suppress(Exception):  # any rasterio/PROJ failure just means: show the raw WKT
        from rasterio.crs import CRS

        crs = CRS.from_wkt(wkt)
        epsg = crs.to_epsg()
        if epsg:
            return f"EPSG:{epsg}"
    return wkt[:70] + ("..." if len(wkt) > 70 else "")


def _band_lines(b: dict[str, Any]) -> list[str]:
    """The `info` lines of one band entry of the header."""
    rng, stats, bright = b["range"], b.get("stats", {}), b["bright"]
    step = b["refine_step"]
    return [
        f"band {b['source_band']}        {b['kind']}, description {b.get('description') or ''!r}, "
        f"nodata {b.get('nodata')}",
        f"  layers      flat base + wavelet refinement, quality {b['quality']}, step {step:g} of the range "
        f"({step * (rng['vmax'] - rng['vmin']):.2f} dB)",
        f"  range       [{rng['vmin']:.3f}, {rng['vmax']:.3f}] dB",
        f"  mean gain   {b['mean_correction']} (global {b['global_gain']:.4f})",
        f"  bright      {stats.get('n_bright_residuals')} residuals above {bright['threshold_db']:.3f} dB; "
        f"clipped fraction {_fmt(stats.get('clipped_fraction'), 5)}",
    ]


def _info_lines(h: dict[str, Any]) -> list[str]:
    raster, tiling, bands = h["raster"], h["tiling"], h["bands"]
    size, pixels = h["file_bytes"], raster["width"] * raster["height"]
    raw = sum(b.get("stats", {}).get("input_bytes", 0) for b in bands)
    ratio = f"{raw / size:.1f}:1" if raw else "n/a"
    tools = ", ".join(f"{name} {tool['name']}" for name, tool in h["tools"].items() if tool) or "none"
    lines = [
        f"format        .sarz v{h['format_version']}, {h['n_chunks']} chunks, {size} bytes, file id {h['file_id']}",
        f"ratio / bpp   {ratio}, {8 * size / pixels:.4f} bpp",
        f"raster        {raster['width']}x{raster['height']} {raster['dtype']}, {len(bands)} band(s)",
        f"tiling        {tiling['tile_width']}x{tiling['tile_height']} tiles, chunks in {tiling['order']} order",
        f"crs           {_crs_text(raster.get('crs_wkt'))}",
        f"transform     {raster.get('transform')}",
        f"tools         {tools}",
        f"software      {h.get('software', {}).get('name')} {h.get('software', {}).get('version')}",
    ]
    return lines + [line for band in bands for line in _band_lines(band)]


def _cmd_info(args: argparse.Namespace, job: _Job) -> int:
    from .codec import read_header
    from .errors import ContainerError

    header = read_header(args.input)
    if args.json:
        print(json.dumps(header, indent=2, sort_keys=True))
        return 0
    try:
        lines = _info_lines(header)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ContainerError(f"{args.input}: header lacks a field ({exc}); try --json") from exc
    print(f"{args.input}")
    print("\n".join("  " + line for line in lines))
    return 0


def _cmd_vrt(args: argparse.Namespace, job: _Job) -> int:
    from .gdal_vrt import ENVIRONMENT, write_vrt

    paths = write_vrt(args.input, args.output)
    print(f"{paths[0]}: {len(paths) - 1} overview VRT(s) beside it")
    job.log("read it with: " + " ".join(f"{k}={v}" for k, v in ENVIRONMENT.items()))
    return 0


def _cmd_evaluate(args: argparse.Namespace, job: _Job) -> int:
    from .metrics import METRIC_KEYS, evaluate_files

    result = evaluate_files(args.original, args.reconstruction, band=args.band)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
        return 0
    domains = result.get("domain", {})
    for key in METRIC_KEYS:
        print(f"{key:17s} {_fmt(result.get(key), 4):>9s}   {domains.get(key, '')}")
    return 0


def _cmd_simulate(args: argparse.Namespace, job: _Job) -> int:
    from .simulate import write_scene

    height, width = args.size
    path = write_scene(args.output, height, width, looks=args.looks, seed=args.seed, kind=args.kind, dtype=args.dtype)
    print(f"{path}: simulated {height}x{width} {args.kind} {args.dtype}, {args.looks} look(s), seed {args.seed}")
    return 0


def _run_bench(argv: list[str]) -> int:
    # bench/ builds on the engine, never the reverse: imported only when this command runs.
    from ..bench.run import main as bench_main

    return bench_main(argv)


PASSTHROUGH: dict[str, Callable[[list[str]], int]] = {"bench": _run_bench}

COMMANDS: dict[str, Callable[[argparse.Namespace, _Job], int]] = {
    "compress": _cmd_compress,
    "decompress": _cmd_decompress,
    "info": _cmd_info,
    "vrt": _cmd_vrt,
    "evaluate": _cmd_evaluate,
    "simulate": _cmd_simulate,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 error, 130 cancelled)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:  # their own parsers take the rest of the line
        return PASSTHROUGH[argv[0]](argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error (argparse has printed the message)
        return int(exc.code or 0)
    job = _Job(args.command, args.quiet)
    try:
        with job.running():
            return COMMANDS[args.command](args, job)
    except CancelledError:
        print("cancelled: no output was written", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("interrupted: no output was written", file=sys.stderr)
        return EXIT_CANCELLED
    except SARCompressorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # disk full, permission denied, ...: still a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
