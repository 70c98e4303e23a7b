"""
src/submission/: XCS224N's package exposes the names its handout and grader use, reuses
our modules, defaults to the XCS224N recipe, and its helper trains a tiny model and writes params
that src/run.py reads. Our own tests of that interface, not the course's grader.
"""
import os
import random
import subprocess
import sys

import pytest
import torch

import attention
import dataset
import model
import run
import submission
import trainer
import utils
from make_synthetic_corpus import make_corpus
from params import read_state_dict
from submission import helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAD, MASK = "\u25A1", "\u2047"
TINY = dict(n_layer=2, n_head=2, n_embd=16, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("xcs")), n_people=20, seed=0)


@pytest.fixture(scope="module")
def wiki_sized(corpus):
    """The synthetic wiki lines over and over, as many documents as the real wiki.txt: 2,937."""
    lines = open(corpus["wiki"], encoding="utf-8").read().splitlines()
    return submission.CharCorruptionDataset("".join(lines[i % len(lines)] + "\n" for i in range(2937)), 128)


def test_exports_are_our_own_objects():
    assert submission.GPT is model.GPT and submission.GPTConfig is model.GPTConfig
    assert submission.model.GPT is model.GPT and submission.model.GPTConfig is model.GPTConfig
    assert submission.SynthesizerAttention is submission.attention.SynthesizerAttention
    assert submission.SynthesizerAttention is attention.SynthesizerAttention
    assert submission.CausalSelfAttention is attention.CausalSelfAttention
    assert submission.Trainer is submission.trainer.Trainer is trainer.Trainer
    assert submission.TrainerConfig is trainer.TrainerConfig
    assert submission.sample is submission.utils.sample is utils.sample
    assert submission.evaluate_places is utils.evaluate_places and submission.set_seed is utils.set_seed
    assert issubclass(submission.CharCorruptionDataset, dataset.CharCorruptionDataset)
    assert issubclass(submission.NameDataset, dataset.NameDataset)
    for name in ("initialize_vanilla_model", "initialize_rope_model", "initialize_synthesizer_model",
                 "pretrain", "finetune", "train"):
        assert getattr(submission, name) is getattr(helper, name)


def test_dataset_defaults_to_the_xcs_recipe():
    data = "let me take you down\ncause I'm going to\n" + "\n".join("a" * random.Random(i).randint(7, 42)
                                                                  for i in range(100))
    ds = submission.CharCorruptionDataset(data, 50)
    assert ds.course.name == "xcs224n" and dataset.CharCorruptionDataset(data, 50).course.name == "cs224n"
    random.seed(0)
    for (x, y), document in zip(ds, [line for line in data.split("\n") if line]):
        body = "".join(ds.itos[int(i)] for i in torch.cat([x, y[-1:]])).rstrip(PAD)
        prefix, suffix, masked, after = body.split(MASK)  # prefix ⁇ suffix ⁇ masked ⁇
        assert after == "" and document.startswith(prefix + masked + suffix)
        assert min(4, len(document)) <= len(prefix + masked + suffix) <= int(50 * 3 / 4)


def test_name_dataset_takes_either_argument_order(corpus):
    pretraining = submission.CharCorruptionDataset(open(corpus["wiki"], encoding="utf-8").read(), 128)
    text = open(corpus["train"], encoding="utf-8").read()
    xcs, cs = submission.NameDataset(text, pretraining), submission.NameDataset(pretraining, text)
    assert len(xcs) == len(cs) == len(dataset.NameDataset(pretraining, text)) > 0
    assert all(torch.equal(a, b) for a, b in zip(xcs[3], cs[3]))


def test_initialize_models_give_each_variant():
    # the assignment's parameter counts at vocab 256, block 128, 4/8/256
    counts = {}
    for name in ("vanilla", "rope", "synthesizer"):
        mconf = submission.GPTConfig(256, 128, n_layer=4, n_head=8, n_embd=256)
        m = getattr(submission, f"initialize_{name}_model")(mconf)
        assert isinstance(m, model.GPT) and m.config.variant == name
        counts[name] = sum(p.numel() for p in m.parameters())
    assert counts == {"vanilla": 3_323_392, "rope": 3_290_624, "synthesizer": 3_076_988}


