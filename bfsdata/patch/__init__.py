"""`bfsdata patch`: cut vials x regions of every frame and rank image into patches."""

from bfsdata.patch.stage import PatchSummary, patch

__all__ = ["PatchSummary", "patch"]
