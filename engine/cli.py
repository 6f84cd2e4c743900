"""`sar-compressor` (also `python -m sar_compressor`): compress, decompress, info, verify, inspect, vrt, evaluate,
simulate, batch, bench.

Engine errors print as `error: <message>` with exit code 2 and no traceback; Ctrl-C (SIGINT), SIGTERM or SIGHUP
cancels the running job at the next batch (no partial output) and exits with 128 + the signal (130, 143, 129). Outputs
follow engine.io.output_paths: never an input, never a folder/FIFO/device, an existing file only with --overwrite.
Progress bars go to stderr, only on a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Callable, NoReturn, Optional

from . import json_text
from . import preprocessing as pp
from .codec.entropy.ssim_weights import TUNES
from .codec.format.sarz_header import scales
from .codec.passes.quality import DEFAULT_QUALITY, N_QUALITIES
from .errors import CancelledError, SARCompressorError
from .io.output_paths import guarded_outputs

KINDS = ("auto", "intensity", "amplitude", "db", "complex", "native")
EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 128 + 13
"""What a shell reports for a command killed by SIGPIPE (`... | head`)."""
CANCEL_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
"""Signals that cancel a run cleanly (temp files and locks removed, exit 128 + the signal): SIGHUP too, a closed
terminal or a dropped SSH session (it left a compression's temp and lock files beside its outputs); Windows has
none."""
WRITERS = {
    "compress": (("input",), ("output", "reconstruction")),
    "decompress": (("input",), ("output",)),
    "simulate": ((), ("output",)),
}
"""Commands that write files: their input and output arguments, for the output rules and locks."""


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser with a bad command line in one line, as every other error (argparse prints its usage
    block first: 3-10 lines); --help still shows the usage. Subcommands' parsers are of this class too, and
    `bench`'s."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="sar-compressor", description="Compression of SAR rasters into .sarz files.")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compress", help="compress a raster (every band, or one) into a .sarz file")
    c.add_argument("input", help="input raster (GeoTIFF or anything GDAL reads)")
    c.add_argument("output", help="output .sarz file")
    c.add_argument(
        "--quality",
        type=int,
        default=None,
        help=f"1 (smallest file) .. {N_QUALITIES} (best); default {DEFAULT_QUALITY}",
    )
    c.add_argument(
        "--target-bpp",
        type=float,
        default=None,
        help="code to at most this many bits per pixel (whole file: all bands together, one step of each band's "
        "range) instead of --quality (a few extra passes; not with --quality)",
    )
    c.add_argument("--band", type=int, default=None, help="compress only this band (default: every band, one file)")
    c.add_argument(
        "--no-interband",
        action="store_true",
        help="code every band on its own (default: predict a band from another where that saves bits)",
    )
    c.add_argument(
        "--no-loop-filter",
        action="store_true",
        help="leave every tile unfiltered (default: fit each tile's adaptive loop filter where it pays)",
    )
    c.add_argument(
        "--no-interscale",
        action="store_true",
        help="code every tile's finest levels on their own (default: predict them from the level above where that "
        "saves bits: oversampled products)",
    )
    c.add_argument(
        "--kind",
        choices=KINDS,
        default="auto",
        help="what the values are (default: detect); native: code the values as they are (display products, "
        "anything that is not backscatter)",
    )
    c.add_argument(
        "--mean-correction",
        choices=("block", "global", "none"),
        default="block",
        help="restore the linear mean per 256x256 block (default), once per raster, or not at all",
    )
    c.add_argument(
        "--tune",
        choices=TUNES,
        default="ssim",
        help="what rate-distortion decisions favour: ssim (default: quiet areas keep texture) or psnr (plain "
        "squared error: up to ~0.17 dB more PSNR, less SSIM)",
    )
    c.add_argument("--reconstruction", metavar="TIF", default=None, help="also write the decoded raster")

    d = sub.add_parser("decompress", help="decode a .sarz file into a GeoTIFF")
    d.add_argument("input", help="input .sarz file")
    d.add_argument("output", help="output GeoTIFF")
    d.add_argument("--cog", action="store_true", help="write a Cloud Optimized GeoTIFF with overviews")
    d.add_argument(
        "--band", type=int, default=None, help="decode only this band (its number in the source, as `info` shows)"
    )

    i = sub.add_parser("info", help="show what a .sarz file holds")
    i.add_argument("input", help=".sarz file")
    i.add_argument("--json", action="store_true", help="print the whole header as JSON")
    i.add_argument("--verify", action="store_true", help="also check every chunk and decode the file (as verify)")

    v = sub.add_parser("verify", help="check a .sarz file: every chunk's CRC and a trial decode (exit 0 or 2)")
    v.add_argument("input", help=".sarz file")

    n = sub.add_parser("inspect", help="what a raster band is, as compression would see it (kind, fill, warnings)")
    n.add_argument("input", help="input raster")
    n.add_argument("--band", type=int, default=1)
    n.add_argument("--kind", choices=KINDS, default="auto")
    n.add_argument("--json", action="store_true")

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
    e.add_argument("--band", type=int, default=None, help="one band (default: every band, and overall)")
    e.add_argument("--looks", type=int, default=5, help="window of the multilooked PSNR (L x L boxcar, default 5)")
    e.add_argument("--kind", choices=KINDS, default="auto", help="what the values are (default: detect, as compress)")
    e.add_argument("--json", action="store_true")

    s = sub.add_parser("simulate", help="write a simulated, georeferenced SAR scene")
    s.add_argument("output")
    s.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(1024, 1024))
    s.add_argument("--looks", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--kind", choices=("intensity", "amplitude", "db"), default="intensity")
    s.add_argument("--dtype", choices=("float32", "uint16"), default="float32")

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
    for command in WRITERS:
        sub.choices[command].add_argument(
            "--overwrite", action="store_true", help="replace existing output files (never an input, folder or device)"
        )
    for name, text in (("bench", "rate-distortion, speed and memory against JPEG 2000 (options: bench --help)"),):
        sub.add_parser(name, help=text, add_help=False)  # listed for --help; main() hands their arguments on
    return p


# --------------------------------------------------------------------------- progress and cancel


class _Job:
    """Progress bar (tqdm on stderr when it is a terminal) and Ctrl-C / SIGTERM -> cancel at the next batch."""

    def __init__(self, label: str, quiet: bool):
        self.label, self.quiet = label, quiet
        self.cancelled = False
        self.signum = signal.SIGINT  # the signal that cancelled the job (its exit code is 128 + it)
        self._bar = None

    def progress(self, done: int, total: int) -> None:
        """A bar in percent: the engine's (done, total) count tiles, or thousandths of the whole where several
        passes or bands share the bar (it read "11/1000 tile" on a 24-tile file at a target bit rate)."""
        if self.quiet or not sys.stderr.isatty():
            return
        if self._bar is None:
            from tqdm import tqdm

            form = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"
            self._bar = tqdm(total=1000, desc=self.label, file=sys.stderr, leave=False, bar_format=form)
        self._bar.update(round(1000 * done / max(total, 1)) - self._bar.n)

    def cancel(self) -> bool:
        return self.cancelled

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)

    @contextlib.contextmanager
    def running(self) -> Iterator[_Job]:
        previous = {}
        if threading.current_thread() is threading.main_thread():  # a signal ignored stays so (nohup's SIGHUP)
            kept = [sig for sig in CANCEL_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]
            previous = {sig: signal.signal(sig, self._on_signal) for sig in kept}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._bar is not None:
                self._bar.close()

    def _on_signal(self, signum, frame) -> None:
        if self.cancelled:  # second signal: stop now (writers still remove their temp files)
            raise KeyboardInterrupt
        self.cancelled, self.signum = True, signum
        if signum == getattr(signal, "SIGHUP", None):
            _leave_terminal()
        name = signal.Signals(signum).name
        print(f"\n{name}: cancelling at the next batch (again to stop at once)", file=sys.stderr)


def _leave_terminal() -> None:
    """After SIGHUP the terminal is gone and writing to it fails (EIO): the run's last words (cancelling, the
    outputs left as they were) go nowhere instead of ending it in a traceback with exit 1. Output to a file or a
    pipe stays where it goes."""
    for name in ("stdout", "stderr"):
        try:
            terminal = getattr(sys, name).isatty()
        except (OSError, ValueError, AttributeError):  # closed or broken: nothing left to lose
            terminal = True
        if terminal:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (for the rest of the process)


# --------------------------------------------------------------------------- commands


def _fmt(value: Any, digits: int = 3) -> str:
    """A figure with `digits` decimals; one beyond 1e6 in exponent form (a mean ratio of 2e152 printed 153 digits)."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        return f"{value:.{digits}e}" if abs(value) >= 1e6 else f"{value:.{digits}f}"
    return str(value)


