"""Many viewers, one server: what the sessions derive alike from a run is built once for all of them
(docs/benchmarks.md, "Many viewers")."""

from __future__ import annotations

import os
import threading
import time

import pytest
from page_charts import chart_specs, open_page
from run_factory import make_run

from kerascope.app import run_charts, state


def test_one_build_for_many_threads_asking_at_once():
    cache = state.SharedCache()
    builds = []

    def build() -> object:
        builds.append(1)
        time.sleep(0.2)  # long enough for every thread to ask while it builds
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("figures", build))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(results) == 8 and all(result is results[0] for result in results)


def test_the_least_recently_used_entry_goes_first_and_a_failed_build_is_retried():
    cache = state.SharedCache(capacity=2)
    cache.get("a", lambda: 1)
    cache.get("b", lambda: 2)
    assert cache.get("a", lambda: -1) == 1  # "a" used last: "b" is the oldest now
    cache.get("c", lambda: 3)
    assert cache.get("b", lambda: 20) == 20 and cache.get("a", lambda: -1) == -1
    with pytest.raises(ZeroDivisionError):
        cache.get("d", lambda: 1 / 0)
    assert cache.get("d", lambda: 4) == 4


def test_two_sessions_on_one_run_get_the_charts_built_once(runs_root, monkeypatch):
    run_dir = make_run(runs_root, "shared", epochs=3, steps_per_epoch=5)
    run_id = os.path.basename(run_dir)
    builds = []
    build_epoch_figures = run_charts.epoch_figures

    def counted(run, options):  # the real build, counted (the Run page imports it at each run of its script)
        builds.append(run.id)
        return build_epoch_figures(run, options)

    monkeypatch.setattr(run_charts, "epoch_figures", counted)
    first = open_page(runs_root, "views/run.py", run_id=run_id)
    second = open_page(runs_root, "views/run.py", run_id=run_id)
    assert builds == [run_id]  # one version of this run, one view: one build for both sessions
    assert chart_specs(first) == chart_specs(second) and len(chart_specs(first)) >= 2
