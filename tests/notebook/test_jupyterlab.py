"""examples/playground.ipynb in a real JupyterLab 4 and Notebook 7, offline, in chromium.

Each app is started once per module (``_jupyter.JupyterServer``: temporary root, no token, the
kernel is this Python) and the notebook opened once in it (the ``session`` fixture: one page,
one Run All, shared by the tests; the fresh Run Alls restart its kernel); every request of the
page that is not to localhost is aborted and recorded. The notebook is run with "Run all cells"
(the app's own command) and then driven through its widgets and new cells. "Consistent" means
the output shows what the kernel holds: the verdict badge, the causal checkbox, the selected
query (query plot title) and the head maps' data against ``pg``.

The live-update tests (seed, ``pg.query = 2``) need the dashboard's update path to push Bokeh
model edits to notebook outputs (``pn.io.push_notebook``, dashboard/common/live.py). The last
test serves the notebook with ``panel serve``.
"""
from __future__ import annotations

import re
import time

import pytest

from _jupyter import (PANEL_MISSING, REPO_ROOT, JupyterServer, NotebookPage, block_non_local,
                      served_notebook, wait_for)
from _harness import PageWatch, head_count

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = REPO_ROOT / "examples" / "playground.ipynb"
FRESH_RUNS = 5

# JS: summary of the image data of the Bokeh figure hosted by an element (size, sum of squares)
_IMAGE_STATE = """(el) => {
    const view = [...Bokeh.index.all_views()].find(v => v.el === el && v.frame !== undefined);
    if (view === undefined) return null;
    for (const r of view.model.renderers) {
        const src = r.data_source;
        if (src && src.data && src.data.image) {
            const img = src.data.image[0];
            let s = 0;                    // sum of squares: independent of the row order
            for (const x of img) s += x * x;
            return [img.length, Math.round(s * 1e3) / 1e3];
        }
    }
    return null;
}"""
_TITLE = """(el) => {
    const view = [...Bokeh.index.all_views()].find(v => v.el === el && v.frame !== undefined);
    return view ? view.model.title.text : null;
}"""

# what the kernel holds, read through a silent request (no cell is added to the notebook)
KERNEL_EXPR = ("dict(causal=pg.causal, query=pg.query, seed=pg.seed, "
               "verdict='PASS' if pg.result.passed else 'FAIL', "
               "head0=[pg.result.weights.shape[1] ** 2, "
               "round(float((pg.result.weights[0].double() ** 2).sum()), 4)])")


def notebook_cells() -> int:
    """How many cells examples/playground.ipynb has."""
    import nbformat
    return len(nbformat.read(NOTEBOOK, as_version=4).cells)


def head_image(page):
    """Head 0's map in the heads figure (the first image of its image glyph): size, sum of squares."""
    return page.locator(".ap-heads-map").first.evaluate(_IMAGE_STATE)


def query_title(page) -> str:
    return page.locator(".ap-query-plot").first.evaluate(_TITLE) or ""


def verdict(page) -> str:
    return page.locator(".ap-verdict-pane .ap-badge").first.get_attribute("data-verdict")


def shown_state(page) -> dict:
    img = head_image(page)
    return dict(causal=page.locator(".ap-causal input[type=checkbox]").first.is_checked(),
                query_title=query_title(page), verdict=verdict(page),
                head0=img)


def kernel_state(nb: NotebookPage) -> dict:
    return nb.kernel_eval(KERNEL_EXPR)


def kernel_as_set(kernel: dict) -> bool:
    """``pg`` holds what the notebook's cells set (seq_len 12, 4 heads, prefix 5, query 5, the
    default seed and causal mask): nothing from the frontend changed it behind the cells' back."""
    from dashboard.playground import AttentionPlayground
    p = AttentionPlayground.param
    return (kernel["causal"] == p.causal.default and kernel["query"] == 5
            and kernel["seed"] == p.seed.default and kernel["head0"][0] == 12 * 12)


