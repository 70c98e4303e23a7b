"""
Tests for src/model.py: configuration, parameter counts, structure,
initialisation, shapes, the loss, causality of every variant, the KV cache,
and that each variant can learn.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from attention import CausalCrossAttention, CausalSelfAttention, KVCache, SynthesizerAttention
from model import GPT, Block, DownProjectBlock, GPTConfig, UpProjectBlock, config_for_variant

VARIANTS = ["vanilla", "rope", "perceiver", "synthesizer"]
VOCAB, BLOCK, BOTTLENECK = 13, 16, 6


pytestmark = pytest.mark.usefixtures("one_thread")


def full_size(variant, bottleneck_dim=32):
    return GPT(config_for_variant(variant, 256, 128, bottleneck_dim=bottleneck_dim))


def tiny(variant, seed=0, n_layer=3, dropout=0.0, **kwargs):
    torch.manual_seed(seed)
    cfg = config_for_variant(variant, VOCAB, BLOCK, bottleneck_dim=BOTTLENECK, n_layer=n_layer, n_head=2,
                             n_embd=16, embd_pdrop=dropout, resid_pdrop=dropout, attn_pdrop=dropout, **kwargs)
    return GPT(cfg)


def max_len(variant, block_size=BLOCK):
    """Longest input the model allows: block_size-1 for the synthesizer, block_size otherwise."""
    return block_size - 1 if variant == "synthesizer" else block_size


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def random_ids(B, T, seed, low=0):
    return torch.randint(low, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- configuration


def test_gptconfig_defaults():
    cfg = GPTConfig(256, 128)
    assert (cfg.vocab_size, cfg.block_size) == (256, 128)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd) == (4, 8, 256)
    assert cfg.embd_pdrop == cfg.resid_pdrop == cfg.attn_pdrop == 0.1
    assert cfg.rope is False and cfg.perceiver is False and cfg.synthesizer is False
    assert cfg.bottleneck_dim is None
    # keyword arguments override the defaults, on this instance only
    other = GPTConfig(10, 20, n_layer=2, rope=True)
    assert other.n_layer == 2 and other.rope is True
    assert GPTConfig(10, 20).n_layer == 4 and GPTConfig(10, 20).rope is False


def test_gptconfig_refuses_unknown_options_and_two_variants():
    with pytest.raises(TypeError, match="n_layers"):
        GPTConfig(256, 128, n_layers=2)  # misspelt: refused, not ignored
    with pytest.raises(ValueError, match="at most one"):
        GPTConfig(256, 128, rope=True, synthesizer=True)


@pytest.mark.parametrize("sizes,words", [
    (dict(n_head=0), "n_head 0"), (dict(n_embd=0), "n_embd 0"), (dict(n_layer=-1), "n_layer -1"),
    (dict(attn_pdrop=1.0), "dropout"), (dict(embd_pdrop=-0.1), "dropout"),
])
def test_gptconfig_refuses_impossible_sizes(sizes, words):
    with pytest.raises(ValueError, match=words):
        GPTConfig(16, 32, **sizes)


def test_gpt_checks_a_config_the_course_changed_after_construction():
    """The course's initialize_*_model functions switch the variant on a built GPTConfig: GPT checks again."""
    for change, words in ((dict(perceiver=True, bottleneck_dim=8), "n_layer >= 2"), (dict(rope=True), "even")):
        config = GPTConfig(16, 32, n_layer=1, n_head=2, n_embd=6)
        for name, value in change.items():
            setattr(config, name, value)
        with pytest.raises(ValueError, match=words):
            GPT(config)
    GPT(GPTConfig(16, 32, n_layer=1, n_head=2, n_embd=6))  # as built, the config is fine


@pytest.mark.parametrize("variant", VARIANTS)
def test_gptconfig_names_its_variant(variant):
    assert config_for_variant(variant, 256, 128).variant == variant
    cfg = GPTConfig(256, 128)
    setattr(cfg, variant, True)  # the course's initialize_*_model set the flag after construction
    assert cfg.variant == variant


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_for_variant_sets_exactly_its_flag(variant):
    cfg = config_for_variant(variant, 256, 128, bottleneck_dim=64)
    assert cfg.rope is (variant == "rope")
    assert cfg.perceiver is (variant == "perceiver")
    assert cfg.synthesizer is (variant == "synthesizer")
    assert cfg.bottleneck_dim == (64 if variant == "perceiver" else None)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd) == (4, 8, 256)


