"""dashboard.common.notebook: Panel's dist stylesheets become self-contained data: URLs."""
from __future__ import annotations

import base64
import re

import panel as pn
import pytest
from bokeh.models import ImportedStyleSheet
from panel.io import resources

from dashboard.common import notebook


def _css(url: str) -> str:
    assert url.startswith("data:text/css;base64,")
    return base64.b64decode(url.split(",", 1)[1]).decode("utf-8")


@pytest.mark.parametrize("path", ["css/loading.css?v=1.9.4", "bundled/theme/default.css",
                                  "bundled/theme/native.css", "css/markdown.css"])
def test_dist_stylesheets_become_self_contained_data_urls(path):
    css = _css(notebook.inline_css_url(resources.CDN_DIST + path))
    assert css.strip()
    refs = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    assert all(r.startswith("data:") or r.startswith("#") for r in refs), refs


def test_other_urls_are_left_alone():
    assert notebook.inline_css_url("https://example.com/x.css") == "https://example.com/x.css"
    assert notebook.inline_css_url(resources.CDN_DIST + "css/no-such.css").startswith("https://")


def test_the_hook_inlines_only_in_inline_mode_and_only_for_the_cdn(monkeypatch):
    notebook.install_stylesheet_patch()
    url = resources.CDN_DIST + "bundled/theme/native.css"
    monkeypatch.setattr(pn.config, "inline", True)
    s = ImportedStyleSheet(url=url)
    resources.patch_stylesheet(s, resources.CDN_DIST)
    assert s.url.startswith("data:text/css")
    served = ImportedStyleSheet(url=url)          # a served app has its own dist_url: untouched
    resources.patch_stylesheet(served, resources.LOCAL_DIST)
    assert served.url.startswith(resources.LOCAL_DIST)
    monkeypatch.setattr(pn.config, "inline", False)
    cdn = ImportedStyleSheet(url=url)
    resources.patch_stylesheet(cdn, resources.CDN_DIST)
    assert cdn.url == url


def test_ensure_extension_does_nothing_outside_a_kernel():
    notebook.ensure_extension()
    assert not notebook.is_loaded()


@pytest.mark.parametrize("name", ["editable", "vanilla"])
def test_served_notebook_templates_link_no_web_font(name, monkeypatch):
    """``panel serve x.ipynb`` renders into ``config.template = "editable"``: after the set-up,
    that name gives a template whose resources (CSS and JS) are all local."""
    from panel.template import EditableTemplate, VanillaTemplate

    original = {"editable": EditableTemplate, "vanilla": VanillaTemplate}[name]
    assert any("fonts.googleapis.com" in u for u in original().resolve_resources()["css"].values())
    notebook.install_offline_templates()
    monkeypatch.setattr(pn.config, "template", name)
    cls = pn.config.template
    assert issubclass(cls, original) and cls is not original
    found = cls().resolve_resources()
    urls = [*found["css"].values(), *found["js"].values(), *found["js_modules"].values()]
    assert urls and all(not re.match(r"^([a-z]+:)?//", u) for u in urls), urls
