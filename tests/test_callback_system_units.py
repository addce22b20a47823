"""SystemSampler on its real thread: sampled records, the tick and interval rules, stop, error reports, and the GPU
memory reader of the TensorFlow backend."""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil
import pytest

from kerascope.callbacks import _system
from kerascope.callbacks._system import SystemSampler, _gpu_memory_reader

WAIT_S = 30.0  # generous: the sampler thread may be scheduled late on a loaded machine


class Calls:
    """What the sampler hands over (records, ticks, errors), with the thread each came from."""

    def __init__(self, log_error: Exception | None = None, tick_error: type[Exception] | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.ticks = 0
        self.errors: list[str] = []
        self.threads: set[tuple[str, bool]] = set()
        self.log_error, self.tick_error = log_error, tick_error
        self.enough = threading.Event()
        self.records_wanted, self.ticks_wanted = 0, 0

    def log(self, record: dict[str, Any]) -> None:
        self.threads.add((threading.current_thread().name, threading.current_thread().daemon))
        if self.log_error is not None:
            raise self.log_error
        self.records.append(record)
        self._check()

    def on_tick(self) -> None:
        self.threads.add((threading.current_thread().name, threading.current_thread().daemon))
        self.ticks += 1
        self._check()
        if self.tick_error is not None:
            raise self.tick_error(f"tick {self.ticks}")

    def on_error(self, message: str) -> None:
        self.errors.append(message)

    def _check(self) -> None:
        if len(self.records) >= self.records_wanted and self.ticks >= self.ticks_wanted:
            self.enough.set()

    def run(self, interval: float, records: int = 0, ticks: int = 0) -> SystemSampler:
        """Start a sampler and return it, stopped, once it has logged `records` and ticked `ticks` times."""
        self.records_wanted, self.ticks_wanted = records, ticks
        sampler = SystemSampler(self.log, interval, self.on_tick, self.on_error)
        sampler.start()
        try:
            assert self.enough.wait(WAIT_S)
        finally:
            sampler.stop()
        return sampler


def no_gpu() -> bool:
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


# -- the tick and interval rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "record", "tick"),
    [(0, False, 2.0), (-1, False, 2.0), (0.5, True, 0.5), (1, True, 1), (2.0, True, 2.0), (5.0, True, 2.0)],
)
def test_ticks_come_every_interval_and_at_least_every_two_seconds(interval, record, tick):
    sampler = SystemSampler(Calls().log, interval, Calls().on_tick, Calls().on_error)
    assert (sampler.record, sampler.tick, sampler.interval) == (record, tick, interval)


def test_samples_are_logged_every_interval_from_a_daemon_thread_and_each_one_ticks():
    calls = Calls()
    before = time.time()
    sampler = calls.run(0.02, records=3)
    after = time.time()
    assert not sampler._thread.is_alive()  # stop() waited for it
    assert calls.errors == []
    assert calls.threads == {("kerascope-system", True)}
    assert len(calls.records) >= 3 and calls.ticks >= len(calls.records)
    for record in calls.records:
        assert sorted(record) == (["cpu_percent", "rss_bytes", "time"] if no_gpu() else
                                  ["cpu_percent", "gpu_memory_bytes", "rss_bytes", "time"])
        assert before <= record["time"] <= after
    times = [record["time"] for record in calls.records]
    assert times == sorted(times)


def test_with_interval_zero_nothing_is_recorded_and_ticks_go_on(monkeypatch):
    monkeypatch.setattr(_system, "TICK_S", 0.01)
    calls = Calls()
    sampler = calls.run(0, ticks=5)
    assert sampler.tick == 0.01
    assert (calls.records, calls.errors) == ([], [])
    assert sampler._gpu_memory is None  # no reader is even looked for


def test_a_sample_waits_for_its_interval_while_ticks_go_on(monkeypatch):
    monkeypatch.setattr(_system, "TICK_S", 0.01)
    calls = Calls()
    sampler = calls.run(30.0, ticks=5)
    assert sampler.tick == 0.01
    assert (calls.records, calls.errors) == ([], [])


