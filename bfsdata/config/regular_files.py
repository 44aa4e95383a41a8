"""Input files are regular files of a bounded size: the one rule for every file bfsdata reads as
input (frames, masks, labels.csv, pipeline YAML, test-strip lists).

A name can point anywhere: a symbolic link to /dev/zero reads for ever, a FIFO blocks until a
writer comes, a 50 GB file named frame_0.png fills the memory. So the file is opened without
blocking (O_NONBLOCK: a FIFO opens at once) and its kind and size are asked of the open file,
after every link is followed, before a byte is read. Here, in the configuration layer, because
it is the lowest one: pipelines and sources both read files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

REGULAR_RULE, SIZE_RULE = "regular-file", "file-size"


class InputFileError(ValueError):
    """A file that is not a regular file, or too large; `rule` names the rule broken."""

    def __init__(self, path: Path | str, rule: str, message: str) -> None:
        super().__init__(f"{path}: {message} [rule: {rule}]")
        self.path, self.rule, self.message = str(path), rule, message


def open_regular(path: Path | str, cap: int | None = None) -> BinaryIO:
    """`path` open for reading, if it is a regular file (links followed) of at most `cap`
    bytes; InputFileError otherwise. OSError as `open` raises it (missing, unreadable, a loop)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    kind = _kind(os.stat(path).st_mode)  # before opening: a device is never opened
    if kind:
        raise _not_regular(path, kind)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)  # the file opened, should the name have changed meanwhile
        kind = _kind(st.st_mode)
        if kind:
            raise _not_regular(path, kind)
        if cap is not None and st.st_size > cap:
            raise too_large(path, st.st_size, cap)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_regular(path: Path | str, cap: int) -> bytes:
    """The bytes of a regular file of at most `cap` bytes (see `open_regular`)."""
    with open_regular(path, cap) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:  # it grew after it was measured
        raise too_large(path, len(data), cap)
    return data


def too_large(path: Path | str, size: int, cap: int) -> InputFileError:
    return InputFileError(
        path, SIZE_RULE, f"is {size:,} bytes; at most {cap:,} are read from a file like this"
    )


def _kind(mode: int) -> str | None:
    """What a file that is not regular is, for the message; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _not_regular(path: Path | str, kind: str) -> InputFileError:
    what = (
        f"is a link to {os.path.realpath(path)}, {kind}" if os.path.islink(path) else f"is {kind}"
    )
    return InputFileError(
        path, REGULAR_RULE, f"{what}, not a regular file; only regular files are read as input"
    )
