"""An in-page probe for felt latency and page consistency, shared by the browser tests
(``test_input_bursts.py``, ``test_session_*.py``) and ``benchmarks/bench_browser.py`` /
``benchmarks/load_test.py``.

Two ways to know that the page caught up with an input:

``state`` (the state-id contract, issue 9)
    Every tab view holds an element ``.ap-state`` with a child span ``.ap-state-id`` whose
    ``data-state`` is the state id of what the figures show, and every live Bokeh figure of the view
    has a tag ``"ap-state:<id>"``, or ``"ap-state:<part of id>"`` with only the pairs the figure
    draws (the Playground's mask: ``T=16 causal=1 text=-``; a figure that is not redrawn keeps its
    tag, as a new tag repaints it). The page is *consistent* when every shown figure's tag equals
    the ``.ap-state`` id or is a part of it, and that id equals what the controls' current values imply
    (Playground: ``T=16 H=4 D=16 causal=1 seed=0 L=7 q=7 head=0 pos=0.5 text=<8 hex of sha1> | -``;
    Leak detector: ``model=<name> relation=<name>``). The controls are read in the browser from
    the Bokeh models carrying the hook classes listed in ``dashboard/app.py``.

``quiet`` (fallback while the contract is missing)
    Every Bokeh document change is hooked (``doc.on_change``); the input is answered when no
    change arrived for ``quiet_ms``. "Figures updated" is the last change to a non-control
    model (figures, sources, ranges, HTML panes) and "painted" two animation frames after it.

In the ``state`` mode the answer's time is when the change that made the page consistent was
painted (two animation frames after it); the check (~30 ms of walking the page on a 2-core
machine) runs only after a painted change, never while the page still applies the answer:
polled every 10 ms, as it first was, it took the main thread from the very page it timed and
inflated a 120 ms seed change to 570 ms.

Times are the page's own clock (``performance.now()`` / ``event.timeStamp``): the input is the
first ``keydown`` / ``pointerdown`` / ``mousedown`` after :func:`arm`, so Python's scheduling does
not enter the numbers. A WebSocket wrapper (:data:`WS_INIT_JS`, added before navigation) records
when messages leave and arrive, for the split of where the time goes.
"""
from __future__ import annotations

import hashlib
import re
import time

# Added with ``page.add_init_script`` / ``context.add_init_script``: wraps WebSocket to time frames.
WS_INIT_JS = r"""
(() => {
  if (window.__apWs) return;
  const rec = window.__apWs = {sent: [], recv: []};
  const Orig = window.WebSocket;
  class Wrapped extends Orig {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (ev) => {
        const n = typeof ev.data === "string" ? ev.data.length : (ev.data.byteLength || ev.data.size || 0);
        rec.recv.push([performance.now(), n]);
        if (rec.recv.length > 20000) rec.recv.splice(0, 10000);
      });
    }
    send(data) {
      const n = typeof data === "string" ? data.length : (data.byteLength || data.size || 0);
      rec.sent.push([performance.now(), n]);
      if (rec.sent.length > 20000) rec.sent.splice(0, 10000);
      return super.send(data);
    }
  }
  window.WebSocket = Wrapped;
})();
"""

