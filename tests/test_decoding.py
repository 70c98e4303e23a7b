"""
Tests for src/decoding.py (evaluate): the fast batched decoder (questions
grouped by length, KV cache, early stop) must give exactly the predictions of the
course's one-question-at-a-time decoder (utils.sample: 32 greedy steps after
`question ⁇`, prediction = text up to the next ⁇).

To make the comparison meaningful, each variant is first trained briefly on a
synthetic birth-place corpus, so that its answers are varied, non-empty strings.
"""
import os

import pytest
import torch

from dataset import MASK_CHAR, PAD_CHAR, CharCorruptionDataset, NameDataset
from decoding import (answer_from_ids, encode_question, greedy_batch, greedy_by_length, predict_places,
                      shared_prefix)
from model import GPT, config_for_variant
from utils import sample
from make_synthetic_corpus import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ["vanilla", "rope", "perceiver", "synthesizer"]
BLOCK = 64
STEPS = 32  # the assignment's: up to 32 characters after `question ⁇`
TRAIN_STEPS = 150


pytestmark = pytest.mark.usefixtures("one_thread")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(pretraining dataset, NameDataset, questions to decode) from a small synthetic corpus."""
    paths = make_corpus(str(tmp_path_factory.mktemp("corpus")), n_people=300, seed=1)
    pretrain = CharCorruptionDataset(read(paths["wiki"]), BLOCK)
    fits = lambda line: line and len(line) + 1 <= BLOCK  # question + ⁇ + answer + ⁇ within a block
    train_lines = [line for line in read(paths["train"]).split("\n") if fits(line)]
    names = NameDataset(pretrain, "\n".join(train_lines))
    # ~40 questions of varied lengths: training and dev questions spread over the length range, and a
    # few odd ones (short prompts, so that both the cached and the uncached paths run)
    pool = sorted({line.split("\t")[0] for line in train_lines + read(paths["dev"]).split("\n")[:60] if line},
                  key=lambda q: (len(q), q))
    questions = pool[::max(1, len(pool) // 34)][:34]
    questions += ["Where was Ida born?", "Where was Paris born?", "London", "Who?", "Where was Ida Knox born?",
                  questions[3]]  # a duplicate question
    return pretrain, names, questions


def train(variant, names, seed=0):
    """A tiny model of `variant` after TRAIN_STEPS steps of AdamW on the NameDataset, dropout off."""
    torch.manual_seed(seed)
    cfg = config_for_variant(variant, names.vocab_size, BLOCK, bottleneck_dim=16, n_layer=2, n_head=4,
                             n_embd=32, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    model = GPT(cfg)
    X = torch.stack([names[i][0] for i in range(len(names))])
    Y = torch.stack([names[i][1] for i in range(len(names))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(TRAIN_STEPS):
        ix = torch.randint(0, len(X), (16,), generator=g)
        _, loss = model(X[ix], Y[ix])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module", params=VARIANTS)
def trained(request, corpus):
    pretrain, names, questions = corpus
    return request.param, train(request.param, names)


def course_prediction(model, question, stoi, itos):
    """The assignment's evaluation spelled out: greedy decoding of 32 characters after `question ⁇` with utils.sample,
    then the text up to the next ⁇."""
    ids = [stoi[c] for c in question + MASK_CHAR if c in stoi]
    out = sample(model, torch.tensor([ids]), STEPS, sample=False)[0, len(ids):]
    assert len(out) == STEPS
    return "".join(itos[int(i)] for i in out).split(MASK_CHAR)[0]


# ----------------------------------------------------------------------------- batched == one by one


def test_question_set_exercises_both_paths(corpus):
    """Some prompts leave room for the whole answer in the cache (prompt + 31 <= block), some do not."""
    _, _, questions = corpus
    prompt_lengths = {len(q) + 1 for q in questions}
    assert len(prompt_lengths) >= 10
    assert any(n + STEPS - 1 <= BLOCK - 1 for n in prompt_lengths)
    assert any(n + STEPS - 1 > BLOCK for n in prompt_lengths)


def test_batched_predictions_equal_course_decoder(trained, corpus):
    variant, model = trained
    pretrain, _, questions = corpus
    fast = predict_places(model, questions, pretrain.stoi, pretrain.itos, "cpu", batched=True, progress=False)
    slow = predict_places(model, questions, pretrain.stoi, pretrain.itos, "cpu", batched=False, progress=False)
    assert len(fast) == len(questions)
    # the predictions are worth comparing: mostly non-empty and varied
    assert sum(bool(a) for a in fast) >= len(fast) // 2, fast
    assert len(set(fast)) >= 5, fast
    assert all(MASK_CHAR not in a and PAD_CHAR not in a and len(a) <= STEPS for a in fast)
    assert fast == slow
    # smaller batches (chunks of a length group) change nothing
    chunked = predict_places(model, questions, pretrain.stoi, pretrain.itos, "cpu", batch_size=3, progress=False)
    assert chunked == fast
    # and the course decoder is the assignment's evaluation spelled out with utils.sample
    for i in range(0, len(questions), 5):
        assert slow[i] == course_prediction(model, questions[i], pretrain.stoi, pretrain.itos)


# ----------------------------------------------------------------------------- greedy_batch


def test_right_padded_batches_generate_what_each_prompt_does_alone(trained, corpus):
    """Prompts of different lengths in one right-padded batch (KVCache.pad): every row's ids are those of
    the prompt decoded on its own, with and without the fused attention path."""
    variant, model = trained
    pretrain, _, questions = corpus
    encoded = [encode_question(q, pretrain.stoi)[0] for q in questions]
    fits = [ids for ids in encoded if len(ids) + STEPS - 1 <= model.max_len]
    assert len({len(ids) for ids in fits}) >= 5
    mask_id = pretrain.stoi[MASK_CHAR]
    alone = [greedy_batch(model, torch.tensor([ids]), STEPS, mask_id)[0].tolist() for ids in fits]
    for fused in (False, True):
        for module in model.modules():
            if hasattr(module, "fused"):
                module.fused = fused
        together = greedy_by_length(model, fits, STEPS, mask_id, "cpu")  # the perceiver: equal lengths only
        # a batch runs until its last row is done: compare up to each row's own end
        assert [row[:len(a)] for row, a in zip(together, alone)] == alone


def prompts_of_length(corpus, length, stoi):
    _, _, questions = corpus
    group = [encode_question(q, stoi)[0] for q in questions]
    group = [ids for ids in group if len(ids) == length]
    return torch.tensor(group)


def cached_prompt_length(corpus, stoi, model):
    """The most common prompt length that lets greedy_batch decode with the cache."""
    _, _, questions = corpus
    lengths = [len(encode_question(q, stoi)[0]) for q in questions]
    ok = [n for n in lengths if n + STEPS - 1 <= model.max_len]
    return max(set(ok), key=ok.count)


def test_greedy_batch_with_and_without_cache_agree(trained, corpus, monkeypatch):
    variant, model = trained
    pretrain, _, _ = corpus
    mask_id = pretrain.stoi[MASK_CHAR]
    prompts = prompts_of_length(corpus, cached_prompt_length(corpus, pretrain.stoi, model), pretrain.stoi)
    assert prompts.size(0) >= 2

    calls = []
    forward = model.forward

    def spy(idx, targets=None, kv_cache=None):
        calls.append((idx.size(1), kv_cache is not None))
        return forward(idx, targets, kv_cache=kv_cache) if kv_cache is not None else forward(idx, targets)

    monkeypatch.setattr(model, "forward", spy)
    first = greedy_batch(model, prompts, STEPS, mask_id)
    if variant == "perceiver":
        assert not any(cached for _, cached in calls)
    else:  # the cache is really used: the shared prefix once for all rows, the rest of the prompts, then one
        # token per step
        shared = shared_prefix(prompts)
        assert shared >= len("Where was ")
        assert calls[:2] == [(shared, True), (prompts.size(1) - shared, True)]
        assert all(call == (1, True) for call in calls[2:])
    calls.clear()
    monkeypatch.setattr(GPT, "supports_kv_cache", False)
    second = greedy_batch(model, prompts, STEPS, mask_id)
    assert not any(cached for _, cached in calls)
    assert calls[-1][0] == prompts.size(1) + second.size(1) - 1  # the whole sequence each step
    assert torch.equal(first, second)


def test_greedy_batch_matches_sample_and_stops_early(trained, corpus):
    variant, model = trained
    pretrain, _, questions = corpus
    mask_id = pretrain.stoi[MASK_CHAR]
    for length in sorted({len(encode_question(q, pretrain.stoi)[0]) for q in questions})[::3]:
        prompts = prompts_of_length(corpus, length, pretrain.stoi)
        generated = greedy_batch(model, prompts, STEPS, mask_id)
        reference = sample(model, prompts, STEPS, sample=False)[:, length:]  # (B, 32)
        ends = []
        for row in reference.tolist():
            ends.append(row.index(mask_id) + 1 if mask_id in row else STEPS)
        # decoding stops at the step where the last row produced ⁇ (or after 32 steps)
        assert generated.shape == (prompts.size(0), max(ends))
        for r, end in enumerate(ends):
            assert generated[r, :end].tolist() == reference[r, :end].tolist()


def test_greedy_batch_runs_all_steps_without_mask(trained, corpus):
    """With no row ever finishing, 32 tokens come out, equal to utils.sample's, also at the
    boundary where the prompt plus the answer just fills (or just overflows) the model's input."""
    variant, model = trained
    pretrain, _, questions = corpus
    never = -1  # no token has this id, so no row ever finishes
    encoded = [encode_question(q, pretrain.stoi)[0] for q in questions]
    fill = model.max_len - (STEPS - 1)  # longest prompt whose 32 steps fit in one window
    for length in (cached_prompt_length(corpus, pretrain.stoi, model), fill, fill + 1, fill + 4):
        rows = [ids[:length] for ids in encoded if len(ids) >= length][:6]
        assert len(rows) >= 2, length
        prompts = torch.tensor(rows)
        generated = greedy_batch(model, prompts, STEPS, never)
        assert generated.shape == (prompts.size(0), STEPS)
        assert torch.equal(generated, sample(model, prompts, STEPS, sample=False)[:, length:]), length


