"""
Span corruption a whole batch at a time, with tensor ops on the training device: CorruptionBatches(dataset,
batch_size) is a drop-in for DataLoader(CharCorruptionDataset, batch_size, shuffle=True), yielding (x, y)
LongTensors (B, block_size-1) on the device, each example drawn as CharCorruptionDataset.corrupt draws it:

    L ~ U{shortest..longest}    (dataset.truncation_range); n = min(len(doc), L)
    m ~ U{low(n)..high(n)}      (dataset.masked_length_range; a doc of length 1 masks itself)
    p ~ U{0..n-m}               prefix length
    s = doc[:p] ⁇ doc[p+m:n] ⁇ doc[p:p+m] □□□ (xcs224n: ... doc[p:p+m] ⁇ □□□),  x = s[:-1], y = s[1:]

A batch is index arithmetic and one gather on the documents, one padded tensor on the device, with the random
numbers of one torch.Generator there: no Python loop over examples, no host-device copies.
"""
import math

import numpy as np
import torch

from dataset import MASK_CHAR, PAD_CHAR, masked_length_range, truncation_range


def encode_documents(documents, stoi, longest):
    """(ids (N, max_len) int32 padded with PAD, lengths (N,) long) of the documents cut to `longest` characters."""
    docs = [doc[:longest] for doc in documents]
    lengths = np.fromiter((len(doc) for doc in docs), dtype=np.int64, count=len(docs))
    codes = np.frombuffer("".join(docs).encode("utf-32-le"), dtype=np.uint32)  # one code point per char
    lookup = np.zeros(max(ord(c) for c in stoi) + 1, dtype=np.int32)  # code point -> id
    lookup[[ord(c) for c in stoi]] = list(stoi.values())
    ids = np.full((len(docs), int(lengths.max())), stoi[PAD_CHAR], dtype=np.int32)
    ids[np.arange(ids.shape[1]) < lengths[:, None]] = lookup[codes]  # row by row, as the codes are
    return torch.from_numpy(ids), torch.from_numpy(lengths)


def uniform_int(low, high, u):
    """Integers uniform over [low, high] (inclusive; ints or per-element tensors) from u ~ U[0, 1). In float64
    (float32 on MPS), u's grid makes a value's probability off by at most count / 2^53 (2^24) relative."""
    count = high - low + 1
    return low + (u * count).floor().long().clamp(max=count - 1)  # clamped, to be safe


class CorruptionBatches:
    """One epoch per iteration: every document once (shuffled when shuffle), in batches of batch_size (the last
    smaller unless drop_last). Epochs continue one random stream; seed=None takes it from torch's global one.
    Data-parallel (rank, world_size): every rank draws the whole step's permutation and random numbers and builds
    its share, so together they make one process's batches of batch_size * world_size; as with
    DistributedSampler, the order is padded by repeating its start, giving every rank as many batches."""

    def __init__(self, dataset, batch_size, device="cpu", shuffle=True, seed=None, drop_last=False, rank=0,
                 world_size=1):
        self.dataset, self.batch_size, self.device = dataset, batch_size, torch.device(device)
        self.shuffle, self.drop_last, self.rank, self.world_size = shuffle, drop_last, rank, world_size
        self.block_size = dataset.block_size
        self.shortest, self.longest = truncation_range(self.block_size, dataset.course)
        self.mask_after_content = dataset.course.mask_after_content
        ids, lengths = encode_documents(dataset.data, dataset.stoi, self.longest)
        self.docs, self.lengths = ids.to(self.device), lengths.to(self.device)  # (N, max_len) int32, (N,)
        self.per_rank = math.ceil(len(lengths) / world_size)  # documents per epoch on each rank
        # inclusive range of the masked length for each truncated length n = 0..longest (n = 1 masks itself)
        ranges = [(0, 0)] + [masked_length_range(n) if n > 1 else (n, n) for n in range(1, self.longest + 1)]
        self.mask_low, self.mask_high = torch.tensor(ranges, dtype=torch.long, device=self.device).T.contiguous()
        self.mask_id, self.pad_id = dataset.stoi[MASK_CHAR], dataset.stoi[PAD_CHAR]
        self.positions = torch.arange(self.block_size, device=self.device)  # (T+1,)
        self.uniform_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        if seed is None:
            seed = int(torch.randint(2 ** 62, (), dtype=torch.long))
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def state_dict(self):
        """The random stream's position, for resumable training (a CPU ByteTensor inside)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        """Continue the random stream from state_dict(); a new epoch then draws as the saved one would."""
        self.generator.set_state(state["generator"].cpu())

    def __len__(self):
        return self.per_rank // self.batch_size if self.drop_last else math.ceil(self.per_rank / self.batch_size)

    def __iter__(self):
        n = len(self.lengths)
        order = torch.randperm(n, generator=self.generator, device=self.device) if self.shuffle else \
            torch.arange(n, device=self.device)
        if self.world_size > 1:
            order = order.repeat(self.world_size)[:self.per_rank * self.world_size]  # padded
        step = self.batch_size * self.world_size  # documents per optimizer step, all ranks together
        for b in range(len(self)):
            chunk = order[b * step:(b + 1) * step]  # (k * world_size,); k = batch_size, or fewer in the last
            k = len(chunk) // self.world_size
            yield self.batch(chunk[self.rank * k:(self.rank + 1) * k])  # (k,) this rank's share

    def draw(self, doc_idx):
        """(n, m, p) (B,) each: truncated length, masked length, prefix length of each example."""
        B = len(doc_idx)
        # the draws of the whole step, the same on every rank; this rank's share
        u = torch.rand(3, B * self.world_size, dtype=self.uniform_dtype, generator=self.generator,
                       device=self.device)[:, self.rank * B:(self.rank + 1) * B]  # (3, B)
        # index_select rather than t[idx]: on CPU, advanced indexing splits even small batches over threads
        n = torch.minimum(self.lengths.index_select(0, doc_idx), uniform_int(self.shortest, self.longest, u[0]))
        m = uniform_int(self.mask_low.index_select(0, n), self.mask_high.index_select(0, n), u[1])
        return n, m, uniform_int(0, n - m, u[2])

    def batch(self, doc_idx):
        """(x, y) (B, block_size-1) for the documents doc_idx (B,), with fresh random draws."""
        doc_idx = doc_idx.to(self.device)
        n, m, p = (t[:, None] for t in self.draw(doc_idx))  # (B, 1) each
        j = self.positions[None, :]  # (1, T+1): position in s
        # s = doc[:p] ⁇ doc[p+m:n] ⁇ doc[p:p+m] □...: the document position shown at each j
        first_mask, second_mask = p, n - m + 1
        source = torch.where(j < first_mask, j,  # prefix
                 torch.where(j < second_mask, j - 1 + m,  # suffix, after the first ⁇
                             j - second_mask - 1 + p))  # masked content, after the second ⁇
        source = source.clamp(0, self.docs.size(1) - 1)  # (B, T+1); out-of-range spots are overwritten
        s = torch.gather(self.docs.index_select(0, doc_idx), 1, source).long()  # (B, T+1)
        masks = (j == first_mask) | (j == second_mask)
        end = n + 2  # s has n + 2 characters before the padding
        if self.mask_after_content:  # and a third mask after the masked content
            masks, end = masks | (j == end), end + 1
        s = torch.where(masks, self.mask_id, s)
        s = torch.where(j >= end, self.pad_id, s)
        return s[:, :-1].contiguous(), s[:, 1:].contiguous()  # (B, T) each
