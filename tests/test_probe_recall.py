"""Tests for tools/probe_recall.py: which contexts a params file recalls birth places from."""
import os
import string
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dataset import MASK_CHAR, PAD_CHAR, build_vocab, truncation_range
from model import GPT, config_for_variant
from params import save_params
from probe_recall import QUESTION_SHAPE, main, own_line_prompt, read_people, recall_counts
from utils import UserError, read_text, set_seed
from make_synthetic_corpus import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(ROOT, "tools", "probe_recall.py")
ITOS = [PAD_CHAR, MASK_CHAR] + sorted(set(string.ascii_letters + " .,?"))
STOI = {c: i for i, c in enumerate(ITOS)}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(variant, vocab_size, block_size=32, seed=0, **switches):
    set_seed(seed)
    return GPT(config_for_variant(variant, vocab_size, block_size, n_layer=1, n_head=2, n_embd=16,
                                  embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, **switches))


# -----------------------------------------------------------------------------
# prompts

def test_own_line_prompt_is_the_text_before_the_place():
    line = "Ada Moss. Ada Moss was a painter born in Paris, France, and later worked in Rome ."
    assert own_line_prompt(line, "Ada Moss", "Paris", 112) == "Ada Moss. Ada Moss was a painter born in "
    assert own_line_prompt(line, "Ada Moss", "Rome", 112) == line[:line.index("Rome")]  # first mention
    assert own_line_prompt(line, "Ada Moss", "Paris", line.index("Paris") + 5) is not None  # ends just in time


def test_own_line_prompt_none_when_place_absent_too_far_or_in_the_name_only():
    line = "Ada Moss. Ada Moss was a painter born in Paris, France ."
    assert own_line_prompt(line, "Ada Moss", "Berlin", 112) is None
    assert own_line_prompt(line, "Ada Moss", "Paris", line.index("Paris") + 4) is None  # ends one too late
    assert own_line_prompt(line, "Bob Moss", "Paris", 112) is None  # not Bob's line
    florence = "Florence Hill. She was a nurse born in Rome ."
    assert own_line_prompt(florence, "Florence Hill", "Florence", 112) is None
    assert own_line_prompt("A B. born in A .", "A B", "A", 112) == "A B. born in "


def test_read_people_takes_the_first_n_of_all_files_in_order(tmp_path):
    (tmp_path / "a.tsv").write_text("Where was Ada Moss born?\tParis\n\nWhere was Bo Li born?\tRome\n")
    (tmp_path / "b.tsv").write_text("Where was Cy Day born?\tOslo\nWhere was Di Fox born?\tLima\n")
    paths = [str(tmp_path / "a.tsv"), str(tmp_path / "b.tsv")]
    assert read_people(paths, 3) == [("Where was Ada Moss born?", "Ada Moss", "Paris"),
                                     ("Where was Bo Li born?", "Bo Li", "Rome"),
                                     ("Where was Cy Day born?", "Cy Day", "Oslo")]
    (tmp_path / "c.tsv").write_text("Who was Ada Moss?\tParis\n")
    with pytest.raises(UserError, match="Where was NAME born"):
        read_people([str(tmp_path / "c.tsv")], 3)


# -----------------------------------------------------------------------------
# scoring, with a stand-in model whose answers are known

class AlwaysSays(torch.nn.Module):
    """Stands in for a GPT that names one place whatever it is asked: after a non-letter it starts
    spelling `word`, after a part of it the next letter, after all of it ⁇. Uncached, like the perceiver."""
    supports_kv_cache = False

    def __init__(self, word, max_len=64):
        super().__init__()
        self.word, self.max_len, self.block_size = word, max_len, max_len

    def forward(self, idx, targets=None, kv_cache=None):
        assert idx.size(1) <= self.max_len
        next_ids = []
        for row in idx.tolist():
            text = "".join(ITOS[i] for i in row)
            spelled = text[len(text.rstrip(string.ascii_letters)):]  # the letters at the end
            done = not self.word.startswith(spelled) or spelled == self.word
            next_ids.append(STOI[MASK_CHAR if done else self.word[len(spelled)]])
        logits = F.one_hot(torch.tensor(next_ids), len(ITOS)).float()  # (B, vocab_size)
        return logits[:, None, :].expand(-1, idx.size(1), -1), None  # (B, T, vocab_size)


PEOPLE = [("Ada Moss", "London"), ("Bo Li", "Paris"), ("Cy Day", "London"), ("Di Fox", "Londonderry"),
          ("Ed Orr", "Lond"), ("Flo Ray", "London"), ("Gus Tam", "Rome"), ("Hal Ito", "Oslo")]


