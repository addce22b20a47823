"""Reader behaviours pinned at their edges: when a live run turns stale, and what counts as inside the runs root.

docs/testing.md lists the mutation each test was shown to catch.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from run_factory import make_run

from kerascope import RunStore, RunWriter
from kerascope.monitor import format as fmt
from kerascope.monitor.format import inside  # the confinement check itself: every reader path goes through it
from kerascope.monitor.reader import MAX_RECORDS
from kerascope.monitor.summary import SummaryBuilder, derive_summary


def age_heartbeat(run_dir: str, age_s: float) -> None:
    path = os.path.join(run_dir, "status.json")
    with open(path, encoding="utf-8") as f:
        status = json.load(f)
    status["heartbeat"] = time.time() - age_s
    with open(path, "w", encoding="utf-8") as f:
        json.dump(status, f)


@pytest.mark.parametrize(("age_s", "expected"), [(0.0, "running"), (5.0, "running"), (25.0, "running"),
                                                 (35.0, "stale"), (3600.0, "stale")])
def test_a_running_run_turns_stale_only_after_30_s_without_a_heartbeat(runs_root, age_s, expected):
    writer = RunWriter(runs_root, "live", flush_interval=3600.0)  # its loop never rewrites status.json here
    try:
        age_heartbeat(writer.run_dir, age_s)
        run = RunStore(runs_root).run(writer.run_id)
        assert run.status == expected
        assert (run.reason or "").startswith("no heartbeat for over 30 s") == (expected == "stale")
    finally:
        writer.close()


@pytest.mark.parametrize(("root", "path", "expected"), [
    ("/data/runs", "/data/runs", True),
    ("/data/runs", "/data/runs/a", True),
    ("/data/runs/", "/data/runs/a/b.json", True),
    ("/data/runs", "/data/runs-private", False),  # a sibling sharing the root's prefix
    ("/data/runs", "/data/runs-private/a/run.json", False),
    ("/data/runs", "/data/runsx", False),
    ("/data/runs", "/data/run", False),
    ("/data/runs", "/data", False),
    ("/data/runs", "/data/runs/../runs-private/a", False),
])
def test_inside_the_root_means_below_it_not_sharing_its_prefix(root, path, expected):
    assert inside(root, path) is expected


def test_a_sibling_directory_sharing_the_roots_prefix_stays_outside(tmp_path):
    root = tmp_path / "runs"
    private = tmp_path / "runs-private"
    root.mkdir()
    private.mkdir()
    secret_run = make_run(private, "secret")
    kept = make_run(root, "kept")
    (private / "summary.txt").write_text("SECRET SUMMARY")
    (private / "run.json").write_text(json.dumps({"format_version": 1, "name": "SECRET"}))
    os.symlink(secret_run, root / "escape")  # a run directory that is really the sibling's
    linked = make_run(root, "linked summary")
    os.replace(os.path.join(linked, "model", "summary.txt"), os.path.join(linked, "model", "old-summary.txt"))
    os.symlink(private / "summary.txt", os.path.join(linked, "model", "summary.txt"))
    linked_meta = make_run(root, "linked meta")
    os.replace(os.path.join(linked_meta, "run.json"), os.path.join(linked_meta, "old-run.json"))
    os.symlink(private / "run.json", os.path.join(linked_meta, "run.json"))

    store = RunStore(root)
    assert sorted(run.name for run in store.runs()) == sorted(["kept", "linked summary", os.path.basename(linked_meta)])
    with pytest.raises(KeyError):
        store.run("escape")
    broken = store.run(os.path.basename(linked_meta))
    assert broken.status == "broken" and "outside the runs root" in broken.reason
    run = store.run(os.path.basename(linked))
    assert run.status == "finished" and run.model_summary() == ""
    with pytest.raises(PermissionError):
        run.file_path("model/summary.txt")
    assert run.file_path("model/old-summary.txt").endswith("old-summary.txt")
    assert store.run(os.path.basename(kept)).model_summary().startswith('Model: "mlp"')


def test_a_long_backlog_read_at_once_keeps_every_row(runs_root):
    # More rows in one read than the table's first allocation (and than twice it): a run opened late.
    writer = RunWriter(runs_root, "backlog", flush_interval=3600.0)
    for step in range(1, 3001):
        writer.log("batch", {"step": step, "epoch": 0, "batch": step - 1, "time": float(step), "loss": 1.0 / step})
    writer.close()
    frame = RunStore(runs_root).run(writer.run_id).batch_metrics()
    assert frame["step"].tolist() == list(range(1, 3001))
    assert frame["loss"].tolist() == [1.0 / step for step in range(1, 3001)]


def test_a_huge_events_file_keeps_its_newest_events_and_counts_the_rest(runs_root):
    """More than one read slice (32 MB) of events: the newest MAX_RECORDS["events"] are kept, every older line is
    counted in the truncation note, whether it was parsed or only counted."""
    run_dir = make_run(runs_root, "many events", epochs=1, steps_per_epoch=1)
    path = os.path.join(run_dir, fmt.EVENTS_FILE)
    with open(path, "rb") as f:
        written = f.read().count(b"\n")
    filler = 300_000
    with open(path, "ab") as f:
        f.write(b"".join(json.dumps({"time": 1.0, "step": step, "epoch": 0, "kind": "warning",
                                     "message": "m" * 100}).encode() + b"\n" for step in range(filler)))
    run = RunStore(runs_root).runs()[0]
    events = run.events()
    kept = MAX_RECORDS["events"]
    assert len(events) == kept
    assert list(events["step"].iloc[[0, -1]]) == [filler - kept, filler - 1]
    assert run.problems == [f"events.jsonl: truncated: {written + filler - kept:,} more records not kept "
                            f"(the newest {kept:,} are)"]


def test_a_summary_derived_from_events_reads_the_same_records_as_a_full_parse():
    """derive_summary parses only the event lines that can change a summary: the result equals folding every
    record, whatever surrounds those lines (filler, a kind named in a message, a malformed line)."""
    records = [
        {"time": 1.0, "step": 1, "epoch": 0, "kind": "warning", "message": 'the word "nan" in a message'},
        {"time": 2.0, "step": 5, "epoch": 0, "kind": "nan", "message": "loss is nan",
         "data": {"metric": "val_loss", "value": float("nan")}},
        {"time": 3.0, "step": 9, "epoch": 1, "kind": "nan", "message": "loss is inf",
         "data": {"metric": "loss", "value": float("inf")}},
        {"time": 4.0, "step": 9, "epoch": 1, "kind": "divergence", "message": "loss spiked",
         "data": {"metric": "loss", "rule": fmt.DIVERGENCE_NONFINITE, "step": 9, "lr": 0.5, "layer": "dense"}},
        {"time": 5.0, "step": 12, "epoch": 2, "kind": "early_stop", "message": "stopped",
         "data": {"epoch": 2}},
    ]
    lines = [json.dumps(record) for record in records]
    data = "\n".join([lines[0], "{not json", *lines[1:3], json.dumps({"kind": "phase"}), *lines[3:]]).encode()
    expected = SummaryBuilder()
    for record in records:
        expected.add_event(record)
    meta, status = {"name": "x"}, {"status": "finished"}
    derived = derive_summary(meta, status, b"", data + b"\n")
    folded = expected.summary(meta, status, derived["sources"])
    assert {**derived, "time": None} == {**folded, "time": None}
    assert derived["divergence"]["layer"] == "dense" and derived["stop"] == {"epoch": 2, "by_nan_guard": False}
