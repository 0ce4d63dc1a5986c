"""Attention Playground: exact, inspectable attention in PyTorch.

Masks everywhere are keep-masks: ``True``/1 = may attend, ``False``/0 = blocked (the opposite of
``torch.nn.MultiheadAttention``'s boolean masks).
"""
from .functional import scaled_dot_product_attention, single_token_attention
from .masks import make_causal_mask, make_padding_mask, prepare_mask
from .multihead import MultiHeadAttention
from .verify import (
    InvarianceResult,
    check_output_invariance,
    max_future_weight,
    verify_no_lookahead,
)

__all__ = [
    "InvarianceResult",
    "MultiHeadAttention",
    "check_output_invariance",
    "make_causal_mask",
    "make_padding_mask",
    "max_future_weight",
    "prepare_mask",
    "scaled_dot_product_attention",
    "single_token_attention",
    "verify_no_lookahead",
]
__version__ = "0.1.0"
