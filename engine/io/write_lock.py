"""One writer per output: the lock file `.NAME.sarz-lock` a run holds while it writes NAME, and whether a process
that made a lock or a temp file still runs.

A lock is created exclusively and holds its writer's identity: PID, host, PID namespace and boot. A PID means
something only on the host, namespace and boot that made it: a lock of another host sharing the folder, or of
another container, is never taken over (a live writer there looked dead, and its lock was taken, its temp file
removed mid-write); one of this host's earlier boot is, when it is older than this boot. A dead writer's lock is
removed only under a takeover marker and after checking it is the very file judged dead (two runs judging one dead
lock could both end up holding it), and a writer removes its lock at the end only if it is still its own. Locks of
0.7.0 and before hold the PID alone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional, Union

from ..errors import OutputBusyError, OutputError

LOCK_SUFFIX = ".sarz-lock"
LOCK_EMPTY_GRACE_S = 60.0
"""An empty lock file younger than this is taken as being created right now (its writer's id follows at once)."""
_HELD, _LIVE = "held", "live"
"""_judge's verdicts on a lock in place: one this run cannot judge (another host's or container's, unreadable), and
one a live writer of this host holds (or is creating right now)."""


def writer_id() -> str:
    """This process as a lock names it: PID, host, PID namespace, boot (each "-" where the system does not say)."""
    return f"{os.getpid()} {_place()}"


def _place() -> str:
    """Where a PID means this process: host, PID namespace, boot."""
    return f"{socket.gethostname()} {_read('/proc/self/ns/pid', link=True)} {_read('/proc/sys/kernel/random/boot_id')}"


def _read(path: str, link: bool = False) -> str:
    with contextlib.suppress(OSError):
        return (os.readlink(path) if link else Path(path).read_text()).strip().replace(" ", "") or "-"
    return "-"


def _boot_time() -> float:
    """When this host booted (seconds since the epoch); 0 where the system does not say."""
    with contextlib.suppress(OSError, ValueError):
        return time.time() - float(Path("/proc/uptime").read_text().split()[0])
    return 0.0


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host, namespace and boot runs."""
    if pid == os.getpid():
        return True  # ours: another job of this process (QGIS runs several) may still be writing it
    if os.name == "nt":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


_QUERY_LIMITED_INFORMATION, _ACCESS_DENIED, _STILL_ACTIVE = 0x1000, 5, 259
"""Windows' PROCESS_QUERY_LIMITED_INFORMATION access right, ERROR_ACCESS_DENIED and STILL_ACTIVE exit code."""


def _windows_pid_alive(pid: int) -> bool:
    """Whether process `pid` runs, on Windows: there os.kill(pid, 0) sends CTRL_C_EVENT (signal 0) to a console
    process group, or kills the process, instead of asking. The process's exit code is asked for (STILL_ACTIVE);
    one that cannot be opened for lack of rights exists (someone else's)."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE  # not the default int: a 64-bit handle would be cut
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    handle = kernel32.OpenProcess(_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return ctypes.get_last_error() == _ACCESS_DENIED
    try:
        code = wintypes.DWORD()
        return not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) or code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


Identity = tuple[int, int, bytes]
"""A lock file as judged: inode, modification time (ns) and contents (an inode alone is reused at once)."""
MAX_PID = 2**31
"""PIDs are below this everywhere; a larger number in a lock is not a PID (the lock is judged unreadable)."""
TAKEOVER_STALE_S = 10.0
"""A takeover marker older than this was left by a run that died taking a lock over (it takes milliseconds)."""


def _identity(path: Path) -> Identity:
    """The lock file as found (OSError when it cannot be read)."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_bytes()


def _writer(text: str) -> Optional[tuple[int, list[str]]]:
    """A lock's PID and where it means something (host, namespace[, boot]; none in 0.7.0's); None when unreadable."""
    fields = text.split()
    if not fields or not fields[0].isdigit() or int(fields[0]) >= MAX_PID or len(fields) not in (1, 3, 4):
        return None
    return int(fields[0]), fields[1:]


def _judge(lock: Path) -> Union[str, Identity, None]:
    """A lock found in place: _LIVE (a live writer's of this host), _HELD (one this run cannot judge), its identity
    (a dead writer's, to take over), or None (gone meanwhile)."""
    try:
        identity = _identity(lock)
    except FileNotFoundError:
        return None
    except OSError:  # a folder, unreadable: not this run's to remove
        return _HELD
    mtime = identity[1] / 1e9
    writer = _writer(identity[2].decode("utf-8", "replace"))
    if writer is None:  # being written right now (empty), or garbage: by its age
        return _LIVE if time.time() - mtime < LOCK_EMPTY_GRACE_S else identity
    pid, where = writer
    if where:
        here_host, here_namespace, here_boot = _place().split(" ")
        if where[:2] != [here_host, here_namespace]:
            return _HELD
        if where[2:] and where[2] != here_boot:  # this host's earlier boot, or another with its name: by age
            return identity if mtime < _boot_time() else _HELD
    return _LIVE if pid_alive(pid) else identity


def _take_over(lock: Path, judged: Identity, dest: Union[str, Path]) -> None:
    """Remove the dead writer's lock as judged, while holding the takeover marker `.NAME.sarz-lock.takeover`: only
    its holder removes a lock it did not make, and only once it has checked that the lock is still the one judged.
    Two runs judging one dead lock both removed it and both held the lock (one removing the other's new one); now a
    run that finds the marker taken judges again. A run that died holding the marker leaves it stale after
    TAKEOVER_STALE_S."""
    marker = lock.with_name(lock.name + ".takeover")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - marker.stat().st_mtime > TAKEOVER_STALE_S:
                marker.unlink()
        return
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc} in {lock.parent}") from None
    try:
        if _identity(lock) == judged:  # nobody else removes a lock: between this and the unlink it stays
            lock.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc} in {lock.parent}") from None
    finally:
        marker.unlink(missing_ok=True)


@contextlib.contextmanager
def holding(lock: Path, dest: Union[str, Path]) -> Iterator[None]:
    """Hold `lock` (the lock file of `dest`) for the block; naming `dest`, OutputBusyError when a live run of this
    host holds it, OutputError when one this run cannot judge does (another host's)."""
    mine = _acquire(lock, dest)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if _identity(lock) == mine:  # never another run's
                lock.unlink()


def _acquire(lock: Path, dest: Union[str, Path]) -> Identity:
    """Create `lock` exclusively with this writer's id (after taking a dead writer's over); its identity."""
    for _ in range(5):  # retries after a takeover, or while another run takes one over
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            judged = _judge(lock)
            if judged in (_LIVE, _HELD):  # busy: a live writer of this host, which a batch waits for
                error = OutputBusyError if judged == _LIVE else OutputError
                raise error(
                    f"{dest} is being written by another run ({lock} exists; remove it if no run is writing {dest})"
                ) from None
            if judged is not None:
                _take_over(lock, judged, dest)
            continue
        except OSError as exc:  # a read-only folder or medium: said before any work, in the destination's terms
            raise OutputError(f"cannot write {dest}: {exc.strerror or exc} in {lock.parent}") from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(writer_id())
            return _identity(lock)
        except OSError as exc:  # a full disk: an empty lock left would refuse every retry for a minute
            lock.unlink(missing_ok=True)
            raise OutputError(f"cannot write {dest}: {exc.strerror or exc} (writing its lock {lock.name})") from None
    raise OutputError(f"cannot lock {dest}: {lock} keeps coming back")