@pytest.mark.parametrize("bad", ["Vanilla", "transformer", "", "rope "])
def test_config_for_variant_rejects_unknown_variants(bad):
    with pytest.raises(ValueError):
        config_for_variant(bad, 256, 128)


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("variant,expected", [("vanilla", 3_323_392), ("rope", 3_290_624),
                                              ("synthesizer", 3_076_988)])
def test_parameter_counts(variant, expected):
    assert n_params(full_size(variant)) == expected


@pytest.mark.parametrize("bottleneck_dim", [32, 64])
def test_perceiver_parameter_count(bottleneck_dim):
    assert n_params(full_size("perceiver", bottleneck_dim)) == 3_323_392 + bottleneck_dim * 256


def test_parameter_count_arithmetic():
    """The assignment's vanilla count from first principles: embeddings, 4 blocks, ln_f, head."""
    V, T, C, L = 256, 128, 256, 4
    block = 2 * 2 * C + 4 * (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    assert V * C + T * C + L * block + 2 * C + C * V == 3_323_392
    assert n_params(full_size("vanilla")) == V * C + T * C + L * block + 2 * C + C * V


# ----------------------------------------------------------------------------- structure


# The course's printout (model.py of minGPT's fork): blocks an nn.Sequential of Blocks (ln1, ln2, attn, mlp),
# CausalSelfAttention's key, query, value, attn_drop, resid_drop, proj, and mlp a plain Sequential. pos_emb is a
# Parameter, not a module, so vanilla and rope print alike. The LayerNorm line is torch's own (its repr gained
# "bias=True" in torch 2.1), the rest is spelt out.
COURSE_BLOCK = """\
    ({i}): Block(
      (ln1): {ln}
      (ln2): {ln}
      (attn): CausalSelfAttention(
        (key): Linear(in_features=256, out_features=256, bias=True)
        (query): Linear(in_features=256, out_features=256, bias=True)
        (value): Linear(in_features=256, out_features=256, bias=True)
        (attn_drop): Dropout(p=0.1, inplace=False)
        (resid_drop): Dropout(p=0.1, inplace=False)
        (proj): Linear(in_features=256, out_features=256, bias=True)
      )
      (mlp): Sequential(
        (0): Linear(in_features=256, out_features=1024, bias=True)
        (1): GELU(approximate='none')
        (2): Linear(in_features=1024, out_features=256, bias=True)
        (3): Dropout(p=0.1, inplace=False)
      )
    )
"""
COURSE_GPT = """\
GPT(
  (tok_emb): Embedding(256, 256)
  (drop): Dropout(p=0.1, inplace=False)
  (blocks): Sequential(
{blocks}  )
  (ln_f): {ln}
  (head): Linear(in_features=256, out_features=256, bias=False)
)"""


def course_printout():
    ln = repr(nn.LayerNorm(256))
    return COURSE_GPT.format(blocks="".join(COURSE_BLOCK.format(i=i, ln=ln) for i in range(4)), ln=ln)


def test_course_printout_is_the_course_models():
    """What the grader compares: str() of the models the helper builds from the handout's GPTConfig."""
    from submission import helper
    assert course_printout().count("Block(") == 4 and "LayerNorm((256,)" in course_printout()
    assert str(helper.initialize_vanilla_model(GPTConfig(256, 128, n_layer=4, n_head=8, n_embd=256))) \
        == course_printout()
    assert str(helper.initialize_rope_model(GPTConfig(256, 128, n_layer=4, n_head=8, n_embd=256))) \
        == course_printout()
    assert str(full_size("vanilla")) == str(full_size("rope")) == course_printout()


def child_names(module):
    return [name for name, _ in module.named_children()]


@pytest.mark.parametrize("variant", VARIANTS)
def test_modules_in_the_course_order(variant):
    """Every variant as the course builds it: plain nn.Sequential blocks and MLPs, and the attention
    layers' projections in the course's order."""
    model = full_size(variant)
    expected = ["tok_emb", "drop", "down_block", "blocks", "up_block", "ln_f", "head"] if variant == "perceiver" \
        else ["tok_emb", "drop", "blocks", "ln_f", "head"]
    assert child_names(model) == expected
    assert type(model.blocks) is nn.Sequential and len(model.blocks) == (2 if variant == "perceiver" else 4)
    blocks = [m for m in model.modules() if isinstance(m, (Block, DownProjectBlock, UpProjectBlock))]
    assert len(blocks) == 4
    for block in blocks:
        assert child_names(block) == ["ln1", "ln2", "attn", "mlp"]
        assert type(block.mlp) is nn.Sequential
        assert [type(m) for m in block.mlp] == [nn.Linear, nn.GELU, nn.Linear, nn.Dropout]
        if isinstance(block.attn, SynthesizerAttention):  # its own w1, w2, b2 where the others have key and query
            assert child_names(block.attn) == ["w1", "value", "attn_drop", "resid_drop", "proj"]
            assert [name for name, _ in block.attn.named_parameters()][:4] == ["w2", "b2", "w1.weight", "w1.bias"]
        else:
            assert child_names(block.attn) == ["key", "query", "value", "attn_drop", "resid_drop", "proj"]


def test_shared_qk_prints_its_one_projection_under_both_names():
    attn = tiny("vanilla", shared_qk=True).blocks[0].attn
    assert attn.query is attn.key
    printed = [line.split(")")[0].strip(" (") for line in str(attn).splitlines()[1:-1]]
    assert printed == ["key", "query", "value", "attn_drop", "resid_drop", "proj"]


# The state dicts main wrote before the modules took the course's order (attention: value, proj, key, query;
# blocks an nn.ModuleList): names and shapes at vocab 5, block 8, n_embd 4, n_head 2, bottleneck 3, one block
# (the perceiver: down, one, up). Torch loads state dicts by name, so its params files load into today's models.
def old_block(prefix, attention):
    ln = [(f"{prefix}.{ln}.{p}", (4,)) for ln in ("ln1", "ln2") for p in ("weight", "bias")]
    mlp = [(f"{prefix}.mlp.0.weight", (16, 4)), (f"{prefix}.mlp.0.bias", (16,)),
           (f"{prefix}.mlp.2.weight", (4, 16)), (f"{prefix}.mlp.2.bias", (4,))]
    return ln + [(f"{prefix}.attn.{name}", shape) for name, shape in attention] + mlp


DOT_PRODUCT = [(f"{name}.{p}", (4, 4) if p == "weight" else (4,)) for name in ("value", "proj", "key", "query")
               for p in ("weight", "bias")]
OLD_STATE_DICTS = {
    "vanilla": [("pos_emb", (1, 8, 4)), ("tok_emb.weight", (5, 4)), *old_block("blocks.0", DOT_PRODUCT),
                ("ln_f.weight", (4,)), ("ln_f.bias", (4,)), ("head.weight", (5, 4))],
    "rope": [("tok_emb.weight", (5, 4)), *old_block("blocks.0", [("rope_cache", (8, 1, 2)), *DOT_PRODUCT]),
             ("ln_f.weight", (4,)), ("ln_f.bias", (4,)), ("head.weight", (5, 4))],
    "perceiver": [("pos_emb", (1, 8, 4)), ("tok_emb.weight", (5, 4)), ("down_block.C", (1, 3, 4)),
                  *old_block("down_block", DOT_PRODUCT), *old_block("blocks.0", DOT_PRODUCT),
                  *old_block("up_block", DOT_PRODUCT), ("ln_f.weight", (4,)), ("ln_f.bias", (4,)),
                  ("head.weight", (5, 4))],
    "synthesizer": [("pos_emb", (1, 8, 4)), ("tok_emb.weight", (5, 4)),
                    *old_block("blocks.0", [("w2", (2, 7)), ("b2", (7,)), *DOT_PRODUCT[:4],
                                            ("w1.weight", (4, 4)), ("w1.bias", (4,))]),
                    ("ln_f.weight", (4,)), ("ln_f.bias", (4,)), ("head.weight", (5, 4))],
}


def small(variant):
    return GPT(config_for_variant(variant, 5, 8, bottleneck_dim=3, n_layer=3 if variant == "perceiver" else 1,
                                  n_head=2, n_embd=4))


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_names_and_shapes_are_those_of_older_params_files(variant):
    found = [(name, tuple(t.shape)) for name, t in small(variant).state_dict().items()]
    assert sorted(found) == sorted(OLD_STATE_DICTS[variant])


@pytest.mark.parametrize("variant", VARIANTS)
def test_params_file_in_the_old_order_loads_by_name(tmp_path, variant):
    """A file as main wrote it, entries in its order, each filled with its own number: every tensor
    lands in the parameter of its name (a load by position would mix the same-shaped projections)."""
    from params import load_params
    old = {name: torch.full(shape, float(i)) for i, (name, shape) in enumerate(OLD_STATE_DICTS[variant])}
    path = str(tmp_path / f"{variant}.params")
    torch.save(old, path)
    model = small(variant)
    load_params(model, path, list("abcde"))
    loaded = model.state_dict()
    for name, tensor in old.items():
        assert torch.equal(loaded[name], tensor), name


def test_vanilla_has_zero_initialised_position_embedding():
    model = full_size("vanilla")
    params = dict(model.named_parameters())
    assert "pos_emb" in params
    assert params["pos_emb"].shape == (1, 128, 256)
    assert torch.all(params["pos_emb"] == 0)


def test_rope_has_no_position_embedding_and_rotates_every_layer():
    model = full_size("rope")
    assert not any("pos_emb" in name for name, _ in model.named_parameters())
    attns = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    assert len(attns) == 4
    for attn in attns:
        assert "rope_cache" in dict(attn.named_buffers())
    assert not any(m for m in full_size("vanilla").modules()
                   if isinstance(m, CausalSelfAttention) and "rope_cache" in dict(m.named_buffers()))


@pytest.mark.parametrize("bottleneck_dim", [32, 64])
def test_perceiver_structure(bottleneck_dim):
    model = full_size("perceiver", bottleneck_dim)
    modules = list(model.modules())
    downs = [m for m in modules if isinstance(m, DownProjectBlock)]
    ups = [m for m in modules if isinstance(m, UpProjectBlock)]
    blocks = [m for m in modules if isinstance(m, Block)]
    assert len(downs) == 1 and len(ups) == 1 and len(blocks) == 4 - 2
    C = downs[0].C
    assert isinstance(C, nn.Parameter) and C.shape == (1, bottleneck_dim, 256)
    # Xavier-uniform: U(-b, b). Accept the bound for the tensor as PyTorch sees it (1, m, C) or for
    # the (m, C) matrix; the samples fill most of the interval and have the uniform's std b/sqrt(3).
    bounds = [math.sqrt(6 / (bottleneck_dim * 256 + 256)), math.sqrt(6 / (bottleneck_dim + 256))]
    top = C.detach().abs().max().item()
    bound = min(bounds, key=lambda b: abs(b - top))
    assert 0.9 * bound <= top <= bound * (1 + 1e-6)
    assert abs(C.detach().std().item() - bound / math.sqrt(3)) < 0.05 * bound
    # cross-attention in the down and up blocks
    assert isinstance(downs[0].attn, CausalCrossAttention) and isinstance(ups[0].attn, CausalCrossAttention)


def test_perceiver_middle_blocks_run_on_bottleneck_length():
    model = tiny("perceiver", n_layer=4).eval()
    lengths = {}

    def hook(name):
        def record(module, inputs, output):
            lengths.setdefault(name, []).append(output.shape[1])
        return record

    for m in model.modules():
        if isinstance(m, (DownProjectBlock, Block, UpProjectBlock)):
            m.register_forward_hook(hook(type(m).__name__))
    for T in (3, BLOCK):
        lengths.clear()
        model(random_ids(2, T, seed=T))
        assert lengths == {"DownProjectBlock": [BOTTLENECK], "Block": [BOTTLENECK, BOTTLENECK],
                           "UpProjectBlock": [T]}


def test_synthesizer_blocks_use_synthesizer_attention():
    model = full_size("synthesizer")
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    assert len(blocks) == 4
    assert all(isinstance(b.attn, SynthesizerAttention) for b in blocks)
    assert not any(isinstance(m, CausalCrossAttention) for m in model.modules())
    assert not any(isinstance(m, SynthesizerAttention) for m in full_size("vanilla").modules())


@pytest.mark.parametrize("variant", VARIANTS)
def test_head_has_no_bias_and_mlp_is_4x_gelu(variant):
    model = full_size(variant)
    assert isinstance(model.head, nn.Linear) and model.head.bias is None
    assert model.head.weight.shape == (256, 256)
    assert isinstance(model.ln_f, nn.LayerNorm)
    for block in model.modules():
        if isinstance(block, (Block, DownProjectBlock, UpProjectBlock)):
            linears = [m for m in block.mlp.modules() if isinstance(m, nn.Linear)]
            assert [(l.in_features, l.out_features) for l in linears] == [(256, 1024), (1024, 256)]
            assert any(isinstance(m, nn.GELU) for m in block.mlp.modules())


@pytest.mark.parametrize("variant", VARIANTS)
def test_initialisation(variant):
    model = full_size(variant)
    seen = 0
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            w = m.weight.detach()
            if w.numel() >= 2**15:
                assert abs(w.std().item() - 0.02) < 0.001, name
                assert abs(w.mean().item()) < 0.001, name
                seen += 1
            if isinstance(m, nn.Linear) and m.bias is not None:
                assert torch.all(m.bias == 0), name
        elif isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0), name
        elif isinstance(m, SynthesizerAttention):  # B (w2) is a weight, b2 a bias
            assert abs(m.w2.std().item() - 0.02) < 0.001 and abs(m.w2.mean().item()) < 0.001, name
            assert torch.all(m.b2 == 0), name
            seen += 1
    assert seen >= 4 * 3 + 2 + (4 if variant == "synthesizer" else 0)  # every block's big matrices, the token embedding and the head


