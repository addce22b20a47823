"""app/tables.py on runs with known contents: the runs list's rows and frame, filter expressions over it, the Compare
page's hparams and final-metrics tables, the CSV export and the Run page's events table."""

from __future__ import annotations

import io
import json
import math
import os
import re
import time

import numpy as np
import pandas as pd
import pytest

from kerascope import RunStore, RunWriter
from kerascope.app import tables
from kerascope.monitor import format as fmt

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def write_run(root, name: str, meta: dict, epochs: list[dict], status: dict, batches: list[dict] = (),
              events: list[dict] = ()) -> str:
    """A closed run with these records; status.json then replaced by `status` (fixed times)."""
    writer = RunWriter(root, name, meta=meta, flush_interval=3600)
    for record in epochs:
        writer.log("epoch", record)
    for record in batches:
        writer.log("batch", record)
    for record in events:
        writer.log("events", record)
    writer.close()
    fmt.write_json_atomic(os.path.join(writer.run_dir, fmt.STATUS_FILE), status)
    return writer.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    ids = {}
    ids["alpha"] = write_run(
        root, "alpha",
        {"created": T0, "hparams": {"lr": 0.01, "units": 32, "opt": "adam", "layers": [8, 2]}, "tags": ["x", "y"],
         "group": "sweep", "notes": "first", "model": {"total_params": 8554, "size_bytes": 34216},
         "metrics": {"auc": {"direction": "max"}, "throughput": {"direction": "max"}}},
        [{"epoch": 0, "step": 10, "time": T0 + 1, "loss": 0.9, "val_loss": 1.0, "auc": 0.6},
         {"epoch": 1, "step": 20, "time": T0 + 2, "loss": 0.4, "val_loss": 0.6, "auc": 0.8},
         {"epoch": 2, "step": 30, "time": T0 + 3, "loss": 0.5, "val_loss": 0.7, "auc": 0.7}],
        {"status": "finished", "started": T0, "ended": T0 + 187, "heartbeat": T0 + 187, "epoch": 2, "epochs": 3,
         "step": 30, "steps_per_epoch": 10},
        batches=[{"step": s, "epoch": 0, "batch": s - 1, "time": T0 + s, "loss": 1.0 / s} for s in (1, 2, 3)],
    )
    ids["beta"] = write_run(
        root, "beta", {"created": T0 + 100, "hparams": {"lr": 0.1, "units": 32, "opt": "sgd"}},
        [{"epoch": 0, "step": 5, "time": T0 + 101, "loss": 0.8, "acc": 0.5}],
        {"status": "failed", "reason": "boom", "ended": T0 + 160},
    )
    ids["gamma"] = write_run(
        root, "gamma", {"created": T0 + 200, "hparams": {"lr": 0.001, "units": 64, "opt": "adam", "drop": 0.5}},
        [], {"status": "finished", "started": T0 + 200, "ended": T0 + 200.4, "heartbeat": T0 + 200.4},
    )
    return RunStore(root), ids


@pytest.fixture(scope="module")
def runs(store):
    found, ids = store
    return [found.run(ids[name]) for name in ("alpha", "beta", "gamma")]


def test_metric_direction_is_the_first_recorded_one_else_the_name_rule(runs):
    assert tables.metric_direction(runs, "auc") == "max"
    assert tables.metric_direction(runs[1:], "auc") == "max"  # no record: the name rule
    assert tables.metric_direction(runs, "throughput") == "max"  # recorded against its name's rule
    assert tables.metric_direction(runs[1:], "throughput") == "min"
    assert tables.metric_direction([], "val_accuracy") == "max"


def test_metric_names_put_each_val_twin_after_its_metric():
    frame = pd.DataFrame(columns=["epoch", "step", "time", "lr", "learning_rate", "phase", "batch", "batch_loss",
                                  "val_extra", "acc", "loss", "val_loss", "val_acc"])
    assert tables.metric_names(frame) == ["acc", "val_acc", "loss", "val_loss", "val_extra"]


