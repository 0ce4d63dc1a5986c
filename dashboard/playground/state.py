"""``AttentionPlayground``: the dashboard's state (parameters) and its cached attention computation.

The object holds the knobs (sequence length, heads, head size, causal flag, prefix ``L``, selected
query, seed, optional text) and recomputes attention once per relevant change into ``pg.result``.
Changing only the selected query or the viewed head recomputes nothing: views read the cached
result. This module has no Panel or HoloViews import: ``PlaygroundState`` works headless (tests,
scripts). ``dashboard.playground.AttentionPlayground`` is the same state made displayable
(``pn.panel(pg)``, notebook display) by ``dashboard.playground.view``.

Shape legend: ``H`` heads, ``T`` positions (queries = keys, self-attention), ``D`` head size,
``E = H * D`` model size.

Masks are keep-masks (``True`` = may attend), as everywhere in this project.

Long contexts: ``seq_len`` goes up to ``MAX_SEQ_LEN`` (4096) on the CPU and ``MAX_SEQ_LEN_CUDA``
(16384) when ``device`` resolves to a CUDA device. Above ``FULL_WEIGHTS_CELLS`` weights in all
(``T * T * H``) the result never holds the full ``(H, T, T)`` maps: it holds the heads mosaic
max-pooled on the compute device (``attention.longcontext.pooled_attention_maps``, tile by tile),
and computes on demand the exact row of a query (``row``), a zoom window (``window``) and one weight
(``weight``); output and invariance come from the fused ``need_weights=False`` path.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import param
import torch
from torch import Tensor

from attention import (
    InvarianceResult,
    MultiHeadAttention,
    check_output_invariance,
    make_causal_mask,
    max_future_weight,
    single_token_attention,
)
from attention.longcontext import (
    PooledMaps,
    attention_row,
    attention_window,
    exact_weight,
    pooled_attention_maps,
    resolve_device,
)

from ..common.recompute import Recomputing

__all__ = [
    "DEVICES",
    "FULL_WEIGHTS_CELLS",
    "HEADS_BOX",
    "HEADS_ONE_ROW",
    "HEADS_ROW_BOX",
    "heads_box",
    "head_arrangement",
    "MAX_SEQ_LEN",
    "MAX_SEQ_LEN_CUDA",
    "max_seq_len",
    "mosaic_factor",
    "PlaygroundResult",
    "PlaygroundState",
    "SingleTokenSteps",
    "build_model",
    "embed_tokens",
    "single_token_steps",
    "tokenize",
    "words_of",
]

MAX_SEQ_LEN = 4096            # on the CPU
MAX_SEQ_LEN_CUDA = 16384      # when the computation runs on a CUDA device
DEVICES = ("auto", "cpu", "cuda")
FULL_WEIGHTS_CELLS = 2**20    # T*T*H up to which the result holds the full (H, T, T) weights
POOLED_MAP_PIXELS = 2**19     # pixels of all head maps together once the mosaic is pooled
ROW_CACHE = 8                 # exact query rows kept per result (a query change is a row computation)
MAX_HEADS = 16
MAX_HEAD_DIM = 128
WEIGHT_GAIN = 1.5          # std of projection weights is WEIGHT_GAIN / sqrt(fan_in): visible patterns
FUTURE_ATOL = 1e-6         # largest weight on a future key still counted as zero


# ----------------------------------------------------------------------------------------------
# Inputs: tokens -> embeddings, seed -> model
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff]")   # zero-width and direction marks


def words_of(text: str) -> list[str]:
    """The whitespace-separated words of ``text``; zero-width characters separate too (a word made
    of them alone would be an invisible token)."""
    return _INVISIBLE.sub(" ", text).split()


def tokenize(text: str, seq_len: int, limit: int = MAX_SEQ_LEN) -> tuple[str, ...]:
    """Words of ``text`` (at most ``limit``), or ``tok_0 .. tok_{T-1}`` if it has none."""
    words = words_of(text)
    if words:
        return tuple(words[:limit])
    return tuple(f"tok_{i}" for i in range(seq_len))


def max_seq_len(device: str | torch.device = "auto") -> int:
    """The longest sequence the Playground computes on ``device``: 4096 on the CPU, 16384 on CUDA."""
    return MAX_SEQ_LEN_CUDA if resolve_device(device).type == "cuda" else MAX_SEQ_LEN


# ----------------------------------------------------------------------------------------------
# Where the heads mosaic draws its maps (pure geometry, shared with ``plots.HeadGrid``)
HEAD_SIZE = 160               # frame width/height of one head's map, px (4 + colour bar per row at 1400 px)
HEADS_PER_ROW = 4             # maps per row of the heads figure up to 8 heads (more columns above)
HEAD_GAP = 22                 # px between two maps of the heads figure (room for "head h" above each)
HEADS_BOX = (HEADS_PER_ROW * (HEAD_SIZE + HEAD_GAP) - HEAD_GAP, 2 * (HEAD_SIZE + HEAD_GAP))
"""(width, height) in px of the heads figure's frame from ``HEADS_ONE_ROW + 1`` heads on: 706 x 364,
two rows of four 160-px maps. A figure whose size changes makes the browser lay the whole page out
again and repaint every figure (measured: ~45% of a heads step at T=256); a fixed frame makes a
heads step a change of data and ranges only."""
HEADS_ROW_BOX = (HEADS_BOX[0], HEAD_SIZE + HEAD_GAP)
"""706 x 182: the frame up to ``HEADS_ONE_ROW`` heads, one row of maps (160 px, 123 px at 5 heads).
With the two-row frame for every H, the default page (4 heads) showed a figure whose lower half
was empty, its key axis far below the maps."""
HEADS_ONE_ROW = 5
"""Up to this many heads the maps sit in one row. The step between ``HEADS_ONE_ROW`` and one more
changes the figure's height, which lays the page out again (felt at T=16 in chromium: 230 ms, a
step inside one frame 120-170 ms; with the boundary at 4/5 the steps from the default took
340-360 ms); 5, not 4, so that the default 4 heads and both its neighbours share a frame."""


def heads_box(H: int) -> tuple[int, int]:
    """The heads figure's frame ``(width, height)`` in px for ``H`` heads: ``HEADS_ROW_BOX`` up to
    ``HEADS_ONE_ROW`` heads, ``HEADS_BOX`` above (two sizes, so a heads step lays the page out
    only when it crosses from one to the other)."""
    return HEADS_ROW_BOX if H <= HEADS_ONE_ROW else HEADS_BOX


@lru_cache(maxsize=64)
def head_arrangement(H: int) -> tuple[int, int, int]:
    """``(ncols, nrows, cell_px)``: the grid of ``H`` maps with the largest maps that fit
    ``heads_box(H)`` (a ``HEAD_GAP`` above and between maps); ties go to fewer rows. H <= 4: one
    row at 160 px, 5: one row at 123 px; 6-8: two rows of four at 160 px; 9-10: 5 x 2 at 123 px;
    11-12: 6 x 2 and 13-16: 6 x 3 at 99 px."""
    bw, bh = heads_box(H)
    best = None
    for c in range(1, H + 1):
        r = math.ceil(H / c)
        cell = min((bw - (c - 1) * HEAD_GAP) // c, bh // r - HEAD_GAP)
        if best is None or cell >= best[2]:
            best = (c, r, cell)
    return best


def mosaic_factor(T: int, H: int, pixel_ratio: float = 1.0) -> int:
    """Positions per pixel side ``f`` of the heads mosaic: no more pixels than the screen shows, and
    no more than the memory budget allows.

    - Shown: a map is drawn ``head_arrangement(H)`` px a side, ``pixel_ratio`` device pixels per
      px (the browser's ``devicePixelRatio``). Above that many positions a side each pixel is the
      max over ``f x f`` weights: a single strong weight stays visible, where the browser's own
      scaling would drop whole rows, and a T=256, H=8 change ships 0.6 MB instead of 2.3 MB
      (felt in chromium: 390-410 ms -> 320 ms). A zoom shows the visible part exactly.
    - Budget: ``ceil(T / side)`` with ``H * side**2 <= POOLED_MAP_PIXELS`` once all maps exceed
      ``FULL_WEIGHTS_CELLS``.

    At ``pixel_ratio`` 1: T=256, H=8: 2; T=1024, H=16: 11; T=4096, H=8: 26.
    """
    shown = max(1, int(head_arrangement(H)[2] * pixel_ratio))
    f = 1 if T <= shown else math.ceil(T / shown)
    if T * T * H > FULL_WEIGHTS_CELLS:
        side = max(1, math.isqrt(POOLED_MAP_PIXELS // max(1, H)))
        f = max(f, 1 if T <= side else math.ceil(T / side))
    return f


@lru_cache(maxsize=8192)
def _token_vector(token: str, d_model: int) -> Tensor:
    digest = hashlib.sha256(token.encode("utf-8")).digest()    # stable across processes (not hash())
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn(d_model, generator=gen)                  # (E,)


def _sinusoidal_positions(T: int, E: int) -> Tensor:
    pos = torch.arange(T, dtype=torch.float32)[:, None]                             # (T, 1)
    freq = torch.exp(torch.arange(0, E, 2, dtype=torch.float32) * (-math.log(10000.0) / E))
    angles = pos * freq                                                             # (T, ceil(E/2))
    pe = torch.zeros(T, E)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : E // 2])
    return pe                                                                       # (T, E)


def embed_tokens(tokens: tuple[str, ...] | list[str], d_model: int, position_scale: float) -> Tensor:
    """Input sequence ``(T, E)``: a fixed vector per token string plus scaled sinusoidal positions.

    The same token string always gets the same vector (seeded by a SHA-256 of the string), so
    repeated words look alike; ``position_scale`` mixes in where each one stands (0 = not at all).
    """
    tok = torch.stack([_token_vector(t, d_model) for t in tokens])       # (T, E)
    return tok + position_scale * _sinusoidal_positions(len(tokens), d_model)


def build_model(num_heads: int, head_dim: int, seed: int) -> MultiHeadAttention:
    """An untrained ``MultiHeadAttention(E=H*D, H)`` whose weights come from ``seed`` alone.

    Weights are drawn from a private ``torch.Generator`` (the global RNG is never touched):
    ``N(0, WEIGHT_GAIN**2 / E)`` for the four projections, zero biases.
    """
    E = num_heads * head_dim
    model = MultiHeadAttention(E, num_heads, device="meta").to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in (model.q_proj, model.k_proj, model.v_proj, model.out_proj):
            fan_in = lin.weight.shape[1]
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * (WEIGHT_GAIN / math.sqrt(fan_in)))
            lin.bias.zero_()
    return model


# ----------------------------------------------------------------------------------------------
# Results
@dataclass(frozen=True, eq=False)
class PlaygroundResult:
    """Everything the views show for one set of parameters (tensors on the CPU, float32).

    Attributes:
        tokens: the ``T`` token strings labelling queries and keys.
        x: ``(T, E)`` input embeddings.
        q, k, v: ``(H, T, D)`` per-head queries, keys and values.
        weights: ``(H, T, T)`` attention weights, ``weights[h, i, j]`` = how much query ``i``
            reads from key ``j`` in head ``h``; rows sum to 1. ``None`` above
            ``FULL_WEIGHTS_CELLS`` (a long context): use ``maps``, ``row``, ``window``, ``weight``.
        output: ``(T, E)`` the module's output.
        mask: ``(T, T)`` bool keep-mask that was applied (all ``True`` when not causal); ``None``
            with ``weights``: use ``keep_row`` / ``keep_pooled``.
        causal: whether the causal mask was on.
        max_future_weight: the largest weight any query puts on a later key.
        invariance: :class:`attention.InvarianceResult` for the current prefix ``L``:
            ``.max_diff`` over positions ``0..L`` and ``.position_diff (T,)`` at every position.
        maps: :class:`attention.longcontext.PooledMaps`, every head's map max-pooled by
            ``mosaic_factor(T, H, pixel_ratio)`` (``maps.maps (H, ceil(T/f), ceil(T/f))``; ``f = 1``:
            exact).
        device: where the attention maps are computed (``"cpu"`` or ``"cuda[:N]"``).
        seed, position_scale, text: the other parameters this result was computed from.
    """

    tokens: tuple[str, ...]
    x: Tensor = field(repr=False)
    q: Tensor = field(repr=False)
    k: Tensor = field(repr=False)
    v: Tensor = field(repr=False)
    weights: Tensor | None = field(repr=False)
    output: Tensor = field(repr=False)
    mask: Tensor | None = field(repr=False)
    causal: bool
    max_future_weight: float
    invariance: InvarianceResult
    maps: PooledMaps = field(repr=False)
    device: str = "cpu"
    seed: int = 0
    position_scale: float = 0.5
    text: str = ""
    _rows: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def seq_len(self) -> int:
        return len(self.tokens)

    @property
    def num_heads(self) -> int:
        return self.q.shape[0]

    @property
    def head_dim(self) -> int:
        return self.q.shape[-1]

    @property
    def prefix(self) -> int:
        return self.invariance.prefix

    @property
    def long(self) -> bool:
        """``True`` when the full weights are not held (``weights is None``)."""
        return self.weights is None

    @property
    def no_lookahead(self) -> bool:
        """No weight above ``FUTURE_ATOL`` on any future key."""
        return self.max_future_weight <= FUTURE_ATOL

    @property
    def passed(self) -> bool:
        """The verdict shown as PASS/FAIL: no weight on the future and outputs ``0..L`` unchanged."""
        return self.no_lookahead and self.invariance.passed

    # -- what the views compute on demand (exact, never from pooled pixels) ---------------------
    @property
    def _mask_mode(self) -> str | None:
        return "causal" if self.causal else None

    def _check_index(self, name: str, value: object, n: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
            raise ValueError(f"expected {name} in 0..{n - 1} but found {name}={value!r}")
        return value

    def keep_row(self, query: int) -> Tensor:
        """``(T,)`` bool: the keep-mask row of ``query`` (``True`` = may attend)."""
        T = self.seq_len
        i = self._check_index("query", query, T)
        if self.mask is not None:
            return self.mask[i]
        return torch.arange(T) <= i if self.causal else torch.ones(T, dtype=torch.bool)

    def keep_pooled(self, f: int) -> np.ndarray:
        """``(ceil(T/f), ceil(T/f))`` float32: the keep-mask max-pooled over ``f x f`` blocks (zeros
        past the edges), without building the ``(T, T)`` mask: block ``(r, c)`` holds a kept cell
        iff ``c <= r`` under the causal mask."""
        if isinstance(f, bool) or not isinstance(f, int) or f < 1:
            raise ValueError(f"expected f to be an int >= 1 but found f={f!r}")
        n = math.ceil(self.seq_len / f)
        if not self.causal:
            return np.ones((n, n), dtype=np.float32)
        return np.tril(np.ones((n, n), dtype=np.float32))

    def row(self, query: int) -> Tensor:
        """``(H, T)``: query ``query``'s exact weights over every key in every head.

        From ``weights`` when held, else one row computation (``attention_row``), cached: a change
        of the selected query never recomputes the maps.
        """
        i = self._check_index("query", query, self.seq_len)
        if self.weights is not None:
            return self.weights[:, i, :]
        cached = self._rows.get(i)
        if cached is None:
            cached = attention_row(self.q, self.k, i, mask=self._mask_mode, device=self.device)
            if len(self._rows) >= ROW_CACHE:
                self._rows.pop(next(iter(self._rows)))
            self._rows[i] = cached
        return cached

    def window(self, head: int, q_range: tuple[int, int], k_range: tuple[int, int],
               pixels: int = 512) -> PooledMaps:
        """Head ``head``'s weights of queries ``q0:q1`` x keys ``k0:k1``, exact when the window fits
        ``pixels`` a side, else max-pooled (``attention_window``; rows normalised over all keys).

        Returns:
            ``PooledMaps`` with ``maps (1, R, C)``.
        """
        h = self._check_index("head", head, self.num_heads)
        return attention_window(self.q[h:h + 1], self.k[h:h + 1], q_range=q_range, k_range=k_range,
                                mask=self._mask_mode, pixels=pixels, device=self.device)

    def weight(self, head: int, query: int, key: int) -> float:
        """The exact weight of ``query`` on ``key`` in ``head`` (``exact_weight``; hover)."""
        h = self._check_index("head", head, self.num_heads)
        i = self._check_index("query", query, self.seq_len)
        j = self._check_index("key", key, self.seq_len)
        if self.weights is not None:
            return float(self.weights[h, i, j])
        return float(exact_weight(self.q[h:h + 1], self.k[h:h + 1], i, j, mask=self._mask_mode,
                                  device=self.device)[0])


@dataclass(frozen=True, eq=False)
class SingleTokenSteps:
    """One query in one head, step by step (the single-token view).

    Attributes:
        head, query: which head and query position.
        q: ``(D,)`` the query vector; ``k``, ``v``: ``(T, D)`` keys and values of that head.
        raw: ``(T,)`` raw scores ``k @ q``; ``scale``: ``1 / sqrt(D)``; ``scaled``: ``raw * scale``.
        keep: ``(T,)`` bool keep-mask row (``True`` = may attend).
        weights: ``(T,)`` softmax of the kept scaled scores (0 on blocked keys).
        output: ``(D,)`` the weighted sum ``weights @ v``.
    """

    head: int
    query: int
    q: Tensor = field(repr=False)
    k: Tensor = field(repr=False)
    v: Tensor = field(repr=False)
    raw: Tensor = field(repr=False)
    scale: float
    scaled: Tensor = field(repr=False)
    keep: Tensor = field(repr=False)
    weights: Tensor = field(repr=False)
    output: Tensor = field(repr=False)


def single_token_steps(result: PlaygroundResult, head: int, query: int) -> SingleTokenSteps:
    """One query in one head, step by step, through the library's ``single_token_attention``.

    Its ``weights`` equal ``result.weights[head, query]`` and its ``output`` the head's weighted sum.
    """
    for name, value, n in (("head", head, result.num_heads), ("query", query, result.seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
            raise ValueError(f"expected {name} in 0..{n - 1} but found {name}={value!r}")
    q, k, v = result.q[head, query], result.k[head], result.v[head]  # (D,), (T, D), (T, D)
    keep = result.keep_row(query)                                    # (T,)
    scale = 1.0 / math.sqrt(result.head_dim)
    raw = k @ q                                                      # (T, D) @ (D,) -> (T,)
    output, weights = single_token_attention(q, k, v, mask=keep)     # (D,), (T,)
    return SingleTokenSteps(head=head, query=query, q=q, k=k, v=v, raw=raw, scale=scale,
                            scaled=raw * scale, keep=keep, weights=weights, output=output)


# ----------------------------------------------------------------------------------------------
class _Index(param.Integer):
    """An index whose ``bounds`` follow another parameter (what widgets show, e.g. ``0..T-1``).

    A value is checked against the fixed ``hard_bounds`` when it is set, and against the
    current ``bounds`` by ``AttentionPlayground`` once the whole ``param.update`` batch is in:
    so ``update(seq_len=12, prefix=10)`` works from any T, in either order.
    """

    __slots__ = ["hard_bounds"]

    def __init__(self, default=0, *, hard_bounds: tuple[int, int], bounds=None, **params):
        self.hard_bounds = hard_bounds           # before super(): it validates the default
        super().__init__(default=default, bounds=bounds or hard_bounds, **params)

    def _validate(self, val) -> None:
        self._validate_value(val, self.allow_None)
        self._validate_step(val, self.step)
        self._validate_bounds(val, self.hard_bounds, self.inclusive_bounds)


class PlaygroundState(Recomputing):
    """Parameters of an attention experiment and its cached result (``pg.result``).

    Recomputes once per change of ``seq_len``, ``num_heads``, ``head_dim``, ``causal``, ``seed``,
    ``text`` or ``position_scale``; a change of ``prefix`` reruns only the invariance check; a change
    of ``query`` or ``view_head`` recomputes nothing. ``n_computes`` / ``n_invariance_checks``
    count the work done (for tests and benchmarks).

    When ``text`` holds words, they become the sequence: ``seq_len`` follows the word count and is
    read-only (constant) until the text is cleared.

    Dependent bounds: ``prefix`` and ``query`` live in ``0..seq_len-1`` and ``view_head`` in
    ``0..num_heads-1``; shrinking T or H clamps them. Setting one of them alone beyond its bounds
    raises ``ValueError`` (the values of that update are left as they were). In one ``param.update`` together with
    ``seq_len`` / ``text`` (or ``num_heads`` for ``view_head``) they are checked against the new
    size, in any order: ``pg.param.update(seq_len=12, prefix=10)`` works from T=8, and a value
    past the new end clamps to it, as when T shrinks.
    """

    seq_len = _Index(default=16, hard_bounds=(1, MAX_SEQ_LEN_CUDA), bounds=(1, MAX_SEQ_LEN),
                     label="Sequence length T", doc="""
        Number of tokens T (queries = keys): up to 4096 on the CPU, 16384 on a CUDA device. Follows
        the word count while the text box is used.""")
    num_heads = param.Integer(default=4, bounds=(1, MAX_HEADS), label="Heads H", doc="""
        Number of attention heads H; each gets its own T x T map.""")
    head_dim = param.Integer(default=16, bounds=(1, MAX_HEAD_DIM), label="Head dimension D", doc="""
        Size D of each head's query/key/value vectors; the model size is E = H * D.""")
    causal = param.Boolean(default=True, label="Causal mask", doc="""
        Block every key after its query (lower-triangular keep-mask). Off = full attention,
        and the invariance check must fail.""")
    prefix = _Index(default=7, hard_bounds=(0, MAX_SEQ_LEN_CUDA - 1), label="Prefix L", doc="""
        Invariance experiment: every token after position L is replaced by random values and the
        outputs at positions 0..L are compared. Stays within 0..T-1.""")
    query = _Index(default=7, hard_bounds=(0, MAX_SEQ_LEN_CUDA - 1), label="Selected query", doc="""
        The query position shown in the per-query and step-by-step views (tap a heatmap row to
        pick one). Stays within 0..T-1.""")
    view_head = _Index(default=0, hard_bounds=(0, MAX_HEADS - 1), label="Head (step by step)", doc="""
        The head shown in the step-by-step single-token view. Stays within 0..H-1.""")
    seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="Random seed", doc="""
        Seeds the untrained projection weights and the invariance perturbation (a private
        torch.Generator: the same seed always gives the same weights).""")
    text = param.String(default="", label="Text (optional)", doc="""
        A sentence whose whitespace tokens become the sequence and label the axes (T follows, at
        most 4096 words on the CPU). Empty: tokens tok_0 .. tok_{T-1}. The same word always gets the same
        embedding.""")
    device = param.Selector(default="auto", objects=list(DEVICES), label="Device", doc="""
        Where the attention maps are computed: auto (CUDA when available, else the CPU), cpu or
        cuda. Long maps are reduced there tile by tile and only their pixels come back.""")
    position_scale = param.Number(default=0.5, bounds=(0.0, 2.0), step=0.05, label="Position signal",
                                  doc="""
        How strongly the position (sinusoidal encoding) is added to each token's embedding.
        0 makes repeated words identical inputs; larger makes position matter more.""")

    pixel_ratio = param.Number(default=1.0, bounds=(0.25, 4.0), precedence=-1, doc="""
        Device pixels per CSS pixel of the screen the heads maps are drawn on (the browser's
        ``devicePixelRatio``; a served page sets it). The mosaic holds no more pixels than that
        screen shows (``mosaic_factor``).""")

    result = param.ClassSelector(class_=PlaygroundResult, constant=True, precedence=-1, doc="""
        The computed state for the current parameters (read-only).""")

    _core_params = ("seq_len", "num_heads", "head_dim", "causal", "seed", "text", "position_scale",
                    "device", "pixel_ratio")
    _inputs = (*_core_params, "prefix", "query", "view_head")

    def __init__(self, **params):
        self.n_computes = 0
        self.n_invariance_checks = 0
        self._core_key: tuple | None = None
        self._core: dict | None = None
        self._model: MultiHeadAttention | None = None
        self._model_key: tuple | None = None
        self._inv_key: tuple | None = None
        super().__init__(**params)
        self.refresh()

    # index -> (the parameters its bound follows, the bound's size)
    _INDEX_SIZES = {"prefix": ("seq_len", "text"), "query": ("seq_len", "text"),
                    "view_head": ("num_heads",)}

    def _size_after(self, name: str) -> int:
        if name == "view_head":
            return self.num_heads
        words = words_of(self.text)
        return min(len(words), self.seq_len_limit) if words else self.seq_len

    @property
    def seq_len_limit(self) -> int:
        """The longest ``seq_len`` on the current ``device`` (4096 on the CPU, 16384 on CUDA)."""
        return max_seq_len(self.device)

    def _on_inputs(self, *events) -> None:
        """After a batch: refuse an index set alone beyond its bounds, else clamp and recompute."""
        changed = {e.name for e in events}
        try:
            limit = self.seq_len_limit                     # an unusable device raises ValueError
            if "seq_len" in changed and not words_of(self.text) and self.seq_len > limit:
                raise ValueError(f"expected seq_len in 1..{limit} on device={self.device!r} "
                                 f"({MAX_SEQ_LEN} on the CPU, {MAX_SEQ_LEN_CUDA} on CUDA) but "
                                 f"found seq_len={self.seq_len}")
        except ValueError:
            self.param.update({e.name: e.old for e in events})    # the whole batch is undone
            raise
        bad = [e for e in events if e.name in self._INDEX_SIZES
               and not changed & set(self._INDEX_SIZES[e.name])
               and e.new > self._size_after(e.name) - 1]
        if bad:
            self.param.update({e.name: e.old for e in events})    # the whole batch is undone
            e = bad[0]
            n = self._size_after(e.name)
            size = "T" if e.name != "view_head" else "H"
            raise ValueError(f"expected {e.name} in 0..{size}-1 = 0..{n - 1} but found "
                             f"{e.name}={e.new!r}")
        self.refresh()

    # -- keeping dependent parameters consistent ---------------------------------------------
    def _sync_dependent(self) -> None:
        """Text -> seq_len (constant while text is used); clamp prefix/query/view_head into range."""
        words = words_of(self.text)
        limit = self.seq_len_limit
        self.param.seq_len.bounds = (1, limit)
        if words:
            n = min(len(words), limit)
            self.param.seq_len.constant = True
            if self.seq_len != n:
                with param.edit_constant(self):
                    self.seq_len = n
        elif self.param.seq_len.constant:
            self.param.seq_len.constant = False
        if not words and self.seq_len > limit:
            if self._core_key is None:                     # the constructor's own values
                raise ValueError(f"expected seq_len in 1..{limit} on device={self.device!r} but "
                                 f"found seq_len={self.seq_len}")
            self.seq_len = limit                           # the device changed: clamp
        T, H = self.seq_len, self.num_heads
        self.param.prefix.bounds = (0, T - 1)
        self.param.query.bounds = (0, T - 1)
        self.param.view_head.bounds = (0, H - 1)
        clamped = {name: hi for name, hi in (("prefix", T - 1), ("query", T - 1), ("view_head", H - 1))
                   if getattr(self, name) > hi}
        if clamped:
            self.param.update(**clamped)

    def _recompute(self) -> None:
        """Bring ``result`` up to date (called by ``refresh()``, latest wins, see ``Recomputing``)."""
        self._sync_dependent()
        core_key = (tokenize(self.text, self.seq_len, self.seq_len_limit), self.num_heads,
                    self.head_dim, self.causal, self.seed, float(self.position_scale),
                    str(resolve_device(self.device)))
        core_key += (mosaic_factor(len(core_key[0]), core_key[1], self.pixel_ratio),)   # the maps' f
        inv_key = core_key + (self.prefix,)
        if core_key == self._core_key and inv_key == self._inv_key:
            return
        with self._working():
            if core_key != self._core_key:
                self._core = self._compute_core(*core_key)
                self._core_key = core_key
                self.n_computes += 1
            invariance = self._compute_invariance(self.prefix)
            self._inv_key = inv_key
        with param.edit_constant(self):      # after busy is False: the views clear the spinner with it
            self.result = PlaygroundResult(**self._core, invariance=invariance,
                                           seed=core_key[4], position_scale=core_key[5], text=self.text)

    # -- the computation ----------------------------------------------------------------------
    def _get_model(self, H: int, D: int, seed: int, device: str = "cpu") -> MultiHeadAttention:
        if self._model_key != (H, D, seed, device):
            self._model = build_model(H, D, seed).to(device)
            self._model_key = (H, D, seed, device)
        return self._model

    @property
    def model(self) -> MultiHeadAttention:
        """The ``MultiHeadAttention`` behind the current result (weights from ``seed``), on the
        result's device."""
        device = self._core_key[6] if self._core_key else "cpu"
        return self._get_model(self.num_heads, self.head_dim, self.seed, device)

    def _compute_core(self, tokens, H, D, causal, seed, position_scale, device, f) -> dict:
        T, E = len(tokens), H * D
        model = self._get_model(H, D, seed, device)
        x = embed_tokens(tokens, E, position_scale)                          # (T, E) on the CPU
        if T * T * H <= FULL_WEIGHTS_CELLS:      # read here: tests lower it to take the long path
            keep = make_causal_mask(T, dtype=torch.bool) if causal else torch.ones(T, T, dtype=torch.bool)
            xd = x.to(device)
            with torch.no_grad():
                output, weights = model(xd, mask=keep.to(device) if causal else None)  # (T, E), (H, T, T)
                q, k, v = (proj(xd).view(T, H, D).transpose(0, 1).contiguous().cpu()
                           for proj in (model.q_proj, model.k_proj, model.v_proj))  # 3 x (H, T, D)
            weights, output = weights.cpu(), output.cpu()
            pix = weights if f == 1 else torch.nn.functional.max_pool2d(
                weights[None], kernel_size=f, stride=f, ceil_mode=True)[0]      # (H, ceil(T/f), ..)
            mfw = max_future_weight(weights)
            maps = PooledMaps(pix, f, (0, T), (0, T), "max", mfw)
            return dict(tokens=tokens, x=x, q=q, k=k, v=v, weights=weights, output=output,
                        mask=keep, causal=causal, max_future_weight=mfw, maps=maps, device=device)
        # A long context: never the (H, T, T) weights. Projections once, the maps tile by tile on
        # the device (each tile soft-maxed over its full key rows, then max-pooled to pixels), the
        # output through the fused kernel.
        xd = x.to(device)
        with torch.no_grad():
            qd, kd, vd = (proj(xd).view(T, H, D).transpose(0, 1).contiguous()
                          for proj in (model.q_proj, model.k_proj, model.v_proj))   # 3 x (H, T, D)
            maps = pooled_attention_maps(qd, kd, mask="causal" if causal else None,
                                         pixels=math.ceil(T / f))
            # what model(xd, is_causal=causal, need_weights=False) computes, from these q, k, v
            ctx = torch.nn.functional.scaled_dot_product_attention(
                qd[None], kd[None], vd[None], is_causal=causal)[0]              # (H, T, D)
            output = model.out_proj(ctx.transpose(0, 1).reshape(T, E)).cpu()    # (T, E)
        return dict(tokens=tokens, x=x, q=qd.cpu(), k=kd.cpu(), v=vd.cpu(), weights=None,
                    output=output, mask=None, causal=causal,
                    max_future_weight=maps.max_future_weight, maps=maps, device=device)

    def _compute_invariance(self, prefix: int) -> InvarianceResult:
        core = self._core
        device = self._core_key[6]
        model = self._get_model(core["q"].shape[0], core["q"].shape[2], self._core_key[4], device)
        gen = torch.Generator().manual_seed(self._core_key[4] + 1)
        self.n_invariance_checks += 1
        xb = core["x"][None]                                                 # (1, T, E)
        if core["weights"] is not None:
            return check_output_invariance(model, xb, prefix,
                                           mask=core["mask"].to(device) if core["causal"] else None,
                                           generator=gen)
        causal, output = core["causal"], core["output"]

        def fused(inp: Tensor) -> Tensor:
            """The model through the fused kernel (no weights); the unperturbed input's output is
            the one already computed."""
            if inp is xb:
                return output[None]
            with torch.no_grad():
                return model(inp.to(device), is_causal=causal, need_weights=False)[0].cpu()

        return check_output_invariance(fused, xb, prefix, generator=gen)

    def invariance_at(self, prefix: int) -> InvarianceResult:
        """The invariance check for another prefix on the current input (not cached)."""
        T = self.seq_len
        if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 <= prefix < T:
            raise ValueError(f"expected prefix in 0..T-1 = 0..{T - 1} but found prefix={prefix!r}")
        return self._compute_invariance(prefix)

    def single_token(self, head: int | None = None, query: int | None = None) -> SingleTokenSteps:
        """The step-by-step attention of one query in one head (see :func:`single_token_steps`).

        Args:
            head: head index in ``0..H-1``. Default: ``view_head``.
            query: query position in ``0..T-1``. Default: ``query``.
        """
        return single_token_steps(self.result, self.view_head if head is None else head,
                                  self.query if query is None else query)
