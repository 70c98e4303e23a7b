"""
Answering questions: greedy decoding of up to 32 characters after `question ⁇`; the prediction is the decoded
text up to the next ⁇.

predict_places() decodes many questions at once, stopping as soon as every answer in the batch is complete.
With the model's KV cache, questions of any length share a batch, right-padded (the cache hides the padding and
keeps each row's positions), and their shared prefix ("Where was ") runs once; without one, questions of equal
length share a batch. `batched=False` is the course's decoder: one question at a time through utils.sample.
"""
from collections import defaultdict

import torch
from tqdm import tqdm

from attention import KVCache
from dataset import MASK_CHAR
from utils import sample

MAX_ANSWER_CHARS = 32


def encode_question(question, stoi):
    """(token ids of `question ⁇` without the characters outside the vocabulary, those characters)"""
    return [stoi[c] for c in question + MASK_CHAR if c in stoi], sorted(set(question) - set(stoi))


def answer_from_ids(generated, itos):
    """Decoded text of the generated ids up to the first ⁇."""
    return "".join(itos[int(i)] for i in generated).split(MASK_CHAR)[0]


@torch.no_grad()
def greedy_batch(model, prompts, steps, mask_id, lengths=None):
    """prompts (B, T) -> generated ids (B, <= steps), stopping once every row has produced mask_id; with the
    model's KV cache where it has one and the answer fits, and then the prompts may be right-padded to lengths (B,)."""
    B, T = prompts.shape
    use_cache = model.supports_kv_cache and T + steps - 1 <= model.max_len
    assert use_cache or lengths is None, "right-padded prompts need the KV cache"
    cache = KVCache(T + steps - 1) if use_cache else None  # just the positions decoding fills
    x = step_input = prompts  # x: everything so far; step_input: what the cache has not seen
    shared = shared_prefix(prompts, lengths) if use_cache and B > 1 else 0
    if shared:  # the tokens every prompt starts with ("Where was "), run once and copied to every row
        model(prompts[:1, :shared], kv_cache=cache)
        cache.expand(B)
        step_input = prompts[:, shared:]
    generated = []
    done = torch.zeros(B, dtype=torch.bool, device=prompts.device)
    for _ in range(steps):
        logits, _ = model(step_input, kv_cache=cache) if use_cache else model(x[:, -model.max_len:])
        if lengths is not None and not generated:  # the prompts' last real tokens, then hide the padding
            next_id = logits[torch.arange(B), lengths - 1 - shared].argmax(dim=-1)  # (B,)
            cache.pad(lengths, T)
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
    bar = tqdm(total=len(questions), desc="evaluate", disable=not progress, mininterval=1)
    if batched:
        generated = greedy_by_length(model, encoded, MAX_ANSWER_CHARS, stoi[MASK_CHAR], device, batch_size, bar)
    else:
        generated = []
        for ids in encoded:
            x = torch.tensor(ids, dtype=torch.long, device=device)[None]
            generated.append(sample(model, x, MAX_ANSWER_CHARS, sample=False)[0, len(ids):])
            bar.update(1)
    bar.close()
    return [answer_from_ids(row, itos) for row in generated]


def greedy_by_length(model, encoded, steps, mask_id, device, batch_size=256, bar=None):
    """Generated ids (lists, <= steps each) for every prompt in encoded (lists of ids): in right-padded batches in
    order of length with the model's KV cache, else in batches of equal length (so that positions line up)."""
    groups = defaultdict(list)  # -1: the padded batches
    for i in sorted(range(len(encoded)), key=lambda i: len(encoded[i])):
        fits = model.supports_kv_cache and len(encoded[i]) + steps - 1 <= model.max_len
        groups[-1 if fits else len(encoded[i])].append(i)
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