def test_key_metrics_are_loss_and_val_loss_then_the_most_common():
    metrics = [{"acc": 1, "val_loss": 1}, {"acc": 1, "f1": 1}, {"f1": 1, "acc": 1, "x": 1, "y": 1, "loss": 1}]
    assert tables.key_metrics_of(metrics) == ["loss", "val_loss", "acc", "f1"]
    assert tables.key_metrics_of([{"b": 1, "a": 1}, {"a": 1}, {"c": 1, "d": 1, "e": 1}]) == ["a", "b", "c", "d"]
    assert tables.key_metrics_of([]) == []


def test_key_metrics_of_runs(runs):
    assert tables.key_metrics_of([run.overview().metrics for run in runs]) == ["loss", "val_loss", "auc", "acc"]


@pytest.mark.parametrize(("values", "direction", "expected"), [
    ([0.5, np.nan, 0.2, np.inf, 0.3], "min", (0.2, 0.3)),
    ([0.5, np.nan, 0.2, -np.inf, 0.3], "max", (0.5, 0.3)),
    ([0.5, np.nan], "min", (0.5, np.nan)),
    ([np.nan, np.inf], "max", (np.nan, np.inf)),
    ([np.nan, np.inf, np.nan], "max", (np.nan, np.nan)),
    ([], "min", (np.nan, np.nan)),
])
def test_best_and_last(values, direction, expected):
    best, last = tables.best_and_last(pd.Series(values, dtype=float), direction)
    np.testing.assert_equal((best, last), expected)
    assert type(best) is float and type(last) is float


@pytest.mark.parametrize(("value", "text"), [
    ({"a": [1, 2]}, '{"a":[1,2]}'), ([1, "x"], '[1,"x"]'),
    (list(range(40)), "[" + ",".join(map(str, range(40)))[:79]),  # cut at 80 characters
    (0.1, "0.1"), ("adam", "adam"), (None, "None"), ((1, 2), "(1, 2)"),
])
def test_format_value(value, text):
    assert tables.format_value(value) == text


def test_run_row_of_a_finished_run(runs):
    alpha = runs[0]
    row = tables.run_row(alpha)
    assert row == {
        "status": "✓ finished", "name": "alpha", "progress": 1.0, "where": "epoch 3/3 · step 30", "ETA": "",
        "duration": "3 min 07 s", "params": 8554, "size": "33.4 KB",
        "hparams": "lr=0.01, units=32, opt=adam, layers=[8,2]", "tags": "x, y", "group": "sweep", "notes": "first",
        "reason": "", "started": T0, "id": alpha.id,
        tables.HPARAMS: {"lr": 0.01, "units": 32, "opt": "adam", "layers": [8, 2]},
        tables.METRICS: {"loss": (0.5, 0.4, "min"), "val_loss": (0.7, 0.6, "min"), "auc": (0.7, 0.8, "max")},
        tables.STATUS: "finished", tables.EPOCHS: 3,
    }


def test_run_row_of_a_run_with_little_recorded(runs):
    beta, gamma = runs[1], runs[2]
    row = tables.run_row(beta)
    assert math.isnan(row.pop("params"))
    assert row == {
        "status": "✗ failed", "name": "beta", "progress": None, "where": "no progress recorded yet", "ETA": "",
        "duration": "1 min 00 s", "size": "", "hparams": "lr=0.1, units=32, opt=sgd", "tags": "", "group": "",
        "notes": "", "reason": "boom", "started": T0 + 100, "id": beta.id,
        tables.HPARAMS: {"lr": 0.1, "units": 32, "opt": "sgd"},
        tables.METRICS: {"loss": (0.8, 0.8, "min"), "acc": (0.5, 0.5, "max")},
        tables.STATUS: "failed", tables.EPOCHS: 1,
    }
    row = tables.run_row(gamma)
    assert (row["duration"], row[tables.EPOCHS], row[tables.METRICS]) == ("0 s", 0, {})


