"""``BuiltWhenShown``: the one "build when first shown" idiom of every tab."""
from __future__ import annotations

import panel as pn

__all__ = ["BuiltWhenShown"]


class BuiltWhenShown(pn.Column):
    """A column whose content ``build()`` makes just before the column is first rendered.

    The app builds every tab for each session, and drawing a tab's figures costs up to a second
    that a visitor who never opens it should not wait for; ``pn.Tabs(dynamic=True)`` renders a
    tab only when it is shown, and this column builds its content only then.

    The content is built with ``config.design`` unset, as everything outside a template is.
    Components created while a served template's design is set take that design as their own and
    render it *isolated*, with the full Bootstrap stylesheets on top of Panel's (seen in 1.9.4:
    Markdown headings at 28 px instead of 14 px); without one, the template's hooks style them
    like the rest of the page.
    """

    def __init__(self, build, **params):
        params.setdefault("sizing_mode", "stretch_width")
        super().__init__(margin=0, **params)
        self._build = build

    def _get_model(self, doc, root=None, parent=None, comm=None):
        if self._build is not None:
            build, self._build = self._build, None
            with pn.config.set(design=None):
                self.objects = [build()]
        return super()._get_model(doc, root, parent, comm)
