"""Process-wide and per-session state: one RunStore and one RunWatcher per runs root, shared by all sessions.

Both objects are created once per root with `st.cache_resource`; they are thread-safe (Run and RunStore lock their
caches, the watcher only bumps counters under a condition), which is what sharing across sessions requires.
"""

from __future__ import annotations

import os

import streamlit as st

from kerascope.app.cli import LOGDIR_ENV, POLL_ENV
from kerascope.monitor import RunStore, RunWatcher
from kerascope.monitor.reader import Run

LIVE_INTERVAL_S = 0.2  # fragment timer; a tick that finds nothing new costs a few ms (docs/benchmarks.md)
RUN_KEY = "run_id"  # the run the single-run pages show
COMPARE_KEY = "compare_ids"  # runs picked on the Runs page, shown on the Compare page
LIVE_KEY = "live"  # False while the user paused live updates


def logdir() -> str:
    return os.path.abspath(os.environ.get(LOGDIR_ENV) or "runs")


@st.cache_resource(show_spinner=False)
def _store(root: str) -> RunStore:
    return RunStore(root)


@st.cache_resource(show_spinner=False)
def _watcher(root: str, poll: bool) -> RunWatcher:
    return RunWatcher(root, poll=True if poll else None)


def store() -> RunStore:
    return _store(logdir())


def watcher() -> RunWatcher:
    return _watcher(logdir(), bool(os.environ.get(POLL_ENV)))


def live() -> bool:
    return st.session_state.get(LIVE_KEY, True)


def live_interval() -> float | None:
    """The fragment timer while live, None (no timer) while paused."""
    return LIVE_INTERVAL_S if live() else None


def current_run(runs: list[Run]) -> Run | None:
    """The run the single-run pages show: the one picked last, else the newest readable one."""
    by_id = {run.id: run for run in runs}
    picked = by_id.get(st.session_state.get(RUN_KEY, ""))
    if picked is not None:
        return picked
    readable = [run for run in runs if run.error is None]
    return (readable or runs or [None])[0]


def compare_ids(runs: list[Run]) -> list[str]:
    """The runs picked for comparison that still exist; the two newest readable runs when none were picked."""
    ids = {run.id for run in runs}
    picked = [run_id for run_id in st.session_state.get(COMPARE_KEY, []) if run_id in ids]
    return picked or [run.id for run in runs if run.error is None][:2]
