"""Batch compression of many rasters on a Dask cluster: one task per file, one .sarz per input.

Files are independent, so they scale over workers and machines with nothing shared but the paths: a
`distributed` LocalCluster of single-threaded worker processes (one per core, loopback only) by default, or any
running cluster through its scheduler address (every worker then needs this package and the files' paths).
A file that fails is reported with its error and the others go on. Outputs are written atomically by
compress_file, so a worker killed mid-file leaves only a temporary file, which is removed at the end (Dask runs the
task again elsewhere); an output that already exists and verifies (header and every chunk's CRC) is skipped, which
is how an interrupted run resumes.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import math
import os
import signal
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .codec.format.container import ContainerReader
from .codec.passes import rate_control
from .codec.passes.quality import DEFAULT_QUALITY, REFINE_STEPS, quality_level
from .codec.passes.strip_window import Cancel, Progress, available_cores, tiles_at_most
from .errors import CancelledError, InputError, OutputBusyError, SARCompressorError
from .io.output_paths import guarded_outputs
from .io.raster_io import dataset_stem, is_gdal_name, open_info

if TYPE_CHECKING:
    from distributed import Client

Log = Optional[Callable[[str], None]]
POLL_S = 0.25
"""How often the client checks `cancel` while it waits for files to finish."""
MTIME_SLACK_S = 2.0
"""How much later than its output an input may be dated and still be the one it was coded from: FAT keeps times to
2 s, and the clocks of two hosts writing one share drift apart."""
BUSY_RETRY_S = 2.0
"""How long a file whose output another live run of the worker's host writes waits before it is submitted again
(the worker judges the lock: the client may run on another host)."""
TILES_PER_FILE = 2
"""Tiles one file codes at once on a worker: a batch runs a file per core already, and a single run's one tile per core
(strip_window.LOOKAHEAD) would multiply the threads and the memory (about 100 MiB a tile) by the cores again."""
WORKER_WAIT_S = 60.0
"""How long a batch waits for a cluster to have a worker (one starting up, or scaling from zero)."""
DASK_MISSING = 'batch compression needs Dask: pip install "dask[distributed]>=2024.8,<2027"'


@dataclass
class FileOutcome:
    """What became of one input: "written", "skipped" (a valid output was already there) or "failed"; "busy" (another
    run writes its output) only on the way: the batch waits for that run and submits the file again."""

    input: str
    output: str
    status: str
    error: Optional[str] = None
    bpp: Optional[float] = None
    pixels: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    """The input's warnings (compress_file's `warn`: a photo, a mask no value can mark, bands' nodata values that
    differ, pass 1's)."""


@dataclass
class BatchReport:
    """Every input's outcome, in input order, and the wall time of the whole batch."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        return (
            f"{len(self.outcomes)} files: {self.count('written')} written, {self.count('skipped')} skipped "
            f"(already done), {self.count('failed')} failed, {self.seconds:.1f} s"
        )


# --------------------------------------------------------------------------- inputs and outputs


Source = Union[Path, str]
"""A batch input: a file's path, or a GDAL dataset name kept as written (a zipped product's `/vsizip//...`, a
netCDF variable's `NETCDF:"f.nc":var`: a Path folds `/vsizip//abs` into `/vsizip/abs`)."""


def expand_inputs(items: Sequence[str]) -> list[Source]:
    """Paths, GDAL dataset names, glob patterns and lists of them (`@list.txt`, or any `.txt` file: one per line,
    blank lines and `#` comments skipped, relative paths taken from the list's folder), in order, without repeats.
    A glob's broken links (a product on an unmounted volume) are kept, so that each fails in the report by name;
    they vanished without a word."""
    found: list[Source] = []
    for item in items:
        if is_gdal_name(item):
            found.append(_readable_dataset(item, "input"))
        elif item.startswith("@") or item.endswith(".txt"):
            found += _read_list(Path(item[1:] if item.startswith("@") else item))
        elif glob.has_magic(item):
            found += _glob_files(item)
        else:
            found.append(_not_output(_existing(Path(item), "input")))
    unique: dict[Source, Source] = {}  # one per file, under the first name given (a link's, not its target's)
    for source in found:  # its folder resolved as the system does (a '..' after a linked folder is the link's parent)
        if isinstance(source, str):
            unique.setdefault(source, source)
        else:
            unique.setdefault(source.resolve(), source.parent.resolve() / source.name)
    if not unique:
        raise InputError("no input files")
    return list(unique.values())


