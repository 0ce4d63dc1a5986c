"""The README's "Fonts" note, checked on this machine: the figures' canvas text (tick labels,
titles) is drawn by the browser with the fonts installed where the browser runs, so a character
shows as a box exactly when no installed font (fontconfig, ``fc-list``) has a glyph for it. The
app ships no font of its own."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

README = Path(__file__).resolve().parents[2] / "README.md"

# one letter, one CJK ideograph, one Hangul syllable, two emoji (DejaVu Sans has 😀, not 🚀)
CHARS = ["a", "猫", "한", "😀", "🚀"]

_CANVAS_JS = """(chars) => {
    const c = document.createElement("canvas"); c.width = 48; c.height = 48;
    const g = c.getContext("2d");
    const pixels = (ch) => {
        g.clearRect(0, 0, 48, 48); g.font = "28px helvetica"; g.fillStyle = "black";
        g.fillText(ch, 4, 36);
        return Array.from(g.getImageData(0, 0, 48, 48).data).join(",");
    };
    const box = pixels("\\uE000");            // a private-use code point: no font has it
    return Object.fromEntries(chars.map(ch => [ch, pixels(ch) === box]));
}"""


def _installed_font_has(ch: str) -> bool:
    out = subprocess.run(["fc-list", f":charset={ord(ch):x}", "family"], capture_output=True,
                         text=True, check=True).stdout
    return bool(out.strip())


def test_a_character_is_a_box_in_canvas_text_exactly_when_no_installed_font_has_it(browser):
    if shutil.which("fc-list") is None:
        pytest.skip("fc-list (fontconfig) is not installed: cannot list the fonts")
    page = browser.new_page()
    try:
        page.set_content("<html><body></body></html>")
        boxes = page.evaluate(_CANVAS_JS, CHARS)
    finally:
        page.close()
    expected = {ch: not _installed_font_has(ch) for ch in CHARS}
    assert boxes == expected, f"drawn as a box: {boxes}; no installed font: {expected}"
    assert boxes["a"] is False


def test_the_readme_says_how_to_get_emoji_and_cjk():
    text = README.read_text()
    assert "### Fonts" in text
    note = text.split("### Fonts", 1)[1].split("\n#", 1)[0]
    for needle in ("emoji", "CJK", "fonts-noto-color-emoji", "fonts-noto-cjk", "boxes"):
        assert needle in note, needle
