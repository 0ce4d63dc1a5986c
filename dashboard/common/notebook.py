"""Notebook set-up: the dashboard live in JupyterLab, Notebook 7 and VS Code with no internet.

Call :func:`extension` once, where a notebook would call ``pn.extension()``::

    import dashboard
    dashboard.extension()

It is ``pn.extension(*args, **kw)`` with four differences, all needed to render offline:

1. **Inline JavaScript.** ``inline=True`` unless you pass ``inline=False``: BokehJS and Panel's JS
   travel inside the notebook output (about 6 MB) instead of being fetched from cdn.bokeh.org and
   cdn.holoviz.org. Without it an offline notebook shows blank outputs and the console says
   "Bokeh or Panel library is missing".
2. **No stylesheet URLs.** Panel inlines the CDN stylesheets of a component when it is first
   displayed, but stylesheets it attaches *later* (theme ``default.css`` / ``native.css``,
   ``loading.css``, ``markdown.css``... when a model is updated or added to a live output) still
   point at ``cdn.holoviz.org`` (Panel issues #6759, #7073). :func:`extension` rewrites every such
   URL to a ``data:text/css;base64`` URL built from the installed ``panel/dist`` files, including
   the images those files reference. Applied through Panel's one hook for stylesheet URLs
   (``panel.io.resources.patch_stylesheet``), only while ``pn.config.inline`` is on.
3. **Quiet.** ``BokehUserWarning: reference already known`` is filtered, as Panel and HoloViews do
   themselves for VS Code: the frontend echoes models the kernel already holds (harmless; the
   kernel keeps its own instance).
4. **Served notebooks stay local.** ``panel serve some.ipynb`` lays the notebook's outputs out in
   Panel's ``EditableTemplate`` (``pn.config.template = "editable"``), which links the Lato font
   from fonts.googleapis.com: the one non-local request of a served notebook. In inline mode
   (the default), the template names ``"editable"`` and ``"vanilla"`` resolve to subclasses without that
   link (:func:`install_offline_templates`); their CSS asks for ``'Lato', sans-serif``, so the
   page uses a locally installed Lato or the browser's sans-serif. Everything else such a
   template loads (its CSS, interact.js, muuri) is already served from Panel's bundled files.

:func:`ensure_extension` is the automatic form for the dashboard's own viewers: called from their
``_repr_mimebundle_`` it runs :func:`extension` once when an object is displayed in a kernel that
has not run it (so ``pg = AttentionPlayground(); pg`` renders offline with no set-up cell), and
does nothing outside IPython or once loaded.

Calling it again is cheap: the 6 MB bundle is published once per kernel, unless new extension
names are passed. With ``inline=False`` it is plain ``pn.extension`` (CDN resources).
"""
from __future__ import annotations

import base64
import functools
import mimetypes
import re
import warnings
from pathlib import Path

__all__ = ["ensure_extension", "extension", "inline_css_url", "install_offline_templates",
           "install_stylesheet_patch", "is_loaded"]

_state = {"loaded": False, "args": set(), "patched": False, "templates": False}
# the template names whose only non-local resource is a web font (a CSS fallback exists)
_FONT_ONLY_TEMPLATES = ("editable", "vanilla")
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")


def _dist_dir() -> Path:
    from panel.io.resources import DIST_DIR
    return Path(DIST_DIR)


def _css_file_for(url: str) -> Path | None:
    """The installed file behind a Panel dist URL (CDN or server-relative), or None."""
    from panel.io.resources import CDN_DIST, LOCAL_DIST
    path = url.split("?", 1)[0].split("#", 1)[0]
    for prefix in (CDN_DIST, LOCAL_DIST, "/" + LOCAL_DIST):
        if path.startswith(prefix):
            f = _dist_dir() / path[len(prefix):]
            return f if f.is_file() else None
    return None


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@functools.lru_cache(maxsize=None)
def _inline_file(path: Path) -> str:
    """``data:`` URL of a CSS file whose relative ``url(...)`` references are inlined too."""
    css = path.read_text(encoding="utf-8")

    def inline_ref(m: re.Match) -> str:
        ref = m.group(2).strip()
        if re.match(r"^(data:|[a-z]+://|#)", ref, re.I):
            return m.group(0)
        target = (path.parent / ref.split("?", 1)[0]).resolve()
        if not target.is_file():
            return m.group(0)
        mime = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return f"url('{_data_url(target.read_bytes(), mime)}')"

    return _data_url(_CSS_URL.sub(inline_ref, css).encode("utf-8"), "text/css")


