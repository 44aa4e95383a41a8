"""Image-folder datasets: one image per item, laid out like the public anomaly benchmarks.

    ROOT/
      train/good/<name>.png                    good images to learn from (required)
      test/good/<name>.png                     good images of the test kit (optional)
      test/<defect>/<name>.png                 defective images, one folder per defect type
      ground_truth/<defect>/<name>_mask.png    mask of test/<defect>/<name>.png (optional)

Every image maps onto the strip contracts (docs/design.md, Manifests) with no new manifest: it is
one acquisition of strip `<train|test>-<folder>-<name>` (unique and stable: it depends only on the
image's place in the folder), run 1, one frame, no rank images. The label is the folder's
(`good`, else `defect`), the defect type the folder name (annotations.parquet). The images of
`test/` are the test kit of `bfsdata split` (manifests/test_kit.txt), so a benchmark's own
test set is what the report judges.

Images are 8- or 16-bit PNG or TIFF, grayscale or RGB, one bit depth per workspace; a mask has
its image's size. This module finds and checks them by name and header, reading no pixels;
`folder_image` decodes them, and ingest writes what it returns.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bfsdata.config.pipeline import IMAGE_LAYOUTS, LayoutConfig
from bfsdata.sources.image_file import FrameError, FrameHeader, check_pixels, read_header
from bfsdata.sources.labels_csv import case_twins
from bfsdata.sources.strip_folders import STRIP_RE, Acquisition, Problem, RawScan, list_folder
from bfsdata.store import location as store
from bfsdata.workspace import manifest, paths
from bfsdata.workspace.writes import write_atomic

PARTS = ("train", "test", "ground_truth")
IMAGE_RE = re.compile(r"^(.+)\.(png|tif|tiff)$", re.IGNORECASE)
MASK_RE = re.compile(r"^(.+)_mask\.(png|tif|tiff)$", re.IGNORECASE)
LAYOUT_RULE = (
    "expected train/good/, test/<good|defect type>/ and ground_truth/<defect type>/ "
    "holding .png or .tif images"
)


@dataclass(frozen=True)
class ImageAcquisition(Acquisition):
    """An image as an acquisition: `folder` is the image file, `frames` that one file."""

    part: str = "train"  # train | test: the folder it came from
    mask: Path | None = None


def scan_images(root: Path) -> RawScan:
    """Acquisitions, labels, masks and problems of an image folder; reads no pixels."""
    root = Path(root)
    scan = RawScan(label_source="image folders")
    if not root.is_dir():
        scan.problems.append(Problem(str(root), "raw-folder", "is not a folder", fatal=True))
        return scan
    for p in list_folder(root, scan) or []:
        if p.name not in PARTS or not p.is_dir():
            scan.problems.append(
                Problem(
                    str(p), "images-layout", f"unexpected entry in an image folder; {LAYOUT_RULE}"
                )
            )
    if not (root / "train" / "good").is_dir():
        scan.problems.append(
            Problem(
                str(root / "train" / "good"),
                "images-layout",
                "is missing: the good images to learn from go in train/good/; " + LAYOUT_RULE,
                fatal=True,
            )
        )
    found: dict[str, ImageAcquisition] = {}  # by strip id
    for part in ("train", "test"):
        for folder in _class_folders(root / part, scan):
            if part == "train" and folder.name != "good":
                scan.problems.append(
                    Problem(
                        str(folder),
                        "images-layout",
                        "train/ holds good/ only: defective images go in test/<defect type>/",
                    )
                )
                continue
            for img in _files(folder, IMAGE_RE, "an image (.png, .tif)", scan):
                acq = _acquisition(img, part, scan)
                if acq is not None:
                    found[acq.strip] = acq
    scan.problems += case_twins({a.folder: a.strip for a in found.values()})
    masks = _masks(root / "ground_truth", found, scan)
    scan.acquisitions = sorted(
        (dataclasses.replace(a, mask=masks.get(a.strip)) for a in found.values()),
        key=lambda a: a.strip,
    )
    if not any(a.part == "train" for a in found.values()) and not scan.problems:
        scan.problems.append(
            Problem(str(root / "train" / "good"), "images-layout", "has no images", fatal=True)
        )
    scan.strips = {a.strip for a in scan.acquisitions}
    scan.annotations = pd.DataFrame(
        [
            {
                "strip": a.strip,
                "label": a.label,
                "defect": a.folder.parent.name if a.label == "defect" else None,
                "vial": None,
                "region": None,
            }
            for a in scan.acquisitions
        ],
        columns=["strip", "label", "defect", "vial", "region"],
    )
    return scan


def _class_folders(part: Path, scan: RawScan) -> list[Path]:
    """good/ and <defect type>/ folders of train/ or test/; anything else is a problem."""
    if not part.is_dir():
        return []
    out = []
    for p in list_folder(part, scan) or []:
        if not p.is_dir():
            scan.problems.append(
                Problem(str(p), "images-layout", f"unexpected file; {LAYOUT_RULE}")
            )
        elif not STRIP_RE.match(p.name):
            scan.problems.append(
                Problem(
                    str(p), "images-layout", f"folder name {p.name!r} must match [A-Za-z0-9_-]+"
                )
            )
        else:
            out.append(p)
    return out


def _files(folder: Path, pattern: re.Pattern, what: str, scan: RawScan) -> list[Path]:
    out = []
    for f in list_folder(folder, scan) or []:
        if f.is_file() and pattern.match(f.name):
            out.append(f)
        else:
            scan.problems.append(
                Problem(str(f), "images-layout", f"unexpected entry; expected {what}")
            )
    return out


def image_id(path: Path) -> str:
    """`<part>-<folder>-<name>` of `<part>/<folder>/<name>.png`: the strip id of an image."""
    name = IMAGE_RE.match(path.name).group(1)
    return f"{path.parent.parent.name}-{path.parent.name}-{name}"


def _acquisition(img: Path, part: str, scan: RawScan) -> ImageAcquisition | None:
    name = IMAGE_RE.match(img.name).group(1)
    strip = image_id(img)
    if not STRIP_RE.match(name):
        scan.problems.append(
            Problem(str(img), "strip-id", f"file name {name!r} must match [A-Za-z0-9_-]+")
        )
        return None
    if strip in scan.strips:
        scan.problems.append(
            Problem(
                str(img),
                "unique-acquisition",
                f"image id {strip} is taken (two files named {name!r}, or a clash of names "
                "with '-'); rename one",
                strip,
                1,
            )
        )
        return None
    scan.strips.add(strip)
    label = "good" if img.parent.name == "good" else "defect"
    return ImageAcquisition(strip, 1, label, img, (img,), part=part)


def _masks(gt: Path, found: dict[str, ImageAcquisition], scan: RawScan) -> dict[str, Path]:
    """strip -> mask file; a mask must name an image of test/<defect type>/."""
    by_name = {(a.folder.parent.name, a.folder.stem): a for a in found.values()}
    out: dict[str, Path] = {}
    for folder in _class_folders(gt, scan):
        if folder.name == "good":
            scan.problems.append(
                Problem(str(folder), "images-layout", "good images have no masks; remove it")
            )
            continue
        for f in _files(folder, MASK_RE, "a mask <name>_mask.png", scan):
            name = MASK_RE.match(f.name).group(1)
            acq = by_name.get((folder.name, name))
            if acq is None or acq.part != "test":
                scan.problems.append(
                    Problem(
                        str(f),
                        "mask-without-image",
                        f"has no image test/{folder.name}/{name}.png (or .tif); a mask belongs "
                        f"to the image of the same name: ground_truth/<defect>/<name>_mask.png "
                        "marks test/<defect>/<name>.png",
                    )
                )
            elif acq.strip in out:
                scan.problems.append(
                    Problem(str(f), "unique-mask", f"{acq.strip} also has {out[acq.strip].name}")
                )
            else:
                out[acq.strip] = f
    return out


def check_headers(
    todo: list[ImageAcquisition],
    fmt: tuple[int, int, str] | None,
    problems: list[Problem],
    max_pixels: int,
) -> dict[tuple[str, int], FrameHeader]:
    """One header per image (its own size: sizes may differ); masks must match their image.

    `fmt` is what the store holds: (H, W) the largest size it takes, and the dtype. Reads no
    pixels. Broken rules become problems. `max_pixels` (acquisition.max_pixels) bounds each
    image and, for a new store, the frame of the largest height and width it will be sized to.
    """
    out = {}
    dtype = fmt[2] if fmt else None
    largest = (0, 0)  # (H, W) of the new store's frames, from the images accepted so far
    for acq in todo:
        path = acq.frames[0]
        try:
            h = read_header(path)
            check_pixels(path, h, max_pixels)
            grown = (max(largest[0], h.height), max(largest[1], h.width))
            if not fmt and grown[0] * grown[1] > max_pixels:
                raise FrameError(
                    path,
                    "max-pixels",
                    f"is {h.height}x{h.width}: with the images before it the store's frames "
                    f"(the largest height and width) would be {grown[0]}x{grown[1]}, over "
                    f"{max_pixels:,} pixels (acquisition.max_pixels in the pipeline)",
                )
            if h.channels not in (1, 3):
                raise FrameError(
                    path,
                    "single-channel",
                    f"has {h.channels} channels; images must be grayscale or RGB",
                )
            if h.dtype not in ("uint8", "uint16"):
                raise FrameError(path, "bit-depth", f"is {h.dtype}; images must be 8- or 16-bit")
            dtype = dtype or h.dtype
            if h.dtype != dtype:
                raise FrameError(
                    path,
                    "same-format",
                    f"is {h.dtype}, but this workspace holds {dtype} images (one bit depth per "
                    "workspace)",
                )
            if fmt and (h.height > fmt[0] or h.width > fmt[1]):
                raise FrameError(
                    path,
                    "image-size",
                    f"is {h.height}x{h.width}; this workspace holds images up to "
                    f"{fmt[0]}x{fmt[1]} (sized at its first ingest): use a new workspace",
                )
            if acq.mask is not None:
                _check_mask(acq.mask, h)
            out[(acq.strip, acq.run)] = h
            largest = grown
        except FrameError as e:
            problems.append(Problem(e.path, e.rule, e.message, acq.strip, acq.run))
    return out


def _check_mask(path: Path, image: FrameHeader) -> None:
    m = read_header(path)
    if m.channels != 1 or m.dtype not in ("uint8", "uint16"):
        raise FrameError(
            path,
            "mask-format",
            f"is {m.channels}-channel {m.dtype}; masks are 8- or 16-bit grayscale",
        )
    if (m.height, m.width) != (image.height, image.width):
        raise FrameError(
            path,
            "mask-size",
            f"is {m.height}x{m.width}, its image {image.height}x{image.width}; a mask has its "
            "image's size",
        )


def write_test_kit(ws: Path, scan: RawScan) -> None:
    """manifests/test_kit.txt: the ingested images of test/, the test kit `split` uses."""
    acqs = manifest.read(ws, manifest.ACQUISITIONS)
    path = paths.kit_file(ws)
    lines = path.read_text().splitlines() if path.exists() else []
    old = {s.strip() for s in lines if s.strip() and not s.startswith("#")}
    test = {a.strip for a in scan.acquisitions if a.part == "test"}
    kit = sorted((old | test) & set(acqs["strip"]))
    if not kit:
        return  # no test/ images: split draws its test kit as for strips
    text = "# the images of test/ (written by ingest --format images): the test kit of split\n"
    text += "".join(f"{s}\n" for s in kit)
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text.encode())


def check_workspace(ws: Path, layout: LayoutConfig, source: str) -> None:
    """Before anything is written: image folders are cut by a grid or a resize (strip layouts
    need rank images they lack), into a workspace of image folders."""
    if layout.mode not in IMAGE_LAYOUTS:
        raise ValueError(
            f"{source or 'the pipeline'}: layout.mode is {layout.mode}; image folders need "
            f"layout.mode {' or '.join(IMAGE_LAYOUTS)} (e.g. --pipeline images)"
        )
    path = store.store_path(ws)
    root = store.open_root(ws, mode="r") if path.exists() else {}
    if "frames" in root and "masks" not in root:
        raise store.StoreError(
            f"{path} holds strip acquisitions; an image folder needs a workspace of its own"
        )