def _glob_files(pattern: str) -> list[Path]:
    """The files a glob pattern matches, and its broken links (a product on an unmounted volume: it fails in the
    report by name), sidecars and outputs skipped."""
    parts = pattern.split("/")
    walked = parts.count("**") == 1 and not any("**" in part for part in parts if part != "**")
    matches = _walk_glob(pattern) if walked else sorted(glob.glob(pattern, recursive=True))
    if not matches:
        raise InputError(f"no file matches {pattern!r}")
    kept = [Path(m) for m in matches if Path(m).is_file() or (Path(m).is_symlink() and not Path(m).exists())]
    return [m for m in kept if not _skipped_by_globs(m)]


def _walk_glob(pattern: str) -> list[str]:
    """A pattern with one whole `**` component (`head/**/tail`: `tail` in `head` and every folder below it, hidden
    ones aside, as glob matches it), each folder visited once, linked ones too: glob's own `**` followed two links
    back up the tree (`parent -> ..`, `self -> .`) for ever."""
    head, _, tail = pattern.partition("**")
    tail = tail.lstrip("/")
    roots = sorted(glob.glob(head)) if glob.has_magic(head) else [head or os.curdir]
    found: set[str] = set()
    seen: set[tuple[int, int]] = set()
    for root in (r for r in roots if os.path.isdir(r)):
        for folder, subfolders, files in os.walk(root, followlinks=True):
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:  # reached again through a link: a loop, or a second way in
                subfolders[:] = []
                continue
            seen.add((info.st_dev, info.st_ino))
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            if tail:
                found.update(glob.glob(os.path.join(glob.escape(folder), tail)))
            else:
                found.update(os.path.join(folder, name) for name in files if not name.startswith("."))
    return sorted(os.path.normpath(m) for m in found)


def _readable_dataset(name: str, what: str) -> str:
    """A GDAL dataset name that GDAL opens, as written; InputError naming it otherwise."""
    try:
        open_info(name)
    except SARCompressorError as exc:
        raise InputError(f"{what} cannot be read: {exc}") from None
    return name


def _read_list(path: Path) -> list[Source]:
    """The paths a list names; InputError for a file that is no UTF-8 text (`@scene.tif`, a list in another
    encoding: a UnicodeDecodeError traceback)."""
    listed = _existing(path, "list of inputs")
    try:
        text = listed.read_bytes().decode("utf-8-sig")  # Notepad and PowerShell start UTF-8 with a byte-order mark
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not a list of input paths in UTF-8 text (byte {exc.start} is not UTF-8): one path per line"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read the list of inputs {path}: {exc.strerror or exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    what = f"input listed in {path}"
    return [
        _readable_dataset(line, what) if is_gdal_name(line) else _existing(listed.parent / line, what)
        for line in lines
        if line and line[0] != "#"
    ]


GDAL_SIDECARS = (
    *(".aux.xml", ".aux", ".ovr", ".msk", ".rrd"),  # GDAL's statistics, overviews, masks
    *(".tfw", ".tifw", ".wld", ".prj", ".rpb", "_rpc.txt", ".imd", ".xml"),  # world files, RPCs, metadata
    ".hdr",  # an ENVI header: GDAL opens the .img / .dat beside it
)
"""Files kept beside a raster that are not rasters themselves: a glob over a folder skips them."""


def _skipped_by_globs(path: Path) -> bool:
    return _is_output(path) or path.name.lower().endswith(GDAL_SIDECARS)


