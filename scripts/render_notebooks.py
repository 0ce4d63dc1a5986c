"""Render example notebooks to standalone HTML for the docs: ``python scripts/render_notebooks.py``.

Executes each notebook in a fresh kernel of this Python (the repository first on ``PYTHONPATH``)
and converts it with nbconvert's ``lab`` template. The notebooks call ``dashboard.extension()``,
so BokehJS/Panel travel inside the outputs and the figures render with no internet; the script
drops the template's remote ``<script src=...>`` tags (require.js, MathJax: not used here) and
fails if any remote ``src``/``href`` is left. Live views become static figures (no kernel).

    python scripts/render_notebooks.py                       # examples/tour.ipynb -> docs/tour.html
    python scripts/render_notebooks.py NB.ipynb OUT.html     # any notebook
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = [(REPO_ROOT / "examples" / "tour.ipynb", REPO_ROOT / "docs" / "tour.html")]
_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']https?://[^\"']*[\"'][^>]*>\s*</script>", re.I)
_REMOTE_REF = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"'](https?:)?//[^\"']*", re.I)


def _kernel_dir() -> str:
    """A temporary JUPYTER_PATH whose "python3" kernel is this Python with the repo on PYTHONPATH."""
    tmp = Path(tempfile.mkdtemp(prefix="render-nb-"))
    spec = tmp / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))},
    }))
    return str(tmp)


def execute(path: Path, timeout: int = 600):
    import nbformat
    from nbclient import NotebookClient

    os.environ["JUPYTER_PATH"] = _kernel_dir()
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=timeout,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def remote_references(html: str) -> list[str]:
    """Every ``src``/``href`` of a script, link, img or iframe tag that points off the machine."""
    return [m.group(0)[-120:] for m in _REMOTE_REF.finditer(html)]


def to_html(nb) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    html, _ = exporter.from_notebook_node(nb)
    html = _REMOTE_SCRIPT.sub("", html)
    left = remote_references(html)
    if left:
        raise RuntimeError(f"the HTML still references remote files: {left}")
    return html


def render(src: Path, dst: Path) -> int:
    html = to_html(execute(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(html, encoding="utf-8")
    return len(html.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebook", nargs="?", type=Path)
    p.add_argument("output", nargs="?", type=Path)
    args = p.parse_args(argv)
    jobs = [(args.notebook, args.output or args.notebook.with_suffix(".html"))] if args.notebook else DEFAULT
    for src, dst in jobs:
        size = render(src, dst)
        print(f"{src} -> {dst} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
