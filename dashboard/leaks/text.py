"""The "Leak detector" tab's explanations (Markdown) and stylesheet."""
from __future__ import annotations

__all__ = ["CSS", "TEXT"]

TEXT = {
    "intro": """
**Does any output see an input it must not?** Pick a model from the bug zoo, ten realistic
mistakes and ten correct twins, and the relation it has to respect. The detector measures how
strongly every output position depends on every input position, then flags each dependency the
relation forbids. The verdict is about this model *against the relation you pick*: a correct
causal model fails a 3-key sliding window, and any model passes "full".
""",
    "map": """
### Dependency map
Cell (i, j) is **‖∂y_i/∂x_j‖**: how much output i moves when input j is nudged, over all features
(the norm of that block of the Jacobian). White means there is no path from input j to output i
at all. The **orange outline** encloses what the relation allows; every **red ×** is a dependency
outside it, a leak, and the ring marks the largest. Hover a cell for its numbers.

**Exact up to T = 32.** The map comes from autograd on a float64 copy of the model: every row of
the Jacobian, computed in batches with `torch.func.vmap`. A blocked path gives an exact zero, so
anything above 10⁻⁹ of the strongest dependency is a real path, not rounding noise.

**The fast verdict above T = 32** (up to 128; the title says "fast verdict"): one random probe per
output position, in float32, gives the exact pattern (a blocked path is exactly 0 in any
precision, a real one is nonzero with probability 1); the rows holding a nonzero forbidden cell are
recomputed in float64 and judged as above. Allowed cells show float32 estimates of the norms. A
relation change there runs the check again, since which rows are recomputed depends on it.

**Why not read attention weights?** Weights describe one attention layer. The map describes the
whole model from input to output: LayerNorm, MLPs, convolutions, cumulative sums, BatchNorm
statistics pooled over time, residual paths. Five of the ten bugs here contain no attention at
all, and a sixth has a textbook causal layer: its mistake is the relation, not the mask.
""",
    "sweep": """
### Prefix sweep
The black-box cross-check: for every prefix L, replace all inputs after L with fresh random
values, run the model and measure how far outputs 0..L move (all L in one batched call).
**Green**: the relation forbids outputs 0..L to see anything after L, and they stayed within
the tolerance. **Red**: they moved. **Grey**: not checked, because the relation lets some output
≤ L see a later input (inside a prefix-LM's prefix, for instance; under "full", every L), or
because there is no input after L (the last L). The sweep only tests the
future: a leak into the past (a window one too wide, a packed document reading the previous one)
shows in the map alone.
""",
    "gallery": """
### The mask zoo
The relations as keep-masks at this T (row = output / query, column = input / key; blue = may
depend). Each is a predicate `mask_mod(b, h, q_idx, kv_idx)` in FlexAttention's form, composable
with `and_masks` / `or_masks`; any of them can be an attention layer's mask or the allowed
relation of the check above.
""",
}

CSS = """
.ap-leak-sentence { font-size: 14px; font-family: system-ui, sans-serif; }
.ap-leak-pair { font-weight: 600; color: #b91c1c; }
.ap-leak-ok { font-weight: 600; color: #15803d; }
.ap-leak-card { font-family: system-ui, sans-serif; font-size: 13px; line-height: 1.4;
                background: #f8fafc; border: 1px solid #e2e8f0; border-radius: 6px; padding: 8px 10px; }
.ap-leak-tag { display: inline-block; font-size: 11px; font-weight: 700; letter-spacing: .04em;
               padding: 1px 7px; border-radius: 4px; color: white; margin-bottom: 4px; }
.ap-leak-tag.ap-buggy { background: #dc2626; }
.ap-leak-tag.ap-correct { background: #16a34a; }
.ap-leak-rel { color: #475569; margin-top: 6px; }
"""
