"""The "Trained heads" tab's state: which model, which input, which head; one cached forward pass.

``HeadsState`` holds the knobs: which model (the trained induction model of ``attention.models``
or the same architecture with random weights), which input (the preset of 16 random tokens twice,
or token ids typed by the user) and which layer, head and query to look at. It runs the model once
per (model, input) change and caches the result; choosing another layer, head or query reruns
nothing (``n_forward`` counts forward passes). Head metrics are computed once per model and cached
for the whole process. Headless: ``dashboard.heads.TrainedHeads`` is the displayable version.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import param
import torch

from attention.head_metrics import HeadMetrics, head_metrics, preset_induction_input
from attention.models import TinyTransformer, load_induction_model

from ..common.recompute import Recomputing

__all__ = [
    "HeadsResult",
    "HeadsState",
    "RANDOM_STD",
    "model_metrics",
    "parse_token_ids",
    "query_reading",
    "random_model",
    "trained_model",
]

RANDOM_STD = 0.25          # std of the random model's weights (see TEXT["random"])
FORWARD_CACHE = 32         # forward passes kept per TrainedHeads


# ------------------------------------------------------------------------------------------------
# models and their metrics: loaded / drawn once per process and shared (read-only, eval mode)

@lru_cache(maxsize=1)
def trained_model() -> TinyTransformer:
    """The shipped induction model (``attention.models.load_induction_model()``)."""
    return load_induction_model()


@lru_cache(maxsize=4)
def random_model(seed: int) -> TinyTransformer:
    """The trained model's architecture with every weight matrix drawn from N(0, RANDOM_STD²).

    Biases are 0 and LayerNorms the identity, as at initialisation. The draws come from a
    ``torch.Generator`` seeded with ``seed`` (the global RNG is left alone).
    """
    with torch.random.fork_rng(devices=[]):       # the constructor's own init uses the global RNG
        model = TinyTransformer(trained_model().config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() >= 2:
                p.normal_(0.0, RANDOM_STD, generator=gen)
    return model.eval()


def _model(kind: str, seed: int) -> TinyTransformer:
    return trained_model() if kind == "trained" else random_model(seed)


@lru_cache(maxsize=8)
def model_metrics(kind: str, seed: int = 0) -> tuple[HeadMetrics, ...]:
    """``attention.head_metrics.head_metrics`` of a model (``seed`` only matters for ``"random"``)."""
    return tuple(head_metrics(_model(kind, seed)))


# ------------------------------------------------------------------------------------------------
# input

def parse_token_ids(text: str, vocab_size: int, max_len: int) -> tuple[int, ...]:
    """Token ids typed by a user: integers separated by spaces or commas.

    Raises:
        ValueError: with a sentence fit to show to the user when ``text`` is empty, holds something
            that is not a whole number, an id outside ``0..vocab_size-1`` or more than ``max_len``
            ids.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected the token ids as a string but found {type(text).__name__}")
    want = f"whole numbers 0..{vocab_size - 1} separated by spaces or commas"
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    if not parts:
        raise ValueError(f"Type 1 to {max_len} token ids: {want}.")
    ids = []
    for p in parts:
        if not re.fullmatch(r"[+-]?\d+", p):
            shown = p if len(p) <= 12 else p[:11] + "…"
            raise ValueError(f"'{shown}' is not a token id: expected {want}.")
        ids.append(int(p))
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"token id {bad[0]} is out of range: the model knows ids 0..{vocab_size - 1} "
                         f"(vocab_size={vocab_size}).")
    if len(ids) > max_len:
        raise ValueError(f"{len(ids)} token ids is too many: the model reads at most {max_len} "
                         f"(max_len={max_len}).")
    return tuple(ids)


# ------------------------------------------------------------------------------------------------
# the computed state

