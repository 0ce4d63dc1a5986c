"""The "Model heads" tab: the heads of the trained induction model, random weights, the pretrained
all-MiniLM-L6-v2 and any Hugging Face model the server was started with.

``state`` (model, input, selection; one cached forward pass; headless), ``plots`` (maps ->
frames, results -> HTML), ``text`` (explanations and stylesheet), ``view`` (the live view and
``ModelHeads``; ``TrainedHeads`` is its former name).
"""
from .state import (
    DEFAULT_TEXT,
    RANDOM_STD,
    HeadsResult,
    HeadsState,
    hf_metrics,
    hf_model,
    hf_ready,
    is_hf,
    model_choices,
    model_metrics,
    parse_token_ids,
    preload_hf,
    query_reading,
    random_model,
    trained_model,
)
from .view import ModelHeads, ModelHeadsView, TrainedHeads, TrainedHeadsView

__all__ = [
    "DEFAULT_TEXT",
    "HeadsResult",
    "HeadsState",
    "ModelHeads",
    "ModelHeadsView",
    "RANDOM_STD",
    "TrainedHeads",
    "TrainedHeadsView",
    "hf_metrics",
    "hf_model",
    "hf_ready",
    "is_hf",
    "model_choices",
    "model_metrics",
    "parse_token_ids",
    "preload_hf",
    "query_reading",
    "random_model",
    "trained_model",
]
