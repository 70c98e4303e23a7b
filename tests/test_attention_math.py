"""
Tests for src/attention_math.py.

The full mechanism (self_attention) is checked against PyTorch's own
multi_head_attention_forward, given identity input/output projections so that
only the attention itself is compared, and against the model's layers
(attention.py), whose plain path is these steps inline: bit for bit, cached
decoding, the naive mask and the synthesizer included. The small pieces get
unit tests with hand-computable expected values.
"""
import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from attention_math import (  # noqa: E402
    apply_causal_mask,
    attn_scaled,
    attn_softmax,
    compute_outputs,
    make_causal_mask,
    merge_heads,
    pairwise_similarities,
    self_attention,
    split_heads,
    zero_masked_weights,
)
from attention import CausalCrossAttention, CausalSelfAttention, KVCache, SynthesizerAttention  # noqa: E402
from model import GPTConfig  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def torch_reference(Q, K, V, n_heads, causal):
    """PyTorch's multi-head attention with identity projections: (B, T, d) in, (B, Tq, d) out."""
    B, Tq, d = Q.shape
    Tk = K.size(1)
    eye = torch.eye(d, dtype=Q.dtype)
    in_proj_weight = torch.cat([eye, eye, eye], dim=0)  # (3d, d): q, k, v all unchanged
    attn_mask = None
    if causal:
        # PyTorch's boolean mask is True where attention is NOT allowed
        attn_mask = ~torch.ones(Tq, Tk, dtype=torch.bool).tril()
    out, _ = F.multi_head_attention_forward(
        Q.transpose(0, 1), K.transpose(0, 1), V.transpose(0, 1),  # (T, B, d): sequence-first
        d, n_heads,
        in_proj_weight, torch.zeros(3 * d, dtype=Q.dtype),
        None, None, False, 0.0,
        eye, torch.zeros(d, dtype=Q.dtype),
        training=False, need_weights=False, attn_mask=attn_mask,
    )
    return out.transpose(0, 1)  # (B, Tq, d)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n_heads", [1, 2, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_pytorch(dtype, n_heads, causal):
    g = torch.Generator().manual_seed(1000 * n_heads + causal)
    B, T, d = 3, 7, 16
    Q, K, V = (torch.randn(B, T, d, generator=g, dtype=dtype) for _ in range(3))
    ours = self_attention(Q, K, V, n_heads, causal)
    ref = torch_reference(Q, K, V, n_heads, causal)
    assert ours.shape == (B, T, d)
    assert (ours - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("n_heads", [1, 4])
def test_cross_attention_different_lengths_matches_pytorch(n_heads):
    g = torch.Generator().manual_seed(7)
    B, Tq, Tk, d = 2, 3, 9, 8
    Q = torch.randn(B, Tq, d, generator=g, dtype=torch.float64)
    K = torch.randn(B, Tk, d, generator=g, dtype=torch.float64)
    V = torch.randn(B, Tk, d, generator=g, dtype=torch.float64)
    ours = self_attention(Q, K, V, n_heads, causal=False)
    ref = torch_reference(Q, K, V, n_heads, causal=False)
    assert ours.shape == (B, Tq, d)
    assert (ours - ref).abs().max().item() < 1e-5


def test_causal_and_full_attention_differ():
    # guards against a causal flag that is silently ignored
    g = torch.Generator().manual_seed(3)
    Q, K, V = (torch.randn(2, 5, 8, generator=g, dtype=torch.float64) for _ in range(3))
    full = self_attention(Q, K, V, 2, causal=False)
    causal = self_attention(Q, K, V, 2, causal=True)
    assert (full - causal).abs().max().item() > 1e-3
    # the last query sees every key in both cases
    assert torch.allclose(full[:, -1], causal[:, -1])
    # the first query sees only the first key, so it returns the first value exactly
    assert torch.allclose(causal[:, 0], V[:, 0])


def test_causal_output_ignores_future_keys():
    g = torch.Generator().manual_seed(4)
    Q, K, V = (torch.randn(1, 6, 8, generator=g, dtype=torch.float64) for _ in range(3))
    out = self_attention(Q, K, V, 2, causal=True)
    K2, V2 = K.clone(), V.clone()
    K2[:, 4:] += 10.0
    V2[:, 4:] -= 10.0
    out2 = self_attention(Q, K2, V2, 2, causal=True)
    assert torch.allclose(out[:, :4], out2[:, :4])
    assert not torch.allclose(out[:, 4:], out2[:, 4:])


def test_split_heads_shape_and_layout():
    x = torch.arange(2 * 3 * 6, dtype=torch.float32).view(2, 3, 6)  # (B, T, d)
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 3, 2)  # (B, nh, T, hs)
    # head 1 of batch 0, position 2 holds features 2..3 of that position
    assert torch.equal(h[0, 1, 2], x[0, 2, 2:4])