@dataclass(frozen=True, eq=False)
class HeadsResult:
    """One forward pass of one model on one input.

    Attributes:
        model: ``"trained"`` or ``"random"``; ``random_seed``: the random weights' seed (or None).
        tokens: the ``T`` input token ids.
        weights: ``(L, H, T, T)`` float32 attention weights, ``weights[l, h, q, k]``.
        predictions: ``(T,)`` the model's most likely next token after each position.
        period: the repeat period of the preset input (``T // 2``), None for a custom input.
    """

    model: str
    random_seed: int | None
    tokens: tuple[int, ...]
    weights: np.ndarray
    predictions: np.ndarray
    period: int | None

    @property
    def seq_len(self) -> int:
        return len(self.tokens)

    @property
    def num_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def num_heads(self) -> int:
        return self.weights.shape[1]


def query_reading(result: HeadsResult, layer: int, head: int, query: int) -> dict:
    """What one query of one head reads: its strongest key and how that key relates to the query.

    Returns a dict with ``query``, ``token``, ``key`` (the strongest key), ``key_token``,
    ``weight``, ``relation`` (``"previous"``: the position before; ``"after-previous-occurrence"``:
    the position after the last earlier occurrence of the query's token; ``"self"``; or ``""``),
    ``occurrence`` (that earlier position or None) and ``prediction`` (the model's next token).
    """
    tokens = result.tokens
    row = result.weights[layer, head, query]                       # (T,)
    key = int(np.argmax(row))
    earlier = [j for j in range(query) if tokens[j] == tokens[query]]
    occurrence = earlier[-1] if earlier else None
    if occurrence is not None and key == occurrence + 1 and key != query:
        relation = "after-previous-occurrence"
    elif key == query - 1:
        relation = "previous"
    elif key == query:
        relation = "self"
    else:
        relation = ""
    return dict(query=query, token=tokens[query], key=key, key_token=tokens[key],
                weight=float(row[key]), relation=relation, occurrence=occurrence,
                prediction=int(result.predictions[query]))


# ------------------------------------------------------------------------------------------------
# the state

