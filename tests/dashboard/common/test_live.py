"""The views' one update pipeline (``common.live.LiveView``): served documents are written on
their own loop in one coalesced callback, notebook outputs get ``push_notebook``, and every
figure carries the id of the state it shows."""
from __future__ import annotations

import html
import re
import threading
from functools import partial

import panel as pn
import pytest
from harness import models_with_class, rendered

from dashboard.common.live import MIN_INTERVAL, STATE_TAG, part_of_state
from dashboard.playground import AttentionPlayground, PlaygroundView
from dashboard.playground.view import state_id


class _Session:
    """Stands in for a Bokeh server session: a document with a session context whose next-tick
    callbacks are queued here instead of on a server loop."""


def _served(doc, queued: list):
    session = _Session()
    doc._session_context = lambda: session
    doc.add_next_tick_callback = lambda cb: queued.append(cb)
    doc.add_timeout_callback = lambda cb, ms: queued.append(cb) or delays.append(ms)
    return session


delays: list = []


def _figure_ids(doc) -> set[str]:
    ids = set()
    for m in doc.models:
        for tag in getattr(m, "tags", None) or []:
            if isinstance(tag, str) and tag.startswith(STATE_TAG):
                ids.add(tag[len(STATE_TAG):])
    return ids


def _figures_show(doc, sid: str) -> bool:
    """Every figure's state tag is ``sid`` or a part of it (``part_of_state``); asserts it."""
    pairs = set(re.findall(r"[A-Za-z_]+=\S*", sid))
    ids = _figure_ids(doc)
    assert ids, "no figure carries a state tag"
    for fid in ids:
        part = set(re.findall(r"[A-Za-z_]+=\S*", fid))
        assert part and part <= pairs, f"a figure shows {fid!r}, the state is {sid!r}"
    return True


def _page_state(doc) -> str:
    (pane,) = models_with_class(doc, "ap-state")
    return html.unescape(pane.text)


def test_every_figure_and_the_state_element_name_the_state_shown():
    pg = AttentionPlayground(seq_len=8, num_heads=2)
    view = PlaygroundView(pg)
    with rendered(view.layout) as page:
        assert _figures_show(page.doc, state_id(pg.result, pg.query, pg.view_head))
        pg.param.update(seed=5, query=3)
        want = state_id(pg.result, 3, pg.view_head)
        assert "seed=5" in want and "q=3" in want
        assert _figures_show(page.doc, want) and view.shown_id == want
        assert f'data-state="{want}"' in _page_state(page.doc)


def test_a_figure_that_is_not_redrawn_keeps_its_tag():
    """A new tag repaints a figure in BokehJS: a query step leaves the mask and the invariance chart
    alone, an L step touches only the invariance chart, a causal flip every figure."""
    pg = AttentionPlayground(seq_len=8, num_heads=2)
    view = PlaygroundView(pg)
    with rendered(view.layout):
        figs = {"heads": view.heads_plot.figure, "query": view.query_plot.figure,
                "steps": view.single_plots[0].figure, "mask": view.mask_plot.figure,
                "invariance": view.invariance_plot.figure}

        def tags():
            return {name: next(t for t in f.tags if t.startswith(STATE_TAG)) for name, f in figs.items()}

        def changed(**params):
            before = tags()
            pg.param.update(**params)
            after = tags()
            for name, tag in after.items():
                part = set(tag[len(STATE_TAG):].split())
                assert part and part <= set(view.shown_id.split()), (name, tag, view.shown_id)
            return {name for name in figs if after[name] != before[name]}

        assert tags()["mask"] == f"{STATE_TAG}T=8 causal=1 text=-"
        assert changed(query=3) == {"heads", "query", "steps"}
        assert changed(prefix=2) == {"invariance"}
        assert changed(view_head=1) == {"steps"}
        assert changed(seed=4) == {"heads", "query", "steps", "invariance"}
        assert changed(causal=False) == set(figs)


def test_part_of_state_keeps_the_named_pairs_in_order():
    sid = "T=16 H=4 D=16 causal=1 seed=0 L=7 q=7 head=0 pos=0.5 text=-"
    assert part_of_state(sid, ("text", "T", "causal")) == "T=16 causal=1 text=-"
    assert part_of_state(sid, ()) == ""
    assert part_of_state("model=a b relation=causal", ("model",)) == "model=a b"