def test_block_is_pre_layernorm():
    """Block(x) = x + attn(ln1(x)), then + mlp(ln2(.)); checked with random LayerNorm parameters."""
    cfg = GPTConfig(VOCAB, BLOCK, n_head=2, n_embd=16, embd_pdrop=0, resid_pdrop=0, attn_pdrop=0)
    block = Block(cfg).eval()
    with torch.no_grad():
        for ln in (block.ln1, block.ln2):
            ln.weight.normal_()
            ln.bias.normal_()
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        h = x + block.attn(F.layer_norm(x, (16,), block.ln1.weight, block.ln1.bias))
        expected = h + block.mlp(F.layer_norm(h, (16,), block.ln2.weight, block.ln2.bias))
        torch.testing.assert_close(block(x), expected)


def assert_logits_from_parts(model, idx):
    """model(idx) logits == head(ln_f(blocks(tok_emb + pos_emb))), computed by hand."""
    T = idx.size(1)
    with torch.no_grad():
        x = model.tok_emb.weight[idx] + model.pos_emb[0, :T]  # (B, T, C)
        for block in model.blocks:
            x = block(x)
        expected = F.linear(F.layer_norm(x, (x.size(-1),), model.ln_f.weight, model.ln_f.bias), model.head.weight)
        torch.testing.assert_close(model(idx)[0], expected)


