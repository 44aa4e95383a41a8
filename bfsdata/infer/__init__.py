"""`bfsdata infer`: decisions and heatmaps for new acquisitions, with a trained model."""

from bfsdata.infer.inputs import InferError
from bfsdata.infer.stage import InferSummary, infer

__all__ = ["InferError", "InferSummary", "infer"]
