"""What changed since a reader last looked: the watchers' event log (RunWatcher, RemoteWatcher).

A watcher counts events (`total`) and logs the last CHANGE_LOG_SIZE of them as (total after the event, run id)
pairs; a reader that remembers the `total` it was up to date at asks `changed_since(total)` for the runs to look at
again, at a cost proportional to the events since, not to the number of runs.
"""

from __future__ import annotations

from collections import deque

CHANGE_LOG_SIZE = 65536  # events remembered (a reader further behind checks every run)


class ChangeLog:
    """The last CHANGE_LOG_SIZE changes, in order. Not locked: used under its watcher's lock.

    Example:
    ```python
    log = ChangeLog()
    log.add(1, "run-a")
    log.since(total=1, since_total=0)  # {"run-a"}
    ```
    """

    def __init__(self) -> None:
        self._entries: deque[tuple[int, str | None]] = deque(maxlen=CHANGE_LOG_SIZE)
        self._forgotten = 0  # events up to this total may be missing (the oldest were dropped)

    def add(self, total: int, key: str | None) -> None:
        """Log a change to `key` (None: outside any run), `total` being the count of events after it."""
        if len(self._entries) == self._entries.maxlen:
            self._forgotten = self._entries[0][0]
        self._entries.append((total, key))

    def since(self, total: int, since_total: int) -> set[str] | None:
        """The keys changed after the count was `since_total` (`total` is the count now); None when some of those
        changes were dropped from the log."""
        if since_total >= total:
            return set()
        if since_total < self._forgotten:
            return None
        changed = set()
        for event_total, key in reversed(self._entries):
            if event_total <= since_total:
                break
            if key is not None:
                changed.add(key)
        return changed
