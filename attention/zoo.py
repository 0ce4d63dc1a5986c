"""The bug zoo: small sequence models with the information leaks people really write, and fixed twins.

Every entry names one mistake (or one correct pattern), says in a sentence what goes wrong, gives the
relation the model must respect (a ``mask_mod`` from :mod:`attention.masks`: output position
``q_idx`` may depend on input position ``kv_idx``) and builds the model from a seed. The leak
detector (:func:`attention.verify.leaks.find_leaks`) must catch every buggy entry and pass every
correct one; ``python -m attention.verify --zoo`` prints that table.

    >>> entry = ZOO["off_by_one_causal_mask"]
    >>> model = entry.build(dim=16, seed=0)            # an nn.Module: x (B, T, 16) -> y (B, T, 16)
    >>> allowed = entry.allowed(12)                     # the relation at T = 12 (here: causal)

Shape legend: ``B`` batch, ``T`` positions, ``E`` features (``dim``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masks import (
    MaskMod,
    and_masks,
    causal_mask_mod,
    causal_mod,
    document_mask,
    full_mod,
    materialize_mask,
    padding_mod,
    prefix_lm,
    sliding_window,
)
from .multihead import MultiHeadAttention

__all__ = [
    "DOC_LEN",
    "PREFIX",
    "RELATIONS",
    "WINDOW",
    "ZOO",
    "ZooEntry",
    "check_entry",
    "document_ids",
    "kv_block_size",
    "mask_gallery",
    "parse_relation",
]

WINDOW = 3      # declared sliding-window width (keys per query, itself included)
PREFIX = 3      # prefix-LM: bidirectional over positions 0..PREFIX-1
DOC_LEN = 4     # packed documents of DOC_LEN tokens each: ids 0,0,0,0,1,1,1,1,...


def document_ids(T: int, device: torch.device | str | None = None) -> Tensor:
    """``(T,)`` document id of every position when documents of ``DOC_LEN`` tokens are packed."""
    return torch.arange(T, device=device) // DOC_LEN


def kv_block_size(T: int) -> int:
    """Size ``S`` of the KV block in the KV-cache entries: the last ``ceil(T / 2)`` positions."""
    return T - T // 2


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model.

    Attributes:
        name: identifier named for the mistake (or the correct pattern).
        description: one sentence: what the code does and why it leaks (or why it does not).
        buggy: ``True`` if the model breaks its relation.
        allowed: ``T -> mask_mod``, the relation the model must respect at sequence length ``T``.
        factory: ``(dim, seed) -> nn.Module`` mapping ``x (B, T, dim) -> y (B, T, dim)``.
        min_seq_len: shortest ``T`` at which a buggy entry's leak can show. Default: 2.
    """

    name: str
    description: str
    buggy: bool
    allowed: Callable[[int], MaskMod]
    factory: Callable[[int, int], nn.Module]
    min_seq_len: int = 2

    def build(self, dim: int = 16, seed: int = 0) -> nn.Module:
        """The model with weights drawn from ``seed`` (the global RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.factory(dim, seed)


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------
def _heads(dim: int, preferred: int = 2) -> int:
    return preferred if dim % preferred == 0 else 1


class MaskedSelfAttention(nn.Module):
    """Self-attention with a mask built from ``T`` at every call: ``mask_fn(T) -> keep-mask or mask_mod``."""

    def __init__(self, dim: int, mask_fn: Callable[[int], object], num_heads: int | None = None,
                 num_kv_heads: int | None = None) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads or _heads(dim), num_kv_heads=num_kv_heads)
        self.mask_fn = mask_fn

    def forward(self, x: Tensor) -> Tensor:                        # (B, T, E) -> (B, T, E)
        return self.attn(x, mask=self.mask_fn(x.shape[1]), need_weights=False)[0]


class CausalSelfAttention(nn.Module):
    """``MultiHeadAttention(..., is_causal=True)``: the textbook causal layer."""

    def __init__(self, dim: int, num_heads: int | None = None, num_kv_heads: int | None = None) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads or _heads(dim), num_kv_heads=num_kv_heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(x, is_causal=True, need_weights=False)[0]


class KVBlockAttention(nn.Module):
    """Every position attends to a KV block holding the last ``S`` positions (``T - S + k`` is slot ``k``).

    ``align="bottom_right"`` is right for this layout (slot ``k`` is visible to query ``i`` when
    ``T - S + k <= i``); ``"top_left"`` is the bug.
    """

    def __init__(self, dim: int, align: str) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, _heads(dim))
        self.align = align

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        S = kv_block_size(T)
        kv = x[:, T - S:]                                           # (B, S, E): the cached block
        mask = causal_mask_mod(self.align, T=T, S=S) if self.align == "bottom_right" else causal_mod
        out, _ = self.attn(x, kv, kv, mask=mask, need_weights=False)  # (B, T, E); rows with no key -> 0
        return x + out


class Block(nn.Module):
    """Pre-norm GPT block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``; LayerNorm over features."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x), is_causal=True, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class BlockStack(nn.Module):
    """``n_layers`` pre-norm blocks and a final LayerNorm (a tiny GPT without embeddings)."""

    def __init__(self, dim: int, num_heads: int = 4, n_layers: int = 2) -> None:
        super().__init__()
        heads = num_heads if dim % num_heads == 0 else 1
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)


