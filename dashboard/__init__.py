"""The Attention Playground dashboard (Panel + HoloViews + Bokeh) on top of the ``attention`` library.

- ``dashboard.playground.AttentionPlayground``: the parameters and the cached computation;
  display it (``pn.panel(pg)``, or just ``pg`` in a notebook) for the live view.
- ``dashboard.heads.ModelHeads``, ``dashboard.leaks.LeakDetector``: the other two tabs.
- ``dashboard/app.py``: ``panel serve dashboard/app.py`` (tabs, the playground first).
- ``python -m dashboard.export OUT.html``: a standalone, offline, interactive HTML file.
- ``dashboard.extension()``: use it in notebooks instead of ``pn.extension()``; the output then
  renders with no internet (``dashboard/common/notebook.py``).

Layout and import rules: docs/ARCHITECTURE.md.
"""


def extension(*args, **kw):
    """``pn.extension`` for notebooks that works offline: see ``dashboard.common.notebook``."""
    # Imported here, not at the top: ``import dashboard`` (and every ``dashboard.<tab>.state``,
    # headless) must not pull in Panel; this is no cycle (common never imports the package root).
    from dashboard.common.notebook import extension as _extension
    return _extension(*args, **kw)
