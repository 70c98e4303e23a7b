"""Tests for src/params.py: parameter files."""
import os
import re

import pytest
import torch

from model import GPT, config_for_variant
from params import META_KEY, load_model, load_params, save_params
from utils import UserError, set_seed

ITOS = ["\u25a1", "\u2047"] + sorted(set("abcdefghij ?."))
OTHER_ITOS = ["\u25a1", "\u2047"] + sorted(set("abcdefghik ?."))  # same size, one character differs
BIGGER_ITOS = ITOS + ["z"]
BLOCK = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def make(variant="vanilla", itos=ITOS, seed=0, bottleneck_dim=4, n_layer=2, n_head=2, n_embd=32, block=BLOCK,
         **switches):
    set_seed(seed)
    cfg = config_for_variant(variant, len(itos), block, bottleneck_dim=bottleneck_dim, n_layer=n_layer,
                             n_head=n_head, n_embd=n_embd, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0,
                             **switches)
    return GPT(cfg)


def assert_same_params(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def assert_differ(a, b):
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def mentions(message, *words):
    for word in words:
        assert re.search(rf"(?<![\w.]){re.escape(str(word))}(?![\w])", message), (word, message)


@pytest.mark.parametrize("variant", ["vanilla", "rope", "perceiver", "synthesizer"])
def test_round_trip(tmp_path, variant):
    path = str(tmp_path / f"{variant}.params")
    source = make(variant, seed=1)
    save_params(source, path, ITOS)
    assert os.listdir(tmp_path) == [f"{variant}.params"]  # no temporary file left
    target = make(variant, seed=2)
    assert_differ(source, target)
    load_params(target, path, ITOS)
    assert_same_params(source, target)
    x = torch.tensor([[2, 3, 4, 5]])
    assert torch.equal(source.eval()(x)[0], target.eval()(x)[0])
    # the file is a plain state dict: the course's one-liner loads it
    plain = make(variant, seed=3)
    plain.load_state_dict(torch.load(path))
    assert_same_params(source, plain)


@pytest.mark.parametrize("saved,used", [("vanilla", "rope"), ("rope", "vanilla"), ("perceiver", "vanilla"),
                                        ("synthesizer", "vanilla"), ("vanilla", "synthesizer"),
                                        ("rope", "perceiver"), ("synthesizer", "rope")])
def test_other_variant_refused(tmp_path, saved, used):
    path = str(tmp_path / "p.params")
    save_params(make(saved), path, ITOS)
    target = make(used, seed=5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(UserError) as info:
        load_params(target, path, ITOS)
    mentions(str(info.value), saved, used)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # untouched


@pytest.mark.parametrize("with_metadata", [True, False])
def test_other_variant_refused_without_metadata_too(tmp_path, with_metadata):
    path = str(tmp_path / "p.params")
    if with_metadata:
        save_params(make("rope"), path, ITOS)
    else:
        torch.save(make("rope").state_dict(), path)
    with pytest.raises(UserError) as info:
        load_params(make("vanilla"), path, ITOS)
    mentions(str(info.value), "rope", "vanilla")


def test_other_bottleneck_refused(tmp_path):
    path = str(tmp_path / "p.params")
    save_params(make("perceiver", bottleneck_dim=4), path, ITOS)
    with pytest.raises(UserError) as info:
        load_params(make("perceiver", bottleneck_dim=6), path, ITOS)
    message = str(info.value)
    assert "bottleneck" in message
    mentions(message, 4, 6)
    torch.save(make("perceiver", bottleneck_dim=4).state_dict(), path)  # a plain file as well
    with pytest.raises(UserError) as info:
        load_params(make("perceiver", bottleneck_dim=6), path, ITOS)
    mentions(str(info.value), 4, 6)


@pytest.mark.parametrize("name,saved,used", [("n_embd", 32, 16), ("n_layer", 2, 3), ("n_head", 2, 4),
                                             ("block_size", 16, 24)])
def test_other_sizes_refused(tmp_path, name, saved, used):
    kwargs = {"block" if name == "block_size" else name: saved}
    path = str(tmp_path / "p.params")
    save_params(make(**kwargs), path, ITOS)
    kwargs = {"block" if name == "block_size" else name: used}
    with pytest.raises(UserError) as info:
        load_params(make(**kwargs), path, ITOS)
    mentions(str(info.value), name, saved, used)


def test_other_sizes_refused_without_metadata(tmp_path):
    path = str(tmp_path / "p.params")
    torch.save(make(n_embd=32).state_dict(), path)
    with pytest.raises(UserError) as info:
        load_params(make(n_embd=16), path, ITOS)
    mentions(str(info.value), 32, 16)


@pytest.mark.parametrize("other", [OTHER_ITOS, BIGGER_ITOS])
def test_other_vocabulary_refused(tmp_path, other):
    path = str(tmp_path / "p.params")
    save_params(make(itos=ITOS), path, ITOS)
    with pytest.raises(UserError) as info:
        load_params(make(itos=other), path, other)
    message = str(info.value)
    assert "vocabulary" in message
    mentions(message, len(ITOS), len(other))


def test_plain_state_dict_loads(tmp_path):
    path = str(tmp_path / "plain.params")
    source = make(seed=1)
    torch.save(source.state_dict(), path)
    target = make(seed=2)
    load_params(target, path, ITOS)
    assert_same_params(source, target)


@pytest.mark.parametrize("variant", ["vanilla", "rope", "perceiver", "synthesizer"])
def test_course_file_with_mask_buffers_loads(tmp_path, variant):
    """The course's attention modules keep their causal mask as a persistent buffer `mask`,
    and its code saves with torch.save(model.state_dict(), path): no metadata."""
    path = str(tmp_path / "course.params")
    source = make(variant, seed=1, n_layer=3)
    state = dict(source.state_dict())  # a plain dict: no _metadata at all
    attention = [name for name, _ in source.named_modules() if name.endswith(".attn")]
    assert len(attention) == 3
    for name in attention:
        state[f"{name}.mask"] = torch.tril(torch.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK)
    torch.save(state, path)
    target = make(variant, seed=2, n_layer=3)
    load_params(target, path, ITOS)
    assert_same_params(source, target)


def test_other_vocabulary_size_refused_without_metadata(tmp_path):
    path = str(tmp_path / "p.params")
    torch.save(make(itos=BIGGER_ITOS).state_dict(), path)
    with pytest.raises(UserError) as info:
        load_params(make(itos=ITOS), path, ITOS)
    message = str(info.value)
    assert "vocabulary" in message and "tok_emb.weight" in message
    mentions(message, len(BIGGER_ITOS), len(ITOS))


@pytest.mark.parametrize("metadata", [True, False])
@pytest.mark.parametrize("saved,used", [
    (dict(variant="perceiver"), dict(variant="rope")),  # variant
    (dict(n_embd=32), dict(n_embd=16)),  # shape
    (dict(n_layer=3), dict(n_layer=2)),  # a layer too many
    (dict(itos=BIGGER_ITOS), dict(itos=ITOS)),  # vocabulary
])
def test_every_mismatch_is_one_message(tmp_path, saved, used, metadata):
    """One line, and the loaded-into model untouched, whatever differs and whoever wrote the file."""
    path = str(tmp_path / "p.params")
    source = make(**saved)
    if metadata:
        save_params(source, path, saved.get("itos", ITOS))
    else:
        torch.save(source.state_dict(), path)
    target = make(seed=7, **used)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(UserError) as info:
        load_params(target, path, used.get("itos", ITOS))
    message = str(info.value)
    assert "\n" not in message and "p.params" in message and len(message) < 400, message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_missing_truncated_and_garbage_files(tmp_path):
    model = make()
    with pytest.raises(UserError) as info:
        load_params(model, str(tmp_path / "missing.params"), ITOS)
    assert "missing.params" in str(info.value)

    good = tmp_path / "good.params"
    save_params(make(seed=1), str(good), ITOS)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.params"
    truncated.write_bytes(data[:len(data) // 2])
    garbage = tmp_path / "garbage.params"
    garbage.write_bytes(b"this is not a torch file\n" * 20)
    empty = tmp_path / "empty.params"
    empty.write_bytes(b"")
    not_a_dict = tmp_path / "tensor.params"
    torch.save(torch.zeros(3), str(not_a_dict))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for path in (truncated, garbage, empty, not_a_dict):
        with pytest.raises(UserError) as info:
            load_params(model, str(path), ITOS)
        assert path.name in str(info.value)
        assert "\n" not in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_save_to_missing_directory(tmp_path):
    with pytest.raises(UserError):
        save_params(make(), str(tmp_path / "no" / "such" / "dir.params"), ITOS)


# ------------------------------------------------------------------------ experiment switches (the CS224N handout's)

SWITCHES = [("vanilla", dict(mask_after_softmax=True)), ("vanilla", dict(position_embedding="sinusoidal")),
            ("vanilla", dict(shared_qk=True)), ("perceiver", dict(shared_qk=True, position_embedding="sinusoidal")),
            ("rope", dict(shared_qk=True))]


@pytest.mark.parametrize("variant,switch", SWITCHES)
def test_round_trip_with_switches(tmp_path, variant, switch):
    path = str(tmp_path / "p.params")
    source = make(variant, seed=1, **switch)
    save_params(source, path, ITOS)
    state = torch.load(path)
    described = state._metadata[META_KEY]
    assert {name: described[name] for name in switch} == switch
    assert ("pos_emb" in state) == (variant != "rope" and "position_embedding" not in switch)
    target = make(variant, seed=2, **switch)
    load_params(target, path, ITOS)
    assert_same_params(source, target)
    if switch.get("shared_qk"):
        attns = [m for name, m in target.named_modules() if name.endswith("attn")]
        assert attns and all(m.query is m.key for m in attns)
    x = torch.tensor([[2, 3, 4, 5]])
    assert torch.equal(source.eval()(x)[0], target.eval()(x)[0])


@pytest.mark.parametrize("name,on", [("mask_after_softmax", True), ("position_embedding", "sinusoidal"),
                                     ("shared_qk", True)])
@pytest.mark.parametrize("saved_on", [True, False])
def test_switch_mismatch_refused(tmp_path, name, on, saved_on):
    path = str(tmp_path / "p.params")
    saved, used = ({name: on}, {}) if saved_on else ({}, {name: on})
    save_params(make(**saved), path, ITOS)
    target = make(seed=5, **used)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(UserError) as info:
        load_params(target, path, ITOS)
    off = {"mask_after_softmax": False, "position_embedding": "learned", "shared_qk": False}[name]
    message = str(info.value)
    mentions(message, name, *((on, off) if saved_on else (off, on)))
    assert "\n" not in message and "rope" not in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_file_from_before_the_switches_loads(tmp_path):
    """Older metadata lacks the switches: they were off then."""
    path = str(tmp_path / "p.params")
    source = make(seed=1)
    save_params(source, path, ITOS)
    state = torch.load(path)
    for name in ("mask_after_softmax", "position_embedding", "shared_qk"):
        del state._metadata[META_KEY][name]
    torch.save(state, path)
    target = make(seed=2)
    load_params(target, path, ITOS)
    assert_same_params(source, target)
    with pytest.raises(UserError) as info:
        load_params(make(shared_qk=True), path, ITOS)
    mentions(str(info.value), "shared_qk")


def test_switches_without_metadata(tmp_path):
    """Plain torch.save files: separate q/k refused by a shared_qk model, a sinusoidal file is no rope file."""
    path = str(tmp_path / "p.params")
    torch.save(make(seed=1).state_dict(), path)
    with pytest.raises(UserError) as info:
        load_params(make(shared_qk=True), path, ITOS)
    mentions(str(info.value), "shared_qk")
    torch.save(make(seed=1, shared_qk=True).state_dict(), path)
    load_params(make(seed=2, shared_qk=True), path, ITOS)
    source = make(seed=1, position_embedding="sinusoidal")
    torch.save(source.state_dict(), path)
    target = make(seed=2, position_embedding="sinusoidal")
    load_params(target, path, ITOS)
    assert_same_params(source, target)
    with pytest.raises(UserError) as info:
        load_params(make(), path, ITOS)
    assert "pos_emb" in str(info.value) and "rope" not in str(info.value)


# ----------------------------------------------------------------------------- load_model: the model a file describes


@pytest.mark.parametrize("variant,switches", [("vanilla", {}), ("rope", {}), ("perceiver", {}), ("synthesizer", {}),
                                              ("vanilla", {"position_embedding": "sinusoidal", "shared_qk": True})])
def test_load_model_rebuilds_the_saved_model(tmp_path, variant, switches):
    source = make(variant, n_layer=3 if variant == "perceiver" else 1, **switches).eval()
    path = str(tmp_path / "p.params")
    save_params(source, path, ITOS)
    rebuilt = load_model(path, ITOS, embd_pdrop=0.3, fused_attention=True)
    assert rebuilt.config.variant == variant
    for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "rope", "perceiver", "bottleneck_dim",
                 "synthesizer", "mask_after_softmax", "position_embedding", "shared_qk"):
        assert getattr(rebuilt.config, name) == getattr(source.config, name), name
    # what the file does not fix comes from the caller
    assert rebuilt.config.embd_pdrop == 0.3 and rebuilt.config.fused_attention is True
    x = torch.tensor([[2, 5, 7, 3, 9, 11]])
    torch.testing.assert_close(source(x)[0], rebuilt.eval()(x)[0])


@pytest.mark.parametrize("expect,words", [
    ({"variant": "rope"}, ["vanilla", "rope"]),
    ({"n_layer": 3}, ["n_layer", "2", "3"]),
    ({"n_embd": 16, "block_size": 8}, ["n_embd", "block_size"]),
    ({"shared_qk": True}, ["shared_qk"]),
])
def test_load_model_checks_the_options_given(tmp_path, expect, words):
    path = str(tmp_path / "p.params")
    save_params(make("vanilla"), path, ITOS)
    with pytest.raises(UserError) as info:
        load_model(path, ITOS, expect=expect)
    mentions(str(info.value), *words)
    # repeating the file's own values is fine; bottleneck_dim is the perceiver's alone
    load_model(path, ITOS, expect={"variant": "vanilla", "n_layer": 2, "n_embd": 32, "bottleneck_dim": 64})


def test_load_model_without_description_needs_a_fallback(tmp_path):
    path = str(tmp_path / "plain.params")
    source = make("rope")
    torch.save(source.state_dict(), path)  # the course's way: no metadata
    with pytest.raises(UserError, match="no model description"):
        load_model(path, ITOS)
    assert_same_params(load_model(path, ITOS, fallback=make("rope", seed=3).config), source)
    with pytest.raises(UserError) as info:  # the fallback is still checked against the weights
        load_model(path, ITOS, fallback=make("vanilla").config)
    mentions(str(info.value), "rope", "vanilla")


def test_load_model_refuses_another_vocabulary(tmp_path):
    path = str(tmp_path / "p.params")
    save_params(make("vanilla"), path, ITOS)
    with pytest.raises(UserError, match="vocabulary"):
        load_model(path, BIGGER_ITOS)


def test_params_files_of_the_previous_main_still_load(tmp_path):
    """The description as main wrote it before GPTConfig became a dataclass (the same keys): variant,
    sizes, bottleneck_dim, switches and vocabulary."""
    source = make("perceiver", n_layer=3)
    state_dict = source.state_dict()
    state_dict._metadata[META_KEY] = {"variant": "perceiver", "n_layer": 3, "n_head": 2, "n_embd": 32,
                                      "block_size": BLOCK, "bottleneck_dim": 4, "mask_after_softmax": False,
                                      "position_embedding": "learned", "shared_qk": False, "vocab": "".join(ITOS)}
    path = str(tmp_path / "old.params")
    torch.save(state_dict, path)
    assert_same_params(load_model(path, ITOS), source)

