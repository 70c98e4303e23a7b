"""Tests for src/corruption.py: CorruptionBatches yields the assignment's span-corruption examples (and
XCS224N's), a batch at a time, with the same distribution as CharCorruptionDataset.corrupt."""
import math
import random
from collections import Counter

import pytest
import torch

from corruption import CorruptionBatches, encode_documents
from dataset import CharCorruptionDataset, masked_length_range, truncation_range

PAD, MASK = "\u25A1", "\u2047"  # the assignment's characters, spelled out independently
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MASKS = {"cs224n": 2, "xcs224n": 3}  # per example, per course
each_course = pytest.mark.parametrize("course", list(MASKS))


pytestmark = pytest.mark.usefixtures("one_thread")


def words(rng, length):
    """A made-up document of exactly `length` characters."""
    text = ""
    while len(text) < length:
        text += "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9))) + " "
    return text[:length].strip().ljust(length, ".")


def mixed_corpus(seed=0, n_docs=300):
    """Documents of every kind of length: 1, 2, 3, around the shortest truncation, and long."""
    rng = random.Random(seed)
    lengths = [1, 2, 3, 4, 5, 6, 7] + [rng.randint(1, 40) for _ in range(n_docs // 3)] + \
              [rng.randint(100, 400) for _ in range(n_docs - n_docs // 3 - 7)]
    return "\n".join(words(rng, n) for n in lengths) + "\n"


def long_corpus(seed=0, n_docs=200):
    """Documents longer than any truncation length, starting with a unique 4-digit tag."""
    rng = random.Random(seed)
    return "\n".join(f"{i:04d} " + words(rng, 300) for i in range(n_docs)) + "\n"


def decode(ds, ids):
    return "".join(ds.itos[int(i)] for i in ids)


def split_example(s):
    """(prefix, suffix, masked_content) of an unpadded s = prefix ⁇ suffix ⁇ masked_content,
    or prefix ⁇ suffix ⁇ masked_content ⁇ (xcs224n)."""
    prefix, suffix, masked, *rest = s.split(MASK)
    assert rest in ([], [""]), "nothing after the third mask"
    return prefix, suffix, masked


def example_stats(s):
    """(n, m, p) = truncated, masked and prefix lengths of a padded corrupted string s."""
    prefix, suffix, masked = split_example(s.rstrip(PAD))
    return len(prefix) + len(suffix) + len(masked), len(masked), len(prefix)


def batch_stats(ds, x, y):
    """(n, m, p) LongTensors (B,) of a batch, computed with tensor ops (PAD only at the end
    and the number of MASKs are checked elsewhere)."""
    s = torch.cat([x, y[:, -1:]], dim=1)  # (B, T+1)
    mask_id, pad_id = ds.stoi[MASK], ds.stoi[PAD]
    n = (s != pad_id).sum(1) - MASKS[ds.course.name]
    masks_so_far = (s == mask_id).long().cumsum(1)
    first = (masks_so_far == 1).long().argmax(1)
    second = (masks_so_far == 2).long().argmax(1)
    return n.cpu(), (n + 1 - second).cpu(), first.cpu()


def check_example(ds, doc, x, y):
    """Every property of the assignment's span corruption for one example (x, y) made from document doc."""
    T = ds.block_size - 1
    assert x.shape == (T,) and y.shape == (T,) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[1:], y[:-1])
    s = decode(ds, torch.cat([x, y[-1:]]))
    assert len(s) == ds.block_size
    body = s.rstrip(PAD)
    assert PAD not in body, "PAD only at the end"
    assert body.count(MASK) == MASKS[ds.course.name], "two masks (xcs224n: three)"
    prefix, suffix, masked = split_example(body)
    truncated = prefix + masked + suffix
    shortest, longest = truncation_range(ds.block_size, ds.course)
    n = len(truncated)
    assert truncated == doc[:n], "prefix + masked + suffix is a prefix of the document"
    assert min(len(doc), shortest) <= n <= min(len(doc), longest)
    low, high = masked_length_range(n) if n > 1 else (1, 1)
    assert low <= len(masked) <= high
    return n, len(masked), len(prefix)


@each_course
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block_size", [6, 9, 32, 128])
def test_every_example_has_the_spec_properties(device, block_size, course):
    ds = CharCorruptionDataset(mixed_corpus(), block_size, course)
    batches = CorruptionBatches(ds, 64, device=device, shuffle=False, seed=block_size)
    for _ in range(3):  # epochs
        for b, (x, y) in enumerate(batches):
            assert x.device.type == y.device.type == torch.device(device).type
            assert x.dtype == y.dtype == torch.long and x.is_contiguous() and y.is_contiguous()
            assert torch.equal(x[:, 1:], y[:, :-1])
            for row in range(x.size(0)):
                check_example(ds, ds.data[b * 64 + row], x[row].cpu(), y[row].cpu())


@each_course
def test_a_document_of_length_one_masks_itself(course):
    ds = CharCorruptionDataset("a\nb\n", 8, course)
    x, y = next(iter(CorruptionBatches(ds, 2, shuffle=False, seed=0)))
    close = MASK if course == "xcs224n" else ""  # the third mask, after the masked content
    assert [decode(ds, torch.cat([x[i], y[i, -1:]])) for i in range(2)] == \
           [(MASK + MASK + char + close).ljust(8, PAD) for char in "ab"]


def test_encode_documents_pads_and_cuts():
    ds = CharCorruptionDataset("abc\nb\n" + "c" * 50 + "\n", 16)
    ids, lengths = encode_documents(ds.data, ds.stoi, 14)
    assert lengths.tolist() == [3, 1, 14] and ids.shape == (3, 14)
    assert decode(ds, ids[0]) == "abc" + PAD * 11 and decode(ds, ids[2]) == "c" * 14


@pytest.mark.parametrize("drop_last", [False, True])
def test_len_counts_the_batches_like_a_dataloader(drop_last):
    ds = CharCorruptionDataset(mixed_corpus(n_docs=103), 32)
    batches = CorruptionBatches(ds, 10, drop_last=drop_last, seed=0)
    sizes = [x.size(0) for x, _ in batches]
    assert len(sizes) == len(batches) == (10 if drop_last else 11)
    assert sizes == [10] * 10 + ([] if drop_last else [3])
    assert len(batches) == len(torch.utils.data.DataLoader(ds, batch_size=10, drop_last=drop_last))


@each_course
@pytest.mark.parametrize("shuffle", [True, False])
def test_an_epoch_covers_every_document_once(shuffle, course):
    ds = CharCorruptionDataset(long_corpus(n_docs=250), 32, course)
    batches = CorruptionBatches(ds, 64, shuffle=shuffle, seed=1)
    orders = []
    for _ in range(2):  # epochs
        tags = []
        for xb, yb in batches:
            for x, y in zip(xb, yb):
                # truncated length >= 4: the document's 4-digit tag survives, possibly split by a mask
                prefix, suffix, masked = split_example(decode(ds, torch.cat([x, y[-1:]])).rstrip(PAD))
                tags.append(int((prefix + masked + suffix)[:4]))
        assert sorted(tags) == list(range(250))
        orders.append(tags)
    assert (orders[0] == list(range(250))) == (not shuffle)
    assert (orders[0] == orders[1]) == (not shuffle), "each epoch has its own order"


def test_same_seed_same_batches_and_epochs_differ():
    ds = CharCorruptionDataset(mixed_corpus(), 32)
    first, second = CorruptionBatches(ds, 50, seed=7), CorruptionBatches(ds, 50, seed=7)
    a = [batch for _ in range(2) for batch in first]  # two epochs
    b = [batch for _ in range(2) for batch in second]
    assert len(a) == len(b) == 2 * len(first)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][0], a[len(first)][0]), "the second epoch draws afresh"
    c = next(iter(CorruptionBatches(ds, 50, seed=8)))
    assert not torch.equal(c[0], a[0][0])


def test_state_dict_resumes_the_random_stream():
    ds = CharCorruptionDataset(mixed_corpus(), 32)
    batches = CorruptionBatches(ds, 50, seed=5)
    list(batches)  # one epoch
    state = batches.state_dict()
    expected = list(batches)
    other = CorruptionBatches(ds, 50, seed=6)
    other.load_state_dict(state)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(expected, other))