def inline_css_url(url: str) -> str:
    """``url`` as a ``data:text/css`` URL when it names a file of Panel's dist (else unchanged)."""
    path = _css_file_for(url) if isinstance(url, str) else None
    return _inline_file(path) if path is not None else url


def install_stylesheet_patch() -> None:
    """Make Panel's stylesheet hook turn dist URLs into ``data:`` URLs while ``pn.config.inline``.

    Panel routes every ``ImportedStyleSheet`` it creates or updates after the first render
    through ``panel.io.resources.patch_stylesheet(stylesheet, dist_url)`` (from
    ``panel.reactive`` and ``panel.theme.base``); served apps set their own ``dist_url`` and are
    left alone.
    """
    if _state["patched"]:
        return
    import panel.reactive
    import panel.io.resources as res
    from panel.config import config

    original = res.patch_stylesheet

    @functools.wraps(original)
    def patch_stylesheet(stylesheet, dist_url):
        original(stylesheet, dist_url)
        if not config.inline or dist_url != res.CDN_DIST:
            return
        try:
            url = stylesheet.url
        except Exception:
            return
        new = inline_css_url(url)
        if new != url:
            stylesheet.url = new

    patch_stylesheet.__wrapped_original__ = original
    res.patch_stylesheet = patch_stylesheet
    if getattr(panel.reactive, "patch_stylesheet", None) is original:
        panel.reactive.patch_stylesheet = patch_stylesheet
    _state["patched"] = True


def _is_local(url: str) -> bool:
    """Not ``scheme://...`` nor ``//host/...`` (a path, or a ``data:`` URL)."""
    return re.match(r"^([a-z][a-z0-9+.-]*:)?//", url, re.I) is None


def install_offline_templates() -> None:
    """Make ``pn.config.template = "editable"`` (and ``"vanilla"``) give a template that links
    no web font.

    ``panel serve`` of a notebook sets ``config.template = "editable"`` after the notebook ran and
    Panel looks the name up in ``config.param.template.names``; each entry of
    :data:`_FONT_ONLY_TEMPLATES` is replaced there by a subclass whose ``_resources["css"]`` keeps
    only local entries (Panel's own ``_resources`` lists nothing else for them but bundled JS).
    """
    if _state["templates"]:
        return
    from panel.config import config

    names = config.param.template.names
    for name in _FONT_ONLY_TEMPLATES:
        base = names.get(name)
        if base is None or getattr(base, "_offline_of", None) is not None:
            continue
        resources = {kind: ({k: v for k, v in entries.items() if _is_local(v)}
                            if kind in ("css", "font") else entries)
                     for kind, entries in base._resources.items()}
        names[name] = type(base)(base.__name__, (base,), {
            "_resources": resources, "_offline_of": base,
            "__doc__": f"{base.__name__} without its web-font link (dashboard.extension()).",
            "__module__": __name__})
    _state["templates"] = True


def is_loaded() -> bool:
    """Whether :func:`extension` has published the inline resources in this kernel."""
    return _state["loaded"]


def extension(*args: str, **kw) -> None:
    """``pn.extension(*args, **kw)`` that renders offline (see the module docstring).

    Args:
        args: Panel extension names, as for ``pn.extension`` (e.g. ``"tabulator"``).
        kw: ``pn.extension`` keywords; ``inline`` defaults to True.
    """
    import panel as pn
    from bokeh.util.warnings import BokehUserWarning

    warnings.filterwarnings("ignore", category=BokehUserWarning, message="reference already known")
    inline = kw.setdefault("inline", True)
    if inline:
        install_stylesheet_patch()
        install_offline_templates()
    new_args = set(args) - _state["args"]
    extra = {k: v for k, v in kw.items() if k != "inline"}
    if _state["loaded"] and not new_args and not extra and pn.config.inline == inline:
        return
    pn.extension(*args, **kw)
    _state["args"] |= set(args)
    _state["loaded"] = bool(inline)


def ensure_extension() -> None:
    """Run :func:`extension` once, in an IPython kernel only (for the viewers' display hook)."""
    if _state["loaded"]:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None or not hasattr(ip, "kernel"):
        return
    extension()
