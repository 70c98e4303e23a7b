"""
Attention layers of the model (SPEC §5), all causal and multi-head, and the KV cache of decoding.

CausalSelfAttention (with RoPE when config.rope), CausalCrossAttention (the perceiver's) and
SynthesizerAttention share CausalAttention: value and output projections, dropout, the causal mask and the
softmax-weighted sum of values, fused or plain. attention_math.py is the plain path taken apart into one
function per step, as taught; its tests check it against these layers.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def precompute_rotary_emb(dim, max_positions):
    """RoPE table: (max_positions, dim // 2, 2) holding (cos t*theta_i, sin t*theta_i).

    theta_i = 10000^(-2(i-1)/dim) for i = 1..dim/2, t = 0..max_positions-1.
    """
    theta = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angles = torch.arange(max_positions, dtype=torch.float64)[:, None] * theta  # (T, dim/2)
    return torch.stack((angles.cos(), angles.sin()), dim=-1).float()


def apply_rotary_emb(x, rope_cache):
    """Rotate feature pairs (x1, x2), (x3, x4), ... of x (B, nh, T, hs) by t*theta_i.

    rope_cache (>= T, hs/2, 2) starts at the position of x's first token (or is (B, 1, T, hs/2, 2):
    each row's own positions); the output has x's shape and dtype (the rotation runs in float32).
    """
    T = x.size(-2)
    cos, sin = rope_cache[..., :T, :, 0], rope_cache[..., :T, :, 1]  # (T, hs/2) or (B, 1, T, hs/2)
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, nh, T, hs/2, 2)
    x1, x2 = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


class KVCache:
    """Keys and values of every attention layer for the first `offset` positions (decoding), in buffers
    of max_len positions that each step writes into; GPT.forward moves offset on after every step."""

    def __init__(self, max_len):
        self.max_len = max_len
        self.offset = 0  # positions cached so far: where this step's tokens start
        self.buffers = {}  # attention layer -> its buffers, (B, nh, max_len, hs) each
        # rows that started from right-padded prompts of different lengths (see pad); None: all rows alike
        self.positions = None  # (B, 1): the position of each row's next token
        self.visible = None  # (B, max_len) bool: the slots a row attends to (not its padding)
        self.key_positions = None  # (B, max_len): the position of the token in each slot

    def pad(self, lengths, width):
        """After the prompts, right-padded to width, went in: row i goes on at position lengths[i], and the
        padding slots lengths[i]..width-1 are hidden from its queries from now on."""
        slots = torch.arange(self.max_len, device=lengths.device)
        self.visible = (slots < lengths[:, None]) | (slots >= width)
        self.key_positions = torch.where(slots < width, slots, lengths[:, None] + slots - width)
        self.positions = lengths[:, None]

    def expand(self, B):
        """Copy the cached rows, all alike (a prompt prefix that B rows share), to B rows."""
        for bufs in self.buffers.values():
            for i, b in enumerate(bufs):
                bufs[i] = b.new_empty(B, *b.shape[1:])
                bufs[i][:, :, :self.offset] = b[:, :, :self.offset]

    def advance(self, T):
        """The T tokens of this step are stored in every layer."""
        self.offset += T
        if self.positions is not None:
            self.positions = self.positions + T

    def append(self, layer, *tensors):
        """Store this step's tensors (B, nh, T, hs) of `layer` after its cached ones; returns
        them with every position so far, (B, nh, offset + T, hs) each."""
        if layer not in self.buffers:
            self.buffers[layer] = [t.new_empty(*t.shape[:2], self.max_len, t.size(-1)) for t in tensors]
        end = self.offset + tensors[0].size(-2)
        for buffer, t in zip(self.buffers[layer], tensors):
            buffer[:, :, self.offset:end] = t
        return [buffer[:, :, :end] for buffer in self.buffers[layer]]


class CausalAttention(nn.Module):
    """What the three layers share: value and output projections, dropout, the causal mask and
    the softmax-weighted sum of values. The layers the scores come from (add_score_layers: query and key
    projections, or the synthesizer's own) are registered first, so that str(model) lists them as the
    course's model.py does: key, query, value, attn_drop, resid_drop, proj."""

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.add_score_layers(config)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        # experiment (CS224N §2.2): mask after the softmax; only the plain path can do it
        self.mask_after_softmax = config.mask_after_softmax
        self.fused = config.fused_attention and not config.mask_after_softmax
        # causal_mask[i, j] is True where query i may see key j (j <= i); not saved
        mask = torch.ones(config.block_size, config.block_size, dtype=torch.bool).tril()
        self.register_buffer("causal_mask", mask, persistent=False)

    def add_score_layers(self, config):
        """The key and query projections of dot-product attention."""
        self.key = nn.Linear(config.n_embd, config.n_embd)
        # experiment (CS224N §2.2): one projection for queries and keys makes the scores symmetric
        self.query = self.key if config.shared_qk else nn.Linear(config.n_embd, config.n_embd)

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
        query i sees keys j <= i + offset, offset being the number of cached keys (decoding), and only
        the keys a row's visible (B, Tk) allows, if given (KVCache.pad)."""
        if self.fused:
            dropout = self.attn_drop.p if self.training else 0.0
            # offset 0: PyTorch's is_causal, which is this top-left aligned mask, with its fastest kernels;
            # one new query (decoding) sees every cached key, so it needs no mask either
            if visible is None and (offset == 0 or q.size(-2) == 1):
                return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=offset == 0)
            mask = self.mask(q.size(-2), k.size(-2), offset, visible)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.weighted_sum((q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1))), v, offset, visible)

    def weighted_sum(self, scores, v, offset=0, visible=None):
        """The plain path from the scores (B, nh, Tq, Tk) on: causal mask, softmax in float32,
        dropout, weighted sum of v (B, nh, Tk, hs) -> (B, nh, Tq, hs)."""
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

    def forward(self, x, cache=None, packing=None):
        """x (B, T, C) -> (B, T, C); cache: a KVCache of the positions before x (decoding), or None;
        packing: x holds the packed tokens (N, C) of a packing.Packing, and so does the output"""
        q, k, v = self.query(x), self.key(x), self.value(x)  # (B, T, C), or (N, C) packed
        if packing is None:
            y = self.self_attention(q, k, v, cache)
        else:  # the projections ran on the real tokens; attention runs on padded rows of similar lengths
            y = packing.map_padded(self.self_attention, q, k, v)
        return self.resid_drop(self.proj(y))

    def self_attention(self, q, k, v, cache=None):
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
        """x_kv (B, Tk, C), x_q (B, Tq, C) -> (B, Tq, C); with kv_packing (q_packing) x_kv (x_q and the
        output) hold the packed tokens (N, C) of a packing.Packing"""
        q, k, v = self.query(x_q), self.key(x_kv), self.value(x_kv)
        if kv_packing is not None:
            k, v = kv_packing.unpack(k), kv_packing.unpack(v)  # (B, Tk, C)
        if q_packing is not None:
            q = q_packing.unpack(q)  # (B, Tq, C)
        B, Tq, C = q.size()
        y = self.attend(self.split_heads(q), self.split_heads(k), self.split_heads(v))  # (B, nh, Tq, hs)
        y = y.transpose(1, 2).contiguous().view(B, Tq, C)  # (B, Tq, C)
        if q_packing is not None:
            y = q_packing.repack(y)  # (N, C)
        return self.resid_drop(self.proj(y))


