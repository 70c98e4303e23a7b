"""Fast training paths against the plain ones: on the same batch, the
fused-attention model gives the plain model's loss and gradients, and bf16 autocast a loss close
to fp32 (on the CPU too, so CI runs the autocast path that CUDA takes); the Trainer with fused
AdamW and bf16 autocast keeps fp32 weights that follow the plain Trainer's; --compile falls back
to the eager model where compiling fails and saves the uncompiled model's state dict; a run fed
by CorruptionBatches resumes its random stream."""
import pytest
import torch
import torch.nn as nn

from corruption import CorruptionBatches
from dataset import CharCorruptionDataset
from model import GPT, VARIANTS, config_for_variant
from trainer import Trainer, TrainerConfig
from utils import set_seed

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_loss_is_close_to_fp32(variant, device):
    ds = CharCorruptionDataset(DOCS, 32)
    x, y = next(iter(CorruptionBatches(ds, 8, device=device, seed=0)))
    plain = tiny(variant, ds.vocab_size, fused=False).to(device)
    fast = tiny(variant, ds.vocab_size, fused=True, seed=1).to(device)
    fast.load_state_dict(plain.state_dict())
    plain_loss, plain_grads = loss_and_grads(plain, x, y)
    fast_loss, fast_grads = loss_and_grads(fast, x, y, amp_dtype=torch.bfloat16)
    assert fast_loss == pytest.approx(plain_loss, rel=2e-2)
    for name, grad in fast_grads.items():  # autocast computes in bf16 but leaves fp32 gradients
        assert grad.dtype == torch.float32, name
        assert torch.isfinite(grad).all(), name
    cosine = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in fast_grads.values()]),
                                                   torch.cat([g.flatten() for g in plain_grads.values()]), dim=0)
    assert cosine > 0.99


def trained_weights(device, fused_adamw, amp_dtype, steps=6):
    """A tiny vanilla GPT after `steps` Trainer steps on a fixed stream of batches."""
    ds = CharCorruptionDataset(DOCS, 32)
    batches = list(CorruptionBatches(ds, 4, device=device, seed=0))  # 3 batches, the same for every run
    model = tiny("vanilla", ds.vocab_size, fused=True).to(device)
    cfg = TrainerConfig(max_epochs=steps // len(batches), batch_size=4, learning_rate=3e-3, device=device,
                        fused_adamw=fused_adamw, amp_dtype=amp_dtype, train_loader=batches)
    Trainer(model, ds, None, cfg).train()
    return model.state_dict()


@pytest.mark.parametrize("device", DEVICES)
def test_fused_adamw_and_bf16_autocast_train_like_the_plain_trainer(device):
    """The fast path's optimizer and dtype settings, through the Trainer: fused AdamW takes the
    steps the plain AdamW takes (up to rounding); under bf16 autocast the weights stay fp32 and end
    close to fp32 training's, and far from where they started."""
    set_seed(0)
    start = tiny("vanilla", CharCorruptionDataset(DOCS, 32).vocab_size, fused=True).state_dict()
    plain = trained_weights(device, fused_adamw=False, amp_dtype=None)
    fused = trained_weights(device, fused_adamw=True, amp_dtype=None)
    autocast = trained_weights(device, fused_adamw=True, amp_dtype=torch.bfloat16)
    for name, weight in plain.items():
        torch.testing.assert_close(fused[name], weight, atol=1e-5, rtol=1e-4, msg=name)
        assert autocast[name].dtype == torch.float32, name
    moved = sum((plain[k].cpu() - start[k]).norm() for k in plain)
    apart = sum((autocast[k] - plain[k]).norm() for k in plain)
    assert apart < 0.1 * moved


# ----------------------------------------------------------------------------- torch.compile


class Uncompilable(nn.Module):
    """What torch.compile returns where compiling fails: a wrapper (holding the model as
    _orig_mod, like torch's) whose first call raises."""

    def __init__(self, model, backend="inductor"):
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
