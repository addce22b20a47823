"""The Runs page's data, at a cost that follows what changed and what is shown rather than the number of runs.

- `RunsTable`: one table of every run per root, shared by all sessions. Each run's row is rebuilt when the watcher
  saw its files change (and, while it may be live, at least every RECOMPUTE_EVERY_S: a status ages without file
  events); the table's changed rows are patched in place, and the whole table is built again only when the list of
  runs or the key metrics changed. Unchanged, it is handed out as it is, with a `version` that says so.
- `TableView`: one session's filtered, sorted and folded view of it, kept while the table's version and the
  session's choices stay the same; the page then only formats the rows it shows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pandas as pd

from kerascope.app import state, tables
from kerascope.monitor import Changes, Run, collection_paused
from kerascope.monitor import format as fmt

RECOMPUTE_EVERY_S = 2.0  # statuses age (stale) without file events: rows of live runs are rebuilt this often
GROUP_ROW = "group:"  # what a folded group's row is, in `TableView.shown`
SORTS = {
    "newest first": ("started", False),
    "oldest first": ("started", True),
    "name": ("name", True),
    "status": ("status", True),
}
COLUMN_SORT = "column: "  # "column: params" sorts by that column (ascending; "reverse" flips it)


@dataclass(frozen=True)
class TableState:
    """The shared table as one call saw it (never changed afterwards: a change makes a new one)."""

    version: int  # grows with every change of `frame`
    frame: pd.DataFrame  # one row per run, in the store's order (newest first)
    by_id: dict[str, Run]
    groups: list[str]  # the groups that have runs, sorted


class RunsTable:
    """The runs table of one root, shared by every session (the dashboard keeps one per root: `current()`).

    Example:
    ```python
    table, watcher = RunsTable(), RunWatcher("runs")
    store = RunStore("runs", watcher=watcher)
    version, runs = store.listing()
    first = table.state(runs, version, watcher)   # every row built
    version, runs = store.listing()
    table.state(runs, version, watcher) is first  # True until a run changes
    ```
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, object]] = {}  # run id -> its run_row
        self._positions: dict[str, int] = {}  # run id -> its row in the frame
        self._metrics: list[str] = []  # the key metrics the frame shows
        self._live: set[str] = set()  # runs whose row says running: rebuilt every RECOMPUTE_EVERY_S
        self._live_time = 0.0
        self._listing = -1  # the store's listing_version the frame was built for
        self._seen_total = 0  # the watcher's total the rows are up to date with
        self._state: TableState | None = None

    def state(self, runs: list[Run], listing_version: int, watcher: Changes) -> TableState:
        """The table of `runs` (`RunStore.listing()`: the list and its version), brought up to date with what
        `watcher` saw change since the last call."""
        with self._lock, collection_paused(len(runs) if self._state is None else 0):
            now = time.monotonic()
            total = watcher.total  # before looking: a change made meanwhile is looked at again next time
            live_due = bool(self._live) and now - self._live_time >= RECOMPUTE_EVERY_S
            if (self._state is not None and listing_version == self._listing and total == self._seen_total
                    and not live_due):
                return self._state
            changed = watcher.changed_since(self._seen_total)
            self._seen_total = total
            if live_due:
                self._live_time = now
            if changed is None:  # more changed than the watcher remembers: every run is looked at again
                return self._build(runs, listing_version, {run.id: tables.run_row(run) for run in runs})
            # A run the watcher saw no change of is as the store read it: its row is built without a stat.
            if self._state is None:
                return self._build(runs, listing_version, {
                    run.id: tables.run_row(run, recheck=run.id in changed) for run in runs})
            stale = changed | self._live if live_due else changed
            if listing_version != self._listing:
                return self._build(runs, listing_version, {
                    run.id: self._rows[run.id] if run.id in self._rows and run.id not in stale
                    else tables.run_row(run, recheck=run.id in stale) for run in runs})
            # The same runs (the same Run objects): only those that changed are looked at.
            updates = {}
            for run_id in stale:
                run = self._state.by_id.get(run_id)
                if run is not None:
                    row = tables.run_row(run)
                    if row != self._rows[run_id]:
                        updates[run_id] = row
            return self._patch(updates) if updates else self._state

    def _build(self, runs: list[Run], listing_version: int, rows: dict[str, dict[str, object]]) -> TableState:
        ordered = list(rows.values())
        self._metrics = tables.key_metrics_of([row[tables.METRICS] for row in ordered])  # type: ignore[misc]
        frame = tables.rows_frame(ordered, self._metrics)
        self._positions = {run_id: index for index, run_id in enumerate(rows)}
        self._listing = listing_version
        self._live = {run_id for run_id, row in rows.items() if row[tables.STATUS] == fmt.RUNNING}
        self._rows = rows
        return self._publish(frame, {run.id: run for run in runs})

    def _patch(self, updates: dict[str, dict[str, object]]) -> TableState:
        """The frame with these runs' rows replaced (the list of runs is the same)."""
        assert self._state is not None
        renamed = any(set(row[tables.METRICS]) != set(self._rows[run_id][tables.METRICS])  # type: ignore[arg-type]
                      for run_id, row in updates.items())
        self._rows = {**self._rows, **updates}
        for run_id, row in updates.items():
            (self._live.add if row[tables.STATUS] == fmt.RUNNING else self._live.discard)(run_id)
        metrics = self._metrics
        if renamed:  # a run's metrics changed names: the key metrics may change
            metrics = tables.key_metrics_of([row[tables.METRICS] for row in self._rows.values()])  # type: ignore[misc]
        frame = None
        if metrics == self._metrics:
            frame = tables.patched_frame(self._state.frame, {self._positions[run_id]: row
                                                             for run_id, row in updates.items()}, metrics)
        if frame is None:
            self._metrics = metrics
            frame = tables.rows_frame(list(self._rows.values()), metrics)
        return self._publish(frame, self._state.by_id)

    def _publish(self, frame: pd.DataFrame, by_id: dict[str, Run]) -> TableState:
        groups = sorted({group for group in frame["group"] if group}) if len(frame) else []
        version = self._state.version + 1 if self._state is not None else 1
        self._state = TableState(version, frame, by_id, groups)
        return self._state


