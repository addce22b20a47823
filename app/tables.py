"""Tables built from many runs: the runs list, their hparams and their final metrics (pandas, no Streamlit)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd

from kerascope.app.formatting import duration, format_seconds, md_escape, progress, size_text, status_label
from kerascope.app.query import Query, QueryError
from kerascope.monitor import Run
from kerascope.monitor import format as fmt

MAX_KEY_METRICS = 4


def metric_direction(runs: list[Run], metric: str) -> str:
    """Which way `metric` is better across `runs`: as they recorded it or, for a val_ twin, its metric (the first run
    to record a name wins), else by its name."""
    recorded: dict[str, str] = {}
    for run in runs:
        for name, direction in run.metric_directions.items():
            recorded.setdefault(name, direction)
    return fmt.metric_direction(metric, recorded)


def metric_names(frame: pd.DataFrame) -> list[str]:
    """Metric columns of an epoch or batch frame: train metrics first, each followed by its val_ twin."""
    names = [c for c in frame.columns if c not in fmt.NON_METRIC_COLUMNS and not c.startswith(fmt.BATCH_VALUE_PREFIX)]
    train = [c for c in names if not c.startswith(fmt.VAL_PREFIX)]
    ordered = []
    for name in train:
        ordered.append(name)
        if fmt.VAL_PREFIX + name in names:
            ordered.append(fmt.VAL_PREFIX + name)
    return ordered + [c for c in names if c not in ordered]


def key_metrics_of(metrics: list[dict[str, object]]) -> list[str]:
    """The metrics shown in the runs list, from each run's metrics (names only count): loss and val_loss first, then
    the most common others."""
    counts: Counter[str] = Counter()
    for names in metrics:
        counts.update(list(names))
    preferred = [m for m in ("loss", "val_loss") if m in counts]
    others = [m for m, _ in counts.most_common() if m not in preferred]
    return (preferred + others)[:MAX_KEY_METRICS]


def best_and_last(values: pd.Series, direction: str) -> tuple[float, float]:
    """The best finite value ("min" or "max" `direction`) and the last value of a metric's series."""
    finite = values.to_numpy(float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return np.nan, (float(values.iloc[-1]) if len(values) else np.nan)
    return float(finite.min() if direction == fmt.MIN else finite.max()), float(values.iloc[-1])


def format_value(value: object) -> str:
    """Hparam values as compact text (dicts and lists as JSON)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))[:80]
    return str(value)


# Columns of a run's row that the table does not show: what filters, groups and sorting read.
HPARAMS, METRICS, STATUS, EPOCHS = "_hparams", "_metrics", "_status", "_epochs"


def run_row(run: Run, *, recheck: bool = True) -> dict[str, object]:
    """One run's row of the runs list, from run.json, status.json and its summary (no stream is read). Every
    user-written value stays plain text; the raw hparams and metrics ride along under the HPARAMS/METRICS keys.
    `recheck=False`: the caller knows the run's files did not change since they were read (`Run.overview`)."""
    view = run.overview(recheck=recheck)
    where = progress(run, view)
    model = run.model_info
    return {
        "status": status_label(view.status),
        "name": run.name,
        "progress": where.fraction,
        "where": where.text if run.error is None else "",
        "ETA": format_seconds(where.eta_s),
        "duration": format_seconds(duration(run, view)),
        "params": model.total_params if model and model.total_params is not None else np.nan,
        "size": size_text(model.size_bytes) if model and model.size_bytes is not None else "",
        "hparams": ", ".join(f"{k}={format_value(v)}" for k, v in (run.hparams or {}).items()),
        "tags": ", ".join(run.tags or []),
        "group": run.group or "",
        "notes": run.notes or "",
        "reason": view.reason or "",
        "started": run.created,  # a time column for the whole frame at once (runs_frame)
        "id": run.id,
        HPARAMS: run.hparams or {},
        METRICS: {name: (_or_nan(metric.last), _or_nan(metric.best), metric.direction)
                  for name, metric in view.metrics.items()},
        STATUS: view.status,
        EPOCHS: view.last_epoch + 1 if view.last_epoch is not None else 0,
    }


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value


def runs_frame(runs: list[Run], rows: list[dict[str, object]] | None = None) -> pd.DataFrame:
    """One row per run for the runs list: the shown columns, the key metrics' last and best values, and the raw
    HPARAMS/METRICS/STATUS/EPOCHS columns (not shown) for filters. `rows` are the runs' `run_row`s when cached."""
    rows = [run_row(run) for run in runs] if rows is None else rows
    return rows_frame(rows, key_metrics_of([row[METRICS] for row in rows]))  # type: ignore[misc]


def rows_frame(rows: list[dict[str, object]], metrics: list[str]) -> pd.DataFrame:
    """`runs_frame` of these `run_row`s, with the last and best values of `metrics`."""
    if not rows:
        return pd.DataFrame()
    shown = ("status", "name", "progress", "where", "ETA", "duration")
    columns: dict[str, list[object]] = {key: [row[key] for row in rows] for key in shown}  # column by column: faster
    for metric in metrics:
        values = [row[METRICS].get(metric, (np.nan, np.nan, None)) for row in rows]  # type: ignore[union-attr]
        columns[f"{metric} (last)"] = [value[0] for value in values]
        columns[f"{metric} (best)"] = [value[1] for value in values]
    for key in rows[0]:
        if key not in columns:
            columns[key] = [row[key] for row in rows]
    frame = pd.DataFrame(columns)
    frame["started"] = pd.to_datetime(frame["started"], unit="s").dt.floor("s")
    return frame


def patched_frame(frame: pd.DataFrame, changed: dict[int, dict[str, object]], metrics: list[str]
                  ) -> pd.DataFrame | None:
    """`frame` (a `rows_frame` with these `metrics`) with the rows at some positions replaced by new `run_row`s
    ({position: row}): the frame `rows_frame` would build with them, at a cost that grows with the rows changed, not
    with the frame. `frame` itself is left as it is. None when a new value does not fit its column's type (build the
    frame again then)."""
    part = rows_frame(list(changed.values()), metrics)
    if list(part.columns) != list(frame.columns):
        return None
    positions = np.fromiter(changed, dtype=np.intp, count=len(changed))
    patched = frame.copy(deep=False)  # copy-on-write: only the columns written below are copied
    try:
        for index, column in enumerate(frame.columns):
            patched.iloc[positions, index] = part[column].to_numpy()
    except (TypeError, ValueError):
        return None
    return patched if patched.dtypes.equals(frame.dtypes) else None


# Names a filter expression may use besides hparams and metrics, and the list columns they read.
COLUMN_NAMES = {"name": "name", "status": STATUS, "group": "group", "tags": "tags", "id": "id", "epochs": EPOCHS,
                "params": "params"}


def expression_column(frame: pd.DataFrame, name: str) -> pd.Series | None:
    """The values a filter expression's `name` stands for: a list column, an hparam, a metric's last value, or
    `best_<metric>` its best one (None when no run has it)."""
    if name in COLUMN_NAMES:
        return frame[COLUMN_NAMES[name]]
    hparams = frame[HPARAMS]
    if any(name in h for h in hparams):
        return hparams.map(lambda h: h.get(name))
    metrics = frame[METRICS]
    if any(name in m for m in metrics):
        return metrics.map(lambda m: m[name][0] if name in m else np.nan)
    best = name.removeprefix("best_")
    if best != name and any(best in m for m in metrics):
        return metrics.map(lambda m: m[best][1] if best in m else np.nan)
    return None


def where_filtered(frame: pd.DataFrame, expression: str) -> tuple[pd.DataFrame, str | None]:
    """The runs that match a filter expression, and the message saying why it could not be used (then unfiltered)."""
    if not expression.strip():
        return frame, None
    try:
        query = Query(expression)
        mask = query.mask(lambda name: expression_column(frame, name), len(frame))
    except QueryError as exc:
        return frame, str(exc)
    return frame[mask.to_numpy()], None


def hparams_frame(runs: list[Run]) -> pd.DataFrame:
    """Runs as rows (indexed by name), hparams as columns; values as text so mixed types stay readable."""
    rows = {}
    for run in runs:
        rows[run_key(run)] = {str(k): format_value(v) for k, v in (run.hparams or {}).items()}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    return frame.fillna("")


def differing_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].nunique(dropna=False) > 1]


