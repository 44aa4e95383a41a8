"""A broken input rule: the file, the rule and what was found, printable on one line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    source: str  # file or folder
    rule: str
    message: str
    # What the problem refuses: one run of a strip, every run of it (run None), or, with
    # neither, only `source` itself (a stray file beside valid runs refuses none of them).
    strip: str | None = None
    run: int | None = None
    fatal: bool = False  # nothing can be ingested, even with --skip-bad

    def __post_init__(self) -> None:
        for name in ("source", "message", "strip"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, printable(getattr(self, name)))

    def __str__(self) -> str:
        return f"{self.source}: {self.message} [rule: {self.rule}]"


def printable(text: str) -> str:
    """Text as one line that a terminal and parquet take: undecodable bytes and control
    characters as \\xNN.

    File names are bytes on Linux; those that are not UTF-8 reach Python as lone surrogates
    (PEP 383), which printing or writing to parquet refuses with a traceback, and a newline in
    a name would break the one-line message.
    """
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        data = text.encode("utf-8", "backslashreplace")
    return data.decode("utf-8", "backslashreplace").translate(_CONTROL)


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)}
