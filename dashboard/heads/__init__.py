"""The "Trained heads" tab: the shipped induction model's heads next to random ones.

``state`` (model, input, selection; one cached forward pass; headless), ``plots`` (maps ->
frames, results -> HTML), ``text`` (explanations and stylesheet), ``view`` (the live view and
``TrainedHeads``).
"""
from .state import (
    RANDOM_STD,
    HeadsResult,
    HeadsState,
    model_metrics,
    parse_token_ids,
    query_reading,
    random_model,
    trained_model,
)
from .view import TrainedHeads, TrainedHeadsView

__all__ = [
    "HeadsResult",
    "HeadsState",
    "RANDOM_STD",
    "TrainedHeads",
    "TrainedHeadsView",
    "model_metrics",
    "parse_token_ids",
    "query_reading",
    "random_model",
    "trained_model",
]
