"""Tests for src/dataset.py: the vocabulary, CharCorruptionDataset (also with the
XCS224N profile), NameDataset and the `python src/dataset.py` demo."""
import os
import random
import statistics
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings, strategies as st

from dataset import MASK_CHAR, PAD_CHAR, CharCorruptionDataset, NameDataset
from utils import UserError
from make_synthetic_corpus import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAD, MASK = "\u25A1", "\u2047"  # the assignment's characters, spelled out independently
# the span corruption per course, spelled out independently of src/course.py:
# (longest truncation of a block, number of masks in an example)
COURSES = {"cs224n": (lambda block_size: int(block_size * 7 / 8), 2),
           "xcs224n": (lambda block_size: int(block_size * 3 / 4), 3)}
each_course = pytest.mark.parametrize("course", list(COURSES))


def decode(ds, ids):
    return "".join(ds.itos[int(i)] for i in ids)


def unpadded(ds, x, y):
    """The corrupted string s = x + y[-1:], with its trailing PADs removed."""
    return decode(ds, torch.cat([x, y[-1:]])).rstrip(PAD)


def parts(ds, x, y):
    """(prefix, suffix, masked_content) of s = prefix ⁇ suffix ⁇ masked_content (xcs224n: then ⁇)."""
    pieces = unpadded(ds, x, y).split(MASK)
    assert len(pieces) == COURSES[ds.course.name][1] + 1, pieces
    assert pieces[3:] in ([], [""]), "nothing after the third mask"
    return tuple(pieces[:3])


# -----------------------------------------------------------------------------
# vocabulary

def test_vocabulary_layout():
    corpus = "Zeta was born in Quux.\nalpha beta!\n\nzeta 42 ?\n"
    ds = CharCorruptionDataset(corpus, 32)
    assert PAD_CHAR == PAD and MASK_CHAR == MASK
    assert ds.PAD_CHAR == PAD and ds.MASK_CHAR == MASK
    assert ds.itos == [PAD, MASK] + sorted(set(corpus))
    assert ds.stoi[PAD] == 0 and ds.stoi[MASK] == 1
    assert ds.vocab_size == len(set(corpus)) + 2 == len(ds.itos)
    assert all(ds.itos[i] == c and ds.stoi[c] == i for i, c in enumerate(ds.itos))
    assert ds.block_size == 32


@pytest.mark.parametrize("char,name", [(PAD, "PAD"), (MASK, "MASK")])
def test_reserved_characters_refused(char, name):
    corpus = f"a clean first line\nsecond line with {char} inside\n"
    with pytest.raises(UserError) as info:
        CharCorruptionDataset(corpus, 32)
    message = str(info.value)
    assert char in message or f"U+{ord(char):04X}" in message
    assert "line 2" in message


# -----------------------------------------------------------------------------
# CharCorruptionDataset

def check_item(ds, document, x, y):
    """The assignment's span-corruption properties (xcs224n's for that course) for one item of one document."""
    bs = ds.block_size
    assert x.dtype == torch.long and y.dtype == torch.long
    assert x.shape == (bs - 1,) and y.shape == (bs - 1,)
    assert torch.equal(x[1:], y[:-1])
    s = decode(ds, torch.cat([x, y[-1:]]))
    core = s.rstrip(PAD)
    assert PAD not in core  # PADs only at the end
    longest, masks = COURSES[ds.course.name]
    assert core.count(MASK) == masks
    prefix, suffix, masked = parts(ds, x, y)
    truncated = prefix + masked + suffix
    assert document.startswith(truncated)
    assert min(4, len(document)) <= len(truncated) <= longest(bs)
    return truncated, masked


@each_course
def test_documents_are_non_empty_lines(course):
    corpus = "first doc\n\nsecond doc\n\n\nthird\n"
    ds = CharCorruptionDataset(corpus, 32, course)
    assert len(ds) == 3
    random.seed(0)
    for idx, doc in enumerate(["first doc", "second doc", "third"]):
        for _ in range(20):
            check_item(ds, doc, *ds[idx])


@each_course
def test_properties_on_a_long_document(course):
    doc = "".join(random.Random(1).choice("abcdefgh ") for _ in range(400))
    ds = CharCorruptionDataset(doc + "\n", 128, course)
    random.seed(2)
    for _ in range(300):
        check_item(ds, doc, *ds[0])


@each_course
@pytest.mark.parametrize("block_size", [32, 128])
def test_truncation_covers_the_whole_range(block_size, course):
    doc = "".join(random.Random(3).choice("xyz. ") for _ in range(300))
    ds = CharCorruptionDataset(doc, block_size, course)
    longest = COURSES[course][0](block_size)
    random.seed(4)
    lengths = {len(check_item(ds, doc, *ds[0])[0]) for _ in range(3000)}
    assert lengths == set(range(4, longest + 1))