def test_vanilla_forward_composition():
    """logits = head(ln_f(blocks(tok_emb + pos_emb))) for the vanilla model."""
    model = tiny("vanilla").eval()
    with torch.no_grad():
        model.pos_emb.normal_()
    assert_logits_from_parts(model, random_ids(2, 9, seed=1))


# ----------------------------------------------------------------------------- shapes and loss


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes(variant):
    model = tiny(variant).eval()
    lengths = {max_len(variant), BLOCK - 1, 1, 5}
    if variant == "perceiver":
        lengths |= {BOTTLENECK - 2, BOTTLENECK, BOTTLENECK + 3}  # shorter and longer than the bottleneck
    with torch.no_grad():
        for T in sorted(lengths):
            logits, loss = model(random_ids(3, T, seed=T))
            assert logits.shape == (3, T, VOCAB), T
            assert loss is None


def test_synthesizer_refuses_block_size_inputs():
    model = tiny("synthesizer").eval()
    with pytest.raises((AssertionError, ValueError, RuntimeError)):
        model(random_ids(1, BLOCK, seed=0))


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_is_cross_entropy_ignoring_pad(variant):
    model = tiny(variant).eval()
    T = BLOCK - 1
    idx = random_ids(3, T, seed=2)
    targets = random_ids(3, T, seed=3)
    targets[0, :5] = 0
    targets[2, 10:] = 0
    with torch.no_grad():
        logits, loss = model(idx, targets)
    logp = torch.log_softmax(logits.double(), dim=-1)
    terms = [-logp[b, t, targets[b, t]] for b in range(3) for t in range(T) if targets[b, t] != 0]
    assert abs(loss.item() - (sum(terms) / len(terms)).item()) < 1e-4
    # a single non-PAD target: the loss is that position's alone
    only = torch.zeros_like(targets)
    only[1, 7] = 5
    with torch.no_grad():
        _, loss_one = model(idx, only)
    assert abs(loss_one.item() - (-logp[1, 7, 5]).item()) < 1e-4


