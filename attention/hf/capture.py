"""Long texts through a real model without its ``(L, H, T, T)`` weights: ``capture_attention``.

``trace_attention`` asks the model for ``output_attentions=True``: every layer's full weights, which
at ``T = 4096`` with 8 heads are 512 MiB per layer (and the eager kernel holds a few such buffers
while it runs). ``capture_attention`` runs the same model once with an attention function of its
own, registered in transformers' ``AttentionInterface``: for each layer it keeps the query and key
states exactly as the model hands them to its kernel (after RoPE, before the scaling), the keep-mask
and the scale, and computes the layer's output with PyTorch's fused ``scaled_dot_product_attention``
(``sdpa_attention_forward``, no weights). Any weight is then computed from those ``q``, ``k`` by
``attention.longcontext`` on demand, tile by tile: the pooled maps (``pooled``), a query's exact row
(``row``), a zoom window (``window``), one cell (``weight``).

Held per trace: ``2 * L * H * T * D`` floats of ``q``, ``k`` (keys with their own ``K <= H`` heads)
plus the mask the model built (``None`` for a plain causal or bidirectional text; a ``(T, T)`` bool
for sliding windows). Tiny 2-layer model at ``T = 4096``: well under 1 MiB of ``q``, ``k``.

"Where the model allows it": models whose attention goes through ``ALL_ATTENTION_FUNCTIONS``
(GPT-2, Llama, Mistral, Qwen2, BERT ... in transformers 5) and uses plain softmax attention. A
model with soft-capping, attention sinks, a position bias, or one that does not call the interface
raises :class:`NotCapturable` (:func:`can_capture` probes once, on a few tokens).

Shape legend: ``L`` layers, ``H`` query heads, ``K`` key heads, ``T`` positions, ``D`` head size.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..longcontext import PooledMaps, attention_row, attention_window, exact_weight, pooled_attention_maps
from .loading import _base, is_causal_model, model_lock
from .trace import checked_ids

__all__ = ["CAPTURE", "CapturedAttention", "NotCapturable", "can_capture", "capture_attention", "model_lock"]

CAPTURE = "attention_playground_capture"
"""The name the capturing attention function is registered under (``AttentionInterface``)."""

_UNSUPPORTED = ("softcap", "s_aux", "sinks", "position_bias")   # kwargs that change the softmax
_local = threading.local()
_REGISTERED = False


class NotCapturable(ValueError):
    """The model's attention cannot be captured as plain ``softmax(q k^T * scale + mask)``; the
    message says why (the long-context path is then not available for it)."""


@dataclass(frozen=True)
class _Layer:
    q: Tensor = field(repr=False)        # (H, T, D) as given to the kernel (RoPE applied, unscaled)
    k: Tensor = field(repr=False)        # (K, T, D)
    mask: Any = field(repr=False)        # None | "causal" | (1 | H, T, T) bool keep-mask
    scale: float | None


def _capture_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                     **kwargs):
    """The attention function registered as ``CAPTURE``: records ``q``, ``k``, mask and scale of
    batch item 0, then returns what transformers' SDPA path returns (output, no weights)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    records = getattr(_local, "records", None)
    if records is None:
        raise RuntimeError(f"the {CAPTURE!r} attention runs only inside attention.hf.capture_attention")
    bad = [name for name in _UNSUPPORTED if kwargs.get(name) is not None]
    if bad:
        raise NotCapturable(f"{type(module).__name__} passes {', '.join(bad)} to its attention: not a plain "
                            f"softmax of q k^T, so its weights cannot be recomputed from q and k")
    if query.shape[2] != key.shape[2]:
        raise NotCapturable(f"{type(module).__name__} attends from {query.shape[2]} queries to "
                            f"{key.shape[2]} keys (cross-attention or a cache): not self-attention")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is None:
        mask = "causal" if causal and query.shape[2] > 1 else None
    elif isinstance(attention_mask, Tensor) and attention_mask.dim() == 4:
        m = attention_mask[0]                                          # (1 | H, T, T)
        if m.dtype == torch.bool:
            mask = m
        else:                                                          # additive: 0 or a large negative
            blocked = m <= torch.finfo(m.dtype).min / 2
            if not bool(((m == 0) | blocked).all()):
                raise NotCapturable(f"{type(module).__name__} adds a bias to its scores (values other than "
                                    f"0 and -inf in its mask): not a plain keep-mask")
            mask = ~blocked
    else:
        raise NotCapturable(f"{type(module).__name__} passes an attention mask of type "
                            f"{type(attention_mask).__name__}: expected None or a 4-D tensor")
    records.append(_Layer(query[0].detach(), key[0].detach(), mask, scaling))
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


