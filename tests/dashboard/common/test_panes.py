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
