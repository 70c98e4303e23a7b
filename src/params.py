"""
Parameter files: plain state dicts (model.load_state_dict(torch.load(p)) loads them), written atomically,
carrying what built them in the state dict's _metadata, and checked against the model on loading with one
clear message for any mismatch.
"""
import torch

from model import EXPERIMENTS, GPT, GPTConfig, config_for_variant
from checkpoint import save_state_dict
from utils import UserError, check_output_dir

SIZES = ("n_layer", "n_head", "n_embd", "block_size")  # with the variant, bottleneck_dim and EXPERIMENTS: a model
META_KEY = "birthplace_gpt"  # our entry in state_dict._metadata; torch ignores unknown entries


def describe_model(model, itos):
    """What a params file records: the model's GPTConfig less dropout and fused attention, and the vocabulary."""
    c = model.config
    return {"variant": c.variant, **{name: getattr(c, name) for name in SIZES + EXPERIMENTS},
            "bottleneck_dim": c.bottleneck_dim if c.perceiver else None, "vocab": "".join(itos)}


def infer_variant(state_dict):
    """(variant, bottleneck_dim) from the parameter names: for files without a description (the course's)."""
    if "down_block.C" in state_dict:
        return "perceiver", state_dict["down_block.C"].shape[1]
    if any(name.endswith("attn.w2") for name in state_dict):
        return "synthesizer", None
    if "pos_emb" not in state_dict and any(name.endswith("attn.rope_cache") for name in state_dict):
        return "rope", None  # not just "no pos_emb": sinusoidal position embeddings are not saved either
    return "vanilla", None


def save_params(model, path, itos):
    """Write the model's state dict (of the uncompiled model) with its description."""
    state_dict = model.state_dict()
    state_dict._metadata[META_KEY] = describe_model(model, itos)
    check_output_dir(path, "params file")
    try:
        save_state_dict(state_dict, path)
    except OSError as e:
        raise UserError(f"cannot write params file {path}: {e.strerror or e}") from None


def read_state_dict(path):
    """The state dict in a params file (on the CPU), or a UserError saying why it cannot be read."""
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"params file not found: {path}") from None
    except Exception as e:  # truncated or not a torch file at all
        raise UserError(f"cannot read params file {path}: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(state_dict, dict):
        raise UserError(f"params file {path} does not hold a state dict")
    return state_dict


def model_description(state_dict):
    """What save_params recorded in a state dict, or None; files from before the experiments had them off."""
    found = getattr(state_dict, "_metadata", {}).get(META_KEY)
    return {**{name: getattr(GPTConfig, name) for name in EXPERIMENTS}, **found} if found else None


def load_model(path, itos, expect=None, fallback=None, **overrides):
    """The one way to get a GPT from a params file: built from the GPTConfig the file describes, with overrides
    of what the file does not fix (dropout, fused_attention), then loaded with load_params's checks. expect:
    values the user gave (variant, n_layer, ...), refused where the file differs. fallback: the config for a
    file without a description (the course's), checked by its weights alone."""
    state_dict = read_state_dict(path)
    found = model_description(state_dict)
    if found:
        expect = {k: v for k, v in (expect or {}).items() if k != "bottleneck_dim" or found["variant"] == "perceiver"}
        if expect.get("variant", found["variant"]) != found["variant"]:
            raise UserError(f"params file {path} holds a {found['variant']} model, but the variant in use "
                            f"is {expect['variant']}")
        diffs = [f"{key} {found.get(key)!r} in the file vs {value!r} given" for key, value in expect.items()
                 if found.get(key) != value]
        if diffs:
            raise UserError(f"params file {path} does not fit the options: " + "; ".join(diffs))
        try:
            config = config_for_variant(found["variant"], len(itos), bottleneck_dim=found["bottleneck_dim"],
                                        **{name: found[name] for name in SIZES + EXPERIMENTS}, **overrides)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"params file {path} has a model description this code cannot build: {e}") from None
    elif fallback is None:
        raise UserError(f"params file {path} has no model description (variant, sizes); this needs one "
                        f"written by src/run.py pretrain or finetune")
    else:
        config = fallback
    model = GPT(config)
    load_params(model, path, itos, state_dict)
    return model


def load_params(model, path, itos, state_dict=None):
    """Load the params file at path (or its state_dict) into model, refusing another variant, size or vocabulary."""
    state_dict = read_state_dict(path) if state_dict is None else state_dict
    variant = model.config.variant
    expected = describe_model(model, itos)
    found = model_description(state_dict)
    file_variant, file_bottleneck = infer_variant(state_dict)
    if file_variant != variant:
        raise UserError(f"params file {path} holds a {file_variant} model, but the variant in use is {variant}")
    if variant == "perceiver" and file_bottleneck != expected["bottleneck_dim"]:
        raise UserError(f"params file {path} has bottleneck_dim {file_bottleneck}, but "
                        f"--bottleneck_dim is {expected['bottleneck_dim']}")
    if found:
        diffs = [f"{key} {found.get(key)!r} in the file vs {value!r} here" for key, value in expected.items()
                 if key != "vocab" and found.get(key) != value]
        if found.get("vocab") not in (None, expected["vocab"]):
            theirs, ours = found["vocab"], expected["vocab"]
            diffs.append(f"the vocabulary differs: {len(theirs)} characters in the file vs {len(ours)} here "
                         f"(only in the file: {''.join(sorted(set(theirs) - set(ours)))!r}, only here: "
                         f"{''.join(sorted(set(ours) - set(theirs)))!r}; was it pretrained on another corpus?)")
        if diffs:
            raise UserError(f"params file {path} does not fit the model: " + "; ".join(diffs))
    # the course's files carry the causal-mask buffers that we rebuild instead
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith(".mask")}
    own = model.state_dict()
    wrong_shape = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
                   for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    parts = [f"{what} {', '.join(names[:n])}" for what, names, n in (
        ("missing", sorted(set(own) - set(state_dict)), 4), ("unexpected", sorted(set(state_dict) - set(own)), 4),
        ("shape of", wrong_shape, 3)) if names]
    if parts:
        raise UserError(f"params file {path} does not fit the {variant} model "
                        f"(n_layer/n_head/n_embd/block_size/vocabulary/position_embedding differ?): "
                        + "; ".join(parts))
    # shared_qk stores its one projection under both names; a file without metadata may hold two
    if model.config.shared_qk and any(not torch.equal(v, state_dict[k.replace(".query.", ".key.")])
                                      for k, v in state_dict.items() if ".query." in k):
        raise UserError(f"params file {path} has separate query and key projections, but shared_qk is on")
    model.load_state_dict(state_dict)