@each_course
def test_short_documents_are_used_whole(course):
    ds = CharCorruptionDataset("abc\nxy\nq\n", 16, course)
    random.seed(5)
    for idx, doc in enumerate(["abc", "xy", "q"]):
        for _ in range(30):
            truncated, _ = check_item(ds, doc, *ds[idx])
            assert truncated == doc


@each_course
def test_document_shorter_than_the_drawn_length_is_used_whole(course):
    doc = "0123456789abcdefghij"  # 20 characters, block 128: drawn length uniform in [4, 112] (xcs224n: 96)
    ds = CharCorruptionDataset(doc, 128, course)
    longest = COURSES[course][0](128)
    random.seed(6)
    lengths = [len(check_item(ds, doc, *ds[0])[0]) for _ in range(2000)]
    assert max(lengths) == 20 and min(lengths) == 4
    expected_whole = (longest - 20 + 1) / (longest - 4 + 1)
    assert abs(lengths.count(20) / len(lengths) - expected_whole) < 0.04


@each_course
def test_masked_length_mean_is_a_quarter_and_varies(course):
    doc = "".join(random.Random(7).choice("abcdefghij ") for _ in range(300))
    ds = CharCorruptionDataset(doc, 128, course)
    random.seed(8)
    ratios, masked_lengths, truncated_lengths = [], [], []
    for _ in range(4000):
        truncated, masked = check_item(ds, doc, *ds[0])
        ratios.append(len(masked) / len(truncated))
        masked_lengths.append(len(masked))
        truncated_lengths.append(len(truncated))
    assert abs(statistics.mean(ratios) - 0.25) < 0.02
    assert abs(statistics.mean(masked_lengths) / statistics.mean(truncated_lengths) - 0.25) < 0.02
    # the masked length is random, also for a fixed truncated length
    at_longest = [m for m, t in zip(masked_lengths, truncated_lengths) if t == COURSES[course][0](128)]
    assert len(set(at_longest)) > 5
    assert len(set(masked_lengths)) > 20


@each_course
def test_items_vary_between_calls(course):
    doc = "The quick brown fox jumps over the lazy dog, again and again and again."
    ds = CharCorruptionDataset(doc, 64, course)
    random.seed(9)
    seen = {tuple(ds[0][0].tolist()) for _ in range(50)}
    assert len(seen) > 10


@each_course
def test_reproducible_under_random_seed(course):
    doc = "The quick brown fox jumps over the lazy dog, again and again and again."
    ds = CharCorruptionDataset(doc, 64, course)
    random.seed(10)
    first = [ds[0] for _ in range(5)]
    random.seed(10)
    second = [ds[0] for _ in range(5)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))


document_text = st.text(alphabet="ab .,Z?", min_size=1, max_size=300)


@each_course
@settings(max_examples=60, deadline=None)
@given(doc=document_text, block_size=st.integers(8, 256), seed=st.integers(0, 2**32 - 1))
def test_corruption_properties_hypothesis(course, doc, block_size, seed):
    ds = CharCorruptionDataset(doc + "\n", block_size, course)
    assert len(ds) == 1
    random.seed(seed)
    for _ in range(5):
        check_item(ds, doc, *ds[0])


@each_course
@settings(max_examples=30, deadline=None)
@given(docs=st.lists(document_text, min_size=1, max_size=5), block_size=st.integers(8, 64))
def test_every_document_is_an_item_hypothesis(course, docs, block_size):
    ds = CharCorruptionDataset("\n\n".join(docs), block_size, course)
    assert len(ds) == len(docs)
    for idx, doc in enumerate(docs):
        check_item(ds, doc, *ds[idx])


def test_empty_corpus_refused():
    with pytest.raises(UserError):
        CharCorruptionDataset("\n\n", 32)


# -----------------------------------------------------------------------------
# NameDataset

CORPUS = "Where was Ann Lee born?\tParis London Rome, Oslo. By\nabcdefghijklmnopqrstuvwxyz\n"


@pytest.fixture
def pretrain():
    return CharCorruptionDataset(CORPUS, 48)


def expected_name_item(question, answer, block_size):
    full = question + MASK + answer + MASK
    full += PAD * (block_size - len(full))
    x = full[:-1]
    y = PAD * (len(question) - 1) + full[len(question):]
    return x, y


def test_name_dataset_layout(pretrain):
    pairs = [("Where was Ann Lee born?", "Paris"), ("Where was Bo born?", "Rome"), ("Where was x born?", "Oslo")]
    data = "".join(f"{q}\t{a}\n" for q, a in pairs)
    ds = NameDataset(pretrain, data)
    assert len(ds) == 3
    assert ds.block_size == 48 and ds.stoi is pretrain.stoi and ds.itos is pretrain.itos
    assert ds.vocab_size == pretrain.vocab_size
    for idx, (q, a) in enumerate(pairs):
        x, y = ds[idx]
        assert x.dtype == torch.long and y.dtype == torch.long
        assert x.shape == (47,) and y.shape == (47,)
        ex, ey = expected_name_item(q, a, 48)
        assert decode(ds, x) == ex and decode(ds, y) == ey
        # the loss only sees the answer: PAD (id 0) targets over the question
        assert (y[:len(q) - 1] == 0).all()
        assert torch.equal(x[len(q):], y[len(q) - 1:-1])
        assert decode(ds, y[len(q) - 1:]).rstrip(PAD) == MASK + a + MASK


