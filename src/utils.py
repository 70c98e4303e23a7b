"""
Small shared helpers: seeding, reading and writing user files safely, the course's sample() decoder,
evaluate_places, and device resolution.
"""
import os
import random
import sys

import numpy as np
import torch
import torch.nn.functional as F


class UserError(Exception):
    """A problem with the user's input; the CLI prints it as one line and exits non-zero."""


def run_script(main, *args, **kwargs):
    """A script's main(); a UserError ends the script with one line, `error: ...`, never a traceback."""
    try:
        return main(*args, **kwargs)
    except UserError as e:
        sys.exit(f"error: {e}")


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def read_text(path, what="file"):
    """Whole text of a UTF-8 file, BOM dropped and CRLF/CR turned into LF."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} is a directory, not a file: {path}") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UserError(f"{what} {path} is not UTF-8 text (bad byte at line {line})") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def check_output_dir(path, what="output file"):
    """UserError unless the directory that path would be written into exists."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"the directory of the {what} {path} does not exist: {directory}")


def atomic_write_text(path, text):
    """Write text via a temporary file and a rename: a crash, a full disk or Ctrl-C never leaves half a file."""
    check_output_dir(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise UserError(f"cannot write {path}: {e.strerror or e}") from None
        raise


@torch.no_grad()
def sample(model, x, steps, temperature=1.0, sample=False, top_k=None):
    """The course's decoder: extend the token ids x (B, T) by `steps` tokens, one full forward pass per token
    on the context cropped to what the model accepts; greedy when sample=False (decoding.py: the fast one)."""
    model.eval()
    max_len = getattr(model, "max_len", model.get_block_size())
    for _ in range(steps):
        logits, _ = model(x if x.size(1) <= max_len else x[:, -max_len:])
        logits = logits[:, -1, :].float() / temperature
        if top_k is not None:
            kth = torch.topk(logits, top_k).values[:, [-1]]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if sample:
            next_id = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
        else:
            next_id = logits.argmax(dim=-1, keepdim=True)
        x = torch.cat((x, next_id), dim=1)
    return x


def parse_qa(text, source, answers=None):
    """[(line number, question, answer or None)] of the non-blank lines of a question<TAB>answer text (or questions
    alone, as test inputs are, on every line alike); answers=True refuses questions alone. Errors name the line."""
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) > 2:
            raise UserError(f"{source} line {number} has {len(fields)} tab-separated fields, expected 2 "
                            f"(question<TAB>answer): {line[:60]!r}")
        if answers and len(fields) == 1:
            raise UserError(f"{source} line {number} has no tab between question and answer: {line[:60]!r}")
        if rows and (len(fields) == 2) != (rows[0][2] is not None):
            raise UserError(f"{source} line {number} has " + ("no answer (no tab)" if len(fields) < 2 else
                            "an answer (a tab)") + f", unlike line {rows[0][0]}")
        rows.append((number, fields[0], fields[1].strip() if len(fields) == 2 else None))
    return rows


def read_qa(path, what="question file", answers=None):
    """parse_qa of the file at path (read with read_text's checks)."""
    return parse_qa(read_text(path, what), path, answers)


def count_correct(rows, predicted_places, source):
    """(total, correct) of predicted_places against the answers of read_qa rows; (0, 0) without answers."""
    if not rows or rows[0][2] is None:
        return 0, 0
    if len(rows) != len(predicted_places):
        raise UserError(f"{source} has {len(rows)} questions but {len(predicted_places)} predictions were given")
    return len(rows), sum(answer == pred for (_, _, answer), pred in zip(rows, predicted_places))


def evaluate_places(filepath, predicted_places):
    """(total, correct) of predicted_places against a question<TAB>answer file's answers; (0, 0) without any."""
    return count_correct(read_qa(filepath, "evaluation file"), predicted_places, filepath)


def resolve_device(name="auto"):
    """torch.device for 'auto' (CUDA, else MPS where it works, else CPU) or an explicit name."""
    mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available")
    if name == "mps" and not mps:
        raise UserError("--device mps was asked for but MPS is not available")
    return torch.device(name)