def differing_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """True where a value differs from its column's usual one: the most common value, or the first run's when no
    value is more common than the others (then the first run is the reference and its row stays plain)."""
    marks = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for column in frame.columns:
        values = frame[column]
        counts = values.value_counts(dropna=False)
        top = counts[counts == counts.max()]
        reference = top.index[0] if len(top) == 1 else values.iloc[0]
        marks[column] = values != reference
    return marks


def final_metrics_frame(runs: list[Run]) -> pd.DataFrame:
    """Runs as rows: the last epoch's value of every metric, plus the best of each (as its direction says)."""
    rows = {}
    for run in runs:
        epoch = run.epoch_metrics()
        model = run.model_info
        row: dict[str, object] = {
            "epochs": float(len(epoch)),
            "params": float(model.total_params) if model and model.total_params is not None else np.nan,
            "size": size_text(model.size_bytes) if model and model.size_bytes is not None else "",
        }
        for metric in metric_names(epoch):
            best, last = best_and_last(epoch[metric], run.metric_direction(metric))
            row[metric] = last
            row[f"best {metric}"] = best
        rows[run_key(run)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def run_key(run: Run) -> str:
    """A row label that stays unique when two runs share a name."""
    return f"{run.name} ({run.id[-4:]})"


def series_csv(runs: list[Run], metric: str, level: str) -> bytes:
    """Every recorded value of `metric` for these runs at full resolution, long format (run, step, epoch, time)."""
    parts = []
    for run in runs:
        frame = run.batch_metrics() if level == "batch" else run.epoch_metrics()
        if metric not in frame:
            continue
        columns = [c for c in ("step", "epoch", "batch", "time") if c in frame] + [metric]
        part = frame[columns].rename(columns={metric: "value"})
        part.insert(0, "run_id", run.id)
        part.insert(1, "run_name", run.name)
        part.insert(2, "metric", metric)
        parts.append(part)
    if not parts:
        return b""
    return pd.concat(parts, ignore_index=True).to_csv(index=False).encode("utf-8")


EVENT_TABLE_ROWS = 200  # the newest events listed on the Run page (run.events() holds them all)


def events_markdown(events: pd.DataFrame, rows: int = EVENT_TABLE_ROWS) -> str:
    """The newest `rows` events, newest first, as a markdown table (time UTC, step, epoch as Keras prints it, kind,
    message). Markdown rather than a data grid: the Run page then loads no table component before its charts."""
    newest = events.iloc[::-1].iloc[:rows]
    times = pd.to_datetime(pd.to_numeric(newest["time"], errors="coerce"), unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
    epochs = pd.to_numeric(newest["epoch"], errors="coerce") + 1  # as Keras prints it: "Epoch 1/10"
    steps = pd.to_numeric(newest["step"], errors="coerce")
    lines = ["| time (UTC) | step | epoch | kind | message |", "| --- | ---: | ---: | --- | --- |"]
    for time, step, epoch, kind, message in zip(times, steps, epochs, newest["kind"], newest["message"], strict=True):
        texts = [text if isinstance(text, str) else "" for text in (kind, message)]
        cells = [time if isinstance(time, str) else "", _whole_text(step), _whole_text(epoch), *map(md_escape, texts)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _whole_text(value: float) -> str:
    return f"{int(value):,}" if np.isfinite(value) else ""
