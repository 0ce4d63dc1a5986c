"""The "Trained heads" tab: the shipped induction model's real heads next to random ones.

``TrainedHeads`` (a ``param.Parameterized`` / ``pn.viewable.Viewer``) holds the knobs: which model
(the trained induction model of ``attention.models`` or the same architecture with random
weights), which input (the preset of 16 random tokens twice, or token ids typed by the user) and
which layer, head and query to look at. It runs the model once per (model, input) change and
caches the result; choosing another layer, head or query reruns nothing (``n_forward`` counts
forward passes). Head metrics are computed once per model and cached for the whole process.

``TrainedHeadsView`` (built by ``pn.panel(th)``, one per browser session or notebook output)
draws a layers x heads overview of small maps (click one to open it in the main map), the main
map with token ids on its axes (click a row to read that query), the head-metrics table and the
explanations. Every figure is drawn once and updated in place (``dashboard.live.LivePlot``).

CSS-class hooks for browser tests:

========================  ======================================================================
``.ap-trained-heads``     the whole tab (``pn.Row``: sidebar + main column)
``.ap-th-model``          model selector (``RadioButtonGroup``: trained / random)
``.ap-th-random-seed``    seed of the random weights (``IntInput``; shown for the random model)
``.ap-th-input``          input selector (``RadioButtonGroup``: preset / custom)
``.ap-th-seed``           seed of the preset tokens (``IntInput``; shown for the preset)
``.ap-th-tokens``         custom token ids (``TextInput``, commits on Enter; shown for custom)
``.ap-th-message``        input message pane; holds ``.ap-th-error`` when the input is invalid
``.ap-th-layer``          layer selector, ``.ap-th-head`` head selector (``RadioButtonGroup``)
``.ap-th-overview``       the grid: ``.ap-th-cell`` figures, also ``.ap-th-cell-<layer>-<head>``;
                          the selected one also has ``.ap-th-selected``
``.ap-th-main``           the main map (title "Layer l · head h ...")
``.ap-th-reading``        what the selected query reads (``[data-query]``, ``[data-top-key]``)
``.ap-th-metrics``        the metrics table (rows ``tr[data-layer][data-head]``, badges
                          ``.ap-th-badge[data-role]``, ``.ap-th-best`` for the flagged heads)
``.ap-th-summary``        the model's next-token predictions on the input
``.ap-th-caveat``         the "weights are not explanations" note
========================  ======================================================================
"""
from __future__ import annotations

import html
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import panel as pn
import param
import torch

from attention.head_metrics import HeadMetrics, head_metrics, preset_induction_input
from attention.models import TinyTransformer, load_induction_model

