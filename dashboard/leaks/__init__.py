"""The "Leak detector" tab: a zoo model against an allowed relation, every forbidden dependency shown.

``state`` (knobs, cached reports; headless), ``plots`` (report -> figures and HTML), ``text``
(explanations and stylesheet), ``view`` (the live view and ``LeakDetector``).
"""
from .state import BUGGY, CORRECT, OWN, RELATION_CHOICES, LeakResult, LeakState, rechecked
from .view import LeakDetector, LeakDetectorView

__all__ = ["BUGGY", "CORRECT", "LeakDetector", "LeakDetectorView", "LeakResult", "LeakState", "OWN",
           "RELATION_CHOICES", "rechecked"]