# ----------------------------------------------------------------------------- causality


def causality_cases():
    for variant in VARIANTS:
        for fused in (False, True):
            yield variant, fused, max_len(variant)
        if variant == "perceiver":
            for fused in (False, True):
                yield variant, fused, BOTTLENECK - 2  # input shorter than the bottleneck


def assert_causal(model, T, seed):
    """Logits before position t ignore changes at t and later; those at t see them."""
    idx = random_ids(2, T, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        logits = model(idx)[0]
        for t in range(T):
            changed = idx.clone()
            changed[:, t:] = (idx[:, t:] + torch.randint(1, VOCAB, idx[:, t:].shape, generator=g)) % VOCAB
            new = model(changed)[0]
            torch.testing.assert_close(new[:, :t], logits[:, :t], atol=1e-5, rtol=1e-5)
            assert not torch.allclose(new[:, t], logits[:, t], atol=1e-5)
    return idx, logits


@pytest.mark.parametrize("variant,fused,T", list(causality_cases()))
def test_every_variant_is_causal(variant, fused, T):
    model = tiny(variant, seed=4, fused_attention=fused).eval()
    with torch.no_grad():  # random position embeddings too, so positions matter for vanilla/perceiver
        if hasattr(model, "pos_emb"):
            model.pos_emb.normal_(std=0.5)
    idx, logits = assert_causal(model, T, seed=5)
    with torch.no_grad():  # and the last position does look back at the first token
        changed = idx.clone()
        changed[:, 0] = (idx[:, 0] + 1) % VOCAB
        assert not torch.allclose(model(changed)[0][:, -1], logits[:, -1], atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_and_plain_models_agree(variant):
    plain = tiny(variant, seed=7).eval()
    fused = tiny(variant, seed=8, fused_attention=True).eval()
    fused.load_state_dict(plain.state_dict())
    idx = random_ids(2, max_len(variant), seed=9)
    with torch.no_grad():
        torch.testing.assert_close(fused(idx)[0], plain(idx)[0], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("variant", ["vanilla", "rope", "synthesizer"])
def test_model_kv_cache_matches_full_forward(variant, fused):
    model = tiny(variant, seed=10, fused_attention=fused).eval()
    with torch.no_grad():
        if hasattr(model, "pos_emb"):
            model.pos_emb.normal_(std=0.5)
    T = max_len(variant)
    idx = random_ids(2, T, seed=11)
    with torch.no_grad():
        full = model(idx)[0]
        cache = KVCache(model.max_len)
        steps = [model(idx[:, :4], kv_cache=cache)[0]]
        steps += [model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(4, T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- learning


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_model_overfits_one_batch(variant):
    model = tiny(variant, seed=12, n_layer=2)
    model.train()
    T = BLOCK - 1
    idx = random_ids(4, T, seed=13)
    targets = random_ids(4, T, seed=14, low=1)  # no PAD: every position counts
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with torch.no_grad():
        first = model(idx, targets)[1].item()
    assert abs(first - math.log(VOCAB)) < 0.5  # untrained: about uniform over the vocabulary
    for _ in range(100):
        _, loss = model(idx, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        last = model(idx, targets)[1].item()
    assert last < 0.2 * first, (first, last)


# ------------------------------------------------------------------------ experiment switches (the CS224N handout's)


def test_experiment_switches_are_off_by_default():
    cfg = GPTConfig(256, 128)
    assert cfg.mask_after_softmax is False and cfg.position_embedding == "learned" and cfg.shared_qk is False
    for variant in VARIANTS:
        cfg = config_for_variant(variant, 256, 128)
        assert (cfg.mask_after_softmax, cfg.position_embedding, cfg.shared_qk) == (False, "learned", False)


V, T, C, L = 256, 128, 256, 4
QK = C * C + C  # one query (or key) projection


@pytest.mark.parametrize("variant,switch,expected", [
    ("vanilla", dict(mask_after_softmax=True), 3_323_392),  # changes no parameter
    ("vanilla", dict(position_embedding="sinusoidal"), 3_323_392 - T * C),  # no learned pos_emb
    ("vanilla", dict(shared_qk=True), 3_323_392 - L * QK),
    ("rope", dict(shared_qk=True), 3_290_624 - L * QK),
    ("synthesizer", dict(position_embedding="sinusoidal"), 3_076_988 - T * C),
    ("perceiver", dict(shared_qk=True), 3_323_392 + 32 * C - L * QK),  # down, 2 blocks, up: 4 attentions
])
def test_parameter_counts_with_switches(variant, switch, expected):
    assert n_params(GPT(config_for_variant(variant, V, T, **switch))) == expected


@pytest.mark.parametrize("n_embd,n_head", [(16, 2), (15, 3)])
def test_sinusoidal_position_embedding_is_the_transformer_formula(n_embd, n_head):
    """PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(t / 10000^(2i/C)); a buffer, not saved."""
    model = GPT(config_for_variant("vanilla", VOCAB, BLOCK, n_layer=1, n_head=n_head, n_embd=n_embd,
                                   position_embedding="sinusoidal"))
    assert not any("pos_emb" in name for name, _ in model.named_parameters())
    assert "pos_emb" not in model.state_dict()
    pe = model.pos_emb
    assert pe.shape == (1, BLOCK, n_embd) and not pe.requires_grad
    for t in range(BLOCK):
        for j in range(n_embd):
            angle = t / 10000 ** (2 * (j // 2) / n_embd)
            assert abs(pe[0, t, j].item() - (math.sin(angle) if j % 2 == 0 else math.cos(angle))) < 1e-6, (t, j)


def test_sinusoidal_forward_adds_the_fixed_table():
    model = tiny("vanilla", position_embedding="sinusoidal").eval()
    assert_logits_from_parts(model, random_ids(2, 9, seed=30))


@pytest.mark.parametrize("variant,switch", [("vanilla", dict(position_embedding="sinusoidal")),
                                            ("vanilla", dict(shared_qk=True)), ("rope", dict(shared_qk=True))])
def test_sinusoidal_and_shared_qk_models_stay_causal_and_cache(variant, switch):
    model = tiny(variant, seed=31, n_layer=2, **switch).eval()
    assert model.supports_kv_cache
    assert_causal(model, BLOCK, seed=32)
    idx = random_ids(2, BLOCK, seed=33)
    with torch.no_grad():
        cache = KVCache(model.max_len)
        steps = [model(idx[:, :5], kv_cache=cache)[0]] + [model(idx[:, t:t + 1], kv_cache=cache)[0]
                                                          for t in range(5, BLOCK)]
        torch.testing.assert_close(torch.cat(steps, dim=1), model(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["vanilla", "perceiver", "synthesizer"])
def test_mask_after_softmax_model_is_not_causal(variant):
    """The naive mask leaks the future through the softmax's denominator: changing every token after
    the first changes the logits at the first position. The fused flag is ignored (plain path). The synthesizer
    is the exception: row i of its scores comes from token i alone, so the future cannot move it."""
    plain = tiny(variant, seed=34, n_layer=2, mask_after_softmax=True).eval()
    with torch.no_grad():  # scores that depend on the tokens (the synthesizer's start at zero)
        for p in plain.parameters():
            p.normal_(std=0.3)
    fused = tiny(variant, seed=34, n_layer=2, mask_after_softmax=True, fused_attention=True).eval()
    fused.load_state_dict(plain.state_dict())
    assert not plain.supports_kv_cache  # a cache cannot revise earlier positions
    T = max_len(variant)
    idx = random_ids(2, T, seed=35)
    changed = idx.clone()
    changed[:, 1:] = (idx[:, 1:] + 1) % VOCAB
    with torch.no_grad():
        logits = plain(idx)[0]
        torch.testing.assert_close(fused(idx)[0], logits)
        if variant == "synthesizer":
            assert_causal(plain, T, seed=36)
        else:
            assert not torch.allclose(plain(changed)[0][:, 0], logits[:, 0], atol=1e-5)  # as assert_causal


@pytest.mark.parametrize("variant,switch,words", [
    ("rope", dict(position_embedding="sinusoidal"), ["rope", "position_embedding"]),
    ("synthesizer", dict(shared_qk=True), ["synthesizer", "shared_qk"]),
    ("vanilla", dict(position_embedding="rotary"), ["rotary", "sinusoidal"]),
])
def test_switches_refused_where_they_do_not_apply(variant, switch, words):
    with pytest.raises(ValueError) as info:
        config_for_variant(variant, VOCAB, BLOCK, **switch)
    for word in words:
        assert word in str(info.value)

