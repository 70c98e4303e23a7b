"""Tests for src/utils.py: evaluate_places, read_text, set_seed, sample."""
import os
import random

import numpy as np
import pytest
import torch

from model import GPT, GPTConfig
import utils
from utils import UserError, atomic_write_text, evaluate_places, read_text, sample, set_seed


pytestmark = pytest.mark.usefixtures("one_thread")


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


# -----------------------------------------------------------------------------
# evaluate_places

def test_evaluate_places_counts(tmp_path):
    path = write(tmp_path / "dev.tsv", "Where was A born?\tLondon\nWhere was B born?\tParis\n"
                                       "Where was C born?\tNew York City\n")
    assert evaluate_places(path, ["London", "Rome", "New York City"]) == (3, 2)
    assert evaluate_places(path, ["x", "y", "z"]) == (3, 0)
    assert evaluate_places(path, ["London", "Paris", "New York City"]) == (3, 3)
    # exact match: no case folding, no partial credit
    assert evaluate_places(path, ["london", "Paris ", "New York"]) == (3, 0)


def test_evaluate_places_crlf_bom_and_blank_lines(tmp_path):
    path = write(tmp_path / "dev.tsv", b"\xef\xbb\xbfWhere was A born?\tLondon\r\n\r\nWhere was B born?\tParis\r\n")
    assert evaluate_places(path, ["London", "Paris"]) == (2, 2)


def test_evaluate_places_without_answers(tmp_path):
    path = write(tmp_path / "test_inputs.tsv", "Where was A born?\nWhere was B born?\n")
    assert evaluate_places(path, ["London", "Paris"]) == (0, 0)


def test_evaluate_places_count_mismatch(tmp_path):
    path = write(tmp_path / "dev.tsv", "Where was A born?\tLondon\nWhere was B born?\tParis\n")
    with pytest.raises(UserError) as info:
        evaluate_places(path, ["London"])
    assert "2" in str(info.value) and "1" in str(info.value)
    with pytest.raises(UserError):
        evaluate_places(path, ["London", "Paris", "Rome"])


def test_evaluate_places_missing_file(tmp_path):
    with pytest.raises(UserError):
        evaluate_places(str(tmp_path / "nope.tsv"), [])


# -----------------------------------------------------------------------------
# read_text

def test_read_text_normalises(tmp_path):
    assert read_text(write(tmp_path / "a", b"\xef\xbb\xbfone\r\ntwo\r\nthree")) == "one\ntwo\nthree"
    assert read_text(write(tmp_path / "b", b"one\rtwo\n")) == "one\ntwo\n"
    assert read_text(write(tmp_path / "c", "caf\u00e9 \u25a1\n")) == "caf\u00e9 \u25a1\n"
    assert read_text(write(tmp_path / "d", b"")) == ""
    # a BOM is dropped only at the start
    assert read_text(write(tmp_path / "e", "a\ufeffb")) == "a\ufeffb"


def test_read_text_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "latin1.txt", "first\nsecond\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError) as info:
        read_text(path, "pretraining corpus")
    message = str(info.value)
    assert "line 3" in message and "UTF-8" in message and "latin1.txt" in message


def test_read_text_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError) as info:
        read_text(str(tmp_path / "missing.txt"), "pretraining corpus")
    assert "missing.txt" in str(info.value)
    with pytest.raises(UserError):
        read_text(str(tmp_path), "pretraining corpus")


# -----------------------------------------------------------------------------
# set_seed

def draws():
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist(),
            GPT(GPTConfig(10, 8, n_layer=1, n_head=2, n_embd=8)).tok_emb.weight.detach().clone())


def test_set_seed_is_reproducible():
    set_seed(123)
    a = draws()
    set_seed(123)
    b = draws()
    set_seed(124)
    c = draws()
    assert a[:3] == b[:3] and torch.equal(a[3], b[3])
    assert a[0] != c[0] and a[1] != c[1] and a[2] != c[2] and not torch.equal(a[3], c[3])


# -----------------------------------------------------------------------------
# sample

def tiny_model(block=16, vocab=11):
    set_seed(0)
    return GPT(GPTConfig(vocab, block, n_layer=2, n_head=2, n_embd=32, embd_pdrop=0.0, resid_pdrop=0.0,
                         attn_pdrop=0.0))


