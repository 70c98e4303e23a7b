"""
Tests for src/attention.py: RoPE, causal cross-attention, the dense
synthesizer, and the fast paths (fused attention, KV cache) against the plain ones.

Expected values are computed here independently: rotation matrices built entry by
entry, attention re-implemented head by head with explicit loops over positions.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from attention import (CausalCrossAttention, CausalSelfAttention, KVCache, SynthesizerAttention,
                       apply_rotary_emb, precompute_rotary_emb)
from decoding import greedy_batch
from model import GPT, GPTConfig

BLOCK = 16
N_EMBD = 32
N_HEAD = 4
HS = N_EMBD // N_HEAD


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**kwargs):
    kw = dict(n_layer=2, n_head=N_HEAD, n_embd=N_EMBD, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    kw.update(kwargs)
    return GPTConfig(11, BLOCK, **kw)


def randomize_(module, seed=0):
    """Give every parameter (zero-initialised ones included) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module


def thetas(dim):
    """theta_i = 10000^(-2(i-1)/dim), i = 1..dim/2, computed with math."""
    return [10000.0 ** (-2.0 * (i - 1) / dim) for i in range(1, dim // 2 + 1)]


def rotation_matrix(t, dim):
    """The d x d block-diagonal rotation of the RoPE paper at position t."""
    R = torch.zeros(dim, dim, dtype=torch.float64)
    for k, theta in enumerate(thetas(dim)):
        c, s = math.cos(t * theta), math.sin(t * theta)
        R[2 * k, 2 * k], R[2 * k, 2 * k + 1] = c, -s
        R[2 * k + 1, 2 * k], R[2 * k + 1, 2 * k + 1] = s, c
    return R


def rotate_reference(x):
    """x (B, nh, T, d): position t of the sequence multiplied by rotation_matrix(t)."""
    T, d = x.shape[-2], x.shape[-1]
    R = torch.stack([rotation_matrix(t, d) for t in range(T)])  # (T, d, d)
    return torch.einsum("tij,bhtj->bhti", R, x.double()).to(x.dtype)


def reference_attention(module, x_kv, x_q, rope=False, mask_after_softmax=False):
    """Causal multi-head attention, one head and one query at a time.

    Query i sees keys j <= i; rope rotates each head's queries and keys by position;
    mask_after_softmax takes the softmax over every key and then drops the later ones.
    """
    q = F.linear(x_q, module.query.weight, module.query.bias)
    k = F.linear(x_kv, module.key.weight, module.key.bias)
    v = F.linear(x_kv, module.value.weight, module.value.bias)
    B, Tq, C = q.shape
    Tk = k.shape[1]
    nh = module.n_head
    hs = C // nh
    out = torch.zeros(B, Tq, C)
    for h in range(nh):
        sl = slice(h * hs, (h + 1) * hs)
        qh, kh, vh = q[..., sl], k[..., sl], v[..., sl]
        if rope:
            qh = rotate_reference(qh[:, None])[:, 0]
            kh = rotate_reference(kh[:, None])[:, 0]
        for i in range(Tq):
            visible = min(i + 1, Tk)
            if mask_after_softmax:
                scores = (qh[:, i:i + 1] @ kh.transpose(1, 2)) / math.sqrt(hs)  # (B, 1, Tk)
                weights = scores.softmax(-1)[..., :visible]
            else:
                scores = (qh[:, i:i + 1] @ kh[:, :visible].transpose(1, 2)) / math.sqrt(hs)  # (B, 1, visible)
                weights = scores.softmax(-1)
            out[:, i, sl] = (weights @ vh[:, :visible])[:, 0]
    return F.linear(out, module.proj.weight, module.proj.bias)


# ----------------------------------------------------------------------------- RoPE


@pytest.mark.parametrize("dim,max_positions", [(8, 16), (32, 128), (2, 5)])
def test_precompute_rotary_emb_shape_and_values(dim, max_positions):
    cache = precompute_rotary_emb(dim, max_positions)
    assert cache.shape == (max_positions, dim // 2, 2)
    expected = torch.tensor([[[math.cos(t * th), math.sin(t * th)] for th in thetas(dim)]
                             for t in range(max_positions)])
    torch.testing.assert_close(cache.double(), expected.double(), atol=1e-5, rtol=0)
    # position 0 is the identity; the first pair always turns by exactly t radians
    assert torch.all(cache[0, :, 0] == 1) and torch.all(cache[0, :, 1] == 0)
    torch.testing.assert_close(cache[:, 0, 0].double(), torch.cos(torch.arange(max_positions).double()),
                               atol=1e-5, rtol=0)


def test_apply_rotary_emb_is_the_block_diagonal_rotation():
    torch.manual_seed(0)
    B, nh, T, d = 2, 3, 12, 8
    x = torch.randn(B, nh, T, d)
    y = apply_rotary_emb(x, precompute_rotary_emb(d, 20))
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y, rotate_reference(x), atol=1e-5, rtol=1e-5)
    # the cache may be longer than the sequence; only its first T rows are used
    torch.testing.assert_close(apply_rotary_emb(x, precompute_rotary_emb(d, T)), y)


def test_apply_rotary_emb_preserves_norms_and_moves_vectors():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 10, 16)
    y = apply_rotary_emb(x, precompute_rotary_emb(16, 10))
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])  # position 0: no rotation
    assert not torch.allclose(y[:, :, 1:], x[:, :, 1:], atol=1e-3)


