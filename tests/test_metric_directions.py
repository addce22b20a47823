"""Which way each metric is better: recorded by LiveMonitor from the Keras metric objects, read by Run and the tables.

Runs written without `metrics` in run.json (format 1 as first shipped) fall back to the name rule of
`monitor.format.metric_direction`.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest
from page_charts import open_page
from train_helpers import open_run, read_json

from kerascope import LiveMonitor, RunStore, RunWriter
from kerascope.app import tables
from kerascope.monitor import format as fmt


def peak(y_true, y_pred):
    """A user-defined metric: its name says nothing about which way is better."""
    return keras.ops.max(y_pred)


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = np.abs(x[:, :1]) + 0.1
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="softplus")(inputs))
    metrics = [
        "poisson",
        keras.metrics.LogCoshError(),  # logged as "logcosh"
        keras.metrics.R2Score(),
        keras.metrics.R2Score(name="fit_quality"),  # Keras says "up", the name says nothing
        keras.metrics.MeanSquaredError(name="quality_score"),  # Keras says "down", the name sounds like "up"
        peak,
    ]
    model.compile("adam", "mse", metrics=metrics)
    live = LiveMonitor(str(tmp_path_factory.mktemp("runs")), system_freq=0, metric_directions={"peak": "max"})
    model.fit(x, y, validation_split=0.25, epochs=2, batch_size=16, verbose=0, callbacks=[live])
    return live.run_dir


EXPECTED = {
    "loss": "min",
    "poisson": "min",
    "logcosh": "min",
    "r2_score": "max",
    "fit_quality": "max",
    "quality_score": "min",
    "peak": "max",
}


def test_run_json_records_a_direction_for_every_logged_metric_and_its_val_twin(regression_run):
    recorded = read_json(regression_run, "run.json")["metrics"]
    expected = {**EXPECTED, **{f"val_{name}": direction for name, direction in EXPECTED.items()}}
    assert recorded == {name: {"direction": direction} for name, direction in expected.items()}


def test_run_reads_the_recorded_directions(regression_run):
    run = open_run(regression_run)
    assert run.metric_direction("val_fit_quality") == "max"
    assert run.metric_direction("quality_score") == "min"
    assert run.metric_direction("val_peak") == "max"
    # The name rule alone would get these two wrong: the recorded direction wins.
    assert fmt.metric_direction("fit_quality") == "min" and fmt.metric_direction("quality_score") == "max"


def test_the_name_rule_for_runs_without_recorded_directions():
    for name in ("loss", "val_loss", "poisson", "logcosh", "val_logcosh", "kl_divergence", "mean_squared_error",
                 "categorical_crossentropy", "squared_hinge", "mae", "my_metric"):
        assert fmt.metric_direction(name) == "min", name
    for name in ("accuracy", "val_sparse_categorical_accuracy", "auc", "precision", "recall", "r2_score",
                 "f1_score", "fbeta_score", "mean_io_u", "cosine_similarity", "head_accuracy"):
        assert fmt.metric_direction(name) == "max", name


def test_metric_directions_override_must_be_min_or_max(tmp_path):
    with pytest.raises(ValueError, match='metric_directions\\[\'peak\'\\] must be "min" or "max"'):
        LiveMonitor(str(tmp_path), metric_directions={"peak": "up"})


def write_run(root, name: str, values: dict[str, list[float]], metrics: dict | None = None) -> str:
    """A finished run with these epoch metrics; `metrics` goes to run.json when given (else a v1 run without it)."""
    writer = RunWriter(root, name, meta={} if metrics is None else {"metrics": metrics}, flush_interval=60)
    epochs = len(next(iter(values.values())))
    for epoch in range(epochs):
        record = {"epoch": epoch, "step": epoch + 1, "time": time.time()}
        record.update({metric: series[epoch] for metric, series in values.items()})
        writer.log("epoch", record)
    writer.close()
    return writer.run_id


def test_best_columns_follow_the_direction(runs_root):
    values = {"poisson": [3.0, 1.0, 2.0], "logcosh": [0.5, 0.2, 0.4], "r2_score": [0.1, 0.9, 0.5],
              "peak": [1.0, 4.0, 2.0]}
    write_run(runs_root, "without directions", values)
    write_run(runs_root, "with directions", values, metrics={"peak": {"direction": "max"}})
    runs = {run.name: run for run in RunStore(runs_root).runs()}
    finals = tables.final_metrics_frame(list(runs.values())).rename(index=lambda key: key.rsplit(" (", 1)[0])
    for name in runs:
        assert finals.loc[name, "best poisson"] == 1.0
        assert finals.loc[name, "best logcosh"] == 0.2
        assert finals.loc[name, "best r2_score"] == 0.9
    assert finals.loc["without directions", "best peak"] == 1.0  # a custom name: lower is better by default
    assert finals.loc["with directions", "best peak"] == 4.0  # as recorded
    assert tables.metric_direction(list(runs.values()), "peak") == "max"
    assert tables.metric_direction(list(runs.values()), "poisson") == "min"


def test_a_val_twin_sorts_by_the_direction_recorded_for_its_metric(runs_root):
    # LiveMonitor records both names; a run.json that lists only the metric (a hand-written one, RunWriter's meta)
    # still says which way its val_ twin is better.
    recorded = {"peak": {"direction": "max"}}
    write_run(runs_root, "higher best", {"peak": [1.0, 2.0], "val_peak": [1.0, 5.0]}, metrics=recorded)
    write_run(runs_root, "lower best", {"peak": [1.0, 2.0], "val_peak": [2.0, 3.0]}, metrics=recorded)
    runs = RunStore(runs_root).runs()
    assert tables.metric_direction(runs, "val_peak") == "max"  # the name rule alone says "min"
    at = open_page(runs_root, "views/runs.py")
    at.selectbox(key="runs_sort").select("best val_peak").run()
    table = at.dataframe[0].value
    assert list(table["name"]) == ["higher best", "lower best"]
    assert list(table["val_peak (best)"]) == ["5", "3"]