def test_sample_greedy_extends_by_steps():
    model = tiny_model()
    x = torch.tensor([[2, 3, 4, 5, 6], [7, 8, 9, 10, 2]])
    out = sample(model, x, 6, sample=False)
    assert out.shape == (2, 11)
    assert torch.equal(out[:, :5], x)
    # every new token is the argmax of the model's prediction on what came before
    with torch.no_grad():
        for t in range(5, 11):
            logits, _ = model(out[:, :t])
            assert torch.equal(out[:, t], logits[:, -1].argmax(-1))
    assert torch.equal(sample(model, x, 6, sample=False), out)
    assert sample(model, x, 0).shape == x.shape


def test_sample_crops_the_context_to_the_block():
    model = tiny_model(block=8)
    x = torch.tensor([[2, 3, 4, 5, 6, 7]])
    out = sample(model, x, 10, sample=False)
    assert out.shape == (1, 16) and torch.equal(out[:, :6], x)
    with torch.no_grad():
        for t in range(6, 16):
            logits, _ = model(out[:, max(0, t - 8):t])
            assert out[0, t] == logits[0, -1].argmax()


def test_sample_with_sampling_and_top_k():
    model = tiny_model()
    x = torch.tensor([[2, 3]])
    torch.manual_seed(0)
    out = sample(model, x, 5, sample=True, top_k=1)
    assert torch.equal(out, sample(model, x, 5, sample=False))  # top_k=1 is greedy
    torch.manual_seed(0)
    a = sample(model, x, 5, sample=True)
    torch.manual_seed(0)
    b = sample(model, x, 5, sample=True)
    assert torch.equal(a, b) and a.shape == (1, 7)


def test_evaluate_places_line_without_answer_is_named(tmp_path):
    path = write(tmp_path / "dev.tsv", "Where was A born?\tLondon\n\nWhere was B born?\nWhere was C born?\tRome\n")
    with pytest.raises(UserError) as info:
        evaluate_places(path, ["London", "Paris", "Rome"])
    assert "line 3" in str(info.value)


@pytest.mark.parametrize("bad,words", [
    ("Where was B born?\tParis\tRome", ["line 3", "3 tab-separated fields"]),  # extra column
    ("Where was B born?", ["line 3", "no answer"]),  # the first line has one, this one not
])
def test_evaluate_places_malformed_lines_are_named(tmp_path, bad, words):
    path = write(tmp_path / "dev.tsv", f"Where was A born?\tLondon\n\n{bad}\n")
    with pytest.raises(UserError) as info:
        evaluate_places(path, ["London", "Paris"])
    for word in words:
        assert word in str(info.value)


def test_evaluate_places_answer_in_a_questions_only_file_is_named(tmp_path):
    path = write(tmp_path / "test.tsv", "Where was A born?\nWhere was B born?\tParis\n")
    with pytest.raises(UserError) as info:
        evaluate_places(path, ["London", "Paris"])
    assert "line 2" in str(info.value) and "line 1" in str(info.value)


def test_read_text_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path / "secret.txt", "text\n")
    os.chmod(path, 0)
    if os.access(path, os.R_OK):  # root reads it anyway: make open() fail as it would for anyone else

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", path)

        monkeypatch.setattr(utils, "open", refuse, raising=False)
    with pytest.raises(UserError) as info:
        read_text(path, "pretraining corpus")
    message = str(info.value)
    assert "secret.txt" in message and "Permission denied" in message and "\n" not in message


def test_atomic_write_text_on_a_full_disk(tmp_path, monkeypatch):
    """The old file stays whole, no temporary is left, and the reason is one line."""
    path = tmp_path / "out.predictions"
    atomic_write_text(str(path), "old\n")
    real_open = open

    class FullDisk:
        def __init__(self, name, *args, **kwargs):
            self.f = real_open(name, *args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[:3])  # part of it reaches the disk
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(utils, "open", FullDisk, raising=False)
    with pytest.raises(UserError) as info:
        atomic_write_text(str(path), "new\n" * 100)
    assert "No space left on device" in str(info.value) and "out.predictions" in str(info.value)
    assert os.listdir(tmp_path) == ["out.predictions"] and path.read_text() == "old\n"
