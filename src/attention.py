"""
The model's attention layers, all causal and multi-head, and the KV cache of decoding. CausalSelfAttention (RoPE
when config.rope), CausalCrossAttention (the perceiver's) and SynthesizerAttention extend one core,
CausalAttention; attention_math.py is its plain path taken apart into one function per step, as taught.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def precompute_rotary_emb(dim, max_positions):
    """RoPE table (max_positions, dim // 2, 2) of (cos t*theta_i, sin t*theta_i), theta_i = 10000^(-2(i-1)/dim)."""
    theta = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angles = torch.arange(max_positions, dtype=torch.float64)[:, None] * theta  # (T, dim/2)
    return torch.stack((angles.cos(), angles.sin()), dim=-1).float()


def apply_rotary_emb(x, rope_cache):
    """x (B, nh, T, hs) -> the same shape and dtype, feature pairs (x1, x2), (x3, x4), ... rotated by t*theta_i
    (in float32). rope_cache (>= T, hs/2, 2) starts at x's first position, or is (B, 1, T, hs/2, 2): per row."""
    cos, sin = rope_cache[..., :x.size(-2), :, :].unbind(-1)  # (T, hs/2) or (B, 1, T, hs/2)
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, nh, T, hs/2) each
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).type_as(x)


class KVCache:
    """Every attention layer's keys and values for the first `offset` positions (decoding), in max_len buffers."""

    def __init__(self, max_len):
        self.max_len = max_len
        self.offset = 0  # positions cached so far: where this step's tokens start
        self.buffers = {}  # attention layer -> its buffers, (B, nh, max_len, hs) each
        # after right-padded prompts (pad): each row's next position (B, 1), the slots it attends to (B, max_len)
        # and the position of each slot's token (B, max_len); None while all rows are alike
        self.positions = self.visible = self.key_positions = None

    def pad(self, lengths, width):
        """After prompts right-padded to width: row i goes on at position lengths[i], its padding slots hidden."""
        slots = torch.arange(self.max_len, device=lengths.device)
        self.visible = (slots < lengths[:, None]) | (slots >= width)
        self.key_positions = torch.where(slots < width, slots, lengths[:, None] + slots - width)
        self.positions = lengths[:, None]

    def expand(self, B):
        """Copy the cached rows, all alike (a prompt prefix that B rows share), to B rows."""
        for bufs in self.buffers.values():
            bufs[:] = [b.expand(B, *b.shape[1:]).clone() for b in bufs]

    def advance(self, T):
        """The T tokens of this step are stored in every layer."""
        self.offset += T
        if self.positions is not None:
            self.positions = self.positions + T

    def append(self, layer, *tensors):
        """Store this step's tensors (B, nh, T, hs) of `layer`; returns them after the cached, (B, nh, offset+T, hs)"""
        if layer not in self.buffers:
            self.buffers[layer] = [t.new_empty(*t.shape[:2], self.max_len, t.size(-1)) for t in tensors]
        end = self.offset + tensors[0].size(-2)
        for buffer, t in zip(self.buffers[layer], tensors):
            buffer[:, :, self.offset:end] = t
        return [buffer[:, :, :end] for buffer in self.buffers[layer]]


class CausalAttention(nn.Module):
    """What the layers share: value and output projections, dropout, the causal mask, the softmax-weighted sum of
    values (fused or plain), and forward for self-attention, made of a subclass's project(x) and heads(...).
    add_score_layers registers first, so str(model) lists key, query, value, attn_drop, resid_drop, proj."""

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.add_score_layers(config)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.mask_after_softmax = config.mask_after_softmax  # the experiment; only the plain path can do it
        self.fused = config.fused_attention and not config.mask_after_softmax
        # causal_mask[i, j] is True where query i may see key j (j <= i); not saved
        mask = torch.ones(config.block_size, config.block_size, dtype=torch.bool).tril()
        self.register_buffer("causal_mask", mask, persistent=False)

    def add_score_layers(self, config):
        """The key and query projections of dot-product attention (shared_qk: one for both)."""
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = self.key if config.shared_qk else nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x, cache=None, packing=None):
        """x (B, T, C) -> (B, T, C); cache: a KVCache of the positions before x; packing: x and the output hold
        packed tokens (N, C); the projections run on those, attention on padded rows of similar lengths"""
        projected = self.project(x)  # (B, T, C) each, or (N, C) packed
        y = self.heads(*projected, cache) if packing is None else packing.map_padded(self.heads, *projected)
        return self.resid_drop(self.proj(y))

    def split_heads(self, x):
        """(B, T, C) -> (B, nh, T, hs)"""
        B, T, C = x.size()
        return x.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

    def mask(self, Tq, Tk, offset, visible=None):
        """(Tq, Tk) bool: key j visible to query i when j <= i + offset; (B, 1, Tq, Tk) with visible (B, >= Tk)."""
        mask = self.causal_mask[offset:offset + Tq, :Tk]
        return mask if visible is None else mask & visible[:, None, None, :Tk]

    def attend(self, q, k, v, offset=0, visible=None):
        """Causal softmax(q k^T / sqrt(hs)) v: q (B, nh, Tq, hs), k and v (B, nh, Tk, hs) -> (B, nh, Tq, hs);
        query i sees keys j <= i + offset (offset: the cached keys) that visible (B, Tk) allows."""
        if self.fused:
            dropout = self.attn_drop.p if self.training else 0.0
            # offset 0: PyTorch's is_causal (this top-left aligned mask) and its fastest kernels; one new
            # query (decoding) sees every cached key, so it needs no mask either
            if visible is None and (offset == 0 or q.size(-2) == 1):
                return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=offset == 0)
            mask = self.mask(q.size(-2), k.size(-2), offset, visible)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.weighted_sum((q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1))), v, offset, visible)

    def weighted_sum(self, scores, v, offset=0, visible=None):
        """The plain path from the scores (B, nh, Tq, Tk) on: causal mask, softmax in float32, dropout,
        weighted sum of v (B, nh, Tk, hs) -> (B, nh, Tq, hs)."""
        mask = self.mask(scores.size(-2), scores.size(-1), offset, visible)  # (Tq, Tk) or (B, 1, Tq, Tk)
        if self.mask_after_softmax:  # the naive order: future keys still share the denominator
            att = F.softmax(scores.float(), dim=-1).masked_fill(~mask, 0.0)
        else:
            att = F.softmax(scores.masked_fill(~mask, float("-inf")).float(), dim=-1)
        return self.attn_drop(att.type_as(v)) @ v


