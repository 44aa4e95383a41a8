"""`bfsdata train`: the GAN fed from the store through the manifest (TensorFlow on first use)."""

from bfsdata.train.stage import TrainSummary, train

__all__ = ["TrainSummary", "train"]
