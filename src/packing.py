"""
Training on the real tokens only: the positions after a row's last real target, packed away.

A training example is right-padded with PAD, whose targets the loss ignores. Every model here is causal, so a
position after a row's last real target changes neither the loss nor any gradient: it need not be computed.

    packing = Packing(y, groups)  # the positions of each row up to its last real target
    tokens = packing.pack(h)      # (B, T, C) -> (N, C): what token-wise layers run on
    y = packing.map_padded(attention, q, k, v)  # attention on padded rows, a group at a time -> (N, C)

The model (GPT.forward(..., packed=True)) runs its token-wise layers on the N packed tokens and each attention on
the padded layout, where every row starts at position 0 as before: the loss is the same mean over the same
targets. Dropout draws for fewer elements, so its random stream differs, but with the same distribution.
"""
import torch


def needed_lengths(targets):
    """(B,) for targets (B, T): 1 + the position of each row's last target that is not PAD (id 0), 0 if none."""
    positions = torch.arange(1, targets.size(1) + 1, device=targets.device)
    return torch.where(targets != 0, positions, 0).amax(1)


class Packing:
    """The positions of a (B, T) batch that count, row b's first needed_lengths(targets)[b], packed into (N, ...).

    For attention the rows are sorted by length and cut into `groups` of consecutive rows, each padded to its own
    longest row: rows of very different lengths cost a fraction of B * T^2 in groups of similar length. Tokens are
    packed group after group, row after row, the order the groups' padded buffers laid end to end hold them in.
    """

    def __init__(self, targets, groups=1):
        B, T = targets.shape
        lengths = needed_lengths(targets)
        order = lengths.argsort(descending=True)  # rows, longest first
        sorted_lengths = lengths.index_select(0, order)  # (B,)
        self.shapes = []  # (rows, width) of each group's padded buffer
        base = torch.empty(B, dtype=torch.long)  # each sorted row's first slot in the buffers laid end to end
        size = -(-B // groups)  # rows a group (the last may have fewer)
        start = slot = 0
        for width in sorted_lengths[::size].tolist():  # each group's first row is its longest
            rows = min(size, B - start)
            if width == 0:  # rows without a real target: nothing to compute
                break
            base[start:start + rows] = slot + width * torch.arange(rows)
            self.shapes.append((rows, width))
            start, slot = start + rows, slot + rows * width
        self.slots = slot
        t = torch.arange(T, device=targets.device)
        kept = t < sorted_lengths[:, None]  # (B, T), rows sorted
        self.source = (order[:, None] * T + t)[kept]  # (N,) each token's place in the flattened (B * T) batch
        self.slot = (base.to(targets.device)[:, None] + t)[kept]  # (N,) its place in the groups' buffers
        self.positions = t.expand(B, T)[kept]  # (N,) its position in its row
        self.B = B

    def pack(self, x):
        """(B, T, ...) -> (N, ...)"""
        return x.flatten(0, 1).index_select(0, self.source)

    def padded(self, x):
        """(N, ...) -> the groups' buffers laid end to end, (slots, ...), zeros (harmless keys and values) between"""
        return x.new_zeros(self.slots, *x.shape[1:]).index_copy(0, self.slot, x)

    def map_padded(self, fn, *tensors):
        """fn(*rows) on each group's padded rows (rows, width, ...) of tensors (N, ...); its outputs packed, (N, ...)"""
        buffers = [self.padded(x) for x in tensors]
        outputs, start = [], 0
        for rows, width in self.shapes:
            group = [b[start:start + rows * width].view(rows, width, *b.shape[1:]) for b in buffers]
            outputs.append(fn(*group).flatten(0, 1))
            start += rows * width
        return torch.cat(outputs).index_select(0, self.slot)

    def unpack(self, x):
        """(N, ...) -> (B, T', ...) (one group only): rows sorted by length, T' the longest row's length"""
        assert len(self.shapes) == 1, "unpack needs a Packing of one group"
        return self.padded(x).view(*self.shapes[0], *x.shape[1:])

    def repack(self, x):
        """(B, T', ...) in unpack's layout -> (N, ...), the inverse of unpack"""
        return x.flatten(0, 1).index_select(0, self.slot)
