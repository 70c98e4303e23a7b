"""
The GPT language model (minGPT), with the assignment's variants selected by GPTConfig:

vanilla      learned position embedding, causal self-attention
rope         no position embedding; rotary embeddings on queries and keys
perceiver    DownProjectBlock -> n_layer-2 Blocks on bottleneck_dim slots -> UpProjectBlock
synthesizer  SynthesizerAttention in every block

The CS224N handout's experiments, off by default: mask_after_softmax (the naive causal mask, after the softmax),
position_embedding="sinusoidal" (fixed, as in the Transformer paper), shared_qk (one projection for q and k).
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from attention import CausalCrossAttention, CausalSelfAttention, SynthesizerAttention, precompute_rotary_emb
from packing import Packing

VARIANTS = ("vanilla", "rope", "perceiver", "synthesizer")
EXPERIMENTS = ("mask_after_softmax", "position_embedding", "shared_qk")  # GPTConfig fields, recorded in params files
POSITION_EMBEDDINGS = ("learned", "sinusoidal")
ATTENTION_GROUPS = 8  # packed training: attention runs on this many groups of rows of similar lengths


@dataclass
class GPTConfig:
    """Everything that builds a GPT (params files record it); a misspelt option is a TypeError."""
    vocab_size: int
    block_size: int
    n_layer: int = 4
    n_head: int = 8
    n_embd: int = 256
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    # the variant: at most one of these three is on (`variant` names it)
    rope: bool = False
    perceiver: bool = False
    bottleneck_dim: Optional[int] = None  # the perceiver's number of latent slots m
    synthesizer: bool = False
    fused_attention: bool = False  # F.scaled_dot_product_attention instead of the plain path (same model)
    mask_after_softmax: bool = False  # the experiments, see the module docstring
    position_embedding: str = "learned"
    shared_qk: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self):
        """ValueError for a model that cannot be built (GPT checks again: the course sets variants later)."""
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_head, self.n_embd) < 1:
            raise ValueError(f"sizes must be positive: vocab_size {self.vocab_size}, block_size {self.block_size}, "
                             f"n_layer {self.n_layer}, n_head {self.n_head}, n_embd {self.n_embd}")
        if not all(0 <= p < 1 for p in (self.embd_pdrop, self.resid_pdrop, self.attn_pdrop)):
            raise ValueError(f"dropout must be at least 0 and below 1: embd_pdrop {self.embd_pdrop}, resid_pdrop "
                             f"{self.resid_pdrop}, attn_pdrop {self.attn_pdrop}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.rope + self.perceiver + self.synthesizer > 1:
            raise ValueError("at most one of rope, perceiver and synthesizer can be on")
        if self.perceiver and not 1 <= (self.bottleneck_dim or 0) <= self.block_size:
            raise ValueError(f"bottleneck_dim must be between 1 and the block size {self.block_size}")
        if self.perceiver and self.n_layer < 2:
            raise ValueError(f"the perceiver needs n_layer >= 2 (its down and up blocks), not {self.n_layer}")
        if self.rope and self.n_embd // self.n_head % 2:
            raise ValueError(f"RoPE rotates pairs of features: the head size n_embd / n_head must be even, "
                             f"not {self.n_embd // self.n_head}")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(f"unknown position_embedding {self.position_embedding!r}; choose one of "
                             f"{', '.join(POSITION_EMBEDDINGS)}")
        if self.rope and self.position_embedding != "learned":
            raise ValueError(f"position_embedding {self.position_embedding} does not apply to rope, "
                             f"which has no position embedding (it rotates queries and keys instead)")
        if self.synthesizer and self.shared_qk:
            raise ValueError("shared_qk does not apply to synthesizer, whose attention has no queries or keys")

    @property
    def variant(self):
        """One of VARIANTS, from the flags (the course's code sets them after construction)."""
        return "rope" if self.rope else "perceiver" if self.perceiver else \
            "synthesizer" if self.synthesizer else "vanilla"


def config_for_variant(variant, vocab_size, block_size, bottleneck_dim=32, **kwargs):
    """GPTConfig with the flag of one of VARIANTS set (bottleneck_dim: the perceiver's only)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return GPTConfig(vocab_size, block_size, rope=variant == "rope",
                     perceiver=variant == "perceiver", synthesizer=variant == "synthesizer",
                     bottleneck_dim=bottleneck_dim if variant == "perceiver" else None, **kwargs)


def mlp(config):
    """A block's MLP, (B, T, C) -> (B, T, C); a plain nn.Sequential, so str(model) prints as the course's does."""
    return nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                         nn.Linear(4 * config.n_embd, config.n_embd), nn.Dropout(config.resid_pdrop))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = SynthesizerAttention(config) if config.synthesizer else CausalSelfAttention(config)
        self.mlp = mlp(config)

    def forward(self, x, cache=None, packing=None):
        """x (B, T, C) -> (B, T, C); cache: decoding's KVCache; packing: x holds packed tokens (N, C)"""
        x = x + self.attn(self.ln1(x), cache, packing)
        return x + self.mlp(self.ln2(x))


class DownProjectBlock(nn.Module):
    """Perceiver input block: a learned basis C (m = bottleneck_dim queries) cross-attends over the input."""

    def __init__(self, config):
        super().__init__()
        self.C = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, config.bottleneck_dim, config.n_embd)))
        self.ln1, self.ln2 = nn.LayerNorm(config.n_embd), nn.LayerNorm(config.n_embd)
        self.attn, self.mlp = CausalCrossAttention(config), mlp(config)

    def forward(self, x_input, packing=None):
        """x_input (B, T, C), or packed (N, C) -> (B, m, C)"""
        basis = self.C.expand(packing.B if packing is not None else x_input.size(0), -1, -1)  # (B, m, C)
        x = basis + self.attn(self.ln1(x_input), basis, kv_packing=packing)
        return x + self.mlp(self.ln2(x))


