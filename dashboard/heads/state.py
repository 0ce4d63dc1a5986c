"""The "Model heads" tab's state: which model, which input, which head; one cached forward pass.

``HeadsState`` holds the knobs: which model (the trained induction model of ``attention.models``,
the same architecture with random weights, the pretrained all-MiniLM-L6-v2 through
``attention.hf``, or a Hugging Face model directory the server was started with), which input (for
the tiny models the preset of 16 random tokens twice or token ids typed by the user; for Hugging
Face models your own text, tokenized by the model's tokenizer) and which layer, head and query to
look at (or the mean over a layer's heads). It runs the model once per (model, input) change and
caches the result; choosing another layer, head or query reruns nothing (``n_forward`` counts
forward passes). Models and their head metrics are loaded / computed once per process and shared
by every session. Headless: ``dashboard.heads.ModelHeads`` is the displayable version.

Long texts (issue 12): a Hugging Face model reads up to its own position limit
(``max_position_embeddings`` / ``n_positions``), at most ``MAX_LONG_TOKENS`` (4096) on the CPU and
``MAX_LONG_TOKENS_CUDA`` (16384) when the model sits on a CUDA device, where its attention can be
captured (``attention.hf.capture_attention``: plain softmax attention through transformers'
attention interface; else ``MAX_TEXT_TOKENS``, 256). A longer text is cut and the message says
where and why. Above ``FULL_WEIGHTS_CELLS`` weights in all (``L * H * T * T``, 2**22 = 16 MiB of
float32) the result never holds the ``(L, H, T, T)`` weights: it holds each layer's captured
``q``, ``k`` and the overview mosaic max-pooled tile by tile, and computes on demand, exactly, the
selected head's (or layer mean's) map pooled to ``MAIN_PIXELS``, a query's row in every head and a
zoom window (``HeadsResult.row`` / ``head_map`` / ``window`` / ``weight``).
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import param
import torch

from attention.head_metrics import (HeadMetrics, HeadRoles, head_metrics, head_roles_table,
                                    preset_induction_input, role_scores)
from attention.hf import (MINILM_INSTALL, MINILM_NAMES, CapturedAttention, can_capture, capture_attention,
                          head_roles, induction_probe_ids, load_pretrained, max_positions, minilm_available,
                          trace_attention)
from attention.longcontext import PooledMaps
from attention.models import TinyTransformer, load_induction_model

from ..common.recompute import Recomputing

__all__ = [
    "DEFAULT_TEXT",
    "FULL_WEIGHTS_CELLS",
    "HeadsResult",
    "HeadsState",
    "MAIN_PIXELS",
    "MAX_LONG_TOKENS",
    "MAX_LONG_TOKENS_CUDA",
    "MAX_TEXT_TOKENS",
    "capture_support",
    "cell_px",
    "RANDOM_STD",
    "hf_metrics",
    "hf_model",
    "hf_name",
    "hf_ready",
    "is_hf",
    "model_choices",
    "model_metrics",
    "parse_token_ids",
    "preload_hf",
    "query_reading",
    "random_model",
    "text_limit",
    "trained_model",
]

RANDOM_STD = 0.25          # std of the random model's weights (see TEXT["random"])
FORWARD_CACHE = 16         # forward passes kept per HeadsState
LONG_CACHE = 2             # ... of which long texts (each holds its q, k, overview and cached maps)
MAX_TEXT_TOKENS = 256      # longest text for a Hugging Face model whose attention cannot be captured
MAX_LONG_TOKENS = 4096     # longest text otherwise, on the CPU (and the model's own position limit)
MAX_LONG_TOKENS_CUDA = 16384   # ... when the model sits on a CUDA device
FULL_WEIGHTS_CELLS = 2**22     # L*H*T*T up to which a result holds every layer's full weights
MAIN_PIXELS = 512          # the most pixels a side of the main map of a long result
ROW_CACHE = 8              # exact query rows / main maps kept per long result
DEFAULT_TEXT = "The cat sat on the mat because it was tired, and the dog sat on the rug."
MINILM = "minilm"          # the model key of all-MiniLM-L6-v2; served models are "hf:<path>"

log = logging.getLogger(__name__)


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


# -- Hugging Face models (all-MiniLM-L6-v2 and the served ones) ------------------------------------
def is_hf(kind: str) -> bool:
    """Whether a model key names a Hugging Face model (``"minilm"`` or ``"hf:<path>"``)."""
    return kind == MINILM or kind.startswith("hf:")


def hf_name(kind: str) -> str:
    """What ``attention.hf.load_pretrained`` gets for a model key."""
    return MINILM_NAMES[0] if kind == MINILM else kind[3:]


def model_choices(served: tuple[str, ...] = ()) -> dict[str, str]:
    """The model picker's ``{label: key}``: the tiny models, MiniLM (labelled "not installed" where
    its package is missing) and one entry per served model directory."""
    choices = {"Trained induction model": "trained", "Random weights": "random"}
    choices["all-MiniLM-L6-v2 (pretrained)" if minilm_available() else
            "all-MiniLM-L6-v2 (not installed)"] = MINILM
    for path in served:
        label = os.path.basename(os.path.normpath(path)) or path
        while label in choices:
            label += "'"
        choices[label] = f"hf:{path}"
    return choices


# One load at a time: two sessions (or a session and the preload) asking at once load it once.
# Re-entrant, as hf_metrics holds it while it calls hf_model.
_HF_LOCK = threading.RLock()
_READY: set[str] = set()                          # names whose model and head roles are loaded
_PRELOADS: dict[str, threading.Thread] = {}
_PRELOADS_LOCK = threading.Lock()                # never held while loading (the event loop takes it)
PRELOAD_SECONDS: dict[str, float] = {}
"""Wall seconds each finished preload took (model name -> seconds), for benchmarks and the log."""


@lru_cache(maxsize=4)
def _hf_loaded(name: str):
    return load_pretrained(name)


def hf_model(name: str):
    """``(model, tokenizer)`` from ``attention.hf.load_pretrained``, loaded once per process.

    Raises what ``load_pretrained`` raises (``ModelNotAvailable``, ``ValueError``); failures are not
    cached.
    """
    with _HF_LOCK:
        return _hf_loaded(name)


@lru_cache(maxsize=4)
def _hf_roles(name: str) -> tuple[HeadRoles, ...]:
    model, tokenizer = hf_model(name)
    if tokenizer is not None:
        return tuple(head_roles(model, tokenizer))
    probe = trace_attention(model, None, induction_probe_ids(model, None))
    return tuple(head_roles_table(role_scores([w[None] for w in probe.weights], probe.token_ids)))


def hf_metrics(name: str) -> tuple[HeadRoles, ...]:
    """Role scores of every head of a Hugging Face model (``attention.hf.head_roles``: plain
    sentences plus an induction probe); without a tokenizer, all roles on the probe alone.
    Computed once per process (and model)."""
    with _HF_LOCK:
        roles = _hf_roles(name)
        _READY.add(name)
        return roles


def hf_ready(name: str) -> bool:
    """Whether ``name``'s model and head roles are already loaded in this process (a pick then only
    runs the model on the text)."""
    return name in _READY


def preload_hf(name: str = MINILM_NAMES[0]) -> threading.Thread | None:
    """Start loading a model and its head roles in a background thread, once per process.

    The "Model heads" tab calls it for all-MiniLM-L6-v2 when it is first shown in a served session:
    importing transformers and reading the weights take seconds of CPU (issue 11: the first pick
    must not wait for all of them). A pick made while the preload runs waits for it (the load lock)
    instead of loading a second time. Failures are left to the pick, which says what is missing.

    Returns:
        the preload thread (the one already started, if any), or ``None`` when ``name`` is
        MiniLM and its package is not installed, or the model is already loaded.
    """
    if hf_ready(name) or (name in MINILM_NAMES and not minilm_available()):
        return None
    with _PRELOADS_LOCK:
        thread = _PRELOADS.get(name)
        if thread is None:
            thread = threading.Thread(target=_preload, args=(name,), daemon=True,
                                      name=f"preload {os.path.basename(name)}")
            _PRELOADS[name] = thread
            thread.start()
    return thread


def _preload(name: str) -> None:
    _lower_this_threads_priority()
    t0 = time.perf_counter()
    try:
        hf_metrics(name)
    except Exception as err:               # noqa: BLE001  (the pick reports it to the user)
        log.info("preloading %s failed (%s); a pick will say why", name, err)
        return
    PRELOAD_SECONDS[name] = time.perf_counter() - t0
    log.info("preloaded %s in %.1f s", name, PRELOAD_SECONDS[name])


def _lower_this_threads_priority(nice: int = 10) -> None:
    """Make the calling thread yield the cores to the sessions' own work (Linux schedules threads
    as tasks, so ``setpriority`` on the thread's id lowers this thread alone). A preload is
    seconds of CPU that nobody is waiting for yet; a page being built is. Elsewhere, a no-op."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):      # not Linux / not permitted: run at normal priority
        pass


