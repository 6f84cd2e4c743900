"""One writer per output: the lock file `.NAME.sarz-lock` a run holds while it writes NAME, and whether a process
that made a lock or a temp file still runs.

A lock is created exclusively and holds its writer's identity: PID, host, PID namespace and boot. A PID means
something only on the host, namespace and boot that made it: a lock of another host sharing the folder, or of
another container, is never taken over (a live writer there looked dead, and its lock was taken, its temp file
removed mid-write); one of this host's earlier boot is, when it is older than this boot. A dead writer's lock is
taken over by renaming it aside and checking it is the very file judged dead (two runs judging one dead lock could
both end up holding it). Locks of 0.7.0 and before hold the PID alone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Union

from ..errors import OutputError

LOCK_SUFFIX = ".sarz-lock"
LOCK_EMPTY_GRACE_S = 60.0
"""An empty lock file younger than this is taken as being created right now (its writer's id follows at once)."""
_HELD = "held"


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


def _windows_pid_alive(pid: int) -> bool:
    """Whether process `pid` runs, on Windows: there os.kill(pid, 0) sends CTRL_C_EVENT (signal 0) to a console
    process group, or kills the process, instead of asking. The process's exit code is asked for (STILL_ACTIVE);
    one that cannot be opened for lack of rights exists (someone else's)."""
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle = kernel32.OpenProcess(_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return ctypes.get_last_error() == _ACCESS_DENIED
    try:
        code = ctypes.c_ulong()
        return not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) or code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


_QUERY_LIMITED_INFORMATION, _ACCESS_DENIED, _STILL_ACTIVE = 0x1000, 5, 259
"""Windows' PROCESS_QUERY_LIMITED_INFORMATION access right, ERROR_ACCESS_DENIED and STILL_ACTIVE exit code."""


Identity = tuple[int, int, str]
"""A lock file as judged: inode, modification time (ns) and text (an inode alone is reused at once)."""


def _identity(path: Path) -> Identity:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_text().strip()


def _judge(lock: Path) -> Union[str, Identity, None]:
    """A lock found in place: _HELD (a live writer's, or one this run cannot judge), its identity (a dead writer's,
    to take over), or None (gone meanwhile)."""
    try:
        identity = _identity(lock)
    except FileNotFoundError:
        return None
    mtime, (pid, *where) = identity[1] / 1e9, identity[2].split(" ", 1)
    if not pid.isdigit():
        return _HELD if time.time() - mtime < LOCK_EMPTY_GRACE_S else identity
    if not where:  # 0.7.0's: the PID alone
        return _HELD if pid_alive(int(pid)) else identity
    host, namespace, *boot = where[0].split(" ")
    here_host, here_namespace, here_boot = _place().split(" ")
    if (host, namespace) != (here_host, here_namespace):
        return _HELD
    if boot and boot[0] != here_boot:  # this host's earlier boot, or another with its name: by the lock's age
        return identity if mtime < _boot_time() else _HELD
    return _HELD if pid_alive(int(pid)) else identity


def _take_over(lock: Path, judged: Identity) -> None:
    """Remove the dead writer's lock as judged: renamed aside first, so that a lock another run created meanwhile
    (after removing the same dead one) is put back, not removed."""
    aside = lock.with_name(f"{lock.name}.{secrets.token_hex(4)}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    if _identity(aside) != judged:
        try:
            os.link(aside, lock)  # back in place, unless yet another lock is there now
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system (FAT, some network shares)
            if not os.path.lexists(lock):
                os.rename(aside, lock)
                return
    aside.unlink()


@contextlib.contextmanager
def holding(lock: Path, dest: Union[str, Path]) -> Iterator[None]:
    """Hold `lock` (the lock file of `dest`) for the block; OutputError naming `dest` when another run holds it."""
    for _ in range(3):  # retries after taking a dead writer's lock over
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            judged = _judge(lock)
            if judged == _HELD:
                raise OutputError(
                    f"{dest} is being written by another run ({lock} exists; remove it if no run is writing {dest})"
                ) from None
            if judged is not None:
                _take_over(lock, judged)
            continue
        except OSError as exc:  # a read-only folder or medium: said before any work, in the destination's terms
            raise OutputError(f"cannot write {dest}: {exc.strerror or exc} in {lock.parent}") from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(writer_id())
        except OSError as exc:  # a full disk: an empty lock left would refuse every retry for a minute
            lock.unlink(missing_ok=True)
            raise OutputError(f"cannot write {dest}: {exc.strerror or exc} (writing its lock {lock.name})") from None
        break
    else:
        raise OutputError(f"cannot lock {dest}: {lock} keeps coming back")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
