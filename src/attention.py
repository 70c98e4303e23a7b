"""
Attention layers of the model: one shared core and the assignment's variants.

AttentionCore       value/output projections, dropout, head split/merge, causal
                    mask and the masked softmax-weighted sum (fused or plain)
CausalCrossAttention  + query/key projections: queries from one sequence, keys
                    and values from another (the perceiver's down/up projections)
CausalSelfAttention   cross-attention of a sequence with itself, optionally with
                    RoPE on queries and keys, and a KV cache for decoding
SynthesizerAttention  scores synthesised from each token alone (no q.k products)
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from attention_math import (apply_causal_mask, attn_scaled, attn_softmax, compute_outputs,
                            make_causal_mask, merge_heads, pairwise_similarities, split_heads,
                            zero_masked_weights)


def precompute_rotary_emb(dim, max_positions):
    """RoPE table: (max_positions, dim // 2, 2) holding (cos t*theta_i, sin t*theta_i).

    theta_i = 10000^(-2(i-1)/dim) for i = 1..dim/2, t = 0..max_positions-1.
    """
    theta = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angles = torch.arange(max_positions, dtype=torch.float64)[:, None] * theta  # (T, dim/2)
    return torch.stack((angles.cos(), angles.sin()), dim=-1).float()


def apply_rotary_emb(x, rope_cache):
    """Rotate feature pairs (x1, x2), (x3, x4), ... of x (B, nh, T, hs) by t*theta_i.

    rope_cache (>= T, hs/2, 2) starts at the position of x's first token; the
    output has x's shape and dtype (the rotation itself runs in float32).
    """
    T = x.size(-2)
    cos, sin = rope_cache[:T, :, 0], rope_cache[:T, :, 1]  # (T, hs/2)
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, nh, T, hs/2, 2)
    x1, x2 = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


class AttentionCore(nn.Module):
    """What every variant shares: value and output projections, dropout, heads,
    the causal mask and the weighted sum of values."""

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = config.n_head
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        # experiment (CS224N §2.2): mask after the softmax; only the plain path can do it
        self.mask_after_softmax = getattr(config, "mask_after_softmax", False)
        self.fused = getattr(config, "fused_attention", False) and not self.mask_after_softmax
        # causal_mask[i, j] is True where query i may see key j; sliced per call
        self.register_buffer("causal_mask", make_causal_mask(config.block_size, config.block_size),
                             persistent=False)

    def heads(self, x):
        """(B, T, C) -> (B, nh, T, hs)"""
        return split_heads(x, self.n_head)

    def mask(self, Tq, Tk, offset):
        """(Tq, Tk) bool: key j visible to query i when j <= i + offset."""
        return self.causal_mask[offset:offset + Tq, :Tk]

    def mix(self, scores, v, offset=0):
        """Plain path: causal mask, softmax, dropout, weighted sum.

        scores (B, nh, Tq, Tk), v (B, nh, Tk, hs) -> (B, nh, Tq, hs)
        """
        mask = self.mask(scores.size(-2), scores.size(-1), offset)
        if self.mask_after_softmax:  # the naive order: future keys still share the denominator
            weights = zero_masked_weights(attn_softmax(scores.float()), mask)
        else:
            weights = attn_softmax(apply_causal_mask(scores, mask).float())
        return compute_outputs(self.attn_drop(weights.type_as(v)), v)

    def output(self, y):
        """(B, nh, T, hs) -> (B, T, C): merge heads, project, dropout."""
        return self.resid_drop(self.proj(merge_heads(y)))


class CausalCrossAttention(AttentionCore):
    """Queries from x_q attend over keys/values from x_kv; key j is hidden from query i when j > i."""

    def __init__(self, config):
        super().__init__(config)
        self.key = nn.Linear(config.n_embd, config.n_embd)
        # experiment (CS224N §2.2): one projection for queries and keys makes the scores symmetric
        self.query = self.key if getattr(config, "shared_qk", False) else nn.Linear(config.n_embd, config.n_embd)

    def attend(self, q, k, v, offset=0):
        """Scaled dot-product attention: q (B, nh, Tq, hs), k/v (B, nh, Tk, hs) -> (B, nh, Tq, hs)."""
        if self.fused:
            dropout = self.attn_drop.p if self.training else 0.0
            if offset == 0:  # top-left aligned causal mask, which is what PyTorch's is_causal means
                return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
            mask = self.mask(q.size(-2), k.size(-2), offset)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.mix(attn_scaled(pairwise_similarities(q, k), q.size(-1)), v, offset)

    def forward(self, x_kv, x_q):
        """x_kv (B, Tk, C), x_q (B, Tq, C) -> (B, Tq, C)"""
        q = self.heads(self.query(x_q))  # (B, nh, Tq, hs)
        k = self.heads(self.key(x_kv))  # (B, nh, Tk, hs)
        v = self.heads(self.value(x_kv))  # (B, nh, Tk, hs)
        return self.output(self.attend(q, k, v))


def extend_cache(layer_cache, k, v):
    """Append this step's keys/values to a layer's cache dict; returns all of them and
    the number of cached tokens that precede this step."""
    if layer_cache is None:
        return k, v, 0
    offset = layer_cache["k"].size(-2) if "k" in layer_cache else 0
    if offset:
        k = torch.cat((layer_cache["k"], k), dim=-2)
        v = torch.cat((layer_cache["v"], v), dim=-2)
    layer_cache["k"], layer_cache["v"] = k, v
    return k, v, offset


class CausalSelfAttention(CausalCrossAttention):
    """Causal multi-head self-attention, with RoPE on queries and keys when config.rope."""

    def __init__(self, config):
        super().__init__(config)
        self.rope = config.rope
        if self.rope:
            head_dim = config.n_embd // config.n_head
            assert head_dim % 2 == 0, "RoPE rotates feature pairs: head size must be even"
            self.register_buffer("rope_cache", precompute_rotary_emb(head_dim, config.block_size))

    def forward(self, x, layer_cache=None):
        """x (B, T, C) -> (B, T, C). layer_cache: None, or a dict of this layer's
        cached keys/values that is extended in place (decoding)."""
        q = self.heads(self.query(x))  # (B, nh, T, hs)
        k = self.heads(self.key(x))
        v = self.heads(self.value(x))
        start = layer_cache["k"].size(-2) if layer_cache and "k" in layer_cache else 0
        if self.rope:
            positions = self.rope_cache[start:]  # position of x[:, 0] onwards
            q, k = apply_rotary_emb(q, positions), apply_rotary_emb(k, positions)
        k, v, offset = extend_cache(layer_cache, k, v)
        return self.output(self.attend(q, k, v, offset))


class SynthesizerAttention(AttentionCore):
    """Dense synthesizer: per head Y_i = softmax(ReLU(X A_i + b1) B_i + b2) (X V_i), causal.

    Each token synthesises its own row of scores over the block_size-1 positions,
    so inputs may be at most block_size-1 long.
    """

    def __init__(self, config):
        super().__init__(config)
        self.w1 = nn.Linear(config.n_embd, config.n_embd)  # A and b1, all heads at once
        self.w2 = nn.Parameter(torch.zeros(config.n_embd // config.n_head, config.block_size - 1))  # B
        self.b2 = nn.Parameter(torch.zeros(config.block_size - 1))
        self.max_len = config.block_size - 1

    def forward(self, x, layer_cache=None):
        """x (B, T, C) -> (B, T, C), T <= block_size-1; layer_cache as in CausalSelfAttention."""
        hidden = F.relu(self.heads(self.w1(x)))  # (B, nh, T, hs)
        v = self.heads(self.value(x))  # (B, nh, T, hs)
        _, v, offset = extend_cache(layer_cache, v, v)
        Tk = v.size(-2)
        assert Tk <= self.max_len, f"synthesizer inputs are at most {self.max_len} long, got {Tk}"
        scores = (hidden @ self.w2 + self.b2)[..., :Tk]  # (B, nh, T, Tk)
        return self.output(self.mix(scores, v, offset))