def cell_px(num_heads: int) -> int:
    """Pixels a side of one overview map: 128 for the 4 heads of the tiny models, 64 for 12."""
    return max(48, min(128, 768 // max(1, num_heads)))


@lru_cache(maxsize=8)
def _capture_support(name: str) -> str:
    model, _ = hf_model(name)
    return can_capture(model)


def capture_support(name: str) -> str:
    """``""`` when the long-context path works for the Hugging Face model ``name``
    (``attention.hf.can_capture``: probed once per process on 4 tokens), else why not."""
    with _HF_LOCK:
        return _capture_support(name)


def text_limit(name: str, model) -> tuple[int, str]:
    """The longest text (in tokens) shown for a Hugging Face model, and why that many.

    The model's own position limit (``attention.hf.max_positions``), capped at ``MAX_LONG_TOKENS``
    on the CPU or ``MAX_LONG_TOKENS_CUDA`` when the model's weights sit on a CUDA device, or at
    ``MAX_TEXT_TOKENS`` when its attention cannot be captured (``capture_support``).
    """
    positions = max_positions(model)
    why_not = capture_support(name)
    if why_not:
        cap, because = MAX_TEXT_TOKENS, f"the most shown for a model whose attention cannot be captured: {why_not}"
    elif next(model.parameters()).device.type == "cuda":
        cap, because = MAX_LONG_TOKENS_CUDA, f"the most shown on a GPU"
    else:
        cap, because = MAX_LONG_TOKENS, f"the most shown on the CPU ({MAX_LONG_TOKENS_CUDA} on a GPU)"
    if positions is not None and positions <= cap:
        return positions, f"the model's position limit: its config allows {positions} positions"
    return cap, because


def _not_available(kind: str, err: Exception) -> str:
    if kind == MINILM:
        return f"all-MiniLM-L6-v2 cannot be loaded: {err}. Then reload the page."
    return f"Cannot load {hf_name(kind)}: {err}"


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
        model: the model key (``"trained"``, ``"random"``, ``"minilm"``, ``"hf:<path>"``);
            ``random_seed``: the random weights' seed (or None).
        tokens: the ``T`` input token ids.
        weights: ``(L, H, T, T)`` float32 attention weights, ``weights[l, h, q, k]``; ``None`` for a
            long text (``long``): use ``row``, ``head_map``, ``window``, ``weight``, ``overview``.
        predictions: ``(T,)`` the model's most likely next token after each position (tiny models;
            None for Hugging Face models, which are loaded without their LM head).
        period: the repeat period of the preset input (``T // 2``), None otherwise.
        labels: the ``T`` tokens as text (the tokenizer's spelling: ``'[CLS]'``, ``'##ing'``; the
            id in decimal for the tiny models). Default: the ids.
        model_name: the model as shown to people. is_causal: its attention is causal.
        captured: a long text's ``attention.hf.CapturedAttention`` (each layer's ``q``, ``k``);
            None when ``weights`` are held.
        pooled: a long text's overview maps ``(L, H, side, side)``, every map max-pooled by
            ``pool_factor`` (``side = ceil(T / pool_factor)``); None when ``weights`` are held.
        token_limit, limit_reason: the longest text this model is shown on and why (Hugging Face
            models; 0 and "" for the tiny ones).
    """

    model: str
    random_seed: int | None
    tokens: tuple[int, ...]
    weights: np.ndarray | None
    predictions: np.ndarray | None
    period: int | None
    labels: tuple[str, ...] = ()
    model_name: str = ""
    is_causal: bool = True
    captured: CapturedAttention | None = field(default=None, repr=False)
    pooled: np.ndarray | None = field(default=None, repr=False)
    pool_factor: int = 1
    token_limit: int = 0
    limit_reason: str = ""
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)

    def __post_init__(self):
        if not self.labels:
            object.__setattr__(self, "labels", tuple(str(t) for t in self.tokens))
        if (self.weights is None) == (self.captured is None):
            raise ValueError("expected either weights (L, H, T, T) or captured attention, not "
                             f"{'both' if self.weights is not None else 'neither'}")

    @property
    def seq_len(self) -> int:
        return len(self.tokens)

    @property
    def num_layers(self) -> int:
        return self.weights.shape[0] if self.weights is not None else self.captured.num_layers

    @property
    def num_heads(self) -> int:
        return self.weights.shape[1] if self.weights is not None else self.captured.num_heads

    @property
    def long(self) -> bool:
        """``True`` when the full weights are not held (a long text: ``weights is None``)."""
        return self.weights is None

    # -- what the views read (exact; computed on demand for a long text) -------------------------
    def _index(self, name: str, value: object, n: int, allow_none: bool = False) -> int | None:
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < n:
            raise ValueError(f"expected {name} in 0..{n - 1}{' or None' if allow_none else ''} but found "
                             f"{name}={value!r}")
        return int(value)

    def _cached(self, key: tuple, compute):
        hit = self._cache.get(key)
        if hit is None:
            hit = compute()
            self._cache[key] = hit
            if len(self._cache) > ROW_CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return hit

    def row(self, layer: int, query: int) -> np.ndarray:
        """``(H, T)`` float32: query ``query``'s exact weights over every key in every head of
        ``layer`` (one row computation for a long text, cached)."""
        l = self._index("layer", layer, self.num_layers)
        i = self._index("query", query, self.seq_len)
        if self.weights is not None:
            return self.weights[l, :, i]
        return self._cached(("row", l, i), lambda: self.captured.row(l, i).numpy())

    def head_map(self, layer: int, head: int | None, pixels: int | None = None) -> PooledMaps:
        """One head's map (``head=None``: the mean of the layer's heads), max-pooled to at most
        ``pixels`` (default ``MAIN_PIXELS``) a side for a long text (``maps (1, R, R)``; exact,
        ``factor == 1``, otherwise)."""
        pixels = MAIN_PIXELS if pixels is None else pixels
        l = self._index("layer", layer, self.num_layers)
        h = self._index("head", head, self.num_heads, allow_none=True)
        T = self.seq_len
        if self.weights is not None:
            w = self.weights[l].mean(axis=0) if h is None else self.weights[l, h]     # (T, T)
            return PooledMaps(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))[None], 1,
                              (0, T), (0, T), "max", float(np.triu(w, 1).max(initial=0.0)))
        return self._cached(("map", l, h, pixels),
                            lambda: self.captured.pooled(l, pixels, head=h, mean_heads=h is None))

    def window(self, layer: int, head: int | None, q_range: tuple[int, int], k_range: tuple[int, int],
               pixels: int | None = None) -> PooledMaps:
        """Queries ``q0:q1`` x keys ``k0:k1`` of one head (or the layer's mean), exact when the
        window fits ``pixels`` (default ``MAIN_PIXELS``) a side, else max-pooled (``maps (1, R, C)``)."""
        pixels = MAIN_PIXELS if pixels is None else pixels
        l = self._index("layer", layer, self.num_layers)
        h = self._index("head", head, self.num_heads, allow_none=True)
        if self.weights is not None:
            T = self.seq_len
            for name, rng in (("q_range", q_range), ("k_range", k_range)):
                if (not isinstance(rng, (tuple, list)) or len(rng) != 2 or
                        any(isinstance(v, bool) or not isinstance(v, int) for v in rng) or
                        not 0 <= rng[0] < rng[1] <= T):
                    raise ValueError(f"expected {name} = (start, stop) with 0 <= start < stop <= T = {T} "
                                     f"but found {name}={rng!r}")
            (q0, q1), (k0, k1) = q_range, k_range
            full = self.head_map(l, h)
            return PooledMaps(full.maps[:, q0:q1, k0:k1], 1, (q0, q1), (k0, k1), "max",
                              full.max_future_weight)
        return self.captured.window(l, q_range, k_range, pixels, head=h, mean_heads=h is None)

    def weight(self, layer: int, head: int, query: int, key: int) -> float:
        """The exact weight of ``query`` on ``key`` in one head."""
        l = self._index("layer", layer, self.num_layers)
        h = self._index("head", head, self.num_heads)
        i = self._index("query", query, self.seq_len)
        j = self._index("key", key, self.seq_len)
        if self.weights is not None:
            return float(self.weights[l, h, i, j])
        return self.captured.weight(l, h, i, j)


def query_reading(result: HeadsResult, layer: int, head: int, query: int,
                  row: np.ndarray | None = None) -> dict:
    """What one query of one head reads: its strongest key and how that key relates to the query.

    Args:
        row: the ``(T,)`` weights to read (e.g. the mean over a layer's heads). Default: the head's.

    Returns a dict with ``query``, ``token`` (id), ``label``, ``key`` (the strongest key),
    ``key_token``, ``key_label``, ``weight``, ``relation`` (``"after-previous-occurrence"``: the
    position after the last earlier occurrence of the query's token; ``"previous"``, ``"next"``,
    ``"self"``; ``"first"``: position 0, a [CLS] / first-token sink; ``"last"``: the last position, a
    [SEP] / end sink; or ``""``), ``occurrence`` (that earlier position or None) and ``prediction``
    (the model's next token, None for Hugging Face models).
    """
    tokens, T = result.tokens, result.seq_len
    if row is None:
        row = result.row(layer, query)[head]                        # (T,), exact at any T
    key = int(np.argmax(row))
    earlier = [j for j in range(query) if tokens[j] == tokens[query]]
    occurrence = earlier[-1] if earlier else None
    if occurrence is not None and key == occurrence + 1 and key != query:
        relation = "after-previous-occurrence"
    elif key == query - 1:
        relation = "previous"
    elif key == query + 1:
        relation = "next"
    elif key == query:
        relation = "self"
    elif key == 0:
        relation = "first"
    elif key == T - 1:
        relation = "last"
    else:
        relation = ""
    return dict(query=query, token=tokens[query], label=result.labels[query], key=key,
                key_token=tokens[key], key_label=result.labels[key], weight=float(row[key]),
                relation=relation, occurrence=occurrence,
                prediction=None if result.predictions is None else int(result.predictions[query]))


# ------------------------------------------------------------------------------------------------
# the state

class HeadsState(Recomputing):
    """Real attention heads: a model (tiny trained / random, MiniLM, served) on one input.

    The forward pass runs once per change of ``model``, ``random_seed`` or the input, and is
    cached; ``layer``, ``head``, ``query`` and ``aggregate`` only choose what to show. An invalid
    input sets ``input_error`` (a sentence) and a model that cannot be loaded ``model_error``; both
    keep the last valid result.

    Args:
        served: Hugging Face model directories to offer next to the built-in models (the app's
            ``--hf PATH`` arguments). Default: none.
    """

    model = param.Selector(default="trained", objects={"Trained induction model": "trained",
                                                       "Random weights": "random"},
                           label="Model", doc="""
        The model whose heads are shown: the 2-layer transformer trained by
        `python -m attention.train`, the same architecture with random weights, the pretrained
        all-MiniLM-L6-v2 (6 layers x 12 heads) or a model the server was started with.""")
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
    text = param.String(default=DEFAULT_TEXT, label="Text", doc=f"""
        Your own text for a Hugging Face model, tokenized by its tokenizer (special tokens such as
        [CLS] and [SEP] included; press Enter). Up to the model's own position limit, at most
        {MAX_LONG_TOKENS} tokens on the CPU ({MAX_LONG_TOKENS_CUDA} on a GPU; {MAX_TEXT_TOKENS} where
        the model's attention cannot be captured): a longer text is cut, and the message says
        where and why.""")
    layer = param.Selector(default=0, objects=[0, 1], label="Layer", doc="The layer of the main map.")
    head = param.Selector(default=0, objects=[0, 1, 2, 3], label="Head", doc="The head of the main map.")
    aggregate = param.Boolean(default=False, label="Mean over the layer's heads", doc="""
        Show the mean of the selected layer's heads in the main map instead of one head (as
        BertViz's model view offers).""")
    query = param.Integer(default=31, bounds=(0, 31), label="Query", doc="""
        The query position whose reading is spelled out under the main map (click a row).""")

    result = param.ClassSelector(class_=HeadsResult, constant=True, precedence=-1, doc="""
        The forward pass for the current model and input (read-only).""")
    metrics = param.List(default=[], item_type=(HeadMetrics, HeadRoles), constant=True, precedence=-1,
                         doc="""
        One HeadMetrics (tiny models) or HeadRoles (Hugging Face models) per (layer, head) of the
        model shown (read-only).""")
    input_error = param.String(default="", constant=True, precedence=-1, doc="""
        Why the input was rejected ("" when it is fine).""")
    input_note = param.String(default="", constant=True, precedence=-1, doc="""
        What was done to the input shown ("" when nothing was), e.g. a text cut to the model's
        token limit: how long it was, how much is shown and why.""")
    model_error = param.String(default="", constant=True, precedence=-1, doc="""
        Why the chosen model cannot be shown ("" when it is fine), e.g. how to install MiniLM.""")
    loading = param.String(default="", constant=True, precedence=-1, doc="""
        What is being loaded for the chosen model right now ("" when nothing is), e.g. MiniLM's
        first load in this process (transformers' import and the weights).""")

    def __init__(self, served: tuple[str, ...] | list[str] = (), **params):
        self.n_forward = 0
        self.preload_on_show = False
        self._cache: OrderedDict[tuple, HeadsResult] = OrderedDict()
        self.served = tuple(str(p) for p in served)
        base = trained_model()
        self.vocab_size, self.max_len = base.vocab_size, base.max_len
        chosen = {k: params.pop(k) for k in ("layer", "head", "query") if k in params}
        model = params.pop("model", None)
        super().__init__(**params)
        self.param.model.objects = model_choices(self.served)
        if model is not None:
            with param.parameterized.discard_events(self):
                self.model = model
        self.refresh()
        start = self._default_selection(self.result, self.metrics)
        start.update(chosen)
        self.param.update(**start)

    @staticmethod
    def _default_selection(r: HeadsResult, metrics) -> dict:
        """Open on the flagged induction head (else the previous-token head, else L0 H0) in the
        second copy; on a Hugging Face model on its strongest previous-token head, last word."""
        if is_hf(r.model):
            prev = [m for m in metrics if getattr(m, "role", None) == "previous-token"]
            best = max(prev, key=lambda m: m.role_score, default=None)
            l, h = (best.layer, best.head) if best else (0, 0)
            return dict(layer=l, head=h, query=max(0, r.seq_len - 2))
        query = min(r.seq_len - 1, (3 * r.seq_len) // 4)            # the middle of the second copy
        for flag in ("is_induction_head", "is_previous_token_head"):
            for m in metrics:
                if getattr(m, flag, False):
                    return dict(layer=m.layer, head=m.head, query=query)
        return dict(layer=0, head=0, query=query)

    # -- computing -------------------------------------------------------------------------------
    def _tokens(self) -> tuple[int, ...]:
        if self.input_kind == "preset":
            return tuple(preset_induction_input(self.vocab_size, self.max_len, self.seed)[0].tolist())
        return parse_token_ids(self.custom_tokens, self.vocab_size, self.max_len)

    _inputs = ("model", "random_seed", "input_kind", "seed", "custom_tokens", "text")

    def _recompute(self) -> None:
        """Run the model for the current model and input (called by ``refresh()``, latest wins).

        The new result, its metrics and a selection that fits it are set in one ``param.update``,
        so a watcher never sees a result with a layer, head or query it does not have.
        """
        before = self.result
        if is_hf(self.model):
            with self._working():
                new = self._recompute_hf()
        else:
            new = self._recompute_tiny()
        r = new.get("result", before)
        if r is not before:
            if before is None or (before.num_layers, before.num_heads) != (r.num_layers, r.num_heads):
                self.param.layer.objects = list(range(r.num_layers))
                self.param.head.objects = list(range(r.num_heads))
                if before is not None:               # a new architecture: open on its typical head
                    new.update(self._default_selection(r, new["metrics"]))
            T = r.seq_len
            self.param.query.bounds = (0, T - 1)
            if new.get("query", self.query) > T - 1:
                new["query"] = T - 1
        with param.edit_constant(self):
            self.param.update(**new)

    def _recompute_tiny(self) -> dict:
        if self.input_kind == "custom" and not self.custom_tokens.strip() and self.result is not None \
                and not is_hf(self.result.model):
            with self.locked():
                self.custom_tokens = " ".join(map(str, self.result.tokens))  # start from what is shown
        last = self.result if self.result is not None and not is_hf(self.result.model) else None
        try:
            tokens, error = self._tokens(), ""
            period = len(tokens) // 2 if self.input_kind == "preset" else None
        except ValueError as err:                   # keep showing the last valid input
            error = str(err)
            if last is not None:
                tokens, period = last.tokens, last.period
            else:
                tokens = tuple(preset_induction_input(self.vocab_size, self.max_len, self.seed)[0].tolist())
                period = len(tokens) // 2
        seed = self.random_seed if self.model == "random" else None
        result = self._forward(self.model, seed, tokens, period)
        metrics = list(model_metrics(self.model, seed or 0))
        return dict(result=result, metrics=metrics, input_error=error, input_note="", model_error="")

    def compute_in_background(self, on: bool = True) -> None:
        """Served sessions (``dashboard.app.served``): compute in a worker thread, and let the view
        start MiniLM's preload when the tab is first shown (``preload_on_show``)."""
        super().compute_in_background(on)
        self.preload_on_show = on

    def start_preload(self) -> threading.Thread | None:
        """Start loading all-MiniLM-L6-v2 in the background (once per process: ``preload_hf``), so
        that picking it later does not wait for transformers' import and the weights. The view
        calls it when the tab is first shown in a served session."""
        return preload_hf(MINILM_NAMES[0])

    def _loading_note(self, kind: str) -> str:
        name = "all-MiniLM-L6-v2" if kind == MINILM else os.path.basename(os.path.normpath(hf_name(kind)))
        started = " (already under way in the background)" \
            if hf_name(kind) in _PRELOADS else ""
        return (f"Loading {name}: the first time in this process it imports transformers and reads the "
                f"weights{started}; later picks are immediate.")

    def _recompute_hf(self) -> dict:
        kind = self.model
        try:
            if not hf_ready(hf_name(kind)):
                with self.locked(), param.edit_constant(self):
                    self.loading = self._loading_note(kind)
            try:
                model, tokenizer = hf_model(hf_name(kind))
                metrics = list(hf_metrics(hf_name(kind)))
            finally:
                if self.loading:
                    with self.locked(), param.edit_constant(self):
                        self.loading = ""
        except (ValueError, OSError, ImportError, RuntimeError) as err:   # ModelNotAvailable is a ValueError
            new = self._recompute_tiny() if self.result is None else {}
            new["model_error"] = _not_available(kind, err)
            return new
        error = ""
        try:
            result, note = self._trace(kind, model, tokenizer, self.text, len(metrics))
        except ValueError as err:                   # keep showing the last valid text of this model
            error = str(err)
            last = self.result
            if last is not None and last.model == kind:
                result, note = last, self.input_note
            else:
                result, note = self._trace(kind, model, tokenizer, DEFAULT_TEXT, len(metrics))
        return dict(result=result, metrics=metrics, input_error=error, input_note=note, model_error="")

    def _trace(self, kind: str, model, tokenizer, text, num_maps: int) -> tuple[HeadsResult, str]:
        """The model on a text (or ids), cached like ``_forward``: ``(result, note)``.

        The text is cut to ``text_limit`` tokens (``note`` says so, else ""). Up to
        ``FULL_WEIGHTS_CELLS`` weights in all (``num_maps * T * T``, ``num_maps = L * H``) the
        result holds every layer's weights (``attention.hf.trace_attention``); above, each layer's
        ``q``, ``k`` (``attention.hf.capture_attention``) and the pooled overview.
        """
        limit, why = text_limit(hf_name(kind), model)
        note = ""
        if isinstance(text, str):
            if not text.strip():
                raise ValueError("Type a text (then press Enter).")
            if tokenizer is None:                    # a model directory without a tokenizer: ids
                vocab = model.get_input_embeddings().num_embeddings
                ids = parse_token_ids(text, vocab, limit)
            else:
                ids = tokenizer(text, verbose=False)["input_ids"]      # no "longer than" warning
                if len(ids) > limit:
                    n = len(ids)
                    ids = tokenizer(text, truncation=True, max_length=limit)["input_ids"]
                    note = f"Your text is {n} tokens: the first {len(ids)} are shown ({limit} is {why})."
        else:
            ids = text
        ids = tuple(int(i) for i in ids)
        key = (kind, None, ids, limit)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit, note
        name = "all-MiniLM-L6-v2" if kind == MINILM else os.path.basename(os.path.normpath(hf_name(kind)))
        common = dict(model=kind, random_seed=None, tokens=ids, predictions=None, period=None,
                      model_name=name, token_limit=limit, limit_reason=why)
        T = len(ids)
        if num_maps * T * T <= FULL_WEIGHTS_CELLS:
            trace = trace_attention(model, tokenizer, list(ids), max_tokens=limit)
            result = HeadsResult(weights=trace.stacked().numpy(), labels=tuple(trace.tokens),
                                 is_causal=trace.is_causal, **common)
        else:                                        # never the (L, H, T, T) weights
            cap = capture_attention(model, tokenizer, list(ids), max_tokens=limit)
            px = cell_px(cap.num_heads)
            maps = [cap.pooled(l, px) for l in range(cap.num_layers)]       # L x (H, side, side)
            result = HeadsResult(weights=None, captured=cap, labels=tuple(cap.tokens), is_causal=cap.is_causal,
                                 pooled=np.stack([m.maps.numpy() for m in maps]), pool_factor=maps[0].factor,
                                 **common)
        self.n_forward += 1
        self._remember(key, result)
        return result, note

    def _remember(self, key: tuple, result: HeadsResult) -> None:
        """Cache a result: at most ``FORWARD_CACHE``, of which at most ``LONG_CACHE`` long texts
        (the oldest go first)."""
        self._cache[key] = result
        if len(self._cache) > FORWARD_CACHE:
            self._cache.popitem(last=False)
        long = [k for k, r in self._cache.items() if r.long]
        for k in long[:max(0, len(long) - LONG_CACHE)]:
            del self._cache[k]

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
            model_name="trained model" if model == "trained" else "random model",
        )
        self.n_forward += 1
        self._remember(key, result)
        return result

    # -- reading -----------------------------------------------------------------------------------
    def head_metrics_of(self, layer: int, head: int) -> HeadMetrics | HeadRoles | None:
        """The current model's metrics of one head (None if unknown)."""
        return next((m for m in self.metrics if (m.layer, m.head) == (layer, head)), None)

    def selected_weights(self) -> np.ndarray:
        """``(T, T)`` weights of the selected layer and head, or the mean over the layer's heads
        when ``aggregate`` is on. Raises ``ValueError`` for a long text (``result.long``): use
        ``selected_map`` / ``selected_row``."""
        r = self.result
        if r.long:
            raise ValueError(f"expected a result holding its full weights but T={r.seq_len} is a long text: "
                             f"use selected_map() and selected_row()")
        return self.selected_map().maps[0].numpy()

    def selection(self) -> tuple[int, int | None]:
        """``(layer, head)`` of the main map, within the result's sizes; ``head`` is None with
        ``aggregate`` (the layer's mean)."""
        r = self.result
        return min(self.layer, r.num_layers - 1), None if self.aggregate else min(self.head, r.num_heads - 1)

    def selected_map(self) -> PooledMaps:
        """The main map: the selected head (or the layer's mean with ``aggregate``), exact or, for a
        long text, max-pooled to ``MAIN_PIXELS`` a side (``HeadsResult.head_map``)."""
        return self.result.head_map(*self.selection())

    def selected_row(self, query: int | None = None) -> np.ndarray:
        """``(T,)`` the exact weights of ``query`` (default: the selected one) in the selected head,
        or their mean over the layer's heads with ``aggregate``."""
        r = self.result
        q = min(self.query if query is None else query, r.seq_len - 1)
        layer, head = self.selection()
        row = r.row(layer, q)                                               # (H, T)
        return row.mean(axis=0) if head is None else row[head]
