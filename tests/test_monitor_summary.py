"""monitor/summary.py on known records: what summary.json holds (bests by direction, the monitored metric, stop and
divergence, duration), its encoding and the checks a reader makes before trusting one."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

from kerascope import RunStore, RunWriter
from kerascope.monitor import format as fmt
from kerascope.monitor.summary import (
    SummaryBuilder,
    checked_summary,
    derive_summary,
    divergence_of_event,
    encode_summary,
    is_current,
)

NAN, INF = float("nan"), float("inf")

META = {
    "name": "mlp", "hparams": {"lr": 0.1}, "tags": ["a"], "group": "sweep", "notes": "first",
    "options": {"monitor": "val_auc"},
    "model": {"name": "m", "class": "Sequential", "total_params": 10, "trainable_params": 8, "size_bytes": 40,
              "non_trainable_params": 2},
    # throughput: recorded direction against the name rule; its val_ twin reads it; "bad" is not min or max.
    "metrics": {"auc": {"direction": "max"}, "throughput": {"direction": "max"}, "bad": {"direction": "up"},
                "odd": "max", "val_odd": {"direction": "max"}},
}
STATUS = {"status": "finished", "epoch": 3, "epochs": 5, "step": 40, "started": 100.0, "ended": 160.5,
          "heartbeat": 170.0, "extra": 1}
EPOCHS = [
    {"epoch": 0, "step": 10, "time": 1.0, "loss": 0.9, "val_loss": 1.0, "auc": 0.6, "val_auc": 0.5, "lr": 0.1,
     "batch_loss": 0.01, "learning_rate": 0.1, "phase": 1, "note": "text", "throughput": 5.0, "val_throughput": 1.0,
     "bad": 0.3, "odd": 0.2, "grad": INF},
    {"epoch": 1, "step": 20, "time": 2.0, "loss": 0.5, "val_loss": 0.7, "auc": 0.8, "val_auc": 0.9,
     "throughput": 7.0, "val_throughput": 3.0, "bad": 0.1, "odd": 0.1, "val_odd": 0.4, "grad": 2.0},
    {"epoch": 2.0, "step": 30, "time": 3.0, "loss": 0.5, "val_loss": NAN, "auc": 0.8, "val_auc": 0.9,
     "throughput": 6.0, "val_throughput": 2.0, "bad": 0.2, "odd": 0.3, "grad": -INF},
    {"epoch": 3, "step": 40, "time": 4.0, "loss": 0.7, "auc": 0.7, "val_auc": 0.85, "throughput": 6.5,
     "val_throughput": 2.5, "bad": 0.25, "odd": 0.15, "grad": 3.0},
]


def build(epochs=EPOCHS, events=(), meta=META, status=STATUS, sources=None) -> dict:
    builder = SummaryBuilder()
    for record in epochs:
        builder.add_epoch(record)
    for record in events:
        builder.add_event(record)
    return builder.summary(meta, status, sources or {fmt.EPOCH_FILE: 123, fmt.EVENTS_FILE: 45})


def test_the_summary_of_known_epochs():
    before = time.time()
    summary = build()
    assert before <= summary["time"] <= time.time()
    assert list(summary) == list(fmt.SUMMARY_FIELDS)
    assert {key: summary[key] for key in ("summary_version", "name", "status", "hparams", "tags", "group", "notes",
                                          "epochs_logged", "last_epoch", "monitor", "best_epoch", "divergence",
                                          "stop", "sources")} == {
        "summary_version": 1, "name": "mlp", "status": "finished", "hparams": {"lr": 0.1}, "tags": ["a"],
        "group": "sweep", "notes": "first", "epochs_logged": 4, "last_epoch": {"epoch": 3, "step": 40, "time": 4.0},
        "monitor": "val_auc", "best_epoch": 1, "divergence": None, "stop": None,
        "sources": {"epoch.jsonl": 123, "events.jsonl": 45}}
    assert summary["progress"] == {"epoch": 3, "epochs": 5, "step": 40, "started": 100.0, "ended": 160.5,
                                   "heartbeat": 170.0}
    assert summary["duration_s"] == 60.5
    assert summary["model"] == {"name": "m", "class": "Sequential", "total_params": 10, "trainable_params": 8,
                                "size_bytes": 40}
    metrics = summary["metrics"]
    assert list(metrics) == ["loss", "val_loss", "auc", "val_auc", "throughput", "val_throughput", "bad", "odd",
                             "grad", "val_odd"]  # not lr, learning_rate, phase, batch_ values or text
    assert metrics["loss"] == {"last": 0.7, "best": 0.5, "best_epoch": 1, "direction": "min"}  # a tie keeps the first
    assert math.isnan(metrics["val_loss"].pop("last"))
    assert metrics["val_loss"] == {"best": 0.7, "best_epoch": 1, "direction": "min"}
    assert metrics["auc"] == {"last": 0.7, "best": 0.8, "best_epoch": 1, "direction": "max"}
    assert metrics["val_auc"] == {"last": 0.85, "best": 0.9, "best_epoch": 1, "direction": "max"}
    assert metrics["throughput"] == {"last": 6.5, "best": 7.0, "best_epoch": 1, "direction": "max"}
    assert metrics["val_throughput"] == {"last": 2.5, "best": 3.0, "best_epoch": 1, "direction": "max"}
    assert metrics["bad"] == {"last": 0.25, "best": 0.1, "best_epoch": 1, "direction": "min"}  # by its name
    assert metrics["odd"] == {"last": 0.15, "best": 0.1, "best_epoch": 1, "direction": "min"}
    assert metrics["grad"] == {"last": 3.0, "best": 2.0, "best_epoch": 1, "direction": "min"}  # infinities skipped
    assert metrics["val_odd"] == {"last": 0.4, "best": 0.4, "best_epoch": 1, "direction": "max"}  # its own record


def test_an_epoch_that_is_not_a_whole_number_leaves_best_epoch_empty():
    records = [{"epoch": True, "loss": 0.5}, {"epoch": 1.5, "loss": 0.4}, {"epoch": "2", "loss": 0.3},
               {"epoch": INF, "loss": 0.2}, {"loss": 0.1}]
    for index, record in enumerate(records):
        summary = build(epochs=[{"epoch": 0, "loss": 0.9}, record])
        assert summary["metrics"]["loss"]["best_epoch"] is None, index
        assert summary["best_epoch"] is None and summary["monitor"] == "loss"
        assert summary["last_epoch"] == {"epoch": record.get("epoch"), "step": None, "time": None}


def test_bests_hold_without_epoch_numbers():
    summary = build(epochs=[{"loss": 0.2, "acc": 0.9}, {"loss": 0.5, "acc": 0.5}], meta={})
    assert summary["metrics"] == {"loss": {"last": 0.5, "best": 0.2, "best_epoch": None, "direction": "min"},
                                  "acc": {"last": 0.5, "best": 0.9, "best_epoch": None, "direction": "max"}}


def test_only_values_that_are_numbers_count():
    summary = build(epochs=[{"epoch": 0, "loss": "0.1", "acc": None, "val_loss": 0.3},
                            {"epoch": 1, "loss": 0.4, "acc": [1]}])
    assert summary["metrics"] == {"val_loss": {"last": 0.3, "best": 0.3, "best_epoch": 0, "direction": "min"},
                                  "loss": {"last": 0.4, "best": 0.4, "best_epoch": 1, "direction": "min"}}


def test_the_monitored_metric_falls_back_to_val_loss_then_loss():
    nan_monitor = [{"epoch": 0, "val_auc": NAN, "val_loss": 0.3, "loss": 0.2}]
    assert build(epochs=nan_monitor)["monitor"] == "val_loss"  # never a value: not the monitor
    no_val = [{"epoch": 0, "val_loss": NAN, "loss": 0.2}, {"epoch": 1, "val_loss": NAN, "loss": 0.1}]
    summary = build(epochs=no_val)
    assert summary["monitor"] == "loss" and summary["best_epoch"] == 1
    assert build(epochs=no_val, meta={"options": {"monitor": 3}})["monitor"] == "loss"
    assert build(epochs=no_val, meta={"options": "val_auc"})["monitor"] == "loss"
    assert build(epochs=no_val, meta={"options": {"monitor": ["val_auc"]}})["monitor"] == "loss"
    summary = build(epochs=[{"epoch": 0, "acc": 0.5}], meta={})
    assert (summary["monitor"], summary["best_epoch"]) == (None, None)
    assert summary["metrics"]["acc"]["direction"] == "max"


@pytest.mark.parametrize(("status", "duration"), [
    ({"started": 100.0, "ended": 160.5, "heartbeat": 170.0}, 60.5),
    ({"started": 100, "heartbeat": 170}, 70.0),  # running: up to the latest heartbeat
    ({"started": 100.0, "ended": None, "heartbeat": 130.0}, 30.0),
    ({"started": 100.0, "ended": 90.0}, 0.0),  # a clock that went back
    ({"started": 100.0}, None),
    ({"ended": 160.0}, None),
    ({"started": True, "ended": 160.0}, None),
    ({"started": "100", "ended": 160.0}, None),
])
def test_duration_runs_from_start_to_end_or_heartbeat(status, duration):
    assert build(status=status)["duration_s"] == duration


def test_a_summary_without_model_or_with_a_malformed_one():
    assert build(meta={"model": "mlp"})["model"] == {}
    assert build(meta={"model": {"name": "x"}})["model"] == {"name": "x"}
    assert build(meta={})["name"] is None and build(meta={})["metrics"]["auc"]["direction"] == "max"


def nan_event(metric, value, step, epoch) -> dict:
    return {"kind": "nan", "step": step, "epoch": epoch, "data": {"metric": metric, "value": value}}


def test_an_early_stop_after_a_nan_is_a_nan_guard_and_the_first_nan_is_the_divergence():
    events = [nan_event("val_auc", NAN, 35, 3), nan_event("val_auc", INF, 38, 3),
              {"kind": "early_stop", "epoch": 9, "data": {"epoch": 3}}]
    summary = build(events=events)
    assert summary["stop"] == {"epoch": 3, "by_nan_guard": True}
    assert summary["divergence"] == {"metric": "val_auc", "value": "nan", "step": 35, "epoch": 3}


def test_an_early_stop_in_another_epoch_is_not_a_nan_guard():
    events = [nan_event("val_auc", NAN, 35, 2), {"kind": "early_stop", "epoch": 3, "data": {}}]
    summary = build(events=events)
    assert summary["stop"] == {"epoch": 3, "by_nan_guard": False}  # the event's own epoch when data has none
    assert summary["divergence"] is None  # a metric that is not a loss: training did not break
    assert build(events=[{"kind": "early_stop", "epoch": 3, "data": "x"}])["stop"] == {"epoch": 3,
                                                                                      "by_nan_guard": False}


def test_a_loss_that_became_nan_is_the_divergence():
    events = [nan_event("val_auc", NAN, 10, 1), nan_event("val_loss", -INF, 12.0, 1.0), nan_event("loss", 5, 13, 1),
              {"kind": "nan", "step": "x", "epoch": None, "data": {"value": "high"}}]
    summary = build(events=events)
    assert summary["divergence"] == {"metric": "val_loss", "value": "-inf", "step": 12, "epoch": 1}
    assert summary["stop"] is None
    unnamed = build(events=[{"kind": "nan", "step": 4, "data": {"metric": "", "value": None}},
                            {"kind": "early_stop", "epoch": None, "data": {"epoch": None}}])
    assert unnamed["stop"] is None  # an early stop without an epoch says nothing usable
    assert unnamed["divergence"] is None
    guarded = build(events=[{"kind": "nan", "step": 4, "epoch": 2, "data": {"value": "high"}},
                            {"kind": "early_stop", "epoch": 2}])
    assert guarded["divergence"] == {"metric": "a metric", "value": "nan", "step": 4, "epoch": 2}


def test_the_first_loss_divergence_event_wins():
    events = [
        {"kind": "divergence", "step": 7, "epoch": 0, "data": {"metric": "val_auc", "value": NAN}},  # not a loss
        {"kind": "divergence", "step": 8, "epoch": 0, "data": {"metric": "grad", "value": 50.0, "rule": "spike"}},
        {"kind": "divergence", "step": 9, "epoch": 0, "data": {"metric": "loss", "value": NAN}},
        nan_event("loss", NAN, 9, 0),
    ]
    summary = build(events=events)
    assert summary["divergence"]["metric"] == "grad" and summary["divergence"]["step"] == 8
    summary = build(events=events[2:] + [{"kind": "divergence", "step": 10, "data": {"metric": "loss", "value": 1.0}}])
    assert summary["divergence"] == divergence_of_event(events[2])


def test_divergence_of_a_well_formed_event():
    record = {"kind": "divergence", "step": 99, "epoch": 4,
              "data": {"metric": "loss", "value": 12.345678, "rule": "spike", "lr": 0.01, "layer": "dense",
                       "best": 1, "evidence": {"source": "gradients"}, "step": 97}}
    assert divergence_of_event(record) == {
        "metric": "loss", "value": "12.35", "step": 97, "epoch": 4, "rule": "spike", "lr": 0.01, "layer": "dense",
        "best": 1.0, "evidence": {"source": "gradients"}}


def test_divergence_of_a_malformed_event():
    record = {"kind": "divergence", "step": 5.0, "epoch": "e",
              "data": {"value": True, "rule": "other", "lr": "x", "layer": 3, "best": False, "evidence": [1]}}
    assert divergence_of_event(record) == {
        "metric": "a metric", "value": "nan", "step": 5, "epoch": None, "rule": "non-finite", "lr": None,
        "layer": None, "best": None, "evidence": None}
    assert divergence_of_event({"step": 3, "data": [1]})["step"] == 3
    assert divergence_of_event({"data": {"value": -INF, "rule": "non-finite"}})["value"] == "-inf"
    assert divergence_of_event({"data": {"value": 3}})["value"] == "3"


def test_encoded_summaries_are_compact_and_read_back():
    summary = {"summary_version": 1, "metrics": {"loss": {"last": NAN}}, "sources": {}, "t": (1, 2)}
    data = encode_summary(summary)
    assert data == b'{"summary_version":1,"metrics":{"loss":{"last":NaN}},"sources":{},"t":[1,2]}'
    decoded = json.loads(data)
    assert math.isnan(decoded["metrics"]["loss"]["last"]) and decoded["t"] == [1, 2]


@pytest.fixture
def written(runs_root) -> str:
    """A finished run (the writer wrote its summary.json)."""
    writer = RunWriter(runs_root, name="written")
    writer.log("epoch", {"epoch": 0, "step": 1, "time": 1.0, "loss": 0.5})
    writer.close("finished")
    return writer.run_dir


def read_with_summary(run_dir: str, body: bytes) -> dict:
    """The summary a fresh reader gives the run once its summary.json holds `body`, where `%s` stands for the
    `sources` of the run's files as they are (so a summary this version reads is taken as current)."""
    paths = {name: os.path.join(run_dir, name) for name in (fmt.EPOCH_FILE, fmt.EVENTS_FILE)}
    sizes = {name: os.path.getsize(path) if os.path.exists(path) else 0 for name, path in paths.items()}
    with open(os.path.join(run_dir, fmt.RUN_SUMMARY_FILE), "wb") as f:
        f.write(body.replace(b"%s", json.dumps(sizes).encode()))
    return RunStore(os.path.dirname(run_dir)).run(os.path.basename(run_dir)).summary