class CausalSelfAttention(CausalAttention):
    """Causal multi-head self-attention, with RoPE on queries and keys when config.rope."""

    def __init__(self, config):
        super().__init__(config)
        self.rope = config.rope
        if self.rope:
            self.register_buffer("rope_cache", precompute_rotary_emb(config.n_embd // config.n_head, config.block_size))

    def project(self, x):
        return self.query(x), self.key(x), self.value(x)

    def heads(self, q, k, v, cache=None):
        """Projected q, k, v (B, T, C) -> (B, T, C), the heads' outputs side by side"""
        B, T, C = q.size()
        offset = cache.offset if cache is not None else 0  # position of the first query
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)  # (B, nh, T, hs)
        if self.rope:  # rotate by absolute position (each row's own, after right-padded prompts)
            table = self.rope_cache[offset:] if cache is None or cache.positions is None else \
                self.rope_cache[cache.positions + torch.arange(T, device=q.device)][:, None]  # (B, 1, T, hs/2, 2)
            q, k = apply_rotary_emb(q, table), apply_rotary_emb(k, table)
        if cache is not None:
            k, v = cache.append(self, k, v)  # (B, nh, offset + T, hs)
        y = self.attend(q, k, v, offset, cache.visible if cache is not None else None)  # (B, nh, T, hs)
        return y.transpose(1, 2).contiguous().view(B, T, C)


class CausalCrossAttention(CausalAttention):
    """Queries from x_q attend over keys/values from x_kv; key j is hidden from query i when j > i."""

    def forward(self, x_kv, x_q, kv_packing=None, q_packing=None):
        """x_kv (B, Tk, C), x_q (B, Tq, C) -> (B, Tq, C); kv_packing: x_kv packed (N, C); q_packing: x_q and y"""
        q, k, v = self.query(x_q), self.key(x_kv), self.value(x_kv)
        if kv_packing is not None:
            k, v = kv_packing.unpack(k), kv_packing.unpack(v)  # (B, Tk, C)
        if q_packing is not None:
            q = q_packing.unpack(q)  # (B, Tq, C)
        B, Tq, C = q.size()
        y = self.attend(self.split_heads(q), self.split_heads(k), self.split_heads(v))  # (B, nh, Tq, hs)
        y = y.transpose(1, 2).contiguous().view(B, Tq, C)
        if q_packing is not None:
            y = q_packing.repack(y)  # (N, C)
        return self.resid_drop(self.proj(y))


class SynthesizerAttention(CausalAttention):
    """Dense synthesizer: per head Y_i = softmax(ReLU(X A_i + b1) B_i + b2) (X V_i), causal; each token makes its
    own row of scores over block_size-1 positions, so inputs are at most block_size-1 long."""

    def add_score_layers(self, config):
        """w1, w2 and b2 in place of keys and queries, before the value projection as in the course's layer."""
        self.max_len = config.block_size - 1
        self.w1 = nn.Linear(config.n_embd, config.n_embd)  # A and b1, all heads at once
        # B, N(0, 0.02) as every weight (GPT._init_weights): at zero, A would get no gradient at first
        self.w2 = nn.Parameter(torch.empty(config.n_embd // config.n_head, self.max_len).normal_(0.0, 0.02))
        self.b2 = nn.Parameter(torch.zeros(self.max_len))

    def project(self, x):
        return self.w1(x), self.value(x)

    def heads(self, hidden, v, cache=None):
        """X A + b1 and X V (B, T, C) -> (B, T, C), the heads' outputs side by side; the cache holds values only"""
        B, T, C = v.size()
        offset = cache.offset if cache is not None else 0  # position of the first query
        assert offset + T <= self.max_len, f"synthesizer inputs are at most {self.max_len} long, got {offset + T}"
        hidden, v = F.relu(self.split_heads(hidden)), self.split_heads(v)  # (B, nh, T, hs)
        if cache is not None:
            [v] = cache.append(self, v)  # (B, nh, offset + T, hs)
        scores = hidden @ self.w2 + self.b2  # (B, nh, T, block_size-1): one column per key position, from token i
        if cache is not None and cache.key_positions is not None:  # right-padded rows: each slot's position
            scores = scores.gather(-1, cache.key_positions[:, None, None, :offset + T].expand(B, self.n_head, T, -1))
        scores = scores[..., :offset + T]  # (B, nh, T, offset + T)
        y = self.weighted_sum(scores, v, offset, cache.visible if cache is not None else None)
        return y.transpose(1, 2).contiguous().view(B, T, C)
