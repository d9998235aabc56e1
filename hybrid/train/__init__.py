"""Training: config dataclasses and profiles, the training core (`hybrid.train.core.Trainer`,
no Ray), the Ray Train adapter (`hybrid.train.loop`) and driver (`hybrid.train.trainer`).

Public API: `train(config) -> Path`, `TrainConfig`, `load_profile(name)`, `Trainer`.
"""

from hybrid.train.config import TrainConfig, load_profile, profile_names
from hybrid.train.core import Trainer
from hybrid.train.trainer import train

__all__ = ["TrainConfig", "Trainer", "load_profile", "profile_names", "train"]
