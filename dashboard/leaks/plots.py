"""Pure functions from a leak report to what the "Leak detector" tab shows (HoloViews, Bokeh backend).

No model runs here: every number comes from a :class:`attention.verify.leaks.LeakReport` (the
dependency map, the allowed keep-mask, the leaks and the prefix sweep) or from the dense keep-masks
of :func:`attention.zoo.mask_gallery`. The functions build small elements (``T <= 32``):

- :func:`dependency_heatmap`: the map ``‖∂y_i/∂x_j‖`` as an ``hv.HeatMap`` (one cell per pair, so
  the hover can say whether the pair is allowed), the allowed region's boundary as ``hv.Segments``,
  a red × on every leak and a ring around the largest one;
- :func:`sweep_chart`: max |Δ| of outputs ``0..L`` per prefix ``L``, one dot per ``L`` coloured by
  what the relation demands there (checked and unchanged, checked and moved, not checked);
- :func:`mask_thumbnail`: one keep-mask of the mask zoo;
- :func:`verdict_html`, :func:`first_leak_sentence`: the PASS/FAIL badge and the largest leak in words.

Orientation (unit-tested): output ``i`` is on the y axis with output 0 at the top (``invert_yaxis``),
input ``j`` on the x axis, as the playground draws queries and keys.
"""
from __future__ import annotations

import html

import holoviews as hv
import numpy as np
from bokeh.palettes import Blues256
from torch import Tensor

from attention.verify import LeakReport

from ..common.frames import steady_yaxis
from ..common.style import BLOCKED_COLOR, KEEP_COLOR, verdict_badge_html
from .state import SERVED, LeakResult, served_target

__all__ = [
    "ALLOWED_COLOR",
    "CHECKED_COLOR",
    "DECADES",
    "FAILED_COLOR",
    "LEAK_COLOR",
    "MAP_SIZE",
    "THUMB_SIZE",
    "UNCHECKED_COLOR",
    "allowed_outline",
    "dependency_heatmap",
    "dependency_table",
    "description_html",
    "first_leak_html",
    "first_leak_sentence",
    "map_title",
    "mask_thumbnail",
    "patch_relation",
    "sweep_chart",
    "sweep_table",
    "sweep_title",
    "verdict_html",
]

DEP_CMAP = list(Blues256[::-1][40:200])  # light blue (weak) -> mid blue (strong); white is "no path"
NO_PATH_COLOR = "#ffffff"
ALLOWED_COLOR = "#f59e0b"             # outline of the allowed region
LEAK_COLOR = "#dc2626"                # × on every leak, ring on the largest
CHECKED_COLOR = "#16a34a"             # sweep: checked prefix, outputs 0..L unchanged
FAILED_COLOR = "#dc2626"              # sweep: checked prefix, outputs 0..L moved
UNCHECKED_COLOR = "#94a3b8"           # sweep: the relation lets outputs <= L see inputs > L,
                                      # or L is the last position (no input after it)
DECADES = 6                           # the colour scale spans this many powers of ten below the max
RING_PAD = 0.45                       # cells of margin around the map: the ring is never clipped
MAP_SIZE = 360                        # frame width/height of the dependency map, px
SWEEP_LABEL_CHARS = 8                 # the sweep's y labels, padded to 8 characters (short_number)
THUMB_SIZE = 92                       # frame width of one mask thumbnail, px


def _ticks(n: int, target: int = 12) -> list[int]:
    step = next(s for s in (1, 2, 4, 5, 8, 10, 16, 20, 32, 50) if n / s <= target)
    return list(range(0, n, step))


def _fmt(x: float) -> str:
    return f"{x:.3g}" if x else "0"


# ----------------------------------------------------------------------------------------------
# dependency map
def dependency_table(report: LeakReport) -> dict[str, np.ndarray]:
    """One row per (output ``i``, input ``j``) pair, row-major: what the heatmap draws and hovers.

    Columns: ``output``, ``input`` (ints), ``magnitude`` (``‖∂y_i/∂x_j‖``, float64), ``dependency``
    (the magnitude where it is above the report's ``atol``, else NaN: drawn as "no path"),
    ``allowed`` and ``leak`` (bool: forbidden by the relation and above ``atol``).
    """
    D = report.dep_map.detach().double().cpu().numpy()            # (T_out, T_in)
    keep = report.allowed_dense.cpu().numpy().astype(bool)         # (T_out, T_in)
    T, S = D.shape
    out, inp = np.meshgrid(np.arange(T), np.arange(S), indexing="ij")
    depends = D > report.atol
    return dict(
        output=out.ravel(), input=inp.ravel(), magnitude=D.ravel(),
        dependency=np.where(depends, D, np.nan).ravel(),
        allowed=keep.ravel(), leak=(depends & ~keep).ravel(),
    )