class SynthesizerAttention(CausalAttention):
    """Dense synthesizer: per head Y_i = softmax(ReLU(X A_i + b1) B_i + b2) (X V_i), causal.

    Each token synthesises its own row of scores over the block_size-1 positions,
    so inputs may be at most block_size-1 long.
    """

    def __init__(self, config):
        super().__init__(config)
        self.max_len = config.block_size - 1

    def add_score_layers(self, config):
        """w1, w2 and b2 in place of keys and queries, before the value projection as in the course's layer."""
        self.w1 = nn.Linear(config.n_embd, config.n_embd)  # A and b1, all heads at once
        # B, N(0, 0.02) as every weight (GPT._init_weights): at zero, A would get no gradient at first
        self.w2 = nn.Parameter(torch.empty(config.n_embd // config.n_head, config.block_size - 1).normal_(0.0, 0.02))
        self.b2 = nn.Parameter(torch.zeros(config.block_size - 1))

    def forward(self, x, cache=None, packing=None):
        """x (B, T, C) -> (B, T, C), T + cached <= block_size-1; cache and packing as in CausalSelfAttention
        (the cache holds values only)"""
        hidden, v = self.w1(x), self.value(x)  # (B, T, C), or (N, C) packed
        if packing is None:
            y = self.synthesized_attention(hidden, v, cache)
        else:  # as in CausalSelfAttention
            y = packing.map_padded(self.synthesized_attention, hidden, v)
        return self.resid_drop(self.proj(y))

    def synthesized_attention(self, hidden, v, cache=None):
        """X A + b1 and X V (B, T, C) -> (B, T, C), the heads' outputs side by side"""
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