@pytest.mark.parametrize("n_heads", [1, 2, 4, 8])
def test_split_merge_round_trip(n_heads):
    g = torch.Generator().manual_seed(n_heads)
    x = torch.randn(3, 5, 8, generator=g)
    assert torch.equal(merge_heads(split_heads(x, n_heads)), x)


def test_make_causal_mask_square():
    expected = torch.tensor([
        [1, 0, 0],
        [1, 1, 0],
        [1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(make_causal_mask(3, 3), expected)


@pytest.mark.parametrize("Tq,Tk,offset", [(3, 5, 2), (2, 6, 1), (4, 4, 0), (1, 7, 6)])
def test_make_causal_mask_offset(Tq, Tk, offset):
    mask = make_causal_mask(Tq, Tk, offset=offset)
    assert mask.shape == (Tq, Tk) and mask.dtype == torch.bool
    for i in range(Tq):
        for j in range(Tk):
            assert mask[i, j].item() == (j <= i + offset), (i, j)


def test_apply_causal_mask_zero_weight_after_softmax():
    g = torch.Generator().manual_seed(5)
    scores = torch.randn(2, 3, 4, 4, generator=g)  # (B, nh, Tq, Tk)
    mask = make_causal_mask(4, 4)
    w = attn_softmax(apply_causal_mask(scores, mask))
    assert torch.all(w[..., ~mask] == 0)
    assert torch.all(w[..., mask] > 0)
    # the visible keys keep their relative weights: softmax over the allowed prefix only
    for i in range(4):
        assert torch.allclose(w[..., i, : i + 1], torch.softmax(scores[..., i, : i + 1], dim=-1))


def test_zero_masked_weights_is_the_naive_mask_after_softmax():
    """The CS224N handout's naive mask: softmax over every key, then zero the future weights without renormalising."""
    g = torch.Generator().manual_seed(7)
    scores = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)  # (B, nh, Tq, Tk)
    mask = make_causal_mask(5, 5)
    w = zero_masked_weights(attn_softmax(scores), mask)
    assert torch.all(w[..., ~mask] == 0)
    for i in range(5):  # the visible weights keep the full softmax's values, future keys in its denominator
        full = torch.exp(scores[..., i, :]) / torch.exp(scores[..., i, :]).sum(-1, keepdim=True)
        assert torch.allclose(w[..., i, : i + 1], full[..., : i + 1])
    rows = w.sum(-1)  # so rows sum to less than 1, except the last, which sees every key
    assert torch.all(rows[..., :-1] < 1 - 1e-6) and torch.allclose(rows[..., -1], torch.ones(2, 3, dtype=torch.float64))
    assert not torch.allclose(w, attn_softmax(apply_causal_mask(scores, mask)))


def test_softmax_rows_sum_to_one_and_are_ordered():
    g = torch.Generator().manual_seed(6)
    scores = torch.randn(2, 5, 7, generator=g, dtype=torch.float64) * 10
    w = attn_softmax(scores)
    assert torch.allclose(w.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    assert torch.all(w >= 0)
    # normalised over keys (last dim), not over queries
    assert not torch.allclose(w.sum(-2), torch.ones(2, 7, dtype=torch.float64))
    # a larger score gets a larger weight
    assert torch.equal(w.argmax(-1), scores.argmax(-1))


def test_softmax_known_values():
    w = attn_softmax(torch.tensor([[0.0, math.log(3.0)]]))
    assert torch.allclose(w, torch.tensor([[0.25, 0.75]]))


def test_attn_scaled():
    scores = torch.tensor([[2.0, -4.0], [8.0, 0.0]])
    assert torch.allclose(attn_scaled(scores, 4), scores / 2)
    assert torch.allclose(attn_scaled(scores, 64), scores / 8)
    assert torch.allclose(attn_scaled(scores, 1), scores)


def test_pairwise_similarities_and_compute_outputs():
    Q = torch.tensor([[[1.0, 0.0], [1.0, 2.0]]])  # (B=1, Tq=2, d=2)
    K = torch.tensor([[[3.0, 4.0], [0.0, -1.0], [2.0, 2.0]]])  # (1, Tk=3, 2)
    expected = torch.tensor([[[3.0, 0.0, 2.0], [11.0, -2.0, 6.0]]])
    assert torch.equal(pairwise_similarities(Q, K), expected)
    w = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]]])
    V = torch.tensor([[[2.0], [4.0], [8.0]]])  # (1, Tk, dv=1)
    assert torch.allclose(compute_outputs(w, V), torch.tensor([[[3.0], [7.0]]]))