def shows_query(title: str, query: int) -> bool:
    """The query plot's title names ``query`` ("Query 5: weight on each key, per head")."""
    return re.match(rf"Query {query}(\D|$)", title or "") is not None


def consistent(shown: dict, kernel: dict) -> bool:
    return (shown["causal"] == kernel["causal"] and shown["verdict"] == kernel["verdict"]
            and shows_query(shown["query_title"], kernel["query"])
            and shown["head0"] is not None and shown["head0"][0] == kernel["head0"][0]
            and abs(shown["head0"][1] - kernel["head0"][1]) < 2e-3)


def open_and_run_all(context, server, name) -> tuple[NotebookPage, PageWatch, list[str], float]:
    blocked = block_non_local(context)
    page = context.new_page()
    watch = PageWatch.attach(page)
    nb = NotebookPage(page, server, name).open()
    t0 = time.monotonic()
    nb.run_all()
    page.locator(".ap-heads-map").first.wait_for(state="visible", timeout=180_000)
    rendered = time.monotonic() - t0
    nb.wait_idle()
    return nb, watch, blocked, rendered


@pytest.fixture(scope="module", params=["lab", "notebook"])
def server(request):
    srv = JupyterServer([NOTEBOOK], app=request.param)
    try:
        srv.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def session(server, nb_browser):
    """The playground notebook opened and run once (Run All) in this server; shared by the tests."""
    ctx = nb_browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(60_000)
    nb, watch, blocked, rendered = open_and_run_all(ctx, server, NOTEBOOK.name)
    print(f"\n[{server.app}] head maps shown {rendered:.1f} s after Run All")
    yield nb, watch, blocked
    ctx.close()


def test_run_all_renders_offline(session):
    nb, watch, blocked = session
    page = nb.page
    assert head_count(page) == 4
    assert page.locator(".ap-verdict-pane .ap-badge").count() >= 1
    assert not watch.saw(PANEL_MISSING)
    assert blocked == [], f"requests that needed the internet: {blocked}"
    assert not nb.errors_in_outputs(), nb.errors_in_outputs()
    ours = [e for e in watch.errors() if "bokeh" in e.lower() or "panel" in e.lower()]
    others = sorted({e[:100] for e in watch.errors()} - {e[:100] for e in ours})
    print(f"\n[{nb.server.app}] console errors not from Bokeh/Panel (the frontend's own): {others}")
    assert not ours, ours


def frontend_noise(watch: PageWatch, types=("error",)) -> dict[str, int]:
    """Console messages of these ``types`` and uncaught page errors, by kind (digits and ids
    removed), counted."""
    kinds: dict[str, int] = {}
    lines = [m for m in watch.console if m.split(":", 1)[0] in types]
    lines += [f"uncaught: {e}" for e in watch.page_errors]
    for line in lines:
        kind = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27,}|\d+", "#", line.splitlines()[0])[:120]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


YJS_NOT_SAME_DOC = "warning: [yjs##] Not same Y.Doc"


def test_frontend_errors_come_from_jupyter_not_the_dashboard(session, server, nb_browser):
    """Every kind of console error and uncaught page error of the playground's page, and
    Notebook 7's "[yjs#509] Not same Y.Doc" warning, also show in the same app for a notebook
    of as many cells that imports nothing of ours (``print(i)`` in each): they are the
    frontend's own (measured: NB7's "Cannot read properties of undefined (reading 'schema')"
    and the yjs warnings, about one per cell), not the dashboard's output."""
    nb, watch, _ = session
    ours = frontend_noise(watch)
    yjs = YJS_NOT_SAME_DOC in frontend_noise(watch, ("warning",))
    if not ours and not yjs:        # nothing to attribute (JupyterLab 4.6): no baseline page needed
        return
    cells = notebook_cells()
    name = server.write_notebook("baseline.ipynb", [f"print({i})" for i in range(cells)])
    ctx = nb_browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(60_000)
    try:
        blocked = block_non_local(ctx)
        page = ctx.new_page()
        base_watch = PageWatch.attach(page)
        base = NotebookPage(page, server, name).open()
        base.run_all()
        base.wait_idle()
        assert base.outputs_text()[-1].strip() == str(cells - 1)
        page.wait_for_timeout(2000)       # late messages (the playground's page had minutes)
    finally:
        ctx.close()
        server.shutdown_kernels(name)
    everything = ("error", "warning", "log", "info", "debug")
    print(f"\n[{server.app}] console messages by kind ({cells} cells each):"
          f"\n  playground: {frontend_noise(watch, everything)}"
          f"\n  print(i) notebook: {frontend_noise(base_watch, everything)}")
    assert blocked == []
    baseline = frontend_noise(base_watch)
    assert set(ours) <= set(baseline), sorted(set(ours) - set(baseline))
    if yjs:
        assert YJS_NOT_SAME_DOC in frontend_noise(base_watch, ("warning",))


