"""Serve the dashboard and drive Debian's chromium: helpers shared by the browser tests and
``scripts/make_screenshots.py``.

- :class:`AppServer` runs ``python -m panel serve dashboard/app.py`` (the README's command) on a
  free port in a subprocess, waits until it answers, checks its log and always stops it.
- :func:`launch_chromium` starts ``/usr/bin/chromium`` headless through playwright's sync API
  (``playwright install`` is never used: the browser comes from apt).
- :class:`PageWatch` records a page's console errors, uncaught exceptions and requests.
- :func:`open_app`, :func:`head_count`, :func:`verdict`, :func:`click_heatmap_row`, ... act on the
  CSS-class hooks documented at the top of ``dashboard/app.py``.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_SCRIPT = "dashboard/app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-quic", "--disable-sync",
]
SESSION_OPEN = "Websocket connection 0 is now open"   # bokeh's console message once a session is live
HANDLER_ERROR = "Error running application handler"   # bokeh's log line when app.py raised

# Console errors that are not the app's fault. Each entry: (pattern, why it is harmless).
# Kept empty unless a real case shows up; every entry must say why it may be ignored.
IGNORED_CONSOLE: list[tuple[str, str]] = []


class BrowserSetupError(RuntimeError):
    """Chromium is missing or cannot start."""


# ----------------------------------------------------------------------------------------------
# the server
def free_port() -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``python -m panel serve dashboard/app.py --port P --num-threads 2`` in a subprocess.

    Use as a context manager (the server is stopped on exit, whatever happened)::

        with AppServer() as server:
            page.goto(server.url)

    Args:
        script: the app script, relative to the repository root. Default: ``dashboard/app.py``.
        port: the port. Default: a free one.
        startup_timeout: seconds to wait for the first HTTP answer. Default: 240 (the first
            page runs the app once; minutes on a loaded 2-core machine).
        extra_args: more ``panel serve`` options (e.g. ``["--check-unused-sessions", "500"]``).
        launcher: the command before ``serve``. Default: ``python -m panel`` with this Python;
            ``["./dev"]`` serves exactly as the README does (needs the repository's ``.venv``).
        env: extra environment variables for the server.
    """

    def __init__(self, script: str = APP_SCRIPT, *, port: int | None = None,
                 startup_timeout: float = 240.0, extra_args: list[str] | None = None,
                 launcher: list[str] | None = None, env: dict[str, str] | None = None):
        self.script = script
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self.launcher = launcher
        self.extra_env = dict(env or {})
        self.url = f"http://localhost:{self.port}/{Path(script).stem}"
        self._log = tempfile.NamedTemporaryFile(prefix="panel-serve-", suffix=".log", delete=False)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "AppServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.extra_env)
        if self.launcher is None:
            cmd = [sys.executable, "-m", "panel", "serve", self.script, "--port", str(self.port),
                   "--num-threads", "2", *self.extra_args]
        else:                           # ./dev serve adds dashboard/app.py and --num-threads 2
            cmd = [*self.launcher, "serve", "--port", str(self.port), *self.extra_args]
        self.command = cmd
        # its own process group: ``--num-procs N`` forks N servers, and stop() must end them all
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"panel serve exited with code {self.proc.returncode} before "
                                   f"answering:\n{self.log()}")
            try:
                # one long wait, not many short ones: each request runs the app for a new
                # session, and on a loaded machine a retry every 30 s only piles them up
                wait = max(5.0, deadline - time.monotonic())
                with urllib.request.urlopen(self.url, timeout=wait) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"panel serve did not answer {self.url} within "
                                   f"{self.startup_timeout:.0f} s:\n{self.log()}")
            time.sleep(0.3)
        self.check_log()

    def log(self) -> str:
        """Everything the server printed so far."""
        return Path(self._log.name).read_text(errors="replace")

    def check_log(self) -> None:
        """Raise if the app script failed (the server still answers HTTP 200 when it does)."""
        text = self.log()
        if HANDLER_ERROR in text or "Traceback (most recent call last)" in text:
            raise AssertionError(f"the served app raised (server log follows):\n{text}")

    def stop(self) -> None:
        if self.proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):        # the server and every forked child
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=10)
                    time.sleep(0.2)                          # children end with their parent's group
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()

    def remove_log(self) -> None:
        Path(self._log.name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# the browser
def launch_chromium(playwright, **kw):
    """Debian's headless chromium through playwright (``kw`` goes to ``chromium.launch``)."""
    if not CHROMIUM.exists():
        raise BrowserSetupError(
            f"{CHROMIUM} not found: the browser tests drive Debian's chromium. Install it with "
            "`sudo apt-get install chromium` (./dev test does this); `playwright install` is not used.")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=CHROMIUM_ARGS, **kw)


