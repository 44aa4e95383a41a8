"""One writing stage at a time per workspace: `<ws>/.bfsdata.lock`.

Two `ingest` or `patch` runs on one workspace would plan the same free rows and shards and
overwrite each other's data. The lock file holds who has it, as JSON {pid, host, command,
started}; a second run is refused with that record, and exits 1.

How it is held: `fcntl.flock` on the open file, not O_CREAT|O_EXCL. The kernel drops a flock
when its process dies, however it dies (SIGKILL, OOM killer), so on one host a stale lock can
never block anyone and no pid test decides who may write. O_EXCL would leave a file behind
every kill and make staleness a guess from the pid alone. The pid+host record is still needed:
it names the holder in the refusal, and on a shared or network file system, where flock may not
reach other hosts, a record left by a process that is gone is taken over only when its host is
this one and its pid is dead here; a record from another host is refused with the file to
delete if that host runs no bfsdata any more.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bfsdata.workspace import paths
from bfsdata.workspace.paths import LOCK_NAME

# LOCK_NAME: the file's name (bfsdata.workspace.paths), at hand for code that checks the lock
__all__ = ["LOCK_NAME", "Holder", "LockError", "pid_alive", "workspace_lock"]

log = logging.getLogger(__name__)

# manifest.write and workspace.write_atomic name their temp files .<target>.<pid>.tmp
_TEMP = re.compile(r"^\..+\.(\d+)\.tmp$")


class LockError(ValueError):
    """The workspace is in use by another run; the message names it."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    command: str
    started: str  # ISO 8601, UTC, seconds

    def __str__(self) -> str:
        return f"`bfsdata {self.command}` (pid {self.pid} on {self.host}, since {self.started})"

    @property
    def gone(self) -> bool:
        """Known to have ended: it ran on this host and its pid is not running."""
        return self.host == socket.gethostname() and not pid_alive(self.pid)


@contextmanager
def workspace_lock(workspace: Path, command: str) -> Iterator[Holder]:
    """Hold the workspace's lock for the block; LockError if another run holds it.

    Creates the workspace if needed, and removes it again if it is still empty on the way out,
    so a refused first run leaves nothing behind.
    """
    ws = Path(workspace)
    missing = []  # folders this call creates, deepest first
    p = ws.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    fd, me = _acquire(ws, command)
    try:
        _remove_dead_temps(paths.local_manifests(ws))
        yield me
    finally:
        # Unlink before closing: a run that opened the old file then finds it is not the
        # current one (see _acquire) instead of locking an orphan inode.
        paths.lock_file(ws).unlink(missing_ok=True)
        os.close(fd)
        for d in missing:
            try:
                d.rmdir()
            except OSError:  # not empty: the stage wrote something, keep it
                break


def _acquire(ws: Path, command: str) -> tuple[int, Holder]:
    path = paths.lock_file(ws)
    if ws.exists() and not ws.is_dir():
        raise LockError(f"{ws}: is a file; a workspace is a folder")
    while True:
        try:
            ws.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a holder that had created `ws` just removed it: again
            continue
        except OSError as e:  # no write permission, read-only file system, ...
            raise LockError(f"{path}: cannot create the workspace lock ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if isinstance(e, BlockingIOError):
                raise LockError(_busy(ws, holder)) from None
            raise LockError(f"{path}: cannot lock the workspace ({e.strerror})") from None
        if _is_current(fd, path):
            break
        os.close(fd)  # the holder released and unlinked it between our open and flock: again
    old = _read_holder(fd)
    if old is not None and not old.gone:
        os.close(fd)  # leave its record in place
        raise LockError(
            _busy(ws, old) + f"; if that process no longer runs, delete {path} and run again"
        )
    if old is not None:
        log.warning("%s: taking over the stale lock of %s, which is no longer running", path, old)
    me = Holder(
        pid=os.getpid(),
        host=socket.gethostname(),
        command=command,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(asdict(me)).encode(), 0)
    return fd, me


def _is_current(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> Holder | None:
    """The record in an open lock file; None if empty (released, or not written yet)."""
    raw = os.pread(fd, 4096, 0)
    if not raw.strip():
        return None
    try:
        doc = json.loads(raw)
        return Holder(int(doc["pid"]), str(doc["host"]), str(doc["command"]), str(doc["started"]))
    except (ValueError, KeyError, TypeError):
        # Not a record bfsdata wrote: nothing says its writer is gone, so it is refused and
        # the message names the file to delete.
        return Holder(-1, "unknown host", "?", "unknown time")


def _busy(ws: Path, holder: Holder | None) -> str:
    who = str(holder) if holder else "another run (its record is not written yet)"
    return f"workspace {ws} is in use by {who}; wait for it to finish or use another workspace"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _remove_dead_temps(folder: Path) -> None:
    """Temp files of killed writers: a kill between write and rename leaves them behind, and
    nothing else would ever remove them. Only those whose pid is not running here."""
    if not folder.is_dir():
        return
    for p in folder.glob(".*.tmp"):
        m = _TEMP.match(p.name)
        if m and not pid_alive(int(m[1])):
            p.unlink(missing_ok=True)
            log.info("removed %s, left by a killed writer", p)
