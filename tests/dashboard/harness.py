"""Headless rendering for tests and benchmarks: a view in a Bokeh ``Document`` as if served.

``with rendered(pn.panel(pg)) as page:`` renders the component into a fresh ``Document`` and
makes Panel treat it as a connected server session on this thread, so updates are dispatched
as ``DocumentPatchedEvent``s exactly when a server would send them. ``page.events`` collects
them; ``page.patch_bytes()`` is the size of the PATCH-DOC message a browser would receive.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import panel as pn
from bokeh.document import Document
from bokeh.document.events import DocumentPatchedEvent
from bokeh.model import Model
from bokeh.protocol import Protocol

__all__ = ["Rendered", "image_of", "models_with_class", "only_model_with_class", "rendered"]


@dataclass
class Rendered:
    doc: Document
    root: Model
    events: list = field(default_factory=list)

    def clear(self) -> None:
        self.events.clear()

    def patch_bytes(self) -> int:
        """Bytes of the PATCH-DOC message (header, JSON content, binary buffers) for ``events``."""
        if not self.events:
            return 0
        msg = Protocol().create("PATCH-DOC", list(self.events))
        return (len(msg.header_json) + len(msg.content_json)
                + sum(len(buf.to_bytes()) for buf in msg.buffers))


def models_with_class(doc: Document, css_class: str) -> list[Model]:
    """Models in ``doc`` whose ``css_classes`` contain ``css_class``."""
    return [m for m in doc.models if css_class in (getattr(m, "css_classes", None) or [])]


def only_model_with_class(doc: Document, css_class: str) -> Model:
    """The one model in ``doc`` carrying ``css_class``; ``LookupError`` if there are 0 or several."""
    found = models_with_class(doc, css_class)
    if len(found) != 1:
        raise LookupError(f"expected one model with class {css_class!r} but found {len(found)}: {found}")
    return found[0]


def image_of(fig):
    """The 2-D array shown by a figure whose first renderer is an image glyph."""
    return fig.renderers[0].data_source.data["image"][0]


@contextmanager
def rendered(viewable) -> Iterator[Rendered]:
    """Render ``viewable`` into a new Document treated as a live session (restored afterwards)."""
    doc = Document()
    state = pn.state
    old_curdoc = state.curdoc
    state.curdoc = doc                    # as in a session: Panel caches some models per document
    state._thread_id = threading.get_ident()
    try:
        root = viewable.get_root(doc)
        doc.add_root(root)
        page = Rendered(doc, root)
        doc.on_change(lambda e: page.events.append(e) if isinstance(e, DocumentPatchedEvent)
                      else None)
        state._connected[doc] = True
        yield page
    finally:
        state._connected.pop(doc, None)
        state._thread_id_.pop(doc, None)
        state.curdoc = old_curdoc
