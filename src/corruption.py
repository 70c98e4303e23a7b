"""
Span corruption a whole batch at a time, with tensor ops on the training device.

CorruptionBatches(dataset, batch_size) is a drop-in for
DataLoader(CharCorruptionDataset, batch_size, shuffle=True): an iterable over one
epoch, len() = number of batches, yielding (x, y) LongTensors (B, block_size-1)
already on the device. Each example follows exactly the distribution of
CharCorruptionDataset.corrupt (SPEC §3):

    L ~ U{shortest..longest}    (dataset.truncation_range); n = min(len(doc), L)
    m ~ U{low(n)..high(n)}      (dataset.masked_length_range; a doc of length 1 masks itself)
    p ~ U{0..n-m}               prefix length
    s = doc[:p] ⁇ doc[p+m:n] ⁇ doc[p:p+m] □□□,  x = s[:-1], y = s[1:]
    (course xcs224n: s = doc[:p] ⁇ doc[p+m:n] ⁇ doc[p:p+m] ⁇ □□□, see course.py)

The documents are encoded once into a padded (N_docs, max_len) tensor on the device
(only the first `longest` characters can ever be used). Per batch, one torch.Generator
on the device draws every random number and the batch is assembled by index
arithmetic and one gather: no Python loop over examples, no host-device copies.

Uniform integers with per-row bounds (torch.randint takes scalar bounds only) are
drawn as floor(u * count) with u ~ U[0, 1) in float64 (all three draws of a batch in
one torch.rand call): u's grid is 2^-53 fine, so a value's probability is off by at
most count / 2^53 relative (count <= block_size), far below anything measurable, and
u * count never rounds up to count (clamped anyway, to be safe). MPS has no float64;
there float32 is used (off by at most count / 2^24).
"""
import math

import numpy as np
import torch

from dataset import MASK_CHAR, PAD_CHAR, masked_length_range, truncation_range


def masked_length_table(longest):
    """(low, high) LongTensors indexed by the truncated length n = 0..longest: the inclusive
    range of the masked span length, as in CharCorruptionDataset.corrupt (n = 1 masks itself)."""
    ranges = [(0, 0)] + [masked_length_range(n) if n > 1 else (n, n) for n in range(1, longest + 1)]
    low, high = zip(*ranges)
    return torch.tensor(low, dtype=torch.long), torch.tensor(high, dtype=torch.long)


def encode_documents(documents, stoi, longest):
    """(ids (N, max_len) int32 padded with PAD, lengths (N,) long) of the documents cut to
    `longest` characters; max_len = the longest cut document. Vectorised over characters."""
    docs = [doc[:longest] for doc in documents]
    lengths = np.fromiter((len(doc) for doc in docs), dtype=np.int64, count=len(docs))
    codes = np.frombuffer("".join(docs).encode("utf-32-le"), dtype=np.uint32)  # one code point per char
    lookup = np.zeros(max(ord(c) for c in stoi) + 1, dtype=np.int32)  # code point -> id
    for char, i in stoi.items():
        lookup[ord(char)] = i
    ids = np.full((len(docs), int(lengths.max())), stoi[PAD_CHAR], dtype=np.int32)
    rows = np.repeat(np.arange(len(docs)), lengths)  # document of each character
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(len(codes)) - np.repeat(starts, lengths)  # position within its document
    ids[rows, cols] = lookup[codes]
    return torch.from_numpy(ids), torch.from_numpy(lengths)


class CorruptionBatches:
    """Batches of span-corruption examples of a CharCorruptionDataset, built on `device`.

    Iterating gives one epoch: every document once (in random order when shuffle), in
    batches of batch_size (the last one smaller unless drop_last). Successive epochs
    continue the same random stream, so they differ; the same seed gives the same
    sequence of batches. seed=None draws the seed from torch's global generator (so
    set_seed() makes it reproducible). state_dict()/load_state_dict() save and restore
    the random stream (resumable training).

    Data-parallel training (rank, world_size): every rank holds the same generator (give
    them the same seed) and so draws the same permutation and the same random numbers for
    the whole step's world_size * batch_size examples, then builds only its own share:
    together the ranks make exactly the batches of one process with batch_size * world_size,
    and the random stream stays the same on every rank (one state_dict resumes them all).
    As with DistributedSampler, the order is padded by repeating its start so that every
    rank gets the same number of documents, hence the same number of batches.
    """

    def __init__(self, dataset, batch_size, device="cpu", shuffle=True, seed=None, drop_last=False, rank=0,
                 world_size=1):
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.block_size = dataset.block_size
        self.shortest, self.longest = truncation_range(self.block_size, dataset.course)
        self.mask_after_content = dataset.course.mask_after_content
        ids, lengths = encode_documents(dataset.data, dataset.stoi, self.longest)
        self.docs = ids.to(self.device)  # (N, max_len) int32
        self.lengths = lengths.to(self.device)  # (N,)
        low, high = masked_length_table(self.longest)
        self.mask_low, self.mask_high = low.to(self.device), high.to(self.device)  # (longest+1,)
        self.mask_id = dataset.stoi[MASK_CHAR]
        self.pad_id = dataset.stoi[PAD_CHAR]
        self.positions = torch.arange(self.block_size, device=self.device)  # (T+1,)
        self.uniform_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        if seed is None:
            seed = int(torch.randint(2 ** 62, (), dtype=torch.long))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def state_dict(self):
        """The random stream's position, for resumable training (a CPU ByteTensor inside)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        """Continue the random stream from state_dict(); a new epoch then draws as the saved one would."""
        self.generator.set_state(state["generator"].cpu())

    def documents_per_rank(self):
        return math.ceil(len(self.lengths) / self.world_size)

    def __len__(self):
        n = self.documents_per_rank()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.lengths)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        if self.world_size > 1:
            order = order.repeat(self.world_size)[:self.documents_per_rank() * self.world_size]  # padded
        step = self.batch_size * self.world_size  # documents per optimizer step, all ranks together
        for b in range(len(self)):
            chunk = order[b * step:(b + 1) * step]  # (k * world_size,); k = batch_size, or fewer in the last
            k = len(chunk) // self.world_size
            yield self.batch(chunk[self.rank * k:(self.rank + 1) * k])  # (k,) this rank's share

    def uniform_int(self, low, high, u):
        """Integers uniform over [low, high] (inclusive; ints or per-element tensors) from u ~ U[0, 1)."""
        count = high - low + 1
        return low + (u * count).floor().long().clamp(max=count - 1)

    def draw(self, doc_idx):
        """(n, m, p) (B,) each: truncated length, masked length, prefix length of each example."""
        B = len(doc_idx)
        # the draws of the whole step (B examples on each rank), the same on every rank; this rank's share
        u = torch.rand(3, B * self.world_size, dtype=self.uniform_dtype, generator=self.generator,
                       device=self.device)  # (3, B * world_size)
        u = u[:, self.rank * B:(self.rank + 1) * B]  # (3, B)
        # index_select rather than t[idx]: on CPU, advanced indexing splits even small
        # batches over threads, which costs milliseconds on a busy machine
        L = self.uniform_int(self.shortest, self.longest, u[0])  # (B,) truncation length
        n = torch.minimum(self.lengths.index_select(0, doc_idx), L)  # (B,)
        m = self.uniform_int(self.mask_low.index_select(0, n), self.mask_high.index_select(0, n), u[1])  # (B,)
        p = self.uniform_int(0, n - m, u[2])  # (B,)
        return n, m, p

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