def allowed_outline(keep: Tensor | np.ndarray) -> list[np.ndarray]:
    """The boundary of the allowed cells of a ``(T, S)`` keep-mask, as straight segments.

    Cell ``(i, j)`` covers ``x`` in ``j ± 0.5`` and ``y`` in ``i ± 0.5``. A cell side is on the
    boundary when the cell is allowed and its neighbour across that side is not (or is outside the
    grid). Collinear touching sides are merged, so the causal mask gives the left edge, the bottom
    edge and a staircase. Returns a list of ``(2, 2)`` arrays ``[[x0, y0], [x1, y1]]``.
    """
    k = np.asarray(keep, dtype=bool)
    T, S = k.shape
    padded = np.zeros((T + 2, S + 2), dtype=bool)
    padded[1:-1, 1:-1] = k
    segments: list[np.ndarray] = []
    # horizontal sides: between rows r-1 and r (y = r - 0.5), r = 0..T
    for r in range(T + 1):
        edge = padded[r, 1:-1] != padded[r + 1, 1:-1]              # (S,): one cell allowed, other not
        segments += [np.array([[a - 0.5, r - 0.5], [b + 0.5, r - 0.5]]) for a, b in _runs(edge)]
    # vertical sides: between columns c-1 and c (x = c - 0.5), c = 0..S
    for c in range(S + 1):
        edge = padded[1:-1, c] != padded[1:-1, c + 1]              # (T,)
        segments += [np.array([[c - 0.5, a - 0.5], [c - 0.5, b + 0.5]]) for a, b in _runs(edge)]
    return segments


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` index of every run of ``True`` in a 1-D bool array."""
    runs, start = [], None
    for i, f in enumerate(flags.tolist() + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def _outline_columns(report: LeakReport) -> tuple[np.ndarray, ...]:
    """``(x0, y0, x1, y1)`` of the allowed region's boundary segments (:func:`allowed_outline`)."""
    seg = np.array(allowed_outline(report.allowed_dense.cpu().numpy()), dtype=float).reshape(-1, 4)
    return seg[:, 0], seg[:, 1], seg[:, 2], seg[:, 3]


def _leak_positions(report: LeakReport) -> tuple[tuple[np.ndarray, np.ndarray], tuple[list, list]]:
    """``((inputs, outputs) of every leak, (input, output) of the largest or empty lists))``."""
    t = dependency_table(report)
    every = (t["input"][t["leak"]], t["output"][t["leak"]])
    first = report.first_leak
    return every, (([first.in_pos], [first.out_pos]) if first is not None else ([], []))


def map_title(report: LeakReport) -> str:
    """``"Dependency map · causal outlined · 3 leaks"``; ``"Dependency map (fast verdict) · ..."``
    when the map is the fast verdict's (float32 estimates, float64 rows where a leak is)."""
    n = len(report.leaks)
    kind = " (fast verdict)" if report.mode == "fast" else ""
    return f"Dependency map{kind} · {report.allowed_name} outlined · " + (
        f"{n} leak{'s' if n != 1 else ''}" if n else "no leak")


def dependency_heatmap(report: LeakReport, *, size: int = MAP_SIZE) -> hv.Overlay:
    """The dependency map with the allowed region outlined and the leaks marked.

    Layers, in order: ``hv.HeatMap`` (colour = ``‖∂y_i/∂x_j‖`` on a log scale over ``DECADES``
    decades below the largest entry; white = no path at all), ``hv.Segments`` (the boundary of the
    allowed cells, :func:`allowed_outline`), ``hv.Points`` (a × on every leak) and ``hv.Points``
    (a ring on the largest leak, empty when there is none).
    """
    t = dependency_table(report)
    T, S = report.dep_map.shape
    top = float(np.nanmax(t["magnitude"], initial=0.0)) or 1.0
    out_dim = hv.Dimension("output", label="output i")
    in_dim = hv.Dimension("input", label="input j")
    heat = hv.HeatMap(
        (t["input"], t["output"], t["dependency"], [_fmt(m) for m in t["magnitude"]],
         _yes_no(t["allowed"]), _leak_flags(t["leak"])),
        kdims=[in_dim, out_dim],
        vdims=[hv.Dimension("dependency", label="‖∂y_i/∂x_j‖"), "magnitude", "allowed", "leak"],
    ).opts(
        cmap=DEP_CMAP, logz=True, clim=(top * 10.0**-DECADES, top),
        clipping_colors={"NaN": NO_PATH_COLOR}, colorbar=True,
        clabel="",                                  # no colourbar title: the figure's title says it
        line_color="#f1f5f9", line_width=0.5, tools=["hover"], default_tools=[],
        hover_tooltips=[("output i", "@{output}"), ("input j", "@{input}"),
                        ("‖∂y_i/∂x_j‖", "@{magnitude}"), ("allowed", "@{allowed}"),
                        ("leak", "@{leak}")],
    )
    outline = hv.Segments(_outline_columns(report),
                          kdims=[in_dim, out_dim, "input_end", "output_end"]).opts(
        color=ALLOWED_COLOR, line_width=3, default_tools=[])
    every, largest = _leak_positions(report)
    cell = size / max(T, S)
    marks = hv.Points(every, kdims=[in_dim, out_dim]).opts(
        marker="x", color=LEAK_COLOR, line_width=2, size=max(5.0, 0.6 * cell), default_tools=[])
    ring = hv.Points(largest, kdims=[in_dim, out_dim]).opts(
        marker="circle", fill_alpha=0, line_color=LEAK_COLOR, line_width=2.5,
        size=max(12.0, 1.5 * cell), default_tools=[])
    ticks = _ticks(max(T, S))
    pad = 0.5 + RING_PAD        # room for the ring and the outline's width around the edge cells
    return (heat * outline * marks * ring).opts(
        title=map_title(report), frame_width=size, frame_height=size, invert_yaxis=True,
        xlim=(-pad, S - 1 + pad), ylim=(-pad, T - 1 + pad), xticks=[(i, str(i)) for i in ticks],
        yticks=[(i, str(i)) for i in ticks], xlabel="input j", ylabel="output i",
        toolbar=None, fontsize={"title": "10pt"},
    )


def _yes_no(flags: np.ndarray) -> list[str]:
    return ["yes" if f else "no" for f in flags]


def _leak_flags(flags: np.ndarray) -> list[str]:
    return ["LEAK" if f else "-" for f in flags]


def patch_relation(map_plot, sweep_plot, report: LeakReport) -> None:
    """Show ``report``'s relation in figures drawn for another report **with the same map**.

    ``map_plot`` / ``sweep_plot`` are the rendered plots (``hv.renderer('bokeh').get_plot``) of
    :func:`dependency_heatmap` / :func:`sweep_chart` for a report with the very same ``dep_map``
    and sweep (one cached measurement, another allowed relation). Only what the relation decides
    is rewritten in place: the hover's allowed / leak columns, the outline, the leak marks, the
    sweep's dot status and colours, and both titles. The figures (and their colours) stay, so a
    browser gets a small patch instead of two new figures. The result equals a fresh drawing
    (``tests/dashboard/test_leak_view.py``).
    """
    heat, outline, marks, ring = list(map_plot.subplots.values())
    t = dependency_table(report)
    T, S = report.dep_map.shape
    src = heat.handles["source"]
    flat = np.asarray(src.data["output"]) * S + np.asarray(src.data["input"])   # rows in drawn order
    src.data.update(allowed=_yes_no(t["allowed"][flat]), leak=_leak_flags(t["leak"][flat]))
    x0, y0, x1, y1 = _outline_columns(report)
    outline.handles["source"].data = dict(input=x0, output=y0, input_end=x1, output_end=y1)
    every, largest = _leak_positions(report)
    marks.handles["source"].data = dict(input=every[0], output=every[1])
    ring.handles["source"].data = dict(input=np.asarray(largest[0], dtype=np.int64),
                                       output=np.asarray(largest[1], dtype=np.int64))
    map_plot.state.title.text = map_title(report)

    dots = list(sweep_plot.subplots.values())[1]
    st = sweep_table(report)
    src = dots.handles["source"]
    order = np.asarray(src.data["L"], dtype=np.int64)
    src.data.update(status=st["status"][order].tolist(), color=st["color"][order].tolist())
    sweep_plot.state.title.text = sweep_title(report)


# ----------------------------------------------------------------------------------------------
# prefix sweep
def sweep_table(report: LeakReport) -> dict[str, np.ndarray]:
    """One row per prefix ``L``: ``L``, ``diff`` (max |Δ| of outputs 0..L), ``status``, ``color``.

    ``status`` is ``"checked"`` (the relation forbids outputs 0..L to see inputs after L, and they
    stayed within ``sweep_atol``), ``"moved"`` (checked, and they moved: a failure),
    ``"not checked"`` (the relation allows some output <= L to see an input > L) or
    ``"nothing after L"`` (the last prefix, unless it moved: no input is replaced, so nothing is
    tested; grey like "not checked", never green: under "full", which forbids nothing, no dot is
    green).
    """
    diff = report.sweep.detach().double().cpu().numpy()
    checked = report.sweep_checked.cpu().numpy().astype(bool)
    last = np.arange(len(diff)) == len(diff) - 1
    moved = checked & (diff > report.sweep_atol)      # as the verdict counts them (sweep_failures)
    status = np.where(moved, "moved", np.where(last, "nothing after L",
                                               np.where(checked, "checked", "not checked")))
    checked = checked & ~last
    color = np.where(moved, FAILED_COLOR, np.where(checked, CHECKED_COLOR, UNCHECKED_COLOR))
    return dict(L=np.arange(len(diff)), diff=diff, status=status, color=color)


def sweep_title(report: LeakReport) -> str:
    n_bad = len(report.sweep_failures)
    return "Prefix sweep · " + (f"{n_bad} prefix{'es' if n_bad != 1 else ''} moved" if n_bad
                                else "no checked prefix moved")


def sweep_chart(report: LeakReport, *, width: int = 360) -> hv.Overlay:
    """Max |Δ| of outputs ``0..L`` per prefix ``L``: stems, status-coloured dots, the tolerance line."""
    t = sweep_table(report)
    T = len(t["L"])
    L = hv.Dimension("L", label="prefix L")
    d = hv.Dimension("diff", label="max |Δ| of outputs 0..L")
    top = max(float(t["diff"].max(initial=0.0)), report.sweep_atol) * 1.18
    stems = hv.Spikes((t["L"], t["diff"]), kdims=[L], vdims=[d]).opts(
        color="#cbd5e1", line_width=2, default_tools=[])
    dots = hv.Scatter((t["L"], t["diff"], t["status"], t["color"]), kdims=[L],
                      vdims=[d, "status", "color"]).opts(
        color="color", size=9, line_color="white", tools=["hover"], default_tools=[],
        hover_tooltips=[("prefix L", "@{L}"), ("max |Δ| of outputs 0..L", "@{diff}{0.00e0}"),
                        ("status", "@{status}")])
    tol = hv.HLine(report.sweep_atol).opts(color="#334155", line_dash="dashed", line_width=1)
    label = hv.Text(-0.6, report.sweep_atol, f" tolerance {report.sweep_atol:g}",
                    halign="left", valign="bottom").opts(text_font_size="8pt", text_color="#334155")
    return (stems * dots * tol * label).opts(
        title=sweep_title(report), frame_width=width, frame_height=200, xlim=(-0.7, T - 0.3),
        ylim=(-0.04 * top, top), xticks=[(i, str(i)) for i in _ticks(T, 16)], toolbar=None,
        fontsize={"title": "10pt"}, show_legend=False,
        hooks=[steady_yaxis(SWEEP_LABEL_CHARS, auto=True)],   # y labels of one width whatever the
    )                                                         # values: no page layout on a new map


# ----------------------------------------------------------------------------------------------
# the mask zoo
def mask_thumbnail(name: str, keep: Tensor | np.ndarray, *, size: int = THUMB_SIZE,
                   title: bool = True) -> hv.Image:
    """One ``(T_q, S)`` keep-mask as a small image: blue = may attend, grey = blocked; query 0 on top.

    ``title=False`` leaves the name off the figure (the dashboard prints it above, wrapped).
    """
    k = np.asarray(keep, dtype=bool)
    Tq, S = k.shape
    img = hv.Image(np.ascontiguousarray(k[::-1].astype(np.int8)), bounds=(-0.5, -0.5, S - 0.5, Tq - 0.5),
                   kdims=["key", "query"], vdims=[hv.Dimension("keep", range=(0, 1))])
    return img.opts(
        cmap=[BLOCKED_COLOR, KEEP_COLOR], clim=(0, 1), invert_yaxis=True,
        frame_width=size, frame_height=max(12, round(size * Tq / S)), title=name if title else "",
        fontsize={"title": "8pt", "ticks": "7pt", "labels": "8pt"}, toolbar=None,
        tools=["hover"], default_tools=[], xlabel="", ylabel="",
        xticks=[0, S - 1], yticks=[0, Tq - 1],
        hover_tooltips=[("query", "$y{0}"), ("key", "$x{0}"), ("may attend", "@image")],
    )


# ----------------------------------------------------------------------------------------------
# words
def first_leak_sentence(report: LeakReport) -> str:
    """The largest leak in words, e.g. "Output 0 depends on input 1, which the relation forbids"."""
    rel = report.allowed_name
    first = report.first_leak
    if first is not None:
        more = len(report.leaks) - 1
        tail = f" ({more} more forbidden pair{'s' if more != 1 else ''})" if more else ""
        return (f"Output {first.out_pos} depends on input {first.in_pos}, which the relation "
                f"({rel}) forbids: ‖∂y_{first.out_pos}/∂x_{first.in_pos}‖ = {first.magnitude:.3g}"
                f"{tail}.")
    fails = report.sweep_failures
    if fails:
        L = fails[0]
        return (f"No forbidden dependency in the map at this input, but replacing the inputs after "
                f"L = {L} moved outputs 0..{L} by {float(report.sweep[L]):.3g}, which the relation "
                f"({rel}) forbids.")
    forbidden = report.dep_map[~report.allowed_dense]
    if forbidden.numel() == 0:
        return f"No output depends on an input the relation ({rel}) forbids: it forbids nothing."
    size = ("exactly 0" if float(forbidden.abs().max()) == 0.0
            else f"below {report.atol:.1e} (10⁻⁹ of the strongest dependency)")
    return (f"No output depends on an input the relation ({rel}) forbids: all {forbidden.numel()} "
            f"forbidden pairs are {size}, and no checked prefix moved.")


def verdict_html(report: LeakReport) -> str:
    """The badge: ``<span class="ap-badge ap-leak-badge ap-pass|ap-fail" data-verdict=...>``."""
    n = len(report.leaks)
    if report.passed:
        why = f"no leak against {report.allowed_name}"
    else:
        parts = [f"{n} leak{'s' if n != 1 else ''}"] if n else []
        if report.sweep_failures:
            k = len(report.sweep_failures)
            parts.append(f"{k} prefix{'es' if k != 1 else ''} moved")
        why = " and ".join(parts) + f" against {report.allowed_name}"
    return verdict_badge_html(report.passed, why, "ap-leak-badge")


def first_leak_html(report: LeakReport) -> str:
    """:func:`first_leak_sentence` in the ``.ap-leak-first`` pane's markup."""
    cls = "ap-leak-ok" if report.passed else "ap-leak-pair"
    text = html.escape(first_leak_sentence(report))
    return f'<div class="ap-leak-sentence"><span class="{cls}">{text}</span></div>'


def description_html(res: LeakResult) -> str:
    """The model's card: BUGGY/CORRECT, its description and the relation it must respect."""
    e = res.entry
    if e is None:                                      # a Hugging Face model given to the server
        own = "causal" if served_target(res.model[len(SERVED):])[3] else "full"
        return (f'<div class="ap-leak-card"><span class="ap-leak-tag">SERVED</span>'
                f'<div>{html.escape(res.model[3:])}: a Hugging Face model given to the server '
                f'(<code>--hf</code>), checked through its input embeddings (rows of its own '
                f'embedding table).</div>'
                f'<div class="ap-leak-rel">Must respect: <b>{own}</b> (from its config)'
                f'</div></div>')
    tag = ('<span class="ap-leak-tag ap-buggy">BUGGY</span>' if e.buggy
           else '<span class="ap-leak-tag ap-correct">CORRECT</span>')
    own = getattr(e.allowed(res.seq_len), "__name__", "its relation")
    return (f'<div class="ap-leak-card">{tag}<div>{html.escape(e.description)}</div>'
            f'<div class="ap-leak-rel">Must respect: <b>{html.escape(own)}</b></div></div>')
