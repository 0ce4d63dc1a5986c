"""The "Leak detector" tab's state: a zoo model, an allowed relation, ``T``, seed and the report.

``LeakState`` holds the knobs and the current :class:`~attention.verify.LeakReport`
(``ld.report``). The expensive part, the dependency map and the prefix sweep, runs once per
(model, ``T``, seed) through :func:`attention.verify.check_entry` and is cached. Up to
``EXACT_MAX_SEQ_LEN`` (``B·T·E <= EXACT_LIMIT``, as on the command line) the map is exact and
changing only the allowed relation re-checks the cached map with
:func:`~attention.verify.leaks_in_map` (no model call); above it, up to ``MAX_SEQ_LEN``, the map
is the fast verdict's (``leak_report(fast=True)``: float32 pattern, float64 only for rows with a
forbidden entry), whose float64 rows depend on the relation, so a relation change there runs the
fast verdict again (cached per relation). ``ld.n_computes`` counts the real computations. ``LeakState(served=[path, ...])`` also
offers Hugging Face model directories (the app's ``--hf PATH``) as ``"hf:<path>"``: loaded once
per process with :func:`attention.hf.verify_target`, checked on rows of their own embedding table
against their own relation (causal or full, from the config). Headless:
``dashboard.leaks.LeakDetector`` is the displayable version.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import lru_cache

import param
import torch

from attention.hf import embedding_inputs, resolve_model_path, verify_target
from attention.verify import (LeakReport, check_entry, dense_allowed, leak_report, leaks_in_map,
                              sweep_checked_prefixes)
from attention.verify.report import EXACT_LIMIT
from attention.zoo import ZOO, parse_relation

from ..common.recompute import Recomputing

__all__ = ["BUGGY", "CORRECT", "EXACT_MAX_SEQ_LEN", "LeakResult", "LeakState", "MAX_SEQ_LEN", "OWN",
           "RELATION_CHOICES", "SERVED", "rechecked", "served_target"]

DIM = 16                     # features of every zoo model and input
BATCH = 2                    # input batch (BatchNorm in training mode needs more than one item)
MAX_SEQ_LEN = 128            # above EXACT_MAX_SEQ_LEN the fast verdict (B*T float32 probes)
EXACT_MAX_SEQ_LEN = EXACT_LIMIT // (BATCH * DIM)   # 32: the exact map (B*T*E backward passes) up to here
MIN_SEQ_LEN = max(4, *(e.min_seq_len for e in ZOO.values()))   # every bug can show
CACHE_SIZE = 16              # cached (model, T, seed) measurements per session

OWN = "own"
RELATION_CHOICES: dict[str, str] = {
    "the model's own relation": OWN,
    "causal": "causal",
    "sliding window, 2 keys": "sliding:2",
    "sliding window, 3 keys": "sliding:3",
    "sliding window, 4 keys": "sliding:4",
    "prefix-LM, prefix 3": "prefix:3",
    "prefix-LM, prefix 6": "prefix:6",
    "packed documents of 4 tokens": "document",
    "full (anything may depend on anything)": "full",
}
"""Allowed relations offered in the tab: label -> ``OWN`` or a :func:`attention.zoo.parse_relation` spec."""

SERVED = "hf:"               # model keys of Hugging Face models given to the server: "hf:<path>"
BUGGY = [name for name, e in ZOO.items() if e.buggy]
CORRECT = [name for name, e in ZOO.items() if not e.buggy]


def rechecked(report: LeakReport, allowed, name: str | None = None) -> LeakReport:
    """``report`` checked against another allowed relation, from its cached map (no model call).

    The dependency map and the sweep values stay; the leaks (:func:`leaks_in_map` with the report's
    own ``atol``), the allowed keep-mask, the checked prefixes and the verdict follow ``allowed``.
    Equals :func:`~attention.verify.leaks.leak_report` run with ``allowed`` on the same model and
    input, for relations that do not depend on the batch item.

    Args:
        report: a report whose ``dep_map`` is the ``(T, T)`` map.
        allowed: ``mask_mod`` or ``(T, T)`` keep-mask (``True`` = output may depend on input).
        name: readable name of the relation. Default: ``allowed.__name__`` (or "dense mask").
    """
    T, S = report.dep_map.shape
    keep = dense_allowed(allowed, T, S, batch=2)      # (T, S), or (2, T, S) if it reads the batch item
    if keep.dim() != 2:
        raise ValueError(f"expected an allowed relation that is the same for every batch item but "
                         f"found {name or getattr(allowed, '__name__', 'a mask')} of shape "
                         f"{tuple(keep.shape)}: use leak_report with the model instead")
    leaks = leaks_in_map(report.dep_map, keep, report.atol)
    checked = sweep_checked_prefixes(keep)
    moved = bool((checked & (report.sweep > report.sweep_atol)).any())
    if name is None:
        name = getattr(allowed, "__name__", None) or f"dense mask {tuple(keep.shape)}"
    return replace(report, leaks=leaks, allowed_dense=keep, sweep_checked=checked,
                   allowed_name=name, passed=not leaks and not moved)


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _served_target(path: str):
    return verify_target(path)


def served_target(path: str):
    """``attention.hf.verify_target(path)`` (embeddings model, E, max positions, causal), loaded once
    per process."""
    with _LOAD_LOCK:
        return _served_target(path)


def _valid_served(paths) -> list[str]:
    """The served paths that are model directories (checked without loading: config.json and
    safetensors weights); others are left out of the picker."""
    ok = []
    for p in paths:
        try:
            if resolve_model_path(p) is not None:
                ok.append(str(p))
        except (ValueError, TypeError):
            pass
    return ok


@dataclass(frozen=True, eq=False)
class LeakResult:
    """A report with the parameters it was computed for (what the view shows, all of one piece)."""

    model: str
    allowed: str
    seq_len: int
    seed: int
    report: LeakReport

    @property
    def entry(self):
        """The :class:`attention.zoo.ZooEntry` of ``model`` (None for a served Hugging Face model)."""
        return ZOO.get(self.model)


class LeakState(Recomputing):
    """Zoo model, allowed relation, ``T`` and seed, and the leak report for them (``ld.report``).

    The model (weights from ``seed``) runs on a random ``(BATCH, seq_len, DIM)`` input drawn from
    ``seed`` (see :func:`attention.verify.check_entry`). ``n_computes`` counts dependency maps
    actually computed: changing only ``allowed`` never adds one, nor does returning to a
    (model, T, seed) seen before in this session.
    """

    model = param.Selector(objects=list(ZOO), default="off_by_one_causal_mask", label="Zoo model",
                           doc="""
        A small sequence model from the bug zoo: ten realistic leaks and ten correct twins. Each
        has a relation it must respect (usually causal).""")
    allowed = param.Selector(objects=RELATION_CHOICES, default=OWN, label="Allowed relation", doc="""
        Which (output i, input j) pairs may depend on each other. The model's own relation is the
        one it was written for; pick another to see what it would break (or satisfy).""")
    seq_len = param.Integer(default=12, bounds=(MIN_SEQ_LEN, MAX_SEQ_LEN), label="Sequence length T",
                            doc="""
        Positions T of the random input. Up to T = 32 the map is exact (one backward pass per
        output entry); above, up to 128, it is the fast verdict (one random probe per output
        position: the exact pattern, estimated norms, float64 for the rows that leak).""")
    seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="Random seed", doc="""
        Seeds the model's weights, the random input and the sweep's perturbations.""")

    report = param.ClassSelector(class_=LeakReport, constant=True, precedence=-1, doc="""
        The leak report for the current parameters (read-only).""")
    result = param.ClassSelector(class_=LeakResult, constant=True, precedence=-1, doc="""
        ``report`` together with the parameters it belongs to (read-only).""")

    _inputs = ("model", "allowed", "seq_len", "seed")

    def __init__(self, served=(), **params):
        self.n_computes = 0
        self._cache: OrderedDict[tuple, LeakReport] = OrderedDict()
        self.served = [SERVED + p for p in _valid_served(served)]
        model = params.pop("model", None)
        super().__init__(**params)
        if self.served:
            self.param.model.objects = list(ZOO) + self.served
        if model is not None:
            with param.parameterized.discard_events(self):
                self.model = model
        self.refresh()

    @property
    def entry(self):
        """The :class:`attention.zoo.ZooEntry` of the selected model (None for a served one)."""
        return ZOO.get(self.model)

    def relation(self, allowed: str | None = None, seq_len: int | None = None,
                 model: str | None = None):
        """An allowed relation (default: the selected one) at ``seq_len`` as a ``mask_mod``."""
        allowed = self.allowed if allowed is None else allowed
        T = self.seq_len if seq_len is None else seq_len
        model = self.model if model is None else model
        if allowed == OWN:
            if model.startswith(SERVED):
                return parse_relation("causal" if served_target(model[len(SERVED):])[3] else "full", T)
            return ZOO[model].allowed(T)
        return parse_relation(allowed, T)

    def is_fast(self, model: str | None = None, seq_len: int | None = None) -> bool:
        """Whether (model, T) (default: the selected ones) gets the fast verdict rather than the
        exact map: ``BATCH·T·E > EXACT_LIMIT``, the command line's rule (``T > 32`` for the zoo)."""
        model = self.model if model is None else model
        T = self.seq_len if seq_len is None else seq_len
        E = served_target(model[len(SERVED):])[1] if model.startswith(SERVED) else DIM
        return BATCH * T * E > EXACT_LIMIT

    def measurement(self, model: str | None = None, seq_len: int | None = None,
                    seed: int | None = None, allowed: str = OWN) -> LeakReport:
        """The report for (model, T, seed) (default: the selected ones) against the model's own
        relation, or against ``allowed`` (computed with that relation: the fast verdict's float64
        rows depend on it): cached, or computed now."""
        key = (self.model if model is None else model, self.seq_len if seq_len is None else seq_len,
               self.seed if seed is None else seed) + (() if allowed == OWN else (allowed,))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        name, T, seed = key[:3]
        fast = self.is_fast(name, T)
        relation = None if allowed == OWN and not name.startswith(SERVED) else self.relation(allowed, T, name)
        with self._working():
            if name.startswith(SERVED):             # a Hugging Face model given with --hf
                f = served_target(name[len(SERVED):])[0]
                x = embedding_inputs(f, BATCH, T, torch.Generator().manual_seed(seed))
                report = leak_report(f, x, relation, seed=seed, fast=fast)
            else:
                report = check_entry(name, seq_len=T, dim=DIM, batch=BATCH, seed=seed, allowed=relation,
                                     fast=fast)
            self.n_computes += 1
        self._cache[key] = report
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return report

    def _recompute(self) -> None:
        """The report for the current parameters (called by ``refresh()``, latest wins)."""
        model, allowed, T, seed = self.model, self.allowed, self.seq_len, self.seed
        if allowed == OWN or self.is_fast(model, T):
            report = self.measurement(model, T, seed, allowed)
        else:                                       # the exact map, re-checked (no model call)
            report = rechecked(self.measurement(model, T, seed), self.relation(allowed, T, model))
        with param.edit_constant(self):
            self.param.update(report=report, result=LeakResult(model, allowed, T, seed, report))
