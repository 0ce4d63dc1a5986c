"""What every tab shares: ``frames`` (what a figure shows, token labels, pooling), ``live``
(figures updated in place and the one update pipeline), ``style`` (palette, CSS, verdict badge),
``panes`` (widgets, figure panes, sections), ``lazy`` (build when first shown) and ``recompute``
(the states' latest-wins recomputation; no Panel import, so states stay headless)."""
