"""Tests for src/trainer.py (the course's trainer, the recipe's schedule and XCS224N's) and its resumable
checkpoints (src/checkpoint.py)."""
import math
import os
import re
import signal
import time

import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

import checkpoint
import trainer
from course import get_course
from model import GPT, GPTConfig
from trainer import NonFiniteLossError, Trainer, TrainerConfig, learning_rate_at, make_optimizer
from utils import UserError, set_seed

WARMUP, FINAL, BASE = 1000, 11000, 1e-3


pytestmark = pytest.mark.usefixtures("one_thread")


def schedule(**kwargs):
    return TrainerConfig(learning_rate=BASE, lr_decay=True, warmup_tokens=WARMUP, final_tokens=FINAL, **kwargs)


def cosine(progress):
    """The course's multiplier after warm-up: cosine decay, floored at 10%, progress clamped at 1."""
    return max(0.1, 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# -----------------------------------------------------------------------------
# learning rate

def test_trainer_config_defaults():
    cfg = TrainerConfig(max_epochs=3, batch_size=7)
    assert cfg.max_epochs == 3 and cfg.batch_size == 7
    assert tuple(cfg.betas) == (0.9, 0.95)
    assert cfg.grad_norm_clip == 1.0 and cfg.weight_decay == 0.1 and cfg.lr_decay is False
    assert cfg.ckpt_path is None and cfg.writer is None
    assert cfg.clamp_progress is True


@pytest.mark.parametrize("tokens,multiplier", [
    (0, 0.0), (250, 0.25), (500, 0.5), (999, 0.999),  # linear warm-up
    (1000, 1.0),  # end of warm-up: full rate
    (6000, 0.5),  # half-way through the decay: cos(pi/2)
    (3500, 0.5 * (1 + math.cos(math.pi / 4))),
    (11000, 0.1), (50000, 0.1), (10 ** 9, 0.1),  # floor at final_tokens and after
])
def test_learning_rate_at_known_points(tokens, multiplier):
    assert learning_rate_at(schedule(), tokens) == pytest.approx(BASE * multiplier, rel=1e-9, abs=1e-15)


def test_learning_rate_shape():
    cfg = schedule()
    rates = [learning_rate_at(cfg, t) for t in range(0, 30000, 50)]
    peak = rates.index(max(rates))
    assert max(rates) == pytest.approx(BASE)
    assert all(a <= b for a, b in zip(rates[:peak], rates[1:peak + 1]))  # rises during warm-up
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:]))  # never rises again
    assert min(rates[peak:]) == pytest.approx(0.1 * BASE)
    for t in range(WARMUP, 30000, 777):
        assert learning_rate_at(cfg, t) == pytest.approx(BASE * cosine((t - WARMUP) / (FINAL - WARMUP)))


def test_learning_rate_without_decay_is_the_base_rate():
    cfg = TrainerConfig(learning_rate=BASE, lr_decay=False, warmup_tokens=WARMUP, final_tokens=FINAL)
    for tokens in (0, 10, 999, 1000, 6000, 11000, 10 ** 9):
        assert learning_rate_at(cfg, tokens) == BASE


def test_learning_rate_after_first_pretraining_epoch_of_the_recipe():
    # the recipe: 2937 wiki lines, block 128 (127 targets per item), warm-up 512*20, 650 epochs
    cfg = TrainerConfig(learning_rate=6e-3, lr_decay=True, warmup_tokens=512 * 20, final_tokens=650 * 2937 * 128)
    assert learning_rate_at(cfg, 2937 * 127) == pytest.approx(5.99997e-03, abs=5e-9)
    assert learning_rate_at(cfg, 512 * 10) == pytest.approx(3e-3)


# the CS224N and XCS224N recipes on the real corpus: 2937 documents, block 128; epoch 1 = 23 batches, 2937 * 127 targets
EPOCH = 2937 * 127


