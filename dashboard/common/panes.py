"""Panel building blocks shared by every tab's view: widgets from one spec form, figure panes,
markdown sections, wrapping rows, tap coordinates to indices."""
from __future__ import annotations

import panel as pn
from bokeh.models import Tooltip as BkTooltip

from .ordered import session_lock
from .style import CAVEAT_STYLES

__all__ = ["COMM_FLUSH_JS", "COMM_RETRY_MS", "SLIDER_TAPS_JS", "TEXT_MAX_CHARS", "TOOLTIP_WIDTH",
           "caveat", "clamp_index", "figure_pane", "hover_tooltip", "markdown", "page_scripts",
           "prompt", "widgets_from_spec", "wrap_row"]

TEXT_MAX_CHARS = 400_000
"""The most characters a text box of the app takes (Panel's default ``max_length``, 5000, would cut a
long text in the browser, silently, at about 1000 words; 16384 tokens of English are ~100 000)."""

SLIDER_TAPS_JS = """
(() => {
  if (window.__apSliderTaps) return;
  window.__apSliderTaps = true;
  const unlock = (event) => {
    for (const el of event.composedPath()) {
      if (el.classList && el.classList.contains("noUi-target")) {
        if (el.classList.contains("noUi-state-tap")) el.classList.remove("noUi-state-tap");
        return;
      }
    }
  };
  for (const type of ["pointerdown", "mousedown", "touchstart"])
    window.addEventListener(type, unlock, {capture: true});
})();
"""
"""Lets every press on a Bokeh slider through, however soon after the last one.

Bokeh's sliders are noUiSlider widgets, which mark a slider ``noUi-state-tap`` for 300 ms after
a click on its track (and after any value set from the server) and ignore every press on it
until then: a second click on the track within 300 ms is dropped in the browser and never
reaches the server (issue 9, item 4). This listener runs first (capture phase on ``window``; the
event path crosses Bokeh's open shadow roots) and removes the mark, so the click is taken; only
the 300 ms glide of the handle is lost.
"""


COMM_RETRY_MS = 1000
"""Milliseconds a notebook output waits for the kernel's acknowledgement before it sends the input
held back meanwhile anyway (:data:`COMM_FLUSH_JS`)."""

COMM_FLUSH_JS = """
(() => {
  if (window.__apCommFlush || !window.Bokeh || !Bokeh.Models) return;
  let C = null;
  try { C = Bokeh.Models.get("panel.models.comm_manager.CommManager"); } catch (e) { return; }
  if (!C || typeof C.prototype._document_changed !== "function") return;
  window.__apCommFlush = true;
  const changed = C.prototype._document_changed;
  C.prototype._document_changed = function (event) {
    changed.call(this, event);
    if (!this._blocked || !this._event_buffer || !this._event_buffer.length || this.__apTimer != null) return;
    const wait = Math.max(0, Math.min(this._timeout - Date.now(), RETRY_MS)) + 20;
    this.__apTimer = setTimeout(() => {
      this.__apTimer = null;
      if (this._event_buffer.length) {
        this._blocked = true;
        this._timeout = Date.now() + this.timeout;
        this.process_events();
      }
    }, wait);
  };
})();
""".replace("RETRY_MS", str(COMM_RETRY_MS))
"""Lets an input in a notebook output reach the kernel even when an acknowledgement went missing.

Panel's notebook comm (``CommManager`` in panel/models/comm_manager.ts) sends one batch of
browser changes at a time; a change made before the kernel acknowledged the last batch waits in a
buffer, and is sent on that acknowledgement or together with the *next* change made 5 s later.
When an acknowledgement never came, a single click waited for the user's next input: in
JupyterLab the causal box was ticked on the page while the kernel still had the old value 60 s
later (tests/notebook/test_jupyterlab.py, seen in CI and locally). With this script a held change
is sent at most :data:`COMM_RETRY_MS` after it was made (or when the acknowledgement comes,
whichever is first). Served pages have no comm: there it changes nothing."""


