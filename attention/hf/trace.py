"""Attention weights of a real model on one text: ``trace_attention`` and ``AttentionTrace``.

``trace_attention(model, tokenizer, "The cat sat.")`` runs the model once with
``output_attentions=True`` and keeps, per layer, batch item 0 as float32 ``(H, T, T)`` on the CPU,
with the tokens as the tokenizer spells them (special tokens included) for axis labels.
``AttentionTrace.from_attentions`` wraps weights from anywhere else: the HF / BertViz convention (a
tuple of per-layer ``(B, H, T, T)``) or TransformerLens-style per-layer ``(H, T, T)``.

Shape legend: ``L`` layers, ``B`` batch, ``H`` heads, ``T`` positions (queries = keys).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .loading import _base, is_causal_model, max_positions, model_lock

__all__ = ["AttentionTrace", "trace_attention"]


def _labels(tokens: Any) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"expected tokens to be a list of str (one label per position) but found "
                        f"{type(tokens).__name__}")
    bad = [t for t in tokens if isinstance(t, bool) or not isinstance(t, (str, int))]
    if bad:
        raise TypeError(f"expected tokens to be str (or int ids) but found {type(bad[0]).__name__}")
    return [str(t) for t in tokens]                                 # labels stay text: '[CLS]', '12'


@dataclass(frozen=True)
class AttentionTrace:
    """Per-layer attention weights of one sequence, with its tokens.

    Attributes:
        tokens: ``T`` labels as the tokenizer spells them (``'[CLS]'``, ``'Ġcat'``, ``'##ing'``).
        token_ids: ``T`` ids, or ``None`` when the weights came from elsewhere without them.
        weights: ``L`` float32 CPU tensors ``(H, T, T)``; row ``q`` sums to 1 over keys.
        num_layers: ``L``.
        num_heads: ``H``.
        is_causal: the model's attention is causal (from its config; for
            :meth:`from_attentions`, inferred from the weights unless given).
        model_name: where the weights came from. Default: ``""``.
    """

    tokens: list[str]
    token_ids: list[int] | None
    weights: list[Tensor] = field(repr=False)
    num_layers: int
    num_heads: int
    is_causal: bool
    model_name: str = ""

    @property
    def seq_len(self) -> int:
        """``T``."""
        return len(self.tokens)

    def stacked(self) -> Tensor:
        """All layers as one ``(L, H, T, T)`` tensor."""
        return torch.stack(self.weights)

    @classmethod
    def from_attentions(cls, attentions: Any, tokens: Sequence[str], *, token_ids: Sequence[int] | None = None,
                        is_causal: bool | None = None, model_name: str = "") -> "AttentionTrace":
        """An :class:`AttentionTrace` from weights computed anywhere.

        Args:
            attentions: one of
                - a tuple/list of per-layer ``(B, H, T, T)`` tensors (HF ``outputs.attentions``,
                  BertViz's input): batch item 0 is kept;
                - a list of per-layer ``(H, T, T)`` tensors (TransformerLens ``cache["pattern", l][0]``);
                - one tensor ``(L, H, T, T)`` or ``(L, B, H, T, T)`` (batch item 0).
                NumPy arrays are accepted where tensors are.
            tokens: ``T`` labels (str; int ids are turned into their decimal text).
            token_ids: ``T`` ids. Default: ``None``.
            is_causal: whether the attention is causal. Default: ``True`` iff no query puts weight on
                a later key in any head.
            model_name: Default: ``""``.

        Raises:
            ValueError: shapes that are not per-layer ``(B, H, T, T)``/``(H, T, T)`` with one ``H``
                and ``T = len(tokens)``; the message names what was found and what was wanted.
        """
        labels = _labels(tokens)
        if isinstance(attentions, Tensor) or hasattr(attentions, "__array__") and not isinstance(attentions, (list, tuple)):
            stack = torch.as_tensor(attentions)
            if stack.dim() not in (4, 5):
                raise ValueError(f"expected attentions as one tensor of shape (L, H, T, T) or (L, B, H, T, T) "
                                 f"but found {tuple(stack.shape)}")
            layers = list(stack)
        elif isinstance(attentions, (list, tuple)) and attentions:
            layers = [torch.as_tensor(a) for a in attentions]
        else:
            raise ValueError(f"expected attentions to be a non-empty tuple/list of per-layer (B, H, T, T) or "
                             f"(H, T, T) tensors but found {type(attentions).__name__}"
                             + (" of length 0" if isinstance(attentions, (list, tuple)) else ""))
        T = len(labels)
        weights = []
        for l, a in enumerate(layers):
            if a.dim() == 4:
                a = a[0]                                            # (B, H, T, T) -> (H, T, T), item 0
            if a.dim() != 3 or tuple(a.shape[1:]) != (T, T) or not a.is_floating_point():
                raise ValueError(f"expected layer {l} of attentions to be (B, H, T, T) or (H, T, T) floating "
                                 f"weights with T = len(tokens) = {T} but found {tuple(a.shape)} {a.dtype}")
            weights.append(a.detach().to("cpu", torch.float32).contiguous())
        heads = {w.shape[0] for w in weights}
        if len(heads) != 1:
            raise ValueError(f"expected every layer to have the same number of heads but found {sorted(heads)}")
        if token_ids is not None:
            token_ids = [int(i) for i in token_ids]
            if len(token_ids) != T:
                raise ValueError(f"expected {T} token_ids (one per token) but found {len(token_ids)}")
        if is_causal is None:
            future = torch.ones(T, T, dtype=torch.bool).triu(1)     # (T, T) keys after the query
            is_causal = not any(bool((w[:, future] > 0).any()) for w in weights)
        return cls(tokens=labels, token_ids=token_ids, weights=weights, num_layers=len(weights),
                   num_heads=heads.pop(), is_causal=bool(is_causal), model_name=str(model_name))


def _ids(tokenizer: Any, text_or_ids: Any) -> Tensor:
    """``(1, T)`` int64 ids from a text (tokenized with special tokens) or from ids."""
    if isinstance(text_or_ids, str):
        if tokenizer is None:
            raise ValueError("expected a tokenizer to tokenize text_or_ids (a str) but found tokenizer=None: "
                             "pass token ids instead")
        ids = tokenizer(text_or_ids, return_tensors="pt")["input_ids"]
    else:
        try:
            ids = torch.as_tensor(text_or_ids)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"expected text_or_ids to be a str or token ids but found "
                            f"{type(text_or_ids).__name__}") from None
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            raise TypeError(f"expected text_or_ids to be a str or integer token ids but found dtype {ids.dtype}")
    ids = ids.long()
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[0] != 1 or ids.shape[1] < 1:
        raise ValueError(f"expected one sequence of token ids, (T,) or (1, T) with T >= 1, but found "
                         f"{tuple(ids.shape)}")
    return ids


def checked_ids(base, tokenizer, text_or_ids, max_tokens: int) -> Tensor:
    """``text_or_ids`` as ``(1, T)`` token ids for the base model ``base``, checked: ``max_tokens``
    an int >= 1, ``T`` within it and the model's positions, ids within its vocabulary (a
    ``ValueError`` naming the limit otherwise). Shared by ``trace_attention`` and
    ``capture_attention``."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"expected max_tokens to be an int >= 1 but found {max_tokens!r}")
    ids = _ids(tokenizer, text_or_ids)                              # (1, T)
    T = ids.shape[1]
    limit = min(max_tokens, max_positions(base) or max_tokens)
    if T > limit:
        raise ValueError(f"expected at most {limit} tokens (max_tokens={max_tokens}, model positions "
                         f"{max_positions(base)}) but the input has {T}: shorten the text")
    vocab = base.get_input_embeddings().num_embeddings
    if int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise ValueError(f"expected token ids in 0..{vocab - 1} (the model's vocabulary) but found "
                         f"{int(ids.min())}..{int(ids.max())}")
    return ids