def test_output_matches_the_kernel_after_run_all(session):
    nb, _, _ = session
    kernel = kernel_state(nb)
    wait_for(nb.page, lambda: consistent(shown_state(nb.page), kernel), timeout=60,
             what=f"the output to match the kernel {kernel} (shown {shown_state(nb.page)})")


def why_not(nb: NotebookPage, watch, console_from: int):
    """What to print when the page did not follow a click: did the kernel get the change (its
    state now) or not, and what the page logged since the click."""
    def explain() -> str:
        try:
            kernel = kernel_state(nb)
        except Exception as exc:                # noqa: BLE001
            kernel = f"unreadable ({exc!r})"
        return (f"kernel now: {kernel}\npage shows: {shown_state(nb.page)}\n"
                f"console since the input: {watch.console[console_from:][-12:]}")
    return explain


def test_causal_click_flips_the_verdict(session):
    nb, watch, _ = session
    page = nb.page
    before = verdict(page)
    n0 = len(watch.console)
    page.locator(".ap-causal input[type=checkbox]").first.click()
    wait_for(page, lambda: verdict(page) != before, timeout=60, what="the verdict to flip",
             explain=why_not(nb, watch, n0))
    page.locator(".ap-causal input[type=checkbox]").first.click()
    wait_for(page, lambda: verdict(page) == before, timeout=60, what="the verdict to flip back",
             explain=why_not(nb, watch, n0))


# Every notebook output's comm now waits for an acknowledgement that will not come (as when one
# went missing): Panel's CommManager then holds each later input until the next one is made.
STALL_ACKS_JS = """() => {
  const C = Bokeh.Models.get("panel.models.comm_manager.CommManager");
  let n = 0;
  for (const doc of Bokeh.documents)
    for (const m of doc._all_models.values())
      if (m instanceof C) { m._blocked = true; m._timeout = Date.now() + 600000; n += 1; }
  return n;
}"""


def test_a_click_still_reaches_the_kernel_when_an_acknowledgement_is_missing(session):
    """``common.panes.COMM_FLUSH_JS``: in CI and locally the causal box was ticked on the page
    while the kernel kept the old value for 60 s and more (a missing acknowledgement); the change
    must reach the kernel within ``COMM_RETRY_MS`` (the bound here is generous for CI)."""
    nb, watch, _ = session
    page = nb.page
    assert page.evaluate("() => window.__apCommFlush === true"), "the comm flush script did not run"
    for flip in ("off", "back"):
        assert page.evaluate(STALL_ACKS_JS) >= 1
        before, n0 = verdict(page), len(watch.console)
        page.locator(".ap-causal input[type=checkbox]").first.click()
        wait_for(page, lambda: verdict(page) != before, timeout=20,
                 what=f"the verdict to flip ({flip}) with the acknowledgement missing",
                 explain=why_not(nb, watch, n0))


def expected_head0(**settings) -> list:
    """What head 0's map holds for these settings (computed here, as the kernel computes it)."""
    from dashboard.playground import AttentionPlayground
    w = AttentionPlayground(**settings).result.weights[0].double()
    return [w.numel(), round(float((w ** 2).sum()), 4)]