def recipe(config):
    return {name: getattr(config, name) for name in ("max_epochs", "batch_size", "learning_rate", "betas",
                                                     "grad_norm_clip", "weight_decay", "lr_decay", "warmup_tokens",
                                                     "final_tokens", "ckpt_path", "num_workers", "clamp_progress")}


COMMON = dict(betas=(0.9, 0.95), grad_norm_clip=1.0, weight_decay=0.1, lr_decay=True, warmup_tokens=10240,
              final_tokens=75_187_200, ckpt_path=None, num_workers=4, clamp_progress=False)


def test_pretrain_returns_the_xcs_recipe(wiki_sized):
    m = submission.initialize_vanilla_model(submission.GPTConfig(wiki_sized.vocab_size, 128, **TINY))
    config, t = submission.pretrain(wiki_sized, 128, m)
    assert recipe(config) == dict(COMMON, max_epochs=650, batch_size=128, learning_rate=6e-3)
    assert isinstance(t, trainer.Trainer) and t.config is config and t.train_dataset is wiki_sized
    assert submission.pretrain(wiki_sized, 128, m, pretrain_lr=1e-3, writer="w")[0].learning_rate == 1e-3
    assert submission.pretrain(wiki_sized, 128, m, writer="w")[0].writer == "w"


def test_finetune_returns_the_xcs_recipe(wiki_sized, corpus, tmp_path):
    m = submission.initialize_synthesizer_model(submission.GPTConfig(wiki_sized.vocab_size, 128, **TINY))
    config, t = submission.finetune(None, corpus["train"], wiki_sized, 128, m)
    assert recipe(config) == dict(COMMON, max_epochs=75, batch_size=256, learning_rate=6e-4)
    assert isinstance(t.train_dataset, dataset.NameDataset) and len(t.train_dataset) > 0
    # from pretrained params: 10 epochs, and the params are in the model first
    path = tmp_path / "synthesizer.pretrain.params"
    saved = submission.initialize_synthesizer_model(submission.GPTConfig(wiki_sized.vocab_size, 128, **TINY))
    torch.save(saved.state_dict(), path)  # the course's own way of writing params
    config, _ = submission.finetune(str(path), corpus["train"], wiki_sized, 128, m, finetune_lr=1e-4)
    assert recipe(config) == dict(COMMON, max_epochs=10, batch_size=256, learning_rate=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), saved.state_dict().values()))


def test_fall_2025_cohort_finetunes_without_loader_workers(corpus):
    """CharCorruptionDataset(..., course="xcs224n-2025"): the synthesizer year's recipe, but its helper
    finetunes with num_workers 0 (pretraining keeps 4)."""
    text = open(corpus["wiki"], encoding="utf-8").read()
    fall_2025, synthesizer_year = (submission.CharCorruptionDataset(text, 128, course=name)
                                   for name in ("xcs224n-2025", "xcs224n"))
    assert fall_2025.course.name == "xcs224n-2025" and submission.CharCorruptionDataset(text, 128).course.name == \
        "xcs224n"
    m = submission.initialize_rope_model(submission.GPTConfig(fall_2025.vocab_size, 128, **TINY))
    pretrain = [recipe(helper.pretrain(ds, 128, m)[0]) for ds in (fall_2025, synthesizer_year)]
    assert pretrain[0] == pretrain[1] and pretrain[0]["num_workers"] == 4
    finetune = [recipe(helper.finetune(None, corpus["train"], ds, 128, m)[0]) for ds in (fall_2025, synthesizer_year)]
    assert (finetune[0]["num_workers"], finetune[1]["num_workers"]) == (0, 4)
    assert dict(finetune[0], num_workers=4) == finetune[1]


