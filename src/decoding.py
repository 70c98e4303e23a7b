"""
Answering questions: greedy decoding of up to 32 characters after `question ⁇`.
The prediction is the decoded text up to the next ⁇.

predict_places() decodes many questions at once, stopping as soon as every answer in the batch is complete: with
a KV cache where the model has one, questions of any length share a batch, right-padded (the cache hides the
padding and keeps each row's positions), and the prefix they all share ("Where was ") runs once for the batch;
without one, questions of equal length share a batch, so that positions line up. `batched=False` is the course's
decoder: one question at a time through utils.sample, no cache.
"""
from collections import defaultdict

import torch
from tqdm import tqdm

from attention import KVCache
from dataset import MASK_CHAR
from utils import sample

MAX_ANSWER_CHARS = 32


def encode_question(question, stoi):
    """Token ids of `question ⁇`, dropping characters outside the vocabulary; also
    returns the dropped characters."""
    unknown = sorted(set(question) - set(stoi))
    ids = [stoi[c] for c in question + MASK_CHAR if c in stoi]
    return ids, unknown


def answer_from_ids(generated, itos):
    """Decoded text of the generated ids up to the first ⁇."""
    return "".join(itos[int(i)] for i in generated).split(MASK_CHAR)[0]


@torch.no_grad()
def greedy_batch(model, prompts, steps, mask_id, lengths=None):
    """prompts (B, T) -> generated ids (B, <= steps), stopping once every row has produced
    mask_id. Uses the model's KV cache when it has one and the whole answer fits; with the cache,
    prompts may be right-padded: lengths (B,) are then their true lengths."""
    use_cache = model.supports_kv_cache and prompts.size(1) + steps - 1 <= model.max_len
    assert use_cache or lengths is None, "right-padded prompts need the KV cache"
    cache = KVCache(prompts.size(1) + steps - 1) if use_cache else None  # just the positions decoding fills
    x = step_input = prompts  # x: everything so far; step_input: what the cache has not seen
    shared = shared_prefix(prompts, lengths) if use_cache and prompts.size(0) > 1 else 0
    if shared:  # the tokens every prompt starts with ("Where was "), run once and copied to every row
        model(prompts[:1, :shared], kv_cache=cache)
        cache.expand(prompts.size(0))
        step_input = prompts[:, shared:]
    generated = []
    done = torch.zeros(prompts.size(0), dtype=torch.bool, device=prompts.device)
    for _ in range(steps):
        if use_cache:
            logits, _ = model(step_input, kv_cache=cache)
        else:
            logits, _ = model(x[:, -model.max_len:])
        if lengths is not None and not generated:  # the prompts' last real tokens, then hide the padding
            next_id = logits[torch.arange(prompts.size(0)), lengths - 1 - shared].argmax(dim=-1)  # (B,)
            cache.pad(lengths, prompts.size(1))
        else:
            next_id = logits[:, -1].argmax(dim=-1)  # (B,)
        generated.append(next_id)
        done |= next_id == mask_id
        if bool(done.all()):
            break
        step_input = next_id[:, None]  # (B, 1)
        if not use_cache:
            x = torch.cat((x, step_input), dim=1)
    return torch.stack(generated, dim=1)


def shared_prefix(prompts, lengths=None):
    """How many leading tokens all prompts (B, T) have in common, leaving each row at least its last token."""
    same = (prompts == prompts[:1]).all(dim=0).long().cumprod(dim=0)  # (T,): 1 while every row agrees
    shortest = int(lengths.min()) if lengths is not None else prompts.size(1)
    return min(int(same.sum()), shortest - 1)


def predict_places(model, questions, stoi, itos, device, batched=True, batch_size=256, progress=True):
    """One predicted answer per question string."""
    model.eval()
    encoded = [encode_question(q, stoi)[0] for q in questions]
    mask_id = stoi[MASK_CHAR]
    bar = tqdm(total=len(questions), desc="evaluate", disable=not progress, mininterval=1)
    if batched:
        generated = greedy_by_length(model, encoded, MAX_ANSWER_CHARS, mask_id, device, batch_size, bar)
    else:
        generated = []
        for ids in encoded:
            x = torch.tensor(ids, dtype=torch.long, device=device)[None]
            generated.append(sample(model, x, MAX_ANSWER_CHARS, sample=False)[0, len(ids):])
            bar.update(1)
    bar.close()
    return [answer_from_ids(row, itos) for row in generated]


def greedy_by_length(model, encoded, steps, mask_id, device, batch_size=256, bar=None):
    """Generated ids (lists, <= steps each) for every prompt in encoded (lists of ids). With the model's
    KV cache, prompts share batches in order of length, right-padded; other prompts (no cache, or too
    long for the cache) share batches of equal length, so that positions line up."""
    def group(ids):  # -1: the padded batches
        return -1 if model.supports_kv_cache and len(ids) + steps - 1 <= model.max_len else len(ids)
    groups = defaultdict(list)
    for i in sorted(range(len(encoded)), key=lambda i: len(encoded[i])):
        groups[group(encoded[i])].append(i)
    generated = [None] * len(encoded)
    for key, indices in groups.items():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            lengths = [len(encoded[i]) for i in chunk]
            prompts = torch.tensor([encoded[i] + [0] * (lengths[-1] - len(encoded[i])) for i in chunk],
                                   dtype=torch.long, device=device)  # (B, T), right-padded
            rows = greedy_batch(model, prompts, steps, mask_id,
                                torch.tensor(lengths, device=device) if key == -1 else None)
            for i, row in zip(chunk, rows.tolist()):
                generated[i] = row
            if bar is not None:
                bar.update(len(chunk))
    return generated
