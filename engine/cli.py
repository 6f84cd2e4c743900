"""`sar-compressor` (also `python -m sar_compressor`): compress, decompress, info, evaluate, simulate, models.

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

from .base_choice import BASE_OPTIONS, describe
from .errors import CancelledError, SARCompressorError
from .quality import DEFAULT_QUALITY, N_QUALITIES
from .ssim_weights import TUNES

KINDS = ("auto", "intensity", "amplitude", "db", "complex")
DEVICES = ("auto", "cpu", "cuda")
EXIT_ERROR = 2
EXIT_CANCELLED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sar-compressor", description="Learned compression of SAR rasters into .sarz files."
    )
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
    c.add_argument("--model", default=None, help="bundled model name or checkpoint path (default: bundled)")
    c.add_argument("--band", type=int, default=None, help="band to compress (required for multi-band rasters)")
    c.add_argument("--kind", choices=KINDS, default="auto", help="what the values are (default: detect)")
    c.add_argument("--device", choices=DEVICES, default="auto")
    c.add_argument(
        "--range",
        dest="range_mode",
        choices=("percentile", "model"),
        default="percentile",
        help="dB range: the raster's 0.5/99.9 percentiles (default) or the model's fixed range",
    )
    c.add_argument(
        "--mean-correction",
        choices=("block", "global", "none"),
        default="block",
        help="restore the linear mean per 64x64 block (default), once per raster, or not at all",
    )
    c.add_argument(
        "--base",
        choices=BASE_OPTIONS,
        default="auto",
        help="what the wavelet layer refines: the network's reconstruction, a flat image (no network), or "
        "auto (default: a trial on sample strips keeps the cheaper)",
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
    d.add_argument("--device", choices=DEVICES, default="auto")
    d.add_argument("--model", default=None, help="model file (default: the bundled model named in the file)")
    d.add_argument("--cog", action="store_true", help="write a Cloud Optimized GeoTIFF with overviews")

    i = sub.add_parser("info", help="show what a .sarz file holds")
    i.add_argument("input", help=".sarz file")
    i.add_argument("--json", action="store_true", help="print the whole header as JSON")

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

    sub.add_parser("models", help="list the bundled models and their quality levels")

    b = sub.add_parser("batch", help="compress many rasters on a Dask cluster (one task per file; resumes)")
    b.add_argument("inputs", nargs="+", metavar="INPUT", help="rasters, glob patterns, or @list.txt / list.txt")
    b.add_argument("--out-dir", required=True, help="folder for the .sarz files (<input stem>.sarz)")
    rate = b.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=int, default=None, help=f"1 .. {N_QUALITIES}; default {DEFAULT_QUALITY}")
    rate.add_argument("--target-bpp", type=float, default=None, help="at most this many bits per pixel per file")
    b.add_argument("--band", type=int, default=None, help="band to compress in every input")
    b.add_argument("--kind", choices=KINDS, default="auto", help="what the values are (default: detect per file)")
    where = b.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="submit to a running cluster, e.g. tcp://host:8786")
    for name, text in (
        ("bench", "rate-distortion, speed and memory against JPEG 2000 (options: bench --help)"),
        ("train", "train a variable-rate model (options: train --help)"),
    ):
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
        model=args.model,
        quality=args.quality,
        band=args.band,
        kind=args.kind,
        device=args.device,
        range_mode=args.range_mode,
        mean_correction=args.mean_correction,
        base=args.base,
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
        f"base {stats.base}, {stats.seconds:.1f} s, {stats.device_name}"
    )
    return 0


def _cmd_decompress(args: argparse.Namespace, job: _Job) -> int:
    from .codec import decompress_file

    stats = decompress_file(
        args.input,
        args.output,
        device=args.device,
        model=args.model,
        cog=args.cog,
        progress=job.progress,
        cancel=job.cancel,
        log=job.log,
    )
    print(f"{args.output}: {stats.width}x{stats.height} {stats.dtype}, {stats.summary()}")
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


def _layers_text(h: dict[str, Any]) -> str:
    step, rng = h["refine"]["step"], h["range"]
    base = f"network level {h['model_level']}" if h["base"] == "network" else "flat base (no network)"
    text = f"{base} + wavelet refinement, step {step:g} of the range ({step * (rng['vmax'] - rng['vmin']):.2f} dB)"
    trial = h.get("stats", {}).get("base_trial")
    return f"{text}; {describe(trial)}" if trial else text


def _info_lines(h: dict[str, Any]) -> list[str]:
    inp, rng, stats, model = h["input"], h["range"], h.get("stats", {}), h["model"]
    size, pixels = h["file_bytes"], inp["width"] * inp["height"]
    raw = stats.get("input_bytes")
    ratio = f"{raw / size:.1f}:1" if raw else "n/a"
    bright = h.get("bright", {})
    return [
        f"format        .sarz v{h.get('format_version', 1)}, {h['n_chunks']} chunks, {size} bytes",
        f"ratio / bpp   {ratio}, {8 * size / pixels:.4f} bpp",
        f"model         {model['name']} (sha256 {str(model['sha256'])[:16]}...), quality {h['quality']}"
        f"/{h.get('n_qualities', '?')}",
        f"layers        {_layers_text(h)}",
        f"raster        {inp['width']}x{inp['height']} {inp['dtype']} {inp['kind']}, band {inp.get('band')}",
        f"description   {inp.get('description') or ''}",
        f"crs           {_crs_text(inp.get('crs_wkt'))}",
        f"transform     {inp.get('transform')}",
        f"nodata        {inp.get('nodata')}",
        f"range         [{rng['vmin']:.3f}, {rng['vmax']:.3f}] dB ({rng.get('mode')})",
        f"mean gain     {h['gain']['mode']} (global {h['gain']['global']:.4f})",
        f"bright        {stats.get('n_bright_residuals')} residuals above "
        f"{bright.get('threshold_db', 0):.3f} dB; clipped fraction {_fmt(stats.get('clipped_fraction'), 5)}",
        f"software      {h.get('software', {}).get('name')} {h.get('software', {}).get('version')}",
    ]


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


def _cmd_models(args: argparse.Namespace, job: _Job) -> int:
    from .models.checkpoint import DEFAULT_MODEL, MODELS_DIR, list_models, load_checkpoint

    names = list_models()
    if not names:
        print(f"no bundled models in {MODELS_DIR}")
        return 0
    for name in names:
        loaded = load_checkpoint(MODELS_DIR / f"{name}.pt")
        n_q = loaded.entropy.n_qualities if loaded.entropy is not None else 0
        params = sum(p.numel() for p in loaded.model.parameters())
        levels = f"qualities 1..{n_q}" if n_q else "no entropy tables (prototype)"
        label = f"{name} (default)" if name == DEFAULT_MODEL else name
        print(f"{label:26s} {loaded.name}, {params / 1e6:.2f}M params, {levels}, sha256 {loaded.sha256[:12]}")
    return 0


def _cmd_batch(args: argparse.Namespace, job: _Job) -> int:
    from .batch import compress_batch

    settings = {"band": args.band, "kind": args.kind}
    settings.update({"target_bpp": args.target_bpp} if args.target_bpp is not None else {})
    settings.update({"quality": args.quality} if args.quality is not None else {})
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, desc="batch", unit="file", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        report = compress_batch(
            args.inputs,
            args.out_dir,
            settings=settings,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=progress,
            cancel=job.cancel,
        )
    except CancelledError as exc:  # files finished before the cancel are kept: say so, not "no output"
        print(f"cancelled: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        if bar is not None:
            bar.close()
    print(report.summary())
    for failed in report.failed:
        print(f"failed: {failed.input}: {failed.error}", file=sys.stderr)
    return 0 if report.ok else 1


def _run_bench(argv: list[str]) -> int:
    # bench/ and training/ build on the engine, never the reverse: imported only when these commands run.
    from ..bench.run import main as bench_main

    return bench_main(argv)


def _run_train(argv: list[str]) -> int:
    from ..training.train import main as train_main

    return train_main(argv)


PASSTHROUGH: dict[str, Callable[[list[str]], int]] = {"bench": _run_bench, "train": _run_train}

COMMANDS: dict[str, Callable[[argparse.Namespace, _Job], int]] = {
    "compress": _cmd_compress,
    "decompress": _cmd_decompress,
    "info": _cmd_info,
    "evaluate": _cmd_evaluate,
    "simulate": _cmd_simulate,
    "models": _cmd_models,
    "batch": _cmd_batch,
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