def test_cs224n_dataset_gets_the_cs224n_recipe(corpus):
    ds = dataset.CharCorruptionDataset(open(corpus["wiki"], encoding="utf-8").read(), 64)
    config, _ = helper.pretrain(ds, 64, submission.initialize_vanilla_model(submission.GPTConfig(ds.vocab_size, 64,
                                                                                                  **TINY)))
    assert config.final_tokens == 650 * len(ds) * 64 and config.clamp_progress


def test_train_through_the_helper_writes_params_run_py_reads(corpus, tmp_path, capsys):
    """pretrain -> train -> finetune from its params -> train -> src/run.py evaluate, one epoch each."""
    utils.set_seed(0)
    pretraining = submission.CharCorruptionDataset(open(corpus["wiki"], encoding="utf-8").read(), 64)
    mconf = submission.GPTConfig(pretraining.vocab_size, 64, **TINY)
    m = submission.initialize_rope_model(mconf)
    config, t = submission.pretrain(pretraining, 64, m)
    config.max_epochs, config.batch_size = 1, 8
    pretrained = tmp_path / "rope.pretrain.params"
    trained = submission.train(m, str(pretrained), t)
    assert trained.tokens == len(pretraining) * 63  # every document once
    # the fast path on the device, with the XCS examples
    x, y = next(iter(trained.config.train_loader))
    assert all((row == pretraining.stoi[MASK]).sum() == 3 for row in torch.cat([x, y[:, -1:]], dim=1))
    state = read_state_dict(str(pretrained))
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())

    m = submission.initialize_rope_model(submission.GPTConfig(pretraining.vocab_size, 64, **TINY))
    config, t = submission.finetune(str(pretrained), corpus["train"], pretraining, 64, m)
    config.max_epochs = 1
    finetuned = tmp_path / "rope.finetune.params"
    trained = submission.train(m, str(finetuned), t)
    # the course's 4 loader workers do not help on a CPU
    assert finetuned.is_file() and config.num_workers == 4 and trained.config.num_workers == 0
    predictions = tmp_path / "rope.pretrain.dev.predictions"
    run.main(["evaluate", "rope", corpus["wiki"], "--reading_params_path", str(finetuned), "--eval_corpus_path",
              corpus["dev"], "--outputs_path", str(predictions), "--n_layer", "2", "--n_head", "2", "--n_embd", "16",
              "--block_size", "64", "--device", "cpu", "--course", "xcs224n"])
    assert "Correct: " in capsys.readouterr().out
    assert len(predictions.read_text(encoding="utf-8").splitlines()) == \
        len(open(corpus["dev"], encoding="utf-8").read().splitlines())


def python(code_or_args, cwd):
    env = dict(os.environ, PYTHONIOENCODING="utf-8", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # as a student runs it: nothing but the current directory
    return subprocess.run([sys.executable, *code_or_args], cwd=cwd, capture_output=True, text=True, encoding="utf-8",
                          env=env, timeout=120)


def test_importable_from_src_as_the_grader_does():
    r = python(["-c", "import submission; from submission.helper import train; "
                      "print(submission.CharCorruptionDataset.__mro__[1].__module__, train.__module__)"],
               cwd=os.path.join(ROOT, "src"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["dataset", "submission.helper"]


def test_handout_dataset_command_in_src_submission(corpus):
    r = python(["dataset.py", "charcorruption", "--corpus_path", corpus["wiki"]],
               cwd=os.path.join(ROOT, "src", "submission"))
    assert r.returncode == 0, r.stderr
    xs = [line[3:] for line in r.stdout.splitlines() if line.startswith("x: ")]
    ys = [line[3:] for line in r.stdout.splitlines() if line.startswith("y: ")]
    assert len(xs) == len(ys) == 4
    for x, y in zip(xs, ys):
        assert len(x) == 127 and (x + y[-1]).rstrip(PAD).count(MASK) == 3