# -- one session's view --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewChoice:
    """What a session chose to see: the Runs page's filters, sort and folding."""

    text: str = ""
    statuses: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    where: str = ""
    sort: str = "newest first"
    reverse: bool = False
    fold: bool = False
    expanded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TableView:
    """The table as one session sees it: filtered, sorted, folded (all pages)."""

    frame: pd.DataFrame
    shown: list[str]  # what each row of `frame` is: a run id, or GROUP_ROW + a group's name
    run_ids: list[str]  # the runs listed (all pages), in the table's order
    problem: str | None  # why the filter expression was not applied
    attention: list[tuple[str, str, str]] = field(default_factory=list)  # (name, status, reason), the first 10
    attention_count: int = 0
    status_counts: list[tuple[str, int]] = field(default_factory=list)


def table_view(table: TableState, choice: ViewChoice, runs: list[Run]) -> TableView:
    """What the table shows for this choice (`runs`: the store's list, for metric directions)."""
    frame = filtered(table.frame, choice.text, list(choice.statuses), list(choice.groups))
    frame, problem = tables.where_filtered(frame, choice.where)
    column, ascending = sort_order(choice.sort, runs)
    ascending = ascending != choice.reverse
    if choice.fold and (frame["group"] != "").any():
        frame, shown = folded(frame, column, ascending, ranking(frame, runs, choice.sort), choice.expanded)
    else:
        frame = sorted_frame(frame, column, ascending)
        shown = list(frame["id"])
    run_ids = [row_id for row_id in shown if not row_id.startswith(GROUP_ROW)]
    is_run = ~frame["id"].str.startswith(GROUP_ROW)
    attention = frame[(frame["reason"] != "") & is_run]
    status_counts = frame.loc[is_run, "status"].value_counts()
    return TableView(
        frame=frame, shown=shown, run_ids=run_ids, problem=problem,
        attention=list(zip(attention["name"][:10], attention["status"][:10], attention["reason"][:10], strict=True)),
        attention_count=len(attention),
        status_counts=[(str(status), int(count)) for status, count in status_counts.items()],
    )