@pytest.mark.parametrize("body", [
    b"{", b"[1]", b"[" * 100_000 + b"]" * 100_000, b"\xff",
    b'{"summary_version":2,"metrics":{},"sources":%s}',  # written by a newer version
    b'{"summary_version":1.5,"metrics":{},"sources":%s}',
    b'{"summary_version":true,"metrics":{},"sources":%s}',
    b'{"summary_version":"1","metrics":{},"sources":%s}',
    b'{"metrics":{},"sources":%s}',
    b'{"summary_version":1,"metrics":[],"sources":%s}',
    b'{"summary_version":1,"metrics":{},"sources":[]}',
    b'{"summary_version":1,"sources":%s}',
])
def test_what_is_not_a_summary_this_version_reads_is_derived_again(written, body):
    summary = read_with_summary(written, body)
    assert summary["name"] == "written" and list(summary) == list(fmt.SUMMARY_FIELDS)  # derived from the streams
    assert summary["metrics"]["loss"]["last"] == 0.5


def test_summaries_this_version_reads(written):
    body = b'{"summary_version":1.0,"name":"from the file","metrics":{},"sources":%s}'
    assert read_with_summary(written, body)["name"] == "from the file"
    assert read_with_summary(written, body.replace(b"1.0", b"0"))["name"] == "from the file"
    assert checked_summary(None) is None


