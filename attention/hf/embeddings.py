"""A transformers model as ``x (B, T, E) -> y (B, T, E)``, for the leak detector.

``embeddings_model(model)`` feeds ``x`` as ``inputs_embeds`` (token embeddings: the model still adds
its own position embeddings, norms, ...) and returns the last hidden state, so
:func:`~attention.verify.find_leaks`, :func:`~attention.verify.dependency_map`,
:func:`~attention.verify.invariance_sweep` and :func:`~attention.verify.check_output_invariance`
check a real model like any other. ``embedding_inputs`` draws ``x`` from the model's own embedding
table (what the model sees on real text). ``verify_target`` is everything ``python -m
attention.verify --hf`` needs, in one call.

Shape legend: ``B`` batch, ``T`` positions, ``E`` embedding (hidden size), ``V`` vocabulary.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..masks import make_padding_mask
from .loading import _base, is_causal_model, load_pretrained, max_positions

__all__ = ["EmbeddingsModel", "embedding_inputs", "embeddings_model", "verify_target"]


class EmbeddingsModel(nn.Module):
    """``x (B, T, E) -> last hidden state (B, T, E)`` of a transformers model, via ``inputs_embeds``.

    The attention mask (keep-mask: 1 = real token, 0 = padding, the HF convention and ours) is a
    non-persistent buffer of shape ``(B_m, T)`` (or ``(B_m, 1, T, T)`` 4-D, passed as is), repeated
    along the batch to whatever batch ``B`` the caller uses (``B`` must be a multiple of ``B_m``:
    the leak detector's ``B·(T+1)``-row sweep tiles items in order, so row ``r`` gets mask
    ``r % B_m``). Integer masks survive the ``.double()`` the dependency map applies.
    """

    def __init__(self, model: nn.Module, attention_mask: Tensor | None = None):
        super().__init__()
        self.model = model
        self.register_buffer("attention_mask", attention_mask, persistent=False)

    def _mask(self, B: int, T: int) -> Tensor | None:
        m = self.attention_mask
        if m is None:
            return None
        if m.shape[-1] != T or B % m.shape[0] != 0:
            raise ValueError(f"expected x of shape (B, T, E) with T = {m.shape[-1]} and B a multiple of "
                             f"{m.shape[0]} (the attention_mask {tuple(m.shape)}) but found B={B}, T={T}")
        reps = B // m.shape[0]
        return m.repeat(reps, *([1] * (m.dim() - 1))) if reps > 1 else m   # (B, T) or (B, 1, T, T)

    def forward(self, x: Tensor) -> Tensor:
        B, T, E = x.shape                                           # batch, positions, embedding
        out = self.model(inputs_embeds=x, attention_mask=self._mask(B, T), use_cache=False)
        return out.last_hidden_state                                # (B, T, E)


def _check_mask(attention_mask: Any) -> Tensor | None:
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, Tensor):
        raise TypeError(f"expected attention_mask to be None or a (B, T) tensor but found "
                        f"{type(attention_mask).__name__}")
    m = attention_mask
    if m.dim() == 1:
        m = m[None]                                                 # (T,) -> (1, T)
    if m.dim() not in (2, 4) or (m.dim() == 4 and (m.shape[1] != 1 or m.shape[2] != m.shape[3])):
        raise ValueError(f"expected attention_mask of shape (T,), (B, T) or (B, 1, T, T) but found "
                         f"{tuple(attention_mask.shape)}")
    if m.is_floating_point() and not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("expected attention_mask to hold 0/1 keep values (1 = real token) but found other "
                         "values: an additive -inf mask is not a keep-mask")
    return m.long() if m.dim() == 2 else m.bool()


def _token_embeddings(base: nn.Module) -> nn.Embedding:
    """The model's token-embedding table, or a ValueError: without one it takes no ``inputs_embeds``."""
    try:
        table = base.get_input_embeddings()
    except (NotImplementedError, AttributeError) as err:
        raise ValueError(f"model {type(base).__name__} has no token-embedding table, so it cannot run on "
                         f"inputs_embeds (get_input_embeddings: {type(err).__name__}: "
                         f"{' '.join(str(err).split())})") from None
    if not isinstance(table, nn.Embedding):
        raise ValueError(f"model {type(base).__name__} cannot run on inputs_embeds: its input embeddings are "
                         f"a {type(table).__name__}, not a token-embedding table (nn.Embedding)")
    return table