def _register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CAPTURE, _capture_forward)
    AttentionMaskInterface.register(CAPTURE, sdpa_mask)     # masks as SDPA gets them: bool, or None
    _REGISTERED = True


@dataclass(frozen=True, eq=False)
class CapturedAttention:
    """One text through a model, with each layer's ``q``, ``k`` and mask instead of its weights.

    Attributes:
        tokens: ``T`` labels as the tokenizer spells them; token_ids: the ``T`` ids.
        num_layers, num_heads: ``L``, ``H`` (query heads). is_causal: from the model.
        model_name: where it came from. device: where ``q``, ``k`` live (the model's device).
    """

    tokens: list[str]
    token_ids: list[int]
    layers: tuple[_Layer, ...] = field(repr=False)
    num_layers: int
    num_heads: int
    is_causal: bool
    model_name: str = ""
    device: str = "cpu"

    @property
    def seq_len(self) -> int:
        """``T``."""
        return len(self.tokens)

    def _layer(self, layer: object) -> _Layer:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.num_layers:
            raise ValueError(f"expected layer in 0..{self.num_layers - 1} but found layer={layer!r}")
        return self.layers[layer]

    def _heads(self, lay: _Layer, head: object) -> tuple[Tensor, Tensor, Any]:
        """``q``, ``k`` and mask of one head (``head=None``: all of them)."""
        if head is None:
            return lay.q, lay.k, lay.mask
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < self.num_heads:
            raise ValueError(f"expected head in 0..{self.num_heads - 1} (or None) but found head={head!r}")
        kv = head // (self.num_heads // lay.k.shape[0])               # grouped-query: its key head
        mask = lay.mask
        if isinstance(mask, Tensor) and mask.shape[0] > 1:
            mask = mask[head:head + 1]
        return lay.q[head:head + 1], lay.k[kv:kv + 1], mask

    def pooled(self, layer: int, pixels: int, head: int | None = None, mean_heads: bool = False) -> PooledMaps:
        """Layer ``layer``'s maps max-pooled to at most ``pixels`` a side
        (``attention.longcontext.pooled_attention_maps``): every head ``(H, R, R)``, one head
        (``head``: ``(1, R, R)``) or the mean of the heads (``mean_heads``: ``(1, R, R)``)."""
        lay = self._layer(layer)
        q, k, mask = self._heads(lay, head)
        return pooled_attention_maps(q, k, mask=mask, scale=lay.scale, pixels=pixels, mean_heads=mean_heads)

    def window(self, layer: int, q_range: tuple[int, int], k_range: tuple[int, int], pixels: int,
               head: int | None = None, mean_heads: bool = False) -> PooledMaps:
        """Queries ``q0:q1`` x keys ``k0:k1`` of layer ``layer`` (``attention_window``: exact when
        the window fits ``pixels``, rows normalised over all keys)."""
        lay = self._layer(layer)
        q, k, mask = self._heads(lay, head)
        return attention_window(q, k, q_range=q_range, k_range=k_range, mask=mask, scale=lay.scale,
                                pixels=pixels, mean_heads=mean_heads)

    def row(self, layer: int, query: int) -> Tensor:
        """``(H, T)``: query ``query``'s exact weights over every key, in every head of ``layer``."""
        lay = self._layer(layer)
        return attention_row(lay.q, lay.k, query, mask=lay.mask, scale=lay.scale)

    def weight(self, layer: int, head: int, query: int, key: int) -> float:
        """The exact weight of ``query`` on ``key`` in one head."""
        lay = self._layer(layer)
        q, k, mask = self._heads(lay, head)
        return float(exact_weight(q, k, query, key, mask=mask, scale=lay.scale)[0])