def page_scripts() -> pn.pane.HTML:
    """An invisible pane that installs :data:`SLIDER_TAPS_JS` and :data:`COMM_FLUSH_JS` (once per
    page): every tab's view carries it, so notebook outputs get them too."""
    return pn.pane.HTML(f"<script>{SLIDER_TAPS_JS}{COMM_FLUSH_JS}</script>", width=0, height=0,
                        margin=0, css_classes=["ap-page-scripts"])


def prompt(widget: pn.widgets.Widget) -> pn.widgets.Widget:
    """Let a served widget's change reach the state at once (returns ``widget``).

    Panel holds every change that arrives from the browser for 50 ms (``Syncable._debounce``)
    before handling it, to gather the changes of one gesture; here the pipeline coalesces bursts
    itself (``common.recompute``, ``common.live``), and the 50 ms were a fixed delay on every
    input (a sixth of the felt time of a seed change at T=16 in chromium; for a slider step,
    heads +1 at T=16 went from 187 to 160 ms and query from 142 to 127 ms in one run each).

    A slider or a select sends two properties per gesture (``value`` and ``value_throttled``),
    which may now be handled as two batches. That is safe because ``common.ordered`` handles a
    session's batches one at a time and each batch takes the widget's newest events when it runs;
    before it, the older batch could land last and move the slider back after a fast burst
    (``tests/browser/test_input_bursts.py`` keeps that covered).
    """
    widget._debounce = 0
    return widget


def widgets_from_spec(state, spec: dict[str, dict]) -> dict[str, pn.widgets.Widget]:
    """One widget per ``{param_name: {"type": WidgetClass, **options}}`` entry, linked both ways.

    Label, bounds and ``constant`` (shown disabled) follow the parameter (``Widget.from_param``).
    Buttons and button groups show the doc while the pointer is over them: below the widget and
    wrapped to the sidebar's width (:func:`hover_tooltip`), not in one line to its right, where
    it covered the figures (and their titles) for as long as the pointer rested on the buttons.
    """
    widgets = {}
    for name, options in spec.items():
        options = dict(options)
        kind = options.pop("type")
        widget = kind.from_param(state.param[name], **options)
        doc = state.param[name].doc
        if "description_delay" in widget.param and doc and "description" not in options:
            widget.description = hover_tooltip(doc)
            _tooltip_per_render(widget, doc)
        widgets[name] = prompt(widget)
    return widgets


TOOLTIP_WIDTH = 280
"""Pixels: a hover tooltip wraps within this width (narrower than the sidebars)."""


def hover_tooltip(doc: str) -> BkTooltip:
    """The doc as a tooltip under its widget, wrapped within :data:`TOOLTIP_WIDTH` pixels.

    Panel makes a string ``description`` a one-line tooltip on the widget's right; for a
    paragraph that line runs across the page."""
    return BkTooltip(content=" ".join(doc.split()), position="bottom_center", attachment="below",
                     stylesheets=[f":host {{ max-width: {TOOLTIP_WIDTH}px; }} "
                                  ".bk-tooltip-content { white-space: normal; }"])


def _tooltip_per_render(widget: pn.widgets.Widget, doc: str) -> None:
    """Give every rendering of ``widget`` a tooltip model of its own.

    A Bokeh model belongs to one document: the same ``Tooltip`` object in two renderings (a view
    shown twice in a notebook, or in two outputs) fails with "Models must be owned by only a
    single document"."""
    process = widget._process_param_change

    def fresh(params):
        params = process(params)
        for key, value in params.items():     # "description", or "tooltip" (button groups)
            if isinstance(value, BkTooltip):
                params[key] = hover_tooltip(doc)
                params[key].syncable = False
        return params

    widget._process_param_change = fresh


def with_tooltip(widget: pn.widgets.Widget, doc: str | None):
    """Widgets without a ``description`` (sliders, checkbox) get a tooltip icon with the doc."""
    if "description" in widget.param or not doc:
        return widget
    text = " ".join(doc.split())
    return pn.Row(widget, pn.widgets.TooltipIcon(value=text, margin=(12, 0, 0, -8), width=20),
                  margin=0)


