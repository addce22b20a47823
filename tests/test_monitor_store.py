"""RunStore and Run: listing, statuses (with stale and broken), versions, incremental refresh, file confinement."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from kerascope import RunStore, RunWriter
from kerascope.monitor import format as fmt

REPO = pathlib.Path(__file__).resolve().parent.parent


def write_run(root, run_id: str, *, created: float = 1.0, status: dict | None = None, **meta) -> pathlib.Path:
    path = pathlib.Path(root) / run_id
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"format_version": 1, "id": run_id, "created": created, **meta}))
    status = {"status": "finished", "heartbeat": time.time()} if status is None else status
    (path / "status.json").write_text(json.dumps(status))
    return path


def test_lists_runs_newest_first_and_skips_what_is_not_a_run(runs_root):
    write_run(runs_root, "old", created=100.0)
    write_run(runs_root, "new", created=300.0)
    write_run(runs_root, "middle", created=200.0)
    (runs_root / ".hidden").mkdir()
    (runs_root / ".hidden" / "run.json").write_text("{}")
    (runs_root / "empty-dir").mkdir()
    (runs_root / "notes.txt").write_text("a file, not a run")
    assert [run.id for run in RunStore(runs_root).runs()] == ["new", "middle", "old"]


def test_picks_up_new_runs_drops_deleted_ones_and_keeps_run_objects(runs_root):
    store = RunStore(runs_root)
    assert store.runs() == []
    first = write_run(runs_root, "a", created=1.0)
    (run_a,) = store.runs()
    write_run(runs_root, "b", created=2.0)
    assert [r.id for r in store.runs()] == ["b", "a"] and store.runs()[1] is run_a
    assert store.run("a") is run_a
    for child in first.iterdir():
        child.unlink()
    first.rmdir()
    assert [r.id for r in store.runs()] == ["b"]
    with pytest.raises(KeyError):
        store.run("a")
    assert RunStore(runs_root / "missing").runs() == []


def test_symlinked_run_dirs_are_listed_only_inside_the_root(tmp_path, runs_root):
    outside = write_run(tmp_path / "elsewhere", "secret", created=5.0)
    inside = write_run(runs_root / "archive", "kept", created=6.0)
    os.symlink(outside, runs_root / "escape")
    os.symlink(inside, runs_root / "alias")
    os.symlink(tmp_path / "nowhere", runs_root / "dangling")
    store = RunStore(runs_root)
    assert [r.id for r in store.runs()] == ["alias"]
    with pytest.raises(KeyError):
        store.run("escape")


@pytest.mark.parametrize(
    ("status", "expected", "reason"),
    [
        ({"status": "running", "heartbeat": "now"}, "stale", "no heartbeat for over 30 s"),
        ({"status": "running", "heartbeat": "fresh"}, "running", None),  # stamped when the test runs
        ({"status": "running", "heartbeat": time.time() - fmt.STALE_AFTER_S - 1}, "stale", "no heartbeat for over"),
        ({"status": "finished", "heartbeat": 0}, "finished", None),
        ({"status": "failed", "heartbeat": 0, "reason": "ValueError: boom"}, "failed", "ValueError: boom"),
        ({"status": "interrupted", "heartbeat": 0, "reason": "KeyboardInterrupt"}, "interrupted", "KeyboardInterrupt"),
        ({"status": "exploded"}, "broken", "status.json has no valid status (found 'exploded'; expected one of"),
        (["not", "an", "object"], "broken", "status.json has no valid status (found None;"),
    ],
)
def test_status_from_status_json(runs_root, status, expected, reason):
    if isinstance(status, dict) and status.get("heartbeat") == "fresh":
        status = {**status, "heartbeat": time.time()}
    write_run(runs_root, "r", status=status)
    run = RunStore(runs_root).run("r")
    assert run.status == expected
    if reason is None:
        assert run.reason is None
    else:
        assert run.reason.startswith(reason)


@pytest.mark.parametrize(
    ("run_json", "reason"),
    [
        (None, "run.json is missing"),
        ('{"format_version": 1, "name": ', "run.json is not valid JSON"),
        ("[1, 2]", "run.json does not hold a JSON object"),
        ('{"name": "x"}', "run.json has no integer format_version (found None)"),
        ('{"format_version": "1"}', "run.json has no integer format_version (found '1')"),
        ('{"format_version": true}', "run.json has no integer format_version (found True)"),
        (
            '{"format_version": 7}',
            "written in run format 7; this Kerascope reads formats up to 2: upgrade Kerascope to open it",
        ),
    ],
)
def test_broken_runs_say_why(runs_root, run_json, reason):
    path = write_run(runs_root, "bad")
    if run_json is None:
        (path / "run.json").unlink()
    else:
        (path / "run.json").write_text(run_json)
    (path / "epoch.jsonl").write_text('{"epoch": 0, "loss": 1}\n')
    run = RunStore(runs_root).run("bad")
    assert run.status == "broken" and run.reason.startswith(reason) and run.name == "bad"
    assert run.epoch_metrics()["loss"].tolist() == [1.0]  # the data that is there is still readable


def test_a_missing_status_json_is_broken_with_the_reason(runs_root):
    path = write_run(runs_root, "nostatus")
    (path / "status.json").unlink()
    run = RunStore(runs_root).run("nostatus")
    assert run.status == "broken" and run.reason == "status.json is missing"


def test_a_broken_run_heals_when_its_files_are_completed(runs_root):
    path = write_run(runs_root, "late")
    (path / "run.json").write_text('{"format_version": 1, "na')
    run = RunStore(runs_root).run("late")
    assert run.status == "broken"
    (path / "run.json").write_text('{"format_version": 1, "name": "complete"}')
    run.refresh()
    assert run.status == "finished" and run.name == "complete"


def test_refresh_is_incremental_and_versions_grow_only_with_new_data(runs_root):
    writer = RunWriter(runs_root, name="live", flush_interval=3600)
    run = RunStore(runs_root).run(writer.run_id)
    versions = [run.version]
    assert run.status == "running" and run.batch_metrics().empty
    assert not run.refresh() and run.version == versions[-1]
    for step in range(1, 4):
        writer.log("batch", {"step": step, "epoch": 0, "batch": step - 1, "time": 1.0, "loss": 1 / step})
    writer.event("train_begin", "fit() call 1 began", step=0, epoch=0, phase=1)
    writer.flush()
    first = run.batch_metrics()
    versions.append(run.version)
    assert first["step"].tolist() == [1, 2, 3]
    assert run.events()["kind"].tolist() == ["train_begin"]  # streams are read lazily: events only now
    versions.append(run.version)
    assert not run.refresh() and run.version == versions[-1] and run.batch_metrics() is first
    tail = run._tails["batch"]
    offset = tail.offset
    writer.log("batch", {"step": 4, "epoch": 0, "batch": 3, "time": 2.0, "loss": 0.2, "new_metric": 7})
    writer.flush()
    frame = run.batch_metrics()
    versions.append(run.version)
    assert frame["step"].tolist() == [1, 2, 3, 4] and tail.offset > offset
    assert versions == sorted(set(versions))  # a new number for each read that found something new
    assert frame["new_metric"].isna().tolist() == [True, True, True, False]
    writer.close()


def test_a_rewritten_stream_replaces_what_was_read(runs_root):
    path = write_run(runs_root, "r")
    (path / "epoch.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n')
    run = RunStore(runs_root).run("r")
    assert run.epoch_metrics()["epoch"].tolist() == [0, 1]
    (path / "epoch.jsonl").write_text('{"epoch": 5}\n')
    assert run.epoch_metrics()["epoch"].tolist() == [5]


def test_every_reader_works_on_a_run_with_no_streams(runs_root):
    write_run(runs_root, "bare")
    run = RunStore(runs_root).run("bare")
    for reader in (run.batch_metrics, run.epoch_metrics, run.system_metrics, run.activations, run.weights,
                   run.events, run.phases, run.layers, run.checkpoints):
        assert reader().empty
    assert run.model_summary() == "" and run.model_graph_dot() == "" and run.model_graph_png() is None
    assert run.model_config() is None and run.arrays("batch") == {}
    assert "step" in run.events().columns and "path" in run.checkpoints().columns


@pytest.fixture
def served(tmp_path, runs_root):
    """A run with a checkpoint, plus files and links that must never be served through it."""
    run_dir = write_run(runs_root, "served")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "best.keras").write_bytes(b"PK")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the root")
    os.symlink(secret, run_dir / "checkpoints" / "escape.keras")
    os.symlink("../../../secret.txt", run_dir / "relative-escape.txt")
    other = write_run(runs_root, "other")
    (other / "note.txt").write_text("another run's file")
    os.symlink(other / "note.txt", run_dir / "sibling.txt")
    os.symlink(run_dir / "checkpoints" / "best.keras", run_dir / "alias.keras")
    os.mkfifo(run_dir / "pipe")
    return RunStore(runs_root).run("served"), secret


def test_file_path_serves_regular_files_inside_the_run(served):
    run, _ = served
    assert run.file_path("checkpoints/best.keras") == os.path.join(run.path, "checkpoints", "best.keras")
    assert run.file_path("alias.keras").endswith("alias.keras")  # a link that stays inside the run is fine


@pytest.mark.parametrize(
    ("relpath", "error"),
    [
        ("../other/note.txt", PermissionError),
        ("checkpoints/../../other/run.json", PermissionError),
        ("checkpoints\\..\\..\\other\\run.json", PermissionError),
        ("/etc/passwd", PermissionError),
        ("", PermissionError),
        ("checkpoints/escape.keras", PermissionError),
        ("relative-escape.txt", PermissionError),
        ("sibling.txt", PermissionError),
        ("pipe", FileNotFoundError),
        ("checkpoints", FileNotFoundError),
        ("missing.keras", FileNotFoundError),
    ],
)
def test_file_path_refuses_everything_else(served, relpath, error):
    run, _ = served
    with pytest.raises(error):
        run.file_path(relpath)
    with pytest.raises(error):
        run.open_file(relpath)


def test_open_file_reads_a_file_of_the_run(served):
    run, _ = served
    with open(os.path.join(run.path, "checkpoints", "best.keras"), "rb") as f:
        expected = f.read()
    with run.open_file("checkpoints/best.keras") as f:
        assert f.read() == expected
    with run.open_file("alias.keras") as f:
        assert f.read() == expected


def test_model_files_that_link_outside_the_root_are_not_read(served):
    run, secret = served
    os.mkdir(os.path.join(run.path, "model"))
    os.symlink(secret, os.path.join(run.path, "model", "summary.txt"))
    os.symlink(secret, os.path.join(run.path, "model", "graph.png"))
    os.symlink(secret, os.path.join(run.path, "model", "graph.dot"))
    assert run.model_summary() == "" and run.model_graph_dot() == "" and run.model_graph_png() is None
    secret.write_text('{"epoch": 0, "loss": 123.0}\n')
    os.symlink(secret, os.path.join(run.path, "model", "config.json"))
    os.symlink(secret, os.path.join(run.path, "epoch.jsonl"))
    os.symlink(secret, os.path.join(run.path, "checkpoints", "index.json"))
    assert run.model_config() is None and run.epoch_metrics().empty and run.checkpoints().empty
    assert "epoch.jsonl: a link that leads outside the runs root: not read" in run.problems
    assert "checkpoints/index.json: checkpoints/index.json leads outside the runs root: not read" in run.problems


def test_run_and_status_json_that_link_outside_the_root_make_the_run_broken(tmp_path, runs_root):
    outside = write_run(tmp_path / "elsewhere", "real", status={"status": "finished", "heartbeat": 0})
    linked = runs_root / "linked"
    linked.mkdir()
    os.symlink(outside / "run.json", linked / "run.json")
    os.symlink(outside / "status.json", linked / "status.json")
    run = RunStore(runs_root).run("linked")
    assert run.status == "broken"
    assert run.reason == "run.json unreadable: run.json leads outside the runs root: not read"
    assert run.status_info["reason"] == "status.json unreadable: status.json leads outside the runs root: not read"


FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "keras", "tensorflow", "torch", "jax",
                     "h5py"}


def test_monitor_never_imports_deserializers_or_keras():
    """Nothing in monitor/ can unpickle or load a model: none of those modules is imported, no allow_pickle, no eval."""
    for source in (REPO / "monitor").glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            assert not {n.split(".")[0] for n in names} & FORBIDDEN_MODULES, (source.name, names)
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
                called = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                assert called not in {"eval", "exec", "load_model", "loads_pickle"}, (source.name, called)
            if isinstance(node, ast.keyword):
                assert node.arg != "allow_pickle", source.name
    # pandas imports pickle for its own API; what matters is that no ML framework comes in with the readers.
    code = ("import sys, json, kerascope.monitor.store, kerascope.monitor.watcher, kerascope.monitor.writer, "
            "kerascope.monitor.catalog, kerascope.monitor.remote_reader; print(json.dumps(list(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                       check=True).stdout)
    assert not {name.split(".")[0] for name in loaded} & {"keras", "tensorflow", "torch", "jax", "h5py"}


def test_documented_columns_exist_even_when_no_record_has_them(runs_root):
    path = write_run(runs_root, "partial")
    (path / "epoch.jsonl").write_text('{"epoch": 0, "loss": 0.5}\n{"epoch": 1, "loss": 0.4}\n')
    run = RunStore(runs_root).run("partial")
    epochs = run.epoch_metrics()
    assert list(epochs.columns[:3]) == ["epoch", "step", "time"] and epochs["step"].isna().all()
    assert list(epochs["epoch"]) == [0, 1] and list(epochs["loss"]) == [0.5, 0.4]
    batches = run.batch_metrics()  # no batch.jsonl at all
    assert len(batches) == 0 and list(batches.columns) == ["step", "epoch", "batch", "time"]


def test_two_readers_of_one_run_never_share_a_version(runs_root):
    """Caches key what they build by (run id, version): a new reader of a run (a store that read the run again)
    must not meet the key of what an older reader built."""
    writer = RunWriter(runs_root, name="live", flush_interval=3600)
    writer.log("batch", {"step": 1, "epoch": 0, "batch": 0, "time": 1.0, "loss": 1.0})
    writer.flush()
    old = RunStore(runs_root).run(writer.run_id)
    old.batch_metrics()
    writer.log("batch", {"step": 2, "epoch": 0, "batch": 1, "time": 2.0, "loss": 0.5})
    writer.flush()
    new = RunStore(runs_root).run(writer.run_id)
    seen = {old.version}
    assert new.version not in seen
    seen.add(new.version)
    new.batch_metrics()
    assert new.version not in seen and len(new.batch_metrics()) == 2
    writer.close()
