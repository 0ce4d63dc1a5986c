"""``python -m attention.train``: train the tiny transformer whose heads learn induction.

The task: random token sequences that repeat with a period drawn per sequence (6..16 by default,
``T = 32``, ``V = 64``), the repeating block starting after a random-length lead-in of random
tokens. Tokens before the first repeat are unpredictable; every later token is the one that
followed the previous occurrence of the current token. A fixed period would let the model read the
answer off positions; a random one forces a previous-token head (layer 0) and an induction head
(layer 1) that looks for "the token after the last time I saw this token". The random start
matters too: if every block started at position 0, first occurrences would all sit in positions
0..15 and the layer-0 head would only need to look back there (trained that way it does: about 0.9
on the previous token for queries 1..15 and under 0.1 after); with the start drawn it looks back
from queries 1..25 (about 0.97), every position an induction head can need with periods >= 6.

Everything is seeded: data from a ``torch.Generator``, initialisation from ``torch.manual_seed``
inside :func:`train` (the global RNG state is restored afterwards), and a fixed thread count, so
the same seed gives the same weights on the same machine. The defaults regenerate the shipped
``attention/weights/induction.safetensors``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .head_metrics import HeadMetrics, head_metrics, next_token_accuracy, repeated_random_tokens
from .models import INDUCTION_WEIGHTS, TinyTransformer, TransformerConfig, save_model

__all__ = ["TrainConfig", "TrainResult", "evaluate", "main", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (stored in the weights file's metadata)."""

    seed: int = 0
    steps: int = 4000
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 200
    min_period: int = 6
    max_period: int = 16
    random_start: bool = True
    threads: int = 1
    eval_batch: int = 1024


@dataclass
class TrainResult:
    """What :func:`train` returns: the model (eval mode) and its final evaluation."""

    model: TinyTransformer
    config: TrainConfig
    loss: float                    # cross-entropy on the evaluation batch, all positions
    train_loss: float              # mean training loss over the last 100 steps
    accuracy_first: float          # next-token accuracy, first period (chance ~ 1/V)
    accuracy_repeated: float       # next-token accuracy, repeated part
    heads: list[HeadMetrics] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict:
        """JSON-able figures (stored in the weights file's metadata as ``metrics``)."""
        return {
            "loss": round(self.loss, 6),
            "train_loss": round(self.train_loss, 6),
            "accuracy_first": round(self.accuracy_first, 6),
            "accuracy_repeated": round(self.accuracy_repeated, 6),
            "heads": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.as_dict().items()}
                      for h in self.heads],
        }


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def evaluate(model: TinyTransformer, cfg: TrainConfig) -> tuple[float, float, float, list[HeadMetrics]]:
    """Loss and accuracies on a seeded batch of the training task, and :func:`head_metrics`.

    The evaluation batch comes from its own generator (``seed + 1_000_003``), never from the
    training stream; head metrics use the fixed two-copy probe of ``head_metrics``.
    """
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    data = repeated_random_tokens(cfg.eval_batch, model.max_len, model.vocab_size, cfg.min_period,
                                  cfg.max_period, gen, random_start=cfg.random_start)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, _ = model(data.tokens, need_weights=False)          # (B, T, V)
    V = model.vocab_size
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), data.tokens[:, 1:].reshape(-1)).item()
    acc_first, acc_rep = next_token_accuracy(logits, data)
    heads = head_metrics(model)
    model.train(was_training)
    return loss, acc_first, acc_rep, heads