def figure_pane(figure, *classes: str) -> pn.pane.Bokeh:
    """A pane for a Bokeh figure; the classes go on the figure itself (the element in the DOM).

    ``flex: none`` keeps fixed-size figures from being squeezed to nothing by flex layouts
    (seen inside ``pn.Tabs``). It must be on the figure too: the figure is the flex item, and
    stretched by a row its frame outgrows its canvas and the plot is cut off.
    """
    if figure.sizing_mode == "fixed" and figure.width is None:
        figure.sizing_mode = None       # sized by frame_width/height; avoids Bokeh's W-1005
    figure.css_classes = [*figure.css_classes, *[c for c in classes if c not in figure.css_classes]]
    figure.styles = {**figure.styles, "flex": "none"}
    return pn.pane.Bokeh(figure, margin=(0, 4), styles={"flex": "none"})


def markdown(text: str, css_class: str, **kw) -> pn.pane.Markdown:
    """An explanation section (``text`` is stripped; ``css_class`` is its test hook)."""
    return pn.pane.Markdown(text.strip(), css_classes=[css_class], **kw)


def caveat(text: str, css_class: str) -> pn.pane.Markdown:
    """The "attention is not explanation" note at the bottom of a sidebar."""
    return pn.pane.Markdown(text.strip(), css_classes=[css_class], styles=dict(CAVEAT_STYLES))


def wrap_row(*objects, **kw) -> pn.Row:
    """A row that wraps onto new lines (``pn.FlexBox`` left figures blank inside ``pn.Tabs``)."""
    styles = {"flex-wrap": "wrap", **kw.pop("styles", {})}
    return pn.Row(*objects, styles=styles, **kw)


def clamp_index(value: float | None, n: int) -> int | None:
    """Nearest index in ``0..n-1`` of a tap coordinate (``None`` outside any figure)."""
    if value is None:
        return None
    return int(min(max(round(value), 0), n - 1))


def checked_widget(state, name: str, kind, notify, *, event: str = "value", **options):
    """A widget for a bounded number parameter that takes anything typed and answers on the page.

    ``Widget.from_param`` bounds the widget in the browser, where a typed 5000 for a bound of 1024
    (or 0, or -3) is dropped silently. This widget has no bound of its own: the server clamps the
    value into the parameter's bounds, the widget then shows the value actually used, and
    ``notify(sentence)`` says why ("" once a value is accepted as typed).

    Args:
        state: the tab's state; ``name``: the parameter (``param.Integer`` or ``param.Number``).
        kind: the widget class (``IntInput``, ``EditableIntSlider``, ...).
        notify: called with the sentence to show (or "").
        event: the widget's parameter that commits a value (``"value_throttled"`` for sliders).
        options: more widget options (css_classes, width, ...).
    """
    p = state.param[name]
    lo, hi = p.bounds
    widget = prompt(kind(label=p.label, value=getattr(state, name), disabled=bool(p.constant), **options))
    if "description" in widget.param and p.doc:
        widget.description = " ".join(p.doc.split())        # the tooltip, as from_param gives it

    echo = {"value": None}            # the clamped value we are about to show: not a new input

    def show_later(value) -> None:
        # Panel does not send a property back to the browser while handling that property's own
        # change from the browser: show the clamped value on the next tick of the session's loop.
        def push() -> None:
            echo["value"] = value
            if widget.value != value:
                widget.value = value
            else:
                widget.param.trigger("value")     # already the value on the server: send it anyway

        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            def push_locked() -> None:
                with session_lock(doc):
                    push()
            doc.add_next_tick_callback(push_locked)
        else:
            push()

    def from_widget(ev) -> None:
        value, current = ev.new, getattr(state, name)
        if value is not None and value == echo["value"]:
            echo["value"] = None
            return
        if value is None:
            notify(f"{p.label}: empty, so {current} is kept.")
            show_later(current)
            return
        used = min(max(value, lo), hi)
        if used != value:
            notify(f"{p.label} = {value} is outside {lo}..{hi}: {used} is used.")
            show_later(used)
        else:
            notify("")
        if used != current:
            setattr(state, name, used)

    def from_state(ev) -> None:
        if ev.what == "constant":
            widget.disabled = bool(ev.new)
        elif widget.value != ev.new:
            echo["value"] = ev.new
            widget.value = ev.new

    widget.param.watch(from_widget, event)
    state.param.watch(from_state, [name])
    state.param.watch(from_state, [name], what="constant")
    return widget