PROBE_JS = r"""
(() => {
  if (window.__ap) { window.__ap.attach(); return; }
  const ap = window.__ap = {
    armed: false, tInput: null, inputType: null,
    lastAny: 0, lastView: 0, lastData: 0, lastViewPainted: 0, viewSeq: 0, nEvents: 0,
    paintedEvents: -1, paintedAt: 0,
    spinnerOnAt: 0, spinnerOffAt: 0, spinnerWasOn: false,
  };
  const CONTROL = /Slider|Spinner|Checkbox|Select|Input|widgets\.|layout\.|^Row$|^Column$|Tabs|Spacer|FileDownload|Button|Toggle/;
  const HOOKS = {
    "ap-seq-len": "T", "ap-num-heads": "H", "ap-head-dim": "D", "ap-causal": "causal",
    "ap-seed": "seed", "ap-prefix": "L", "ap-query": "q", "ap-view-head": "head",
    "ap-position-scale": "pos", "ap-text": "text",
    "ap-leak-model": "model", "ap-leak-allowed": "relation",
  };
  const STATIC_FIGURES = ["ap-colorbar", "ap-leak-mask"];   // never change with the state
  const frames = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const sleep = (ms) => new Promise(r => setTimeout(r, ms));

  ap.deepAll = (sel, root = document, out = []) => {
    out.push(...root.querySelectorAll(sel));
    for (const el of root.querySelectorAll("*")) if (el.shadowRoot) ap.deepAll(sel, el.shadowRoot, out);
    return out;
  };
  const shown = (el) => el.isConnected && el.getClientRects().length > 0;
  // the element whose box says whether ``el`` is shown: its shadow host (a Panel pane's host
  // element) when it lives in a shadow root, else itself
  const hostOf = (el) => { const root = el.getRootNode(); return root && root.host ? root.host : el; };
  // elements matching ``inner`` inside the (shadow roots of the) shown hosts matching ``host``
  ap.deepIn = (host, inner) => ap.deepAll(host).filter(shown)
    .flatMap(h => [...(h.matches(inner) ? [h] : []), ...ap.deepAll(inner, h.shadowRoot || h)]);

  ap.spinnerModels = () => {
    const out = [];
    for (const doc of Bokeh.documents)
      for (const m of doc.all_models)
        if ((m.css_classes || []).includes("pn-loading")) out.push((m.css_classes || []).join(" "));
        else if ((m.css_classes || []).includes("ap-busy") && String(m.text || "").includes("data-busy"))
          out.push("ap-busy");         // a view's floating busy badge (common/live.py busy_html)
    return out;
  };
  // Panel's loading indicator is the "pn-loading" class on a model (Reactive.loading): reading
  // the models is cheap, unlike a walk through every shadow root of the page (~30 ms per call,
  // which, polled, delayed the very page it measured)
  ap.spinnerShown = () => ap.spinnerModels().length > 0;

  ap.onChange = (ev) => {
    const t = performance.now();
    const n = ++ap.nEvents;
    ap.lastAny = t;
    // the moment this change (any model) was painted: two animation frames after it, if no
    // later change came meanwhile (BokehJS paints in the first frame after a change)
    frames().then(() => { if (n === ap.nEvents) { ap.paintedEvents = n; ap.paintedAt = performance.now(); } });
    const m = ev.model;
    if (ev.attr === "css_classes" || (ev.attr === "text" && (m && (m.css_classes || []).includes("ap-busy")))) {
      const on = ap.spinnerModels().length > 0;
      if (on && !ap.spinnerWasOn) ap.spinnerOnAt = t;
      if (!on && ap.spinnerWasOn) ap.spinnerOffAt = t;
      ap.spinnerWasOn = on;
    }
    if (m !== undefined && m !== null && CONTROL.test(m.type || "")) return;
    if (m !== undefined && m !== null && /DataSource/.test(m.type || "")) ap.lastData = t;
    ap.lastView = t;
    const seq = ++ap.viewSeq;
    frames().then(() => { if (seq === ap.viewSeq) ap.lastViewPainted = performance.now(); });
  };
  ap.attach = () => {
    for (const doc of Bokeh.documents)
      if (!doc.__apHooked) { doc.__apHooked = true; doc.on_change((ev) => ap.onChange(ev)); }
  };
  for (const type of ["keydown", "pointerdown", "mousedown"])
    window.addEventListener(type, (ev) => {
      if (ap.armed && ap.tInput === null) { ap.tInput = ev.timeStamp; ap.inputType = type; ap.armed = false; }
    }, true);
  ap.arm = () => { ap.attach(); ap.armed = true; ap.tInput = null; ap.inputType = null; };

  // -- controls, state ids, figures ------------------------------------------------------------
  const valueOf = (m) => {
    if (m === null || m === undefined) return undefined;
    if (m.type === "Checkbox" || ("active" in m && typeof m.active === "boolean")) return m.active;
    if ("value" in m && m.value !== undefined) return m.value;
    for (const c of (m.children || [])) {          // a composite widget (EditableIntSlider)
      const v = valueOf(Array.isArray(c) ? c[0] : c);
      if (v !== undefined) return v;
    }
    return undefined;
  };
  // the values of the controls shown now (the visible tab's), by their hook classes
  ap.controls = () => {
    const out = {};
    for (const view of Bokeh.index.all_views()) {
      const m = view.model;
      for (const c of (m.css_classes || []))
        if (c in HOOKS && !(HOOKS[c] in out) && view.el && shown(view.el)) {
          const v = valueOf(m);
          if (v !== undefined) out[HOOKS[c]] = v;
        }
    }
    return out;
  };
  ap.stateIds = () => ap.deepAll(".ap-state-id")
    .filter(el => el.isConnected && (shown(el) || shown(hostOf(el))))
    .filter(el => el.closest(".ap-state") !== null || hostOf(el).closest(".ap-state") !== null
                  || (hostOf(el).classList && hostOf(el).classList.contains("ap-state")))
    .map(el => el.getAttribute("data-state"));
  ap.figures = () => [...Bokeh.index.all_views()]
    .filter(v => v.frame !== undefined && v.canvas_view !== undefined && v.model.visible !== false
                 && v.el.isConnected && v.el.getClientRects().length > 0)
    .map(v => ({
      classes: [...v.el.classList].filter(c => c.startsWith("ap-")).join(" "),
      tags: (v.model.tags || []).filter(t => typeof t === "string" && t.startsWith("ap-state:"))
                                .map(t => t.slice("ap-state:".length)),
    }));
  // head maps shown: the maps drawn in the heads figure (its "head h" labels) plus any displayed
  // per-head figure (.ap-head-heatmap, the exported page)
  ap.headMaps = () => {
    let n = 0;
    for (const v of Bokeh.index.all_views()) {
      if (v.frame === undefined || v.model.visible === false || !v.el.isConnected
          || v.el.getClientRects().length === 0) continue;
      const cls = v.model.css_classes || [];
      if (cls.includes("ap-head-heatmap")) n += 1;
      else if (cls.includes("ap-heads-map")) {
        const r = v.model.renderers.find(r => r.glyph !== undefined && r.glyph.type === "Text");
        if (r !== undefined) n += r.data_source.data.Label.length;
      }
    }
    return n;
  };
  ap.snapshot = () => ({
    controls: ap.controls(), states: ap.stateIds(), figures: ap.figures(),
    heads: ap.headMaps(),
    spinner: ap.spinnerShown(),
  });

  // -- comparison ---------------------------------------------------------------------------------
  const sha8 = async (text) => {
    const buf = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
    return [...new Uint8Array(buf)].map(b => b.toString(16).padStart(2, "0")).join("").slice(0, 8);
  };
  ap.parseState = (s) => {
    const out = {};
    const re = /([A-Za-z_]+)=(.*?)(?= [A-Za-z_]+=|$)/g;
    let m;
    while ((m = re.exec(s || "")) !== null) out[m[1]] = m[2];
    return out;
  };
  // a figure's tag names the state it shows, or the part of it the figure draws (its pairs):
  // every pair must be in the view's state id, and there must be at least one
  ap.partOf = (tag, id) => {
    if (tag === id) return true;
    const part = ap.parseState(tag), all = ap.parseState(id);
    const keys = Object.keys(part);
    return keys.length > 0 && keys.every(k => k in all && part[k] === all[k]);
  };
  const same = (a, b) => {
    if (a === b) return true;
    const x = Number(a), y = Number(b);
    return a !== "" && b !== "" && !Number.isNaN(x) && !Number.isNaN(y) && Math.abs(x - y) < 1e-9;
  };
  ap.expected = async (c) => {
    if ("model" in c) return {model: c.model, relation: c.relation};
    if ("T" in c) {
      const text = (c.text || "").trim();
      return {T: c.T, H: c.H, D: c.D, causal: c.causal ? 1 : 0, seed: c.seed, L: c.L, q: c.q,
              head: c.head, pos: c.pos, text: text ? await sha8(c.text) : "-"};
    }
    if ("model" in c) return {model: c.model, relation: c.relation};
    return {};
  };
  // problems (list of strings): [] = consistent. relationOk(stateValue, widgetLabel) is lenient.
  ap.check = async () => {
    const snap = ap.snapshot();
    const problems = [];
    const exp = await ap.expected(snap.controls);
    if (snap.states.length === 0) problems.push("no .ap-state .ap-state-id on the page (contract missing)");
    else if (snap.states.length > 1 && new Set(snap.states).size > 1)
      problems.push(`several .ap-state ids disagree: ${JSON.stringify(snap.states)}`);
    const id = snap.states[0];
    if (id !== undefined) {
      const got = ap.parseState(id);
      for (const [k, v] of Object.entries(exp)) {
        if (!(k in got)) { problems.push(`state id ${JSON.stringify(id)} lacks ${k}`); continue; }
        if (k === "relation") {
          const rel = ap.relations && ap.relations[v];
          if (same(got[k], v) || (rel && rel.includes(got[k]))) continue;
        }
        if (!same(got[k], v)) problems.push(`state ${k}=${got[k]} but the control shows ${v}`);
      }
      for (const f of snap.figures) {
        if (f.tags.length === 0) {
          if (!STATIC_FIGURES.some(c => f.classes.includes(c)))
            problems.push(`figure ${f.classes || "?"} has no ap-state tag`);
        } else if (!f.tags.some(t => ap.partOf(t, id))) problems.push(`figure ${f.classes || "?"} shows ${f.tags[0]}`);
      }
    }
    if ("H" in snap.controls && snap.heads !== snap.controls.H)
      problems.push(`${snap.heads} head maps shown but the heads control shows ${snap.controls.H}`);
    return {ok: problems.length === 0, problems, snapshot: snap, expected: exp};
  };

  // -- waiting ----------------------------------------------------------------------------------
  ap.quietFor = async (quietMs, timeoutMs) => {
    const t0 = performance.now();
    while (performance.now() - t0 < timeoutMs) {
      if (performance.now() - ap.lastAny >= quietMs && !ap.spinnerShown()) return true;
      await sleep(25);
    }
    return false;
  };
  // After an armed input: resolve with the timings of its answer.
  //   mode "state": the first moment the page is consistent (ap.check), + 2 frames = painted;
  //   mode "quiet": the last view change before quietMs without changes, + 2 frames = painted.
  // Control-specific signs that the answer is complete (used by the "quiet" mode only).
  const figTitle = (cls) => {
    const v = [...Bokeh.index.all_views()].find(v => v.frame !== undefined && v.el.classList.contains(cls));
    return v && v.model.title ? v.model.title.text : "";
  };
  const badge = () => { const b = ap.deepIn(".ap-verdict-pane", ".ap-badge")[0];
                        return b ? b.getAttribute("data-verdict") : null; };
  ap.done = {
    heads: () => ap.snapshot().heads === ap.controls().H,
    query: () => new RegExp(`^Query (tok_)?${ap.controls().q}\\b`).test(figTitle("ap-query-plot")),
    causal: () => badge() === (ap.controls().causal ? "PASS" : "FAIL"),
    data: () => ap.lastData > (ap.tInput ?? Infinity),      // some figure got new data
  };
  ap.waitAnswer = async (mode, quietMs, timeoutMs, doneName) => {
    const done = (doneName && ap.done[doneName]) || (() => true);
    const t0 = performance.now();
    while (ap.tInput === null && performance.now() - t0 < 5000) await sleep(5);
    const tIn = ap.tInput;
    if (tIn === null) return {error: "no input event seen after arm()"};
    const out = {mode, tInput: tIn, inputType: ap.inputType};
    const deadline = tIn + timeoutMs;
    if (mode === "state") {
      // ap.check() walks the page (~30 ms on a 2-core machine): run it only when a change that
      // came after the input has been painted, and only once per such change, so that the probe
      // never holds the main thread while the page still applies the answer. The answer's time
      // is when the change the passing check saw was painted (not when the check ended).
      let last = null, checked = -1;
      for (;;) {
        const n = ap.nEvents;
        if (ap.lastAny > tIn && n !== checked && ap.paintedEvents === n) {
          checked = n;
          const tChange = ap.lastAny, tPaint = ap.paintedAt;
          last = await ap.check();
          if (last.ok && ap.nEvents === n) { out.tFigures = tChange; out.tPainted = tPaint; break; }
        }
        if (performance.now() > deadline)
          return {...out, error: "timeout", problems: last ? last.problems : ["no change after the input"]};
        await sleep(5);
      }
    } else {
      for (;;) {
        const now = performance.now();
        if (ap.lastView > tIn && now - ap.lastAny >= quietMs && ap.lastViewPainted >= ap.lastView
            && done()) break;
        if (now > deadline) return {...out, error: ap.lastView > tIn ? "timeout" : "no view change"};
        await sleep(20);
      }
      out.tFigures = ap.lastView;
      out.tPainted = ap.lastViewPainted;
    }
    // spinner gone: the first moment (after the figures) with no loading spinner, held 100 ms
    let off = null;
    for (;;) {
      const now = performance.now();
      if (ap.spinnerShown()) off = null; else if (off === null) off = now;
      if (off !== null && now - off >= 100) break;
      if (now > deadline) { out.spinnerTimeout = true; break; }
      await sleep(10);
    }
    out.spinnerSeen = ap.spinnerOnAt > tIn;
    out.tSpinnerGone = Math.max(out.tPainted, off === null ? performance.now() : off);
    if (mode === "quiet")        // the quiet wait is over: the spinner went off when its class did
      out.tSpinnerGone = out.spinnerSeen ? Math.max(out.tPainted, ap.spinnerOffAt) : out.tPainted;
    if (window.__apWs) {
      const ws = window.__apWs;
      const sent = ws.sent.find(([t]) => t >= tIn);
      out.tSent = sent ? sent[0] : null;
      const recv = ws.recv.filter(([t]) => t >= (out.tSent ?? tIn) && t <= out.tFigures + 1);
      out.tRecvFirst = recv.length ? recv[0][0] : null;
      out.tRecvLast = recv.length ? recv[recv.length - 1][0] : null;
      out.recvBytes = recv.reduce((s, [, n]) => s + n, 0);
      out.frames = recv.map(([t, n]) => [Math.round(t - tIn), n]);
    }
    return out;
  };
  ap.attach();
})();
"""