class SequenceNorm(nn.Module):
    """The bug: normalizes every feature over the *sequence* axis (dim 1) instead of features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)                          # (B, 1, E): over all positions
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return self.proj((x - mean) / torch.sqrt(var + 1e-5))


class BatchNormOverTime(nn.Module):
    """``nn.BatchNorm1d`` on ``(B, E, T)``: statistics over batch *and time* in training mode."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.bn(x.transpose(1, 2)).transpose(1, 2))  # (B, E, T) -> (B, T, E)


class Conv(nn.Module):
    """Temporal convolution of width ``kernel``; ``causal=True`` pads ``kernel - 1`` on the left only."""

    def __init__(self, dim: int, kernel: int = 3, causal: bool = True) -> None:
        super().__init__()
        self.kernel, self.causal = kernel, causal
        self.conv = nn.Conv1d(dim, dim, kernel, padding=0 if causal else kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        h = x.transpose(1, 2)                                       # (B, E, T)
        if self.causal:
            h = F.pad(h, (self.kernel - 1, 0))                      # left padding only
        return self.conv(h).transpose(1, 2)                         # (B, T, E)


class CumulativeMean(nn.Module):
    """Running mean over positions: ``y_i = mean(x_0..x_i)`` (or, reversed, over ``x_i..x_{T-1}``)."""

    def __init__(self, dim: int, reverse: bool = False) -> None:
        super().__init__()
        self.reverse = reverse
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        count = torch.arange(1, T + 1, device=x.device, dtype=x.dtype).view(1, T, 1)
        if self.reverse:
            s = x.flip(1).cumsum(dim=1).flip(1)                     # suffix sums: x_i + ... + x_{T-1}
            count = count.flip(1)
        else:
            s = x.cumsum(dim=1)                                     # prefix sums: x_0 + ... + x_i
        return self.proj(s / count)


class MeanPoolContext(nn.Module):
    """The bug: adds a context vector pooled over the *whole* sequence to every position."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(x.mean(dim=1, keepdim=True))          # (B, 1, E) broadcast to all T


# ------------------------------------------------------------------------------------------------
# The zoo
# ------------------------------------------------------------------------------------------------
def _causal(T: int) -> MaskMod:
    return causal_mod


def _window(T: int) -> MaskMod:
    return sliding_window(WINDOW)


def _prefix(T: int) -> MaskMod:
    return prefix_lm(PREFIX)


def _documents(T: int) -> MaskMod:
    mod = document_mask(document_ids(T))
    mod.__name__ = f"document_mask({DOC_LEN}-token docs)"       # short name for tables
    return mod


def _off_by_one(T: int) -> Tensor:
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal=1)     # diagonal=1: one step too far


def _transposed(T: int) -> Tensor:
    return torch.ones(T, T, dtype=torch.bool).tril().T             # (S, T) layout read as (T, S)


def _batchnorm(train: bool):
    def make(dim: int, seed: int) -> nn.Module:
        m = BatchNormOverTime(dim)
        with torch.no_grad():                                       # running stats as after training
            m.bn.running_mean.uniform_(-0.5, 0.5)
            m.bn.running_var.uniform_(0.5, 1.5)
        return m.train(train)
    return make


_ENTRIES = [
    # ---- buggy --------------------------------------------------------------------------------
    ZooEntry(
        "off_by_one_causal_mask",
        "Builds the causal mask with tril(diagonal=1), so every position also attends to the next "
        "token.",
        True, _causal, lambda d, s: MaskedSelfAttention(d, _off_by_one).eval()),
    ZooEntry(
        "transposed_mask",
        "Uses the transpose of the causal keep-mask (upper instead of lower triangle), so each "
        "position attends to itself and every later token instead of the earlier ones.",
        True, _causal, lambda d, s: MaskedSelfAttention(d, _transposed).eval()),
    ZooEntry(
        "kv_cache_top_left_mask",
        "Attends to a KV block holding the last S of T positions with a top-left causal mask; the "
        "block needs bottom-right alignment (slot k is position T-S+k), so top-left lets position "
        "i see up to T-S tokens ahead.",
        True, _causal, lambda d, s: KVBlockAttention(d, "top_left").eval(), min_seq_len=2),
    ZooEntry(
        "norm_over_sequence_axis",
        "Normalizes each feature with the mean and variance over the sequence axis (dim=1) instead "
        "of the feature axis, so every position is scaled by statistics of future tokens.",
        True, _causal, lambda d, s: SequenceNorm(d).eval()),
    ZooEntry(
        "batchnorm_over_time_train",
        "Applies BatchNorm1d over time in training mode: the batch statistics pool every position "
        "of every sequence, future tokens included.",
        True, _causal, _batchnorm(train=True)),
    ZooEntry(
        "causal_conv_padded_both_sides",
        "A 'causal' Conv1d of width 3 with padding=1 pads both sides, so each output mixes in the "
        "next token; pad kernel-1 on the left only.",
        True, _causal, lambda d, s: Conv(d, 3, causal=False).eval()),
    ZooEntry(
        "reversed_cumsum",
        "Takes the cumulative sum over the flipped sequence (a suffix sum), so position i "
        "aggregates tokens i..T-1 instead of 0..i.",
        True, _causal, lambda d, s: CumulativeMean(d, reverse=True).eval()),
    ZooEntry(
        "packed_without_document_mask",
        f"Packs documents of {DOC_LEN} tokens into one row but uses a plain causal mask, so the first "
        f"tokens of a document attend to the end of the previous one.",
        True, _documents, lambda d, s: CausalSelfAttention(d).eval(), min_seq_len=DOC_LEN + 1),
    ZooEntry(
        "sliding_window_one_too_wide",
        f"Declares a sliding window of {WINDOW} keys but builds it with {WINDOW + 1} (q - kv <= W "
        f"instead of q - kv < W), so each position sees one token too far back.",
        True, _window, lambda d, s: MaskedSelfAttention(d, lambda T: sliding_window(WINDOW + 1)).eval(),
        min_seq_len=WINDOW + 1),
    ZooEntry(
        "mean_pool_whole_sequence",
        "Adds a context vector mean-pooled over the whole sequence to every position, so each "
        "output depends on all tokens, future ones included.",
        True, _causal, lambda d, s: MeanPoolContext(d).eval()),
    # ---- correct ------------------------------------------------------------------------------
    ZooEntry(
        "causal_mha",
        "Multi-head self-attention with is_causal=True: position i attends to positions 0..i.",
        False, _causal, lambda d, s: CausalSelfAttention(d).eval()),
    ZooEntry(
        "causal_gqa",
        "Grouped-query attention (4 query heads sharing 2 key/value heads) with a causal mask.",
        False, _causal, lambda d, s: CausalSelfAttention(d, _heads(d, 4), _heads(d, 2)).eval()),
    ZooEntry(
        "gpt_block_stack",
        "Two pre-norm GPT blocks (LayerNorm over features, causal attention, MLP) and a final "
        "LayerNorm: every op is per position except the causal attention.",
        False, _causal, lambda d, s: BlockStack(d, num_heads=4, n_layers=2).eval()),
    ZooEntry(
        "causal_conv_left_padded",
        "Conv1d of width 3 after padding kernel-1 positions on the left only: output i sees "
        "inputs i-2..i.",
        False, _causal, lambda d, s: Conv(d, 3, causal=True).eval()),
    ZooEntry(
        "cumsum",
        "Running mean via a cumulative sum over the sequence: position i aggregates tokens 0..i.",
        False, _causal, lambda d, s: CumulativeMean(d, reverse=False).eval()),
    ZooEntry(
        "sliding_window",
        f"Self-attention with sliding_window({WINDOW}): each position sees itself and the "
        f"{WINDOW - 1} tokens before it.",
        False, _window, lambda d, s: MaskedSelfAttention(d, _window).eval()),
    ZooEntry(
        "document_mask",
        f"Packed documents of {DOC_LEN} tokens with a document mask: causal attention within each "
        f"document, nothing across documents.",
        False, _documents, lambda d, s: MaskedSelfAttention(d, _documents).eval()),
    ZooEntry(
        "prefix_lm",
        f"Prefix-LM attention: bidirectional over the first {PREFIX} positions, causal after them.",
        False, _prefix, lambda d, s: MaskedSelfAttention(d, _prefix).eval()),
    ZooEntry(
        "kv_cache_bottom_right_mask",
        "Attends to a KV block holding the last S of T positions with a bottom-right causal mask: "
        "slot k (position T-S+k) is visible only from position T-S+k on.",
        False, _causal, lambda d, s: KVBlockAttention(d, "bottom_right").eval()),
    ZooEntry(
        "batchnorm_over_time_eval",
        "The same BatchNorm1d over time in eval mode: running statistics make it a per-position "
        "affine map, so it cannot leak.",
        False, _causal, _batchnorm(train=False)),
]

ZOO: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}
"""Every zoo entry by name, buggy ones first."""


# ------------------------------------------------------------------------------------------------
# Pure-data helpers for the CLI and the dashboard's leak-detector view
# ------------------------------------------------------------------------------------------------
RELATIONS: dict[str, Callable[[int], MaskMod]] = {
    "causal": _causal,
    "sliding_window": _window,
    "prefix_lm": _prefix,
    "document": _documents,
    "full": lambda T: full_mod,
}
"""Allowed relations a user can pick, by name: ``T -> mask_mod`` with the zoo's constants."""


def parse_relation(spec: str, T: int) -> MaskMod:
    """An allowed relation from text: a :data:`RELATIONS` name, ``sliding:W``, ``prefix:P`` or
    ``document:IDS`` (one id per position, comma-separated, e.g. ``document:0,0,0,1,1,2``).

    Raises:
        ValueError: naming the spec and what was expected.
    """
    if not isinstance(spec, str):
        raise TypeError(f"expected the relation as a string but found {type(spec).__name__}")
    if spec in RELATIONS:
        return RELATIONS[spec](T)
    kind, sep, arg = spec.partition(":")
    try:
        if sep and kind == "sliding":
            return sliding_window(int(arg))
        if sep and kind == "prefix":
            return prefix_lm(int(arg))
        if sep and kind == "document":
            ids = [int(v) for v in arg.split(",")]
            if len(ids) != T:
                raise ValueError(f"document:IDS needs one id per position (T={T}) but found {len(ids)} ids")
            return document_mask(ids)
    except (ValueError, TypeError) as err:
        raise ValueError(f"bad relation {spec!r}: {err}") from None
    raise ValueError(f"expected a relation among {sorted(RELATIONS)} or causal, sliding:W, prefix:P, "
                     f"document:IDS but found {spec!r}")


def mask_gallery(T: int = 12) -> dict[str, Tensor]:
    """The mask zoo as small dense keep-masks ``(T_q, S)`` (``True`` = may attend), by name.

    For pictures: causal (both alignments, bottom-right with ``T // 2`` queries on ``T`` keys),
    sliding window, prefix-LM, packed documents, key padding (length ``T - 3``) and a composition.
    """
    Tq = max(1, T // 2)
    docs = document_mask(document_ids(T))
    mods = {
        "causal": (causal_mod, T, T),
        "causal (bottom-right)": (causal_mask_mod("bottom_right", T=Tq, S=T), Tq, T),
        f"sliding_window({WINDOW})": (sliding_window(WINDOW), T, T),
        f"prefix_lm({PREFIX})": (prefix_lm(PREFIX), T, T),
        f"document ({DOC_LEN}-token docs)": (docs, T, T),
        f"padding (length {max(T - 3, 0)})": (and_masks(causal_mod, padding_mod([max(T - 3, 0)])), T, T),
        f"sliding_window({WINDOW}) & document": (and_masks(sliding_window(WINDOW), docs), T, T),
    }
    return {name: materialize_mask(mod, 1, 1, q, k)[0, 0] for name, (mod, q, k) in mods.items()}


def check_entry(
    name: str,
    *,
    seq_len: int = 12,
    dim: int = 16,
    batch: int = 2,
    seed: int = 0,
    allowed: MaskMod | Tensor | str | None = None,
):
    """Build zoo entry ``name``, draw a random ``(batch, seq_len, dim)`` input and return its
    :class:`~attention.verify.leaks.LeakReport` against ``allowed`` (default: the entry's own
    relation; a string goes through :func:`parse_relation`).
    """
    from .verify.leaks import leak_report

    if name not in ZOO:
        raise ValueError(f"expected a zoo entry among {sorted(ZOO)} but found {name!r}")
    entry = ZOO[name]
    if seq_len < entry.min_seq_len:
        raise ValueError(f"expected seq_len >= {entry.min_seq_len} for {name} but found {seq_len}")
    if allowed is None:
        allowed = entry.allowed(seq_len)
    elif isinstance(allowed, str):
        allowed = parse_relation(allowed, seq_len)
    x = torch.randn(batch, seq_len, dim, generator=torch.Generator().manual_seed(seed))
    return leak_report(entry.build(dim, seed), x, allowed, seed=seed)
