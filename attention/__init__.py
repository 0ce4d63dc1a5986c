"""Attention Playground: exact, inspectable attention in PyTorch.

Masks everywhere are keep-masks: ``True``/1 = may attend, ``False``/0 = blocked (the opposite of
``torch.nn.MultiheadAttention``'s boolean masks).
"""
from .functional import scaled_dot_product_attention, single_token_attention
from .longcontext import PooledMaps, attention_row, attention_window, exact_weight, pooled_attention_maps, resolve_device
from .mask_mods import (
    and_masks,
    causal_mask_mod,
    causal_mod,
    document_mask,
    materialize_mask,
    or_masks,
    padding_mod,
    prefix_lm,
    sliding_window,
)
from .masks import make_causal_mask, make_padding_mask, prepare_mask
from .multihead import MultiHeadAttention
from .verify import (
    InvarianceResult,
    Leak,
    LeakReport,
    check_output_invariance,
    dependency_map,
    find_leaks,
    invariance_sweep,
    leak_report,
    max_future_weight,
    verify_no_lookahead,
)

__all__ = [
    "InvarianceResult",
    "Leak",
    "LeakReport",
    "PooledMaps",
    "attention_row",
    "attention_window",
    "exact_weight",
    "pooled_attention_maps",
    "resolve_device",
    "and_masks",
    "causal_mask_mod",
    "causal_mod",
    "dependency_map",
    "document_mask",
    "find_leaks",
    "invariance_sweep",
    "leak_report",
    "materialize_mask",
    "or_masks",
    "padding_mod",
    "prefix_lm",
    "sliding_window",
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