def _ratio_text(ratio: float) -> str:
    """The ratio as 25.2:1; one below 1 (a 1x1 raster, where the header is the file) keeps two digits."""
    return f"{ratio:.1f}:1" if ratio >= 1 else f"{ratio:.2g}:1 (larger than the raster)"


def _warn(warning: str) -> None:
    """An input's warning on stderr (also under --quiet)."""
    print(f"warning: {warning}", file=sys.stderr)


def _cmd_compress(args: argparse.Namespace, job: _Job) -> int:
    from .api import compress_file
    from .input_checks import check_rate_options

    check_rate_options(args.quality, args.target_bpp)
    stats = compress_file(
        args.input,
        args.output,
        quality=DEFAULT_QUALITY if args.quality is None else args.quality,
        band=args.band,
        kind=args.kind,
        mean_correction=args.mean_correction,
        target_bpp=args.target_bpp,
        tune=args.tune,
        interband=not args.no_interband,
        loop_filter=not args.no_loop_filter,
        interscale=not args.no_interscale,
        reconstruction=args.reconstruction,
        overwrite=args.overwrite,  # checked at the start, and again as the files go into place
        progress=job.progress,
        cancel=job.cancel,
        log=job.log,
        warn=_warn,  # pass 1's warnings, before any coding (a refused band: InputError, before any output)
    )
    psnr, per_band = "", {}
    measurable = [b["source_band"] for b in stats.bands if b["valid_pixels"]]  # an all-nodata band has no error
    if args.reconstruction and measurable:
        try:
            metrics = _written_metrics(args, job, measurable)
        except _MetricsStopped:
            return 128 + job.signum
        if metrics is not None:
            overall = metrics["overall"]
            psnr = f", PSNR {_fmt(overall['psnr_db'], 2)} dB, SSIM {_fmt(overall['ssim'])}"
            per_band = {m["band"]: m for m in metrics["bands"]}
    elif args.reconstruction:
        psnr = ", PSNR n/a (no valid pixel)"
    zeros = ""
    if stats.no_signal_pixels:
        zeros = f", {stats.no_signal_pixels} no-signal zeros ({stats.isolated_zeros} isolated)"
    if stats.scattered_no_signal:
        zeros += f", {stats.scattered_no_signal} scattered no-signal pixels coded as data"
    kind = f"{stats.kind} ({stats.kind_reason})"  # several bands: their kinds, not band 1's beside all zeros
    if len(stats.bands) > 1:
        kind = f"{len(stats.bands)} bands ({', '.join(sorted({b['kind'] for b in stats.bands}))})"
    print(
        f"{args.output}: ratio {_ratio_text(stats.ratio)}, {stats.bpp:.4f} bpp{psnr}, quality {stats.quality}, "
        f"{kind}{zeros}, {stats.seconds:.1f} s"
    )
    if len(stats.bands) > 1:
        for band, line in zip(stats.bands, stats.band_lines()):
            m = per_band.get(band["source_band"])
            measured = f"; reconstruction PSNR {_fmt(m['psnr_db'], 2)} dB, SSIM {_fmt(m['ssim'])}" if m else ""
            print(f"  {line}{measured}")
    return 0