def install(page) -> None:
    """Install the probe into a loaded app page (idempotent; hooks new documents too)."""
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")
    page.evaluate(PROBE_JS)


def set_relations(page, relations: dict[str, list[str]]) -> None:
    """Names a state id may use for each relation label of the Leak detector's select."""
    page.evaluate("(r) => { window.__ap.relations = r; }", relations)


def leak_relation_names() -> dict[str, list[str]]:
    """Leak detector: select label -> names a state id may give it (label, spec, own names)."""
    from attention.zoo import ZOO
    from dashboard.leaks.state import OWN, RELATION_CHOICES

    out = {}
    for label, spec in RELATION_CHOICES.items():
        names = [label, spec]
        if spec == OWN:
            names += sorted({getattr(e.allowed(12), "__name__", "") for e in ZOO.values()} - {""})
        out[label] = names
    return out


def check(page) -> dict:
    """``{"ok", "problems", "snapshot", "expected"}``: is the page consistent right now?"""
    return page.evaluate("() => window.__ap.check()")


def contract_present(page) -> bool:
    return bool(page.evaluate("() => window.__ap.stateIds().length > 0"))


def arm(page) -> None:
    page.evaluate("() => window.__ap.arm()")


def wait_answer(page, mode: str, *, quiet_ms: int = 400, timeout_ms: int = 30_000,
                done: str | None = None) -> dict:
    """Timings (page clock, ms) of the answer to the input made after :func:`arm`.

    ``done``: ``"heads"``, ``"query"``, ``"causal"`` or ``"data"``: in the quiet mode, also wait
    until the page visibly shows that control's value (head-map count, query-plot title, verdict)
    or, for ``"data"``, until some figure's data source changed.
    """
    return page.evaluate("([m, q, t, d]) => window.__ap.waitAnswer(m, q, t, d)",
                         [mode, quiet_ms, timeout_ms, done])


