"""Start JupyterLab 4 / Notebook 7 on a temporary root and drive a notebook in chromium.

- :class:`JupyterServer` runs ``python -m jupyter lab`` (or ``notebook``) in a subprocess: no token,
  no password, ``--allow-root`` when root, a free port, a temporary root directory holding copies
  of the notebooks, and isolated Jupyter config/data/runtime directories. The kernel is this
  Python (``sys.executable``) with the repository first on ``PYTHONPATH``. The app is exposed as
  ``window.jupyterapp`` so that tests run commands (``notebook:run-all-cells``) the way the menu does.
  In JupyterLab each page gets a workspace of its own (no page restores another's notebooks).
- :func:`served_notebook`: ``panel serve NOTEBOOK`` ready once it answers a static file.
- :func:`block_non_local` aborts every request of a browser context that is not to localhost.
- :class:`NotebookPage` opens a notebook, runs all cells, restarts its kernel with cleared outputs,
  runs new cells, reads their output and evaluates expressions in the kernel silently.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
PANEL_MISSING = "Bokeh or Panel library is missing"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """``jupyter lab`` (``app="lab"``) or ``jupyter notebook`` (``app="notebook"``) in a subprocess.

    Args:
        notebooks: files copied into the server's (temporary) root directory.
        app: ``"lab"`` or ``"notebook"``.
        startup_timeout: seconds to wait for ``/api/status``.
    """

    def __init__(self, notebooks, app: str = "lab", *, startup_timeout: float = 120.0):
        assert app in ("lab", "notebook")
        self.app = app
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"ap-jupyter-{app}-"))
        self.root = self.tmp / "root"
        self.root.mkdir()
        for nb in notebooks:
            shutil.copy(nb, self.root / Path(nb).name)
        self.startup_timeout = startup_timeout
        self.log_path = self.tmp / "server.log"
        self.proc: subprocess.Popen | None = None

    def _env(self) -> dict:
        env = dict(os.environ)
        for name in ("config", "data", "runtime"):
            d = self.tmp / f"jupyter-{name}"
            d.mkdir(exist_ok=True)
            env[f"JUPYTER_{name.upper()}_DIR"] = str(d)
        # the kernel: this Python, found first through JUPYTER_PATH
        spec = self.tmp / "jupyter-path" / "kernels" / "python3"
        spec.mkdir(parents=True, exist_ok=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (attention-playground)", "language": "python",
        }))
        env["JUPYTER_PATH"] = str(self.tmp / "jupyter-path")
        env["JUPYTERLAB_SETTINGS_DIR"] = str(self.tmp / "lab-settings")
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(self.tmp / "lab-workspaces")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("JUPYTER_TOKEN", None)
        return env

    def start(self) -> "JupyterServer":
        exposed = "LabApp" if self.app == "lab" else "JupyterNotebookApp"
        cmd = [sys.executable, "-m", "jupyter", self.app, "--no-browser",
               "--ServerApp.open_browser=False", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
               "--IdentityProvider.token=", "--ServerApp.password=",
               "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={self.root}",
               f"--{exposed}.expose_app_in_browser=True",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--ServerApp.kernel_manager_class=jupyter_server.services.kernels.kernelmanager.AsyncMappingKernelManager"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self._env(), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/status", timeout=10) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"jupyter {self.app} did not answer within "
                                   f"{self.startup_timeout:.0f} s:\n{self.log()}")
            time.sleep(0.3)

    def url(self, notebook: str) -> str:
        """The page of ``notebook``. In JupyterLab, in a workspace of its own: the default
        workspace is shared by every page of the server, and a later page would restore (and
        show as its current tab) the notebooks earlier pages had open."""
        if self.app == "lab":
            self._pages = getattr(self, "_pages", 0) + 1
            return f"{self.base}/lab/workspaces/page{self._pages}/tree/{notebook}"
        return f"{self.base}/notebooks/{notebook}"

    def write_notebook(self, name: str, sources: list[str]) -> str:
        """Write a notebook of code cells holding ``sources`` into the root as ``name``."""
        import nbformat
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in sources])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, self.root / name)
        return name

    def shutdown_kernels(self, notebook: str | None = None) -> None:
        """Stop every kernel, or that of ``notebook`` only, through the REST API."""
        try:
            with urllib.request.urlopen(f"{self.base}/api/sessions", timeout=10) as resp:
                sessions = json.load(resp)
            for s in sessions:
                if notebook is not None and s.get("path") != notebook:
                    continue
                req = urllib.request.Request(f"{self.base}/api/sessions/{s['id']}", method="DELETE")
                urllib.request.urlopen(req, timeout=30).close()
        except (urllib.error.URLError, OSError):
            pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.shutdown_kernels()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def served_notebook(notebook: str, *, startup_timeout: float = 300.0):
    """``panel serve NOTEBOOK`` (``_harness.AppServer``) that counts as started once the server
    answers a static file: the page's own request is then the first session, instead of one
    session run by the start-up check and a second one by the page (the notebook runs once)."""
    from _harness import AppServer

    class StaticReady(AppServer):
        def _wait_until_answering(self) -> None:
            probe = f"http://localhost:{self.port}/static/js/bokeh.min.js"
            deadline = time.monotonic() + self.startup_timeout
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"panel serve exited with code {self.proc.returncode}:\n{self.log()}")
                try:
                    with urllib.request.urlopen(urllib.request.Request(probe, method="HEAD"), timeout=10) as r:
                        if r.status == 200:
                            return
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"panel serve did not answer within {self.startup_timeout:.0f} s:"
                                       f"\n{self.log()}")
                time.sleep(0.3)

    return StaticReady(notebook, startup_timeout=startup_timeout)


def block_non_local(context) -> list[str]:
    """Abort every request of ``context`` whose host is not localhost; return the list of them."""
    blocked: list[str] = []

    def handle(route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in LOCAL_HOSTS:
            route.continue_()
        elif parts.scheme in ("data", "blob"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", handle)
    return blocked


# ----------------------------------------------------------------------------------------------
# the notebook in the page (JupyterLab and Notebook 7 share the app API)
_CURRENT = "window.jupyterapp.shell.currentWidget"


class NotebookPage:
    """One notebook open in JupyterLab or Notebook 7 (``window.jupyterapp`` exposed)."""

    def __init__(self, page, server: JupyterServer, name: str):
        self.page, self.server, self.name = page, server, name

    def open(self, timeout: float = 90_000) -> "NotebookPage":
        self.page.goto(self.server.url(self.name), timeout=timeout)
        self.page.wait_for_function(
            f"""() => window.jupyterapp && {_CURRENT} && {_CURRENT}.sessionContext
                      && {_CURRENT}.context && {_CURRENT}.context.path === {json.dumps(self.name)}
                      && {_CURRENT}.sessionContext.session && {_CURRENT}.sessionContext.session.kernel
                      && {_CURRENT}.sessionContext.session.kernel.connectionStatus === 'connected'
                      && {_CURRENT}.sessionContext.session.kernel.status === 'idle'""",
            timeout=timeout)
        return self

    def command(self, name: str, args: dict | None = None):
        return self.page.evaluate("([n, a]) => window.jupyterapp.commands.execute(n, a || {})",
                                  [name, args])

    def run_all(self) -> None:
        self.command("notebook:run-all-cells")

    def truncate(self, n: int) -> None:
        """Delete every cell after the first ``n`` (cells tests added)."""
        self.page.evaluate(
            f"""(n) => {{ const m = {_CURRENT}.content.model.sharedModel;
                         if (m.cells.length > n) m.deleteCellRange(n, m.cells.length); }}""", n)
        self.page.wait_for_function(f"() => {_CURRENT}.content.widgets.length === {n}")

    def restart_fresh(self, timeout: float = 120_000) -> None:
        """Clear every output and restart the kernel (no dialog), as "Restart Kernel and Clear
        Outputs of All Cells" does; returns once the new kernel is idle."""
        self.command("notebook:clear-all-cell-outputs")
        self.page.evaluate(f"async () => {{ await {_CURRENT}.sessionContext.restartKernel(); }}")
        self.page.wait_for_function(
            f"""() => {{
                const k = {_CURRENT}.sessionContext.session.kernel;
                return k.connectionStatus === 'connected' && k.status === 'idle'
                       && !{_CURRENT}.content.node.querySelector('.jp-OutputArea-output');
            }}""", timeout=timeout, polling=100)

    def wait_idle(self, timeout: float = 180_000) -> None:
        """Wait until every code cell has an execution count and the kernel is idle."""
        self.page.wait_for_function(
            f"""() => {{
                const nb = {_CURRENT}.content;
                const cells = nb.widgets.filter(c => c.model.type === 'code');
                const k = {_CURRENT}.sessionContext.session.kernel;
                return cells.every(c => c.model.executionCount !== null && !c.node.querySelector('.jp-InputArea-prompt')?.textContent.includes('*'))
                       && k.status === 'idle';
            }}""", timeout=timeout, polling=250)

    def cell_count(self) -> int:
        return self.page.evaluate(f"() => {_CURRENT}.content.widgets.length")

    def outputs_text(self) -> list[str]:
        return self.page.evaluate(
            f"() => {_CURRENT}.content.widgets.map(c => c.node.querySelector('.jp-OutputArea') ? "
            "c.node.querySelector('.jp-OutputArea').innerText : '')")

    def errors_in_outputs(self) -> list[str]:
        return self.page.evaluate(
            f"() => [...{_CURRENT}.content.node.querySelectorAll("
            "'.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]')]"
            ".map(n => n.innerText)")

    def run_new_cell(self, code: str, timeout: float = 120_000, expect_output: bool = False) -> str:
        """Append a code cell holding ``code`` at the end, run it, return its text output
        (``expect_output``: wait until the output area shows something)."""
        n = self.cell_count()
        self.page.evaluate(
            f"""(code) => {{
                const panel = {_CURRENT};
                const nb = panel.content;
                nb.activeCellIndex = nb.widgets.length - 1;
                window.jupyterapp.commands.execute('notebook:insert-cell-below');
                const cell = nb.activeCell;
                cell.model.sharedModel.setSource(code);
            }}""", code)
        self.page.wait_for_function(f"() => {_CURRENT}.content.widgets.length === {n + 1}")
        # a click in an output (a widget) makes that cell active: select the new one again
        self.page.evaluate(f"() => {{ if (document.activeElement) document.activeElement.blur(); "
                           f"{_CURRENT}.content.activeCellIndex = {n}; }}")
        self.page.wait_for_function(f"() => {_CURRENT}.content.activeCellIndex === {n}")
        self.command("notebook:run-cell")
        self.page.wait_for_function(
            f"""() => {{
                const c = {_CURRENT}.content.widgets[{n}];
                const o = c.node.querySelector('.jp-OutputArea');
                return c.model.executionCount !== null && {_CURRENT}.sessionContext.session.kernel.status === 'idle'
                       && (!{'true' if expect_output else 'false'} || (o && o.innerText.trim().length > 0));
            }}""", timeout=timeout, polling=100)
        return self.page.evaluate(
            f"() => {{ const o = {_CURRENT}.content.widgets[{n}].node.querySelector('.jp-OutputArea');"
            " return o ? o.innerText : ''; }")

    def kernel_eval(self, expr: str, timeout: float = 60_000):
        """The JSON value of ``expr`` in the kernel (sent as a silent request, no new cell)."""
        text = self.page.evaluate(
            f"""async (code) => {{
                const k = {_CURRENT}.sessionContext.session.kernel;
                let out = '';
                const f = k.requestExecute({{code, silent: false, store_history: false}});
                f.onIOPub = (msg) => {{
                    if (msg.header.msg_type === 'stream') out += msg.content.text;
                    if (msg.header.msg_type === 'error') out += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
                }};
                await f.done;
                return out;
            }}""", f"import json as _j; print(_j.dumps({expr}))")
        if text.startswith("ERROR"):
            raise AssertionError(f"kernel: {text}")
        return json.loads(text)


def wait_for(page, predicate, *, timeout: float = 30.0, what: str = "condition", explain=None):
    """Poll ``predicate`` until it is true; on timeout fail with ``what`` and, if given,
    ``explain()`` (evaluated then: e.g. what the kernel holds at that moment)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            more = ""
            if explain is not None:
                try:
                    more = f"\n{explain()}"
                except Exception as exc:            # noqa: BLE001  (diagnostics must not hide the failure)
                    more = f"\n(explaining failed: {exc!r})"
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last {value!r}){more}")
        page.wait_for_timeout(100)


def strip_ansi(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", s)
