"""XCS224N's submission.attention: src/attention.py."""
from attention import (CausalCrossAttention, CausalSelfAttention, SynthesizerAttention,  # noqa: F401
                       apply_rotary_emb, precompute_rotary_emb)