def test_rotary_dot_products_depend_only_on_relative_position():
    torch.manual_seed(2)
    d, T = 16, 24
    cache = precompute_rotary_emb(d, T)
    q, k = torch.randn(d), torch.randn(d)
    # the same q at every position, and the same k at every position
    rq = apply_rotary_emb(q.expand(1, 1, T, d).contiguous(), cache)[0, 0]  # (T, d)
    rk = apply_rotary_emb(k.expand(1, 1, T, d).contiguous(), cache)[0, 0]
    dots = rq @ rk.T  # dots[t1, t2] = <R_t1 q, R_t2 k>
    for delta in (-5, 0, 3, 7):
        pairs = [(t1, t1 - delta) for t1 in range(T) if 0 <= t1 - delta < T]
        values = torch.stack([dots[a, b] for a, b in pairs])
        torch.testing.assert_close(values, values[0].expand_as(values), atol=1e-4, rtol=1e-4)
    # ... and does depend on it
    assert not torch.isclose(dots[5, 2], dots[5, 4], atol=1e-3)


def test_rotary_equals_complex_multiplication():
    torch.manual_seed(3)
    d, T = 12, 9
    x = torch.randn(2, 1, T, d)
    y = apply_rotary_emb(x, precompute_rotary_emb(d, T))
    z = torch.complex(x[..., 0::2].double(), x[..., 1::2].double())  # x1 + i x2, x3 + i x4, ...
    angles = torch.tensor([[t * th for th in thetas(d)] for t in range(T)], dtype=torch.float64)
    w = z * torch.polar(torch.ones_like(angles), angles)  # times e^{i t theta}
    torch.testing.assert_close(y[..., 0::2].double(), w.real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[..., 1::2].double(), w.imag, atol=1e-5, rtol=1e-5)


