"""
Parameter files: plain state dicts (loadable with model.load_state_dict(torch.load(p))),
written atomically, carrying what built them in the state dict's _metadata, and checked
against the model on loading with one clear message for any mismatch.
"""
import torch

from model import EXPERIMENTS, GPT, GPTConfig, config_for_variant
from trainer import save_state_dict
from utils import UserError, check_output_dir

META_KEY = "birthplace_gpt"  # our entry in state_dict._metadata; torch ignores unknown entries


def describe_model(model, variant, itos):
    """What the params file records about the model that wrote it."""
    c = model.config
    return {"variant": variant, "n_layer": c.n_layer, "n_head": c.n_head, "n_embd": c.n_embd,
            "block_size": c.block_size, "bottleneck_dim": c.bottleneck_dim if c.perceiver else None,
            **{name: getattr(c, name) for name in EXPERIMENTS}, "vocab": "".join(itos)}


def infer_variant(state_dict):
    """(variant, bottleneck_dim) from the parameter names, for files of any origin."""
    if "down_block.C" in state_dict:
        return "perceiver", state_dict["down_block.C"].shape[1]
    if any(name.endswith("attn.w2") for name in state_dict):
        return "synthesizer", None
    if "pos_emb" not in state_dict and any(name.endswith("attn.rope_cache") for name in state_dict):
        return "rope", None  # not just "no pos_emb": sinusoidal position embeddings are not saved either
    return "vanilla", None


def save_params(model, path, variant, itos):
    """Write the model's state dict (of the uncompiled model) with a description of it."""
    state_dict = model.state_dict()
    state_dict._metadata[META_KEY] = describe_model(model, variant, itos)
    check_output_dir(path, "params file")
    try:
        save_state_dict(state_dict, path)
    except OSError as e:
        raise UserError(f"cannot write params file {path}: {e.strerror or e}") from None


def read_state_dict(path):
    """The state dict in a params file (on the CPU), or a UserError saying why it cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"params file not found: {path}") from None
    except Exception as e:  # truncated or not a torch file at all
        raise UserError(f"cannot read params file {path}: {type(e).__name__}: {str(e)[:200]}") from None


def model_description(state_dict):
    """What save_params recorded about the model in a state dict (None for files of other origin)."""
    return getattr(state_dict, "_metadata", {}).get(META_KEY)


def load_params(model, path, variant, itos):
    """Load a params file into model, refusing a file of another variant, size or vocabulary."""
    load_checked(model, read_state_dict(path), path, variant, itos)


def load_checked(model, state_dict, path, variant, itos):
    """Load state_dict, read from the params file at path, into model after every check of load_params."""
    if not isinstance(state_dict, dict):
        raise UserError(f"params file {path} does not hold a state dict")
    expected = describe_model(model, variant, itos)
    found = model_description(state_dict)
    file_variant, file_bottleneck = infer_variant(state_dict)
    if file_variant != variant:
        raise UserError(f"params file {path} holds a {file_variant} model, but the variant in use is {variant}")
    if variant == "perceiver" and file_bottleneck != expected["bottleneck_dim"]:
        raise UserError(f"params file {path} has bottleneck_dim {file_bottleneck}, but "
                        f"--bottleneck_dim is {expected['bottleneck_dim']}")
    if found:
        # files from before the experiment switches had them all off
        found = {**{name: getattr(GPTConfig, name) for name in EXPERIMENTS}, **found}
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
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
                   for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        parts = ([f"missing {', '.join(missing[:4])}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:4])}"] if unexpected else []) + \
                ([f"shape of {', '.join(wrong_shape[:3])}"] if wrong_shape else [])
        raise UserError(f"params file {path} does not fit the {variant} model "
                        f"(n_layer/n_head/n_embd/block_size/vocabulary/position_embedding differ?): "
                        + "; ".join(parts))
    # shared_qk stores its one projection under both names; a file without metadata may hold two
    if model.config.shared_qk and any(not torch.equal(v, state_dict[k.replace(".query.", ".key.")])
                                      for k, v in state_dict.items() if ".query." in k):
        raise UserError(f"params file {path} has separate query and key projections, but shared_qk is on")
    model.load_state_dict(state_dict)


def model_from_params(path, itos):
    """(GPT, variant) built from the description save_params wrote into the file, dropout off, with the
    file's weights loaded with load_params' checks (so a vocabulary other than itos is refused)."""
    state_dict = read_state_dict(path)
    found = model_description(state_dict)
    if not found:
        raise UserError(f"params file {path} has no model description (variant, sizes); this needs one "
                        f"written by src/run.py pretrain or finetune")
    switches = {name: found.get(name, getattr(GPTConfig, name)) for name in EXPERIMENTS}  # older files: all off
    try:
        config = config_for_variant(found["variant"], len(itos), found["block_size"],
                                    bottleneck_dim=found["bottleneck_dim"], n_layer=found["n_layer"],
                                    n_head=found["n_head"], n_embd=found["n_embd"],
                                    embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, **switches)
    except (KeyError, ValueError) as e:
        raise UserError(f"params file {path} has a model description this code cannot build: {e}") from None
    model = GPT(config)
    load_checked(model, state_dict, path, found["variant"], itos)
    return model, found["variant"]