def test_seed_none_follows_torch_manual_seed():
    ds = CharCorruptionDataset(mixed_corpus(), 32)
    torch.manual_seed(3)
    a = next(iter(CorruptionBatches(ds, 50)))
    torch.manual_seed(3)
    b = next(iter(CorruptionBatches(ds, 50)))
    assert torch.equal(a[0], b[0])


@each_course
def test_every_truncation_length_is_hit(course):
    ds = CharCorruptionDataset(long_corpus(n_docs=200), 128, course)
    batches = CorruptionBatches(ds, 200, seed=0)
    lengths = Counter()
    for _ in range(40):  # 8000 draws, about 73 per length
        for x, y in batches:
            lengths.update(batch_stats(ds, x, y)[0].tolist())
    shortest, longest = truncation_range(128, ds.course)
    assert (shortest, longest) == ((4, 112) if course == "cs224n" else (4, 96))
    assert sorted(lengths) == list(range(shortest, longest + 1))


# distribution: the batched sampler against the per-example one --------------------------------

def per_example_draws(ds, k, seed):
    """(n, m, p) lists of k examples of CharCorruptionDataset.corrupt, documents in turn."""
    rng = random.Random(seed)
    stats = [example_stats(ds.corrupt(ds.data[i % len(ds)], rng)) for i in range(k)]
    return [list(column) for column in zip(*stats)]


