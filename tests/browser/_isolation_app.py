"""Test-only app for ``test_session_isolation.py``: the dashboard exactly as ``dashboard/app.py``
serves it, except that a session opened with ``?inject=export-failure`` gets an export that fails
inside HoloViews' ``get_plot`` (a ``DynamicMap`` callback raises while the renderer draws), as the failure of
issue 9 item 2 did. Nothing in ``dashboard/`` is changed: the session's own "Download as HTML"
widget (``.ap-download``) gets another callback.

Served by ``AppServer("tests/browser/_isolation_app.py")`` (the URL path is ``/_isolation_app``).
"""
from __future__ import annotations

import panel as pn
import torch

from dashboard.app import TITLE, serve_app

INJECTED = "injected export failure (test)"


def _failing_export():
    import holoviews as hv

    def boom():
        raise RuntimeError(INJECTED)

    # raises inside get_plot, while the renderer draws for this session (plot hooks would not
    # do: HoloViews turns their exceptions into warnings)
    hv.renderer("bokeh").get_plot(hv.DynamicMap(boom))
    raise RuntimeError(INJECTED)       # in case a HoloViews version swallows it


if pn.state.served:                    # not when the test imports INJECTED from here
    torch.set_num_threads(1)
    pn.extension(notifications=True)
    template = serve_app()
    if pn.state.session_args.get("inject", [b""])[0] == b"export-failure":
        def inject():
            # the tabs build their views when first shown: look for the button once the page is in
            downloads = [w for obj in template.main for w in obj.select(pn.widgets.FileDownload)
                         if "ap-download" in w.css_classes]      # (template.select trips on BrowserInfo)
            assert downloads, "no .ap-download FileDownload in the app"
            for w in downloads:
                w.callback = _failing_export

        pn.state.onload(inject)
    template.servable(title=TITLE)
