"""XCS224N's submission.trainer: src/trainer.py."""
from trainer import Trainer, TrainerConfig  # noqa: F401