def batched_draws(ds, batches, k):
    """(n, m, p) lists of k examples from CorruptionBatches (shuffle off: documents in turn)."""
    columns = [[], [], []]
    while len(columns[0]) < k:
        for x, y in batches:
            for column, values in zip(columns, batch_stats(ds, x, y)):
                column.extend(values.tolist())
    return [column[:k] for column in columns]


def chi_square_two_sample(a, b):
    """(statistic, critical value at p = 1e-4) of the two-sample chi-square test of two
    equal-size samples of integers; values seen fewer than 10 times in all share one cell."""
    ca, cb = Counter(a), Counter(b)
    cells, pool = [], [0, 0]
    for value in set(ca) | set(cb):
        if ca[value] + cb[value] < 10:
            pool[0] += ca[value]
            pool[1] += cb[value]
        else:
            cells.append((ca[value], cb[value]))
    if sum(pool):
        cells.append(tuple(pool))
    stat = sum((x - y) ** 2 / (x + y) for x, y in cells)
    dof = max(1, len(cells) - 1)
    z = 3.72  # the 1e-4 upper quantile of N(0, 1), through the Wilson-Hilferty approximation
    critical = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    return stat, critical


def max_cdf_difference(a, b):
    """Kolmogorov-Smirnov statistic of two samples of integers."""
    ca, cb = Counter(a), Counter(b)
    fa = fb = worst = 0.0
    for value in sorted(set(ca) | set(cb)):
        fa += ca[value] / len(a)
        fb += cb[value] / len(b)
        worst = max(worst, abs(fa - fb))
    return worst


def compare_distributions(ds, batches, k=30000):
    """[(name, ok, details)]: truncated, masked, prefix and suffix lengths of k draws from the
    per-example dataset and k from batches, by chi-square and KS tests at about p = 1e-4 each
    (8 tests: a false alarm about once in a thousand runs; the draws are seeded anyway)."""
    n, m, p = per_example_draws(ds, k, seed=0)
    reference = (n, m, p, [a - b - c for a, b, c in zip(n, m, p)])
    n, m, p = batched_draws(ds, batches, k)
    ours = (n, m, p, [a - b - c for a, b, c in zip(n, m, p)])
    ks_bound = 2.2 * math.sqrt(2 / k)  # two-sample KS at alpha = 1e-4 (conservative for integers)
    results = []
    for name, a, b in zip(("truncated", "masked", "prefix", "suffix"), reference, ours):
        stat, critical = chi_square_two_sample(a, b)
        d = max_cdf_difference(a, b)
        results.append((name, stat < critical and d < ks_bound,
                        f"chi2 {stat:.1f} < {critical:.1f}, KS {d:.4f} < {ks_bound:.4f}"))
    return results


