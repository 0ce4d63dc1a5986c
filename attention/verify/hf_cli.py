"""``python -m attention.verify --hf NAME_OR_PATH``: the leak detector on a Hugging Face model.

Loads the model through :func:`attention.hf.verify_target` (local directory, bundled MiniLM, or a hub
id when online; safetensors only), takes ``E`` from its config, draws the input from its own
token-embedding table (:func:`attention.hf.embedding_inputs`) and checks its embeddings model
(``inputs_embeds -> last_hidden_state``) like ``--model`` does: same report, same exit status.
``--attn eager|sdpa`` picks the attention implementation (they can differ in what positions see);
``--padding LENS`` checks a right-padded batch (one real length per batch item).

Every loading problem (not a model directory, no safetensors weights, ``--seq-len`` beyond the
model's positions, a forward that rejects ``inputs_embeds``) is a :class:`CLIError`: one line, exit 2.

Shape legend: ``B`` batch, ``T`` positions, ``E`` embedding (hidden size).
"""
from __future__ import annotations

import time
from typing import Any

import torch

from .cli_report import run_check
from .cli_setup import CLIError, one_line, parse_allowed, stacked_window_reach

__all__ = ["hf_relation", "parse_padding", "run_hf"]


def parse_padding(spec: str, T: int) -> list[int]:
    """``--padding 8,5`` -> ``[8, 5]``: one real length per batch item, each in ``1..T``."""
    try:
        lens = [int(v) for v in spec.split(",")]
    except ValueError:
        raise CLIError(f"expected --padding as comma-separated lengths (e.g. 8,5) but found {spec!r}") from None
    if not lens or any(not 1 <= n <= T for n in lens):
        raise CLIError(f"expected --padding lengths in 1..T={T} (--seq-len) but found {spec!r}")
    return lens


def hf_relation(model: Any, causal: bool, padding: list[int] | None) -> tuple[str, str]:
    """``(relation spec, reason)`` for ``--allowed auto`` from the model's config.

    A causal model with ``config.sliding_window = W`` (and ``use_sliding_window`` not false) over
    ``N`` layers: ``sliding:N*(W-1)+1`` (the reach of the stacked windows); a causal model:
    ``causal``; an encoder: ``full``, or ``padding:LENS`` with ``--padding``.
    """
    config = model.config
    window = getattr(config, "sliding_window", None)
    if causal and isinstance(window, int) and not isinstance(window, bool) and window > 0 \
            and getattr(config, "use_sliding_window", True) is not False:
        n = int(getattr(config, "num_hidden_layers", 1) or 1)
        reach = stacked_window_reach(window, n)
        return f"sliding:{reach}", (f"config.sliding_window = {window} over {n} layers reaches "
                                    f"{n}*({window}-1)+1 = {reach} positions")
    if causal:
        return "causal", "the config says causal (a decoder)"
    if padding is not None:
        spec = "padding:" + ",".join(map(str, padding))
        return spec, "the config says bidirectional (an encoder) and --padding gives the real lengths"
    return "full", "the config says bidirectional (an encoder)"


def run_hf(args) -> int:
    """Check ``--hf`` against ``--allowed``; 0 pass, 1 leak (usage problems raise :class:`CLIError`)."""
    from ..hf import embedding_inputs, verify_target                # transformers only on this path

    T = args.seq_len
    for name, v in (("--seq-len", T), ("--top", args.top),
                    ("--probes", 1 if args.probes is None else args.probes)):
        if v < 1:
            raise CLIError(f"expected {name} >= 1 but found {v}")
    if args.output is not None:
        raise CLIError("--output applies to --model only: --hf checks the last hidden state")
    if args.input_scale != "1":
        raise CLIError("--input-scale applies to --model only: --hf draws rows of the model's own "
                       "embedding table")
    padding = None if args.padding is None else parse_padding(args.padding, T)
    B = len(padding) if padding is not None else (1 if args.batch is None else args.batch)
    if args.batch is not None and padding is not None and args.batch != len(padding):
        raise CLIError(f"--padding gives {len(padding)} lengths, so the batch is {len(padding)}, but "
                       f"--batch is {args.batch}")
    if B < 1:
        raise CLIError(f"expected --batch >= 1 but found {B}")
    t0 = time.perf_counter()
    try:
        model, dim, limit, causal = verify_target(args.hf, attn=args.attn, padding=padding, seq_len=T)
    except (ValueError, TypeError, OSError) as err:             # ModelNotAvailable is a ValueError
        raise CLIError(f"--hf {args.hf}: {one_line(err)}") from None
    if args.dim is not None and args.dim != dim:
        raise CLIError(f"--dim {args.dim} does not match the model's hidden size {dim} (from its "
                       f"config); leave --dim out with --hf")
    config = model.model.config
    notes = [f"E = {dim} from the config ({type(model.model).__name__}); attention "
             f"implementation: {config._attn_implementation}; max positions: {limit}",
             f"loaded in {time.perf_counter() - t0:.1f} s (the first use of transformers in a process "
             f"imports it: most of that)"]
    if args.allowed == "auto":
        spec, reason = hf_relation(model.model, causal, padding)
        notes.append(f"auto -> {spec}: {reason}")
    else:
        spec = args.allowed
    allowed, note = parse_allowed(spec, T, B, model)
    notes += [note] if note else []
    if padding is not None:
        notes.append(f"attention_mask: right padding, real lengths {padding}")
    x = embedding_inputs(model, B, T, torch.Generator().manual_seed(args.seed)).float()
    notes.append(f"input: random rows of the embedding table (get_input_embeddings()), rms "
                 f"{float(x.square().mean().sqrt()):.3g}")
    return run_check(f"--hf {args.hf}", model, x, allowed, args, notes)
