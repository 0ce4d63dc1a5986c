"""``python -m attention.verify --model pkg.module:factory`` and ``--zoo``: the leak detector's CLI.

``--model`` imports the user's factory (from the caller's working directory), builds the model and a
random ``(B, T, E)`` input, and runs the dependency map and the prefix sweep against the allowed
relation. It prints PASS or the leaking pairs (largest first), so it can gate a CI job. ``--zoo``
runs every entry of :mod:`attention.zoo` (:mod:`~attention.verify.zoo_cli`).

Exit status: 0 pass; 1 leak (or a zoo entry misjudged); 2 usage error (a factory that cannot be
imported, is not callable, or builds something that does not take ``(B, T, E)``; a bad option);
3 no verdict (NaN or inf in the outputs, the dependency map or the sweep: never a pass).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from torch import nn

from .calling import NonFiniteError, with_output
from .cli_report import EXIT_CODES, EXIT_HELP, format_report, run_check
from .cli_setup import (
    RELATION_HELP,
    CLIError,
    build_model,
    infer_dim,
    load_factory,
    make_input,
    one_line,
    parse_allowed,
    takes_dim,
)
from .hf_cli import run_hf
from .report import EXACT_LIMIT
from .zoo_cli import run_zoo

__all__ = ["EXIT_CODES", "build_parser", "format_report", "main", "run_model"]

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m attention.verify",
        description=(
            "Leak detector. --model pkg.module:factory builds your model (imported from the current "
            "directory; the factory returns an nn.Module or a callable x (B, T, E) -> y (B, T, ...), "
            "(y, ...), a dict or an object with last_hidden_state; it gets dim=, seq_len= and seed= if "
            "it has parameters with those names), feeds it a random (B, T, E) input and checks, from "
            "the dependency map ||dy_i/dx_j|| and a perturbation sweep over every prefix, that no "
            "output depends on an input the allowed relation forbids. Default: the fast verdict, K=1 "
            "random probe per output position in float32 (a blocked path is exactly 0 in any "
            "precision, a real dependency nonzero with probability 1), B*T*K vector-Jacobian products "
            "run as one batched forward + backward over copies of x; rows with a forbidden entry are "
            "recomputed in float64 for their magnitudes. Exact block norms (B*T*min(E, F) products, "
            f"F = output features, float64) with --exact, or by default when B*T*E <= {EXACT_LIMIT}. --zoo "
            "runs the built-in bug zoo and prints a caught/missed table."
        ),
        epilog=EXIT_HELP,
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--model", metavar="PKG.MODULE:FACTORY",
                      help="factory to import, e.g. mypkg.models:make_model")
    mode.add_argument("--zoo", action="store_true", help="run the bug zoo (attention.zoo)")
    mode.add_argument("--hf", metavar="NAME_OR_PATH",
                      help="a Hugging Face transformers model: a local directory (config.json + "
                           "model.safetensors), sentence-transformers/all-MiniLM-L6-v2 (bundled) or a hub "
                           "id (online only); E from its config, input rows from its embedding table, "
                           "its last hidden state checked through inputs_embeds")
    p.add_argument("--attn", choices=("eager", "sdpa"), default="eager",
                   help="--hf: attention implementation to check (they can differ; default: eager)")
    p.add_argument("--padding", default=None, metavar="LENS",
                   help="--hf: check a right-padded batch, one real length per item (e.g. 8,5; the "
                        "batch is their number); pad positions are masked with attention_mask")
    p.add_argument("--seq-len", type=int, default=12,
                   help="T, positions of the random input (default: 12)")
    p.add_argument("--dim", type=int, default=None,
                   help="E, features of the random input (default: 16 for a factory with a dim "
                        "parameter and for --zoo; otherwise read from the model: d_model, "
                        "hidden_size, embed_dim, ... or its first Linear/LayerNorm)")
    p.add_argument("--batch", type=int, default=None,
                   help="B, batch size of the random input (default: 2; 1 with --hf)")
    p.add_argument("--allowed", default="causal", metavar="RELATION",
                   help=RELATION_HELP + " (default: causal; --model only)")
    p.add_argument("--input-scale", default="1", metavar="S|embedding",
                   help="standard deviation of the random input's entries, or 'embedding' for rows "
                        "of the model's token-embedding table (the scale of real inputs; a random "
                        "N(0, 1) input has ~18x the norm of MiniLM's embeddings) (default: 1)")
    p.add_argument("--output", default=None, metavar="NAME",
                   help="which output to check when the model returns several: a dict key or "
                        "attribute (e.g. logits) or a tuple index (default: the tensor itself, the "
                        "first of a tuple, last_hidden_state of a dict or ModelOutput)")
    p.add_argument("--no-sweep", action="store_true",
                   help="skip the prefix sweep (dependency map only), e.g. for a model that only "
                        "takes a fixed batch size")
    p.add_argument("--probes", type=int, default=None, metavar="K",
                   help="K random probes per output position for the fast verdict (default 1): "
                        "B*T*K vector-Jacobian products instead of B*T*min(E, F), the same leaks (with "
                        "probability 1), estimated magnitudes")
    p.add_argument("--exact", action="store_true",
                   help="exact block norms ||dy_i/dx_j|| in float64 (B*T*min(E, F) vector-Jacobian "
                        f"products; the default only when B*T*E <= {EXACT_LIMIT})")
    p.add_argument("--top", type=int, default=10, help="leaking pairs to print (default: 10)")
    p.add_argument("--atol", type=float, default=None,
                   help="dependency threshold (default: 1e-9 x the largest dependency in float64, "
                        "1e-5 x in float32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input and the model (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def run_model(args) -> int:
    """Check ``--model`` against ``--allowed``; 0 pass, 1 leak."""
    if args.batch is None:
        args.batch = 2
    T = args.seq_len
    for name, v in (("--seq-len", T), ("--dim", 1 if args.dim is None else args.dim),
                    ("--batch", args.batch), ("--top", args.top),
                    ("--probes", 1 if args.probes is None else args.probes)):
        if v < 1:
            raise CLIError(f"expected {name} >= 1 but found {v}")
    for flag, value in (("--attn", args.attn != "eager"), ("--padding", args.padding is not None)):
        if value:
            raise CLIError(f"{flag} applies to --hf only")
    obj = load_factory(args.model)
    dim = args.dim if args.dim is not None or not takes_dim(obj) else 16
    model = build_model(obj, args.model, dim, T, args.seed)
    notes = []
    if dim is None:
        dim, where = infer_dim(model)
        notes.append(f"E = {dim} from {where}")
    allowed, note = parse_allowed(args.allowed, T, args.batch, model)
    notes += [note] if note else []
    x, how = make_input(model, args.batch, T, dim, args.input_scale, args.seed)
    notes.append(f"input: {how}, rms {float(x.square().mean().sqrt()):.3g}")
    if isinstance(model, nn.Module):
        model = model.float()                                       # the random input is float32
    if args.output is not None:
        model = with_output(model, args.output)
        notes.append(f"output checked: {args.output}")
    return run_check(args.model, model, x, allowed, args, notes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.zoo:
            return run_zoo(args)
        return run_hf(args) if args.hf is not None else run_model(args)
    except CLIError as err:
        msg, code = one_line(err), EXIT_CODES["usage"]
        if args.json:
            print(json.dumps({"passed": False, "error": msg}))
        print(f"error: {msg}", file=sys.stderr)
        return code
    except NonFiniteError as err:
        msg = one_line(err)
        if args.json:
            print(json.dumps({"passed": False, "verdict": "undecided", "error": msg,
                              "where": err.where, "positions": err.positions}))
        else:
            print(f"NO VERDICT (exit 3): {msg}")
        return EXIT_CODES["undecided"]


if __name__ == "__main__":
    sys.exit(main())
