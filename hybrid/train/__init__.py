"""Training: config dataclasses and profiles, the per-worker loop, the Ray Train driver.

Public API: `train(config) -> Path`, `TrainConfig`, `load_profile(name)`.
"""

from hybrid.train.config import TrainConfig, load_profile, profile_names
from hybrid.train.trainer import train

__all__ = ["TrainConfig", "load_profile", "profile_names", "train"]
