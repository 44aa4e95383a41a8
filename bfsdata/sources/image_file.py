"""Frame files: cheap header checks before any work, one decode per file during ingest."""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import tifffile

from bfsdata.config.regular_files import SIZE_RULE, InputFileError, open_regular, read_regular

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> channels (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA)
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Type and CRC of the IEND chunk: the last 8 bytes of a whole PNG. Searched for in the last
# PNG_TAIL bytes, as a few writers append padding after it that decoders ignore.
PNG_END, PNG_TAIL = b"IEND\xaeB`\x82", 64


class FrameError(ValueError):
    """A frame file that breaks a rule; `rule` names it for rejected.parquet."""

    def __init__(self, path: Path | str, rule: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.rule, self.message = str(path), rule, message


@dataclass(frozen=True)
class FrameHeader:
    height: int
    width: int
    channels: int
    dtype: str  # uint8 | uint16 | other (refused by check_header)


def read_header(path: Path) -> FrameHeader:
    """Shape and sample type from the file header, without decoding pixels.

    A file cut short (an interrupted copy) is refused here too, from its last bytes, so that
    ingest refuses it before writing anything rather than when it fails to decode; so is
    anything but a regular file, and a file much larger than the pixels it declares.
    """
    try:
        with open_regular(path) as fh:
            head = fh.read(33)
            if not head:
                raise FrameError(path, "not-empty", "is an empty (zero-byte) file")
            size = fh.seek(0, os.SEEK_END)
            if path.suffix.lower() == ".png":
                fh.seek(max(0, size - PNG_TAIL))
                h = _png_header(path, head, fh.read(PNG_TAIL), size)
            else:
                fh.seek(0)
                h = _tiff_header(path, fh, size)
    except InputFileError as e:
        raise FrameError(e.path, e.rule, e.message) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FrameError(
                path, "symlink-loop", "is a symbolic link loop: it never reaches a file"
            ) from None
        raise FrameError(path, "readable", f"cannot be read ({e.strerror or e})") from None
    if size > byte_cap(h):
        raise FrameError(
            path,
            SIZE_RULE,
            f"is {size:,} bytes, more than a {h.height}x{h.width} image takes (at most "
            f"{byte_cap(h):,}): it holds something else",
        )
    return h


def byte_cap(h: FrameHeader) -> int:
    """The most bytes a file of this header is read for: twice its pixels uncompressed at 4
    bytes a sample (more than any depth bfsdata reads), and 1 MiB of metadata."""
    return 2 * h.height * h.width * max(h.channels, 1) * 4 + 2**20


def _png_header(path: Path, head: bytes, tail: bytes, size: int) -> FrameHeader:
    if not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR" or len(head) < 33:
        raise FrameError(path, "valid-image", "is not a PNG file (no PNG signature/IHDR)")
    if PNG_END not in tail:
        raise FrameError(
            path, "complete", f"is truncated: its {size} bytes end before the PNG end chunk (IEND)"
        )
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if not width or not height:
        raise FrameError(path, "valid-image", f"says it is {width}x{height} pixels")
    if colour == 3:
        raise FrameError(path, "single-channel", "is a palette PNG; frames must be grayscale")
    dtype = {8: "uint8", 16: "uint16"}.get(depth, f"{depth}-bit")
    return FrameHeader(height, width, PNG_CHANNELS.get(colour, 0), dtype)


def _tiff_header(path: Path, fh: BinaryIO, size: int) -> FrameHeader:
    try:
        with tifffile.TiffFile(fh, name=path.name) as tif:
            if len(tif.pages) != 1:
                raise FrameError(path, "single-page", f"has {len(tif.pages)} pages; expected 1")
            page = tif.pages[0]
            # samplesperpixel, not shape[-1]: a planar RGB page has the shape (3, H, W)
            h = FrameHeader(
                page.imagelength, page.imagewidth, page.samplesperpixel, str(page.dtype)
            )
            end = max(map(sum, zip(page.dataoffsets, page.databytecounts, strict=True)), default=0)
    except FrameError:
        raise
    except Exception as e:  # tifffile raises many types for broken files
        raise FrameError(path, "valid-image", f"is not a readable TIFF ({e})") from None
    if end > size:
        raise FrameError(
            path, "complete", f"is truncated: its {size} bytes end before its pixel data ({end})"
        )
    return h


def check_pixels(path: Path, h: FrameHeader, max_pixels: int) -> None:
    """Refuse a header declaring more than `max_pixels` (acquisition.max_pixels), before
    anything of that size is allocated: a tiny file can claim 20000x20000."""
    if h.height * h.width > max_pixels:
        raise FrameError(
            path,
            "max-pixels",
            f"declares {h.height}x{h.width} = {h.height * h.width:,} pixels; frames may have at "
            f"most {max_pixels:,} (acquisition.max_pixels in the pipeline)",
        )


def check_header(path: Path, h: FrameHeader) -> None:
    if h.channels != 1:
        raise FrameError(
            path,
            "single-channel",
            f"has {h.channels} channels; frames must be single-channel "
            "grayscale (convert RGB/RGBA captures to grayscale before ingest)",
        )
    if h.dtype not in ("uint8", "uint16"):
        raise FrameError(path, "bit-depth", f"is {h.dtype}; frames must be 8- or 16-bit")


def read_bytes(path: Path, expect: FrameHeader) -> bytes:
    """A frame file's bytes, read once for both its digest and its decode; at most
    `byte_cap(expect)` of them, from a regular file."""
    try:
        return read_regular(path, byte_cap(expect))
    except InputFileError as e:
        raise FrameError(e.path, e.rule, e.message) from None
    except OSError as e:
        raise FrameError(path, "readable", f"cannot be read ({e.strerror})") from None


def decode(path: Path, data: bytes, expect: FrameHeader) -> np.ndarray:
    """Decode once; the result must agree with the header checked before."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameError(path, "valid-image", "cannot be decoded (truncated or corrupt image)")
    if (
        img.ndim != 2
        or img.shape != (expect.height, expect.width)
        or str(img.dtype) != expect.dtype
    ):
        raise FrameError(
            path,
            "valid-image",
            f"decodes to {img.dtype} {img.shape}, but its header says "
            f"{expect.dtype} ({expect.height}, {expect.width}): the file is corrupt",
        )
    return img
