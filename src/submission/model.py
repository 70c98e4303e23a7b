"""XCS224N's submission.model: src/model.py."""
from model import GPT, Block, DownProjectBlock, GPTConfig, UpProjectBlock  # noqa: F401
