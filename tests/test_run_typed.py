"""Run's typed accessors: what run.json and status.json hold, with malformed values read as None (never raising)."""

from __future__ import annotations

import json
import os

import pytest

from kerascope.app import tables
from kerascope.monitor import MetricSummary, ModelInfo, RunOptions, RunProgress, RunStore, RunWriter
from kerascope.monitor import format as fmt


def write_run(root, meta: dict, status: dict | None = None):
    """A run whose run.json holds `meta` (plus the required fields) and status.json `status`."""
    writer = RunWriter(root, "typed", flush_interval=60)
    writer.close()
    fmt.write_json_atomic(os.path.join(writer.run_dir, fmt.RUN_FILE), {"format_version": 1, "name": "typed", **meta})
    if status is not None:
        fmt.write_json_atomic(os.path.join(writer.run_dir, fmt.STATUS_FILE), status)
    return RunStore(root).run(writer.run_id)


def test_well_formed_values(runs_root):
    run = write_run(
        runs_root,
        {
            "hparams": {"lr": 0.01, "layers": [8, 2]},
            "tags": ["mlp", "baseline"],
            "notes": "first try",
            "options": {"logdir": "runs", "checkpoint": "best", "update_freq": "batch", "monitor": "val_auc",
                        "mode": "auto", "flush_interval": 0.5},
            "model": {"name": "mlp", "class": "Sequential", "total_params": 90, "trainable_params": 80,
                      "non_trainable_params": 10, "size_bytes": 360},
            "metrics": {"loss": {"direction": "min"}, "auc": {"direction": "max"}},
        },
        {"status": "finished", "heartbeat": 110.0, "started": 100.0, "ended": 110.0, "epoch": 2, "epochs": 3,
         "step": 12, "steps_per_epoch": 4},
    )
    assert run.hparams == {"lr": 0.01, "layers": [8, 2]}
    assert run.tags == ["mlp", "baseline"] and run.notes == "first try"
    assert run.options == RunOptions(logdir="runs", update_freq="batch", checkpoint="best", monitor="val_auc",
                                     mode="auto")
    assert run.model_info == ModelInfo("mlp", "Sequential", 90, 80, 10, 360)
    assert run.progress == RunProgress(epoch=2, epochs=3, step=12, steps_per_epoch=4, started=100.0, ended=110.0,
                                       heartbeat=110.0)
    assert run.metric_directions == {"loss": "min", "auc": "max"}
    assert run.metric_direction("val_auc") == "max"  # a val_ twin reads as its metric


@pytest.mark.parametrize(
    "meta",
    [
        {"hparams": "lr=0.1", "tags": "a,b", "notes": 5, "options": [1], "model": "mlp", "metrics": ["loss"]},
        {"hparams": None, "tags": None, "notes": None, "options": None, "model": None, "metrics": None},
        {},
    ],
    ids=["wrong-types", "nulls", "absent"],
)
def test_malformed_or_missing_run_json_values_read_as_none(runs_root, meta):
    run = write_run(runs_root, meta, {"status": "finished", "heartbeat": 0})
    assert run.error is None and run.status == "finished"
    assert (run.hparams, run.tags, run.notes, run.model_info) == (None, None, None, None)
    assert run.options == RunOptions()  # every field None
    assert run.metric_directions == {}
    assert run.metric_direction("val_poisson") == "min" and run.metric_direction("accuracy") == "max"  # name rule


def test_malformed_fields_inside_objects_read_as_none(runs_root):
    run = write_run(
        runs_root,
        {
            "tags": ["ok", 7],
            "model": {"name": 3, "class": "Functional", "total_params": "90", "trainable_params": True,
                      "non_trainable_params": 1.5, "size_bytes": None},
            "metrics": {"loss": "min", "auc": {"direction": "up"}, "acc": {"direction": "max"}, "x": None},
        },
        {"status": "running", "heartbeat": "now", "started": "yesterday", "ended": None, "epoch": "x",
         "epochs": 3.0, "step": True, "steps_per_epoch": [4]},
    )
    assert run.tags == ["ok", "7"]
    assert run.model_info == ModelInfo(None, "Functional", None, None, None, None)
    assert run.metric_directions == {"acc": "max"}
    assert run.metric_direction("loss") == "min" and run.metric_direction("auc") == "max"  # the name rule
    assert run.progress == RunProgress()  # every field malformed
    assert run.status == "stale"