def capture_attention(model: nn.Module, tokenizer: Any, text_or_ids: Any, *, max_tokens: int = 4096) -> CapturedAttention:
    """Run ``model`` once on one text, keeping each layer's ``q``, ``k`` and mask (not its weights).

    Args:
        model: a transformers model (any attention implementation: it is switched to ``CAPTURE``
            for this call, under :func:`model_lock`, and restored).
        tokenizer: its tokenizer (text and labels), or ``None`` with ids.
        text_or_ids: a str (tokenized with the model's special tokens) or ids ``(T,)`` / ``(1, T)``.
        max_tokens: the longest sequence accepted; also capped by the model's positions. Default: 4096.

    Returns:
        :class:`CapturedAttention`; its weights equal ``output_attentions=True``'s up to float
        rounding (tested: max-pooled and exact rows).

    Raises:
        NotCapturable: the model's attention is not plain softmax attention through the interface.
        ValueError: too many tokens, ids outside the vocabulary.
    """
    base = _base(model)
    ids = checked_ids(base, tokenizer, text_or_ids, max_tokens)    # (1, T)
    T = ids.shape[1]
    _register()
    device = next(base.parameters()).device
    records: list[_Layer] = []
    with model_lock(model):
        config = base.config
        before = config._attn_implementation
        config._attn_implementation = CAPTURE
        _local.records = records
        try:
            with torch.no_grad():
                model(input_ids=ids.to(device), use_cache=False)
        finally:
            _local.records = None
            config._attn_implementation = before
    expected = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    if not records or (isinstance(expected, int) and len(records) != expected):
        raise NotCapturable(f"{type(base).__name__} ran {len(records)} of its {expected} attention layers "
                            f"through transformers' attention interface: its weights cannot be captured")
    heads = {r.q.shape[0] for r in records}
    if len(heads) != 1:
        raise NotCapturable(f"expected every layer to have the same number of heads but found {sorted(heads)}")
    id_list = ids[0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(id_list) if tokenizer is not None else [str(i) for i in id_list]
    name = getattr(config, "_name_or_path", "") or type(model).__name__
    return CapturedAttention(tokens=tokens, token_ids=id_list, layers=tuple(records), num_layers=len(records),
                             num_heads=heads.pop(), is_causal=is_causal_model(model), model_name=name,
                             device=str(device))


def can_capture(model: nn.Module) -> str:
    """``""`` when :func:`capture_attention` works for ``model`` (probed on 4 token ids and, for a
    model loaded with eager attention, checked against its ``output_attentions=True``), else why
    not (a sentence)."""
    base = _base(model)
    vocab = base.get_input_embeddings().num_embeddings
    ids = torch.arange(4) % vocab
    try:
        cap = capture_attention(model, None, ids, max_tokens=4)
    except NotCapturable as err:
        return str(err)
    from .trace import trace_attention

    try:
        ref = trace_attention(model, None, ids, max_tokens=4).weights
    except ValueError:                                              # no weights to compare (sdpa)
        return ""
    for l, w in enumerate(ref):
        got = cap.pooled(l, 4).maps                                 # (H, 4, 4): f = 1, exact
        if not torch.allclose(got, w, atol=1e-4):
            return (f"layer {l}'s weights recomputed from its q and k differ from the model's own by "
                    f"{float((got - w).abs().max()):.2g}")
    return ""