class _MetricsStopped(Exception):
    """The metrics of written outputs cancelled: the exit code says so, the message says what is written."""


def _written_metrics(args: argparse.Namespace, job: _Job, bands: list[int]) -> Optional[dict]:
    """The metrics of a compression whose outputs are written: a cancel (_MetricsStopped) or an error here (the
    input gone meanwhile: None) is said as such, not as "no output was written" for files that exist."""
    from .metrics import evaluate_bands

    written = f"{args.output} and {args.reconstruction} are written"
    try:
        return evaluate_bands(args.input, args.reconstruction, bands, cancel=job.cancel, kind=args.kind)
    except (CancelledError, KeyboardInterrupt):
        print(f"cancelled: {written}; their metrics were not measured", file=sys.stderr)
        raise _MetricsStopped from None
    except (SARCompressorError, OSError) as exc:
        _warn(f"{written}; their metrics could not be measured: {exc}")
    return None


def _cmd_decompress(args: argparse.Namespace, job: _Job) -> int:
    from .api import decompress_file

    stats = decompress_file(
        args.input,
        args.output,
        band=args.band,
        cog=args.cog,
        overwrite=args.overwrite,  # checked at the start, and again as the file goes into place
        progress=job.progress,
        cancel=job.cancel,
        log=job.log,
        warn=_warn,  # what the GeoTIFF cannot hold, before any decoding
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


def _georef_lines(raster: dict[str, Any]) -> list[str]:
    """The raster's CRS and geotransform, or the GCPs that georeference it instead (Sentinel-1 GRD style): such a
    raster has no CRS or transform of its own, and "crs none, transform None" read as not georeferenced."""
    gcps = raster.get("gcps")
    located = not gcps and not raster.get("transform")
    if located and raster.get("rpcs"):
        return ["georef        RPCs (rational polynomial coefficients)"]
    geolocation = (raster.get("domains") or {}).get("GEOLOCATION")
    if located and geolocation:
        arrays = ", ".join(geolocation.get(k, "?") for k in ("X_DATASET", "Y_DATASET"))
        return [f"georef        geolocation arrays ({arrays})"]
    if not gcps:
        return [f"crs           {_crs_text(raster.get('crs_wkt'))}", f"transform     {raster.get('transform')}"]
    georef = f"georef        {len(gcps)} GCPs (ground control points), crs {_crs_text(raster.get('gcp_crs_wkt'))}"
    return [georef] + ([f"transform     {raster['transform']}"] if raster.get("transform") else [])


def _loop_filter_text(stats: dict[str, Any], h: dict[str, Any]) -> str:
    """On how many of the band's tiles its adaptive loop filter is (files before it have no loop-filter stream)."""
    if "loop_filter" not in h["streams"]:
        return "none (the file predates it)"
    return f"on {stats.get('loop_filtered_tiles', 0)} of {_tiles_per_band(h)} tiles (kept where it pays)"


def _interscale_text(stats: dict[str, Any], h: dict[str, Any]) -> str:
    """On how many of the band's tiles a detail level is predicted from the level above (format 9 and later)."""
    if h["format_version"] < 9:
        return "none (the file predates it)"
    return f"on {stats.get('interscale_tiles', 0)} of {_tiles_per_band(h)} tiles (kept where it saves bits)"


def _tiles_per_band(h: dict[str, Any]) -> int:
    """Tiles of each band (chunk order "band, tile row, tile column": every band has the same tiles)."""
    return h["n_chunks"] // len(h["bands"])


def _mean_text(b: dict[str, Any], h: dict[str, Any]) -> str:
    """The band's mean correction, and under "block" the step its block means are coded in (format 6 files have
    one step for every band, in gain_blocks)."""
    gain = f"global gain {b['global_gain']:.4f}"
    if b["mean_correction"] != "block":
        return f"{b['mean_correction']} ({gain})"
    step, side = b.get("mean_log2_step", h["gain_blocks"].get("log2_step")), h["gain_blocks"]["block_size"]
    return f"block: {side}x{side} block means to 1/{round(1 / step)} log2 ({10 * math.log10(2) * step:.3f} dB); {gain}"


def _band_lines(b: dict[str, Any], bands: list[dict[str, Any]], nbytes: int, h: dict[str, Any]) -> list[str]:
    """The `info` lines of one band entry of the header `h` (`bands`: all of them, for its reference; `nbytes`: its
    chunks' bytes)."""
    rng, stats, bright = b["range"], b.get("stats", {}), b["bright"]
    step = b["refine_step"]
    ref = b.get("reference")
    predicted = "coded on its own" if ref is None else f"predicted from band {bands[ref]['source_band']}"
    unit = "" if b["kind"] == "native" else " dB"  # native values are in the band's own units
    return [
        f"band {b['source_band']}        {b['kind']}, description {b.get('description') or ''!r}, "
        f"nodata {b.get('nodata')}",
        f"  tags        {b.get('tags') or {}}",
        f"  chunks      {nbytes} bytes; {predicted}",
        f"  layers      flat base + wavelet refinement, quality {b['quality']}, step {step:g} of the range "
        f"({step * (rng['vmax'] - rng['vmin']):.2f}{unit or ' in its units'})",
        f"  loop filter {_loop_filter_text(stats, h)}",
        f"  inter-scale {_interscale_text(stats, h)}",
        f"  kind        {b['kind']} ({stats.get('kind_reason') or 'reason not recorded'})",
        *_scaling_lines(b, h),
        f"  no signal   {stats.get('no_signal_pixels', 0)} zero pixels coded in the mask "
        f"({stats.get('isolated_zeros', 0)} isolated); {stats.get('scattered_no_signal', 0)} scattered ones (zeros, "
        "-inf in dB) coded as data at the signal around them",
        *(f"  warning     {w}" for w in stats.get("warnings") or []),
        f"  range       [{rng['vmin']:.3f}, {rng['vmax']:.3f}]{unit}",
        f"  mean gain   {_mean_text(b, h)}",
        f"  bright      {stats.get('n_bright_residuals')} residuals above {bright['threshold_db']:.3f}{unit}; "
        f"clipped fraction {_fmt(stats.get('clipped_fraction'), 5)}",
    ]


def _scaling_lines(b: dict[str, Any], h: dict[str, Any]) -> list[str]:
    """The band's GDAL scale and offset, and whether its values were coded with them applied (format 13 on)."""
    scaling = pp.band_scaling(b.get("scale"), b.get("offset"), b["kind"])
    if scaling == pp.IDENTITY:
        return []
    how = "coded as raw x scale + offset" if scales(h) else "coded as raw values (the file predates format 13)"
    return [f"  scaling     scale {scaling[0]:g}, offset {scaling[1]:g}: {how}"]


def _info_lines(h: dict[str, Any]) -> list[str]:
    raster, tiling, bands = h["raster"], h["tiling"], h["bands"]
    size, pixels = h["file_bytes"], raster["width"] * raster["height"]
    raw = sum(b.get("stats", {}).get("input_bytes", 0) for b in bands)
    ratio = _ratio_text(raw / size) if raw else "n/a"
    tools = ", ".join(f"{name} {tool['name']}" for name, tool in h["tools"].items() if tool) or "none"
    lines = [
        f"format        .sarz v{h['format_version']}, {h['n_chunks']} chunks, {size} bytes, file id {h['file_id']}",
        f"ratio / bpp   {ratio}, {8 * size / pixels:.4f} bpp",
        f"raster        {raster['width']}x{raster['height']} {raster['dtype']}, {len(bands)} band(s)",
        f"tiling        {tiling['tile_width']}x{tiling['tile_height']} tiles, chunks in {tiling['order']} order",
        *_georef_lines(raster),
        f"tools         {tools}",
        f"software      {h.get('software', {}).get('name')} {h.get('software', {}).get('version')}",
    ]
    ordered = sorted(range(len(bands)), key=lambda i: bands[i]["source_band"])
    return lines + [line for i in ordered for line in _band_lines(bands[i], bands, h["band_bytes"][i], h)]


def _cmd_info(args: argparse.Namespace, job: _Job) -> int:
    """The header, then (--verify) the check: the header is printed first, so a damaged file still shows what
    it holds before the error names the damaged chunks (with --json, the check's error is the JSON's "verify")."""
    from .api import read_header
    from .errors import ContainerError

    header = read_header(args.input)
    if args.json:
        verified, code = _json_verify(args.input, job) if args.verify else (None, 0)
        print(json_text.dumps({**header, "verify": verified} if verified else header))
        return code
    try:
        lines = _info_lines(header)
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ContainerError(f"{args.input}: header lacks a field ({exc}); try --json") from exc
    print(f"{args.input}")
    print("\n".join("  " + line for line in lines), flush=True)
    if args.verify:
        print(f"  verify        {_verify(args.input, job)}")
    return 0


def _json_verify(path: str, job: _Job) -> tuple[str, int]:
    """The check's summary and exit code 0, or its error ("failed: ...") and EXIT_ERROR."""
    from .errors import ContainerError

    try:
        return _verify(path, job), 0
    except ContainerError as exc:
        return f"failed: {exc}", EXIT_ERROR


def _cmd_vrt(args: argparse.Namespace, job: _Job) -> int:
    from .gdal_vrt import ENVIRONMENT, write_vrt

    paths = write_vrt(args.input, args.output)
    print(f"{paths[0]}: {len(paths) - 1} overview VRT(s) beside it")
    job.log("read it with: " + " ".join(f"{k}={v}" for k, v in ENVIRONMENT.items()))
    return 0


def _verify(path: str, job: _Job) -> str:
    from .verify import verify_file

    return verify_file(path, progress=job.progress, cancel=job.cancel).summary()


def _cmd_verify(args: argparse.Namespace, job: _Job) -> int:
    print(f"{args.input}: {_verify(args.input, job)}")
    return 0


def _cmd_inspect(args: argparse.Namespace, job: _Job) -> int:
    from .inspect import inspect_input

    summary = inspect_input(args.input, args.band, args.kind)
    if args.json:
        print(json_text.dumps(summary.to_dict()))
    else:
        print(args.input)
        print("\n".join("  " + line for line in summary.lines()))
    return EXIT_ERROR if summary.refusal else 0


def _cmd_evaluate(args: argparse.Namespace, job: _Job) -> int:
    from .metrics import evaluate_bands, evaluate_files

    watch = {"looks": args.looks, "cancel": job.cancel, "progress": job.progress}
    if args.band is not None:
        result = evaluate_files(args.original, args.reconstruction, args.band, args.kind, **watch)
    else:
        result = evaluate_bands(args.original, args.reconstruction, kind=args.kind, **watch)
        if len(result["bands"]) == 1:
            result = {**result["bands"][0], "warnings": result["warnings"]}
    for warning in result["warnings"]:
        _warn(warning)
    if args.json:
        print(json_text.dumps(result))
        return 0
    if "overall" not in result:
        _print_metrics(result)
        return 0
    for band in result["bands"]:
        print(f"band {band['band']} ({band['kind']})")
        _print_metrics(band, "  ")
    print("overall")
    _print_metrics(result["overall"], "  ")
    return 0


def _print_metrics(result: dict[str, Any], indent: str = "") -> None:
    from .metrics import METRIC_KEYS

    domains = result.get("domain", {})
    for key in METRIC_KEYS:
        print(f"{indent}{key:17s} {_fmt(result.get(key), 4):>9s}   {domains.get(key, '')}")
    other = result.get("other_domain")
    if other:
        rng = other["range"]
        print(
            f"also as {other['kind']}: PSNR {_fmt(other['psnr_db'], 4)} dB, SSIM {_fmt(other['ssim'], 4)} "
            f"(range [{rng['vmin']:.6g}, {rng['vmax']:.6g}] {rng['unit']})"
        )
    return 0


def _cmd_simulate(args: argparse.Namespace, job: _Job) -> int:
    from .simulate import write_scene

    height, width = args.size
    path = write_scene(
        args.output,
        height,
        width,
        looks=args.looks,
        seed=args.seed,
        kind=args.kind,
        dtype=args.dtype,
        cancel=job.cancel,
    )
    print(f"{path}: simulated {height}x{width} {args.kind} {args.dtype}, {args.looks} look(s), seed {args.seed}")
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
            log=job.log,  # "waiting: ..." for a file another run writes, "failed: ..." as they come
        )
    except CancelledError as exc:  # files finished before the cancel are kept: say so, not "no output"
        print(f"cancelled: {exc}", file=sys.stderr)
        return 128 + job.signum
    finally:
        if bar is not None:
            bar.close()
    print(report.summary())
    for outcome in report.outcomes:
        for warning in outcome.warnings:
            print(f"warning: {outcome.input}: {warning}", file=sys.stderr)
    for failed in report.failed if args.quiet else []:  # else each was said as it failed (job.log)
        print(f"failed: {failed.input}: {failed.error}", file=sys.stderr)
    return 0 if report.ok else 1


