"""The states' one "recompute on change" idiom: synchronous from one thread, latest wins across
threads (a burst costs a computation or two, and the result belongs to the final values)."""
from __future__ import annotations

import threading
import time

import param

from dashboard.common.recompute import Recomputing


class Slow(Recomputing):
    x = param.Integer(default=0)
    result = param.Integer(default=None, allow_None=True, constant=True)
    _inputs = ("x",)

    def __init__(self, delay: float = 0.0, **params):
        self.delay = delay
        self.computed: list[int] = []
        super().__init__(**params)
        self.refresh()

    def _recompute(self) -> None:
        x = self.x
        with self._working():
            time.sleep(self.delay)
        self.computed.append(x)
        with param.edit_constant(self):
            self.result = x * 10


def test_from_one_thread_the_result_is_current_after_each_change():
    s = Slow()
    for v in (3, 1, 4):
        s.x = v
        assert s.result == v * 10 and s.busy is False
    assert s.computed == [0, 3, 1, 4]


def test_a_burst_from_many_threads_coalesces_and_ends_on_the_last_value():
    s = Slow(delay=0.05)
    values = list(range(1, 41))
    threads = []
    for v in values:                     # 40 changes from 40 threads while computations run
        t = threading.Thread(target=setattr, args=(s, "x", v))
        t.start()
        threads.append(t)
        time.sleep(0.002)
    for t in threads:
        t.join()
    assert s.result == s.x * 10 == s.computed[-1] * 10
    assert s.x == values[-1] or s.x in values          # the last writer decides x ...
    assert len(s.computed) < 15                        # ... and most intermediate values were skipped
    assert s.busy is False


def test_a_failing_computation_raises_in_its_caller_and_the_next_change_recomputes():
    class Fails(Slow):
        def _recompute(self):
            if self.x == 2:
                raise ValueError("x=2 is refused")
            super()._recompute()

    s = Fails()
    try:
        s.x = 2
    except ValueError as e:
        assert "x=2" in str(e)
    else:
        raise AssertionError("expected the computation's error")
    s.x = 5
    assert s.result == 50 and s.busy is False


def test_in_the_background_refresh_returns_at_once_and_the_worker_ends_on_the_last_value():
    s = Slow(delay=0.05)
    s.compute_in_background()
    t0 = time.monotonic()
    for v in range(1, 31):                 # 30 changes from one thread (Panel's event order)
        s.x = v
    assert time.monotonic() - t0 < 0.5     # no change waited for a computation
    deadline = time.monotonic() + 10
    while (s.busy or s.result != 300) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.result == 300 and s.computed[-1] == 30
    assert len(s.computed) < 10            # the intermediate values were skipped


def test_a_background_failure_is_logged_and_the_next_change_still_computes(caplog):
    class Fails(Slow):
        def _recompute(self):
            if self.x == 2:
                raise ValueError("x=2 is refused")
            super()._recompute()

    s = Fails()
    s.compute_in_background()
    s.x = 2
    deadline = time.monotonic() + 5
    while "x=2 is refused" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "recomputing failed" in caplog.text
    s.x = 3
    while s.result != 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.result == 30 and s.busy is False