@dataclass
class PageWatch:
    """What a page reported: console errors, uncaught exceptions, every request it tried.

    ``errors()`` leaves out :data:`IGNORED_CONSOLE` matches (and says nothing of them).
    """

    console: list[str] = field(default_factory=list)        # all console messages, "type: text"
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)

    @classmethod
    def attach(cls, page) -> "PageWatch":
        w = cls()
        page.on("console", w._on_console)
        page.on("pageerror", lambda exc: w.page_errors.append(str(exc)))
        page.on("request", lambda req: w.requests.append(req.url))
        page.on("requestfailed", lambda req: w.failed_requests.append(f"{req.url} ({req.failure})"))
        page.on("websocket", lambda ws: w.websockets.append(ws.url))
        return w

    def _on_console(self, msg) -> None:
        self.console.append(f"{msg.type}: {msg.text}")
        if msg.type == "error":
            loc = msg.location or {}
            where = f" [{loc.get('url')}:{loc.get('lineNumber')}]" if loc.get("url") else ""
            self.console_errors.append(msg.text + where)

    def errors(self) -> list[str]:
        """Console errors and uncaught page exceptions, minus the known harmless ones."""
        found = [e for e in self.console_errors
                 if not any(re.search(pat, e) for pat, _ in IGNORED_CONSOLE)]
        return found + [f"uncaught: {e}" for e in self.page_errors]

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.console)


def block_network(context, allowed_url: str) -> list[str]:
    """Abort every request of ``context`` except ``allowed_url``; return the list of the others.

    The returned list fills as the pages try to load things (http, https, file, ...).
    """
    attempts: list[str] = []

    def handle(route):
        if route.request.url == allowed_url:
            route.continue_()
        else:
            attempts.append(route.request.url)
            route.abort()

    context.route("**/*", handle)
    return attempts


def open_app(page, url: str, *, timeout: float = 60_000) -> PageWatch:
    """Go to the served app, wait for the live session and the head maps; return its watch."""
    watch = PageWatch.attach(page)
    with page.expect_console_message(lambda m: SESSION_OPEN in m.text, timeout=timeout):
        page.goto(url, timeout=timeout)
    page.locator(HEAD_MAPS).first.wait_for(state="visible", timeout=timeout)
    return watch


# ----------------------------------------------------------------------------------------------
# reading and driving the playground (CSS-class hooks from dashboard/app.py)
HEAD_MAPS = ".ap-heads-map, .ap-head-heatmap"
"""The head maps: the served / notebook Playground draws every head in one figure
(``.ap-heads-map``, a mosaic labelled "head 0", "head 1", ...); the exported HTML has one figure
per head (``.ap-head-heatmap``, ``.ap-head-<h>``)."""

_MOSAIC_LABELS_JS = """(el) => {
    const view = [...Bokeh.index.all_views()].find(v => v.el === el && v.frame !== undefined);
    if (view === undefined) return null;
    const r = view.model.renderers.find(r => r.glyph !== undefined && r.glyph.type === "Text");
    return r === undefined ? [] : [...r.data_source.data.Label].map(String);
}"""