# ----------------------------------------------------------------------------- helpers


ITOS = [PAD_CHAR, MASK_CHAR, " ", "?", "L", "P", "a", "d", "i", "n", "o", "r", "s"]
STOI = {c: i for i, c in enumerate(ITOS)}


def ids(text):
    return [STOI[c] for c in text]


def test_answer_from_ids_cuts_at_first_mask():
    assert answer_from_ids(ids("Paris" + MASK_CHAR + "London" + MASK_CHAR), ITOS) == "Paris"
    assert answer_from_ids(torch.tensor(ids("Paris" + MASK_CHAR + "Lon")), ITOS) == "Paris"
    assert answer_from_ids(ids(MASK_CHAR + "Paris"), ITOS) == ""
    assert answer_from_ids(ids("London"), ITOS) == "London"  # no ⁇ within the 32 characters: all of it
    assert answer_from_ids([], ITOS) == ""


def test_encode_question_appends_mask_and_drops_unknown_characters():
    encoded, unknown = encode_question("Paris?", STOI)
    assert encoded == ids("Paris?" + MASK_CHAR)
    assert not unknown
    encoded, unknown = encode_question("Parïs é?", STOI)
    assert encoded == ids("Pars ?" + MASK_CHAR)
    assert set(unknown) == {"ï", "é"}


def test_predict_places_drops_unknown_characters(trained, corpus):
    variant, model = trained
    pretrain, _, questions = corpus
    q = questions[0]
    assert "é" not in pretrain.stoi
    noisy = q[:10] + "é" + q[10:]
    both = predict_places(model, [q, noisy], pretrain.stoi, pretrain.itos, "cpu", progress=False)
    assert both[0] == both[1]


def test_shared_prefix_leaves_every_row_a_token():
    prompts = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 7, 9, 9], [5, 6, 7, 8, 1]])
    assert shared_prefix(prompts) == 3
    assert shared_prefix(prompts, torch.tensor([4, 5, 3])) == 2  # the third row's last token is its own
    assert shared_prefix(prompts[:1]) == 4  # a single row: all but its last token
    assert shared_prefix(torch.tensor([[1, 2], [3, 2]])) == 0
