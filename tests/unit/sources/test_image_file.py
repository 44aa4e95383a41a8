"""Frame files: header checks without decoding, and the one decode per file."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from hostile_files import padded_png, png_claiming

from bfsdata.sources.image_file import (
    FrameError,
    FrameHeader,
    byte_cap,
    check_header,
    check_pixels,
    decode,
    read_bytes,
    read_header,
)


def _noise(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


def _png_by_hand(path: Path, width: int, height: int, depth: int, colour: int) -> Path:
    """A minimal valid PNG of any depth/colour type (cv2 cannot write palette or 1-bit)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    row_bytes = (width * depth + 7) // 8
    pixels = b"".join(b"\x00" + bytes(row_bytes) for _ in range(height))  # filter 0, zeros
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    if colour == 3:
        body += chunk(b"PLTE", bytes(range(6)))
    body += chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize(("dtype", "name"), [(np.uint8, "uint8"), (np.uint16, "uint16")])
def test_png_header_and_decode_round_trip(tmp_path: Path, dtype: type, name: str) -> None:
    img = _noise((12, 17), dtype)
    path = tmp_path / "frame_0.png"
    cv2.imwrite(str(path), img)
    h = read_header(path)
    assert h == FrameHeader(height=12, width=17, channels=1, dtype=name)
    check_header(path, h)
    out = decode(path, path.read_bytes(), h)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(("dtype", "name"), [(np.uint8, "uint8"), (np.uint16, "uint16")])
def test_tiff_header_and_decode_round_trip(tmp_path: Path, dtype: type, name: str) -> None:
    img = _noise((9, 14), dtype)
    path = tmp_path / "frame_0.tif"
    tifffile.imwrite(path, img)
    h = read_header(path)
    assert h == FrameHeader(height=9, width=14, channels=1, dtype=name)
    np.testing.assert_array_equal(decode(path, path.read_bytes(), h), img)


@pytest.mark.parametrize(("shape", "channels"), [((8, 9, 3), 3), ((8, 9, 4), 4)])
def test_colour_png_is_refused_by_check_header(tmp_path: Path, shape, channels) -> None:
    path = tmp_path / "frame_0.png"
    cv2.imwrite(str(path), _noise(shape))
    h = read_header(path)
    assert h.channels == channels
    with pytest.raises(FrameError, match=f"has {channels} channels") as e:
        check_header(path, h)
    assert e.value.rule == "single-channel"
    assert e.value.path == str(path)
    assert str(path) in str(e.value)


def test_grey_alpha_png_is_refused(tmp_path: Path) -> None:
    path = _png_by_hand(tmp_path / "frame_0.png", 4, 3, 8, colour=4)
    with pytest.raises(FrameError, match="has 2 channels") as e:
        check_header(path, read_header(path))
    assert e.value.rule == "single-channel"


def test_palette_png_is_refused_at_the_header(tmp_path: Path) -> None:
    path = _png_by_hand(tmp_path / "frame_0.png", 4, 3, 8, colour=3)
    with pytest.raises(FrameError, match="palette PNG") as e:
        read_header(path)
    assert e.value.rule == "single-channel"


def test_one_bit_png_is_refused_for_bit_depth(tmp_path: Path) -> None:
    path = _png_by_hand(tmp_path / "frame_0.png", 8, 3, 1, colour=0)
    h = read_header(path)
    assert h.dtype == "1-bit"
    with pytest.raises(FrameError, match="is 1-bit; frames must be 8- or 16-bit") as e:
        check_header(path, h)
    assert e.value.rule == "bit-depth"


def test_float_tiff_is_refused_for_bit_depth(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.float32))
    with pytest.raises(FrameError, match="float32") as e:
        check_header(path, read_header(path))
    assert e.value.rule == "bit-depth"


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.png"
    path.touch()
    with pytest.raises(FrameError, match="empty \\(zero-byte\\) file") as e:
        read_header(path)
    assert e.value.rule == "not-empty"


