"""dashboard.common.panes: widgets from a spec (their tooltips) and the slider-taps script."""
from __future__ import annotations

import panel as pn
from bokeh.models import Tooltip

from dashboard.app import serve_app
from dashboard.common.panes import SLIDER_TAPS_JS, TOOLTIP_WIDTH, widgets_from_spec
from dashboard.heads.state import HeadsState
from dashboard.heads.view import WIDGETS


def test_button_groups_get_a_wrapped_tooltip_under_them_not_a_line_to_their_right():
    th = HeadsState()
    widgets = widgets_from_spec(th, WIDGETS)
    group = widgets["input_kind"]                  # "Repeated random tokens" / "My own token ids"
    tip = group.description
    assert isinstance(tip, Tooltip)
    assert tip.content == " ".join(th.param.input_kind.doc.split())
    assert tip.attachment == "below"
    assert any(f"max-width: {TOOLTIP_WIDTH}px" in str(css) and "white-space: normal" in str(css)
               for css in tip.stylesheets)
    assert TOOLTIP_WIDTH < 330                     # narrower than the heads sidebar
    model = group.get_root()                       # each rendering gets a tooltip model of its own
    assert model.tooltip is not tip and model.tooltip.content == tip.content
    assert model.tooltip.attachment == "below" and model.tooltip.stylesheets == tip.stylesheets
    assert group.get_root().tooltip is not model.tooltip     # (a model belongs to one document)
    # widgets with their own "?" icon keep the plain string
    assert isinstance(widgets["seed"].description, str)


def test_the_served_page_carries_the_slider_taps_script():
    page = serve_app()
    for part in page.main:      # tabs are built when shown: the first one is, one copy of the scripts
        part.get_root()
    scripts = [o for part in page.main for o in part.select(pn.pane.HTML)
               if SLIDER_TAPS_JS in str(o.object)]
    assert len(scripts) == 1
    assert "noUi-state-tap" in SLIDER_TAPS_JS and "capture: true" in SLIDER_TAPS_JS



def test_every_control_of_the_tabs_is_handled_without_panels_50_ms_debounce():
    """Sliders and selects too (a slider step at T=16 was felt 15-40 ms later with the debounce):
    ``common.ordered`` makes their two properties per gesture safe to handle apart."""
    from dashboard.heads import ModelHeads
    from dashboard.heads.view import ModelHeadsView
    from dashboard.leaks import LeakDetector
    from dashboard.leaks.view import LeakDetectorView
    from dashboard.playground import AttentionPlayground
    from dashboard.playground.view import PlaygroundView

    kinds = set()
    # the Leak detector's model list too: it kept Panel's 50 ms until Panel's echo check, which
    # pushed an older model back into the list mid-burst, compared by value (common.ordered)
    for state, view in ((AttentionPlayground, PlaygroundView), (ModelHeads, ModelHeadsView),
                        (LeakDetector, LeakDetectorView)):
        for widget in view(state()).layout.select(pn.widgets.Widget):
            if isinstance(widget, (pn.widgets.TooltipIcon, pn.widgets.FileDownload)):
                continue                                  # no value the user changes
            assert widget._debounce == 0, f"{view.__name__}: {type(widget).__name__} {widget.name!r}"
            kinds.add(type(widget).__name__)
    assert {"IntSlider", "Checkbox", "IntInput", "RadioButtonGroup", "Select"} <= kinds, kinds