def test_run_row_of_unreadable_files(tmp_path):
    writer = RunWriter(tmp_path, "odd", flush_interval=3600)
    writer.close()
    # A hand-edited summary.json (nothing in the streams, so it is current): values that are not numbers read as NaN.
    fmt.write_json_atomic(os.path.join(writer.run_dir, fmt.RUN_SUMMARY_FILE), {
        "summary_version": 1, "sources": {},
        "metrics": {"loss": {"last": True, "best": "0.3", "direction": "min"}, "acc": {"last": 2, "best": 0.5}}})
    fmt.write_json_atomic(os.path.join(writer.run_dir, fmt.RUN_FILE), {"format_version": 1, "hparams": None})
    row = tables.run_row(RunStore(tmp_path).run(writer.run_id))
    loss, acc = row[tables.METRICS]["loss"], row[tables.METRICS]["acc"]
    assert math.isnan(loss[0]) and math.isnan(loss[1]) and loss[2] == "min"
    assert acc == (2.0, 0.5, "max") and type(acc[0]) is float  # no direction recorded: the name rule
    assert row[tables.HPARAMS] == {} and row["hparams"] == "" and row["where"] == "no progress recorded yet"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / fmt.RUN_FILE).write_text("[1, 2]")
    (broken / fmt.STATUS_FILE).write_text(json.dumps({"status": "finished", "epoch": 0, "epochs": 2}))
    row = tables.run_row(RunStore(tmp_path).run("broken"))
    assert (row["status"], row["where"]) == ("⚠ broken", "")
    assert row["reason"] == "run.json does not hold a JSON object"


def test_runs_frame_columns_and_values(runs):
    frame = tables.runs_frame(runs)
    assert list(frame.columns) == [
        "status", "name", "progress", "where", "ETA", "duration",
        "loss (last)", "loss (best)", "val_loss (last)", "val_loss (best)", "auc (last)", "auc (best)",
        "acc (last)", "acc (best)",
        "params", "size", "hparams", "tags", "group", "notes", "reason", "started", "id",
        tables.HPARAMS, tables.METRICS, tables.STATUS, tables.EPOCHS]
    assert frame["name"].tolist() == ["alpha", "beta", "gamma"]
    np.testing.assert_equal(frame["loss (last)"].to_numpy(), [0.5, 0.8, np.nan])
    np.testing.assert_equal(frame["loss (best)"].to_numpy(), [0.4, 0.8, np.nan])
    np.testing.assert_equal(frame["auc (best)"].to_numpy(), [0.8, np.nan, np.nan])
    np.testing.assert_equal(frame["acc (last)"].to_numpy(), [np.nan, 0.5, np.nan])
    assert frame["started"].tolist() == [pd.Timestamp("2023-11-14 22:13:20"), pd.Timestamp("2023-11-14 22:15:00"),
                                         pd.Timestamp("2023-11-14 22:16:40")]
    again = tables.runs_frame(runs, rows=[tables.run_row(run) for run in runs[:1]])  # cached rows are used as given
    assert again["name"].tolist() == ["alpha"]
    assert tables.runs_frame([]).empty


def test_runs_frame_floors_the_start_to_the_second(tmp_path):
    writer = RunWriter(tmp_path, "late", meta={"created": T0 + 0.9}, flush_interval=3600)
    writer.close()
    frame = tables.runs_frame(RunStore(tmp_path).runs())
    assert frame["started"].tolist() == [pd.Timestamp("2023-11-14 22:13:20")]


