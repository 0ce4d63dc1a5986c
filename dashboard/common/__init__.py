"""What every tab shares: ``frames`` (what a figure shows, token labels, pooling), ``figures``
(figures drawn once and updated in place), ``live`` (the one update pipeline), ``style``
(palette, CSS, verdict badge), ``panes`` (widgets, figure panes, sections), ``lazy`` (build when
first shown) and ``recompute`` (the states' latest-wins recomputation; no Panel import, so the
states stay headless)."""