__all__ = [
    "HeadsResult",
    "RANDOM_STD",
    "TrainedHeads",
    "TrainedHeadsView",
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

class TrainedHeads(pn.viewable.Viewer):
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
        self._refreshing = False
        self._lock = threading.RLock()
        base = trained_model()
        self.vocab_size, self.max_len = base.vocab_size, base.max_len
        chosen = {k: params.pop(k) for k in ("layer", "head", "query") if k in params}
        super().__init__(**params)
        self.param.layer.objects = list(range(base.num_layers))
        self.param.head.objects = list(range(base.num_heads))
        self.param.query.bounds = (0, self.max_len - 1)
        self._refresh()
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

    @param.depends("model", "random_seed", "input_kind", "seed", "custom_tokens", watch=True)
    def _refresh(self) -> None:
        with self._lock:
            if self._refreshing:           # nested trigger (the prefill below): the outer call goes on
                return
            self._refreshing = True
            try:
                self._refresh_locked()
            finally:
                self._refreshing = False

    def _refresh_locked(self) -> None:
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

    def __panel__(self):
        """A new live view each time (Bokeh figures belong to one document / output cell)."""
        return TrainedHeadsView(self).layout


# ------------------------------------------------------------------------------------------------
# the view

CSS = """
:host { --ap-muted: #475569; }
table.ap-th-table { border-collapse: collapse; font-size: 13px; font-family: system-ui, sans-serif; }
.ap-th-table th { text-align: left; color: var(--ap-muted); font-weight: 600; padding: 4px 10px;
                  border-bottom: 2px solid #cbd5e1; }
.ap-th-table td { padding: 3px 10px; border-bottom: 1px solid #e2e8f0; }
td.ap-th-num { position: relative; font-family: ui-monospace, monospace; font-weight: 600;
               text-align: right; min-width: 64px; }
.ap-th-bar { position: absolute; left: 0; top: 3px; bottom: 3px; border-radius: 2px; }
.ap-th-val { position: relative; }
tr.ap-th-selected td { background: #ecfeff; }
tr.ap-th-selected td:first-child { box-shadow: inset 3px 0 0 #0891b2; }
.ap-th-badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 11px;
               font-weight: 700; margin-right: 4px; white-space: nowrap; }
.ap-th-best { background: var(--role); color: white; }
.ap-th-also { border: 1px solid var(--role); color: var(--role); }
.ap-th-error { color: #991b1b; background: #fef2f2; border-left: 3px solid #dc2626;
               padding: 4px 8px; font-size: 13px; font-family: system-ui, sans-serif; }
.ap-th-ok { color: var(--ap-muted); font-size: 12px; font-family: system-ui, sans-serif; }
.ap-th-line { font-size: 13px; font-family: system-ui, sans-serif; line-height: 1.5; }
.ap-th-line b.tok { font-family: ui-monospace, monospace; background: #f1f5f9; padding: 0 4px;
                    border-radius: 3px; }
"""

TEXT = {
    "intro": """
**Real heads, learned here.** A two-layer transformer with four attention heads per layer (built from
this project's `MultiHeadAttention`, causal) trained by `python -m attention.train` in about two minutes
on this machine, on random token sequences that repeat with a random period. Nothing in the data
says *where* to look: to predict the repeated part the model has to find the earlier copy. Its heads
show how it does that. Switch to **random weights** to see the same architecture before training
has given its heads a job.
""",
    "overview": """
### Every head at a glance
Layers top to bottom, heads left to right. In each map **row i** is query i, **column j** is key j,
and the colour is the share of query i's attention on key j (each row sums to 1; causal, so the
upper-right triangle is empty). **Click a map** to open it below.
""",
    "kinds": """
### Two kinds of head
**Previous-token head:** every position looks at the one just before it: a bright line right
below the diagonal. It reads nothing clever, but it copies into each position *which token came
before me*, a fact a later layer can search for.

**Induction head:** at a token that appeared before, it looks at the token that *followed* the
earlier occurrence. On the preset input (16 tokens, then the same 16 again) that is a stripe
{offset} positions below the diagonal in the second half. It can only find that position because a
previous-token head in the layer below marked every position with its predecessor. Together they
implement *"copy what came after last time"*, and that is how the model predicts the repeated half.
""",
    "main": """
### One head up close
Token ids on both axes. **Click a row** to spell out what that query reads.
""",
    "metrics": """
### Head metrics
Measured on 256 fresh sequences of 16 random tokens twice (seed 1234), not on the input shown.
**previous-token**: mean weight on the position just before. **induction**: in the second copy, mean
weight on the token after the previous occurrence. **entropy**: how spread out each row is, in
nats (0 = all weight on one key). The best head of each kind scoring at least 0.5 gets a solid
badge; other heads above 0.5 an outlined one: several heads can learn the same job.
""",
    "random": """
**Random weights:** the same architecture with every weight matrix drawn from N(0, {std}²). Its heads
still attend, sharply but arbitrarily: their patterns follow whatever the random projections
happen to match, not the repeat, and no head scores as a previous-token or induction head.
(Training starts from much smaller weights, where every head spreads its attention almost evenly.)
""",
    "caveat": """
**Weights are not explanations.** A map says where a head *reads from*, not what the model does
with what it read: the values, the other heads and the read-out matter as much. Here the story is
checked separately (the model's predictions, the metrics on fresh data), which a clean-looking
stripe alone would not prove.
""",
}

WIDGETS = {
    "model": (pn.widgets.RadioButtonGroup, dict(color="primary", variant="outline",
                                                 css_classes=["ap-th-model"], orientation="vertical")),
    "random_seed": (pn.widgets.IntInput, dict(css_classes=["ap-th-random-seed"])),
    "input_kind": (pn.widgets.RadioButtonGroup, dict(color="primary", variant="outline",
                                                      css_classes=["ap-th-input"], orientation="vertical")),
    "seed": (pn.widgets.IntInput, dict(css_classes=["ap-th-seed"])),
    "custom_tokens": (pn.widgets.TextInput, dict(css_classes=["ap-th-tokens"],
                                                 placeholder="e.g. 5 9 2 7 5 9 2, then Enter")),
    "layer": (pn.widgets.RadioButtonGroup, dict(color="primary", variant="outline",
                                                 css_classes=["ap-th-layer"])),
    "head": (pn.widgets.RadioButtonGroup, dict(color="primary", variant="outline",
                                                css_classes=["ap-th-head"])),
}

_OUTLINE = {True: dict(outline_line_color="#0891b2", outline_line_width=4, outline_line_alpha=1.0),
            False: dict(outline_line_color="#e5e5e5", outline_line_width=1, outline_line_alpha=1.0)}


def _clamp(value: float | None, n: int) -> int | None:
    """Nearest index in ``0..n-1`` of a tap coordinate (``None`` outside any figure)."""
    if value is None:
        return None
    return int(min(max(round(value), 0), n - 1))


def _md(key: str, **fmt) -> pn.pane.Markdown:
    return pn.pane.Markdown(TEXT[key].strip().format(**fmt), css_classes=[f"ap-th-text-{key}"],
                            max_width=900, sizing_mode="stretch_width")


def _figure_pane(figure, *classes: str) -> pn.pane.Bokeh:
    """A pane for a live figure; classes and ``flex: none`` on the figure itself (see view.py)."""
    figure.css_classes = [*figure.css_classes, *classes]
    figure.styles = {**figure.styles, "flex": "none"}
    return pn.pane.Bokeh(figure, margin=(0, 4), styles={"flex": "none"})


class TrainedHeadsView:
    """Widgets and live figures for one ``TrainedHeads`` (one per browser session).

    Attributes:
        layout: the Panel component to show.
        cells: ``{(layer, head): LivePlot}`` of the overview; ``main_plot``: the main map.
    """

    def __init__(self, th: TrainedHeads):
        from . import heads_plots as hp          # HoloViews / Bokeh load only when displayed
        from .live import LivePlot

        self.th, self._hp, self._lock = th, hp, threading.RLock()
        self._LivePlot = LivePlot
        self.widgets = {name: kind.from_param(th.param[name], **kw) for name, (kind, kw) in WIDGETS.items()}
        self.cells: dict[tuple[int, int], LivePlot] = {}
        self.main_plot: LivePlot | None = None
        # The figures are drawn when first rendered (see ``build_figures``); the rest is built now
        # so that the served template styles it like the other tabs.
        self.overview = pn.param.ParamFunction(lambda: self._overview_component(), lazy=True,
                                               loading_indicator=False)
        self.main_pane = pn.param.ParamFunction(lambda: self._main_component(), lazy=True,
                                                loading_indicator=False)
        self.reading = pn.pane.HTML(self._reading_html(), css_classes=["ap-th-reading"],
                                    stylesheets=[CSS], width=330)
        self.table = pn.pane.HTML(self._table_html(), css_classes=["ap-th-metrics"], stylesheets=[CSS])
        self.summary = pn.pane.HTML(self._summary_html(), css_classes=["ap-th-summary"],
                                    stylesheets=[CSS], sizing_mode="stretch_width")
        self.message = pn.pane.HTML(self._message_html(), css_classes=["ap-th-message"],
                                    stylesheets=[CSS], sizing_mode="stretch_width")
        self.random_note = _md("random", std=RANDOM_STD)
        self._show_widgets()
        self.layout = self._assemble()
        th.param.watch(self._on_change, ["result", "metrics", "layer", "head", "query", "input_error",
                                         "model", "input_kind"])

    # -- figures (drawn once, on first render) -----------------------------------------------------
    def build_figures(self) -> None:
        """Draw the overview maps and the main map (about 1 s); later calls do nothing.

        Rendering the layout calls this; so a visitor who never opens the tab never pays for it.
        """
        with self._lock:
            if self.main_plot is not None:
                return
            r = self.th.result
            for l in range(r.num_layers):
                for h in range(r.num_heads):
                    live = self._LivePlot(self._cell_frame(l, h))
                    live.figure.on_event("tap", lambda event, l=l, h=h: self._on_tap_cell(l, h))
                    self.cells[l, h] = live
            self.main_plot = self._LivePlot(self._main_frame())
            self.main_plot.figure.on_event("tap", self._on_tap_main)
            self._show_selection()

    def _overview_component(self) -> pn.viewable.Viewable:
        self.build_figures()
        r = self.th.result
        rows = []
        for l in range(r.num_layers):
            label = pn.pane.HTML(f"<div class='ap-th-ok' style='writing-mode:vertical-rl;"
                                 f"transform:rotate(180deg);font-weight:600'>layer {l}</div>",
                                 width=24, stylesheets=[CSS], margin=(40, 0, 0, 0))
            rows.append(pn.Row(label, *[_figure_pane(self.cells[l, h].figure, "ap-th-cell",
                                                     f"ap-th-cell-{l}-{h}")
                                        for h in range(r.num_heads)], margin=0))
        return pn.Column(*rows, css_classes=["ap-th-overview"], margin=0)

    def _main_component(self) -> pn.viewable.Viewable:
        self.build_figures()
        return _figure_pane(self.main_plot.figure, "ap-th-main")

    # -- frames ------------------------------------------------------------------------------------
    def _cell_frame(self, l: int, h: int):
        m = self.th.head_metrics_of(l, h)
        return self._hp.cell_frame(self.th.result.weights[l, h], l, h, self._hp.head_role(m))

    def _main_frame(self):
        from .plots import with_marker
        th = self.th
        frame = self._hp.main_frame(th.selected_weights(), th.result.tokens, th.layer, th.head,
                                    th.head_metrics_of(th.layer, th.head))
        return with_marker(frame, min(th.query, th.result.seq_len - 1))

    def _table_html(self) -> str:
        return self._hp.metrics_table_html(self.th.metrics, selected=(self.th.layer, self.th.head))

    @staticmethod
    def _tok(token: int) -> str:
        return f"<b class='tok'>{token}</b>"

    def _reading_html(self) -> str:
        th = self.th
        q = min(th.query, th.result.seq_len - 1)
        rd = query_reading(th.result, th.layer, th.head, q)
        why = {
            "previous": "the position just before it (previous-token pattern).",
            "after-previous-occurrence": (f"the token that followed the earlier {self._tok(rd['token'])} "
                                          f"at position {rd['occurrence']} (induction pattern)."),
            "self": "itself.",
            "": "a position with no simple relation to it.",
        }[rd["relation"]]
        nxt = th.result.tokens[q + 1] if q + 1 < th.result.seq_len else None
        verdict = ("" if nxt is None else
                   " ✓ correct" if rd["prediction"] == nxt else f" (the input has {self._tok(nxt)})")
        return (f"<div class='ap-th-line' data-query='{q}' data-top-key='{rd['key']}' "
                f"data-relation='{rd['relation']}'>"
                f"<b>Query {q}</b> holds token {self._tok(rd['token'])}. Layer {th.layer} head {th.head} puts "
                f"<b>{rd['weight']:.2f}</b> of its attention on key {rd['key']} (token "
                f"{self._tok(rd['key_token'])}): {why}<br>The model's next token after position {q}: "
                f"{self._tok(rd['prediction'])}{verdict}</div>")

    def _summary_html(self) -> str:
        r = self.th.result
        T = r.seq_len
        hits = r.predictions[:-1] == np.asarray(r.tokens[1:])               # (T-1,) query i -> token i+1
        name = "trained model" if r.model == "trained" else "random model"
        if r.period is not None and T >= 4:
            p = r.period
            first, second = hits[:p - 1], hits[p:]
            text = (f"The {name} predicts the next token right at <b>{int(second.sum())} of "
                    f"{len(second)}</b> positions of the second copy, and at {int(first.sum())} of "
                    f"{len(first)} in the first (new random tokens: chance is 1 in {self.th.vocab_size}).")
        elif T > 1:
            text = (f"The {name} predicts the next token right at {int(hits.sum())} of {T - 1} positions "
                    f"of your input; after the last one it predicts "
                    f"<b class='tok'>{int(r.predictions[-1])}</b>.")
        else:
            text = f"After your one token the {name} predicts <b class='tok'>{int(r.predictions[-1])}</b>."
        return f"<div class='ap-th-line'>{text}</div>"

    def _message_html(self) -> str:
        th = self.th
        if th.input_error:
            return (f"<div class='ap-th-error' role='alert'>{html.escape(th.input_error)} "
                    f"Showing the last valid input.</div>")
        if th.input_kind == "custom":
            return (f"<div class='ap-th-ok'>{th.result.seq_len} tokens. Repeat a few to see the "
                    f"induction head at work, e.g. <code>5 9 2 7 5 9 2</code>.</div>")
        return ""

    # -- updates -----------------------------------------------------------------------------------
    def _on_change(self, *events) -> None:
        from .live import hold_documents

        with self._lock, hold_documents(self.table):
            self._update({e.name for e in events})

    def _update(self, changed: set[str]) -> None:
        drawn = self.main_plot is not None          # else the figures start from the current state
        if changed & {"result", "metrics"}:
            for (l, h), live in self.cells.items():
                live.update(self._cell_frame(l, h))
            self.summary.object = self._summary_html()
        if changed & {"result", "metrics", "layer", "head", "query"}:
            if drawn:
                self.main_plot.update(self._main_frame())
            self.reading.object = self._reading_html()
        if changed & {"metrics", "layer", "head"}:
            self.table.object = self._table_html()
        if changed & {"layer", "head"}:
            self._show_selection()
        if changed & {"input_error", "input_kind", "result"}:
            self.message.object = self._message_html()
        if changed & {"model", "input_kind"}:
            self._show_widgets()

    def _show_selection(self) -> None:
        """Outline the selected overview map (and give it the class ``ap-th-selected``)."""
        chosen = (self.th.layer, self.th.head)
        for key, live in self.cells.items():
            fig, on = live.figure, key == chosen
            fig.update(**{k: v for k, v in _OUTLINE[on].items() if getattr(fig, k) != v})
            classes = [c for c in fig.css_classes if c != "ap-th-selected"] + (["ap-th-selected"] if on else [])
            if classes != list(fig.css_classes):
                fig.css_classes = classes

    def _show_widgets(self) -> None:
        th, w = self.th, self.widgets
        w["random_seed"].visible = th.model == "random"
        w["seed"].visible = th.input_kind == "preset"
        w["custom_tokens"].visible = th.input_kind == "custom"
        self.random_note.visible = th.model == "random"

    def _on_tap_cell(self, layer: int, head: int) -> None:
        self.th.param.update(layer=layer, head=head)

    def _on_tap_main(self, event) -> None:
        q = _clamp(event.y, self.th.result.seq_len)
        if q is not None:
            self.th.query = q

    # -- layout ------------------------------------------------------------------------------------
    def _assemble(self) -> pn.viewable.Viewable:
        w = self.widgets
        label = lambda text: pn.pane.Markdown(f"**{text}**", margin=(8, 10, -6, 10))  # noqa: E731
        sidebar = pn.Column(
            pn.pane.Markdown("#### Controls", margin=(0, 10)),
            label("Model"), w["model"], w["random_seed"],
            label("Input"), w["input_kind"], w["seed"], w["custom_tokens"], self.message,
            label("Main map"), pn.Row(pn.pane.Markdown("layer", width=45, margin=(12, 0, 0, 10)), w["layer"]),
            pn.Row(pn.pane.Markdown("head", width=45, margin=(12, 0, 0, 10)), w["head"]),
            pn.pane.Markdown(TEXT["caveat"].strip(), css_classes=["ap-th-caveat"],
                             styles={"background": "#fff7ed", "border-left": "3px solid #f97316",
                                     "padding": "0 8px", "font-size": "12px"}),
            width=310, css_classes=["ap-th-sidebar"],
        )
        section = dict(sizing_mode="stretch_width", styles={"border-top": "1px solid #e2e8f0"})
        period = self.th.max_len // 2
        overview = pn.Column(_md("overview"), self.random_note, self.summary,
                             pn.Row(self.overview, pn.Column(_md("kinds", offset=period - 1), width=420),
                                    styles={"flex-wrap": "wrap"}, sizing_mode="stretch_width"),
                             **section)
        main = pn.Column(_md("main"), pn.Row(self.main_pane, self.reading, styles={"flex-wrap": "wrap"},
                                             sizing_mode="stretch_width"), **section)
        metrics = pn.Column(_md("metrics"), self.table, **section)
        body = pn.Column(_md("intro"), overview, main, metrics, sizing_mode="stretch_width",
                         css_classes=["ap-th-body"])
        return pn.Row(sidebar, body, sizing_mode="stretch_width", css_classes=["ap-trained-heads"],
                      name="Trained heads")
