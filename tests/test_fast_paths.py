"""Fast training paths against the plain ones (issue 5, items 2 and 6): on the same batch, the
fused-attention model gives the plain model's loss and gradients (and bf16 autocast on CUDA a
loss close to fp32); --compile falls back to the eager model where compiling fails and saves the
uncompiled model's state dict; a run fed by CorruptionBatches resumes its random stream."""
import pytest
import torch
import torch.nn as nn

from corruption import CorruptionBatches
from dataset import CharCorruptionDataset
from model import GPT, VARIANTS, config_for_variant
from trainer import Trainer, TrainerConfig
from utils import set_seed

DOCS = "\n".join(f"document {i}: " + "the quick brown fox jumps over the lazy dog"[i:] for i in range(10))


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(variant, vocab_size, fused, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return GPT(config_for_variant(variant, vocab_size, 32, bottleneck_dim=8, n_layer=2, n_head=2, n_embd=16,
                                  embd_pdrop=dropout, resid_pdrop=dropout, attn_pdrop=dropout,
                                  fused_attention=fused))


def loss_and_grads(model, x, y, amp_dtype=None):
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        _, loss = model(x, y)
    loss.backward()
    return loss.item(), {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_and_plain_training_steps_agree(variant):
    """One training batch of the fast data path, through the plain and the fused-attention model
    with the same weights: the same loss and gradients (in fp32, up to rounding)."""
    ds = CharCorruptionDataset(DOCS, 32)
    x, y = next(iter(CorruptionBatches(ds, 8, seed=0)))  # (8, 31) each
    plain = tiny(variant, ds.vocab_size, fused=False)
    fast = tiny(variant, ds.vocab_size, fused=True, seed=1)
    fast.load_state_dict(plain.state_dict())
    plain_loss, plain_grads = loss_and_grads(plain, x, y)
    fast_loss, fast_grads = loss_and_grads(fast, x, y)
    assert fast_loss == pytest.approx(plain_loss, abs=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast is the CUDA fast path")
@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_loss_is_close_to_fp32(variant):
    ds = CharCorruptionDataset(DOCS, 32)
    x, y = next(iter(CorruptionBatches(ds, 8, device="cuda", seed=0)))
    plain = tiny(variant, ds.vocab_size, fused=False).cuda()
    fast = tiny(variant, ds.vocab_size, fused=True, seed=1).cuda()
    fast.load_state_dict(plain.state_dict())
    plain_loss, _ = loss_and_grads(plain, x, y)
    fast_loss, _ = loss_and_grads(fast, x, y, amp_dtype=torch.bfloat16)
    assert fast_loss == pytest.approx(plain_loss, rel=2e-2)


# ----------------------------------------------------------------------------- torch.compile


class Uncompilable(nn.Module):
    """What torch.compile returns where compiling fails: a wrapper (holding the model as
    _orig_mod, like torch's) whose first call raises."""

    def __init__(self, model):
        super().__init__()
        self._orig_mod = model

    def forward(self, *args, **kwargs):
        raise RuntimeError("no working C++ compiler")


def compile_unavailable(model, **kwargs):
    raise RuntimeError("torch.compile is not supported on this platform")


def train_tiny(tmp_path, name, compile):
    set_seed(0)
    ds = CharCorruptionDataset(DOCS, 32)
    model = tiny("vanilla", ds.vocab_size, fused=True, dropout=0.1)
    cfg = TrainerConfig(max_epochs=2, batch_size=4, learning_rate=3e-3, compile=compile,
                        ckpt_path=str(tmp_path / name), train_loader=CorruptionBatches(ds, 4))
    Trainer(model, ds, None, cfg).train()
    return model


@pytest.mark.parametrize("failure,note", [(Uncompilable, "torch.compile failed (RuntimeError: no working C++"),
                                          (compile_unavailable, "torch.compile unavailable (RuntimeError")])
def test_compile_falls_back_to_the_eager_model(tmp_path, monkeypatch, capsys, failure, note):
    eager = train_tiny(tmp_path, "eager.params", compile=False)
    monkeypatch.setattr(torch, "compile", failure)
    fallen_back = train_tiny(tmp_path, "compiled.params", compile=True)
    assert note in capsys.readouterr().out
    own, ref = fallen_back.state_dict(), eager.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref)  # the same training, from the first batch on
    saved = torch.load(tmp_path / "compiled.params", weights_only=True)
    assert list(saved) == list(ref)  # the uncompiled model's names, no "_orig_mod." prefix


# ----------------------------------------------------------------------------- resuming


class InterruptAfter:
    """A TensorBoard writer stand-in: records learning rates, Ctrl-C once step `after` is logged."""

    def __init__(self, after=None):
        self.after, self.rates = after, {}

    def add_scalar(self, tag, value, step):
        if tag == "train/lr":
            self.rates[step] = value
            if step == self.after:
                raise KeyboardInterrupt


def corruption_run(tmp_path, writer, resume=False, seed=0):
    """A tiny GPT with dropout on CorruptionBatches: 3 epochs of 3 batches (the last one short)."""
    set_seed(seed)
    ds = CharCorruptionDataset(DOCS, 32)
    model = tiny("vanilla", ds.vocab_size, fused=True, dropout=0.1, seed=seed)
    cfg = TrainerConfig(max_epochs=3, batch_size=4, learning_rate=3e-3, lr_decay=True, warmup_tokens=200,
                        final_tokens=3 * 10 * 31, writer=writer, resume_path=str(tmp_path / "state.ckpt"),
                        resume=resume, train_loader=CorruptionBatches(ds, 4))  # seed drawn from torch's RNG
    Trainer(model, ds, None, cfg).train()
    return model


@pytest.mark.parametrize("after", [2, 3, 7])  # mid-epoch, at the end of an epoch, mid-epoch later
def test_resume_continues_the_corruption_stream(tmp_path, after):
    (tmp_path / "straight").mkdir()
    straight = InterruptAfter()
    reference = corruption_run(tmp_path / "straight", straight)
    first = InterruptAfter(after)
    with pytest.raises(KeyboardInterrupt):
        corruption_run(tmp_path, first)
    second = InterruptAfter()
    model = corruption_run(tmp_path, second, resume=True, seed=123)  # another seed: the checkpoint's counts
    assert {**first.rates, **second.rates} == straight.rates
    own, ref = model.state_dict(), reference.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref)