def test_a_summary_is_current_only_for_the_sizes_it_was_made_from():
    summary = {"sources": {fmt.EPOCH_FILE: 10}}
    assert is_current(summary, {fmt.EPOCH_FILE: 10, fmt.EVENTS_FILE: 0})
    assert not is_current(summary, {fmt.EPOCH_FILE: 10, fmt.EVENTS_FILE: 5})
    assert not is_current(summary, {fmt.EPOCH_FILE: 11, fmt.EVENTS_FILE: 0})
    assert is_current({}, {fmt.EPOCH_FILE: 0, fmt.EVENTS_FILE: 0})
    assert not is_current({}, {fmt.EPOCH_FILE: 1})


def lines(*records) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def test_derive_summary_reads_complete_lines_of_both_streams():
    epoch_data = lines({"epoch": 0, "step": 5, "time": 1.0, "loss": 0.5}, {"epoch": 1, "step": 10, "loss": 0.25})
    epoch_data += b'not json\n[1]\n\n{"epoch": 2, "step": 15, "loss": 0.1'  # a torn last line is not a record
    events_data = lines(nan_event("loss", NAN, 11, 1), {"kind": "early_stop", "epoch": 1})
    summary = derive_summary({"name": "old"}, {"status": "finished"}, epoch_data, events_data)
    assert summary["sources"] == {"epoch.jsonl": len(epoch_data), "events.jsonl": len(events_data)}
    assert summary["epochs_logged"] == 2 and summary["last_epoch"] == {"epoch": 1, "step": 10, "time": None}
    assert summary["metrics"] == {"loss": {"last": 0.25, "best": 0.25, "best_epoch": 1, "direction": "min"}}
    assert summary["stop"] == {"epoch": 1, "by_nan_guard": True}
    assert summary["divergence"] == {"metric": "loss", "value": "nan", "step": 11, "epoch": 1}
    assert summary["name"] == "old" and summary["status"] == "finished" and summary["progress"] == {}
    empty = derive_summary({}, {}, b"", b"")
    assert empty["epochs_logged"] == 0 and empty["sources"] == {"epoch.jsonl": 0, "events.jsonl": 0}
    assert empty["last_epoch"] is None and empty["metrics"] == {}


def test_an_event_line_naming_several_summary_kinds_is_read_once_and_the_lines_after_it_still():
    """Only lines that name a summary kind are parsed: a line that names two (a value that is the string
    "divergence") is read once, and the lines after it are still looked at."""
    quoting = nan_event("val_auc", NAN, 7, 0)
    quoting["data"]["see"] = ["divergence", "early_stop"]
    events_data = lines({"kind": "lr_change", "epoch": 0, "step": 3}, quoting,
                        {"kind": "checkpoint", "epoch": 1, "step": 9}, nan_event("loss", NAN, 12, 2),
                        {"kind": "early_stop", "epoch": 2, "data": {"epoch": 2}})
    summary = derive_summary({}, {"status": "finished"}, b"", events_data)
    assert summary["stop"] == {"epoch": 2, "by_nan_guard": True}
    assert summary["divergence"] == {"metric": "loss", "value": "nan", "step": 12, "epoch": 2}