@each_course
@pytest.mark.parametrize("block_size", [32, 128])
def test_distribution_matches_the_per_example_dataset(block_size, course):
    ds = CharCorruptionDataset(mixed_corpus(), block_size, course)
    results = compare_distributions(ds, CorruptionBatches(ds, 500, shuffle=False, seed=0))
    assert all(ok for _, ok, _ in results), results


class SlightlyWrong(CorruptionBatches):
    """Samplers that make valid examples (every property holds) from a distribution
    that is off by one value at one end of one range."""

    def __init__(self, ds, flaw):
        super().__init__(ds, 500, shuffle=False, seed=0)
        self.flaw = flaw
        if flaw == "never_longest":  # truncation over [shortest, longest - 1]
            self.longest -= 1
        if flaw == "never_shortest_mask":  # masked length over [low + 1, high] where possible
            self.mask_low = torch.minimum(self.mask_low + 1, self.mask_high)

    def draw(self, doc_idx):
        n, m, p = super().draw(doc_idx)
        if self.flaw == "never_empty_suffix":  # prefix over [0, n - m - 1] where possible
            p = torch.minimum(p, (n - m - 1).clamp(min=0))
        return n, m, p


@pytest.mark.parametrize("flaw", ["never_longest", "never_shortest_mask", "never_empty_suffix"])
def test_the_comparison_sees_an_off_by_one(flaw):
    """The distribution test above has the power to see a subtle error in any of the draws."""
    ds = CharCorruptionDataset(mixed_corpus(), 128)
    results = compare_distributions(ds, SlightlyWrong(ds, flaw))
    assert not all(ok for _, ok, _ in results), results


# ----------------------------------------------------------------------------- data-parallel shares


def test_ranks_build_their_shares_of_the_one_process_batches():
    """world_size ranks with batch_size B make, between them, exactly the batches of one process
    with batch size B * world_size and the same seed: same documents, same random draws."""
    ds = CharCorruptionDataset(mixed_corpus(n_docs=96), 32)
    whole = CorruptionBatches(ds, 24, seed=9)
    ranks = [CorruptionBatches(ds, 8, seed=9, rank=r, world_size=3) for r in range(3)]
    assert all(len(r) == len(whole) == 4 for r in ranks)
    for _ in range(2):  # epochs
        for (x, y), *shares in zip(whole, *ranks):
            assert torch.equal(x, torch.cat([sx for sx, _ in shares]))
            assert torch.equal(y, torch.cat([sy for _, sy in shares]))
    state = ranks[0].state_dict()["generator"]
    assert all(torch.equal(r.state_dict()["generator"], state) for r in ranks)  # one state resumes them all


@pytest.mark.parametrize("n_docs,batch_size", [(250, 64), (7, 4), (2, 4)])
def test_ranks_get_equal_shares_covering_every_document(n_docs, batch_size):
    """Like DistributedSampler: a corpus that does not split evenly is padded with repeated
    documents, so that every rank runs the same number of equal-sized steps."""
    ds = CharCorruptionDataset(long_corpus(n_docs=n_docs), 32)
    ranks = [CorruptionBatches(ds, batch_size, seed=2, rank=r, world_size=3) for r in range(3)]
    per_rank = math.ceil(n_docs / 3)
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) == math.ceil(per_rank / batch_size)
    tags = []
    for shares in zip(*ranks):
        assert len({x.size(0) for x, _ in shares}) == 1
        for xb, yb in shares:
            for x, y in zip(xb, yb):
                prefix, suffix, masked = split_example(decode(ds, torch.cat([x, y[-1:]])).rstrip(PAD))
                tags.append(int((prefix + masked + suffix)[:4]))
    assert len(tags) == 3 * per_rank and set(tags) == set(range(n_docs))
