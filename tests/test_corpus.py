"""RunStore and every reader method over tests/corpus/runs (malformed run directories, see tests/corpus/README.md),
plus the cases that cannot be committed: a 200 MB stream, an oversized run.json, files that vanish while read and
files the reader may not open.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pandas as pd
import pytest

from kerascope import RunStore, RunWriter
from kerascope.monitor import format as fmt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "tests", "corpus", "runs")
MALFORMED = "malformed line(s) skipped"

# case directory -> (status, reason prefix or None, problem substrings)
EXPECTED: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "ok-reference": ("finished", None, ()),
    "run-json-missing": ("broken", "run.json is missing", ()),
    "run-json-empty": ("broken", "run.json is not valid JSON", ()),
    "run-json-truncated": ("broken", "run.json is not valid JSON (Unterminated string", ()),
    "run-json-binary-garbage": ("broken", "run.json is not valid JSON", ()),
    "run-json-not-an-object": ("broken", "run.json does not hold a JSON object", ()),
    "run-json-empty-object": ("broken", "run.json has no integer format_version (found None)", ()),
    "run-json-version-as-text": ("broken", "run.json has no integer format_version (found '1')", ()),
    "run-json-is-a-directory": ("broken", "run.json unreadable: Is a directory", ()),
    "future-format-version": (
        "broken",
        "written in run format 3; this Kerascope reads formats up to 2: upgrade Kerascope to open it",
        (),
    ),
    "run-json-wrong-types": ("finished", None, ()),
    "run-json-deeply-nested": ("broken", "run.json is not valid JSON (maximum recursion depth", ()),
    "hparams-deeply-nested-within-limit": ("finished", None, ()),
    "run-json-long-values": ("finished", None, ()),
    "status-missing": ("broken", "status.json is missing", ()),
    "status-empty": ("broken", "status.json unreadable: status.json is not valid JSON", ()),
    "status-binary-garbage": ("broken", "status.json unreadable: status.json is not valid JSON", ()),
    "status-unknown-value": ("broken", "status.json has no valid status (found 'exploded'", ()),
    "status-not-an-object": ("broken", "status.json has no valid status", ()),
    "status-wrong-types": ("stale", "no heartbeat for over 30 s", ()),
    "status-running-old-heartbeat": ("stale", "no heartbeat for over 30 s", ()),
    "status-failed-with-reason": ("failed", 'ValueError: <script>alert("xss")</script>', ()),
    "streams-torn-last-line": ("finished", None, ()),
    "streams-torn-middle-recovered": ("finished", None, ("batch.jsonl: 1 " + MALFORMED,)),
    "streams-binary-garbage": (
        "finished",
        None,
        tuple(f"{name}: 3 {MALFORMED}" for name in fmt.STREAM_FILES.values()),
    ),
    "streams-wrong-types": ("finished", None, ("batch.jsonl: 3 " + MALFORMED,)),
    "steps-duplicated": ("finished", None, ()),
    "steps-out-of-order": ("finished", None, ()),
    "streams-empty-files": ("finished", None, ("checkpoints/index.json: index.json is not valid JSON",)),
    "streams-missing": ("finished", None, ()),
    "streams-blank-lines": ("finished", None, ()),
    "values-nan-inf-huge": ("finished", None, ()),
    "values-non-utf8": ("finished", None, ("batch.jsonl: 1 " + MALFORMED, "events.jsonl: 1 " + MALFORMED)),
    "streams-are-directories": (
        "finished",
        None,
        ("batch.jsonl: Is a directory", "events.jsonl: Is a directory", "checkpoints/index.json: Is a directory"),
    ),
    "checkpoints-index-garbage": ("finished", None, ("checkpoints/index.json: index.json is not valid JSON",)),
    "checkpoints-index-wrong-types": ("finished", None, ()),
    "checkpoints-index-object": ("finished", None, ()),
    "model-files-garbage": ("finished", None, ()),
    "symlinks-to-outside": ("finished", None, ("epoch.jsonl: a link that leads outside the runs root: not read",)),
    "tmp-leftovers-from-a-crash": ("finished", None, ()),
    "unknown-fields-and-files": ("finished", None, ()),
    "html-in-user-strings": ("finished", None, ()),
    "<img src=x onerror=alert(2)> dir": ("finished", None, ()),
    "unicode ✓ 日本語 🚀 spaces": ("finished", None, ()),
}
NOT_LISTED = ("not-a-run-dir", "symlinked-run-outside-root", "symlinked-etc")


def read_everything(run) -> dict[str, object]:
    """Call every public reader, as the dashboard pages do; any exception fails the test."""
    results: dict[str, object] = {
        "status": run.status,
        "reason": run.reason,
        "name": run.name,
        "created": run.created,
        "status_info": run.status_info,
        "summary": run.model_summary(),
        "dot": run.model_graph_dot(),
        "png": run.model_graph_png(),
        "config": run.model_config(),
    }
    for reader in ("batch_metrics", "epoch_metrics", "system_metrics", "activations", "weights", "gradients", "events",
                   "phases", "layers", "checkpoints"):
        frame = getattr(run, reader)()
        assert isinstance(frame, pd.DataFrame), reader
        results[reader] = frame
    for stream in ("batch", "epoch", "system"):
        results[f"arrays_{stream}"] = run.arrays(stream)
    # Every path the checkpoint index names is either a regular file inside the run, or refused.
    for path in results["checkpoints"]["path"]:
        try:
            served = run.file_path(path) if isinstance(path, str) else None
        except (PermissionError, FileNotFoundError):
            continue
        assert served is None or os.path.realpath(served).startswith(os.path.realpath(run.path) + os.sep)
    return results


def test_the_corpus_has_at_least_30_cases_and_each_is_described():
    cases = sorted(os.listdir(CORPUS))
    assert len(cases) >= 30 and sorted([*EXPECTED, *NOT_LISTED]) == cases
    readme = open(os.path.join(REPO, "tests", "corpus", "README.md"), encoding="utf-8").read()
    assert all(f"`{case}`" in readme for case in cases)


def test_the_store_lists_every_run_and_nothing_that_leaves_the_root():
    runs = RunStore(CORPUS).runs()
    assert sorted(run.id for run in runs) == sorted(EXPECTED)
    assert all("SECRET" not in run.name for run in runs)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_each_case_reads_with_its_status_reason_and_problems(case):
    status, reason, problems = EXPECTED[case]
    run = RunStore(CORPUS).run(case)
    results = read_everything(run)
    assert results["status"] == status
    if reason is None:
        assert results["reason"] is None
    else:
        assert results["reason"].startswith(reason)
    assert sorted(run.problems) == sorted(problem for problem in run.problems if any(p in problem for p in problems))
    assert all(any(p in problem for problem in run.problems) for p in problems)
    assert not any("SECRET" in json.dumps(value, default=str) for value in results.values())


def test_readable_parts_of_malformed_runs_are_kept():
    store = RunStore(CORPUS)
    assert store.run("streams-torn-last-line").batch_metrics()["step"].tolist() == [1, 2, 3, 4]
    assert store.run("streams-torn-middle-recovered").batch_metrics()["step"].tolist() == [1, 2, 3, 4]
    assert store.run("streams-binary-garbage").epoch_metrics()["epoch"].tolist() == [0, 1]
    assert store.run("steps-duplicated").batch_metrics()["step"].tolist() == [1, 2, 3, 4, 1, 2, 3, 4]
    assert store.run("steps-out-of-order").batch_metrics()["step"].tolist() == [4, 3, 2, 1]
    values = store.run("values-nan-inf-huge").batch_metrics()
    assert np.isnan(values["loss"][0]) and values["accuracy"].tolist()[:2] == [np.inf, -np.inf]
    assert values["loss"][2] == pytest.approx(1.2345678901234568e29)
    assert store.run("run-json-wrong-types").name == "run-json-wrong-types"  # name 42 is not text: the id stands in
    broken = store.run("future-format-version")
    assert broken.epoch_metrics()["epoch"].tolist() == [0, 1]  # refused as a run, its data is still there to inspect
    assert "\ufffd" in store.run("values-non-utf8").model_summary()


def test_other_runs_are_unaffected_by_their_malformed_neighbours(tmp_path):
    alone = tmp_path / "alone"
    shutil.copytree(os.path.join(CORPUS, "ok-reference"), alone / "ok-reference")
    expected = read_everything(RunStore(alone).run("ok-reference"))
    store = RunStore(CORPUS)
    for run in store.runs():
        read_everything(run)
    actual = read_everything(store.run("ok-reference"))
    for key, value in expected.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(actual[key], value)
        elif key not in ("png",) and not key.startswith("arrays"):
            assert actual[key] == value, key
    assert store.run("ok-reference").problems == []


BIG_STREAM = r"""
import json, os, resource, sys
run_dir = sys.argv[1]
from kerascope import RunStore
import pandas, pyarrow.json  # imported before the baseline is taken
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
run = RunStore(os.path.dirname(run_dir)).run(os.path.basename(run_dir))
frame = run.batch_metrics()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rows": len(frame), "first": int(frame["step"].iloc[0]), "last": int(frame["step"].iloc[-1]),
                  "monotonic": bool(frame["step"].is_monotonic_increasing), "problems": run.problems,
                  "growth": peak - base, "status": run.status}))
