"""The standalone HTML export: offline-clean, small, and carrying the data its controls need."""
from __future__ import annotations

import re

import numpy as np
import pytest

from dashboard.playground import export
from dashboard.playground import AttentionPlayground

# What a browser would fetch from the network or from disk: script/img src, link href, CSS url()
# and @import. data: URLs, in-page anchors and JS template placeholders (${...}) are fine.
NETWORK = re.compile(r"""(?:\bsrc|\bhref)\s*=\s*["']?\s*(?:https?:)?//"""
                     r"""|url\(\s*["']?\s*(?:https?:)?//|@import\s+(?:url\()?\s*["']?\s*(?:https?:)?//""",
                     re.IGNORECASE)
LOCAL_FILE_TAG = re.compile(r"""<(?:script|img|iframe)\b[^>]*\bsrc\s*=\s*["'](?!data:|\$\{)[^"']+["']"""
                            r"""|<link\b[^>]*\bhref\s*=\s*["'](?!data:|#)[^"']+["']""", re.IGNORECASE)


@pytest.fixture(scope="module")
def default_page(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("export") / "playground.html"
    assert export.main([str(out)]) == 0
    return out.read_text(encoding="utf-8")


def test_the_default_export_is_under_6_mb(default_page):
    assert len(default_page.encode("utf-8")) < 6_000_000


def test_the_export_makes_no_network_or_file_requests(default_page):
    assert NETWORK.findall(default_page) == []
    assert LOCAL_FILE_TAG.findall(default_page) == []
    assert "cdn.jsdelivr" not in default_page.split("<body")[0]


def test_the_checker_catches_resource_urls():
    for bad in ['<script src="https://cdn.example/x.js"></script>', "<link href='//fonts.x/css'>",
                "a{background:url(https://x/y.png)}", '@import url("https://x/y.css");',
                '@import "http://x/y.css";']:
        assert NETWORK.search(bad), bad
    with pytest.raises(RuntimeError, match="no network resource URLs"):
        export.offline('<div style="background:url(https://x/y.png)"></div>')
    cleaned = export.offline('<script src="static/extensions/x.js"></script><p>ok</p>')
    assert cleaned == "<p>ok</p>"


def test_the_page_has_the_controls_and_one_map_per_head(default_page):
    H = AttentionPlayground.param.num_heads.default
    assert len(re.findall(r'"ap-head-heatmap"', default_page)) == H
    for hook in ("ap-causal", "ap-prefix", "ap-query", "ap-verdict-pane", "ap-query-plot",
                 "ap-invariance-chart", "ap-mask"):
        assert hook in default_page, hook


def _store(layout):
    from bokeh.models import ColumnDataSource
    return next(m for m in layout.references()
                if isinstance(m, ColumnDataSource) and "w_causal" in m.data)


def test_both_causal_states_and_every_prefix_ship_with_the_page():
    layout = export.build_document(dict(seq_len=6, num_heads=2, head_dim=4, seed=3))
    data = _store(layout).data
    causal = AttentionPlayground(seq_len=6, num_heads=2, head_dim=4, seed=3)
    full = AttentionPlayground(seq_len=6, num_heads=2, head_dim=4, seed=3, causal=False)
    np.testing.assert_array_equal(data["w_causal"][0], causal.result.weights.numpy().reshape(-1))
    np.testing.assert_array_equal(data["w_full"][0], full.result.weights.numpy().reshape(-1))
    for L in range(6):
        np.testing.assert_array_equal(data["diff_full"][0].reshape(6, 6)[L],
                                      full.invariance_at(L).position_diff.numpy())
    assert data["passed_causal"][0].tolist() == [1] * 6
    assert data["passed_full"][0].tolist()[:5] == [0] * 5


def _with_class(layout, css_class):
    return next(m for m in layout.references() if css_class in (getattr(m, "css_classes", None) or []))


def test_a_playground_exports_its_current_settings():
    pg = AttentionPlayground(text="hello there world", num_heads=2, causal=False, prefix=1, query=2)
    layout = export.build_document(pg)
    assert _with_class(layout, "ap-causal").active is False
    assert _with_class(layout, "ap-prefix").value == 1 and _with_class(layout, "ap-query").value == 2
    assert 'data-verdict="FAIL"' in _with_class(layout, "ap-verdict-pane").text
    assert _with_class(layout, "ap-query-plot").title.text.startswith("Query 2 (world)")
    assert "hello there world" in export.render_html(pg)


def test_too_large_an_export_is_refused_with_the_sizes():
    with pytest.raises(ValueError, match=r"T=512, H=16"):
        export.build_document(dict(seq_len=512, num_heads=16, head_dim=1))


def test_unknown_export_parameters_are_refused():
    with pytest.raises(ValueError, match="colour"):
        export.build_document(dict(colour="red"))
    with pytest.raises(TypeError, match="AttentionPlayground or a dict"):
        export.build_document([("seq_len", 4)])


def test_the_cli_reports_a_refused_export(tmp_path, capsys):
    out = tmp_path / "big.html"
    assert export.main([str(out), "--seq-len", "1024", "--num-heads", "16"]) == 2
    assert "use the served app" in capsys.readouterr().err and not out.exists()