def test_seed_change_repaints_the_head_maps(session):
    nb, watch, _ = session
    page = nb.page
    want = expected_head0(seq_len=12, num_heads=4, prefix=5, query=5, seed=7)
    n0 = len(watch.console)
    seed = page.locator(".ap-seed input").first
    seed.fill("7")
    seed.press("Enter")
    seed.blur()
    wait_for(page, lambda: (img := head_image(page)) and img[0] == want[0] and abs(img[1] - want[1]) < 2e-3,
             timeout=60, what=f"head 0's map to show seed 7 (want {want}, shown {head_image(page)})",
             explain=why_not(nb, watch, n0))


def test_query_set_from_a_new_cell_moves_the_selection(session):
    nb, _, _ = session
    page = nb.page
    nb.run_new_cell("pg.query = 2")
    wait_for(page, lambda: shows_query(query_title(page), 2), timeout=60,
             what=f"the query plot to show query 2 (title {query_title(page)!r})")


@pytest.mark.timeout(1200)
def test_fresh_run_alls_end_consistent(session, server):
    """Run All from a fresh kernel, FRESH_RUNS times in JupyterLab (once in Notebook 7, the same
    frontend code): the output always ends showing the kernel's state, and the kernel holds what
    the cells set.

    In the shared page (whose first Run All, on a newly opened page, the tests above check): the
    cells tests added are deleted, then each run is "Restart Kernel and Clear Outputs" (a new
    kernel, new outputs, new comms: what the race depends on) and "Run All". The kernel's state
    is read through a silent request, so the notebook's cells stay those of the example.
    """
    nb, watch, blocked = session
    nb.truncate(notebook_cells())
    runs = FRESH_RUNS if server.app == "lab" else 1
    results = []
    for _ in range(runs):
        nb.restart_fresh()
        t0 = time.monotonic()
        nb.run_all()
        nb.page.locator(".ap-heads-map").first.wait_for(state="visible", timeout=180_000)
        rendered = time.monotonic() - t0
        nb.wait_idle()
        kernel = kernel_state(nb)
        try:
            wait_for(nb.page, lambda: consistent(shown_state(nb.page), kernel), timeout=15)
            ok = kernel_as_set(kernel)
        except AssertionError:
            ok = False
        results.append((ok, round(rendered, 1), kernel, shown_state(nb.page)))
    print(f"\n[{server.app}] fresh Run Alls (ok, s to head maps, kernel, shown):", *results, sep="\n  ")
    assert len(results) == runs and all(ok for ok, *_ in results), results
    assert blocked == [], blocked
    assert not watch.saw(PANEL_MISSING)


def test_panel_serve_of_the_notebook(nb_browser):
    """``panel serve examples/playground.ipynb`` serves the notebook's outputs as a live app, with
    no non-local request (Panel's EditableTemplate links a Google font unless
    ``dashboard.extension()`` swapped it for its font-less subclass)."""
    from _harness import SESSION_OPEN

    with served_notebook("examples/playground.ipynb") as app:
        ctx = nb_browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.set_default_timeout(60_000)
        try:
            blocked = block_non_local(ctx)
            page = ctx.new_page()
            watch = PageWatch.attach(page)
            # the page's request runs the notebook: imports and all (minutes on a loaded machine)
            with page.expect_console_message(lambda m: SESSION_OPEN in m.text, timeout=240_000):
                page.goto(app.url, timeout=240_000)
            page.locator(".ap-heads-map").first.wait_for(state="visible", timeout=120_000)
            assert head_count(page) == 4
            before = verdict(page)
            page.locator(".ap-causal input[type=checkbox]").first.click()
            wait_for(page, lambda: verdict(page) != before, timeout=60, what="the verdict to flip")
            app.check_log()
            assert blocked == [], blocked
            assert watch.errors() == []
        finally:
            ctx.close()