def test_name_dataset_full_block(pretrain):
    q, a = "Where was Ann Lee born?", "Paris London Rome, Oslo."[:48 - 2 - 23]
    assert len(q) + len(a) + 2 == 48
    x, y = NameDataset(pretrain, f"{q}\t{a}\n")[0]
    ex, ey = expected_name_item(q, a, 48)
    assert decode(pretrain, x) == ex and decode(pretrain, y) == ey
    assert PAD not in ex


def test_blank_lines_and_crlf(pretrain):
    data = "\r\n  \nWhere was Bo born?\tRome\r\n\r\n\t\nWhere was x born?\tOslo\r\n"
    ds = NameDataset(pretrain, data)
    assert len(ds) == 2
    x, y = ds[0]
    ex, ey = expected_name_item("Where was Bo born?", "Rome", 48)
    assert decode(ds, x) == ex and decode(ds, y) == ey
    assert "\r" not in decode(ds, x)


@pytest.mark.parametrize("bad,words", [
    ("Where was Bo born? Rome", ["tab"]),
    ("Where was Bo born?\tRome\tParis", ["3"]),
    ("Where was B\u00f6 born?\tRome", ["\u00f6"]),
    ("Where was Bo born?\tRome Rome Rome Rome Rome Rome Rome", ["long"]),
])
def test_bad_lines_are_named(pretrain, bad, words):
    data = "Where was x born?\tOslo\n\n" + bad + "\nWhere was Bo born?\tRome\n"
    with pytest.raises(UserError) as info:
        NameDataset(pretrain, data)
    message = str(info.value)
    assert "line 3" in message  # the blank line 2 counts
    for word in words:
        assert word in message


def test_no_question_lines_refused(pretrain):
    with pytest.raises(UserError):
        NameDataset(pretrain, "\n \n")


# -----------------------------------------------------------------------------
# the demo

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("syn")), n_people=40, seed=0)


def run_demo(*args):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, os.path.join(ROOT, "src", "dataset.py"), *args],
                          capture_output=True, text=True, encoding="utf-8", env=env, timeout=120)


def test_demo_cli(synthetic):
    r = run_demo("namedata", "--corpus_path", synthetic["wiki"], "--finetune_corpus_path", synthetic["train"])
    assert r.returncode == 0, r.stderr
    xs = [line[3:] for line in r.stdout.splitlines() if line.startswith("x: ")]
    ys = [line[3:] for line in r.stdout.splitlines() if line.startswith("y: ")]
    with open(synthetic["train"], encoding="utf-8") as f:
        first = f.readline().rstrip("\n").split("\t")
    assert len(xs) == len(ys) >= 1
    ex, ey = expected_name_item(first[0], first[1], 128)
    assert xs[0] == ex and ys[0] == ey

    r = run_demo("charcorruption", "--corpus_path", synthetic["wiki"])
    assert r.returncode == 0, r.stderr
    xs = [line[3:] for line in r.stdout.splitlines() if line.startswith("x: ")]
    ys = [line[3:] for line in r.stdout.splitlines() if line.startswith("y: ")]
    assert len(xs) == len(ys) >= 1
    for x, y in zip(xs, ys):
        assert len(x) == len(y) == 127 and x[1:] == y[:-1]
        assert (x + y[-1]).rstrip(PAD).count(MASK) == 2


def test_demo_cli_error(tmp_path):
    r = run_demo("charcorruption", "--corpus_path", str(tmp_path / "missing.txt"))
    assert r.returncode != 0
    assert r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr


# -----------------------------------------------------------------------------
# the real data, where ../shared/data has it

REAL = os.path.join(os.path.dirname(ROOT), "shared", "data")
need_real = pytest.mark.skipif(not all(os.path.isfile(os.path.join(REAL, f)) for f in
                                       ("wiki.txt", "birth_places_train.tsv", "birth_dev.tsv")),
                               reason="real data not in ../shared/data")


@need_real
def test_real_data_vocabulary_and_finetuning_files():
    from utils import read_text
    wiki = CharCorruptionDataset(read_text(os.path.join(REAL, "wiki.txt")), 128)
    assert wiki.vocab_size == 256  # the assignment's vocabulary size on the real wiki.txt
    assert len(wiki) == 2937  # the recipe's len(pretrain_dataset) (the course's)
    train = NameDataset(wiki, read_text(os.path.join(REAL, "birth_places_train.tsv")))
    dev = NameDataset(wiki, read_text(os.path.join(REAL, "birth_dev.tsv")))
    assert len(train) == 2000 and len(dev) == 500
    x, y = train[0]
    assert x.shape == y.shape == (127,)