class UpProjectBlock(nn.Module):
    """Perceiver output block: the input sequence queries the bottleneck, restoring the length T."""

    def __init__(self, config):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.n_embd), nn.LayerNorm(config.n_embd)
        self.attn, self.mlp = CausalCrossAttention(config), mlp(config)

    def forward(self, y, x_input, packing=None):
        """y (B, m, C) from the previous block, x_input (B, T, C) -> (B, T, C); packed: x_input and output (N, C)"""
        x = x_input + self.attn(self.ln1(y), self.ln1(x_input), q_packing=packing)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """The full language model: embeddings, blocks, final LayerNorm, bias-free head."""

    def __init__(self, config):
        super().__init__()
        config.validate()
        self.config = config
        self.block_size = config.block_size
        self.max_len = config.block_size - 1 if config.synthesizer else config.block_size  # longest input
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        # rope has no position embedding (it rotates queries and keys); sinusoidal: the angles t * 10000^(-2i/C)
        # of RoPE's table, laid out sin, cos, sin, ...
        if not config.rope and config.position_embedding == "sinusoidal":
            table = precompute_rotary_emb(config.n_embd, config.block_size).flip(-1).flatten(-2)
            self.register_buffer("pos_emb", table[None, :, :config.n_embd], persistent=False)  # (1, T, C)
        elif not config.rope:
            self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)
        if config.perceiver:
            self.down_block = DownProjectBlock(config)
            self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer - 2)])
            self.up_block = UpProjectBlock(config)
        else:  # nn.Sequential as in the course (str(model)); forward calls the blocks one by one, with the cache
            self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def get_block_size(self):
        return self.block_size

    @property
    def causal(self):
        """Position t depends on positions <= t alone; not with mask_after_softmax (the future leaks in). The
        trainer packs only causal models."""
        return not self.config.mask_after_softmax

    @property
    def supports_kv_cache(self):
        """Not the perceiver (its slots change as the input grows), nor a model that is not causal."""
        return not self.config.perceiver and self.causal

    def forward(self, idx, targets=None, kv_cache=None, packed=False):
        """idx (B, T) token ids -> logits (B, T, vocab_size), and the cross-entropy loss against targets (B, T)
        ignoring PAD (id 0). kv_cache: decoding's attention.KVCache, idx the tokens after those cached. packed
        (training): only each row's positions up to its last non-PAD target (packing.py); logits (N, vocab)."""
        B, T = idx.size()
        start = kv_cache.offset if kv_cache is not None else 0  # position of idx[:, 0]
        assert start + T <= self.max_len, f"input of length {start + T} exceeds the model's {self.max_len}"
        assert not packed or (targets is not None and kv_cache is None and self.causal), \
            "packed takes targets, no cache, and a causal model"
        # attention in groups of rows of similar lengths; the perceiver's slots need every row at once
        packing = Packing(targets, groups=1 if self.config.perceiver else ATTENTION_GROUPS) if packed else None
        x = self.tok_emb(idx if packing is None else packing.pack(idx))  # (B, T, C), or (N, C) packed
        if hasattr(self, "pos_emb") and packing is not None:
            x = x + self.pos_emb[0, packing.positions]  # each token's position in its row
        elif hasattr(self, "pos_emb") and kv_cache is not None and kv_cache.positions is not None:
            x = x + self.pos_emb[0, kv_cache.positions + torch.arange(T, device=idx.device)]  # each row's own
        elif hasattr(self, "pos_emb"):
            x = x + self.pos_emb[:, start:start + T]
        x = self.drop(x)
        if self.config.perceiver:  # (B, T, C) -> (B, m, C) through the blocks -> (B, T, C), or (N, C) packed
            assert kv_cache is None, "the perceiver does not decode with a KV cache"
            x = self.up_block(self.blocks(self.down_block(x, packing)), x, packing)
        else:
            for block in self.blocks:
                x = block(x, kv_cache, packing)
            if kv_cache is not None:
                kv_cache.advance(T)  # every layer has stored this step's keys and values
        logits = self.head(self.ln_f(x))  # (B, T, vocab_size), or (N, vocab_size) packed
        if packing is not None:
            targets = packing.pack(targets)  # (N,): the targets that are not PAD, and a few that are
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=0)