def test_served_changes_from_many_threads_become_one_update_on_the_sessions_loop():
    pg = AttentionPlayground(seq_len=8, num_heads=2)
    view = PlaygroundView(pg)
    with rendered(view.layout) as page:
        queued: list = []
        _served(page.doc, queued)
        before = view.n_updates
        threads = [threading.Thread(target=setattr, args=(pg, "query", q)) for q in (1, 2, 3, 4, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ours = [cb for cb in queued if isinstance(cb, partial) and cb.func == view._update_served]
        assert view.n_updates == before          # nothing written from the worker threads
        assert len(ours) == 1                    # one pending update for the burst
        for cb in queued:                        # the loop runs them (under the document lock)
            cb()
        queued.clear()
        assert view.n_updates == before + 1
        assert view.shown_id == state_id(pg.result, pg.query, pg.view_head)
        assert _figures_show(page.doc, view.shown_id)
        delays.clear()
        pg.seed = 9                              # after the update: a new request is queued again,
        for cb in list(queued):                  # (the loop sets the delayed update's timer)
            if not (isinstance(cb, partial) and cb.func == view._update_served):
                queued.remove(cb)
                cb()
        ours = [cb for cb in queued if isinstance(cb, partial) and cb.func == view._update_served]
        assert len(ours) == 1                    # ... delayed: the page got an update a moment ago
        assert delays and 0 < delays[-1] <= 1000 * MIN_INTERVAL + 1


def test_timers_are_set_on_the_sessions_loop_never_from_a_worker_thread():
    """A delayed update requested from a worker thread (the state's recompute, Panel's thread
    pool) reaches the loop as a next-tick callback, which sets the timer there: Bokeh's
    ``add_timeout_callback`` from another thread files the timer without waking the loop or loses
    it, and the page then never showed the last click of a burst (CI, stop 18)."""
    pg = AttentionPlayground(seq_len=8, num_heads=2)
    view = PlaygroundView(pg)
    with rendered(view.layout) as page:
        queued: list = []
        _served(page.doc, queued)
        timer_threads: list[int] = []
        add_timeout = page.doc.add_timeout_callback
        page.doc.add_timeout_callback = lambda cb, ms: timer_threads.append(threading.get_ident()) \
            or add_timeout(cb, ms)
        pg.seed = 2                               # an update goes out now ...
        while queued:
            queued.pop(0)()
        worker = threading.Thread(target=setattr, args=(pg, "query", 5))
        worker.start()                            # ... so this one waits for the rest of the gap
        worker.join()
        assert timer_threads == []                # nothing set from the worker thread
        while queued:                             # the loop runs what it was handed
            queued.pop(0)()
        assert timer_threads and set(timer_threads) == {threading.get_ident()}
        assert "q=5" in view.shown_id


def test_a_notebook_output_gets_pushed_after_each_update(monkeypatch):
    pushed = []
    monkeypatch.setattr(pn.io, "push_notebook", lambda *objs: pushed.append(objs))
    pg = AttentionPlayground(seq_len=8, num_heads=2)
    view = PlaygroundView(pg)
    with rendered(view.layout):
        pg.query = 2
        assert pushed and pushed[-1] == (view.layout,)
        assert "q=2" in view.shown_id


def test_a_view_not_displayed_yet_still_follows_its_state():
    pg = AttentionPlayground(seq_len=8, num_heads=2)
    view = PlaygroundView(pg)
    pg.seed = 4
    assert "seed=4" in view.shown_id
    with rendered(view.layout) as page:
        assert _figures_show(page.doc, view.shown_id)


@pytest.mark.parametrize("T", [4, 12])
def test_heads_steps_stamp_the_heads_figure_with_the_state_and_its_grid(T):
    pg = AttentionPlayground(seq_len=T, num_heads=4)
    view = PlaygroundView(pg)
    with rendered(view.layout) as page:
        pg.num_heads = 2
        pg.num_heads = 5
        fig = models_with_class(page.doc, "ap-heads-map")[0]
        assert _figures_show(page.doc, view.shown_id)
        assert f"ap-heads:H=5 T={T} " in " ".join(fig.tags)


def test_a_served_busy_badge_waits_for_work_that_is_still_running_after_the_delay():
    """Served, "busy" sends nothing at once: ``SPINNER_DELAY`` later the badge is shown if the
    state is still busy, and not at all for work done by then (a quarter-second badge only
    flickers, and its page updates ran while the server computed)."""
    import param

    from dashboard.common.live import SPINNER_DELAY

    pg = AttentionPlayground(seq_len=256, num_heads=4)          # worth a spinner (wants_spinner)
    view = PlaygroundView(pg)
    assert view.wants_spinner() and view.busy_badge()
    with rendered(view.layout) as page:
        queued: list = []
        _served(page.doc, queued)
        delays.clear()

        def run_queue():
            while queued:
                queued.pop(0)()

        badges = []
        view.busy_pane.param.watch(lambda e: badges.append(e.new), "object")
        pg.seed = 3                               # computed at once here: done before the delay
        run_queue()
        assert delays and delays[0] == int(SPINNER_DELAY * 1000)
        assert badges == [] and view.shown_id == state_id(pg.result, pg.query, pg.view_head)

        with param.edit_constant(pg):             # work still running when the delay is over
            pg.busy = True
        assert view.busy_pane.object == ""        # nothing sent yet
        run_queue()
        assert 'data-busy="1"' in view.busy_pane.object
        with param.edit_constant(pg):
            pg.busy = False
        run_queue()
        assert view.busy_pane.object == "" and len(badges) == 2
