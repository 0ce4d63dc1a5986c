"""Colours, CSS and small HTML pieces shared by every tab (no Panel import: plain strings).

One palette for the whole dashboard: the keep/blocked pair is the same in the playground's mask,
the step-by-step bars and the leak detector's mask thumbnails.
"""
from __future__ import annotations

import html

__all__ = [
    "ACCENT",
    "BLOCKED_COLOR",
    "CAVEAT_STYLES",
    "CHANGED_COLOR",
    "CMAP",
    "CSS",
    "KEEP_COLOR",
    "SAME_COLOR",
    "SECTION_STYLES",
    "VIOLATION_COLOR",
    "verdict_badge_html",
]

CMAP = "magma"                # attention weights 0..1
ACCENT = "#22d3ee"            # selected query marker
KEEP_COLOR = "#2563eb"        # keep-mask: may attend / may depend
BLOCKED_COLOR = "#cbd5e1"     # keep-mask: blocked
SAME_COLOR = "#16a34a"        # positions that must not change and did not
VIOLATION_COLOR = "#dc2626"   # positions that changed although they must not (the check fails)
CHANGED_COLOR = "#f97316"     # positions whose inputs were perturbed

CAVEAT_STYLES = {"background": "#fff7ed", "border-left": "3px solid #f97316", "padding": "0 8px",
                 "font-size": "12px"}
"""Styles of the "attention is not explanation" note in every sidebar."""

SECTION_STYLES = {"border-top": "1px solid #e2e8f0"}
"""Styles of a section of a tab's main column."""

CSS = """
:host { --ap-muted: #475569; }
.ap-verdict { display: flex; align-items: center; gap: 10px; font-family: system-ui, sans-serif; }
.ap-badge { font-weight: 800; font-size: 20px; letter-spacing: .06em; padding: 4px 14px;
            border-radius: 6px; color: white; }
.ap-pass { background: #16a34a; }
.ap-fail { background: #dc2626; }
.ap-verdict-why { color: var(--ap-muted); font-size: 13px; }
table.ap-stats { border-collapse: collapse; font-size: 13px; font-family: system-ui, sans-serif; }
table.ap-stats td { padding: 3px 8px; border-bottom: 1px solid #e2e8f0; }
td.ap-num { font-family: ui-monospace, monospace; font-weight: 600; text-align: right; }
td.ap-want { color: var(--ap-muted); }
.ap-note { color: #b45309; font-size: 12px; margin-top: 4px; }
.ap-message { color: #92400e; background: #fffbeb; border-left: 3px solid #f59e0b; padding: 4px 8px;
              font-size: 12px; font-family: system-ui, sans-serif; }
"""
"""Stylesheet of the verdict badge, the numbers table and the notes (give it to ``pn.pane.HTML``)."""


def verdict_badge_html(passed: bool, why: str, *classes: str) -> str:
    """The PASS/FAIL badge: ``<span class="ap-badge ap-pass|ap-fail ..." data-verdict=...>``.

    Args:
        passed: the verdict.
        why: one short sentence after the badge (escaped here).
        classes: extra CSS classes on the badge (a tab's own hook, e.g. ``ap-leak-badge``).
    """
    word = "PASS" if passed else "FAIL"
    cls = " ".join(("ap-badge", *classes, f"ap-{word.lower()}"))
    return (f'<div class="ap-verdict"><span class="{cls}" data-verdict="{word}">{word}</span>'
            f'<span class="ap-verdict-why">{html.escape(why)}</span></div>')
