"""The Attention Playground dashboard (Panel + HoloViews + Bokeh) on top of the ``attention`` library.

- ``dashboard.playground.AttentionPlayground``: the parameters and the cached computation;
  display it (``pn.panel(pg)``, or just ``pg`` in a notebook) for the live view.
- ``dashboard.heads.ModelHeads``, ``dashboard.leaks.LeakDetector``: the other two tabs.
- ``dashboard/app.py``: ``panel serve dashboard/app.py`` (tabs, the playground first).
- ``python -m dashboard.export OUT.html``: a standalone, offline, interactive HTML file.

Layout and import rules: docs/ARCHITECTURE.md.
"""