# -- a sample ----------------------------------------------------------------------------------------------------


def test_a_sample_holds_the_time_this_process_cpu_and_rss():
    sampler = SystemSampler(Calls().log, 30.0, Calls().on_tick, Calls().on_error)
    rss_before = psutil.Process().memory_info().rss
    before = time.time()
    record = sampler.sample()
    after = time.time()
    rss_after = psutil.Process().memory_info().rss
    assert before <= record["time"] <= after
    assert type(record["rss_bytes"]) is float and type(record["cpu_percent"]) is float
    # This process's RSS (not another's): within the band of two readings around it, give or take 10 %.
    assert 0.9 * min(rss_before, rss_after) <= record["rss_bytes"] <= 1.1 * max(rss_before, rss_after)
    assert ("gpu_memory_bytes" in record) is not no_gpu()


def test_cpu_percent_is_measured_from_start():
    sampler = SystemSampler(Calls().log, 30.0, Calls().on_tick, Calls().on_error)
    sampler.start()
    try:
        process = psutil.Process()
        busy_from = sum(process.cpu_times()[:2])
        while sum(process.cpu_times()[:2]) < busy_from + 0.1:  # work this thread's CPU for a tenth of a second
            sum(range(10_000))
        # psutil's first reading is 0.0 by definition; start() took it, so this one covers the work above.
        assert sampler.sample()["cpu_percent"] > 0
    finally:
        sampler.stop()


def test_without_psutil_a_sample_is_only_its_time(monkeypatch):
    monkeypatch.setattr(_system, "psutil", None)
    calls = Calls()
    calls.run(0.02, records=2)
    assert calls.errors == []
    assert [sorted(record) for record in calls.records[:2]] == ([["time"]] * 2 if no_gpu() else
                                                                [["gpu_memory_bytes", "time"]] * 2)


# -- failures ----------------------------------------------------------------------------------------------------


def test_a_failing_sample_is_reported_once_and_ticks_go_on():
    calls = Calls(log_error=OSError("disk full"))
    calls.run(0.02, ticks=4)
    assert calls.errors == ["system sampling failed: OSError('disk full')"]


def test_each_kind_of_failure_is_reported_once():
    calls = Calls(log_error=OSError("disk full"), tick_error=RuntimeError)
    calls.run(0.02, ticks=4)
    assert calls.errors == ["system sampling failed: OSError('disk full')",
                            "system sampling failed: RuntimeError('tick 1')"]


# -- stop --------------------------------------------------------------------------------------------------------


def test_stop_before_start_is_harmless():
    SystemSampler(Calls().log, 1.0, Calls().on_tick, Calls().on_error).stop()


def test_stop_waits_for_the_sampler_thread_to_end():
    in_tick = threading.Event()
    calls = Calls()
    sampler: SystemSampler

    def on_tick() -> None:
        in_tick.set()
        sampler._stop.wait(WAIT_S)  # the tick outlasts stop()'s call until stop() asks the thread to end

    sampler = SystemSampler(calls.log, 0.01, on_tick, calls.on_error)
    sampler.start()
    assert in_tick.wait(WAIT_S)
    sampler.stop()
    assert not sampler._thread.is_alive()


def test_stop_from_the_sampler_thread_itself_ends_it_without_error():
    calls = Calls()
    stopped = threading.Event()
    sampler: SystemSampler

    def on_tick() -> None:
        calls.on_tick()
        sampler.stop()
        stopped.set()

    sampler = SystemSampler(calls.log, 0.01, on_tick, calls.on_error)
    sampler.start()
    assert stopped.wait(WAIT_S)
    sampler._thread.join(WAIT_S)
    assert not sampler._thread.is_alive()
    assert (calls.ticks, calls.errors) == (1, [])


# -- the GPU memory reader ---------------------------------------------------------------------------------------

def test_without_a_gpu_no_gpu_memory_is_read():
    reader = _gpu_memory_reader()
    if no_gpu():
        assert reader is None
    else:
        assert type(reader()) is float
