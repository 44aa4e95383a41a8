"""Fault injection: kill this process at a named moment, for the crash tests.

`BFSDATA_CRASH_AT=NAME` (or `NAME:N`) makes the N-th call of `crash_point(NAME)` (default the
first) send SIGKILL to its own process: no `finally`, no atexit, exactly what a power cut or the
OOM killer leaves behind. Timing cannot hit "between the temp file and the rename"; this can.
Task points (ingest.*, patch.*) run where the task runs: with worker processes (`--workers N`,
`--scheduler`) they kill that worker, not the command; with threads (the default), the command.

The points, in the order a run reaches them:
    ingest.frames      an acquisition's `frames` shard is written, its `rank` shard is not
    ingest.rank        an acquisition's data is complete, its manifest row is not committed
    patch.shard        a full shard of patches is written (its task may have more to write)
    patch.unit         a task's patches are all written, none of its rows is committed
    commit.<manifest>  Committer.flush holds finished rows, nothing written yet
    manifest.<name>    manifest.write has the temp file on disk, not yet renamed
"""

from __future__ import annotations

import itertools
import os
import signal

ENV = "BFSDATA_CRASH_AT"


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, n = spec.partition(":")
    if not name or not (n == "" or (n.isdigit() and int(n) >= 1)):
        raise ValueError(f"{ENV}={spec!r}: expected NAME or NAME:N with N >= 1")
    return name, int(n or 1)


# Read once at import: an unset variable costs one comparison per point.
_TARGET = _parse(os.environ.get(ENV))
# Points are reached from dask worker threads: next() on a count is atomic under the GIL.
_calls = itertools.count(1)


def crash_point(name: str) -> None:
    """SIGKILL this process if `name` is the armed point and this is its N-th call."""
    if _TARGET is None or name != _TARGET[0]:
        return
    n = next(_calls)
    if n == _TARGET[1]:
        # One line on fd 2 so a test log says where the process died, then the kill.
        os.write(2, f"{ENV}: SIGKILL at {name} (call {n})\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
