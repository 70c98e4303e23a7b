"""
XCS224N's `submission` package: the names its handout and grader.py use, over this project's modules, with
the XCS224N recipe (course.XCS224N) as the default.

    cd src && python grader.py                               # the course's autograder; data in src/data/
    cd src/submission && python dataset.py charcorruption    # the handout's look at the examples
"""
import os
import sys

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # our modules import each other flat, from src/
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from .attention import CausalSelfAttention, SynthesizerAttention  # noqa: E402
from .dataset import CharCorruptionDataset, NameDataset  # noqa: E402
from .helper import (finetune, initialize_rope_model, initialize_synthesizer_model,  # noqa: E402
                     initialize_vanilla_model, pretrain, train)
from .model import GPT, GPTConfig  # noqa: E402
from .trainer import Trainer, TrainerConfig  # noqa: E402
from .utils import evaluate_places, sample, set_seed  # noqa: E402
