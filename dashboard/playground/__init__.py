"""The Playground tab: one untrained multi-head attention layer, every view linked to the controls.

``state`` (parameters and the cached computation, headless), ``plots`` (result -> frames and
HTML), ``text`` (the explanations), ``view`` (the live view and ``AttentionPlayground``),
``export`` (the standalone HTML file).
"""
from .state import (
    MAX_SEQ_LEN,
    PlaygroundResult,
    PlaygroundState,
    SingleTokenSteps,
    build_model,
    embed_tokens,
    single_token_steps,
    tokenize,
)
from .view import AttentionPlayground, PlaygroundView

__all__ = [
    "AttentionPlayground",
    "MAX_SEQ_LEN",
    "PlaygroundResult",
    "PlaygroundState",
    "PlaygroundView",
    "SingleTokenSteps",
    "build_model",
    "embed_tokens",
    "single_token_steps",
    "tokenize",
]
