"""Training: the loop, its config, losses, DiffAugment, EMA and checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .diffaugment import diff_augment
from .loop import pick_device, train
from .rundir import load_run_generator

__all__ = ["TrainConfig", "train", "load_run_generator", "diff_augment", "save_checkpoint",
           "load_checkpoint", "pick_device"]