# ----------------------------------------------------------------------------- the model's path


def model_layer(cls, **switches):
    """A layer of attention.py with random weights, n_head 4, n_embd 32, no dropout."""
    cfg = GPTConfig(11, 16, n_head=4, n_embd=32, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, **switches)
    layer = cls(cfg).eval()
    g = torch.Generator().manual_seed(31)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return layer


def step_by_step(layer, scores, v, offset=0, mask_after_softmax=False):
    """The plain path in this module's steps, from the scores (B, nh, Tq, Tk) and values
    (B, nh, Tk, hs) to the layer's output projection: (B, Tq, d)."""
    mask = make_causal_mask(scores.size(-2), scores.size(-1), offset=offset)
    if mask_after_softmax:
        weights = zero_masked_weights(attn_softmax(scores), mask)
    else:
        weights = attn_softmax(apply_causal_mask(scores, mask))
    return layer.proj(merge_heads(compute_outputs(weights, v)))


def dot_product_steps(layer, x_kv, x_q, offset=0, mask_after_softmax=False):
    q, k, v = (split_heads(t, 4) for t in (layer.query(x_q), layer.key(x_kv), layer.value(x_kv)))
    scores = attn_scaled(pairwise_similarities(q, k), q.size(-1))  # (B, nh, Tq, Tk)
    return step_by_step(layer, scores, v, offset, mask_after_softmax)


@pytest.mark.parametrize("fused", [False, True])
def test_self_attention_is_the_models_path(fused):
    """CausalSelfAttention(x) is proj(self_attention(query(x), key(x), value(x))): bit for bit on the
    plain path, which takes the same steps, up to rounding on the fused one."""
    layer = model_layer(CausalSelfAttention, fused_attention=fused)
    x = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(32))
    with torch.no_grad():
        ours = layer.proj(self_attention(layer.query(x), layer.key(x), layer.value(x), 4, causal=True))
        assert torch.equal(dot_product_steps(layer, x, x), ours)
        if fused:
            torch.testing.assert_close(layer(x), ours, atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(layer(x), ours)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("Tq,Tk", [(5, 12), (12, 5)])
def test_cross_attention_is_the_models_path(Tq, Tk, fused):
    layer = model_layer(CausalCrossAttention, fused_attention=fused)
    g = torch.Generator().manual_seed(33)
    x_kv, x_q = torch.randn(2, Tk, 32, generator=g), torch.randn(2, Tq, 32, generator=g)
    with torch.no_grad():
        ours = layer.proj(self_attention(layer.query(x_q), layer.key(x_kv), layer.value(x_kv), 4, causal=True))
        if fused:
            torch.testing.assert_close(layer(x_kv, x_q), ours, atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(layer(x_kv, x_q), ours)


def test_cached_step_is_the_offset_mask():
    """A decoding step through the model's KV cache: the new queries against every key so far, under
    make_causal_mask(Tq, Tk, offset) with offset = the number of cached positions."""
    layer = model_layer(CausalSelfAttention)
    x = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(34))
    cache = KVCache(16)
    with torch.no_grad():
        layer(x[:, :9], cache)
        cache.offset = 9
        step = layer(x[:, 9:12], cache)  # (B, 3, d): positions 9, 10, 11
        torch.testing.assert_close(step, dot_product_steps(layer, x[:, :12], x[:, 9:12], offset=9),
                                   atol=1e-5, rtol=1e-5)


def test_mask_after_softmax_is_the_models_naive_path():
    layer = model_layer(CausalSelfAttention, mask_after_softmax=True, fused_attention=True)  # fused: ignored
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(35))
    with torch.no_grad():
        assert torch.equal(layer(x), dot_product_steps(layer, x, x, mask_after_softmax=True))


def test_synthesizer_is_the_steps_on_synthesised_scores():
    layer = model_layer(SynthesizerAttention)
    x = torch.randn(2, 15, 32, generator=torch.Generator().manual_seed(36))
    with torch.no_grad():
        hidden = torch.relu(split_heads(layer.w1(x), 4))  # (B, nh, T, hs)
        scores = hidden @ layer.w2 + layer.b2  # (B, nh, T, 15): row i synthesised from token i alone
        assert torch.equal(layer(x), step_by_step(layer, scores, split_heads(layer.value(x), 4)))
