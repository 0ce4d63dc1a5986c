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
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

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

from ..common.recompute import Recomputing

__all__ = [
    "MAX_SEQ_LEN",
    "PlaygroundResult",
    "PlaygroundState",
    "SingleTokenSteps",
    "build_model",
    "embed_tokens",
    "single_token_steps",
    "tokenize",
    "words_of",
]

MAX_SEQ_LEN = 1024
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


def tokenize(text: str, seq_len: int) -> tuple[str, ...]:
    """Words of ``text`` (at most ``MAX_SEQ_LEN``), or ``tok_0 .. tok_{T-1}`` if it has none."""
    words = words_of(text)
    if words:
        return tuple(words[:MAX_SEQ_LEN])
    return tuple(f"tok_{i}" for i in range(seq_len))


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
            reads from key ``j`` in head ``h``; rows sum to 1.
        output: ``(T, E)`` the module's output.
        mask: ``(T, T)`` bool keep-mask that was applied (all ``True`` when not causal).
        causal: whether the causal mask was on.
        max_future_weight: the largest weight any query puts on a later key.
        invariance: :class:`attention.InvarianceResult` for the current prefix ``L``:
            ``.max_diff`` over positions ``0..L`` and ``.position_diff (T,)`` at every position.
        seed, position_scale, text: the other parameters this result was computed from.
    """

    tokens: tuple[str, ...]
    x: Tensor = field(repr=False)
    q: Tensor = field(repr=False)
    k: Tensor = field(repr=False)
    v: Tensor = field(repr=False)
    weights: Tensor = field(repr=False)
    output: Tensor = field(repr=False)
    mask: Tensor = field(repr=False)
    causal: bool
    max_future_weight: float
    invariance: InvarianceResult
    seed: int = 0
    position_scale: float = 0.5
    text: str = ""

    @property
    def seq_len(self) -> int:
        return len(self.tokens)

    @property
    def num_heads(self) -> int:
        return self.weights.shape[0]

    @property
    def head_dim(self) -> int:
        return self.q.shape[-1]

    @property
    def prefix(self) -> int:
        return self.invariance.prefix

    @property
    def no_lookahead(self) -> bool:
        """No weight above ``FUTURE_ATOL`` on any future key."""
        return self.max_future_weight <= FUTURE_ATOL

    @property
    def passed(self) -> bool:
        """The verdict shown as PASS/FAIL: no weight on the future and outputs ``0..L`` unchanged."""
        return self.no_lookahead and self.invariance.passed


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
    keep = result.mask[query]                                        # (T,)
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

    def __init__(self, default=0, *, hard_bounds: tuple[int, int], **params):
        self.hard_bounds = hard_bounds           # before super(): it validates the default
        super().__init__(default=default, bounds=hard_bounds, **params)

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

    seq_len = param.Integer(default=16, bounds=(1, MAX_SEQ_LEN), label="Sequence length T", doc="""
        Number of tokens T (queries = keys). Follows the word count while the text box is used.""")
    num_heads = param.Integer(default=4, bounds=(1, MAX_HEADS), label="Heads H", doc="""
        Number of attention heads H; each gets its own T x T map.""")
    head_dim = param.Integer(default=16, bounds=(1, MAX_HEAD_DIM), label="Head dimension D", doc="""
        Size D of each head's query/key/value vectors; the model size is E = H * D.""")
    causal = param.Boolean(default=True, label="Causal mask", doc="""
        Block every key after its query (lower-triangular keep-mask). Off = full attention,
        and the invariance check must fail.""")
    prefix = _Index(default=7, hard_bounds=(0, MAX_SEQ_LEN - 1), label="Prefix L", doc="""
        Invariance experiment: every token after position L is replaced by random values and the
        outputs at positions 0..L are compared. Stays within 0..T-1.""")
    query = _Index(default=7, hard_bounds=(0, MAX_SEQ_LEN - 1), label="Selected query", doc="""
        The query position shown in the per-query and step-by-step views (tap a heatmap row to
        pick one). Stays within 0..T-1.""")
    view_head = _Index(default=0, hard_bounds=(0, MAX_HEADS - 1), label="Head (step by step)", doc="""
        The head shown in the step-by-step single-token view. Stays within 0..H-1.""")
    seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="Random seed", doc="""
        Seeds the untrained projection weights and the invariance perturbation (a private
        torch.Generator: the same seed always gives the same weights).""")
    text = param.String(default="", label="Text (optional)", doc="""
        A sentence whose whitespace tokens become the sequence and label the axes (T follows, at
        most 1024 words). Empty: tokens tok_0 .. tok_{T-1}. The same word always gets the same
        embedding.""")
    position_scale = param.Number(default=0.5, bounds=(0.0, 2.0), step=0.05, label="Position signal",
                                  doc="""
        How strongly the position (sinusoidal encoding) is added to each token's embedding.
        0 makes repeated words identical inputs; larger makes position matter more.""")

    result = param.ClassSelector(class_=PlaygroundResult, constant=True, precedence=-1, doc="""
        The computed state for the current parameters (read-only).""")

    _core_params = ("seq_len", "num_heads", "head_dim", "causal", "seed", "text", "position_scale")
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
        return min(len(words), MAX_SEQ_LEN) if words else self.seq_len

    def _on_inputs(self, *events) -> None:
        """After a batch: refuse an index set alone beyond its bounds, else clamp and recompute."""
        changed = {e.name for e in events}
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
        if words:
            n = min(len(words), MAX_SEQ_LEN)
            self.param.seq_len.constant = True
            if self.seq_len != n:
                with param.edit_constant(self):
                    self.seq_len = n
        elif self.param.seq_len.constant:
            self.param.seq_len.constant = False
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
        core_key = (tokenize(self.text, self.seq_len), self.num_heads, self.head_dim, self.causal,
                    self.seed, float(self.position_scale))
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
    def _get_model(self, H: int, D: int, seed: int) -> MultiHeadAttention:
        if self._model_key != (H, D, seed):
            self._model = build_model(H, D, seed)
            self._model_key = (H, D, seed)
        return self._model

    @property
    def model(self) -> MultiHeadAttention:
        """The ``MultiHeadAttention`` behind the current result (weights from ``seed``)."""
        return self._get_model(self.num_heads, self.head_dim, self.seed)

    def _compute_core(self, tokens, H, D, causal, seed, position_scale) -> dict:
        T, E = len(tokens), H * D
        model = self._get_model(H, D, seed)
        x = embed_tokens(tokens, E, position_scale)                          # (T, E)
        keep = make_causal_mask(T, dtype=torch.bool) if causal else torch.ones(T, T, dtype=torch.bool)
        with torch.no_grad():
            output, weights = model(x, mask=keep if causal else None)       # (T, E), (H, T, T)
            q = model.q_proj(x).view(T, H, D).transpose(0, 1)                # (H, T, D)
            k = model.k_proj(x).view(T, H, D).transpose(0, 1)                # (H, T, D)
            v = model.v_proj(x).view(T, H, D).transpose(0, 1)                # (H, T, D)
        return dict(tokens=tokens, x=x, q=q.contiguous(), k=k.contiguous(), v=v.contiguous(),
                    weights=weights, output=output, mask=keep, causal=causal,
                    max_future_weight=max_future_weight(weights))

    def _compute_invariance(self, prefix: int) -> InvarianceResult:
        core = self._core
        model = self._get_model(core["q"].shape[0], core["q"].shape[2], self._core_key[4])
        gen = torch.Generator().manual_seed(self._core_key[4] + 1)
        self.n_invariance_checks += 1
        return check_output_invariance(model, core["x"][None], prefix,
                                       mask=core["mask"] if core["causal"] else None, generator=gen)

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
