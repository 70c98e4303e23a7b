"""
Attention from first principles: small pure functions, one step each. The model's plain (non-fused) path in
attention.py is these steps inline; tests/test_attention_math.py checks that both compute the same, bit for bit.
Shapes: B = batch, nh = heads, Tq/Tk = query/key length, d = feature size.
"""
import math

import torch


def split_heads(x, n_heads):
    """(B, T, d) -> (B, nh, T, d // nh): each head gets a contiguous slice of features."""
    B, T, d = x.shape
    return x.view(B, T, n_heads, d // n_heads).transpose(1, 2)


def merge_heads(x):
    """(B, nh, T, hs) -> (B, T, nh * hs), the inverse of split_heads."""
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).contiguous().view(B, T, nh * hs)


def pairwise_similarities(Q, K):
    """Dot product of every query with every key: (..., Tq, d), (..., Tk, d) -> (..., Tq, Tk)."""
    return Q @ K.transpose(-2, -1)


def attn_scaled(scores, head_dim):
    """Divide by sqrt(head_dim) so the softmax does not saturate as head_dim grows."""
    return scores * (1.0 / math.sqrt(head_dim))


def make_causal_mask(Tq, Tk, offset=0, device=None):
    """(Tq, Tk) bool, True where query i may see key j: j <= i + offset (offset: the cached keys, decoding)."""
    return torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(diagonal=offset)


def apply_causal_mask(scores, mask):
    """Hide masked-out keys from the softmax: scores (..., Tq, Tk), mask (Tq, Tk) bool."""
    return scores.masked_fill(~mask, float("-inf"))


def attn_softmax(scores):
    """Normalise over keys: (..., Tq, Tk) -> attention weights summing to 1 along Tk."""
    return torch.softmax(scores, dim=-1)


def zero_masked_weights(weights, mask):
    """The naive causal mask, after the softmax: weights (..., Tq, Tk), mask (Tq, Tk) bool. Rows are not
    renormalised, so they sum to less than 1, and the future keys still shaped them through the denominator."""
    return weights.masked_fill(~mask, 0.0)


def compute_outputs(weights, V):
    """Weighted sum of values: (..., Tq, Tk), (..., Tk, dv) -> (..., Tq, dv)."""
    return weights @ V


def self_attention(Q, K, V, n_heads, causal):
    """Multi-head scaled dot-product attention, the bare mechanism (no projections, no dropout):
    Q (B, Tq, d), K and V (B, Tk, d) -> (B, Tq, d)."""
    q, k, v = (split_heads(t, n_heads) for t in (Q, K, V))  # (B, nh, T, hs)
    scores = attn_scaled(pairwise_similarities(q, k), q.size(-1))  # (B, nh, Tq, Tk)
    if causal:
        scores = apply_causal_mask(scores, make_causal_mask(q.size(-2), k.size(-2), device=q.device))
    return merge_heads(compute_outputs(attn_softmax(scores), v))
