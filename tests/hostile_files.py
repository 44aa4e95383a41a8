"""Hostile files written byte by byte, for the refusal tests: PNG headers that lie about their
size, and a PNG padded far beyond its pixels.

The PNGs are valid as files (signature, chunks with their CRCs, an IEND at the end), so every
check that reads only names, headers and the last bytes takes them for frames.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC over type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG of a few dozen bytes whose IHDR claims `width` x `height` 8-bit grey pixels, with
    an IDAT of one row: a header bomb, to anything that allocates what the header says."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit, grey, no interlace
    idat = zlib.compress(b"\x00" * 17)  # a filter byte and 16 pixels: far short of the claim
    path.write_bytes(
        PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def padded_png(path: Path, extra: int) -> Path:
    """`path` (a PNG) with a private ancillary chunk of `extra` bytes before its IEND: decoders
    skip it, so only the file's size says that it holds something else."""
    data = path.read_bytes()
    end = data.rindex(b"IEND") - 4  # the IEND chunk starts with its length
    path.write_bytes(data[:end] + chunk(b"prVt", bytes(extra)) + data[end:])
    return path