class HeadsState(Recomputing):
    """Real attention heads: the trained induction model (or random weights) on one input.

    The forward pass runs once per change of ``model``, ``random_seed`` or the input, and is
    cached; ``layer``, ``head`` and ``query`` only choose what to show. An invalid custom input
    sets ``input_error`` (a sentence) and keeps the last valid result.
    """

    model = param.Selector(default="trained", objects={"Trained induction model": "trained",
                                                       "Random weights": "random"},
                           label="Model", doc="""
        The model whose heads are shown: the 2-layer transformer trained by
        `python -m attention.train`, or the same architecture with random weights.""")
    random_seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="Seed of the random weights",
                                doc=f"Seeds the random model's weights (N(0, {RANDOM_STD}²)).")
    input_kind = param.Selector(default="preset", objects={"Repeated random tokens": "preset",
                                                           "My own token ids": "custom"},
                                label="Input", doc="""
        The preset is 16 random tokens, then the same 16 again: the second copy is where an
        induction head shows its stripe. Or type your own token ids.""")
    seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="Seed of the preset tokens",
                         doc="Which 16 random tokens the preset repeats.")
    custom_tokens = param.String(default="", label="Token ids", doc="""
        Your own input: 1 to 32 token ids in 0..63, separated by spaces or commas (press Enter).""")
    layer = param.Selector(default=0, objects=[0, 1], label="Layer", doc="The layer of the main map.")
    head = param.Selector(default=0, objects=[0, 1, 2, 3], label="Head", doc="The head of the main map.")
    query = param.Integer(default=31, bounds=(0, 31), label="Query", doc="""
        The query position whose reading is spelled out under the main map (click a row).""")

    result = param.ClassSelector(class_=HeadsResult, constant=True, precedence=-1, doc="""
        The forward pass for the current model and input (read-only).""")
    metrics = param.List(default=[], item_type=HeadMetrics, constant=True, precedence=-1, doc="""
        One HeadMetrics per (layer, head) of the current model (read-only).""")
    input_error = param.String(default="", constant=True, precedence=-1, doc="""
        Why the custom input was rejected ("" when it is fine).""")

    def __init__(self, **params):
        self.n_forward = 0
        self._cache: OrderedDict[tuple, HeadsResult] = OrderedDict()
        base = trained_model()
        self.vocab_size, self.max_len = base.vocab_size, base.max_len
        chosen = {k: params.pop(k) for k in ("layer", "head", "query") if k in params}
        super().__init__(**params)
        self.param.layer.objects = list(range(base.num_layers))
        self.param.head.objects = list(range(base.num_heads))
        self.param.query.bounds = (0, self.max_len - 1)
        self.refresh()
        start = self._default_selection()
        start.update(chosen)
        self.param.update(**start)

    def _default_selection(self) -> dict:
        """Open on the flagged induction head (else the previous-token head, else L0 H0)."""
        for flag in ("is_induction_head", "is_previous_token_head"):
            for m in self.metrics:
                if getattr(m, flag):
                    return dict(layer=m.layer, head=m.head, query=self._middle_of_second_copy())
        return dict(layer=0, head=0, query=self._middle_of_second_copy())

    def _middle_of_second_copy(self) -> int:
        T = self.result.seq_len
        return min(T - 1, (3 * T) // 4)

    # -- computing -------------------------------------------------------------------------------
    def _tokens(self) -> tuple[int, ...]:
        if self.input_kind == "preset":
            return tuple(preset_induction_input(self.vocab_size, self.max_len, self.seed)[0].tolist())
        return parse_token_ids(self.custom_tokens, self.vocab_size, self.max_len)

    _inputs = ("model", "random_seed", "input_kind", "seed", "custom_tokens")

    def _recompute(self) -> None:
        """Run the model for the current model and input (called by ``refresh()``, latest wins)."""
        if self.input_kind == "custom" and not self.custom_tokens.strip() and self.result is not None:
            self.custom_tokens = " ".join(map(str, self.result.tokens))     # start from what is shown
        try:
            tokens, error = self._tokens(), ""
            period = len(tokens) // 2 if self.input_kind == "preset" else None
        except ValueError as err:                   # keep showing the last valid input
            error = str(err)
            if self.result is not None:
                tokens, period = self.result.tokens, self.result.period
            else:
                tokens = tuple(preset_induction_input(self.vocab_size, self.max_len, self.seed)[0].tolist())
                period = len(tokens) // 2
        seed = self.random_seed if self.model == "random" else None
        result = self._forward(self.model, seed, tokens, period)
        metrics = list(model_metrics(self.model, seed or 0))
        T = result.seq_len
        with param.edit_constant(self):
            self.param.update(result=result, metrics=metrics, input_error=error)
        self.param.query.bounds = (0, T - 1)
        if self.query > T - 1:
            self.query = T - 1

    def _forward(self, model: str, seed: int | None, tokens: tuple[int, ...],
                 period: int | None) -> HeadsResult:
        key = (model, seed, tokens, period)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        net = _model(model, seed or 0)
        idx = torch.tensor(tokens, dtype=torch.long)[None]                    # (1, T)
        with torch.no_grad():
            logits, weights = net(idx, need_weights=True)                    # (1, T, V), L x (1, H, T, T)
        result = HeadsResult(
            model=model, random_seed=seed, tokens=tokens,
            weights=torch.stack([w[0] for w in weights]).numpy().astype(np.float32),   # (L, H, T, T)
            predictions=logits[0].argmax(dim=-1).numpy(),                              # (T,)
            period=period,
        )
        self.n_forward += 1
        self._cache[key] = result
        if len(self._cache) > FORWARD_CACHE:
            self._cache.popitem(last=False)
        return result

    # -- reading -----------------------------------------------------------------------------------
    def head_metrics_of(self, layer: int, head: int) -> HeadMetrics | None:
        """The current model's metrics of one head (None if unknown)."""
        return next((m for m in self.metrics if (m.layer, m.head) == (layer, head)), None)

    def selected_weights(self) -> np.ndarray:
        """``(T, T)`` weights of the selected layer and head."""
        return self.result.weights[self.layer, self.head]