"""


def test_a_200_mb_stream_with_a_bad_line_reads_in_bounded_memory(tmp_path):
    """A long run opened late: every record read, the bad line skipped, peak RSS growth under 3x the file's size."""
    run_dir = tmp_path / "runs" / "huge"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text('{"format_version": 1, "name": "huge"}')
    (run_dir / "status.json").write_text('{"status": "finished", "heartbeat": 0}')
    line = b'{"step":%d,"epoch":%d,"batch":%d,"time":%d.5,"loss":%.6f,"accuracy":0.5,"batch_loss":0.25,"lr":0.001}\n'
    step = 0
    with open(run_dir / "batch.jsonl", "wb") as f:
        while f.tell() < 200_000_000:
            f.write(b"".join(line % (s, s // 1000, s % 1000, s, 1.0 / s) for s in range(step + 1, step + 100_001)))
            step += 100_000
            if step == 800_000:
                f.write(b"\x00\xffgarbage from a disk error{\n")
    size = os.path.getsize(run_dir / "batch.jsonl")
    out = subprocess.run([sys.executable, "-c", BIG_STREAM, str(run_dir)], cwd=REPO, capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=REPO))
    result = json.loads(out.stdout)
    assert result["rows"] == step and result["first"] == 1 and result["last"] == step and result["monotonic"]
    assert result["problems"] == ["batch.jsonl: 1 " + MALFORMED] and result["status"] == "finished"
    assert result["growth"] < 3 * size, f"peak RSS grew by {result['growth']:,} bytes for a {size:,}-byte file"


def test_an_oversized_run_json_is_broken_with_its_size(runs_root):
    run_dir = runs_root / "huge-meta"
    run_dir.mkdir()
    with open(run_dir / "run.json", "w") as f:
        f.write('{"format_version": 1, "notes": "' + "x" * (17 * 1024 * 1024) + '"}')
    (run_dir / "status.json").write_text('{"status": "finished", "heartbeat": 0}')
    run = RunStore(runs_root).run("huge-meta")
    assert run.status == "broken" and run.reason.startswith("run.json is 17,825,826 bytes, more than the")


def test_huge_json_values_in_streams(runs_root):
    """A 5 MB record is read whole; a 40 MB one (longer than a read slice) is dropped and the records after it kept."""
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.log("batch", {"step": 1, "loss": 0.5, "blob": "x" * (5 * 1024 * 1024)})
    writer.log("batch", {"step": 2, "loss": 0.4, "blob": "y" * (40 * 1024 * 1024)})
    writer.log("batch", {"step": 3, "loss": 0.3})
    writer.close()
    run = RunStore(runs_root).run(writer.run_id)
    assert run.batch_metrics()["step"].tolist() == [1, 3]
    assert run.problems == ["batch.jsonl: a line longer than 4,194,304 bytes was dropped"]


def test_files_and_runs_that_vanish_while_read_never_raise(runs_root):
    """A thread deletes and recreates streams and whole runs while the store lists and reads them."""
    keeper = RunWriter(runs_root, name="keeper", flush_interval=3600)
    for step in range(1, 51):
        keeper.log("batch", {"step": step, "loss": 1 / step})
    keeper.close()
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            writer = RunWriter(runs_root, name=f"ephemeral {i}", flush_interval=3600)
            writer.log("batch", {"step": 1, "loss": 1.0})
            writer.log("events", {"kind": "warning", "message": "x"})
            writer.close()
            shutil.rmtree(writer.run_dir, ignore_errors=True)
            with open(os.path.join(keeper.run_dir, "system.jsonl"), "w") as f:
                f.write(json.dumps({"time": i}) + "\n")
            os.unlink(os.path.join(keeper.run_dir, "system.jsonl"))

    thread = threading.Thread(target=churn)
    thread.start()
    store = RunStore(runs_root)
    try:
        for _ in range(100):
            for run in store.runs():
                read_everything(run)
    finally:
        stop.set()
        thread.join()
    run = store.run(keeper.run_id)
    assert run.batch_metrics()["step"].tolist() == list(range(1, 51)) and run.status == "finished"


UNPRIVILEGED_READ = r"""
import json, os, sys
from kerascope import RunStore
# The interpreter lives under /root: import before dropping privileges.
import kerascope.monitor.reader, pandas, pyarrow.json
os.setgid(65534)
os.setuid(65534)
out = {}
for run in RunStore(sys.argv[1]).runs():
    frame = run.batch_metrics()
    out[run.id] = {"status": run.status, "reason": run.reason, "problems": run.problems, "rows": len(frame),
                   "summary": run.model_summary(), "checkpoints": len(run.checkpoints())}
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges; as a normal user see the chmod test")
def test_permission_denied_files_are_reported_not_fatal():
    """Root ignores file modes, so a child process drops to `nobody` before reading files made unreadable."""
    # pytest's tmp_path lives in a folder only root may enter: this test needs one that `nobody` can traverse.
    base = tempfile.mkdtemp(prefix="kerascope-permissions-")
    try:
        os.chmod(base, 0o755)
        check_permission_denied(pathlib.Path(base))
    finally:
        shutil.rmtree(base)


def check_permission_denied(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "runs"
    readable = RunWriter(root, name="readable", flush_interval=3600)
    readable.log("batch", {"step": 1})
    readable.close()
    locked = {}
    for what in ("run.json", "status.json", "batch.jsonl", "model/summary.txt", "checkpoints/index.json", "dir"):
        writer = RunWriter(root, name=f"locked {what}", flush_interval=3600)
        writer.log("batch", {"step": 1})
        writer.write_file("model/summary.txt", "summary")
        writer.write_json("checkpoints/index.json", [])
        writer.close()
        locked[what] = writer.run_id
        os.chmod(writer.run_dir if what == "dir" else os.path.join(writer.run_dir, what), 0)
    for path in tmp_path.parents:
        if not os.stat(path).st_mode & 0o001:
            pytest.skip(f"{path} is not searchable by other users")
    out = subprocess.run([sys.executable, "-c", UNPRIVILEGED_READ, str(root)], cwd=REPO, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen[readable.run_id]["rows"] == 1 and seen[readable.run_id]["status"] == "finished"
    assert seen[locked["run.json"]]["reason"] == "run.json unreadable: Permission denied"
    assert seen[locked["status.json"]]["reason"] == "status.json unreadable: Permission denied"
    assert seen[locked["batch.jsonl"]]["problems"] == ["batch.jsonl: Permission denied"]
    assert seen[locked["batch.jsonl"]]["status"] == "finished"
    assert seen[locked["model/summary.txt"]]["summary"] == ""
    assert seen[locked["checkpoints/index.json"]]["problems"] == ["checkpoints/index.json: Permission denied"]
    assert locked["dir"] not in seen or seen[locked["dir"]]["status"] == "broken"