def embeddings_model(model: nn.Module, attention_mask: Tensor | None = None) -> EmbeddingsModel:
    """Wrap a transformers model as ``x (B, T, E) -> last hidden state (B, T, E)``.

    Args:
        model: a transformers ``PreTrainedModel`` (base model or one with a head: its base model is
            used). Put in eval mode here (dropout off).
        attention_mask: keep-mask (1 = attend, 0 = padding): ``(T,)``/``(B_m, T)``, or a 4-D
            ``(B_m, 1, T, T)`` one passed to the model as is. Default: ``None`` (all real tokens).

    Returns:
        :class:`EmbeddingsModel`, usable by ``dependency_map``, ``find_leaks``, ``invariance_sweep``,
        ``leak_report`` and ``check_output_invariance``.

    Raises:
        TypeError: not a transformers model; ValueError: a bad mask, or a model whose forward does
            not take ``inputs_embeds``.
    """
    base = _base(model).eval()
    mask = _check_mask(attention_mask)
    wrapped = EmbeddingsModel(base, mask)
    E = _token_embeddings(base).embedding_dim
    T = 2 if mask is None else mask.shape[-1]
    probe = torch.zeros(mask.shape[0] if mask is not None else 1, T, E,
                        dtype=next(base.parameters()).dtype, device=next(base.parameters()).device)
    try:
        with torch.no_grad():
            wrapped(probe)
    except (TypeError, AttributeError) as err:
        raise ValueError(f"model {type(base).__name__} cannot run on inputs_embeds and return "
                         f"last_hidden_state: {type(err).__name__}: {err}") from None
    return wrapped


def embedding_inputs(model: nn.Module, batch: int, seq_len: int, generator: torch.Generator | None = None) -> Tensor:
    """``x (B, T, E)``: rows of the model's token-embedding table at uniformly random token ids.

    Args:
        model: a transformers model (or an :class:`EmbeddingsModel`).
        batch: ``B >= 1``. seq_len: ``T >= 1``.
        generator: source of the ids. Default: a generator seeded with 0.

    Returns:
        ``(B, T, E)`` detached, in the embedding table's dtype and device.
    """
    base = model.model if isinstance(model, EmbeddingsModel) else _base(model)
    for name, v in (("batch", batch), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"expected {name} to be an int >= 1 but found {v!r}")
    table = _token_embeddings(base).weight                          # (V, E)
    gen = torch.Generator().manual_seed(0) if generator is None else generator
    ids = torch.randint(0, table.shape[0], (batch, seq_len), generator=gen)  # (B, T)
    return table.detach()[ids.to(table.device)].clone()            # (B, T, E)


def verify_target(
    name_or_path: str | os.PathLike,
    *,
    attn: str = "eager",
    padding: Sequence[int] | None = None,
    seq_len: int | None = None,
) -> tuple[EmbeddingsModel, int, int | None, bool]:
    """Everything the verifier's ``--hf`` needs: load, check the length, wrap.

    Args:
        name_or_path: as in :func:`~attention.hf.load_pretrained`.
        attn: ``"eager"`` or ``"sdpa"`` (they can differ in what they let positions see). Default:
            ``"eager"``.
        padding: real-token lengths per batch item (right padding: positions ``>= length`` are pad),
            for a padded batch of ``B = len(padding)``; needs ``seq_len``. Default: ``None``.
        seq_len: ``T`` the check will use, checked against the model's positions. Default: ``None``.

    Returns:
        ``(embeddings_model, dim, max_positions, is_causal)``: the wrapped model (float32, eval),
        ``E`` (the ``--dim``), the model's longest sequence (``None`` if unlimited) and whether its
        config says causal.

    Raises:
        ModelNotAvailable, ValueError, TypeError: with one-line messages (for exit code 2).
    """
    if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1):
        raise ValueError(f"expected seq_len to be an int >= 1 but found {seq_len!r}")
    if padding is not None and seq_len is None:
        raise ValueError("expected seq_len with padding (the padded length T) but found seq_len=None")
    model, _ = load_pretrained(name_or_path, attn=attn)
    limit = max_positions(model)
    if seq_len is not None and limit is not None and seq_len > limit:
        raise ValueError(f"expected seq_len <= {limit} (the model's max positions) but found {seq_len}")
    mask = None
    if padding is not None:
        mask = make_padding_mask(list(padding), seq_len).long()     # (B, T), 1 = real token
    wrapped = embeddings_model(model, mask)
    return wrapped, _token_embeddings(wrapped.model).embedding_dim, limit, is_causal_model(model)