def test_a_model_that_always_says_london_recalls_the_londoners():
    prompts = [f"The painter {name} was born in " for name, _ in PEOPLE]
    places = [place for _, place in PEOPLE]
    # Londonderry and Lond are not London: only the whole word counts
    assert recall_counts(AlwaysSays("London"), prompts, places, STOI, ITOS, "cpu") == (3, 8)
    assert recall_counts(AlwaysSays("Rome"), prompts, places, STOI, ITOS, "cpu") == (1, 8)
    assert recall_counts(AlwaysSays("Londonderry"), prompts, places, STOI, ITOS, "cpu") == (1, 8)
    questions = [f"Where was {name} born?" for name, _ in PEOPLE]
    assert recall_counts(AlwaysSays("London"), questions, places, STOI, ITOS, "cpu", question=True) == (3, 8)
    assert recall_counts(AlwaysSays("Lond"), questions, places, STOI, ITOS, "cpu", question=True) == (1, 8)


def test_prompts_that_cannot_be_probed_are_skipped():
    model = AlwaysSays("London", max_len=40)
    prompts = ["Ada Moss. Ada Moss was born in ",  # fits: 31 + 6 + 1 = 38
               None,  # no own line
               "Cy Day. He was a painter born in ",  # 33 + 6 + 1 = 40, just fits
               "Di Fox. He was a painter born in the city of ",  # too long for the place
               "Ed Orr, ein Maler aus \u00d6 "]  # a character outside the vocabulary
    places = ["London", "London", "London", "London", "London"]
    assert recall_counts(model, prompts, places, STOI, ITOS, "cpu") == (2, 2)


# -----------------------------------------------------------------------------
# end to end

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("corpus")), n_people=20, seed=3)


def test_main_runs_on_a_tiny_corpus(tmp_path, corpus, capsys):
    itos = build_vocab(read_text(corpus["wiki"]))[1]
    path = str(tmp_path / "rope.params")
    save_params(tiny_gpt("rope", len(itos), block_size=128), path, itos)
    counts = main([path, corpus["wiki"], corpus["train"], corpus["dev"], "--people", "16", "--device", "cpu"])
    people = read_people([corpus["train"], corpus["dev"]], 16)
    assert len(people) == 16
    lines = read_text(corpus["wiki"]).split("\n")
    longest = truncation_range(128)[1]
    with_line = [next(line for line in lines if line.startswith(name + ". ")) for _, name, _ in people]
    expected_own = sum(place in line[len(name) + 2:longest] for line, (_, name, place) in zip(with_line, people))
    assert 0 < expected_own <= 16
    assert counts["own line"][1] == expected_own
    assert counts["name at line start"][1] == counts["name after other words"][1] == counts[QUESTION_SHAPE][1] == 16
    assert all(0 <= recalled <= probed for recalled, probed in counts.values())
    out = capsys.readouterr().out
    assert "rope" in out and "guessing the most common place" in out
    assert all(label in out for label in counts)


def test_a_model_that_memorised_the_lines_recalls_from_them(tmp_path, corpus):
    """A tiny GPT trained to continue the corpus's lines as plain text knows their places from the own
    lines; an untrained one of the same shape does not."""
    text = read_text(corpus["wiki"])
    stoi, itos = build_vocab(text)
    lines = [line for line in text.split("\n") if line]
    block = 128
    rows = [[stoi[c] for c in line[:block]] + [0] * (block - len(line[:block])) for line in lines]
    data = torch.tensor(rows)  # (N, block)
    model = tiny_gpt("vanilla", len(itos), block_size=block, seed=0)
    untrained = str(tmp_path / "untrained.params")
    save_params(model, untrained, itos)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(250):  # enough to memorise the 20 lines (loss ~0.04); 150 steps recall about 70%
        _, loss = model(data[:, :-1], data[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = str(tmp_path / "trained.params")
    save_params(model, trained, itos)
    args = [corpus["wiki"], corpus["train"], corpus["dev"], corpus["test"], "--device", "cpu"]
    recalled, probed = main([trained, *args])["own line"]
    assert probed >= 15 and recalled >= 0.8 * probed
    recalled, probed = main([untrained, *args])["own line"]
    assert recalled <= 0.2 * probed


def test_cli_errors_are_one_line(tmp_path, corpus):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    missing = subprocess.run([sys.executable, PROBE, str(tmp_path / "missing.params"), corpus["wiki"],
                              corpus["dev"]], capture_output=True, text=True, env=env, timeout=120)
    lines = missing.stderr.strip().split("\n")
    assert missing.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.params" in lines[0], missing.stderr