def settle(page, *, quiet_ms: int = 400, timeout_ms: int = 30_000) -> bool:
    """Wait until no document change arrived for ``quiet_ms`` and no spinner shows."""
    return bool(page.evaluate("([q, t]) => window.__ap.quietFor(q, t)", [quiet_ms, timeout_ms]))


def wait_consistent(page, timeout: float = 10.0) -> dict:
    """Poll :func:`check` until ok or ``timeout`` seconds; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        res = check(page)
        if res["ok"] or time.monotonic() > deadline:
            return res
        page.wait_for_timeout(100)


def text_hash(text: str) -> str:
    """The ``text=`` field of the playground's state id."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8] if text.strip() else "-"


# server log ------------------------------------------------------------------------------------
_EXC = re.compile(r"^(?:Traceback \(most recent call last\)|.*\b(?:ERROR|Error running|Exception)\b.*"
                  r"|\w+(?:Error|Exception): .*)$", re.M)


def server_problems(log: str) -> list[str]:
    """Exception and error lines of a ``panel serve`` log (deduplicated, in order)."""
    seen, out = set(), []
    for m in _EXC.finditer(log):
        line = m.group(0).strip()
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


_EXC_LINE = re.compile(r"^\s*([\w.]+(?:Error|Exception|Warning)?): .*$", re.M)


def server_exceptions(log: str) -> list[str]:
    """The final lines of the tracebacks in a server log (``SomeError: message``), in order."""
    out = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            for nxt in lines[i + 1:]:
                if nxt and not nxt.startswith((" ", "\t")) and not nxt.startswith("Traceback"):
                    out.append(nxt.strip())
                    break
    return out
