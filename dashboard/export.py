"""``python -m dashboard.export OUT.html``: the Playground as a standalone HTML file.

The entry point stays here (the README and users call it); the code lives in
``dashboard.playground.export``.
"""
from dashboard.playground.export import export_html, main, render_html

__all__ = ["export_html", "main", "render_html"]

if __name__ == "__main__":
    raise SystemExit(main())