def _is_output(path: Path) -> bool:
    """A .sarz or one of its VRTs: what this tool writes (a glob over a folder that holds them skips them)."""
    name = path.name.lower()
    return name.endswith(".sarz") or (".sarz." in name and name.endswith(".vrt"))


def _not_output(path: Path) -> Path:
    if _is_output(path):
        raise InputError(f"{path} is a .sarz or its VRT, already compressed: decompress it first to code it again")
    return path


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{what} not found (or not a file): {path}")
    return path


def output_paths(inputs: Sequence[Source], out_dir: Path) -> list[Path]:
    """out_dir/<input stem>.sarz for each input; two inputs with the same stem are an error, not an overwrite. Names
    are compared as Windows and macOS compare them (case, and composed or decomposed accents, told apart by neither):
    there Scene.sarz and scene.sarz are one file, and the second raster's was skipped as done with the first's data
    in it."""
    outputs: dict[str, tuple[Path, Path]] = {}
    for src in inputs:
        dst = out_dir / f"{dataset_stem(src)}.sarz"
        key = unicodedata.normalize("NFC", str(dst)).lower()  # as Windows and macOS fold names (NFD too)
        if key in outputs:
            other, first = outputs[key]
            where = f"to {dst}" if other == dst else f"to {other} and {dst}, one file on Windows and macOS"
            raise InputError(f"{first} and {src} would both be written {where}: rename one")
        outputs[key] = (dst, src)
    return [dst for dst, _ in outputs.values()]


def verify_output(path: Path) -> int:
    """Reads the header and every chunk (CRC-checked): ContainerError if any is damaged; the chunk count."""
    with ContainerReader(path) as reader:
        for i in range(reader.n_chunks):
            reader.read_chunk(i)
        return reader.n_chunks


def remove_stale_temps(outputs: Sequence[Path]) -> None:
    """Remove the temporary files killed writers left beside these outputs (their process gone), each while holding
    the output's lock, as a single run does (guarded_outputs); an output another run is writing (its lock held: a
    command, another batch) is left alone. (Until 0.7.1 this matched a temp name no writer made any more.)"""
    for dst in outputs:
        with contextlib.suppress(SARCompressorError), guarded_outputs([], [dst], overwrite=True):
            pass


# --------------------------------------------------------------------------- the task


