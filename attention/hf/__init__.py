"""Hugging Face transformers models in the playground: load offline, trace attention, check leaks.

- :func:`load_pretrained`: ``(model, tokenizer)`` from a local directory, the bundled
  all-MiniLM-L6-v2 or the hub (online only); eager attention, eval mode, safetensors only.
- :func:`trace_attention` -> :class:`AttentionTrace`: every layer's ``(H, T, T)`` weights on a text,
  with its tokens; :meth:`AttentionTrace.from_attentions` wraps weights from HF, BertViz or
  TransformerLens.
- :func:`embeddings_model`: ``x (B, T, E) -> last hidden state (B, T, E)`` for the leak detector
  (:func:`~attention.verify.find_leaks` ...); :func:`embedding_inputs` draws ``x`` from the model's
  own embedding table; :func:`verify_target` bundles what ``attention.verify --hf`` needs.
- :func:`capture_attention` -> :class:`CapturedAttention`: long texts without the full weights (each
  layer's ``q``, ``k`` captured; pooled maps, exact rows and windows computed on demand).
- :func:`head_roles`: previous-token, next-token, first/last-token sink, self and induction scores
  of every head, with each head's strongest role.

Importing this package imports ``transformers`` lazily (only :func:`load_pretrained` needs it);
``import attention`` never imports it.

Shape legend: ``B`` batch, ``L`` layers, ``H`` heads, ``T`` positions, ``E`` embedding.
"""
from .capture import CapturedAttention, NotCapturable, can_capture, capture_attention, model_lock
from .embeddings import EmbeddingsModel, embedding_inputs, embeddings_model, verify_target
from .loading import (
    MINILM_INSTALL,
    MINILM_NAMES,
    ModelNotAvailable,
    is_causal_model,
    load_pretrained,
    max_positions,
    minilm_available,
    minilm_path,
    resolve_model_path,
)
from .roles import DEFAULT_TEXTS, head_roles, induction_probe_ids
from .trace import AttentionTrace, trace_attention

__all__ = [
    "DEFAULT_TEXTS",
    "MINILM_INSTALL",
    "MINILM_NAMES",
    "AttentionTrace",
    "CapturedAttention",
    "EmbeddingsModel",
    "ModelNotAvailable",
    "NotCapturable",
    "can_capture",
    "capture_attention",
    "embedding_inputs",
    "embeddings_model",
    "head_roles",
    "induction_probe_ids",
    "is_causal_model",
    "load_pretrained",
    "max_positions",
    "minilm_available",
    "minilm_path",
    "model_lock",
    "resolve_model_path",
    "trace_attention",
    "verify_target",
]
