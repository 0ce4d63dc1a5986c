"""What each attention head does: previous-token score, induction score and entropy.

``head_metrics(model)`` measures every head on the standard induction probe: a block of
``T // 2`` distinct random tokens, twice (``x[i] = x[i - p]`` for ``i >= p = T // 2``):

- previous-token score: mean weight a query ``i >= 1`` puts on key ``i - 1``;
- induction score: mean weight a query in the second copy (``i >= p``, the second occurrence of
  the token first seen at ``i - p``) puts on key ``i - p + 1``, the token that followed the first
  occurrence, which is what comes next;
- entropy: mean over queries of ``-sum_s w log w`` in nats (0 = one key; query ``i`` can reach at
  most ``log(i + 1)``).

The score functions also take the training data of ``python -m attention.train``
(``repeated_random_tokens``: a random period per sequence, optionally after a random lead-in).
Tokens before the repeat are distinct, so "the previous occurrence of this token" is unambiguous.

Real models (``attention.hf``) on any text: :func:`role_scores` measures every head's
previous-token, next-token, first-token sink ([CLS] / BOS), last-token sink ([SEP] / end), self
(diagonal) and token-matched induction scores plus entropy, and :func:`head_roles_table` flags each
head's strongest role. These read the weights of any sequence; induction there uses the tokens
themselves (:func:`token_induction_scores`: the key after the previous occurrence of the query's
token), and is NaN where no token repeats (a plain sentence) instead of an error.

Shape legend: ``B`` batch, ``T`` positions, ``L`` layers, ``H`` heads, ``V`` vocabulary.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

__all__ = [
    "ROLES",
    "HeadMetrics",
    "HeadRoles",
    "RepeatedTokens",
    "attention_entropy",
    "head_metrics",
    "head_metrics_table",
    "head_roles_table",
    "induction_scores",
    "next_token_accuracy",
    "next_token_scores",
    "preset_induction_input",
    "previous_token_scores",
    "repeated_random_tokens",
    "role_scores",
    "self_scores",
    "sink_scores",
    "token_induction_scores",
    "two_copy_tokens",
]


@dataclass(frozen=True)
class RepeatedTokens:
    """A batch of repeating random sequences.

    Attributes:
        tokens: ``(B, T)`` int64 token ids.
        periods: ``(B,)`` period ``p`` of each sequence.
        starts: ``(B,)`` where each repeating block starts (``s``): tokens ``0..s+p-1`` are
            distinct, and ``tokens[i] = tokens[i - p]`` for every ``i >= s + p``.
    """

    tokens: Tensor
    periods: Tensor
    starts: Tensor


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected {name} to be an int >= 1 but found {value!r}")
    return value


def repeated_random_tokens(
    batch: int,
    seq_len: int,
    vocab_size: int,
    min_period: int,
    max_period: int,
    generator: torch.Generator,
    random_start: bool = False,
) -> RepeatedTokens:
    """Random sequences with a repeating block: ``tokens[i] = tokens[i - p]`` for ``i >= s + p``.

    Each sequence draws its period ``p`` uniformly from ``min_period..max_period``. Without
    ``random_start`` the block starts at ``s = 0`` (the whole sequence is periodic); with it, ``s``
    is uniform in ``0..seq_len - 2p`` and positions before ``s`` hold random lead-in tokens, so the
    first occurrence of a token can be anywhere. Tokens ``0..s+p-1`` are distinct, so every token
    of the repeated part has one unambiguous earlier occurrence per period, and neither a fixed
    position nor a fixed offset predicts the next token: only looking back at the previous
    occurrence does.

    Args:
        batch, seq_len (``T``), vocab_size (``V``): sizes.
        min_period, max_period: period range; ``max_period < seq_len`` so that a repeat fits.
        generator: the source of randomness (the same state gives the same batch).
        random_start: draw the start ``s`` of the repeating block. Default: ``False``.

    Returns:
        :class:`RepeatedTokens`.
    """
    for name, value in (("batch", batch), ("seq_len", seq_len), ("vocab_size", vocab_size),
                        ("min_period", min_period), ("max_period", max_period)):
        _check_int(name, value)
    if not min_period <= max_period < seq_len:
        raise ValueError(f"expected min_period <= max_period < seq_len={seq_len} but found "
                         f"min_period={min_period}, max_period={max_period}")
    distinct_needed = seq_len - min_period if random_start else max_period
    if distinct_needed > vocab_size:
        raise ValueError(f"expected at most vocab_size={vocab_size} distinct tokens per sequence but "
                         f"seq_len={seq_len}, min_period={min_period}, max_period={max_period} need "
                         f"{distinct_needed}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"expected generator to be a torch.Generator but found {type(generator).__name__}")
    periods = torch.randint(min_period, max_period + 1, (batch,), generator=generator)  # (B,)
    if random_start:
        room = (seq_len - 2 * periods).clamp(min=0) + 1                                 # (B,) choices of s
        starts = (torch.rand(batch, generator=generator) * room).long().clamp(max=room - 1)
    else:
        starts = torch.zeros(batch, dtype=torch.long)
    perms = torch.rand(batch, vocab_size, generator=generator).argsort(dim=1)          # (B, V) distinct ids
    i = torch.arange(seq_len)[None, :]                                                  # (1, T)
    s, p = starts[:, None], periods[:, None]                                            # (B, 1)
    src = torch.where(i < s + p, i, s + (i - s) % p)                                    # (B, T) source slot
    return RepeatedTokens(tokens=perms.gather(1, src), periods=periods, starts=starts)


def two_copy_tokens(batch: int, vocab_size: int, seq_len: int, generator: torch.Generator) -> RepeatedTokens:
    """A block of ``seq_len // 2`` distinct random tokens, twice (the standard induction probe)."""
    period = max(1, seq_len // 2)
    return repeated_random_tokens(batch, seq_len, vocab_size, period, period, generator)


def preset_induction_input(vocab_size: int = 64, seq_len: int = 32, seed: int = 0) -> Tensor:
    """The dashboard's preset: one block of ``seq_len // 2`` distinct random tokens, twice.

    Returns ``(1, seq_len)`` int64 token ids; the same seed always gives the same tokens. In the
    second copy an induction head draws a stripe ``seq_len // 2 - 1`` below the diagonal (each
    query looks at the token after its first occurrence), a previous-token head the first
    sub-diagonal. Pass the model's ``vocab_size`` and ``max_len``.
    """
    for name, value in (("vocab_size", vocab_size), ("seq_len", seq_len)):
        _check_int(name, value)
    if seq_len < 2:
        raise ValueError(f"expected seq_len >= 2 so that a token can repeat but found seq_len={seq_len}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"expected seed to be an int but found {type(seed).__name__}")
    return two_copy_tokens(1, vocab_size, seq_len, torch.Generator().manual_seed(seed)).tokens


# ------------------------------------------------------------------------------------------------
# Scores from weights. ``weights`` is one layer's (B, H, T, T) or a list of them (one per layer).

def _stack(weights: Tensor | Sequence[Tensor]) -> Tensor:
    """One layer ``(B, H, T, T)`` -> ``(1, B, H, T, T)``; a list of layers -> ``(L, B, H, T, T)``."""
    if isinstance(weights, Tensor):
        weights = [weights]
    if len(weights) == 0 or not all(isinstance(w, Tensor) for w in weights):
        raise TypeError("expected weights to be a (B, H, T, T) tensor or a non-empty list of them")
    shapes = {tuple(w.shape) for w in weights}
    if len(shapes) != 1:
        raise ValueError(f"expected every layer's weights to have the same shape but found {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 4 or shape[-1] != shape[-2]:
        raise ValueError(f"expected weights of shape (B, H, T, T) but found {shape}")
    return torch.stack([w.detach().float() for w in weights])


def previous_token_scores(weights: Tensor | Sequence[Tensor]) -> Tensor:
    """Mean weight on key ``i - 1`` over queries ``i >= 1`` and the batch: ``(L, H)``."""
    w = _stack(weights)                                              # (L, B, H, T, T)
    T = w.shape[-1]
    if T < 2:
        raise ValueError(f"expected T >= 2 for a previous-token score but found T={T}")
    prev = torch.diagonal(w, offset=-1, dim1=-2, dim2=-1)             # (L, B, H, T-1): w[i, i-1]
    return prev.mean(dim=(1, 3))


def _periods_starts(periods: Tensor, starts: Tensor | None, B: int, T: int) -> tuple[Tensor, Tensor]:
    periods = torch.as_tensor(periods).long().reshape(-1)
    starts = torch.zeros_like(periods) if starts is None else torch.as_tensor(starts).long().reshape(-1)
    if periods.shape != (B,) or starts.shape != (B,):
        raise ValueError(f"expected periods and starts of shape (B,) = ({B},) but found "
                         f"{tuple(periods.shape)} and {tuple(starts.shape)}")
    if bool((periods < 1).any()) or bool((starts < 0).any()) or bool((starts + periods >= T).any()):
        raise ValueError(f"expected periods >= 1, starts >= 0 and start + period < T={T} (a repeat must "
                         f"fit) but found periods {periods.tolist()} and starts {starts.tolist()}")
    return periods, starts


def induction_scores(weights: Tensor | Sequence[Tensor], periods: Tensor | None = None,
                     starts: Tensor | None = None, *, tokens: Sequence[Any] | None = None) -> Tensor:
    """Mean weight from query ``i >= s + p`` to key ``i - p + 1``: ``(L, H)``.

    Query ``i`` in the repeated part sees token ``x[i]`` again (it was at ``i - p``); an induction
    head attends to the position right after that occurrence, ``i - p + 1``, whose token is what
    comes next.

    Args:
        weights: ``(B, H, T, T)`` or a list of them, on sequences with ``x[i] = x[i - p]`` for
            ``i >= s + p`` (see :func:`repeated_random_tokens`).
        periods: ``(B,)`` the period ``p`` of every sequence.
        starts: ``(B,)`` the start ``s`` of every repeating block. Default: all 0.
        tokens: instead of ``periods``/``starts``, the ``T`` tokens of any sequence (a sentence, a
            prompt): see :func:`token_induction_scores` (NaN where no token repeats). Default: ``None``.
    """
    if tokens is not None:
        if periods is not None or starts is not None:
            raise ValueError("expected either periods (and starts) or tokens but found both")
        return token_induction_scores(weights, tokens)
    if periods is None:
        raise TypeError("expected periods (a designed repeat) or tokens= (any sequence) but found neither")
    w = _stack(weights)                                              # (L, B, H, T, T)
    nL, B, H, T, _ = w.shape
    p, s = _periods_starts(periods, starts, B, T)
    i = torch.arange(T)[None, :]                                     # (1, T) query positions
    valid = i >= (s + p)[:, None]                                    # (B, T) repeated part
    target = (i - p[:, None] + 1).clamp(min=0)                       # (B, T) key after previous occurrence
    idx = target[None, :, None, :, None].expand(nL, B, H, T, 1)
    picked = w.gather(-1, idx).squeeze(-1)                           # (L, B, H, T)
    mask = valid[None, :, None, :].to(picked.dtype)                  # (1, B, 1, T)
    return (picked * mask).sum(dim=(1, 3)) / mask.sum()


def attention_entropy(weights: Tensor | Sequence[Tensor]) -> Tensor:
    """Mean over queries and batch of ``-sum_s w log w`` in nats: ``(L, H)``."""
    w = _stack(weights)                                              # (L, B, H, T, T)
    ent = -(w * torch.log(w.clamp_min(1e-30))).sum(dim=-1)            # (L, B, H, T); 0 log 0 = 0
    return ent.mean(dim=(1, 3))


def next_token_accuracy(logits: Tensor, data: RepeatedTokens) -> tuple[float, float]:
    """Next-token accuracy before the repeat and in the repeated part.

    Query ``i`` predicts ``tokens[i + 1]``. First part: queries ``i < s + p - 1`` (the next token is
    new: chance is about ``1 / V``). Repeated part: queries ``i >= s + p`` (the next token followed
    the previous occurrence of the current one). Query ``s + p - 1``, where the first repeat begins
    (unknowable without knowing the period), is in neither.

    Args:
        logits: ``(B, T, V)``.
        data: the :class:`RepeatedTokens` the logits were computed from.

    Returns:
        ``(accuracy_first, accuracy_repeated)`` as floats in ``[0, 1]`` (NaN for an empty part).
    """
    tokens = data.tokens
    B, T, _ = logits.shape
    if tuple(tokens.shape) != (B, T):
        raise ValueError(f"expected logits (B, T, V) to match tokens {tuple(tokens.shape)} but found "
                         f"{tuple(logits.shape)}")
    p, s = _periods_starts(data.periods, data.starts, B, T)
    pred = logits[:, :-1].argmax(dim=-1)                             # (B, T-1) predictions for i+1
    hit = (pred == tokens[:, 1:]).float()                            # (B, T-1)
    i = torch.arange(T - 1)[None, :]
    boundary = (s + p)[:, None]                                      # (B, 1) first repeated position
    first, repeated = i < boundary - 1, i >= boundary
    return (hit[first].mean().item() if bool(first.any()) else float("nan"),
            hit[repeated].mean().item() if bool(repeated.any()) else float("nan"))


# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeadMetrics:
    """One head's scores; ``is_previous_token_head`` / ``is_induction_head`` flag the best head."""

    layer: int
    head: int
    previous_token: float
    induction: float
    entropy: float
    is_previous_token_head: bool = False
    is_induction_head: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def head_metrics_table(prev: Tensor, induction: Tensor, entropy: Tensor,
                       min_score: float = 0.5) -> list[HeadMetrics]:
    """Rows ``(layer, head)`` from ``(L, H)`` score tensors, flagging the best head of each kind.

    The head with the highest previous-token (induction) score over all layers is flagged when its
    score is at least ``min_score``, so an untrained model gets no flags. Default: 0.5.
    """
    if not (prev.shape == induction.shape == entropy.shape) or prev.dim() != 2:
        raise ValueError(f"expected three (L, H) score tensors of one shape but found {tuple(prev.shape)}, "
                         f"{tuple(induction.shape)}, {tuple(entropy.shape)}")
    H = prev.shape[1]

    def best(scores: Tensor) -> tuple[int, int] | None:
        flat = int(scores.argmax())
        return divmod(flat, H) if scores.reshape(-1)[flat] >= min_score else None

    best_prev, best_ind = best(prev), best(induction)
    return [
        HeadMetrics(layer=l, head=h, previous_token=float(prev[l, h]), induction=float(induction[l, h]),
                    entropy=float(entropy[l, h]), is_previous_token_head=(l, h) == best_prev,
                    is_induction_head=(l, h) == best_ind)
        for l in range(prev.shape[0]) for h in range(H)
    ]


def head_metrics(model, batch: int = 256, seed: int = 1234, min_score: float = 0.5) -> list[HeadMetrics]:
    """Score every head of ``model`` on seeded two-copy sequences (see :func:`two_copy_tokens`).

    Each sequence is a block of ``max_len // 2`` distinct random tokens, twice, so "the previous
    occurrence" of every token in the second copy is unambiguous.

    Args:
        model: a ``TinyTransformer`` (anything with ``vocab_size``, ``max_len`` and
            ``model(idx) -> (logits, weights)``).
        batch: sequences to average over. Default: 256.
        seed: seed of the sequences; fixed so the numbers are reproducible. Default: 1234.
        min_score: see :func:`head_metrics_table`. Default: 0.5.

    Returns:
        a list with one :class:`HeadMetrics` per ``(layer, head)``, layer-major.
    """
    data = two_copy_tokens(batch, model.vocab_size, model.max_len, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        _, weights = model(data.tokens, need_weights=True)          # L x (B, H, T, T)
    return head_metrics_table(previous_token_scores(weights),
                              induction_scores(weights, data.periods, data.starts),
                              attention_entropy(weights), min_score=min_score)


# ------------------------------------------------------------------------------------------------
# Roles of heads in real models, on any sequence

ROLES = ("previous-token", "next-token", "first-token", "last-token", "self", "induction")


def next_token_scores(weights: Tensor | Sequence[Tensor]) -> Tensor:
    """Mean weight on key ``i + 1`` over queries ``i < T - 1`` and the batch: ``(L, H)``.

    Only bidirectional models (BERT) can score here; a causal model scores 0.
    """
    w = _stack(weights)                                              # (L, B, H, T, T)
    T = w.shape[-1]
    if T < 2:
        raise ValueError(f"expected T >= 2 for a next-token score but found T={T}")
    nxt = torch.diagonal(w, offset=1, dim1=-2, dim2=-1)               # (L, B, H, T-1): w[i, i+1]
    return nxt.mean(dim=(1, 3))


def self_scores(weights: Tensor | Sequence[Tensor]) -> Tensor:
    """Mean weight a query puts on its own position (the diagonal): ``(L, H)``."""
    w = _stack(weights)                                              # (L, B, H, T, T)
    return torch.diagonal(w, dim1=-2, dim2=-1).mean(dim=(1, 3))


def sink_scores(weights: Tensor | Sequence[Tensor], key: int) -> Tensor:
    """Mean weight on one key position over every *other* query: ``(L, H)``.

    ``key=0`` is the first-token sink ([CLS], BOS), ``key=-1`` the last-token sink ([SEP] at the end
    of a BERT input). The key's own query is left out (in a causal model query 0 can only see key 0).
    """
    w = _stack(weights)                                              # (L, B, H, T, T)
    T = w.shape[-1]
    if isinstance(key, bool) or not isinstance(key, int) or not -T <= key < T:
        raise ValueError(f"expected key to be an int position in -{T}..{T - 1} but found {key!r}")
    if T < 2:
        raise ValueError(f"expected T >= 2 for a sink score but found T={T}")
    k = key % T
    others = torch.arange(T) != k                                    # (T,) queries other than the key
    return w[..., others, k].mean(dim=(1, 3))


def token_induction_scores(weights: Tensor | Sequence[Tensor], tokens: Sequence[Any]) -> Tensor:
    """Induction on any token sequence: mean weight from query ``i`` to key ``j + 1``, where ``j < i``
    is the latest earlier position holding the same token as ``i`` (``j + 1 <= i``): ``(L, H)``.

    Queries whose token has not occurred before are skipped; with no repeated token at all (a plain
    sentence) the score is NaN, not an error. On a block of distinct tokens repeated once this equals
    :func:`induction_scores` with the block's period.

    Args:
        weights: ``(B, H, T, T)`` (or a list per layer) on sequences that all hold ``tokens``.
        tokens: ``T`` tokens (ids or strings): only equality is used.
    """
    w = _stack(weights)                                              # (L, B, H, T, T)
    nL, B, H, T, _ = w.shape
    toks = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
    if len(toks) != T:
        raise ValueError(f"expected {T} tokens (one per position) but found {len(toks)}")
    last: dict[Any, int] = {}
    queries, keys = [], []
    for i, t in enumerate(toks):
        if t in last:
            queries.append(i)
            keys.append(last[t] + 1)
        last[t] = i
    if not queries:
        return torch.full((nL, H), float("nan"))
    picked = w[..., torch.tensor(queries), torch.tensor(keys)]       # (L, B, H, n)
    return picked.mean(dim=(1, 3))


def role_scores(weights: Tensor | Sequence[Tensor], tokens: Sequence[Any] | None = None) -> dict[str, Tensor]:
    """Every role score (:data:`ROLES`) and ``"entropy"`` of every head, each ``(L, H)``.

    Args:
        weights: ``(B, H, T, T)`` or a list per layer, ``T >= 2``.
        tokens: the ``T`` tokens, for ``"induction"`` (NaN without them or without a repeat).
    """
    w = _stack(weights)                                              # (L, B, H, T, T)
    L, _, H, T, _ = w.shape
    layers = list(w)
    return {
        "previous-token": previous_token_scores(layers),
        "next-token": next_token_scores(layers),
        "first-token": sink_scores(layers, 0),
        "last-token": sink_scores(layers, -1),
        "self": self_scores(layers),
        "induction": (token_induction_scores(layers, tokens) if tokens is not None
                      else torch.full((L, H), float("nan"))),
        "entropy": attention_entropy(layers),
    }


@dataclass(frozen=True)
class HeadRoles:
    """One head's role scores (``NaN`` = not measurable) and its strongest role.

    ``role`` is the role with the highest score when that score is at least ``min_score`` of
    :func:`head_roles_table`, else ``None``; ``role_score`` is that score.
    """

    layer: int
    head: int
    previous_token: float
    next_token: float
    first_token: float
    last_token: float
    self_token: float
    induction: float
    entropy: float
    role: str | None
    role_score: float

    def as_dict(self) -> dict:
        return asdict(self)


def head_roles_table(scores: dict[str, Tensor], min_score: float = 0.5) -> list[HeadRoles]:
    """Rows ``(layer, head)`` (layer-major) from :func:`role_scores`, each head's strongest role flagged.

    Args:
        scores: ``{role: (L, H)}`` for every name in :data:`ROLES` plus ``"entropy"``.
        min_score: a head gets a role only when its best score reaches this. Default: 0.5.
    """
    missing = [k for k in (*ROLES, "entropy") if k not in scores]
    if missing:
        raise ValueError(f"expected scores for {list(ROLES) + ['entropy']} but found no {missing}")
    shapes = {tuple(scores[k].shape) for k in (*ROLES, "entropy")}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"expected (L, H) score tensors of one shape but found {sorted(shapes)}")
    L, H = shapes.pop()
    stack = torch.stack([scores[r].float() for r in ROLES]).nan_to_num(nan=-1.0)  # (roles, L, H)
    best_score, best_role = stack.max(dim=0)                          # (L, H) each
    rows = []
    for l in range(L):
        for h in range(H):
            s = float(best_score[l, h])
            rows.append(HeadRoles(
                layer=l, head=h, previous_token=float(scores["previous-token"][l, h]),
                next_token=float(scores["next-token"][l, h]), first_token=float(scores["first-token"][l, h]),
                last_token=float(scores["last-token"][l, h]), self_token=float(scores["self"][l, h]),
                induction=float(scores["induction"][l, h]), entropy=float(scores["entropy"][l, h]),
                role=ROLES[int(best_role[l, h])] if s >= min_score else None, role_score=s))
    return rows