@pytest.mark.parametrize(("expression", "names"), [
    ("lr < 0.05", ["alpha", "gamma"]),
    ("opt == 'adam' and units > 32", ["gamma"]),
    ("drop == 0.5", ["gamma"]),  # an hparam only some runs have
    ("loss > 0.6", ["beta"]),  # a metric: its last value
    ("best_loss < 0.5", ["alpha"]),  # best_<metric>: its best
    ("best_auc > 0.7", ["alpha"]),
    ("acc == 0.5", ["beta"]),
    ("status == 'failed'", ["beta"]),
    ("name != 'beta'", ["alpha", "gamma"]),
    ("group == 'sweep'", ["alpha"]),
    ("tags == 'x, y'", ["alpha"]),
    ("epochs >= 1", ["alpha", "beta"]),
    ("params > 100", ["alpha"]),
    ("", ["alpha", "beta", "gamma"]),
    ("   ", ["alpha", "beta", "gamma"]),
])
def test_where_filtered(runs, expression, names):
    frame, problem = tables.where_filtered(tables.runs_frame(runs), expression)
    assert problem is None and frame["name"].tolist() == names


def test_id_in_a_filter_and_names_that_are_not_columns(runs):
    frame = tables.runs_frame(runs)
    matched, problem = tables.where_filtered(frame, f"id == '{runs[1].id}'")
    assert problem is None and matched["name"].tolist() == ["beta"]
    for unknown in ("best_units", "bestloss", "best_", "val_auc"):
        matched, problem = tables.where_filtered(frame, f"{unknown} > 0")
        assert problem.startswith(f"unknown name '{unknown}'") and matched is frame
    matched, problem = tables.where_filtered(frame, "lr <")
    assert problem.startswith("could not read the expression") and matched is frame


def test_an_hparam_named_like_a_best_metric_is_the_hparam():
    frame = pd.DataFrame({tables.HPARAMS: [{"best_loss": 1}, {}], tables.METRICS: [{"loss": (0.5, 0.2, "min")}] * 2})
    np.testing.assert_equal(tables.expression_column(frame, "best_loss").tolist(), [1, np.nan])
    assert tables.expression_column(frame, "loss").tolist() == [0.5, 0.5]


def test_hparams_frame_and_the_columns_that_differ(runs):
    frame = tables.hparams_frame(runs)
    keys = [f"{name} ({run.id[-4:]})" for name, run in zip(("alpha", "beta", "gamma"), runs, strict=True)]
    assert frame.index.tolist() == keys
    assert frame.to_dict("list") == {"lr": ["0.01", "0.1", "0.001"], "units": ["32", "32", "64"],
                                     "opt": ["adam", "sgd", "adam"], "layers": ["[8,2]", "", ""],
                                     "drop": ["", "", "0.5"]}
    assert tables.differing_columns(frame) == ["lr", "units", "opt", "layers", "drop"]
    same = pd.DataFrame({"a": ["1", "1"], "b": ["1", "2"], "c": [np.nan, np.nan], "d": [np.nan, "1"]})
    assert tables.differing_columns(same) == ["b", "d"]


def test_differing_cells_mark_what_differs_from_the_usual_value():
    frame = pd.DataFrame({"common": ["a", "b", "a", "a"], "tie": ["x", "y", "y", "x"], "all": ["1", "2", "3", "4"],
                          "same": ["s"] * 4, "missing": ["", "", "z", ""]},
                         index=["r1", "r2", "r3", "r4"])
    marks = tables.differing_cells(frame)
    assert marks.to_dict("list") == {"common": [False, True, False, False], "tie": [False, True, True, False],
                                     "all": [False, True, True, True], "same": [False] * 4,
                                     "missing": [False, False, True, False]}
    assert marks.index.tolist() == ["r1", "r2", "r3", "r4"]
    tie_first_rare = pd.DataFrame({"c": ["y", "x", "x", "y"]})
    assert tables.differing_cells(tie_first_rare)["c"].tolist() == [False, True, True, False]
    first_is_rare = pd.DataFrame({"c": ["b", "a", "a", "a"]})
    assert tables.differing_cells(first_is_rare)["c"].tolist() == [True, False, False, False]
    tie_without_the_first = pd.DataFrame({"c": ["z", "x", "x", "y", "y"]})  # x, y tie: the first run is the reference
    assert tables.differing_cells(tie_without_the_first)["c"].tolist() == [False, True, True, True, True]


