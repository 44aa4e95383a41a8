"""A stage's hold on its workspace: the lock, the place of the store, the cluster.

`ingest` and `patch` open a session around their work (and `report`, without the lock, as it
writes no store), so a Python caller holds the workspace exactly as the CLI does; the CLI only
passes its options on. In this order, undone in reverse:

1. the workspace lock (`workspace.lock`): one writing stage at a time;
2. `--store`: the store's folder or URL recorded in the workspace (`store.location.attached`),
   taken back if the stage fails before it stored anything there;
3. the cluster (`workspace.parallel.cluster`): N local worker processes, an existing
   scheduler, or neither (threads of this process).

The lock is not re-entrant: a session inside another one on the same workspace is refused
like any second holder, so a caller that needs several stages runs them one after the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from bfsdata.store.location import attached
from bfsdata.workspace.lock import workspace_lock
from bfsdata.workspace.parallel import cluster


@contextmanager
def session(
    workspace: Path,
    command: str,
    *,
    lock: bool = True,
    store: str | None = None,
    processes: int | None = None,
    scheduler: str | None = None,
) -> Iterator[str | None]:
    """Hold `workspace` for `command` (the name the lock's record shows); yields the address of
    the scheduler to run tasks on, None for threads of this process.

    store: a folder or fsspec URL for the store and manifests (`--store`); processes: start a
    local cluster of that many worker processes (`--workers`); scheduler: an existing
    dask.distributed scheduler's address (`--scheduler`).
    """
    ws = Path(workspace)
    with (
        workspace_lock(ws, command) if lock else nullcontext(),
        attached(ws, store),
        cluster(processes, scheduler) as address,
    ):
        yield address
