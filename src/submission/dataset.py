"""
XCS224N's submission.dataset: src/dataset.py with XCS224N's span corruption by default (truncation to
[4, int(block_size*3/4)], `prefix ⁇ suffix ⁇ masked_content ⁇ □□□`; Fall 2025's RoPE cohort:
course="xcs224n-2025") and XCS's argument order NameDataset(data, pretraining_dataset).

    cd src/submission && python dataset.py namedata|charcorruption    (as the handout says)
"""
import os
import sys

if __name__ == "__main__":  # run as a script from src/submission: import src/dataset.py, not this file
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import dataset  # noqa: E402
from course import XCS224N  # noqa: E402
from dataset import MASK_CHAR, PAD_CHAR  # noqa: E402,F401
from utils import run_script  # noqa: E402


class CharCorruptionDataset(dataset.CharCorruptionDataset):
    def __init__(self, data, block_size, course=XCS224N):
        super().__init__(data, block_size, course)


class NameDataset(dataset.NameDataset):
    """NameDataset(data, pretraining_dataset) as XCS224N writes it; CS224N's order works too."""

    def __init__(self, data, pretraining_dataset, source="finetuning data"):
        if isinstance(pretraining_dataset, str):  # CS224N's NameDataset(pretraining_dataset, data)
            data, pretraining_dataset = pretraining_dataset, data
        super().__init__(pretraining_dataset, data, source)


if __name__ == "__main__":
    run_script(dataset.main, course=XCS224N.name)