def test_final_metrics_frame(runs):
    frame = tables.final_metrics_frame(runs)
    assert list(frame.columns) == ["epochs", "params", "size", "auc", "best auc", "loss", "best loss", "val_loss",
                                   "best val_loss", "acc", "best acc"]
    rows = frame.to_dict("index")
    alpha, beta, gamma = (rows[tables.run_key(run)] for run in runs)
    assert {key: alpha[key] for key in ("epochs", "params", "size", "loss", "best loss", "val_loss", "best val_loss",
                                        "auc", "best auc")} == {
        "epochs": 3.0, "params": 8554.0, "size": "33.4 KB", "loss": 0.5, "best loss": 0.4, "val_loss": 0.7,
        "best val_loss": 0.6, "auc": 0.7, "best auc": 0.8}
    assert (beta["epochs"], beta["loss"], beta["best acc"], beta["size"]) == (1.0, 0.8, 0.5, "")
    assert math.isnan(beta["params"]) and math.isnan(alpha["acc"])
    assert gamma["epochs"] == 0.0 and math.isnan(gamma["loss"])


def test_run_key_tells_runs_with_one_name_apart(runs):
    assert tables.run_key(runs[0]) == f"alpha ({runs[0].id[-4:]})"


def test_series_csv_at_each_level(runs):
    alpha, beta, gamma = runs
    batch = pd.read_csv(io.BytesIO(tables.series_csv(runs, "loss", "batch")))
    assert batch.to_dict("list") == {"run_id": [alpha.id] * 3, "run_name": ["alpha"] * 3, "metric": ["loss"] * 3,
                                     "step": [1, 2, 3], "epoch": [0, 0, 0], "batch": [0, 1, 2],
                                     "time": [T0 + 1, T0 + 2, T0 + 3], "value": [1.0, 0.5, 1 / 3]}
    epoch = pd.read_csv(io.BytesIO(tables.series_csv(runs, "loss", "epoch")))
    assert list(epoch.columns) == ["run_id", "run_name", "metric", "step", "epoch", "time", "value"]
    assert epoch["run_name"].tolist() == ["alpha"] * 3 + ["beta"]
    assert epoch["value"].tolist() == [0.9, 0.4, 0.5, 0.8]
    assert epoch["step"].tolist() == [10, 20, 30, 5]
    assert tables.series_csv(runs, "nothing", "epoch") == b""
    assert tables.series_csv([beta, alpha], "loss", "batch") == tables.series_csv([alpha], "loss", "batch")
    assert tables.series_csv([], "loss", "epoch") == b""


def test_events_markdown_lists_the_newest_first_escaped():
    events = pd.DataFrame({
        "time": [T0, T0 + 61.25, T0 + 3600, "x"],
        "step": [0, 1234567, "s", 5],
        "epoch": [0, 9, 2, "e"],
        "kind": ["train_begin", "nan", None, "note"],
        "message": ["fit() call 1 started", "loss became *NaN*", 3, "a | b"],
        "data": [None] * 4,
    })
    assert tables.events_markdown(events).splitlines() == [
        "| time (UTC) | step | epoch | kind | message |",
        "| --- | ---: | ---: | --- | --- |",
        "|  | 5 |  | note | a \\| b |",
        "| 2023-11-14 23:13:20 |  | 3 |  |  |",
        "| 2023-11-14 22:14:21 | 1,234,567 | 10 | nan | loss became \\*NaN\\* |",
        "| 2023-11-14 22:13:20 | 0 | 1 | train\\_begin | fit\\(\\) call 1 started |",
    ]
    assert tables.events_markdown(events, rows=2).splitlines()[2:] == [
        "|  | 5 |  | note | a \\| b |", "| 2023-11-14 23:13:20 |  | 3 |  |  |"]
    many = pd.DataFrame({"time": [T0] * 250, "step": range(250), "epoch": [0] * 250, "kind": ["k"] * 250,
                         "message": ["m"] * 250})
    shown = tables.events_markdown(many).splitlines()
    assert len(shown) == 2 + 200 and shown[2].startswith("| 2023-11-14 22:13:20 | 249 |")
    assert shown[-1].startswith("| 2023-11-14 22:13:20 | 50 |")


