"""Training on the real tokens only (packing.py): trimming and packing a batch give the padded batch's loss
and gradients for every variant, in pretraining and finetuning; with dropout the loss keeps its
distribution; the Trainer packs only causal models and still counts every position for the schedule."""
import pytest
import torch

from corruption import CorruptionBatches
from dataset import CharCorruptionDataset, NameDataset
from model import GPT, VARIANTS, config_for_variant
from packing import Packing, needed_lengths
from trainer import Trainer, TrainerConfig

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = "\n".join(f"document {i}: " + "the quick brown fox jumps over the lazy dog"[i:] for i in range(12))
PEOPLE = "".join(f"Where was person {name} born?\t{place}\n" for name, place in
                 [("Ada", "Paris"), ("Bo", "Rome"), ("Cyd", "Oslo"), ("Dee", "Lima"), ("Ed", "Bonn"), ("Flo", "Kyiv")])
BLOCK = 64


def tiny(variant, vocab_size, fused=True, dropout=0.0, **kwargs):
    torch.manual_seed(0)
    return GPT(config_for_variant(variant, vocab_size, BLOCK, bottleneck_dim=8, n_layer=3, n_head=2, n_embd=16,
                                  embd_pdrop=dropout, resid_pdrop=dropout, attn_pdrop=dropout, fused_attention=fused,
                                  **kwargs))


def pretraining_batch():
    ds = CharCorruptionDataset(DOCS + "\n" + PEOPLE.replace("\t", " "), BLOCK)
    return ds, next(iter(CorruptionBatches(ds, 12, seed=0)))


def finetuning_batch():
    ds, _ = pretraining_batch()
    names = NameDataset(ds, PEOPLE)
    x, y = zip(*(names[i] for i in range(len(names))))
    return ds, (torch.stack(x), torch.stack(y))


def loss_and_grads(model, x, y, packed):
    model.zero_grad(set_to_none=True)
    _, loss = model(x, y, packed=packed)
    loss.backward()
    return loss.item(), {name: p.grad for name, p in model.named_parameters()}


def test_needed_lengths_end_at_the_last_real_target():
    y = torch.tensor([[0, 0, 5, 6, 0, 0], [3, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    assert needed_lengths(y).tolist() == [4, 1, 0, 6]


@pytest.mark.parametrize("groups", [1, 2, 3, 8])
def test_packing_keeps_each_rows_real_positions(groups):
    y = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 0, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0],
                      [1, 1, 0, 0, 0, 0, 0]])
    packing = Packing(y, groups=groups)
    positions = torch.arange(7).expand(5, 7)
    rows = torch.arange(5)[:, None].expand(5, 7)
    kept = [(r, t) for r, t in zip(packing.pack(rows).tolist(), packing.pack(positions).tolist())]
    assert sorted(kept) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (3, 0),
                            (4, 0), (4, 1)]
    assert packing.positions.tolist() == [t for _, t in kept]
    # every group's rows padded to its longest, left-out positions zero; fn's outputs come back in packed order
    tokens = torch.arange(1, 13, dtype=torch.float)[:, None]  # (N, 1)
    seen = []

    def fn(rows_of_group):
        seen.append(rows_of_group.clone())
        return 2 * rows_of_group

    assert torch.equal(packing.map_padded(fn, tokens), 2 * tokens)
    assert sum(g.numel() for g in seen) == packing.slots and sum((g != 0).sum() for g in seen) == 12
    assert max(g.size(1) for g in seen) == 6 and len(seen) == len(packing.shapes) <= groups


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain_attention"])
@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_trimmed_and_packed_batches_give_the_padded_loss_and_gradients(variant, phase, fused):
    ds, (x, y) = pretraining_batch() if phase == "pretrain" else finetuning_batch()
    model = tiny(variant, ds.vocab_size, fused)
    assert needed_lengths(y).max() < x.size(1)  # the batch ends in padding that no row needs
    loss, grads = loss_and_grads(model, x, y, packed=False)
    T = int(needed_lengths(y).max())  # the trailing positions that no row needs cut off
    x_trimmed, y_trimmed = x[:, :T], y[:, :T]
    for xs, ys, packed in ((x_trimmed, y_trimmed, False), (x, y, True), (x_trimmed, y_trimmed, True)):
        other_loss, other_grads = loss_and_grads(model, xs, ys, packed)
        assert other_loss == pytest.approx(loss, abs=1e-5)
        for name, grad in grads.items():
            torch.testing.assert_close(other_grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_packed_logits_are_the_padded_ones_at_the_kept_positions():
    ds, (x, y) = pretraining_batch()
    model = tiny("rope", ds.vocab_size).eval()
    padded, _ = model(x, y)
    packed, _ = model(x, y, packed=True)
    packing = Packing(y)
    torch.testing.assert_close(packed, packing.pack(padded), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["vanilla", "synthesizer"])
def test_with_dropout_the_packed_loss_has_the_padded_distribution(variant):
    """Dropout draws for fewer elements, so the two paths' random streams differ; the loss's distribution over
    many draws (its mean and spread) must not, or the packed path would train another model."""
    ds, (x, y) = pretraining_batch()
    model = tiny(variant, ds.vocab_size, dropout=0.3)
    with torch.no_grad():  # larger weights than at initialisation, whose near-uniform outputs dropout hardly moves
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    torch.manual_seed(1)
    with torch.no_grad():
        losses = {packed: torch.tensor([model(x, y, packed=packed)[1].item() for _ in range(300)])
                  for packed in (False, True)}
    padded, packed = losses[False], losses[True]
    standard_error = (padded.var() / len(padded) + packed.var() / len(packed)).sqrt()
    assert abs(padded.mean() - packed.mean()) < 4 * standard_error
    assert 0.75 < packed.std() / padded.std() < 1.33
    # without dropout the loss would not vary at all: the test sees dropout at work on both paths
    assert padded.std() > 0.05 and packed.std() > 0.05


def trained(real_tokens, **model_options):
    ds, _ = pretraining_batch()
    batches = list(CorruptionBatches(ds, 4, seed=0))
    model = tiny("vanilla", ds.vocab_size, **model_options)
    cfg = TrainerConfig(max_epochs=1, batch_size=4, learning_rate=3e-3, lr_decay=True, warmup_tokens=100,
                        final_tokens=10_000, train_loader=batches, real_tokens=real_tokens)
    trainer = Trainer(model, ds, None, cfg)
    trainer.train()
    return trainer, model


def test_the_trainer_on_real_tokens_follows_the_padded_trainer():
    padded, padded_model = trained(False)
    packed, packed_model = trained(True)
    assert packed.real_tokens and not padded.real_tokens
    assert packed.tokens == padded.tokens == sum(y.numel() for _, y in packed.train_loader)  # the course's count
    for (name, a), b in zip(padded_model.state_dict().items(), packed_model.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)


def test_the_trainer_packs_no_model_that_sees_the_future():
    """mask_after_softmax leaks later positions through the softmax's denominator: padding changes its loss."""
    trainer, _ = trained(True, fused=False, mask_after_softmax=True)
    assert not trainer.real_tokens
    with pytest.raises(AssertionError, match="causal"):
        trainer.model(*trainer.train_loader[0], packed=True)