@pytest.mark.parametrize("content", [b"this is not an image\n" * 4, b"\x89PNG\r\n\x1a\n\0\0"])
def test_not_a_png(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "frame_0.png"
    path.write_bytes(content)
    with pytest.raises(FrameError, match="is not a PNG file") as e:
        read_header(path)
    assert e.value.rule == "valid-image"


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.tif"
    path.write_text("plain text")
    with pytest.raises(FrameError, match="is not a readable TIFF") as e:
        read_header(path)
    assert e.value.rule == "valid-image"


def test_multi_page_tiff(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 5), np.uint8), photometric="minisblack")
    with pytest.raises(FrameError, match="has 3 pages; expected 1") as e:
        read_header(path)
    assert e.value.rule == "single-page"


def test_unreadable_path(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.png"
    path.symlink_to("gone.png")  # a link to nothing fails like an unreadable file, even as root
    with pytest.raises(FrameError, match="cannot be read") as e:
        read_header(path)
    assert e.value.rule == "readable"


def test_a_folder_is_not_a_frame(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.png"
    path.mkdir()
    with pytest.raises(FrameError, match="is a folder, not a regular file") as e:
        read_header(path)
    assert e.value.rule == "regular-file"


def test_truncated_png_is_refused_by_its_header_check(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.png"
    cv2.imwrite(str(path), _noise((32, 40)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameError, match="is truncated") as e:
        read_header(path)
    assert e.value.rule == "complete"


def test_corrupt_png_passes_the_header_and_fails_to_decode(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.png"
    cv2.imwrite(str(path), _noise((32, 40)))
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)  # inside the pixel data
    path.write_bytes(bytes(data))
    h = read_header(path)
    check_header(path, h)
    with pytest.raises(FrameError, match="cannot be decoded") as e:
        decode(path, path.read_bytes(), h)
    assert e.value.rule == "valid-image"


def test_decode_refuses_a_file_that_disagrees_with_its_header(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.png"
    cv2.imwrite(str(path), _noise((6, 7)))
    wrong = FrameHeader(height=7, width=6, channels=1, dtype="uint8")
    with pytest.raises(FrameError, match=r"header says uint8 \(7, 6\)") as e:
        decode(path, path.read_bytes(), wrong)
    assert e.value.rule == "valid-image"
    with pytest.raises(FrameError, match="decodes to uint8"):
        decode(path, path.read_bytes(), FrameHeader(6, 7, 1, "uint16"))


def test_a_header_bomb_is_refused_by_its_pixel_count(tmp_path: Path) -> None:
    path = png_claiming(tmp_path / "frame_0.png", 20_000, 20_000)
    h = read_header(path)  # a valid header: only its size is wrong
    assert (h.height, h.width) == (20_000, 20_000)
    with pytest.raises(FrameError, match=r"declares 20000x20000 = 400,000,000 pixels") as e:
        check_pixels(path, h, 64 * 2**20)
    assert e.value.rule == "max-pixels" and "acquisition.max_pixels" in e.value.message
    check_pixels(path, h, 400_000_000)  # the limit is the pipeline's


def test_a_file_far_larger_than_its_pixels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "frame_0.png"
    cv2.imwrite(str(path), _noise((32, 40)))
    h = read_header(path)
    padded_png(path, byte_cap(h))
    with pytest.raises(FrameError, match=r"more than a 32x40 image takes") as e:
        read_header(path)
    assert e.value.rule == "file-size"
    with pytest.raises(FrameError, match=r"at most [0-9,]+ are read") as e:
        read_bytes(path, h)  # grown after its header was read: the read is capped too
    assert e.value.rule == "file-size"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_only_regular_files_are_frames(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "frame_0.png"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(FrameError, match=r"not a regular file") as e:
        read_header(path)
    assert e.value.rule == "regular-file"
    with pytest.raises(FrameError) as e:
        read_bytes(path, FrameHeader(32, 40, 1, "uint8"))
    assert e.value.rule == "regular-file"
