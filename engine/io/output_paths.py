"""Where outputs may be written: the one rule for the CLI and the Processing algorithms, temp names, the files a
raster input reads.

A destination is refused before any work starts when it is an input (same file after symlinks, hard links: same device
and inode), another output of the same run, `-` (no streaming), something that is not a regular file (FIFO, device,
folder: never replaced, even when asked to overwrite), or an existing file the caller did not ask to overwrite.
Writers put their bytes in a hidden temp file next to the destination, named `.NAME.sarz-tmp.PID.RANDOM` (NAME
shortened with a hash past LONG_NAME bytes), and rename it into place only once complete; a run killed with SIGKILL
leaves that file behind, and the next run to the same destination removes it once process PID is gone. While a run
writes NAME it holds `.NAME.sarz-lock` (write_lock: a second writer is refused, on this host or another sharing the
folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Optional, Union

from ..errors import OutputError
from .write_lock import LOCK_SUFFIX, holding, pid_alive

PathLike = Union[str, "os.PathLike[str]"]
TEMP_TAG = ".sarz-tmp."


def real_path(path: PathLike) -> Path:
    """The file a write to `path` lands in: symlinks followed (an overwrite updates the link's target)."""
    return Path(os.path.realpath(path))


def temp_path(dest: PathLike) -> Path:
    """A fresh hidden temp name next to `dest`'s real file, recognisable by `remove_stale_temps`."""
    final = real_path(dest)
    return final.with_name(f".{_stem(final.name)}{TEMP_TAG}{os.getpid()}.{secrets.token_hex(4)}")


LONG_NAME = 150
"""Names longer than this many bytes are shortened in temp and lock names (`_stem`): those add up to 45 characters
(the container's own temp inside the temp name), and a 213-character name failed with "File name too long" naming
a file the user never asked for. File systems take 255 bytes (a non-ASCII character is 2-4 of them)."""


def _stem(name: str) -> str:
    """`name` as temp and lock names carry it: itself, or when longer than LONG_NAME bytes its first 120 bytes (whole
    characters) and a hash of the whole (two long names that share their start still get their own)."""
    raw = os.fsencode(name)
    if len(raw) <= LONG_NAME:
        return name
    head = raw[:120].decode("utf-8", "ignore")  # a character cut in two is dropped
    return f"{head}~{hashlib.sha1(raw).hexdigest()[:10]}"


SIDECARS = (".ovr", ".aux.xml", ".msk")
"""GDAL's files beside a raster NAME (NAME.ovr, NAME.aux.xml, NAME.msk): overviews, statistics and metadata, a
mask, all of the file they were made for."""


def replace_into(tmp: Path, dest: PathLike, overwrite: bool = True) -> None:
    """Move a finished temp file onto `dest`'s real file. Replacing a file, it keeps that file's permission bits (an
    overwrite widened a 0600 file to the umask's 0644). GDAL's sidecars at that name (SIDECARS) are removed first:
    they described the old data (or a file deleted since, its sidecars left behind), and GDAL and QGIS applied them
    to the new (the old scene's overviews when zoomed out, its statistics, a mask that hid every pixel). Removed
    before the rename, a sidecar that cannot go (a sticky folder's, someone else's) fails the run with the old file
    in place. Without `overwrite`, a file that appeared at `dest` while the run wrote (another program's: the lock
    keeps out only this tool's runs) is refused, not replaced."""
    final = real_path(dest)
    try:
        old_mode: Optional[int] = stat.S_IMODE(os.stat(final).st_mode)
    except FileNotFoundError:
        old_mode = None
    if not overwrite:
        _move_unless_there(tmp, final, dest)
        return
    if old_mode is not None:
        os.chmod(tmp, old_mode)
    _remove_sidecars(final, dest)
    os.replace(tmp, final)


Held = list[tuple[Path, Path]]
"""Hard links of a file and of its GDAL sidecars, each with the name it stands for (`held_back`)."""


def held_back(path: PathLike) -> Held:
    """Hard links of the file at `path` and of its sidecars under temp names beside them (none where there is no
    file, or the file system makes no hard links): what `put_back` restores if a run that replaced it (which removes
    the sidecars) fails after that."""
    final = real_path(path)
    if not final.is_file():
        return []
    held: Held = []
    for name in (final, *sidecars_of(final)):
        kept = temp_path(final)  # the file's temp name, sidecars too: temp_files finds them after a kill
        try:
            os.link(name, kept)
        except OSError:
            put_back(held, placed=None)
            return []
        held.append((kept, name))
    return held


def file_identity(path: PathLike) -> Optional[tuple[int, int]]:
    """(device, inode) of the file at `path`; None where there is none."""
    try:
        found = os.stat(real_path(path))
    except OSError:
        return None
    return found.st_dev, found.st_ino


def put_back(held: Held, placed: Optional[tuple[int, int]]) -> None:
    """`held_back`'s links: where `placed` (the identity of the file the run put at the held file's name) is still
    what that name holds, the held file is moved back over it, and each held sidecar back where the run removed it
    (none is put over a file someone put there meanwhile); every other link is removed. Each on its own: one that
    fails leaves the others done."""
    now = file_identity(held[0][1]) if held else None
    known = placed is not None and placed[1] != 0  # an inode of 0 (some SMB shares) tells no file from another
    restore = known and now == placed  # the run's file there: the held one goes back over it
    untouched = bool(held) and now is not None and now == file_identity(held[0][0])  # still the held file itself
    errors = []
    for k, (kept, name) in enumerate(held):
        try:
            if (restore and k == 0) or ((restore or untouched) and k > 0 and not os.path.lexists(name)):
                os.replace(kept, name)  # (sidecars the run removed before its own file failed to go in, too)
            else:
                kept.unlink(missing_ok=True)
        except OSError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def sidecars_of(final: Path) -> list[Path]:
    """GDAL's sidecars of `final` that exist (a name too long for a sidecar, a 250-byte NAME.aux.xml, has none)."""
    found = []
    for suffix in SIDECARS:
        with contextlib.suppress(OSError):
            if final.with_name(final.name + suffix).is_file():
                found.append(final.with_name(final.name + suffix))
    return found


def _remove_sidecars(final: Path, dest: PathLike) -> None:
    for sidecar in sidecars_of(final):
        try:
            sidecar.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutputError(
                f"cannot remove {sidecar.name}, GDAL's file of the {dest} it replaces ({exc.strerror or exc}): GDAL "
                f"would apply it to the new file; {dest} is left as it was"
            ) from None


def _move_unless_there(tmp: Path, final: Path, dest: PathLike) -> None:
    """`tmp` renamed to `final` only where nothing is there: a hard link fails on an existing name (atomic); where
    the file system has no hard links, a look first."""
    appeared = OutputError(f"{dest} appeared while it was being written (not by this tool); not replaced")
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise appeared from None
    except OSError:  # no hard links here (FAT, some network shares)
        if os.path.lexists(final):
            raise appeared from None
        os.replace(tmp, final)
        return
    tmp.unlink()


def temp_files(dest: PathLike) -> list[tuple[Path, int]]:
    """The temp files of `dest` there are, with the pid of the process that made each: `.NAME.sarz-tmp.PID.*`
    (`temp_path`) and the container's own temp inside it (`..NAME.sarz-tmp.PID.*`)."""
    final = real_path(dest)
    pattern = re.compile(r"\.{1,2}" + re.escape(_stem(final.name)) + re.escape(TEMP_TAG) + r"(\d+)\.")
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(final.parent):
            match = pattern.match(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                found.append((Path(entry.path), int(match.group(1))))
    return found


def remove_stale_temps(dest: PathLike) -> list[Path]:
    """Remove the temp files of `dest` whose writing process is gone (killed runs); returns what was removed."""
    removed = []
    for path, pid in temp_files(dest):
        if not pid_alive(pid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare where they would land
        return real_path(a) == real_path(b)


def _check_one(out: Path, inputs: Sequence[tuple[Path, str]], others: Sequence[Path], overwrite: bool) -> None:
    """Refuse `out` (see the module text); `inputs`: each file read, with what it is ("the input NAME", or the
    file behind one: "the input NAME's source FILE")."""
    if str(out) == "-":
        raise OutputError("output '-' (standard output) is not supported: give a file name")
    for src, what in inputs:
        if _same_file(out, src):
            raise OutputError(f"output {out} is {what}: writing it would destroy the input")
    for other in others:
        if _same_file(out, other):
            raise OutputError(f"outputs {other} and {out} are the same file: give each its own name")
    if not real_path(out).parent.is_dir():
        raise OutputError(f"output folder does not exist: {real_path(out).parent}")
    try:
        mode = os.stat(out).st_mode  # follows symlinks: what an overwrite would replace
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(f"output {out} exists and is not a regular file (folder, FIFO or device): not replaced")
    if not overwrite and (mode is not None or out.is_symlink()):
        raise OutputError(f"output {out} already exists; pass --overwrite to replace it")
    left = [] if overwrite else sidecars_of(real_path(out))
    if left:  # a deleted file's overviews, statistics or mask: GDAL would read them as the new file's
        raise OutputError(
            f"{left[0]} is there, GDAL's file of an earlier {out.name} (overviews, statistics or a mask), and GDAL "
            "would apply it to the new file: remove it, or pass --overwrite to replace it too"
        )


def check_outputs(
    inputs: Iterable[Optional[PathLike]], outputs: Iterable[Optional[PathLike]], overwrite: bool
) -> list[Path]:
    """Refuse outputs that would destroy data (see the module text); None entries are ignored. Returns the
    outputs as Paths. `overwrite`: replace existing regular files (the CLI's --overwrite; QGIS's dialog asks
    the user itself, so the Processing algorithms pass True). An input is also every file GDAL reads for it
    (`files_behind`)."""
    names = [p for p in inputs if p is not None]
    srcs = [(Path(p), f"the input {p}") for p in names]  # files_behind(name), not of Path(name): it would make
    # /vsizip//abs/x.zip/in.tif (GDAL's absolute form) /vsizip/abs/... (a relative one)
    srcs += [(behind, f"the input {name}'s source {behind}") for name in names for behind in files_behind(name)]
    outs = [Path(p) for p in outputs if p is not None]
    for i, out in enumerate(outs):
        _check_one(out, srcs, outs[:i], overwrite)
    return outs


VRT_SOURCE_TAG = "SARZ_VRT_FOR"
"""The metadata item naming the .sarz a VRT of this tool decodes (engine.gdal_vrt writes it)."""
VRT_WRITER_TAG = "SARZ_VRT_WRITER"
"""The metadata item naming the version of this software that wrote a VRT (gdal_vrt.vrt_current)."""
ARCHIVES = ("/vsizip/", "/vsitar/", "/vsigzip/", "/vsi7z/", "/vsirar/")
"""GDAL's archive file systems: /vsizip/scene.zip/inner.tif reads scene.zip."""


def files_behind(name: PathLike) -> list[Path]:
    """The files on disk GDAL reads for the raster `name` (GDAL's file list: a VRT's sources, the file behind a
    dataset name such as GTIFF_DIR:1:scene.tif or NETCDF:"f.nc":var, the archive behind /vsizip/..., the
    sidecars); none where GDAL cannot open it (a .sarz, a file not written yet). An output that is one of them
    replaced the input its name did not show (a reconstruction over the file a VRT crops)."""
    text = os.fspath(name)
    if text.lower().endswith(".sarz"):
        return []
    try:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(text) as ds:
                listed = list(ds.files)
                sarz = ds.tags().get(VRT_SOURCE_TAG) if ds.driver == "VRT" else None  # this tool's VRT: GDAL
                # lists its VRT files alone (the tag itself, copied on by 0.7.1 before this, may sit elsewhere)
    except Exception:  # noqa: BLE001 (not a raster GDAL opens: nothing behind it to protect)
        return []
    return [path for path in map(_on_disk, listed) if path is not None] + ([Path(sarz)] if sarz else [])


def _on_disk(name: str) -> Optional[Path]:
    """The local file a GDAL file name reads: the archive of an /vsizip/-style name (relative, or absolute after
    a second slash), None for other /vsi names (network, memory)."""
    for prefix in ARCHIVES:
        if name.startswith(prefix):
            parts = Path(name[len(prefix) :]).parts
            archives = (Path(*parts[:k]) for k in range(1, len(parts) + 1))
            return next((path for path in archives if path.is_file()), None)
    return None if name.startswith("/vsi") else Path(name)


RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".nc")
"""Names a .sarz must not take: GDAL and QGIS would open such a file as that format and fail on it."""


def check_sarz_name(dest: PathLike) -> None:
    """Refuse a .sarz destination named like a raster (a slip for the reconstruction's name, or the wrong field),
    also where a link's target is (x.sarz -> scene.tif: --overwrite wrote .sarz bytes into scene.tif)."""
    for name in _names(dest):
        suffix = name.suffix
        if suffix.lower() in RASTER_SUFFIXES:
            raise OutputError(f"{dest}: a .sarz file would get a raster's name ({name.name}); name it .sarz")


def check_geotiff_name(dest: Optional[PathLike]) -> None:
    """Refuse a GeoTIFF destination named like another format (x.sarz, x.png): GDAL reads a file by its content, but
    this tool's batch, the plugin and a user's file browser go by the name (decompress wrote a GeoTIFF under a .sarz
    name, which batch and the plugin then took for a .sarz). Names without a suffix, or with one not listed in
    RASTER_SUFFIXES, are written as they are."""
    for name in _names(dest) if dest is not None else []:
        suffix = name.suffix.lower()
        if suffix == ".sarz" or (suffix in RASTER_SUFFIXES and suffix not in (".tif", ".tiff")):
            raise OutputError(f"{dest}: a GeoTIFF would get another format's name ({name.name}); name it .tif")


def _names(dest: PathLike) -> list[Path]:
    """The name given and, where it is a link, the name of the file a write lands in (real_path)."""
    return [Path(dest)] + ([real_path(dest)] if os.path.islink(dest) else [])


def _lock_file(dest: PathLike) -> Path:
    """`dest`'s lock file, beside the file a link names (write_lock: one writer per output)."""
    final = real_path(dest)
    return final.with_name(f".{_stem(final.name)}{LOCK_SUFFIX}")


def locked(dest: PathLike) -> contextlib.AbstractContextManager:
    """Hold `dest`'s lock file for the block (OutputBusyError / OutputError while another run holds it)."""
    return holding(_lock_file(dest), dest)


@contextlib.contextmanager
def guarded_outputs(
    inputs: Iterable[Optional[PathLike]], outputs: Iterable[Optional[PathLike]], overwrite: bool
) -> Iterator[list[Path]]:
    """`check_outputs`, then hold each output's lock and clear its stale temp files for the duration."""
    outs = check_outputs(inputs, outputs, overwrite)
    with contextlib.ExitStack() as stack:
        for out in outs:
            stack.enter_context(locked(out))
            remove_stale_temps(out)
        yield outs
