"""Contact sheet of one acquisition: the strip with its crop boxes, and its patches.

So a person can check the layout by eye: boxes coloured by region as in the paper's Figure 5
(R0 red, R1 blue, R2 green, R3 yellow), and every patch labelled with its vial and region.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import zarr

from bfsdata.config.pipeline import kind_rank
from bfsdata.imaging.crop import to_uint8
from bfsdata.store import location as store
from bfsdata.workspace import manifest, paths
from bfsdata.workspace.writes import png_bytes, write_atomic

REGION_BGR = ((40, 40, 230), (230, 120, 40), (60, 200, 60), (40, 220, 230))  # R0..R3
TILE = 128  # px per patch in the sheet
STRIP_HEIGHT = 640  # px of the strip picture in the sheet


def contact_sheet(workspace: Path, acq: int, kind: str = "frame", frame: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 BGR sheet for acquisition row `acq`."""
    ws = Path(workspace)
    rows = manifest.read(ws, manifest.PATCHES)
    rows = rows[(rows["acq"] == acq) & (rows["kind"] == kind)]
    if kind == "frame":
        rows = rows[rows["frame"] == frame]
    if rows.empty:
        raise ValueError(
            f"no {kind} patches for acquisition {acq}"
            + (f" frame {frame}" if kind == "frame" else "")
            + f" in {ws}; run `bfsdata patch` first, or pick another --acq/--kind/--frame"
        )
    root = store.open_root(ws, mode="r")
    rows = rows.sort_values(["vial", "region"])
    patches = root["patches"].get_orthogonal_selection((rows["patch"].to_numpy(),))
    left = _strip_picture(source_image(root, acq, kind, frame), rows)
    right = _patch_grid(patches, rows)
    h = max(left.shape[0], right.shape[0])
    sheet = np.full((h, left.shape[1] + right.shape[1] + 16, 3), 32, np.uint8)
    sheet[: left.shape[0], : left.shape[1]] = left
    sheet[: right.shape[0], left.shape[1] + 16 :] = right
    return sheet


def write_contact_sheet(
    workspace: Path, out: Path | None, acq: int, kind: str = "frame", frame: int = 0
) -> Path:
    """The sheet as a PNG at `out`, by default previews/acq-<acq>-<kind>.png."""
    sheet = contact_sheet(workspace, acq, kind, frame)
    out = Path(out) if out is not None else paths.preview_file(workspace, acq, kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, png_bytes(sheet, out))
    return out


def write_first_preview(workspace: Path) -> Path:
    """previews/acq-<n>.png: the sheet of the first patch's acquisition and image, something
    that was cut (`patch --preview`)."""
    first = manifest.read(Path(workspace), manifest.PATCHES).iloc[0]
    out = paths.preview_file(workspace, int(first.acq))
    return write_contact_sheet(
        workspace, out, acq=int(first.acq), kind=str(first.kind), frame=int(max(first.frame, 0))
    )


def _strip_picture(image: np.ndarray, rows) -> np.ndarray:
    scale = STRIP_HEIGHT / image.shape[0]
    pic = cv2.cvtColor(
        cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
        cv2.COLOR_GRAY2BGR,
    )
    for r in rows.itertuples(index=False):
        p0 = (round(r.x0 * scale), round(r.y0 * scale))
        p1 = (round(r.x1 * scale) - 1, round(r.y1 * scale) - 1)
        colour = REGION_BGR[int(r.region) % len(REGION_BGR)]
        cv2.rectangle(pic, p0, p1, colour, 1)
        cv2.putText(
            pic,
            f"{r.vial}/R{r.region}",
            (p0[0] + 3, p0[1] + 14),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            colour,
            1,
            cv2.LINE_AA,
        )
    r0 = rows.iloc[0]
    cv2.putText(
        pic,
        f"{r0.strip} run {r0.run}  vial 1 R0 offset dy={r0.dy:+.1f} dx={r0.dx:+.1f} px"
        f"  rotation {r0.angle:+.2f} deg",
        (6, pic.shape[0] - 8),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return pic


def _patch_grid(patches: np.ndarray, rows) -> np.ndarray:
    """Regions down, vials across, like the strip itself."""
    vials, regions = int(rows["vial"].max()), int(rows["region"].max()) + 1
    grid = np.full((regions * (TILE + 4), vials * (TILE + 4), 3), 32, np.uint8)
    for p, r in zip(patches, rows.itertuples(index=False), strict=True):
        tile = cv2.cvtColor(
            cv2.resize(
                p,
                (TILE, TILE),
                interpolation=cv2.INTER_AREA if p.shape[0] > TILE else cv2.INTER_NEAREST,
            ),
            cv2.COLOR_GRAY2BGR,
        )
        colour = REGION_BGR[int(r.region) % len(REGION_BGR)]
        cv2.rectangle(tile, (0, 0), (TILE - 1, TILE - 1), colour, 2)
        here = not pd.isna(r.defect_here) and bool(r.defect_here)
        label = f"v{r.vial} R{r.region}" + (" defect" if here else "")
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
        y, x = int(r.region) * (TILE + 4), (int(r.vial) - 1) * (TILE + 4)
        grid[y : y + TILE, x : x + TILE] = tile
    return grid


def source_image(root: zarr.Group, acq: int, kind: str, frame: int) -> np.ndarray:
    """The image of one acquisition that patches of (kind, frame) were cut from, (H, W) uint8."""
    if kind == "frame":
        return to_uint8(root["frames"][acq, frame])
    ranks = list(root.attrs["ranks"])
    return to_uint8(root["rank"][acq, ranks.index(kind_rank(kind, ranks))])
