"""Data-parallel training: `torchrun --nproc_per_node 2 src/run.py pretrain|finetune`
with the gloo backend on the CPU, on a tiny synthetic corpus, writes the same kind of params file
as a single-process run; rank 0 alone logs and saves; the ranks share the data and the learning
rate schedule counts the tokens of both."""
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
import torch

import run
from dataset import CharCorruptionDataset
from model import GPT, config_for_variant
from params import META_KEY, describe_model, load_params
from test_cli import assert_saved_and_says_how_to_resume, finish, same_weights, start_paused
from trainer import TrainerConfig, learning_rate_at
from utils import read_text
from make_synthetic_corpus import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "src", "run.py")
PEOPLE, BATCH, BLOCK, EPOCHS = 40, 8, 64, 2  # 40 documents: 20 per rank, batches of 8, 8 and 4
# block 64: the finetuning lines need more than 32 positions
TINY = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", str(BLOCK), "--dropout", "0",
        "--pretrain_epochs", str(EPOCHS), "--finetune_epochs", "2", "--batch_size", str(BATCH),
        "--no_tensorboard", "--device", "cpu"]
ENV = dict(os.environ, PYTHONIOENCODING="utf-8", OMP_NUM_THREADS="1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher():
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
            "--master_addr", "127.0.0.1", "--master_port", str(free_port())]


def torchrun(*args, cwd):
    result = subprocess.run([*launcher(), RUN, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True,
                            encoding="utf-8", timeout=300)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def corpus(work):
    return make_corpus(str(work / "data"), n_people=PEOPLE, seed=0)


@pytest.fixture(scope="module")
def pretrained(work, corpus):
    path = work / "vanilla.pretrain.params"
    return path, torchrun("pretrain", "vanilla", corpus["wiki"], "--writing_params_path", path, *TINY, cwd=work)


@pytest.fixture(scope="module")
def single(work, corpus):
    """The same pretraining in this process, without torchrun."""
    path = work / "single.pretrain.params"
    run.main(["pretrain", "vanilla", corpus["wiki"], "--writing_params_path", str(path), *TINY])
    return path


def fresh_model(corpus):
    dataset = CharCorruptionDataset(read_text(corpus["wiki"]), BLOCK)
    config = config_for_variant("vanilla", dataset.vocab_size, BLOCK, n_layer=1, n_head=2, n_embd=16)
    return GPT(config), dataset.itos


def test_ddp_pretrain_writes_the_params_of_a_single_process_run(work, corpus, pretrained, single):
    path, _ = pretrained
    ours, theirs = torch.load(path, weights_only=True), torch.load(single, weights_only=True)
    assert list(ours) == list(theirs)  # the uncompiled, unwrapped model's names: no "module." prefix
    assert all(ours[k].shape == theirs[k].shape and ours[k].dtype == theirs[k].dtype for k in ours)
    assert ours._metadata[META_KEY] == theirs._metadata[META_KEY]
    model, itos = fresh_model(corpus)
    assert ours._metadata[META_KEY] == describe_model(model, itos)
    load_params(model, str(path), itos)
    assert not [name for name in os.listdir(work) if ".tmp" in name or name.endswith(".ckpt")]


def test_ddp_logs_and_saves_on_rank_zero_only(pretrained):
    _, result = pretrained
    assert result.stdout.count("distributed: 2 processes (gloo)") == 1
    assert result.stdout.count("params written to") == 1
    assert result.stdout.count("device: cpu") == 1
    assert result.stdout.count("pretrain took") == 1
    assert len(re.findall(r"pretrain: 100%", result.stderr)) == 1  # one progress bar
    assert "batched span corruption: on" in result.stdout


def test_ddp_ranks_share_the_data_and_the_schedule_counts_every_rank(pretrained):
    _, result = pretrained
    # 20 documents per rank in batches of 8: 3 steps an epoch, where one process takes 5
    per_epoch = -(-(PEOPLE // 2) // BATCH)
    assert f"{EPOCHS * per_epoch}/{EPOCHS * per_epoch}" in result.stderr
    # the last learning rate is the one after every document of both ranks, 63 targets each
    config = TrainerConfig(learning_rate=6e-3, lr_decay=True, warmup_tokens=512 * 20,
                           final_tokens=EPOCHS * PEOPLE * BLOCK)
    shown = float(re.findall(r"lr ([\d.e+-]+)", result.stderr)[-1])
    assert shown == pytest.approx(learning_rate_at(config, EPOCHS * PEOPLE * (BLOCK - 1)), rel=1e-4)


def test_ddp_finetune_from_ddp_pretraining(work, corpus, pretrained):
    path = work / "vanilla.finetune.params"
    result = torchrun("finetune", "vanilla", corpus["wiki"], "--reading_params_path", pretrained[0],
                      "--writing_params_path", path, "--finetune_corpus_path", corpus["train"], *TINY, cwd=work)
    assert result.stdout.count("params written to") == 1
    before, after = torch.load(pretrained[0], weights_only=True), torch.load(path, weights_only=True)
    assert list(before) == list(after)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    model, itos = fresh_model(corpus)
    load_params(model, str(path), itos)


def test_sigterm_to_one_rank_stops_both_and_resume_completes(work, corpus, pretrained):
    """The ranks agree to stop after the same step; rank 0 writes the one checkpoint, which resumes
    the distributed run exactly."""
    out, ckpt = work / "terminated.params", work / "terminated.params.ckpt"
    args = ("pretrain", "vanilla", corpus["wiki"], "--writing_params_path", out, *TINY)
    proc, pids, go = start_paused(args, work, launcher=launcher(), ranks=2)
    os.kill(pids[1], signal.SIGTERM)  # rank 1 alone: rank 0 must stop too, and save
    go.touch()
    terminated = finish(proc)
    # torchrun reports the ranks' exit statuses: both stopped on their own, neither was killed
    assert terminated.returncode != 0
    assert re.findall(r"exitcode\s+: (-?\d+) \(pid", terminated.stderr) == ["143", "143"], terminated.stderr
    assert_saved_and_says_how_to_resume(terminated, "SIGTERM", ckpt, work)
    assert torch.load(ckpt, weights_only=False)["step"] == 1

    torchrun(*args, "--resume", cwd=work)
    assert same_weights(out, pretrained[0])