def compress_one(src: str, dst: str, settings: Mapping[str, Any]) -> FileOutcome:
    """One file, on a worker: skipped when a valid output is there, else compress_file(src, dst, **settings).
    Errors come back as a failed outcome (not an exception: Dask would not retry them anyway); an output another run
    is writing as a busy one."""
    from .api import compress_file

    start, warnings = time.perf_counter(), []
    try:
        if _done_before(src, Path(dst), settings):  # outputs appear whole (renamed): no lock to look, nothing written
            return FileOutcome(src, dst, "skipped", seconds=time.perf_counter() - start)
        with guarded_outputs([src], [dst], overwrite=True):  # the lock every writer takes: one writer at a time
            if _done_before(src, Path(dst), settings):  # another run finished it meanwhile
                return FileOutcome(src, dst, "skipped", seconds=time.perf_counter() - start)
            stamp = _stamp(src)
            with tiles_at_most(TILES_PER_FILE):
                stats = compress_file(src, dst, warn=warnings.append, overwrite=False, **settings)
            if _stamp(src) != stamp:  # its output holds a mix, and its time stamp passes it as done on resume
                Path(dst).unlink(missing_ok=True)  # this run's own output
                raise InputError("the input changed while it was coded: its output was removed; run the batch again")
    except OutputBusyError as exc:
        return FileOutcome(src, dst, "busy", error=str(exc), seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 (any failure of one file is reported, the batch goes on)
        return FileOutcome(src, dst, "failed", error=_describe(exc), seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    return FileOutcome(src, dst, "written", bpp=stats.bpp, pixels=stats.pixels, seconds=seconds, warnings=warnings)


def _stamp(src: str) -> Optional[tuple[int, int]]:
    """An input file's size and modification time in nanoseconds (None for a GDAL dataset name: a product in its
    zip is not a file of its own)."""
    if is_gdal_name(src):
        return None
    info = os.stat(src)
    return info.st_size, info.st_mtime_ns


def _done_before(src: str, dst: Path, settings: Mapping[str, Any]) -> bool:
    """Whether `dst` is there, valid and coded as asked (a resumed batch skips it); InputError where it is there
    otherwise (damaged, or not coded from this input as asked: reported, never overwritten)."""
    if not os.path.lexists(dst):
        return False
    try:
        verify_output(dst)
    except SARCompressorError as exc:
        raise InputError(f"{dst} exists and is not a valid .sarz ({exc}); remove it to code {src}") from exc
    other = other_settings(src, dst, settings)
    if other:
        raise InputError(f"{dst} exists, not coded from this input as asked ({other}); remove it to code {src} again")
    return True


def other_settings(src: str, dst: Path, settings: Mapping[str, Any]) -> str:
    """What of `settings` an existing output was not coded with ("" when it was): another raster's size, an input
    modified after the output was written, its bands, kind, quality, or a size over the target (a resumed batch
    skips only files done as asked; a 37x100 output was skipped as done for a 400x500 raster of the same name, and
    one of another raster of the same size, copied over the input since, was kept). The file does not record `tune`
    or the ablation switches (loop_filter, interscale, ...): a resumed batch takes what it finds as coded with them."""
    from .api import read_header

    header, info = read_header(dst), open_info(src)
    bands = [entry["source_band"] for entry in header["bands"]]
    asked = [settings["band"]] if settings.get("band") else list(range(1, info.count + 1))
    found = []
    coded = (header["raster"]["width"], header["raster"]["height"])
    if coded != (info.width, info.height):  # another raster under the same name (a product processed again)
        found.append(f"a {coded[0]}x{coded[1]} raster, not this {info.width}x{info.height} one")
    elif not is_gdal_name(src) and os.stat(src).st_mtime > os.stat(dst).st_mtime + MTIME_SLACK_S:  # an older file
        found.append(f"an earlier {Path(src).name}: the input was modified after it was written")
    if sorted(bands) != asked:
        found.append(f"bands {sorted(bands)}, not {asked}")
    asked_correction = settings.get("mean_correction", "block")
    coded_corrections = {entry["mean_correction"] for entry in header["bands"]} - {asked_correction, "none"}
    if coded_corrections:  # "none": a native band's whatever was asked
        found.append(f"mean correction {', '.join(sorted(coded_corrections))}, not {asked_correction}")
    kind = settings.get("kind", "auto")
    if kind != "auto" and any(entry["kind"] != kind for entry in header["bands"]):
        found.append(f"kind {header['bands'][0]['kind']}, not {kind}")
    target, step = settings.get("target_bpp"), header["bands"][0]["refine_step"]
    if target is not None:
        bpp = 8.0 * header["file_bytes"] / (header["raster"]["width"] * header["raster"]["height"])
        lower = bpp < (1.0 - 3 * rate_control.TOLERANCE) * target and step > rate_control.FINEST_STEP
        if bpp > target or lower:  # rate control lands within TOLERANCE under a target it can reach
            found.append(f"{bpp:.4f} bpp, not a target of {target:g}")
    else:
        quality = settings.get("quality", DEFAULT_QUALITY)
        if not math.isclose(step, REFINE_STEPS[quality - 1], rel_tol=1e-6):  # a target's step is none of these
            ladder = any(math.isclose(step, other, rel_tol=1e-6) for other in REFINE_STEPS)
            coded = f"quality {header['bands'][0]['quality']}" if ladder else "a target bit rate"
            found.append(f"{coded}, not quality {quality}")
    return "; ".join(found)


def _describe(exc: BaseException) -> str:
    """An engine error's own message; a system error's words and the file it names (a broken link was reported as
    'FileNotFoundError: [Errno 2] ...'); anything else prefixed with its type (a bug)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, SARCompressorError):
        return text
    if isinstance(exc, OSError) and isinstance(exc.filename, (str, bytes)):
        names = " and ".join(os.fsdecode(n) for n in (exc.filename, exc.filename2) if isinstance(n, (str, bytes)))
        return f"{names}: {_broken_link(exc) or exc.strerror or text}"
    return f"{type(exc).__name__}: {text}"


def _broken_link(exc: OSError) -> Optional[str]:
    """'a broken link (to TARGET)' where `exc` is a missing file met through a link (not a refused or looping one)."""
    name = os.fsdecode(exc.filename)
    if exc.errno != errno.ENOENT or not os.path.islink(name):
        return None
    try:
        return f"a broken link (to {os.readlink(name)})"
    except OSError:
        return None


def worker_ready() -> str:
    """Run on every worker before the batch: unpickling it imports this module there, which fails on a worker
    without the package."""
    return __name__


# --------------------------------------------------------------------------- the client side


def default_workers() -> int:
    """One worker per core this process may use."""
    return available_cores()


WORKER_ENVIRON_DROPPED = ("MALLOC_TRIM_THRESHOLD_",)
"""distributed sets MALLOC_TRIM_THRESHOLD_=65536 in its workers' environment (to give memory back to the system):
glibc then maps every large numpy temporary afresh, and a batch of 40 1024x1024 files on 2 workers took 37.3 s
instead of 16.3 s (workers' system CPU 39.0 s against 1.8 s; a sweep), no faster than a loop of `compress`. The
single-threaded BLAS settings it also sets stay."""


@contextlib.contextmanager
def dask_client(
    client: Optional[Client] = None, scheduler: Optional[str] = None, workers: Optional[int] = None
) -> Iterator[Client]:
    """The caller's client, one connected to `scheduler`, or one on a loopback LocalCluster of `workers`
    single-threaded processes (closed, and its workers gone, when the block ends)."""
    if client is not None:
        yield client
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise InputError(DASK_MISSING) from exc
    if scheduler is not None:
        try:
            remote = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        with remote:
            yield remote
        return
    # The scheduler's HTTP routes run whatever dashboard_address says: None meant port 8787, and distributed's
    # four-line "Port 8787 is already in use" whenever another Dask held it; a free loopback port says nothing.
    import dask

    environ = dask.config.get("distributed.nanny.pre-spawn-environ", {})
    kept = {name: value for name, value in environ.items() if name not in WORKER_ENVIRON_DROPPED}
    # the nannies set those variables in this process's environment, which a worker inherits: an earlier
    # cluster's (a notebook's) are left out while this one's workers start
    dropped = {name: os.environ.pop(name) for name in WORKER_ENVIRON_DROPPED if name in os.environ}
    try:  # until the cluster closes: a worker the nanny starts again (after a kill) inherits it too
        with dask.config.set({"distributed.nanny.pre-spawn-environ": kept}), _sigint_ignored():
            cluster = LocalCluster(  # the config is read as each nanny is made
                n_workers=workers or default_workers(),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            )
        pids: list[int] = []
        try:
            with cluster, Client(cluster) as local:
                pids = list(local.run(os.getpid).values())
                yield local
        except BaseException:
            _kill_children(pids)  # a second Ctrl-C cut the close short: no worker may go on writing
            _forget(cluster)
            raise
    finally:
        os.environ.update(dropped)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the cluster's worker processes start, which keep that (an ignored signal survives
    exec): a terminal's Ctrl-C reaches the whole process group, and the workers died of it mid-file (70 lines of
    KeyboardInterrupt tracebacks; their finished results lost, the cancel message said "0 of 6 files" with 4
    written). This process cancels the batch; the cluster's close stops them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _forget(cluster: Any) -> None:
    """Keep distributed's exit hook from closing `cluster` again once its workers are killed: a second Ctrl-C's
    "stop at once" then waited 10 s there for workers that were gone (and a third Ctrl-C printed a traceback)."""
    from distributed.deploy.spec import SpecCluster

    instances = getattr(SpecCluster, "_instances", None)  # distributed's registry of the clusters it closes at exit
    if instances is not None:
        instances.discard(cluster)


def _kill_children(pids: Sequence[int]) -> None:
    """SIGKILL to those of `pids` that are still this process's descendants (the cluster's workers, where closing
    it was interrupted), so that the temp files they were writing can be removed."""
    import psutil

    for pid in pids:
        with contextlib.suppress(psutil.Error, OSError):
            worker = psutil.Process(pid)
            if os.getpid() in (parent.pid for parent in worker.parents()):
                worker.kill()  # SIGKILL; TerminateProcess on Windows (which has no SIGKILL)
                worker.wait(timeout=5)


def check_workers(client: Client) -> None:
    """InputError unless a worker joins within WORKER_WAIT_S and every worker can import this package (remote
    workers need it installed)."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError as exc:
        raise InputError(f"no Dask worker joined the scheduler within {WORKER_WAIT_S:g} s") from exc
    try:
        client.run(worker_ready)
    except Exception as exc:  # noqa: BLE001 (a worker's ImportError, whatever its transport)
        raise InputError(
            f"Dask workers cannot run sar_compressor ({_describe(exc)}): install the package on every worker"
        ) from exc


def compress_batch(
    inputs: Sequence[str],
    out_dir: os.PathLike | str,
    *,
    settings: Optional[Mapping[str, Any]] = None,
    client: Optional[Client] = None,
    scheduler: Optional[str] = None,
    workers: Optional[int] = None,
    progress: Progress = None,
    cancel: Cancel = None,
    log: Log = None,
) -> BatchReport:
    """Compress every input (paths, globs, lists: expand_inputs) into out_dir/<stem>.sarz, one Dask task per file,
    with compress_file's keyword `settings` (quality, target_bpp, kind, band, ...). `client`: an existing
    distributed Client; else `scheduler` (an address such as tcp://host:8786); else a LocalCluster of `workers`
    processes (default: one per core). `progress(done, total)` counts finished files; `cancel` is polled while
    files run (files already running finish, complete). Failures are in the report, not raised."""
    start = time.perf_counter()
    settings = dict(settings or {})
    _check_settings(settings, workers)
    sources = expand_inputs(inputs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out-dir is not a folder: {out}")
    outputs = output_paths(sources, out.resolve())  # two inputs with one stem: refused before the folder is made
    report = BatchReport()
    owned = client is None and scheduler is None
    try:
        with dask_client(client, scheduler, workers) as dask:
            check_workers(dask)
            with _made_for_the_batch(out):
                report.outcomes = _run(dask, sources, outputs, settings, progress, cancel, log)
    except CancelledError:
        if not owned:
            raise  # tasks already running may still finish: the count the client saw
        remove_stale_temps(outputs)  # the cluster is closed: what is on disk now is final (a file running at the
        raise _cancelled(sum(os.path.exists(dst) for dst in outputs), len(outputs)) from None  # cancel finished)
    except BaseException:
        if owned:  # the LocalCluster is closed: none of its workers can still be writing
            remove_stale_temps(outputs)
        raise  # (on a cluster we do not own, tasks already running may still be writing theirs)
    remove_stale_temps(outputs)
    report.seconds = time.perf_counter() - start
    return report


@contextlib.contextmanager
def _made_for_the_batch(out: Path) -> Iterator[None]:
    """`out` made (parents too) once the cluster runs, and removed again where the batch made it and it is still
    empty when it fails (a batch refused before any work left an empty --out-dir behind)."""
    made = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot make --out-dir {out}: {exc.strerror or exc}") from None
    try:
        yield
    except BaseException:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise


def _check_settings(settings: Mapping[str, Any], workers: Optional[int]) -> None:
    """What can be refused once here rather than once per file."""
    if "quality" in settings:
        quality_level(settings["quality"])
    if settings.get("target_bpp") is not None and not rate_control.is_target(settings["target_bpp"]):
        raise InputError(f"the target bits per pixel must be positive, got {settings['target_bpp']}")
    if settings.get("band") is not None and settings["band"] < 1:
        raise InputError(f"band {settings['band']} does not exist: bands count from 1")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")


def _run(
    client: Client,
    sources: Sequence[Source],
    outputs: Sequence[Path],
    settings: dict[str, Any],
    progress: Progress,
    cancel: Cancel,
    log: Log,
) -> list[FileOutcome]:
    """Submit one task per file and collect the outcomes as they finish (in input order in the result). A file whose
    output another live run of the worker's host is writing (a second batch over the same folder, a command) is
    submitted again every BUSY_RETRY_S until that run lets go of it: it is then skipped when that run wrote it as
    asked, coded when that run failed. (Each batch reported the other's files failed, which a third run had to
    redo.) A lock no worker can judge (another host's) fails the file, naming the lock to remove."""
    from distributed import as_completed

    def submit(i: int) -> None:
        key = f"sarz-{dataset_stem(sources[i])}-{uuid.uuid4().hex}"
        current[i] = client.submit(compress_one, str(sources[i]), str(outputs[i]), settings, key=key)
        index[current[i].key] = i
        finishing.add(current[i])

    index: dict[str, int] = {}
    current: list[Any] = [None] * len(sources)  # each file's latest task
    outcomes: list[Optional[FileOutcome]] = [None] * len(sources)
    finishing, waiting = as_completed(loop=client.loop), {}  # waiting: file -> when it was found busy
    said: set[int] = set()  # files whose wait was logged (once each)
    for i in range(len(sources)):
        submit(i)
    try:
        while not finishing.is_empty() or waiting:
            if cancel is not None and cancel():
                _let_running_finish(client, [current[i] for i in range(len(sources)) if i not in waiting])
                done_now = sum(current[i].status == "finished" for i in range(len(sources)) if i not in waiting)
                raise _cancelled(done_now, len(sources))
            for i in [i for i, since in waiting.items() if time.monotonic() - since >= BUSY_RETRY_S]:
                del waiting[i]
                submit(i)
            done = finishing.next_batch(block=False)
            if not done:
                time.sleep(POLL_S)
                continue
            for fut in done:
                i = index[fut.key]
                outcome = _outcome(fut, str(sources[i]), str(outputs[i]))
                if outcome.status == "busy":
                    if log is not None and i not in said:
                        log(f"waiting: {outcome.error}")
                        said.add(i)
                    waiting[i] = time.monotonic()
                    continue
                outcomes[i] = outcome
                if log is not None and outcome.status == "failed":
                    log(f"failed: {sources[i]}: {outcome.error}")
            if progress is not None:
                progress(sum(o is not None for o in outcomes), len(outcomes))
    except BaseException:
        client.cancel(current)
        raise
    return [o for o in outcomes if o is not None]


def _let_running_finish(client: Client, futures: Sequence[Any]) -> None:
    """A cancel: the files no worker has started are dropped, those a worker holds (Client.processing: running, or
    next in its queue) are waited for, so that a cancel keeps their work (it cancelled them too: a 2048x2048 file
    coded for 10 s was lost, against README's "files running finish"). A second Ctrl-C interrupts the wait
    (KeyboardInterrupt: the caller cancels everything)."""
    held = {key for keys in client.processing().values() for key in keys}
    client.cancel([f for f in futures if not f.done() and f.key not in held])
    running = [f for f in futures if f.key in held]
    while not all(f.done() for f in running):
        time.sleep(POLL_S)


def _cancelled(done: int, total: int) -> CancelledError:
    return CancelledError(
        f"cancelled by the user after {done} of {total} files (their outputs are complete; run the same command "
        "again to resume)"
    )


def _outcome(fut: Any, src: str, dst: str) -> FileOutcome:
    """The task's own outcome, or a failed one when the task itself died (KilledWorker, a cancelled task when the
    scheduler is lost, ...). A future whose worker died after it finished is lost and computed again: result()
    waits for that run (its status, read at once, called a written file failed, "NoneType: None")."""
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 (the task's failure, whatever it is, is this file's outcome)
        return FileOutcome(src, dst, "failed", error=_describe(exc))