def test_run_row_of_a_live_run_has_its_eta(tmp_path):
    started = time.time() - 300.0
    writer = RunWriter(tmp_path, "live", flush_interval=3600)
    try:
        writer.log("epoch", {"epoch": 0, "step": 10, "time": started + 200, "loss": 0.5})
        writer.update_status(started=started, epoch=1, epochs=4, steps_per_epoch=10, step=15)
        writer.flush()
        before = time.time()
        row = tables.run_row(RunStore(tmp_path).run(writer.run_id))
        after = time.time()
    finally:
        writer.close()
    # 1.5 of 4 epochs in 300 s: 2.5 epochs left at 200 s each
    assert row["where"] == "epoch 2/4 · step 15" and row["progress"] == pytest.approx(1.5 / 4)
    minutes, seconds = re.fullmatch(r"(\d+) min (\d\d) s", row["ETA"]).groups()
    left = int(minutes) * 60 + int(seconds)
    assert round((before - started) * 2.5 / 1.5) <= left <= round((after - started) * 2.5 / 1.5)


def test_patched_frame_equals_the_frame_built_again_with_the_changed_rows(store, runs):
    found, ids = store
    metrics = ["loss", "val_loss", "auc"]
    rows = [tables.run_row(run) for run in runs]
    frame = tables.rows_frame(rows, metrics)
    before = frame.copy(deep=True)
    changed = dict(rows[1], name="beta renamed", progress=0.25, where="epoch 1 of 4")
    changed[tables.METRICS] = {**rows[1][tables.METRICS], "loss": (0.123, 0.456, "min")}
    patched = tables.patched_frame(frame, {1: changed}, metrics)
    pd.testing.assert_frame_equal(patched, tables.rows_frame([rows[0], changed, rows[2]], metrics))
    assert patched.loc[1, "name"] == "beta renamed" and patched.loc[1, "loss (last)"] == 0.123
    pd.testing.assert_frame_equal(frame, before)  # the frame it was given is left as it was
    # Rows at two positions at once, in any order of the dict.
    both = tables.patched_frame(frame, {2: dict(rows[2], name="g2"), 0: dict(rows[0], name="a2")}, metrics)
    assert list(both["name"]) == ["a2", "beta", "g2"]


def test_patched_frame_refuses_a_row_that_changes_the_frames_shape_or_types(runs):
    metrics = ["loss"]
    rows = [tables.run_row(run) for run in runs]
    frame = tables.rows_frame(rows, metrics)
    assert tables.patched_frame(frame, {0: rows[0]}, ["loss", "auc"]) is None  # other columns
    assert tables.patched_frame(frame, {0: dict(rows[0], progress="half")}, metrics) is None  # text in a float column


def test_a_run_row_follows_status_json_replaced_since_the_run_was_last_listed(tmp_path):
    run_id = write_run(tmp_path, "ending", {"created": T0}, [{"epoch": 0, "step": 5, "time": T0 + 1, "loss": 0.5}],
                       {"status": "running", "started": T0, "heartbeat": time.time(), "epoch": 0, "epochs": 4})
    run = RunStore(tmp_path).run(run_id)
    assert tables.run_row(run)["status"] == tables.status_label("running")
    fmt.write_json_atomic(os.path.join(run.path, fmt.STATUS_FILE),
                          {"status": "failed", "reason": "boom", "started": T0, "ended": T0 + 60})
    row = tables.run_row(run)  # the same Run object, as the Runs page keeps it between reruns
    assert (row["status"], row["duration"]) == (tables.status_label("failed"), "1 min 00 s")