def train(cfg: TrainConfig | None = None, model_config: TransformerConfig | None = None,
          progress: bool = False) -> TrainResult:
    """Train a :class:`TinyTransformer` on the repeated-tokens task and evaluate it.

    Args:
        cfg: training settings. Default: ``TrainConfig()`` (the shipped weights).
        model_config: model size. Default: ``TransformerConfig()``.
        progress: show a tqdm progress bar on stderr. Default: ``False``.

    The global RNG state and thread count are restored on return.
    """
    cfg = TrainConfig() if cfg is None else cfg
    model_config = TransformerConfig() if model_config is None else model_config
    if cfg.steps < 1 or cfg.batch < 1 or cfg.threads < 1 or cfg.eval_batch < 1:
        raise ValueError(f"expected steps, batch, threads and eval_batch >= 1 but found {cfg}")
    if cfg.max_period >= model_config.max_len:
        raise ValueError(f"expected max_period < max_len={model_config.max_len} so every sequence "
                         f"repeats, but found max_period={cfg.max_period}")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)                              # initialisation only
            model = TinyTransformer(model_config)
        gen = torch.Generator().manual_seed(cfg.seed)                # training data stream
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                                weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg.steps, cfg.warmup))
        V = model.vocab_size
        recent: list[float] = []
        model.train()
        bar = _progress(cfg.steps, progress)
        for step in range(cfg.steps):
            data = repeated_random_tokens(cfg.batch, model.max_len, V, cfg.min_period,
                                          cfg.max_period, gen, random_start=cfg.random_start)
            logits, _ = model(data.tokens, need_weights=False)       # (B, T, V), fused kernel
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), data.tokens[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            recent = (recent + [loss.item()])[-100:]
            if bar is not None:
                bar.update(1)
                if step % 50 == 0 or step == cfg.steps - 1:
                    bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}")
        if bar is not None:
            bar.close()
        model.eval()
        loss_eval, acc_first, acc_rep, heads = evaluate(model, cfg)
    finally:
        torch.set_num_threads(threads_before)
    return TrainResult(model=model, config=cfg, loss=loss_eval, train_loss=sum(recent) / len(recent),
                       accuracy_first=acc_first, accuracy_repeated=acc_rep, heads=heads,
                       wall_s=time.perf_counter() - start)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)


def format_report(result: TrainResult) -> str:
    """The human-readable final report of ``python -m attention.train``."""
    V = result.model.vocab_size
    lines = [
        f"steps {result.config.steps}, seed {result.config.seed}, {result.wall_s:.1f} s "
        f"({result.config.threads} thread{'s' if result.config.threads > 1 else ''})",
        f"loss {result.loss:.4f} (eval), {result.train_loss:.4f} (train, last 100 steps)",
        f"next-token accuracy: first period {result.accuracy_first:.1%} (chance {1 / V:.1%}), "
        f"repeated part {result.accuracy_repeated:.1%}",
        "",
        f"{'layer':>5} {'head':>4} {'prev-token':>10} {'induction':>9} {'entropy':>7}",
    ]
    for h in result.heads:
        mark = " previous-token head" if h.is_previous_token_head else ""
        mark += " induction head" if h.is_induction_head else ""
        lines.append(f"{h.layer:>5} {h.head:>4} {h.previous_token:>10.3f} {h.induction:>9.3f} "
                     f"{h.entropy:>7.3f}{mark}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    d, m = TrainConfig(), TransformerConfig()
    p = argparse.ArgumentParser(
        prog="python -m attention.train",
        description="Train the tiny induction transformer on repeated random tokens and save it "
                    "as safetensors. The defaults regenerate the shipped weights.")
    p.add_argument("--seed", type=int, default=d.seed, help=f"data and init seed (default {d.seed})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"sequences per step (default {d.batch})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak AdamW learning rate (default {d.lr})")
    p.add_argument("--threads", type=int, default=d.threads,
                   help=f"torch CPU threads; fixed so results do not depend on the machine (default {d.threads})")
    p.add_argument("--min-period", type=int, default=d.min_period,
                   help=f"shortest period of the repeating block (default {d.min_period})")
    p.add_argument("--max-period", type=int, default=d.max_period,
                   help=f"longest period, below the model's max_len of {m.max_len} (default {d.max_period})")
    p.add_argument("--d-ff", type=int, default=m.d_ff, help=f"MLP size, 0 = attention only (default {m.d_ff})")
    p.add_argument("--out", type=Path, default=INDUCTION_WEIGHTS,
                   help="where to write the safetensors file (default: the shipped weights)")
    p.add_argument("--no-save", action="store_true", help="train and report only")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "threads", "min_period", "max_period"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.min_period > args.max_period:
        parser.error(f"--min-period {args.min_period} is larger than --max-period {args.max_period}")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    if args.d_ff < 0:
        parser.error(f"--d-ff must be >= 0, got {args.d_ff}")
    cfg = TrainConfig(seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr,
                      min_period=args.min_period, max_period=args.max_period, threads=args.threads)
    model_config = TransformerConfig(d_ff=args.d_ff)
    try:
        result = train(cfg, model_config, progress=not args.quiet)
    except ValueError as err:
        parser.error(str(err))
    if not args.no_save:
        save_model(result.model, args.out, metadata={
            "train": asdict(cfg), "metrics": result.summary(), "torch": torch.__version__})
    if args.json:
        print(json.dumps({"wall_s": round(result.wall_s, 2), "train": asdict(cfg), **result.summary(),
                          "out": None if args.no_save else str(args.out)}, indent=2))
    else:
        print(format_report(result))
        if not args.no_save:
            print(f"\nsaved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
