"""Tables built from many runs: the runs list, their hparams and their final metrics (pandas, no Streamlit)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd

from kerascope.app import widgets
from kerascope.monitor.reader import Run

NOT_METRICS = {"epoch", "step", "time", "phase", "batch", "lr", "learning_rate"}
LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "mape", "msle", "hinge", "crossentropy", "divergence")
MAX_KEY_METRICS = 4


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


def metric_names(frame: pd.DataFrame) -> list[str]:
    """Metric columns of an epoch or batch frame: train metrics first, each followed by its val_ twin."""
    names = [c for c in frame.columns if c not in NOT_METRICS and not c.startswith("batch_")]
    train = [c for c in names if not c.startswith("val_")]
    ordered = []
    for name in train:
        ordered.append(name)
        if f"val_{name}" in names:
            ordered.append(f"val_{name}")
    return ordered + [c for c in names if c not in ordered]


def key_metrics(runs: list[Run]) -> list[str]:
    """The metrics shown in the runs list: loss and val_loss first, then the most common others."""
    counts: Counter[str] = Counter()
    for run in runs:
        counts.update(metric_names(run.epoch_metrics()))
    preferred = [m for m in ("loss", "val_loss") if m in counts]
    others = [m for m, _ in counts.most_common() if m not in preferred]
    return (preferred + others)[:MAX_KEY_METRICS]


def best_and_last(values: pd.Series, metric: str) -> tuple[float, float]:
    finite = values.to_numpy(float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return np.nan, (float(values.iloc[-1]) if len(values) else np.nan)
    return float(finite.min() if lower_is_better(metric) else finite.max()), float(values.iloc[-1])


def format_value(value: object) -> str:
    """Hparam values as compact text (dicts and lists as JSON)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))[:80]
    return str(value)


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run for the runs list. Every user-written value stays plain text."""
    metrics = key_metrics(runs)
    rows = []
    for run in runs:
        progress = widgets.progress(run)
        hparams = run.meta.get("hparams") if isinstance(run.meta.get("hparams"), dict) else {}
        tags = run.meta.get("tags") if isinstance(run.meta.get("tags"), list) else []
        row = {
            "status": widgets.status_label(run.status),
            "name": run.name,
            "progress": progress.fraction,
            "where": progress.text if run.error is None else "",
            "ETA": widgets.format_seconds(progress.eta_s),
            "duration": widgets.format_seconds(widgets.duration(run)),
        }
        epoch = run.epoch_metrics()
        for metric in metrics:
            best, last = best_and_last(epoch[metric], metric) if metric in epoch and len(epoch) else (np.nan, np.nan)
            row[f"{metric} (last)"] = last
            row[f"{metric} (best)"] = best
        row["hparams"] = ", ".join(f"{k}={format_value(v)}" for k, v in hparams.items())
        row["tags"] = ", ".join(str(tag) for tag in tags)
        row["reason"] = run.reason or ""
        row["started"] = pd.Timestamp(run.created, unit="s").floor("s")
        row["id"] = run.id
        rows.append(row)
    return pd.DataFrame(rows)


def hparams_frame(runs: list[Run]) -> pd.DataFrame:
    """Runs as rows (indexed by name), hparams as columns; values as text so mixed types stay readable."""
    rows = {}
    for run in runs:
        hparams = run.meta.get("hparams") if isinstance(run.meta.get("hparams"), dict) else {}
        rows[run_key(run)] = {str(k): format_value(v) for k, v in hparams.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    return frame.fillna("")


def differing_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].nunique(dropna=False) > 1]


def final_metrics_frame(runs: list[Run]) -> pd.DataFrame:
    """Runs as rows: the last epoch's value of every metric, plus the best of each (min for losses)."""
    rows = {}
    for run in runs:
        epoch = run.epoch_metrics()
        row: dict[str, float] = {"epochs": float(len(epoch))}
        for metric in metric_names(epoch):
            best, last = best_and_last(epoch[metric], metric)
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
