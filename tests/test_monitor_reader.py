"""Run (monitor/reader.py) on known files: exact values of every reader, the overview and its reasons, run.json and
streams replaced while a run is open, caps with their truncation notes, and what reading skipped."""

from __future__ import annotations

import json
import math
import os
import pathlib
import time

import numpy as np
import pytest

from kerascope import RunWriter
from kerascope.monitor import Run, reader
from kerascope.monitor import format as fmt
from kerascope.monitor.run_info import Divergence, MetricSummary, RunProgress, Stop


def make(root, run_id: str = "r", meta: dict | None = None, status: dict | None = None, **files) -> pathlib.Path:
    """A run directory written by hand: run.json, status.json, and `files` ({"epoch.jsonl": lines or text})."""
    path = pathlib.Path(root) / run_id
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": 1, "name": "by hand", "created": 100.0} if meta is None else meta
    (path / "run.json").write_text(json.dumps(meta))
    (path / "status.json").write_text(json.dumps({"status": "finished"} if status is None else status))
    for name, content in files.items():
        target = path / name.replace("__", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, list):
            content = "".join(json.dumps(record) + "\n" for record in content)
        target.write_text(content) if isinstance(content, str) else target.write_bytes(content)
    return path


def replace(path: pathlib.Path, text: str) -> None:
    """Replace a file atomically (a new inode), as the writers do."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def summary_json(path: pathlib.Path, **fields) -> None:
    """A summary.json that is current for a run whose epoch.jsonl and events.jsonl are empty or missing."""
    summary = {"summary_version": 1, "metrics": {}, "sources": {"epoch.jsonl": 0, "events.jsonl": 0}, **fields}
    (path / "summary.json").write_text(json.dumps(summary))


# -- run.json ----------------------------------------------------------------------------------------------------


def test_run_json_replaced_while_the_run_is_open_is_read_again_at_refresh(runs_root):
    writer = RunWriter(runs_root, name="first name", meta={"hparams": {"lr": 0.1}}, flush_interval=3600)
    run = Run(writer.run_dir)
    assert (run.name, run.hparams) == ("first name", {"lr": 0.1})
    assert run.refresh() is False
    version = run.version
    writer.update_meta(name="renamed", hparams={"lr": 0.01}, tags=["tuned"])
    assert run.refresh() is True and run.version > version
    assert (run.name, run.hparams, run.tags) == ("renamed", {"lr": 0.01}, ["tuned"])
    version = run.version
    assert run.refresh() is False and run.version == version  # read once per change
    writer.close()


def test_run_json_rewritten_with_the_same_content_is_no_news(runs_root):
    path = make(runs_root)
    run = Run(str(path))
    version = run.version
    replace(path / "run.json", (path / "run.json").read_text())
    assert run.refresh() is False and run.version == version and run.name == "by hand"


def test_run_json_replaced_by_a_newer_format_breaks_the_open_run_and_heals_when_restored(runs_root):
    path = make(runs_root)
    run = Run(str(path))
    good = (path / "run.json").read_text()
    replace(path / "run.json", json.dumps({"format_version": 99, "name": "future"}))
    assert run.refresh() is True
    assert run.status == "broken"
    assert run.reason == "written in run format 99; this Kerascope reads formats up to 2: upgrade Kerascope to open it"
    replace(path / "run.json", good)
    assert run.refresh() is True and run.status == "finished" and run.error is None and run.reason is None


def test_a_new_monitored_metric_in_run_json_moves_the_best_epoch(runs_root):
    epochs = [{"epoch": 0, "step": 10, "loss": 0.9, "val_loss": 0.5, "val_accuracy": 0.9},
              {"epoch": 1, "step": 20, "loss": 0.4, "val_loss": 0.6, "val_accuracy": 0.95}]
    path = make(runs_root, **{"epoch.jsonl": epochs})
    run = Run(str(path))
    assert run.best_epoch == 0  # val_loss, lowest at epoch 0
    replace(path / "run.json", json.dumps({"format_version": 1, "options": {"monitor": "val_accuracy"}}))
    run.refresh()
    assert run.best_epoch == 1


@pytest.mark.parametrize(("content", "error"), [
    (None, "run.json is missing: not a run directory, or its creation was interrupted"),
    ("[1, 2]", "run.json does not hold a JSON object"),
    ('{"name": "x"}', "run.json has no integer format_version (found None)"),
    ('{"format_version": true}', "run.json has no integer format_version (found True)"),
    ('{"format_version": "1"}', "run.json has no integer format_version (found '1')"),
    ('{"format_version": 3}', "written in run format 3; this Kerascope reads formats up to 2: upgrade Kerascope to "
                              "open it"),
    ('{"format_version": 1', "run.json is not valid JSON (Expecting ',' delimiter: line 1 column 21 (char 20))"),
])
def test_an_unreadable_run_json_says_why_and_the_run_is_broken(runs_root, content, error):
    path = make(runs_root)
    if content is None:
        (path / "run.json").unlink()
    else:
        (path / "run.json").write_text(content)
    run = Run(str(path))
    assert (run.error, run.status, run.reason) == (error, "broken", error)
    assert run.meta == {} and run.name == "r"


def test_run_json_that_is_a_directory_is_unreadable_with_the_os_reason(runs_root):
    path = make(runs_root)
    (path / "run.json").unlink()
    (path / "run.json").mkdir()
    assert Run(str(path)).error == "run.json unreadable: Is a directory"


def test_format_2_is_read_and_the_name_falls_back_to_the_directory(runs_root):
    for run_id, name in (("a", ""), ("b", 7), ("c", None)):
        path = make(runs_root, run_id, meta={"format_version": 2, "name": name})
        run = Run(str(path))
        assert (run.error, run.name) == (None, run_id)
    assert repr(Run(str(make(runs_root, "d")))) == "Run('d', name='by hand', status='finished')"


def test_created_comes_from_run_json_else_from_the_directory(runs_root):
    assert Run(str(make(runs_root, "a"))).created == 100.0
    path = make(runs_root, "b", meta={"format_version": 1, "created": "yesterday"})
    os.utime(path, (1234.5, 1234.5))
    assert Run(str(path)).created == 1234.5
    gone = Run(str(runs_root / "never-created"))
    assert gone.created == 0.0


def test_logdir_defaults_to_the_parent_and_paths_are_absolute(runs_root, monkeypatch):
    make(runs_root, "r")
    monkeypatch.chdir(runs_root)
    run = Run("r")
    assert (run.id, run.path, run.logdir) == ("r", str(runs_root / "r"), str(runs_root))
    assert Run("r", str(runs_root.parent)).logdir == str(runs_root.parent)


# -- status.json and the overview ---------------------------------------------------------------------------------


def test_status_json_is_read_again_only_when_replaced(runs_root):
    path = make(runs_root, status={"status": "running", "heartbeat": time.time(), "epoch": 1, "epochs": 5})
    run = Run(str(path))
    assert run.status == "running" and run.progress.epoch == 1
    replace(path / "status.json", json.dumps({"status": "failed", "reason": "OOM", "epoch": 2, "epochs": 5}))
    assert (run.status, run.reason, run.progress.epoch) == ("failed", "OOM", 2)
    (path / "status.json").unlink()
    assert (run.status, run.reason) == ("broken", "status.json is missing")
    (path / "status.json").write_text("[]")
    assert run.status_info == {}
    assert run.reason == "status.json has no valid status (found None; expected one of running, finished, failed, " \
                         "interrupted)"
    (path / "status.json").write_text("{")
    assert run.status == "broken"
    assert run.reason == "status.json unreadable: status.json is not valid JSON (Expecting property name enclosed in " \
                         "double quotes: line 1 column 2 (char 1))"


@pytest.mark.parametrize(("status", "expected"), [
    ({"status": "running", "heartbeat": "soon"}, "stale"),
    ({"status": "running"}, "stale"),
    ({"status": "done"}, "broken"),
    ({"status": "interrupted", "reason": "Ctrl-C"}, "interrupted"),
])
def test_statuses_derived_from_status_json(runs_root, status, expected):
    assert Run(str(make(runs_root, status=status))).status == expected


def test_the_overview_reads_progress_metrics_and_epochs_from_the_summary(runs_root):
    path = make(runs_root, status={"status": "finished", "epoch": 2, "epochs": 3, "step": 30, "steps_per_epoch": 10,
                                   "started": 10.0, "ended": 70.0})
    summary_json(path, best_epoch=1, last_epoch={"epoch": 2, "step": 30},
                 metrics={"val_auc": {"last": 0.8, "best": 0.9, "best_epoch": 1},
                          "loss": {"last": "nan", "best": 0.1, "best_epoch": 0, "direction": "min"},
                          "broken": [1, 2]})
    view = Run(str(path)).overview()
    assert (view.status, view.reason, view.divergence, view.stop) == ("finished", None, None, None)
    assert view.progress == RunProgress(epoch=2, epochs=3, step=30, steps_per_epoch=10, started=10.0, ended=70.0)
    assert (view.best_epoch, view.last_epoch, view.last_step) == (1, 2, 30)
    assert view.metrics == {"val_auc": MetricSummary(0.8, 0.9, 1, "max"), "loss": MetricSummary(None, 0.1, 0, "min")}


@pytest.mark.parametrize("fields", [{"last_epoch": [2], "metrics": {}}, {"last_epoch": None, "metrics": {}}])
def test_malformed_summary_fields_read_as_none(runs_root, fields):
    path = make(runs_root)
    summary_json(path, **fields, best_epoch="one", divergence=[1], stop={"epoch": "x"})
    view = Run(str(path)).overview()
    assert (view.best_epoch, view.last_epoch, view.last_step, view.divergence, view.stop) == (None,) * 5
    assert view.metrics == {}


def test_a_divergence_read_with_every_field(runs_root):
    path = make(runs_root)
    divergence = {"metric": "loss", "value": "nan", "step": 1234, "epoch": 2, "rule": "non-finite", "lr": 0.01,
                  "layer": "dense_1", "best": 0.25, "evidence": {"source": "gradients"}}
    summary_json(path, divergence=divergence, stop={"epoch": 2, "by_nan_guard": True})
    run = Run(str(path))
    assert run.divergence == Divergence("loss", "nan", 1234, 2, "non-finite", 0.01, "dense_1", 0.25,
                                        {"source": "gradients"})
    assert run.stop == Stop(2, by_nan_guard=True)
    assert (run.overview().divergence, run.overview().stop) == (run.divergence, run.stop)
    assert run.status == "diverged"
    assert run.reason == ("loss became NaN at step 1,234 (epoch 3); a NaN guard (TerminateOnNaN) stopped training; "
                          "first layer to break: dense_1")


def test_a_divergence_with_malformed_fields_reads_them_as_defaults(runs_root):
    path = make(runs_root, status={"status": "interrupted"})
    summary_json(path, divergence={"metric": "", "value": None, "step": "x", "epoch": 1.5, "rule": "other",
                                   "lr": "fast", "layer": 3, "best": "low", "evidence": [1]},
                 stop={"epoch": 4, "by_nan_guard": "yes"})
    run = Run(str(path))
    assert run.divergence == Divergence("a metric", "nan", None, None, "non-finite", None, None, None, None)
    assert run.stop == Stop(4, by_nan_guard=False)
    assert (run.status, run.reason) == ("diverged", "a metric became NaN at an unknown step")


@pytest.mark.parametrize(("divergence", "reason"), [
    ({"metric": "val_loss", "value": "9.5", "step": 7, "rule": "spike", "best": 0.123456},
     "val_loss rose to 9.5 (its best was 0.1235) at step 7"),
    ({"metric": "loss", "value": "9.5", "step": 7, "epoch": 0, "rule": "spike"},
     "loss became 9.5 at step 7 (epoch 1)"),
    ({"metric": "loss", "value": "-inf", "rule": "non-finite", "best": 0.5}, "loss became -inf at an unknown step"),
])
def test_the_reason_of_a_diverged_run_says_what_broke_and_where(runs_root, divergence, reason):
    path = make(runs_root)
    summary_json(path, divergence=divergence, stop={"epoch": 0, "by_nan_guard": False})
    assert Run(str(path)).reason == reason


@pytest.mark.parametrize(("status", "reason"), [("running", None), ("failed", "OOM")])
def test_only_finished_or_interrupted_runs_read_as_diverged(runs_root, status, reason):
    path = make(runs_root, status={"status": status, "heartbeat": time.time() + 60, "reason": reason})
    summary_json(path, divergence={"metric": "loss", "value": "nan"})
    run = Run(str(path))
    assert (run.status, run.reason) == (status, reason)
    assert run.overview().divergence == Divergence("loss", "nan", None, None)


def test_a_stale_run_says_its_training_process_probably_died(runs_root):
    run = Run(str(make(runs_root, status={"status": "running", "heartbeat": time.time() - 31})))
    assert run.reason == "no heartbeat for over 30 s: the training process probably died"


def test_overview_without_recheck_trusts_what_was_read(runs_root):
    path = make(runs_root, status={"status": "running", "heartbeat": time.time() + 60})
    run = Run(str(path))
    assert run.overview(recheck=False).status == "running"  # never read before: read now
    replace(path / "status.json", json.dumps({"status": "failed"}))
    assert run.overview(recheck=False).status == "running"
    assert run.overview().status == "failed"


# -- the summary ---------------------------------------------------------------------------------------------------


def test_summary_json_is_used_while_current_and_derived_once_streams_grew(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.log("epoch", {"epoch": 0, "step": 5, "time": 1.0, "loss": 0.5})
    writer.flush()
    run = Run(writer.run_dir)
    assert run.summary["last_epoch"] == {"epoch": 0, "step": 5, "time": 1.0}
    written = json.loads((pathlib.Path(writer.run_dir) / "summary.json").read_text())
    assert run.summary == written  # as written, not derived again
    with open(os.path.join(writer.run_dir, "epoch.jsonl"), "a") as f:  # appended, summary.json not rewritten yet
        f.write(json.dumps({"epoch": 1, "step": 10, "time": 2.0, "loss": 0.25}) + "\n")
    assert run.summary["last_epoch"] == {"epoch": 1, "step": 10, "time": 2.0}
    assert run.summary["sources"]["epoch.jsonl"] == os.path.getsize(os.path.join(writer.run_dir, "epoch.jsonl"))
    assert run.overview().metrics["loss"] == MetricSummary(0.25, 0.25, 1, "min")
    writer.close()


def test_an_unreadable_summary_json_is_derived_from_the_streams(runs_root):
    path = make(runs_root, **{"epoch.jsonl": [{"epoch": 0, "step": 3, "loss": 2.0}], "summary.json": "{"})
    assert Run(str(path)).overview().last_step == 3
    (path / "summary.json").write_text(json.dumps({"summary_version": 1, "metrics": [], "sources": {}}))
    assert Run(str(path)).overview().metrics == {"loss": MetricSummary(2.0, 2.0, 0, "min")}


def test_a_summary_derived_without_streams_summarized_nothing(runs_root):
    summary = Run(str(make(runs_root))).summary
    assert summary["sources"] == {"epoch.jsonl": 0, "events.jsonl": 0} and summary["epochs_logged"] == 0


def test_summary_key_names_the_three_files_a_summary_depends_on(runs_root):
    path = make(runs_root, **{"epoch.jsonl": "\n"})
    run = Run(str(path))
    st = os.stat(path / "epoch.jsonl")
    assert run.summary_key() == (None, (1, st.st_mtime_ns, st.st_ino), None)


def test_a_summary_stream_that_links_outside_the_root_is_not_read(tmp_path, runs_root):
    path = make(runs_root)
    (tmp_path / "secret.jsonl").write_text(json.dumps({"epoch": 0, "step": 1, "loss": 1.0}) + "\n")
    (path / "epoch.jsonl").symlink_to(tmp_path / "secret.jsonl")
    (path / "events.jsonl").mkdir()
    run = Run(str(path))
    assert run.overview().metrics == {}
    assert run.summary["sources"] == {"epoch.jsonl": 0, "events.jsonl": 0}  # what was summarized: nothing
    assert run.problems == ["epoch.jsonl: a link that leads outside the runs root: not read",
                            "events.jsonl: Is a directory"]


# -- streams -------------------------------------------------------------------------------------------------------


BATCHES = [{"step": 1, "epoch": 0, "batch": 0, "time": 10.0, "loss": 0.5},
           {"step": 2, "epoch": 0, "batch": 1, "time": 11.0, "loss": 0.25, "lr": 0.1}]


def test_numeric_streams_read_as_frames_with_their_documented_columns_first(runs_root):
    path = make(runs_root, **{"batch.jsonl": BATCHES, "epoch.jsonl": [{"val_loss": 1.5, "epoch": 0, "step": 2}],
                              "system.jsonl": [{"cpu_percent": 50.0, "time": 3.0}]})
    run = Run(str(path))
    batch = run.batch_metrics()
    assert list(batch.columns) == ["step", "epoch", "batch", "time", "loss", "lr"]
    assert batch["loss"].tolist() == [0.5, 0.25] and math.isnan(batch["lr"][0]) and batch["lr"][1] == 0.1
    epoch = run.epoch_metrics()
    assert list(epoch.columns) == ["epoch", "step", "time", "val_loss"]
    assert epoch.iloc[0].tolist()[:2] == [0, 2] and epoch["val_loss"].tolist() == [1.5]
    assert run.system_metrics().to_dict("list") == {"time": [3.0], "cpu_percent": [50.0]}
    arrays = run.arrays("batch")
    assert arrays["step"].tolist() == [1, 2] and not arrays["step"].flags.writeable


def test_record_streams_read_as_frames_with_their_documented_columns_first(runs_root):
    events = [{"time": 1.0, "step": 0, "epoch": 0, "kind": "phase", "message": "fit 1",
               "data": {"phase": 1, "epochs": 3, "trainable_params": 10}},
              {"time": 2.0, "step": 5, "epoch": 1, "kind": "lr_change", "message": "lr", "data": {"lr": 0.1}},
              {"time": 3.0, "step": 9, "epoch": 2, "kind": "phase", "message": "fit 2", "data": "not a dict"}]
    layers = [{"phase": 1, "layers": [{"name": "dense", "class": "Dense", "params": 10}, "junk"]},
              {"phase": 2, "layers": "junk"}, {"phase": 2, "layers": 5},
              {"phase": 3, "layers": [{"name": "out", "class": "Dense", "params": 3, "trainable": False}]}]
    path = make(runs_root, **{"events.jsonl": events, "model__layers.jsonl": layers,
                              "activations.jsonl": [{"layer": "dense", "mean": 0.5, "step": 1}],
                              "weights.jsonl": [{"weight": "kernel", "norm": 2.0}],
                              "gradients.jsonl": [{"weight": "kernel", "global_norm": 3.0, "snapshot": True}]})
    run = Run(str(path))
    frame = run.events()
    assert list(frame.columns) == ["time", "step", "epoch", "kind", "message", "data"]
    assert frame["kind"].tolist() == ["phase", "lr_change", "phase"]
    assert run.events() is frame  # cached until something new is read
    phases = run.phases()
    assert list(phases.columns) == ["step", "epoch", "time", "phase", "epochs", "trainable_params"]
    assert phases.fillna(-1).values.tolist() == [[0, 0, 1.0, 1, 3, 10], [9, 2, 3.0, -1, -1, -1]]
    table = run.layers()
    assert list(table.columns)[:6] == ["phase", "name", "class", "output_shape", "params", "trainable"]
    assert table[["phase", "name", "params"]].values.tolist() == [[1, "dense", 10], [3, "out", 3]]
    assert table["trainable"].tolist()[1] is False
    assert run.activations()[["layer", "mean", "step"]].values.tolist() == [["dense", 0.5, 1]]
    assert run.activations().columns[0] == "step"
    assert run.weights()["norm"].tolist() == [2.0] and run.weights().columns[0] == "step"
    gradients = run.gradients()
    assert gradients["global_norm"].tolist() == [3.0] and gradients["snapshot"].tolist() == [True]


def test_appended_records_are_read_incrementally_and_torn_lines_wait_for_their_end(runs_root):
    path = make(runs_root, **{"events.jsonl": [{"kind": "a"}]})
    run = Run(str(path))
    assert run.events()["kind"].tolist() == ["a"]
    with open(path / "events.jsonl", "a") as f:
        f.write('{"kind": "b"}\n{"kind": ')
    assert run.refresh(["events"]) is True and run.events()["kind"].tolist() == ["a", "b"]
    assert run.refresh(["events"]) is False
    with open(path / "events.jsonl", "a") as f:
        f.write('"c"}\n')
    assert run.events()["kind"].tolist() == ["a", "b", "c"] and run.problems == []


def test_malformed_lines_are_counted_in_one_note_per_stream(runs_root):
    path = make(runs_root, **{"epoch.jsonl": '{"epoch": 0}\nnot json\n[1]\n', "events.jsonl": "oops\n"})
    run = Run(str(path))
    assert run.epoch_metrics()["epoch"].tolist() == [0]
    assert run.problems == ["epoch.jsonl: 2 malformed line(s) skipped"]
    with open(path / "epoch.jsonl", "a") as f:
        f.write('{"epoch": 1}\n{broken\n')
    run.refresh()
    assert run.problems == ["epoch.jsonl: 3 malformed line(s) skipped", "events.jsonl: 1 malformed line(s) skipped"]


def test_a_replaced_stream_is_read_from_its_start_and_forgets_the_old_files_notes(runs_root, monkeypatch):
    monkeypatch.setitem(reader.MAX_RECORDS, "events", 3)
    monkeypatch.setitem(reader.MAX_CELLS, "epoch", 3 * 2)  # epoch and step: 3 rows
    path = make(runs_root, **{"events.jsonl": [{"kind": str(i)} for i in range(5)] + ["bad"],
                              "epoch.jsonl": [{"epoch": i, "step": 10 * i} for i in range(4)]})
    run = Run(str(path))
    assert run.events()["kind"].tolist() == ["2", "3", "4"]
    assert run.epoch_metrics()["epoch"].tolist() == [0, 1, 2]
    assert run.problems == ["events.jsonl: truncated: 2 more records not kept (the newest 3 are)",
                            "events.jsonl: 1 malformed line(s) skipped",
                            "epoch.jsonl: truncated: 1 more rows not kept (the first 3 are)"]
    replace(path / "events.jsonl", "".join(f'{{"kind": "new{i}"}}\n' for i in range(4)))
    replace(path / "epoch.jsonl", '{"epoch": 7, "step": 70}\nbad\n')
    assert run.refresh() is True
    assert run.events()["kind"].tolist() == ["new1", "new2", "new3"]
    assert run.epoch_metrics()[["epoch", "step"]].values.tolist() == [[7, 70]]
    assert run.problems == ["epoch.jsonl: 1 malformed line(s) skipped",
                            "events.jsonl: truncated: 1 more records not kept (the newest 3 are)"]


def test_a_truncated_stream_is_read_again(runs_root):
    path = make(runs_root, **{"batch.jsonl": BATCHES})
    run = Run(str(path))
    assert len(run.batch_metrics()) == 2
    with open(path / "batch.jsonl", "r+") as f:
        f.truncate(0)
    assert run.refresh(["batch"]) is True and run.batch_metrics().empty
    (path / "batch.jsonl").unlink()
    assert run.refresh(["batch"]) is True and run.batch_metrics().empty  # deleted: nothing to show
    assert run.refresh(["batch"]) is False


def test_a_stream_that_cannot_be_read_is_a_problem_not_an_error(tmp_path, runs_root):
    path = make(runs_root)
    (path / "batch.jsonl").mkdir()
    (tmp_path / "outside.jsonl").write_text('{"step": 1}\n')
    (path / "system.jsonl").symlink_to(tmp_path / "outside.jsonl")
    run = Run(str(path))
    assert run.batch_metrics().empty and run.system_metrics().empty
    assert run.problems == ["batch.jsonl: Is a directory",
                            "system.jsonl: a link that leads outside the runs root: not read"]


def test_problems_are_listed_once_each_and_at_most_fifty(runs_root, monkeypatch):
    monkeypatch.setattr(reader, "MAX_PROBLEMS", 2)
    path = make(runs_root, **{name: "bad\n" for name in ("batch.jsonl", "epoch.jsonl", "system.jsonl")})
    run = Run(str(path))
    run.refresh()
    run.refresh()
    assert run.problems == ["batch.jsonl: 1 malformed line(s) skipped", "epoch.jsonl: 1 malformed line(s) skipped"]


def test_metric_columns_past_the_cap_are_counted(runs_root, monkeypatch):
    monkeypatch.setattr(reader, "MAX_METRIC_COLUMNS", 5)
    record = {"step": 1, "epoch": 0, "batch": 0, "time": 1.0, "m1": 1.0, "m2": 2.0, "m3": 3.0}
    run = Run(str(make(runs_root, **{"batch.jsonl": [record]})))
    assert list(run.batch_metrics().columns) == ["step", "epoch", "batch", "time", "m1"]
    assert run.problems == ["batch.jsonl: truncated: 2 more columns not kept (the first 5 are)"]


def test_rows_past_the_cell_cap_are_counted_not_parsed(runs_root, monkeypatch):
    monkeypatch.setitem(reader.MAX_CELLS, "system", 2)
    path = make(runs_root, **{"system.jsonl": [{"time": float(i)} for i in range(3)]})
    run = Run(str(path))
    assert run.system_metrics()["time"].tolist() == [0.0, 1.0]
    with open(path / "system.jsonl", "a") as f:
        f.write('{"time": 9.0}\nnot even json\n')
    assert run.system_metrics()["time"].tolist() == [0.0, 1.0]
    assert run.problems == ["system.jsonl: truncated: 3 more rows not kept (the first 2 are)"]


def test_record_streams_keep_their_newest_records_within_their_byte_budget(runs_root, monkeypatch):
    line = json.dumps({"kind": "k", "message": "x" * 40})  # 56 bytes with its newline
    size = len(line) + 1
    monkeypatch.setitem(reader.MAX_RECORD_BYTES, "events", 3 * size)
    path = make(runs_root, **{"events.jsonl": [{"kind": "k", "message": f"{i:02d}" + "x" * 38} for i in range(10)]})
    run = Run(str(path))
    assert [m[:2] for m in run.events()["message"]] == ["07", "08", "09"]
    assert run.problems == ["events.jsonl: truncated: 7 more records not kept (the newest 3 are)"]
    with open(path / "events.jsonl", "a") as f:
        f.write("not a record\n")
        for i in (10, 11):
            f.write(json.dumps({"kind": "k", "message": f"{i}" + "x" * 38}) + "\n")
    assert [m[:2] for m in run.events()["message"]] == ["09", "10", "11"]
    assert run.problems == ["events.jsonl: truncated: 9 more records not kept (the newest 3 are)",
                            "events.jsonl: 1 malformed line(s) skipped"]


def test_a_backlog_read_in_slices_keeps_the_newest_records(runs_root, monkeypatch):
    monkeypatch.setattr(reader, "REFRESH_SLICE_BYTES", 100)
    monkeypatch.setitem(reader.MAX_RECORD_BYTES, "weights", 300)
    records = [{"weight": f"w{i:03d}", "norm": float(100 + i)} for i in range(40)]  # 34 bytes a line: 8 fit
    run = Run(str(make(runs_root, **{"weights.jsonl": records})))
    norms = run.weights()["norm"].tolist()
    assert norms == [float(100 + i) for i in range(32, 40)]
    assert run.problems == ["weights.jsonl: truncated: 32 more records not kept (the newest 8 are)"]


def test_the_real_event_cap_keeps_the_newest_ten_thousand(runs_root):
    lines = "".join(f'{{"kind":"k","step":{i}}}\n' for i in range(10_002))
    run = Run(str(make(runs_root, **{"events.jsonl": lines})))
    steps = run.events()["step"].tolist()
    assert (len(steps), steps[0], steps[-1]) == (10_000, 2, 10_001)
    assert run.problems == ["events.jsonl: truncated: 2 more records not kept (the newest 10,000 are)"]


def test_versions_grow_with_each_read_that_found_something(runs_root):
    path = make(runs_root, **{"epoch.jsonl": [{"epoch": 0}]})
    run = Run(str(path))
    first = run.version
    assert run.refresh(["epoch"]) is True and run.version > first
    second = run.version
    assert run.refresh() is False and run.version == second
    frame = run.epoch_metrics()
    with open(path / "epoch.jsonl", "a") as f:
        f.write('{"epoch": 1}\n')
    assert run.epoch_metrics()["epoch"].tolist() == [0, 1] and run.version > second
    assert frame["epoch"].tolist() == [0]


# -- model files ---------------------------------------------------------------------------------------------------


def test_model_files_and_checkpoints_read_as_written(runs_root):
    png = b"\x89PNG\r\n\x1a\n" + b"rest"
    index = [{"epoch": 0, "step": 10, "path": "checkpoints/e1.keras", "is_best": True}, "junk"]
    path = make(runs_root, **{"model__summary.txt": "Model: mlp\n", "model__graph.dot": "digraph G {}",
                              "model__graph.png": png, "model__config.json": '{"name": "mlp"}',
                              "checkpoints__index.json": json.dumps(index)})
    run = Run(str(path))
    assert run.model_summary() == "Model: mlp\n" and run.model_graph_dot() == "digraph G {}"
    assert run.model_graph_png() == str(path / "model" / "graph.png")
    assert run.model_config() == {"name": "mlp"}
    frame = run.checkpoints()
    assert list(frame.columns) == list(fmt.CHECKPOINT_COLUMNS)
    assert frame[["epoch", "step", "path", "is_best"]].values.tolist() == [[0, 10, "checkpoints/e1.keras", True]]
    (path / "model" / "config.json").write_text("[1]")
    (path / "checkpoints" / "index.json").write_text('{"not": "a list"}')
    assert run.model_config() is None and run.checkpoints().empty
    (path / "checkpoints" / "index.json").write_text("5")
    assert run.checkpoints().empty
    (path / "model" / "config.json").write_text("{")
    (path / "checkpoints" / "index.json").write_text("{")
    assert run.model_config() is None and run.checkpoints().empty
    assert run.problems == ["checkpoints/index.json: index.json is not valid JSON (Expecting property name enclosed "
                            "in double quotes: line 1 column 2 (char 1))"]


def test_frame_of_puts_the_documented_columns_first_and_always_has_them():
    frame = reader.frame_of([{"b": 1, "z": 2}, {"a": 3}], ("a", "b", "c"))
    assert list(frame.columns) == ["a", "b", "c", "z"]
    assert frame["c"].isna().all() and frame["c"].dtype == object
    assert frame.fillna(-1).values.tolist() == [[-1, 1, -1, 2], [3, -1, -1, -1]]


def test_a_run_made_from_its_snapshot_reads_no_file_until_one_changes(runs_root):
    path = make(runs_root, status={"status": "failed", "reason": "OOM"}, **{"epoch.jsonl": [{"epoch": 0, "loss": 1}]})
    snapshot = Run(str(path)).snapshot()
    (path / "run.json").unlink()
    (path / "epoch.jsonl").unlink()
    replace(path / "status.json", json.dumps({"status": "finished"}))
    copy = Run(str(path), snapshot=snapshot)
    assert (copy.name, copy.error) == ("by hand", None)
    view = copy.overview(recheck=False)
    assert (view.status, view.reason) == ("failed", "OOM")
    assert view.metrics == {"loss": MetricSummary(1.0, 1.0, 0, "min")}
    replace(path / "run.json", json.dumps({"format_version": 1, "name": "renamed"}))
    assert copy.refresh() is True and copy.name == "renamed"


def test_arrays_are_views_of_one_growing_table(runs_root):
    path = make(runs_root, **{"batch.jsonl": BATCHES})
    run = Run(str(path))
    assert run.arrays()["loss"].tolist() == [0.5, 0.25]
    with open(path / "batch.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "loss": 0.125}) + "\n")
    arrays = run.arrays("batch")
    np.testing.assert_array_equal(arrays["loss"], [0.5, 0.25, 0.125])


# -- a run on an object store --------------------------------------------------------------------------------------


@pytest.fixture
def remote_run(tmp_path):
    """A finished run uploaded to an in-memory object store (fsspec's memory://), and its root's URL."""
    fsspec = pytest.importorskip("fsspec")
    from kerascope.monitor.remote_writer import RemoteRunWriter

    url = f"memory://kerascope-reader-{tmp_path.name}/runs"
    writer = RemoteRunWriter(url, name="remote", flush_interval=3600, spool_dir=str(tmp_path / "spool"))
    writer.log("epoch", {"epoch": 0, "step": 10, "loss": 0.5, "val_loss": 0.75})
    writer.log("epoch", {"epoch": 1, "step": 20, "loss": 0.25, "val_loss": 0.5})
    writer.event("early_stop", "stopped", step=20, epoch=1)
    writer.close()
    assert writer.wait_uploaded(60)
    yield url, writer.run_id
    fsspec.filesystem("memory").rm(url.removeprefix("memory://").split("/")[0], recursive=True)


def test_a_run_on_an_object_store_reads_like_a_local_one(remote_run):
    from kerascope.monitor import RunStore

    url, run_id = remote_run
    store = RunStore(url)
    (run,) = store.runs()
    assert store.run(run_id) is run
    with pytest.raises(KeyError):
        store.run("missing")
    assert (run.id, run.name, run.status, run.error, run.logdir) == (run_id, "remote", "finished", None, url)
    assert run.path == f"{url}/{run_id}"
    assert run.epoch_metrics()[["epoch", "step", "loss"]].values.tolist() == [[0, 10, 0.5], [1, 20, 0.25]]
    assert run.events()["kind"].tolist() == ["early_stop"]
    assert (run.best_epoch, run.stop) == (1, Stop(1, by_nan_guard=False))
    stamp, version = run.summary_key()
    assert version == run.version and stamp == run._files.stamp("summary.json")
    fsspec = pytest.importorskip("fsspec")
    uploaded = json.loads(fsspec.filesystem("memory").cat(f"{url.removeprefix('memory://')}/{run_id}/summary.json"))
    assert run.summary == uploaded  # as uploaded (its own time), not derived again


@pytest.mark.parametrize("uploaded", [None, b"{", b'{"summary_version": 99}'])
def test_an_object_store_run_without_a_readable_summary_derives_it_from_its_segments(remote_run, uploaded):
    from kerascope.monitor import RunStore

    url, run_id = remote_run
    fsspec = pytest.importorskip("fsspec")
    summary = f"{url.removeprefix('memory://')}/{run_id}/summary.json"
    if uploaded is None:
        fsspec.filesystem("memory").rm(summary)
    else:
        fsspec.filesystem("memory").pipe(summary, uploaded)
    (run,) = RunStore(url).runs()
    assert (run.summary_key()[0] is None) is (uploaded is None)
    view = run.overview()
    assert (view.best_epoch, view.last_epoch, view.last_step, view.stop) == (1, 1, 20, Stop(1, by_nan_guard=False))
    assert view.metrics["val_loss"] == MetricSummary(0.5, 0.5, 1, "min")


def test_run_json_replaced_on_an_object_store_is_read_again_once_listed(remote_run):
    from kerascope.monitor import RunStore

    url, run_id = remote_run
    (run,) = RunStore(url).runs()
    run.refresh()  # its streams, read once
    assert run.refresh() is False
    fsspec = pytest.importorskip("fsspec")
    fsspec.filesystem("memory").pipe(f"{url.removeprefix('memory://')}/{run_id}/run.json",
                                     json.dumps({"format_version": 2, "name": "renamed on the store"}).encode())
    assert run.refresh() is False  # the root's listing is reused for a second: not seen yet
    run._root.snapshot(max_age=0)  # the next listing
    assert run.refresh() is True and run.name == "renamed on the store"


def test_a_record_with_more_names_than_are_counted_says_so(runs_root):
    record = {"step": 1, **{f"m{i}": 1.0 for i in range(100_600)}}
    run = Run(str(make(runs_root, **{"batch.jsonl": [record]})))
    assert len(run.arrays("batch")) == 500  # step and the first 499 metric names
    assert run.problems == ["batch.jsonl: truncated: 100,000+ more columns not kept (the first 500 are)"]


def test_overview_without_recheck_keeps_the_summary_it_read(runs_root):
    path = make(runs_root, **{"epoch.jsonl": [{"epoch": 0, "step": 5}]})
    run = Run(str(path))
    assert run.overview(recheck=False).last_step == 5
    with open(path / "epoch.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 1, "step": 9}) + "\n")
    assert run.overview(recheck=False).last_step == 5
    assert run.overview().last_step == 9


def test_a_line_too_long_to_be_a_record_is_dropped_and_said_so(runs_root, monkeypatch):
    from kerascope.monitor import tail

    monkeypatch.setattr(tail, "MAX_LINE_BYTES", 100)
    path = make(runs_root, **{"batch.jsonl": '{"step": 1}\n{"step": 2, "pad": "' + "x" * 200})  # still written
    run = Run(str(path))
    assert run.batch_metrics()["step"].tolist() == [1]
    with open(path / "batch.jsonl", "a") as f:
        f.write('"}\n{"step": 3}\n')
    assert run.batch_metrics()["step"].tolist() == [1, 3]
    assert run.problems == ["batch.jsonl: a line longer than 100 bytes was dropped"]
    replace(path / "batch.jsonl", '{"step": 9, "pad": "' + "y" * 200)  # said again of the new file
    assert run.batch_metrics().empty
    assert run.problems == ["batch.jsonl: a line longer than 100 bytes was dropped"]


def test_a_numeric_backlog_read_in_slices_keeps_every_row(runs_root, monkeypatch):
    monkeypatch.setattr(reader, "REFRESH_SLICE_BYTES", 64)
    run = Run(str(make(runs_root, **{"batch.jsonl": [{"step": i, "loss": 1 / (i + 1)} for i in range(50)]})))
    assert run.batch_metrics()["step"].tolist() == list(range(50)) and run.problems == []


def test_a_stream_over_both_its_column_and_row_caps_keeps_both_notes(runs_root, monkeypatch):
    monkeypatch.setattr(reader, "MAX_METRIC_COLUMNS", 5)
    monkeypatch.setitem(reader.MAX_CELLS, "batch", 5 * 1024)  # 5 columns of 1,024 rows
    rows = [{"step": i, "epoch": 0, "batch": i, "time": 1.0, "m1": 1.0, "m2": 2.0, "m3": 3.0} for i in range(1030)]
    path = make(runs_root, **{"batch.jsonl": rows})
    run = Run(str(path))
    assert len(run.batch_metrics()) == 1024
    notes = ["batch.jsonl: truncated: 2 more columns not kept (the first 5 are)",
             "batch.jsonl: truncated: 6 more rows not kept (the first 1,024 are)"]
    assert run.problems == notes
    with open(path / "batch.jsonl", "a") as f:
        f.write(json.dumps(rows[0]) + "\n")
    run.refresh()
    assert run.problems == [notes[0], "batch.jsonl: truncated: 7 more rows not kept (the first 1,024 are)"]


def test_record_streams_keep_at_most_their_count_and_their_bytes_together(runs_root, monkeypatch):
    line = json.dumps({"kind": "k", "message": "x" * 40})
    monkeypatch.setitem(reader.MAX_RECORDS, "events", 3)
    monkeypatch.setitem(reader.MAX_RECORD_BYTES, "events", 3 * (len(line) + 1))  # both caps: 3 records
    path = make(runs_root, **{"events.jsonl": [{"kind": "k", "message": f"{i:02d}" + "x" * 38} for i in range(3)]})
    run = Run(str(path))
    assert len(run.events()) == 3 and run.problems == []
    with open(path / "events.jsonl", "a") as f:
        for i in (3, 4):
            f.write(json.dumps({"kind": "k", "message": f"{i:02d}" + "x" * 38}) + "\n")
    assert [m[:2] for m in run.events()["message"]] == ["02", "03", "04"]
    assert run.problems == ["events.jsonl: truncated: 2 more records not kept (the newest 3 are)"]
