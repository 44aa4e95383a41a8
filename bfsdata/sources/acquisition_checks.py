"""What ingest checks before it writes (bfsdata.ingest): the headers of strip acquisitions,
which acquisitions the problems found refuse, and, for a new store, that an acquisition decodes
before the store's arrays are sized to it. Image folders check their headers in
`image_folders.check_headers`.
"""

from __future__ import annotations

from pathlib import Path

from bfsdata.sources import image_decode as folder_image
from bfsdata.sources.image_file import (
    FrameError,
    FrameHeader,
    check_header,
    check_pixels,
    decode,
    read_bytes,
    read_header,
)
from bfsdata.sources.strip_folders import Acquisition, Problem
from bfsdata.store import location as store


def check_headers(
    todo: list[Acquisition],
    fmt: tuple[int, int, str] | None,
    problems: list[Problem],
    max_pixels: int,
) -> dict[tuple[str, int], FrameHeader]:
    """One header per acquisition; frames that disagree are problems. Reads no pixels."""
    out = {}
    for acq in todo:
        try:
            first = None
            for path in acq.frames:
                h = read_header(path)
                check_pixels(path, h, max_pixels)
                check_header(path, h)
                if first is None:
                    first = h
                elif h != first:
                    raise FrameError(
                        path,
                        "same-format",
                        f"is {h.dtype} {h.height}x{h.width}, but "
                        f"{acq.frames[0].name} is {first.dtype} {first.height}x{first.width}; all "
                        "frames of an acquisition share size and bit depth",
                    )
            assert first is not None
            if fmt is None:
                fmt = (first.height, first.width, first.dtype)
            elif (first.height, first.width, first.dtype) != fmt:
                raise FrameError(
                    acq.folder,
                    "same-format",
                    f"frames are {first.dtype} {first.height}x"
                    f"{first.width}; this workspace holds {fmt[2]} {fmt[0]}x{fmt[1]} (one camera "
                    "format per workspace)",
                )
            out[(acq.strip, acq.run)] = first
        except FrameError as e:
            problems.append(Problem(e.path, e.rule, e.message, acq.strip, acq.run))
    return out


def drop_refused(
    todo: list[Acquisition], problems: list[Problem]
) -> tuple[list[Acquisition], list[Problem]]:
    """The acquisitions no problem refuses, and a row for each one refused with its strip (a
    problem of one run names that run already; one of a file alone refuses nothing else)."""
    bad_runs = {(p.strip, p.run) for p in problems if p.run is not None}
    by_strip = {p.strip: p for p in problems if p.run is None and p.strip}
    keep, rows = [], []
    for a in todo:
        if (a.strip, a.run) in bad_runs:
            continue
        if a.strip in by_strip:
            p = by_strip[a.strip]
            why = f"not ingested, as its strip is refused: {p.source}: {p.message}"
            rows.append(Problem(str(a.folder), p.rule, why, a.strip, a.run))
        else:
            keep.append(a)
    return keep, rows


def first_that_decodes(
    ws: Path, todo: list[Acquisition], headers: dict, images: bool
) -> tuple[list[Acquisition], list[Problem]]:
    """For a store without arrays yet: `todo` from its first acquisition that decodes, and the
    problems of those before it. The arrays are created only then, in that one's shape, so
    files whose headers promise pixels they do not hold leave no arrays behind. That one
    acquisition is decoded here, frame by frame, and once more by its task."""
    if store.exists(ws) and "frames" in store.open_root(ws, mode="r"):
        return todo, []
    failures = []
    for i, acq in enumerate(todo):
        hdr = headers[(acq.strip, acq.run)]
        try:
            if images:
                folder_image.load(acq, hdr, (hdr.height, hdr.width))
            else:
                for path in acq.frames:
                    decode(path, read_bytes(path, hdr), hdr)
        except FrameError as e:
            failures.append(Problem(e.path, e.rule, e.message, acq.strip, acq.run))
        else:
            return todo[i:], failures
    return [], failures
