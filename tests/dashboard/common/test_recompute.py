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


class Watched(Slow):
    """Records, for every write the worker makes, whether it held the lock; and whether another
    thread could take the lock while the slow part ran."""

    def __init__(self, lock, **params):
        self.lock = lock
        self.writes_locked: list[tuple[str, bool]] = []
        self.free_while_working: list[bool] = []
        super().__init__(**params)
        self.use_lock(lock)
        self.param.watch(lambda *evs: self.writes_locked.extend(
            (e.name, lock._is_owned()) for e in evs), ["busy", "result"])

    def _recompute(self) -> None:
        x = self.x
        with self._working():
            got = []
            t = threading.Thread(target=lambda: got.append(self.lock.acquire(timeout=2)) or self.lock.release())
            t.start()
            t.join(5)
            self.free_while_working.append(got == [True])
        with param.edit_constant(self):
            self.result = x * 10


def test_the_worker_writes_parameters_under_the_lock_and_computes_without_it():
    """Served, the lock is the session's, which its event handling holds (``common.ordered``):
    param's watcher bookkeeping is per object and not thread-safe, so the worker's writes
    (busy, result) must not interleave with the session's; the slow part must not block input."""
    lock = threading.RLock()
    s = Watched(lock)
    s.writes_locked.clear()
    s.free_while_working.clear()
    s.compute_in_background()
    s.x = 5
    deadline = time.monotonic() + 10
    while (s.result != 50 or s.busy) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.result == 50
    assert s.writes_locked == [("busy", True), ("busy", True), ("result", True)]
    assert s.free_while_working == [True]
    with s.locked():                # and the input side waits for nothing once the worker is done
        assert lock._is_owned()


class Nested(Slow):
    def _recompute(self) -> None:
        x = self.x
        with self._working():
            with self._working():          # e.g. a measurement helper called from the slow part
                pass
        with param.edit_constant(self):
            self.result = x * 10


def test_working_nested_in_working_releases_the_lock_once():
    s = Nested()
    s.use_lock(threading.RLock())
    s.x = 2                                # from one thread: computed here, under the lock
    assert s.result == 20 and s.busy is False
