"""ChangeLog (monitor/changes.py): the runs changed since a reader's last total, and None once the log has dropped
some of the events after it."""

from __future__ import annotations

import pytest

from kerascope.monitor import changes
from kerascope.monitor.changes import ChangeLog


def test_since_names_each_key_changed_after_the_total_once_and_skips_events_outside_any_run():
    log = ChangeLog()
    for total, key in enumerate(["a", None, "b", "a", "c", None], start=1):
        log.add(total, key)
    assert log.since(total=6, since_total=0) == {"a", "b", "c"}
    assert log.since(total=6, since_total=1) == {"a", "b", "c"}
    assert log.since(total=6, since_total=3) == {"a", "c"}
    assert log.since(total=6, since_total=4) == {"c"}
    assert log.since(total=6, since_total=5) == set()  # only an event outside any run since


def test_a_reader_up_to_date_or_ahead_gets_nothing():
    log = ChangeLog()
    log.add(1, "a")
    log.add(2, "b")
    assert log.since(total=2, since_total=2) == set()
    assert log.since(total=2, since_total=7) == set()  # a total from a watcher that counted further
    assert ChangeLog().since(total=0, since_total=0) == set()


def test_past_its_size_the_log_forgets_the_oldest_events_and_says_so(monkeypatch):
    monkeypatch.setattr(changes, "CHANGE_LOG_SIZE", 4)
    log = ChangeLog()
    for total, key in enumerate("abcd", start=1):
        log.add(total, key)
    assert log.since(total=4, since_total=0) == {"a", "b", "c", "d"}  # full, nothing dropped yet
    log.add(5, "e")  # (1, "a") dropped: a reader at 0 may have missed it
    assert log.since(total=5, since_total=0) is None
    assert log.since(total=5, since_total=1) == {"b", "c", "d", "e"}
    log.add(6, "f")  # (2, "b") dropped
    assert log.since(total=6, since_total=1) is None
    assert log.since(total=6, since_total=2) == {"c", "d", "e", "f"}
    assert log.since(total=6, since_total=5) == {"f"}


def test_the_log_keeps_65536_events_by_default():
    assert changes.CHANGE_LOG_SIZE == 65536
    log = ChangeLog()
    for total in range(1, 65537):
        log.add(total, f"run-{total}")
    assert log.since(total=65536, since_total=0) == {f"run-{total}" for total in range(1, 65537)}
    log.add(65537, "last")
    assert log.since(total=65537, since_total=0) is None
    assert log.since(total=65537, since_total=65535) == {"run-65536", "last"}


@pytest.mark.parametrize("size", [1, 2])
def test_a_tiny_log_still_answers_for_its_last_events(monkeypatch, size):
    monkeypatch.setattr(changes, "CHANGE_LOG_SIZE", size)
    log = ChangeLog()
    for total, key in enumerate("xyz", start=1):
        log.add(total, key)
    assert log.since(total=3, since_total=3 - size) == set("xyz"[-size:])
    assert log.since(total=3, since_total=2 - size) is None
