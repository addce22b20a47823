"""Process-wide and per-session state: one RunStore and one RunWatcher per logdir, shared by all sessions, and what
each session picked and cached.

The store and the watcher are created once per logdir and process (`process_wide`); they are thread-safe (Run and
RunStore lock their caches, the watcher only bumps counters under a condition), which sharing across sessions requires.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import streamlit as st

from kerascope.app.cli import LOGDIR_ENV, POLL_ENV
from kerascope.monitor import Catalog, RemoteWatcher, Run, RunStore, RunWatcher, redact_url, url_protocol
from kerascope.monitor import format as fmt

LIVE_INTERVAL_S = 0.2  # fragment timer; a tick that finds nothing new costs a few ms (docs/benchmarks.md)
RUN_KEY = "run_id"  # the run the single-run pages show
COMPARE_KEY = "compare_ids"  # runs picked on the Runs page, shown on the Compare page
LIVE_KEY = "live"  # False while the user paused live updates

T = TypeVar("T")

# Set when a page script ran to its end: the server's warm-up adds the file watcher's watches after the first page is
# served (app/server.py), not while it is being built.
page_served = threading.Event()


def logdir() -> str:
    """The runs root: a local folder (absolute), or an object-store URL as given (`s3://bucket/runs`)."""
    root = os.environ.get(LOGDIR_ENV) or "runs"
    return root if url_protocol(root) else os.path.abspath(root)


def logdir_label() -> str:
    """The runs root as shown to people: an object-store URL without any user part or query (keys never show)."""
    return redact_url(logdir())


_registry: dict[Hashable, object] = {}
_registry_lock = threading.RLock()  # a build may ask for another (the store for its watcher)


def process_wide(key: Hashable, build: Callable[[], T]) -> T:
    """`build()` once per process for `key` (a failed build is tried again at the next call).

    Not `st.cache_resource`: the server's warm-up thread (app/server.py) fills these before any session exists.
    """
    with _registry_lock:
        if key not in _registry:
            _registry[key] = build()
        return _registry[key]  # type: ignore[return-value]


def _store(logdir: str, poll: bool) -> RunStore:
    if url_protocol(logdir):  # an object-store root lists from its runs' summaries, polled (no catalog, no events)
        return process_wide(("store", logdir), lambda: RunStore(logdir))
    # The catalog makes a restart (or a second dashboard on the same root) list the runs without opening them; the
    # watcher says which runs changed since the store last looked (so that a listing costs what changed).
    return process_wide(("store", logdir, poll), lambda: RunStore(logdir, catalog=Catalog(logdir),
                                                                   watcher=_watcher(logdir, poll)))


def _watcher(logdir: str, poll: bool, start: bool = True) -> RunWatcher | RemoteWatcher:
    if url_protocol(logdir):  # an object store sends no file events: poll its listing (shared with the store)
        return process_wide(("watcher", logdir), lambda: RemoteWatcher(_store(logdir, poll).remote))
    return process_wide(("watcher", logdir, poll), lambda: RunWatcher(logdir, poll=True if poll else None,
                                                                     start=start))


def store() -> RunStore:
    return _store(logdir(), bool(os.environ.get(POLL_ENV)))


def watcher(start: bool = True) -> RunWatcher | RemoteWatcher:
    """The root's watcher. `start=False` (the server's warm-up, before any session) creates it without starting it:
    whoever does must start it later (`RunWatcher.start`)."""
    return _watcher(logdir(), bool(os.environ.get(POLL_ENV)), start)


class SharedCache:
    """What every session derives alike from the runs (figures, chart payloads), built once for all of them.

    A bounded LRU, safe across the sessions' script threads: two sessions asking for the same missing key wait for one
    build instead of doing it twice.

    Args:
        capacity: entries kept (the oldest used go first).

    Example:
    ```python
    payloads = shared().get(("run_charts", run.id, run.version, options), lambda: build_payloads(run, options))
    ```
    """

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                value = build()
                with self._lock:  # stored before the key stops being "in progress": no second build slips in
                    self._items[key] = value
                    while len(self._items) > self._capacity:
                        self._items.popitem(last=False)
            finally:
                with self._lock:
                    self._building.pop(key, None)
        return value


@st.cache_resource(show_spinner=False)
def shared() -> SharedCache:
    return SharedCache()


def live() -> bool:
    return st.session_state.get(LIVE_KEY, True)


def live_interval() -> float | None:
    """The timer to start a live fragment with: LIVE_INTERVAL_S, or None (no timer) while paused."""
    return LIVE_INTERVAL_S if live() else None


def session_cached(name: str, key: Hashable, build: Callable[[], T], *, max_age_s: float | None = None) -> T:
    """`build()`, kept in this session's state under `name` while `key` stays the same (and at most `max_age_s`).

    Live pages rerun every LIVE_INTERVAL_S: what they derive from the runs is rebuilt only when a run changed.

    Example:
    ```python
    view = session_cached("runs_view", (table.version, choice), lambda: runs_list.table_view(table, choice, runs))
    ```
    """
    cached = st.session_state.get(name)
    now = time.monotonic()
    if cached is not None and cached[0] == key and (max_age_s is None or now - cached[1] < max_age_s):
        return cached[2]
    value = build()
    st.session_state[name] = (key, now, value)
    return value


def current_run(runs: list[Run]) -> Run | None:
    """The run the single-run pages show: the one picked last, else the newest readable one."""
    by_id = {run.id: run for run in runs}
    picked = by_id.get(st.session_state.get(RUN_KEY, ""))
    if picked is not None:
        return picked
    readable = [run for run in runs if run.error is None]
    return (readable or runs or [None])[0]


def picked_run() -> Run | None:
    """The run chosen in the run picker (None when there are no runs, or it was just deleted)."""
    run_id = st.session_state.get(RUN_KEY)
    if not run_id:
        return None
    try:
        return store().run(run_id)
    except KeyError:
        return None


DEFAULT_COMPARED = 4


def compare_ids(runs: list[Run]) -> list[str]:
    """The runs picked for comparison that still exist; when none were picked, the newest finished runs (failed,
    interrupted or diverged ones are rarely what one compares first), else the newest readable ones."""
    ids = {run.id for run in runs}
    picked = [run_id for run_id in st.session_state.get(COMPARE_KEY, []) if run_id in ids]
    finished = list(itertools.islice((run.id for run in runs if run.status == fmt.FINISHED), DEFAULT_COMPARED))
    return picked or finished[:DEFAULT_COMPARED] or [run.id for run in runs if run.error is None][:2]