def _mosaic(page):
    """The shown heads figure (a mosaic) or None (per-head figures: the exported page)."""
    loc = page.locator(".ap-heads-map")
    for i in range(loc.count()):
        if loc.nth(i).is_visible():
            return loc.nth(i)
    return None


def head_count(page) -> int:
    """How many head maps are shown (the maps drawn in the heads figure, or displayed per-head
    figures)."""
    return len(shown_heads(page))


def shown_heads(page) -> list[int]:
    """The head index of every shown head map, in page order: from the labels drawn above the
    maps of the heads figure, or from ``ap-head-<h>`` of every displayed ``.ap-head-heatmap``."""
    mosaic = _mosaic(page)
    if mosaic is not None:
        labels = mosaic.evaluate(_MOSAIC_LABELS_JS) or []
        return [int(m.group(1)) if (m := re.fullmatch(r"head (\d+)", t)) else -1 for t in labels]
    heads = []
    for el in page.locator(".ap-head-heatmap").all():
        if el.is_visible():
            m = re.search(r"\bap-head-(\d+)\b", el.get_attribute("class") or "")
            heads.append(int(m.group(1)) if m else -1)
    return heads


def head_cell(page, head: int, key: float, row: float) -> tuple[str, float, float]:
    """``(css, x, y)``: the figure holding head ``head``'s map and the data point of its key
    ``key``, query ``row`` (in the heads figure: read from its ``ap-heads:`` tag)."""
    mosaic = _mosaic(page)
    if mosaic is None:
        return f".ap-head-{head}", key, row
    tags = mosaic.evaluate(f"el => ({_PLOT_VIEW_JS})(el).model.tags")
    tag = next(t for t in tags if isinstance(t, str) and t.startswith("ap-heads:"))
    geo = dict(kv.split("=") for kv in tag[len("ap-heads:"):].split())
    stride, ncols = int(geo["stride"]), int(geo["ncols"])
    return ".ap-heads-map", (head % ncols) * stride + key, (head // ncols) * stride + row


def verdict(page) -> str:
    """``PASS`` or ``FAIL``: the ``data-verdict`` of the invariance badge."""
    return page.locator(".ap-verdict-pane .ap-badge").get_attribute("data-verdict")


def wait_for(page, predicate, *, timeout: float = 20.0, what: str = "condition"):
    """Poll ``predicate()`` (a Python callable that reads the page) until truthy; return its value.

    Server round trips arrive asynchronously; playwright's own waits cannot look into Python.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} "
                                 f"(last value {value!r})")
        page.wait_for_timeout(100)


def slider_value(page, css: str) -> str:
    """The value a Panel slider shows in its title (``Label: value``)."""
    title = page.locator(f"{css} .bk-slider-title").first.inner_text()
    return title.rsplit(":", 1)[-1].strip()


def nudge_slider(page, css: str, key: str = "ArrowRight", times: int = 1) -> None:
    """Move a slider's handle with the keyboard (``times`` key presses)."""
    handle = page.locator(f"{css} .noUi-handle").first
    handle.focus()
    for _ in range(times):
        handle.press(key)


_PLOT_VIEW_JS = """(el) => {
    const view = [...Bokeh.index.all_views()].find(v => v.el === el && v.frame !== undefined);
    if (view === undefined) throw new Error("no Bokeh plot view on this element");
    return view;
}"""


def figure_title(page, css: str) -> str:
    """The title text of the Bokeh figure whose host element has the class ``css``."""
    return page.locator(css).first.evaluate(f"el => ({_PLOT_VIEW_JS})(el).model.title.text")


def figure_images(page, css: str) -> list[list[dict]]:
    """Per image glyph of the figure whose host has ``css`` (in renderer order), per image: its size
    in pixels (``cols``, ``rows``) and in data units (``dw``, ``dh``)."""
    return page.locator(css).first.evaluate(f"""(el) => {{
        const view = ({_PLOT_VIEW_JS})(el);
        const imgs = view.model.renderers.filter(r => r.glyph !== undefined && r.glyph.type === "Image");
        return imgs.map(r => {{
            const d = r.data_source.data;
            return [...d.image].map((a, i) => ({{cols: a.shape[1], rows: a.shape[0], dw: d.dw[i], dh: d.dh[i]}}));
        }});
    }}""")


def figure_ranges(page, css: str) -> list[float]:
    """``[x start, x end, y start, y end]`` of the figure whose host has ``css``, as the browser has
    them (after zooms and pans)."""
    return page.locator(css).first.evaluate(f"""(el) => {{
        const m = ({_PLOT_VIEW_JS})(el).model;
        return [m.x_range.start, m.x_range.end, m.y_range.start, m.y_range.end];
    }}""")


def shown_tooltip(page) -> str:
    """The text of the tooltip shown now ("" when none is): every figure has its own."""
    tips = page.locator(".bk-tooltip-content")
    shown = [tips.nth(i) for i in range(tips.count()) if tips.nth(i).is_visible()]
    return " ".join(shown[0].inner_text().split()) if shown else ""


def figure_geometry(page) -> list[dict]:
    """Every shown Bokeh plot on the page: its CSS classes, ``frame_width`` / ``frame_height`` settings,
    the plot frame as laid out (``frame``: left, top, width, height) and the canvas size.

    A figure is drawn whole when its frame lies inside its canvas.
    """
    return page.evaluate(
        """() => [...Bokeh.index.all_views()]
            .filter(v => v.frame !== undefined && v.canvas_view !== undefined && v.el.isConnected
                         && v.el.getClientRects().length > 0)       // shown (not display: none)
            .map(v => {
                const f = v.frame.bbox, c = v.canvas_view.bbox;
                return {classes: [...v.el.classList].filter(c => c.startsWith("ap-")).join(" "),
                        title: v.model.title ? v.model.title.text : "",
                        frame_width: v.model.frame_width, frame_height: v.model.frame_height,
                        frame: [f.left, f.top, f.width, f.height], canvas: [c.width, c.height]};
            })"""
    )


def clipped_figures(page) -> list[str]:
    """The plots whose frame does not fit its canvas or differs from its fixed frame size,
    one readable line each."""
    bad = []
    for g in figure_geometry(page):
        left, top, w, h = g["frame"]
        cw, ch = g["canvas"]
        fixed_w, fixed_h = g["frame_width"], g["frame_height"]
        if (left + w > cw + 1 or top + h > ch + 1 or (fixed_w is not None and abs(w - fixed_w) > 1)
                or (fixed_h is not None and abs(h - fixed_h) > 1)):
            bad.append(f"{g['classes'] or '?'} ({g['title']!r}): frame {w:.0f}x{h:.0f} at "
                       f"({left:.0f}, {top:.0f}), fixed {fixed_w}x{fixed_h}, canvas {cw:.0f}x{ch:.0f}")
    return bad


def figure_frame_point(page, css: str, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of the data point ``(x, y)`` in the Bokeh figure whose host has ``css``.

    Reads the figure's own scales (``Bokeh.index``), so it does not depend on axis or title sizes.
    """
    host = page.locator(css).first
    host.scroll_into_view_if_needed()
    return host.evaluate(
        f"""(el, [x, y]) => {{
            const view = ({_PLOT_VIEW_JS})(el);
            const r = el.getBoundingClientRect();
            return [r.left + view.frame.x_scale.compute(x), r.top + view.frame.y_scale.compute(y)];
        }}""",
        [x, y],
    )


def click_heatmap_row(page, head: int, row: int, key: float = 0.0) -> None:
    """Click head ``head``'s map at query row ``row`` (and key column ``key``)."""
    px, py = figure_frame_point(page, *head_cell(page, head, key, row))
    page.mouse.click(px, py)


def serving(server: AppServer):
    """Start ``server`` for a fixture (a start failure fails the test with the log), yield it,
    always stop it and remove its log."""
    try:
        server.start()
    except (RuntimeError, AssertionError) as exc:
        server.remove_log()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        server.remove_log()
