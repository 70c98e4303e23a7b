"""XCS224N's submission.utils: src/utils.py."""
from utils import evaluate_places, sample, set_seed  # noqa: F401