def test_progress_of_a_broken_run_is_empty(runs_root):
    run = write_run(runs_root, {})
    os.remove(os.path.join(run.path, fmt.STATUS_FILE))
    assert run.status == "broken" and run.progress == RunProgress()
    with open(os.path.join(run.path, fmt.RUN_FILE), "w", encoding="utf-8") as f:
        json.dump([1, 2], f)
    broken = RunStore(runs_root).runs()[0]
    assert broken.error == "run.json does not hold a JSON object"
    assert (broken.hparams, broken.tags, broken.model_info) == (None, None, None)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"logdir": 3, "update_freq": 0, "checkpoint": "sometimes", "monitor": "", "mode": "up"}, RunOptions()),
        ({"update_freq": True, "checkpoint": ["best"], "monitor": 5, "mode": None}, RunOptions()),
        ({"update_freq": 2.5, "checkpoint": "BEST", "monitor": {"name": "loss"}, "mode": "MAX"}, RunOptions()),
        ({"update_freq": 7, "checkpoint": "all", "monitor": "loss", "mode": "max"},
         RunOptions(update_freq=7, checkpoint="all", monitor="loss", mode="max")),
        ({"update_freq": "epoch", "checkpoint": None, "logdir": "s3://bucket/runs"},
         RunOptions(logdir="s3://bucket/runs", update_freq="epoch")),
        ({"update_freq": 1}, RunOptions(update_freq=1)),
        ({"update_freq": -3}, RunOptions()),
    ],
    ids=["wrong-values", "wrong-types", "near-misses", "every-N-batches", "no-checkpoints", "every-batch", "negative"],
)
def test_recorded_options_read_typed_with_malformed_fields_as_none(runs_root, options, expected):
    run = write_run(runs_root, {"options": options}, {"status": "finished", "heartbeat": 0})
    assert run.options == expected


def write_summary_metrics(run, metrics: dict) -> None:
    """Replace summary.json's `metrics` (keeping `sources`, so readers still take the file as current)."""
    path = os.path.join(run.path, fmt.RUN_SUMMARY_FILE)
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    summary["metrics"] = metrics
    fmt.write_json_atomic(path, summary)


def test_summary_metrics_read_typed_with_malformed_values_as_none(runs_root):
    run = write_run(runs_root, {"metrics": {"peak": {"direction": "max"}}},
                    {"status": "finished", "heartbeat": 0})
    write_summary_metrics(run, {
        "loss": {"last": 0.5, "best": 0.25, "best_epoch": 1, "direction": "min"},
        "auc": {"last": "high", "best": True, "best_epoch": 1.5, "direction": "up"},
        "val_peak": {"last": float("nan"), "best_epoch": 2.0},
        "accuracy_gap": {"last": 0.1, "best": 0.05, "best_epoch": 3, "direction": "min"},
        "junk": 7,
    })
    metrics = run.overview().metrics
    assert set(metrics) == {"loss", "auc", "val_peak", "accuracy_gap"}  # an entry that is not an object is left out
    # A direction recorded in the summary wins over the name rule ("accuracy" in a name reads "max").
    assert metrics["accuracy_gap"] == MetricSummary(last=0.1, best=0.05, best_epoch=3, direction="min")
    assert metrics["loss"] == MetricSummary(last=0.5, best=0.25, best_epoch=1, direction="min")
    # A malformed direction is the run's: the name rule for "auc", the one recorded for "peak" for its val_ twin.
    assert metrics["auc"] == MetricSummary(last=None, best=None, best_epoch=None, direction="max")
    val_peak = metrics["val_peak"]
    assert (val_peak.best, val_peak.best_epoch, val_peak.direction) == (None, 2, "max")
    assert val_peak.last != val_peak.last  # NaN: the metric diverged, kept as such
    # The runs list reads them as numbers, NaN where there is none.
    row = tables.run_row(run)[tables.METRICS]
    assert row["loss"] == (0.5, 0.25, "min")
    last, best, direction = row["auc"]
    assert last != last and best != best and direction == "max"


def test_model_info_and_progress_from_json_values():
    assert ModelInfo.from_json({"name": "m", "class": 5, "total_params": 3}) == ModelInfo("m", None, 3)
    assert ModelInfo.from_json([1]) is None and ModelInfo.from_json({}) == ModelInfo()
    assert RunProgress.from_json({"epoch": 1, "started": 2, "heartbeat": False}) == RunProgress(epoch=1, started=2.0)
    assert type(RunProgress.from_json({"started": 2}).started) is float
    assert RunProgress.from_json("x") == RunProgress()