@pytest.mark.parametrize("course,final_epochs,after_epoch_1,after_epoch_650", [
    ("cs224n", 650, 5.99997e-03, 6e-4),  # clamped: the 10% floor, reached at the very end
    ("xcs224n", 200, 5.999655e-03, 7.18e-4),  # a public XCS224N log: 5.999655e-03 after epoch 1, 7.18e-4 at 650
])
def test_pretraining_schedule_of_each_course(course, final_epochs, after_epoch_1, after_epoch_650):
    cfg = TrainerConfig(**get_course(course).pretrain_schedule(2937, 128))
    assert cfg.final_tokens == final_epochs * 2937 * 128  # xcs224n: 75,187,200
    assert (cfg.max_epochs, cfg.batch_size, cfg.learning_rate, cfg.warmup_tokens) == (650, 128, 6e-3, 10240)
    assert cfg.clamp_progress == (course == "cs224n")
    assert learning_rate_at(cfg, EPOCH) == pytest.approx(after_epoch_1, abs=5e-9)
    assert learning_rate_at(cfg, 650 * EPOCH) == pytest.approx(after_epoch_650, abs=5e-7)


def test_unclamped_schedule_rises_again_after_final_tokens():
    xcs = TrainerConfig(**get_course("xcs224n").pretrain_schedule(2937, 128))
    # the same schedule, clamped or not
    cs = TrainerConfig(**{**get_course("cs224n").pretrain_schedule(2937, 128), "final_tokens": xcs.final_tokens})
    final, span = xcs.final_tokens, xcs.final_tokens - xcs.warmup_tokens
    assert learning_rate_at(xcs, final) == learning_rate_at(cs, final) == pytest.approx(6e-4)
    # the cosine climbs back over its 10% floor at progress 2 - acos(-0.8)/pi = 1.205
    assert learning_rate_at(xcs, final + span // 10) == pytest.approx(6e-4)
    for tokens in (final + span // 4, final + span // 2, final + span - 1):
        assert learning_rate_at(cs, tokens) == pytest.approx(6e-4)  # stays at the floor
        assert learning_rate_at(xcs, tokens) > 6e-4 + 1e-5  # rises again
    assert learning_rate_at(xcs, final + span // 2) == pytest.approx(3e-3)  # cos(1.5 pi) = 0: half the rate
    assert learning_rate_at(xcs, final + span) == pytest.approx(6e-3)  # back at the full rate at 2 x final
    rising = [learning_rate_at(xcs, final + k * span // 100) for k in range(21, 101)]
    assert all(a < b for a, b in zip(rising, rising[1:]))
    # below the floor, the cosine is cut at 10% either way
    before = final - span // 100
    assert learning_rate_at(xcs, before) == learning_rate_at(cs, before) == pytest.approx(6e-4)


@pytest.mark.parametrize("course", ["cs224n", "xcs224n"])
@pytest.mark.parametrize("pretrained,epochs", [(False, 75), (True, 10)])
def test_finetuning_recipe_of_each_course(course, pretrained, epochs):
    cfg = TrainerConfig(**get_course(course).finetune_schedule(2937, 128, pretrained=pretrained))
    assert (cfg.max_epochs, cfg.batch_size, cfg.learning_rate) == (epochs, 256, 6e-4)
    assert cfg.lr_decay and cfg.warmup_tokens == 10240 and cfg.final_tokens == 200 * 2937 * 128
    assert cfg.clamp_progress == (course == "cs224n")


# -----------------------------------------------------------------------------
# optimizer

def tiny_gpt(vocab=12, block=16, **kwargs):
    cfg = dict(n_layer=2, n_head=2, n_embd=32, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    cfg.update(kwargs)
    return GPT(GPTConfig(vocab, block, **cfg))


def test_make_optimizer_groups():
    model = tiny_gpt()
    cfg = TrainerConfig(learning_rate=1e-3, betas=(0.8, 0.9), weight_decay=0.25)
    opt = make_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    decay_groups = [g for g in opt.param_groups if g["weight_decay"] == 0.25]
    plain_groups = [g for g in opt.param_groups if g["weight_decay"] == 0.0]
    assert len(decay_groups) == 1 and len(plain_groups) == 1 and len(opt.param_groups) == 2
    decay = {id(p) for p in decay_groups[0]["params"]}
    plain = {id(p) for p in plain_groups[0]["params"]}
    assert not decay & plain
    assert decay | plain == {id(p) for p in model.parameters()}
    layer_norms = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    assert layer_norms and layer_norms <= plain
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert id(p) in plain, name
        if p.dim() >= 2:
            assert id(p) in decay, name
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            assert id(m.weight) in decay
    for g in opt.param_groups:
        assert tuple(g["betas"]) == (0.8, 0.9)


# -----------------------------------------------------------------------------
# training

class PatternDataset(Dataset):
    """Rotations of a fixed repeating token pattern: (x, y) = (seq[:-1], seq[1:]), the last
    `pad` positions PAD (id 0) as in the real datasets."""

    def __init__(self, n=32, length=16, vocab=12, pad=0):
        pattern = [2 + (i * 5) % (vocab - 2) for i in range(vocab - 2)]
        self.items = []
        for k in range(n):
            seq = torch.tensor([pattern[(k + i) % len(pattern)] for i in range(length)], dtype=torch.long)
            if pad:
                seq[-pad:] = 0
            self.items.append((seq[:-1], seq[1:]))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]


def mean_loss(model, ds):
    model.eval()
    with torch.no_grad():
        x = torch.stack([a for a, _ in ds.items])
        y = torch.stack([b for _, b in ds.items])
        return model(x, y)[1].item()


def test_training_reduces_the_loss():
    set_seed(0)
    model, ds = tiny_gpt(), PatternDataset()
    before = mean_loss(model, ds)
    cfg = TrainerConfig(max_epochs=15, batch_size=8, learning_rate=3e-3, lr_decay=True, warmup_tokens=200,
                        final_tokens=15 * 32 * 15, num_workers=0)
    Trainer(model, ds, None, cfg).train()
    after = mean_loss(model, ds)
    assert before > 2.0  # about ln(12) at initialisation
    assert after < 0.5 * before


class FakeWriter:
    def __init__(self):
        self.calls = []

    def add_scalar(self, tag, value, step):
        self.calls.append((tag, float(value), step))


def test_writer_receives_loss_and_lr_and_tokens_count_targets():
    set_seed(1)
    model, ds = tiny_gpt(), PatternDataset(n=16, pad=6)
    writer = FakeWriter()
    cfg = TrainerConfig(max_epochs=2, batch_size=4, learning_rate=1e-3, lr_decay=True, warmup_tokens=100,
                        final_tokens=1000, writer=writer)
    t = Trainer(model, ds, None, cfg)
    t.train()
    steps = 2 * 16 // 4
    # tokens counted per target position, PAD included: batch * (block_size - 1) per step
    assert t.tokens == 2 * 16 * 15
    losses = [(s, v) for tag, v, s in writer.calls if tag == "train/loss"]
    rates = [(s, v) for tag, v, s in writer.calls if tag == "train/lr"]
    assert [s for s, _ in losses] == list(range(1, steps + 1))
    assert [s for s, _ in rates] == list(range(1, steps + 1))
    assert all(math.isfinite(v) and v > 0 for _, v in losses)
    for s, v in rates:
        assert v == pytest.approx(learning_rate_at(cfg, s * 4 * 15))


def test_a_test_dataset_is_scored_every_epoch_and_keeps_the_best_params(tmp_path, monkeypatch):
    """minGPT's behaviour: the test set's mean loss after every epoch (test/loss), computed in eval mode
    without gradients, and ckpt_path written only when that loss is the lowest so far."""
    ckpt, writer = tmp_path / "model.params", FakeWriter()
    cfg = TrainerConfig(max_epochs=3, batch_size=4, learning_rate=1e-3, ckpt_path=str(ckpt), writer=writer)
    trainer = Trainer(tiny_gpt(), PatternDataset(n=8), PatternDataset(n=6), cfg)
    scripted = iter([2.0, 3.0, 1.0])  # epoch 2 is worse than epoch 1: its params must not be written
    saved = []
    real_test_epoch = trainer.test_epoch

    def test_epoch(bar=None):
        measured = real_test_epoch(bar)
        assert math.isfinite(measured) and measured > 0
        trainer.test_losses[-1] = next(scripted)
        return trainer.test_losses[-1]
    monkeypatch.setattr(trainer, "test_epoch", test_epoch)
    monkeypatch.setattr(checkpoint, "save_state_dict", lambda sd, path: saved.append(trainer.epoch))
    trainer.train()
    assert trainer.test_losses == [2.0, 3.0, 1.0] and saved == [1, 3]
    assert trainer.model.training  # back to training mode after each test pass
    assert [step for tag, _, step in writer.calls if tag == "test/loss"] == [2, 4, 6]  # 2 steps an epoch


def test_an_empty_test_dataset_is_refused():
    with pytest.raises(UserError, match="test_dataset is empty"):
        Trainer(tiny_gpt(), PatternDataset(n=8), PatternDataset(n=0), TrainerConfig())


def test_the_test_loss_is_the_models_mean_loss_over_the_test_batches():
    model, data = tiny_gpt(), PatternDataset(n=6)
    trainer = Trainer(model, PatternDataset(n=8), data, TrainerConfig(batch_size=4))
    model.eval()
    with torch.no_grad():
        expected = [model(*(torch.stack(t) for t in zip(*[data[i] for i in rows])))[1].item()
                    for rows in ([0, 1, 2, 3], [4, 5])]
    model.train()
    modes = []
    model.register_forward_pre_hook(lambda module, args: modes.append((module.training, torch.is_grad_enabled())))
    assert trainer.test_epoch() == pytest.approx(sum(expected) / 2)
    assert modes == [(False, False)] * 2 and model.training  # eval mode, no gradients; training mode after


def test_trainer_config_takes_the_course_fields_in_the_course_order():
    """The course's order, so a positional call means what it means in the course's code."""
    cfg = TrainerConfig(3, 8, 1e-3, (0.8, 0.9), 0.5, 0.01, True, 100, 1000, "m.params", 2, "w")
    assert (cfg.max_epochs, cfg.batch_size, cfg.learning_rate, cfg.betas, cfg.grad_norm_clip, cfg.weight_decay,
            cfg.lr_decay, cfg.warmup_tokens, cfg.final_tokens, cfg.ckpt_path, cfg.num_workers, cfg.writer) == \
        (3, 8, 1e-3, (0.8, 0.9), 0.5, 0.01, True, 100, 1000, "m.params", 2, "w")


def test_trainer_config_refuses_unknown_options():
    with pytest.raises(TypeError, match="max_epoch"):
        TrainerConfig(max_epoch=3)


class NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, x, targets=None):
        logits = self.w.sum() * torch.zeros(*x.shape, 3)
        return logits, self.w.sum() * float("nan")


def test_nan_loss_raises_naming_the_step(tmp_path):
    ckpt = tmp_path / "model.params"
    cfg = TrainerConfig(max_epochs=1, batch_size=4, learning_rate=1e-3, ckpt_path=str(ckpt))
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(NaNModel(), PatternDataset(n=8), None, cfg).train()
    assert isinstance(info.value, UserError)
    assert "step 1" in str(info.value)
    assert not ckpt.exists()


def test_exploding_learning_rate_raises():
    set_seed(2)
    cfg = TrainerConfig(max_epochs=3, batch_size=4, learning_rate=1e30, lr_decay=False)
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(tiny_gpt(), PatternDataset(n=16), None, cfg).train()
    step = int(re.search(r"step (\d+)", str(info.value)).group(1))
    assert 1 <= step <= 12


def test_checkpoint_written_atomically(tmp_path):
    set_seed(3)
    model = tiny_gpt()
    ckpt = tmp_path / "model.params"
    cfg = TrainerConfig(max_epochs=2, batch_size=8, learning_rate=1e-3, ckpt_path=str(ckpt))
    Trainer(model, PatternDataset(n=16), None, cfg).train()
    assert os.listdir(tmp_path) == ["model.params"]
    state = torch.load(ckpt)
    own = model.state_dict()
    assert set(state) == set(own)
    assert all(torch.equal(state[k], own[k]) for k in own)
    fresh = tiny_gpt()
    fresh.load_state_dict(state)


def test_save_state_dict_leaves_no_temporary(tmp_path):
    path = tmp_path / "x.params"
    checkpoint.save_state_dict({"a": torch.arange(3)}, str(path))
    checkpoint.save_state_dict({"a": torch.arange(4)}, str(path))
    assert os.listdir(tmp_path) == ["x.params"]
    assert torch.equal(torch.load(path)["a"], torch.arange(4))


# -----------------------------------------------------------------------------
# resumable training: an interrupted run resumed with `resume` ends where an
# uninterrupted one does

DOCS = "\n".join(f"document {i}: " + "the quick brown fox jumps over the lazy dog"[i:] for i in range(10))


class Interrupt(FakeWriter):
    """Logs like FakeWriter; raises `error` once training step `after` has been logged."""

    def __init__(self, after, error):
        super().__init__()
        self.after, self.error = after, error

    def add_scalar(self, tag, value, step):
        super().add_scalar(tag, value, step)
        if tag == "train/lr" and step == self.after:
            raise self.error


def resumable_run(tmp_path, writer, resume=False, save_every=0, seed=0, batched=False, save_every_minutes=0):
    """(model, trainer) after training a tiny GPT with dropout on span corruption: 3 epochs of
    3 batches (the last one short), every random draw (shuffling, corruption, dropout) in play;
    batched: the batches of corruption.CorruptionBatches (its own generator) instead of a DataLoader."""
    from corruption import CorruptionBatches
    from dataset import CharCorruptionDataset
    set_seed(seed)
    dataset = CharCorruptionDataset(DOCS, 32)
    model = tiny_gpt(vocab=dataset.vocab_size, block=32, n_layer=1, n_embd=16, embd_pdrop=0.1,
                     resid_pdrop=0.1, attn_pdrop=0.1)
    cfg = TrainerConfig(max_epochs=3, batch_size=4, learning_rate=3e-3, lr_decay=True, warmup_tokens=200,
                        final_tokens=3 * 10 * 31, num_workers=0, writer=writer,
                        resume_path=str(tmp_path / "state.ckpt"), save_every=save_every,
                        save_every_minutes=save_every_minutes, resume=resume,
                        train_loader=CorruptionBatches(dataset, 4) if batched else None)
    t = Trainer(model, dataset, None, cfg)
    t.train()
    return model, t


def rates(writer):
    return {step: lr for tag, lr, step in writer.calls if tag == "train/lr"}


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("after", [2, 3, 7])  # mid-epoch, at the end of an epoch, mid-epoch later
def test_ctrl_c_then_resume_matches_an_uninterrupted_run(tmp_path, after, batched):
    (tmp_path / "straight").mkdir()
    straight = FakeWriter()
    reference, done = resumable_run(tmp_path / "straight", straight, batched=batched)
    first = Interrupt(after, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        resumable_run(tmp_path, first, batched=batched)
    state = torch.load(tmp_path / "state.ckpt", weights_only=False)
    assert state["step"] == after
    second = FakeWriter()
    # another seed: what the resumed run draws must come from the checkpoint
    model, resumed = resumable_run(tmp_path, second, resume=True, seed=123, batched=batched)
    assert min(rates(second)) == after + 1
    assert {**rates(first), **rates(second)} == rates(straight)  # the same learning-rate schedule
    assert resumed.tokens == done.tokens and resumed.step == done.step == 9
    own, ref = model.state_dict(), reference.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref)


def test_ctrl_c_inside_the_optimizer_step_waits_for_the_step_to_end(tmp_path, monkeypatch):
    """A real SIGINT arriving just after the weights changed, before the step was counted: the
    checkpoint must not hold an updated model with the old step count (resuming would redo it)."""
    (tmp_path / "straight").mkdir()
    reference, _ = resumable_run(tmp_path / "straight", None)
    make = trainer.make_optimizer

    def make_and_interrupt(model, config):
        optimizer = make(model, config)
        steps = []

        def press_ctrl_c(opt, args, kwargs):
            steps.append(1)
            if len(steps) == 4:
                os.kill(os.getpid(), signal.SIGINT)

        optimizer.register_step_post_hook(press_ctrl_c)
        return optimizer

    monkeypatch.setattr(trainer, "make_optimizer", make_and_interrupt)
    with pytest.raises(KeyboardInterrupt):
        resumable_run(tmp_path, None)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    assert torch.load(tmp_path / "state.ckpt", weights_only=False)["step"] == 4
    model, _ = resumable_run(tmp_path, None, resume=True, seed=123)
    own, ref = model.state_dict(), reference.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref)


def test_second_ctrl_c_is_not_deferred():
    interrupt = checkpoint.DeferredInterrupt().start()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.pending
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here at the latest
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        interrupt.check()  # once only
    finally:
        interrupt.stop()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_crash_resumes_from_the_last_periodic_checkpoint(tmp_path):
    """A run killed outright (no Ctrl-C handler runs) continues from its last --save_every checkpoint."""
    (tmp_path / "straight").mkdir()
    straight = FakeWriter()
    reference, done = resumable_run(tmp_path / "straight", straight, save_every=1)
    with pytest.raises(RuntimeError):
        resumable_run(tmp_path, Interrupt(8, RuntimeError("killed")), save_every=1)
    assert torch.load(tmp_path / "state.ckpt", weights_only=False)["step"] == 6  # end of epoch 2
    second = FakeWriter()
    model, resumed = resumable_run(tmp_path, second, resume=True, save_every=1, seed=123)
    assert sorted(rates(second)) == [7, 8, 9]
    assert rates(second) == {s: lr for s, lr in rates(straight).items() if s > 6}
    assert resumed.tokens == done.tokens
    own, ref = model.state_dict(), reference.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref)


class Clock:
    """trainer.time for a test: monotonic() is what the test says."""
    now = 0.0

    def monotonic(self):
        return self.now


class Ticking(Interrupt):
    """Interrupt whose every training step takes `seconds` of the clock."""

    def __init__(self, clock, seconds, after, error):
        super().__init__(after, error)
        self.clock, self.seconds = clock, seconds

    def add_scalar(self, tag, value, step):
        if tag == "train/lr":
            self.clock.now += self.seconds
        super().add_scalar(tag, value, step)


def test_checkpoint_every_few_minutes_resumes_mid_epoch(tmp_path, monkeypatch):
    """save_every_minutes: a run killed outright loses at most that much, even part way through an epoch."""
    (tmp_path / "straight").mkdir()
    straight = FakeWriter()
    reference, done = resumable_run(tmp_path / "straight", straight)
    clock, saved = Clock(), []
    save = checkpoint.save
    monkeypatch.setattr(trainer, "time", clock)
    monkeypatch.setattr(checkpoint, "save", lambda t: (saved.append(t.step), save(t)))
    # 35 s a step, a checkpoint every minute: after steps 2 and 4; killed during step 6
    with pytest.raises(RuntimeError):
        resumable_run(tmp_path, Ticking(clock, 35, 6, RuntimeError("killed")), save_every_minutes=1)
    monkeypatch.undo()
    assert saved == [2, 4]
    state = torch.load(tmp_path / "state.ckpt", weights_only=False)
    assert (state["epoch"], state["iteration"]) == (1, 1)  # epoch 2 of 3, one of its 3 batches done
    second = FakeWriter()
    model, resumed = resumable_run(tmp_path, second, resume=True, seed=123)
    assert rates(second) == {s: lr for s, lr in rates(straight).items() if s > 4}
    assert resumed.tokens == done.tokens
    own, ref = model.state_dict(), reference.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref)


def test_sigterm_is_deferred_like_ctrl_c_and_a_second_one_too():
    interrupt = checkpoint.DeferredInterrupt().start()
    try:
        assert signal.getsignal(signal.SIGTERM) == interrupt.defer  # else SIGTERM would end pytest
        interrupt.check()  # nothing pending
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # torchrun passing on what `timeout` sent to us all
        time.sleep(0.1)
        with pytest.raises(KeyboardInterrupt) as info:
            interrupt.check()
        assert isinstance(info.value, checkpoint.Interrupted) and info.value.signum == signal.SIGTERM
        interrupt.check()  # once only
    finally:
        interrupt.stop()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_ignored_sigint_stays_ignored():
    """What nohup and a shell's `cmd &` ask for; SIGTERM still stops the run."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        interrupt = checkpoint.DeferredInterrupt().start()
        try:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            interrupt.check()
            assert signal.getsignal(signal.SIGTERM) == interrupt.defer
        finally:
            interrupt.stop()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("bad", ["cut short", "a params file", "another model's"])
def test_resuming_from_a_bad_checkpoint_names_it(tmp_path, bad):
    resumable_run(tmp_path, None, save_every=1)
    path = tmp_path / "state.ckpt"
    if bad == "cut short":
        path.write_bytes(path.read_bytes()[:5000])
    elif bad == "a params file":
        torch.save(tiny_gpt().state_dict(), path)
    else:
        state = torch.load(path, weights_only=False)
        state["model"] = tiny_gpt().state_dict()
        torch.save(state, path)
    before = path.read_bytes()
    with pytest.raises(UserError) as info:
        resumable_run(tmp_path, None, resume=True)
    message = str(info.value)
    assert str(path) in message and "cannot resume from" in message and "\n" not in message
    assert path.read_bytes() == before


def test_save_state_dict_on_a_full_disk(tmp_path, monkeypatch):
    """A failed write (a full disk, Ctrl-C) keeps the previous file whole and leaves no temporary."""
    path = tmp_path / "x.params"
    checkpoint.save_state_dict({"a": torch.arange(3)}, str(path))
    real_save = torch.save

    def save_half(obj, f):
        real_save(obj, f)
        with open(f, "r+b") as handle:
            handle.truncate(10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half)
    with pytest.raises(OSError):
        checkpoint.save_state_dict({"a": torch.arange(4)}, str(path))
    assert os.listdir(tmp_path) == ["x.params"]
    assert torch.equal(torch.load(path)["a"], torch.arange(3))