def _run_bench(argv: list[str]) -> int:
    # bench/ builds on the engine, never the reverse: imported only when this command runs.
    from ..bench.run import main as bench_main

    try:
        return bench_main(argv)
    except SystemExit as exc:  # --help or a usage error (its parser has printed the message)
        return int(exc.code or 0)


PASSTHROUGH: dict[str, Callable[[list[str]], int]] = {"bench": _run_bench}

COMMANDS: dict[str, Callable[[argparse.Namespace, _Job], int]] = {
    "compress": _cmd_compress,
    "decompress": _cmd_decompress,
    "info": _cmd_info,
    "verify": _cmd_verify,
    "inspect": _cmd_inspect,
    "vrt": _cmd_vrt,
    "evaluate": _cmd_evaluate,
    "simulate": _cmd_simulate,
    "batch": _cmd_batch,
}


def _guarded(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """A writing command's outputs checked (output_paths) and locked for the run; nothing for the others."""
    if args.command not in WRITERS:
        return contextlib.nullcontext()
    inputs, outputs = WRITERS[args.command]
    return guarded_outputs(
        [getattr(args, name) for name in inputs], [getattr(args, name) for name in outputs], args.overwrite
    )


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll says POLLERR; False where there is no poll)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # Windows has no poll; a captured stdout has no file number
        return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 error, 130/143 cancelled by SIGINT/SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:  # their own parsers take the rest of the line
        return PASSTHROUGH[argv[0]](argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error (argparse has printed the message)
        return int(exc.code or 0)
    job, before = _Job(args.command, args.quiet), _output_stamps(args)
    try:
        with job.running(), _guarded(args):
            return COMMANDS[args.command](args, job)
    except CancelledError:
        print("cancelled: no output was written", file=sys.stderr)
        return 128 + job.signum
    except KeyboardInterrupt:  # a second signal: batch's finished files stay, so "no output was written" misled
        print("interrupted: no half-written output was left", file=sys.stderr)
        return 128 + job.signum
    except SARCompressorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError as exc:  # the reader went away (`info --json | head`): nothing left to say
        if not _stdout_closed():  # another pipe broke: an error like any other
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        with contextlib.suppress(OSError, ValueError):  # Python's flush at exit would fail again on the pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # disk full, permission denied, ...: still a message, not a traceback
        print(f"error: {exc}{_outputs_after(exc, before)}", file=sys.stderr)
        return EXIT_ERROR


def _output_stamps(args: argparse.Namespace) -> dict[str, Optional[tuple[int, int, int]]]:
    """The command's outputs as they are before it runs (inode, size, time; None where absent)."""
    names = [getattr(args, name, None) for name in WRITERS.get(args.command, ((), ()))[1]]
    return {str(name): _stamp(str(name)) for name in names if name}


def _stamp(path: str) -> Optional[tuple[int, int, int]]:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def _outputs_after(exc: OSError, before: dict[str, Optional[tuple[int, int, int]]]) -> str:
    """Where the command's outputs stand after an OSError that names no file (a full disk's '[Errno 28] No space
    left on device' said nothing of them): each written by this run (changed since it started: the error came
    after, printing the summary to a full disk) or not."""
    if exc.filename is not None or not before:
        return ""
    written = {name: _stamp(name) not in (stamp, None) for name, stamp in before.items()}
    return " (" + "; ".join(f"{name} {'written' if done else 'not written'}" for name, done in written.items()) + ")"