def filtered(frame: pd.DataFrame, text: str, statuses: list[str], groups: list[str] | None = None) -> pd.DataFrame:
    if text:
        haystack = (frame["name"] + " " + frame["tags"] + " " + frame["group"] + " " + frame["hparams"] + " "
                    + frame["id"]).str.lower()
        frame = frame[haystack.str.contains(text.lower(), regex=False)]
    if statuses:
        frame = frame[frame["status"].str.split(" ", n=1).str[1].isin(statuses)]
    if groups:
        frame = frame[frame["group"].isin(groups)]
    return frame


def sort_order(sort: str, runs: list[Run]) -> tuple[str, bool]:
    column, ascending = SORTS.get(sort, ("started", False))
    if sort.startswith("best "):
        metric = sort.removeprefix("best ")
        column, ascending = f"{metric} (best)", tables.metric_direction(runs, metric) == fmt.MIN
    elif sort.startswith(COLUMN_SORT):
        column, ascending = sort.removeprefix(COLUMN_SORT), True
    return column, ascending


def sorted_frame(frame: pd.DataFrame, column: str, ascending: bool) -> pd.DataFrame:
    if column not in frame:
        return frame
    ordered = frame.sort_values(column, ascending=ascending, na_position="last", kind="stable")
    # Already in that order (the table comes newest first): the frame itself, not a copy kept by every session.
    return frame if ordered.index.equals(frame.index) else ordered


def ranking(frame: pd.DataFrame, runs: list[Run], sort: str) -> tuple[str | None, bool]:
    """Which column ranks the runs of a group (best first): the sorted-by metric, else the first key metric's best."""
    if sort.startswith("best "):
        return sort_order(sort, runs)
    best = [c for c in frame.columns if c.endswith(" (best)")]
    val = [c for c in best if c == "val_loss (best)"]
    column = (val or best or [None])[0]
    if column is None:
        return None, True
    metric = column.removesuffix(" (best)")
    return column, tables.metric_direction(runs, metric) == fmt.MIN


def folded(frame: pd.DataFrame, column: str, ascending: bool, rank: tuple[str | None, bool],
           expanded: frozenset[str] | set[str]) -> tuple[pd.DataFrame, list[str]]:
    """One row per group (its best run's values, "▸ N runs"), sorted among the other runs; an expanded group's runs
    follow its row, best first. Returns the frame and what each row is (a run id, or GROUP_ROW + the group)."""
    grouped = frame["group"] != ""
    heads, members = [], {}
    for name, group in frame[grouped].groupby("group", sort=False):
        if rank[0] is not None:
            group = sorted_frame(group, rank[0], rank[1])
        members[name] = group
        head = group.iloc[0].copy()
        head["status"] = ("▾ " if name in expanded else "▸ ") + f"{len(group)} runs"
        head["where"] = f"best: {group.iloc[0]['name']}"
        head["name"] = name
        head["id"] = GROUP_ROW + name
        heads.append(head)
    top = sorted_frame(pd.concat([frame[~grouped], pd.DataFrame(heads)], ignore_index=True)
                       if heads else frame[~grouped], column, ascending)
    parts, shown = [], []
    ids = list(top["id"])
    start = 0
    for index, row_id in enumerate(ids):
        if row_id.startswith(GROUP_ROW) and row_id.removeprefix(GROUP_ROW) in expanded:
            parts.append(top.iloc[start:index + 1])
            shown.extend(ids[start:index + 1])
            group = members[row_id.removeprefix(GROUP_ROW)].copy()
            group["name"] = "↳ " + group["name"]
            parts.append(group)
            shown.extend(group["id"])
            start = index + 1
    parts.append(top.iloc[start:])
    shown.extend(ids[start:])
    return pd.concat(parts, ignore_index=True), shown


def current() -> tuple[list[Run], TableState]:
    """The runs of the dashboard's root (newest first) and the shared table of them, up to date."""
    version, runs = state.store().listing()
    table = state.process_wide(("runs_table", state.logdir()), RunsTable)
    return runs, table.state(runs, version, state.watcher())
