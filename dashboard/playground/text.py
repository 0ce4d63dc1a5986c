"""The Playground's explanations (Markdown), shared by the live view and the static export."""
from __future__ import annotations

__all__ = ["TEXT"]

TEXT = {
    "intro": """
**What you are looking at:** an untrained multi-head self-attention layer (this project's PyTorch library, weights drawn from
the seed) applied to a sequence of tokens. Change the controls on the left and every view below
is recomputed and redrawn in place. Hover a map for exact numbers; click a row to select a query.
""",
    "heads": """
### Attention heads
One map per head. **Row i** is query i, **column j** is key j, and the colour is the share of
query i's attention that goes to key j, so every row adds up to 1. Each head has its own
projection weights and spreads its attention in its own way. With the causal mask on, the
upper-right triangle is black: no query reads a later token. The dashed line marks the selected
query; click any row to select another.
""",
    "query": """
### One query across heads
The selected query's row from every head, stacked: where each head sends that token's
attention. Click a row here to show that head step by step below.
""",
    "query_static": """
### One query across heads
The selected query's row from every head, stacked: where each head sends that token's
attention. Pick the query with the slider or a click on any head's map.
""",
    "single": """
### Step by step: one query in one head
How one row of a map comes about, read top to bottom over the same keys. (1) The query vector
is compared with every key by a dot product, (2) the scores are divided by √D so their spread
does not grow with the head size, (3) the keep-mask removes blocked keys (grey bars), (4) a
softmax turns the kept scores into weights that sum to 1, and (5, right) the output is the
weight-averaged value vectors, one bar per dimension of the head. Each band has its own scale
(its numbers on the left); hover a bar for its exact value.
""",
    "causal": """
### Causal mask and the invariance test
A model that generates text one token at a time must not use tokens it has not produced yet.
The **keep-mask** lets query i read keys 0..i only. The proof is an experiment: keep tokens
**0..L**, replace every token after **L** with random values and run the layer again. If the
mask works, the outputs at positions 0..L do not move at all (green bars stay at 0) while later
positions do (orange). Turn the causal mask off and the test fails: earlier outputs now depend
on later tokens, and every position 0..L that moved is drawn red.
""",
    "caveat": """
**A caution.** Attention weights say where each position *reads from*, not *why* a model does
what it does: the values that are read, the other layers and the output projection matter as
much. Read the maps as a view of one mechanism, not as an explanation of a model's behaviour.
""",
}