def test_rope_cache_is_a_buffer_only_with_rope():
    with_rope = CausalSelfAttention(tiny_config(rope=True))
    buffers = dict(with_rope.named_buffers())
    assert "rope_cache" in buffers
    assert "rope_cache" not in dict(with_rope.named_parameters())
    assert buffers["rope_cache"].shape == (BLOCK, HS // 2, 2)
    torch.testing.assert_close(buffers["rope_cache"].double(), precompute_rotary_emb(HS, BLOCK).double())
    without = CausalSelfAttention(tiny_config(rope=False))
    assert "rope_cache" not in dict(without.named_buffers())
    assert not hasattr(without, "rope_cache") or getattr(without, "rope_cache") is None


def test_saved_names_and_no_saved_mask():
    """What a params file holds per layer: the projections (and rope_cache), never the causal mask."""
    names = {"value.weight", "value.bias", "proj.weight", "proj.bias", "key.weight", "key.bias",
             "query.weight", "query.bias"}
    assert set(CausalSelfAttention(tiny_config()).state_dict()) == names
    assert set(CausalSelfAttention(tiny_config(rope=True)).state_dict()) == names | {"rope_cache"}
    assert set(CausalCrossAttention(tiny_config()).state_dict()) == names
    for layer in (CausalSelfAttention(tiny_config()), SynthesizerAttention(tiny_config(synthesizer=True))):
        assert "causal_mask" in dict(layer.named_buffers()) and "causal_mask" not in layer.state_dict()


@pytest.mark.parametrize("rope", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_causal_self_attention_matches_reference(rope, fused):
    attn = randomize_(CausalSelfAttention(tiny_config(rope=rope, fused_attention=fused))).eval()
    x = torch.randn(2, 11, N_EMBD, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = attn(x)
        expected = reference_attention(attn, x, x, rope=rope)
    assert y.shape == x.shape
    torch.testing.assert_close(y, expected, atol=1e-4, rtol=1e-4)


def test_rope_changes_attention():
    """Same weights with and without rope give different outputs (RoPE is really applied)."""
    plain = randomize_(CausalSelfAttention(tiny_config(rope=False))).eval()
    rotated = CausalSelfAttention(tiny_config(rope=True)).eval()
    rotated.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(1, 8, N_EMBD, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a, b = plain(x), rotated(x)
    torch.testing.assert_close(a[:, 0], b[:, 0], atol=1e-5, rtol=1e-5)  # one key: nothing to reweigh
    assert not torch.allclose(a[:, 2:], b[:, 2:], atol=1e-4)


# ----------------------------------------------------------------------------- cross-attention


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("Tq,Tk", [(5, 12), (12, 5), (7, 7), (1, 9), (9, 1)])
def test_cross_attention_shape_mask_and_reference(Tq, Tk, fused):
    attn = randomize_(CausalCrossAttention(tiny_config(fused_attention=fused))).eval()
    g = torch.Generator().manual_seed(6)
    x_kv = torch.randn(2, Tk, N_EMBD, generator=g)
    x_q = torch.randn(2, Tq, N_EMBD, generator=g)
    with torch.no_grad():
        y = attn(x_kv, x_q)
        assert y.shape == (2, Tq, N_EMBD)
        torch.testing.assert_close(y, reference_attention(attn, x_kv, x_q), atol=1e-4, rtol=1e-4)
        for i in range(Tq):
            # keys after i are invisible to query i ...
            if i + 1 < Tk:
                changed = x_kv.clone()
                changed[:, i + 1:] = torch.randn(2, Tk - i - 1, N_EMBD, generator=g)
                torch.testing.assert_close(attn(changed, x_q)[:, i], y[:, i], atol=1e-5, rtol=1e-5)
            # ... while a key at or before i is seen (when there is more than one to weigh)
            if min(i + 1, Tk) >= 2:
                changed = x_kv.clone()
                j = min(i, Tk - 1)
                changed[:, j] = torch.randn(2, N_EMBD, generator=g)
                assert not torch.allclose(attn(changed, x_q)[:, i], y[:, i], atol=1e-4)


# ----------------------------------------------------------------------------- synthesizer


def test_synthesizer_parameters():
    cfg = tiny_config(synthesizer=True)
    attn = SynthesizerAttention(cfg)
    assert isinstance(attn.w1, torch.nn.Linear)
    assert (attn.w1.in_features, attn.w1.out_features) == (N_EMBD, N_EMBD)
    assert attn.w2.shape == (N_EMBD // N_HEAD, BLOCK - 1)
    assert attn.b2.shape == (BLOCK - 1,)
    for name in ("value", "proj"):
        layer = getattr(attn, name)
        assert (layer.in_features, layer.out_features) == (N_EMBD, N_EMBD)
    # no query/key projections: the scores are synthesised, not dot products
    assert not hasattr(attn, "query") and not hasattr(attn, "key")
    names = {n for n, _ in attn.named_parameters()}
    assert names == {"w1.weight", "w1.bias", "w2", "b2", "value.weight", "value.bias", "proj.weight", "proj.bias"}


def synthesizer_reference_head(attn, x, h):
    """softmax(ReLU(X A_h + b1_h) B + b2)(X V_h) with the causal mask, for head h."""
    hs = attn.w2.shape[0]
    sl = slice(h * hs, (h + 1) * hs)
    T = x.shape[1]
    hidden = F.relu(x @ attn.w1.weight[sl].T + attn.w1.bias[sl])  # (B, T, hs)
    scores = hidden @ attn.w2[:, :T] + attn.b2[:T]  # (B, T, T): row t = query t, column j = key j
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    values = x @ attn.value.weight[sl].T + attn.value.bias[sl]  # (B, T, hs)
    return scores.softmax(-1) @ values


@pytest.mark.parametrize("T", [BLOCK - 1, 6, 1])
def test_synthesizer_computes_the_dense_synthesizer(T):
    attn = randomize_(SynthesizerAttention(tiny_config(synthesizer=True)), seed=7).eval()
    with torch.no_grad():  # identity output projection: the output is the heads side by side
        attn.proj.weight.copy_(torch.eye(N_EMBD))
        attn.proj.bias.zero_()
    x = torch.randn(3, T, N_EMBD, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        y = attn(x)
        assert y.shape == (3, T, N_EMBD)
        for h in range(N_HEAD):
            torch.testing.assert_close(y[..., h * HS:(h + 1) * HS], synthesizer_reference_head(attn, x, h),
                                       atol=1e-5, rtol=1e-4)


def test_synthesizer_is_causal():
    attn = randomize_(SynthesizerAttention(tiny_config(synthesizer=True)), seed=9).eval()
    g = torch.Generator().manual_seed(10)
    T = BLOCK - 1
    x = torch.randn(2, T, N_EMBD, generator=g)
    with torch.no_grad():
        y = attn(x)
        for t in range(1, T):
            changed = x.clone()
            changed[:, t:] = torch.randn(2, T - t, N_EMBD, generator=g)
            y2 = attn(changed)
            torch.testing.assert_close(y2[:, :t], y[:, :t], atol=1e-5, rtol=1e-5)
            assert not torch.allclose(y2[:, t], y[:, t], atol=1e-4)


def test_synthesizer_rejects_inputs_longer_than_block_size_minus_one():
    attn = SynthesizerAttention(tiny_config(synthesizer=True)).eval()
    with pytest.raises((AssertionError, ValueError, RuntimeError)):
        attn(torch.randn(1, BLOCK, N_EMBD))


# ----------------------------------------------------------------------------- fast paths


@pytest.mark.parametrize("rope", [False, True])
def test_fused_self_attention_matches_plain(rope):
    plain = randomize_(CausalSelfAttention(tiny_config(rope=rope, fused_attention=False)), seed=11).eval()
    fused = CausalSelfAttention(tiny_config(rope=rope, fused_attention=True)).eval()
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, BLOCK, N_EMBD, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        for T in (BLOCK, 7, 1):
            torch.testing.assert_close(fused(x[:, :T]), plain(x[:, :T]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("Tq,Tk", [(4, 13), (13, 4), (8, 8)])
def test_fused_cross_attention_matches_plain(Tq, Tk):
    plain = randomize_(CausalCrossAttention(tiny_config(fused_attention=False)), seed=13).eval()
    fused = CausalCrossAttention(tiny_config(fused_attention=True)).eval()
    fused.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(14)
    x_kv, x_q = torch.randn(2, Tk, N_EMBD, generator=g), torch.randn(2, Tq, N_EMBD, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(fused(x_kv, x_q), plain(x_kv, x_q), atol=1e-5, rtol=1e-5)


def make_layer(kind, fused):
    if kind == "synthesizer":
        return randomize_(SynthesizerAttention(tiny_config(synthesizer=True, fused_attention=fused)), seed=15).eval()
    return randomize_(CausalSelfAttention(tiny_config(rope=kind == "rope", fused_attention=fused)), seed=15).eval()


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kind", ["vanilla", "rope", "synthesizer"])
@pytest.mark.parametrize("chunks", [[1] * (BLOCK - 1), [5, 1, 1, 3, 1, 4]])
def test_kv_cache_matches_full_forward(kind, fused, chunks):
    """Feeding the sequence piece by piece through a KVCache gives the full forward's rows."""
    layer = make_layer(kind, fused)
    T = sum(chunks)
    x = torch.randn(2, T, N_EMBD, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        full = layer(x)
        cache, outs = KVCache(BLOCK - 1), []
        for n in chunks:
            outs.append(layer(x[:, cache.offset:cache.offset + n], cache))
            cache.offset += n  # a layer driven alone: what GPT.forward does after its blocks
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)


def tiny_model(variant, fused=False, seed=17):
    cfg = tiny_config(rope=variant == "rope", synthesizer=variant == "synthesizer", fused_attention=fused)
    return randomize_(GPT(cfg), seed=seed).eval()


@pytest.mark.parametrize("variant", ["vanilla", "rope", "synthesizer"])
def test_kv_cache_offset_and_buffers(variant):
    """offset counts the positions fed so far; every layer writes them into buffers of the model's
    max length, allocated at the first step and never reallocated (no concatenation)."""
    model = tiny_model(variant)
    idx = torch.randint(0, 11, (3, model.max_len), generator=torch.Generator().manual_seed(18))
    cache = KVCache(model.max_len)
    assert cache.offset == 0 and not cache.buffers
    with torch.no_grad():
        model(idx[:, :4], kv_cache=cache)
        assert cache.offset == 4
        layers = [block.attn for block in model.blocks]
        assert list(cache.buffers) == layers  # keyed by the attention layer itself
        per_layer = 1 if variant == "synthesizer" else 2  # the synthesizer has no keys, only values
        assert all(len(cache.buffers[layer]) == per_layer for layer in layers)
        assert all(b.shape == (3, N_HEAD, model.max_len, HS) for bs in cache.buffers.values() for b in bs)
        addresses = [b.data_ptr() for bs in cache.buffers.values() for b in bs]
        for t in range(4, model.max_len):
            model(idx[:, t:t + 1], kv_cache=cache)
            assert cache.offset == t + 1
        assert [b.data_ptr() for bs in cache.buffers.values() for b in bs] == addresses
        # the buffers hold what the layers' projections give for the whole sequence
        if variant == "vanilla":
            x = model.tok_emb(idx) + model.pos_emb[:, :model.max_len]
            v = model.blocks[0].attn.value(model.blocks[0].ln1(x)).view(3, -1, N_HEAD, HS).transpose(1, 2)
            torch.testing.assert_close(cache.buffers[layers[0]][1], v)
        with pytest.raises(AssertionError, match="exceeds"):  # no room for another position
            model(idx[:, :1], kv_cache=cache)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("variant", ["vanilla", "rope", "synthesizer"])
def test_cached_decoding_equals_uncached(variant, fused):
    """The logits of every step, fed one token at a time through a KVCache, are those of the whole
    sequence (up to rounding); greedy decoding with and without the cache gives the same tokens."""
    model = tiny_model(variant, fused)
    idx = torch.randint(0, 11, (4, model.max_len), generator=torch.Generator().manual_seed(19))
    with torch.no_grad():
        cache = KVCache(model.max_len)
        steps = [model(idx[:, :3], kv_cache=cache)[0]] + [model(idx[:, t:t + 1], kv_cache=cache)[0]
                                                          for t in range(3, model.max_len)]
        torch.testing.assert_close(torch.cat(steps, dim=1), model(idx)[0], atol=1e-5, rtol=1e-5)
        assert cache.offset == model.max_len
        prompts = idx[:, :5]
        cached = greedy_batch(model, prompts, model.max_len - 5, mask_id=-1)  # fits: decoded with a cache
        uncached, x = [], prompts
        for _ in range(model.max_len - 5):
            next_id = model(x)[0][:, -1].argmax(-1)
            uncached.append(next_id)
            x = torch.cat((x, next_id[:, None]), dim=1)
    assert torch.equal(cached, torch.stack(uncached, dim=1))


# ------------------------------------------------------------------------ experiment switches (the CS224N handout's)


def test_mask_after_softmax_weights_are_not_renormalised():
    """weighted_sum() with identity values returns its weights: the full softmax with the future zeroed."""
    naive = CausalSelfAttention(tiny_config(mask_after_softmax=True))
    usual = CausalSelfAttention(tiny_config())
    T = 6
    scores = torch.randn(2, N_HEAD, T, T, generator=torch.Generator().manual_seed(20))  # (B, nh, T, T)
    eye = torch.eye(T).expand(2, N_HEAD, T, T)
    w, w_usual = naive.weighted_sum(scores, eye), usual.weighted_sum(scores, eye)
    future = ~torch.ones(T, T, dtype=torch.bool).tril()
    torch.testing.assert_close(w, scores.softmax(-1).masked_fill(future, 0.0))
    assert torch.all(w[..., future] == 0) and torch.all(w_usual[..., future] == 0)
    rows = w.sum(-1)
    assert torch.all(rows[..., :-1] < 0.999)  # the future kept its share of the denominator
    torch.testing.assert_close(rows[..., -1], torch.ones(2, N_HEAD))
    torch.testing.assert_close(w_usual.sum(-1), torch.ones(2, N_HEAD, T))


@pytest.mark.parametrize("fused", [False, True])
def test_mask_after_softmax_takes_the_plain_path_and_leaks_the_future(fused):
    attn = randomize_(CausalSelfAttention(tiny_config(mask_after_softmax=True, fused_attention=fused))).eval()
    assert attn.fused is False
    g = torch.Generator().manual_seed(21)
    x = torch.randn(2, 9, N_EMBD, generator=g)
    with torch.no_grad():
        y = attn(x)
        torch.testing.assert_close(y, reference_attention(attn, x, x, mask_after_softmax=True), atol=1e-4, rtol=1e-4)
        changed = x.clone()
        changed[:, -1] = torch.randn(2, N_EMBD, generator=g)
        assert not torch.allclose(attn(changed)[:, 0], y[:, 0], atol=1e-5)  # query 0 sees the last token


def test_shared_qk_is_one_projection():
    shared = randomize_(CausalSelfAttention(tiny_config(shared_qk=True)), seed=22).eval()
    usual = CausalSelfAttention(tiny_config())
    assert shared.query is shared.key
    assert sum(p.numel() for p in usual.parameters()) - sum(p.numel() for p in shared.parameters()) == \
        N_EMBD * N_EMBD + N_EMBD
    cross = CausalCrossAttention(tiny_config(shared_qk=True))
    assert cross.query is cross.key
    # the same as separate projections that happen to be equal
    usual.load_state_dict(shared.state_dict())
    torch.testing.assert_close(usual.query.weight, usual.key.weight)
    x = torch.randn(2, 7, N_EMBD, generator=torch.Generator().manual_seed(23))
    with torch.no_grad():
        torch.testing.assert_close(shared(x), usual.eval()(x))
        torch.testing.assert_close(shared(x), reference_attention(shared, x, x), atol=1e-4, rtol=1e-4)