def trace_attention(model: nn.Module, tokenizer: Any, text_or_ids: Any, *, max_tokens: int = 512) -> AttentionTrace:
    """Run ``model`` once on one text and keep every layer's attention weights.

    Equal to ``model(input_ids, output_attentions=True).attentions`` (batch item 0, as float32 on the
    CPU): the same numbers, not a re-implementation.

    Args:
        model: a transformers model loaded with eager attention (:func:`~attention.hf.load_pretrained`).
        tokenizer: its tokenizer (used for text and token labels), or ``None`` with ids.
        text_or_ids: a str (tokenized with the model's special tokens, e.g. ``[CLS] ... [SEP]``) or
            token ids ``(T,)`` / ``(1, T)``.
        max_tokens: the longest sequence accepted; also capped by the model's positions. Default: 512.

    Returns:
        :class:`AttentionTrace` with ``weights`` ``L x (H, T, T)``.

    Raises:
        ValueError: too many tokens, ids outside the vocabulary, or a model that returns no weights
            (loaded with ``attn_implementation="sdpa"``).
    """
    base = _base(model)
    ids = checked_ids(base, tokenizer, text_or_ids, max_tokens)    # (1, T)
    T = ids.shape[1]
    device = next(base.parameters()).device

    with model_lock(model), torch.no_grad():     # never while capture_attention switched its attention
        out = model(input_ids=ids.to(device), output_attentions=True, use_cache=False)
    attentions = getattr(out, "attentions", None)
    if not attentions:
        impl = getattr(base.config, "_attn_implementation", "?")
        raise ValueError(f"model returned no attention weights (attn_implementation={impl!r}): load it with "
                         f"attn_implementation='eager', e.g. attention.hf.load_pretrained(...)")
    id_list = ids[0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(id_list) if tokenizer is not None else [str(i) for i in id_list]
    name = getattr(base.config, "_name_or_path", "") or type(model).__name__
    return AttentionTrace.from_attentions(attentions, tokens, token_ids=id_list,
                                          is_causal=is_causal_model(model), model_name=name)
