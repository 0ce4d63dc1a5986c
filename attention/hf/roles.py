"""What each head of a real model does: role scores averaged over texts, plus an induction probe.

``head_roles(model, tokenizer)`` traces each text (default: two plain English sentences), scores
every head with :func:`attention.head_metrics.role_scores` and averages over the texts; induction
is measured on a separate probe, a block of distinct random token ids from the model's own
vocabulary (special tokens excluded) repeated once, wrapped in the tokenizer's special tokens.

Shape legend: ``L`` layers, ``H`` heads, ``T`` positions, ``V`` vocabulary.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..head_metrics import HeadRoles, head_roles_table, role_scores
from .loading import _base
from .trace import trace_attention

__all__ = ["DEFAULT_TEXTS", "head_roles", "induction_probe_ids"]

DEFAULT_TEXTS = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the hill.",
    "Attention lets every word in a sentence look at the other words before deciding what it means.",
)


def induction_probe_ids(model: nn.Module, tokenizer: Any, block: int = 20, seed: int = 0) -> list[int]:
    """``block`` distinct random ids from the model's vocabulary, twice, in the tokenizer's special
    tokens (``[CLS] a b c ... a b c [SEP]`` for BERT, ``<s> a b c ... a b c`` for Llama). Special-token
    ids are never drawn.

    Args:
        model: a transformers model. tokenizer: its tokenizer, or ``None`` (no special tokens).
        block: distinct tokens per copy. Default: 20. seed: Default: 0.
    """
    if isinstance(block, bool) or not isinstance(block, int) or block < 2:
        raise ValueError(f"expected block to be an int >= 2 but found {block!r}")
    V = _base(model).get_input_embeddings().num_embeddings
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    allowed = torch.tensor([i for i in range(V) if i not in special])
    if allowed.numel() < block:
        raise ValueError(f"expected block <= {allowed.numel()} (non-special tokens in the vocabulary) but "
                         f"found {block}")
    gen = torch.Generator().manual_seed(seed)
    ids = allowed[torch.randperm(allowed.numel(), generator=gen)[:block]].tolist()
    ids = ids + ids                                                 # x[i] = x[i - block]
    prefix, suffix = _special_wrapping(tokenizer)
    return prefix + ids + suffix


def _special_wrapping(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts around a text: ``([CLS],), ([SEP],)`` for BERT, ``([<s>],
    [])`` for Llama, nothing for GPT-2; read from how it encodes an empty text."""
    if tokenizer is None:
        return [], []
    wrapped = list(tokenizer("")["input_ids"])
    starts = {getattr(tokenizer, "cls_token_id", None), getattr(tokenizer, "bos_token_id", None)} - {None}
    n = 0
    while n < len(wrapped) and wrapped[n] in starts:
        n += 1
    return wrapped[:n], wrapped[n:]


def head_roles(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | str = DEFAULT_TEXTS,
    *,
    block: int = 20,
    seed: int = 0,
    min_score: float = 0.5,
) -> list[HeadRoles]:
    """Role scores of every head, averaged over ``texts``, with each head's strongest role.

    Args:
        model: a transformers model with eager attention. tokenizer: its tokenizer.
        texts: one text or several; scores are the mean of the per-text scores. Default:
            :data:`DEFAULT_TEXTS`.
        block, seed: the induction probe (:func:`induction_probe_ids`). Default: 20, 0.
        min_score: see :func:`attention.head_metrics.head_roles_table`. Default: 0.5.

    Returns:
        ``L·H`` :class:`~attention.head_metrics.HeadRoles`, layer-major.
    """
    if isinstance(texts, str):
        texts = [texts]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"expected texts to be a str or a non-empty list of str but found {texts!r}")
    per_text = [role_scores([w[None] for w in trace_attention(model, tokenizer, t).weights]) for t in texts]
    scores = {k: torch.stack([s[k] for s in per_text]).mean(0) for k in per_text[0]}   # (L, H) each
    probe = trace_attention(model, tokenizer, induction_probe_ids(model, tokenizer, block, seed))
    scores["induction"] = role_scores([w[None] for w in probe.weights], probe.token_ids)["induction"]
    return head_roles_table(scores, min_score=min_score)
