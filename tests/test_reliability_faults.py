"""Write faults during real training: fit() gives the same weights and losses as without LiveMonitor, one warning says
what went wrong, nothing raises (unless strict=True), and what was written still reads.

Each case is its own forked training process (tests/zygote.py), so the file-size limit and the ignored SIGXFSZ are
real process state: the kernel answers the writes with EFBIG.
"""

from __future__ import annotations

import json
import math
import os

import pytest
from zygote import Zygote

from kerascope import RunStore

FSIZE = 12_000  # bytes: run.json and status.json fit, batch.jsonl and the checkpoint hit the limit mid-run

CASES = {
    "baseline": {},
    "fsize": {"fsize": FSIZE},
    "delete_dir": {},
    "unwritable": {},
    "metrics": {},
    "hparams": {},
    "strict-unwritable": {"fault": "unwritable", "strict": True},
    "strict-fsize": {"fault": "fsize", "fsize": FSIZE, "strict": True},
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("faults")
    (work / "afile").write_text("a regular file where the log dir's parent should be")
    jobs = []
    for case, extra in CASES.items():
        root = work / case
        root.mkdir()
        (root / "afile").write_text("a regular file")
        jobs.append({"id": case, "scenario": "faulty", "fault": case, "root": str(root),
                     "result": str(work / f"{case}.json"), **extra})
    with Zygote(work, jobs, parallel=4) as zygote:
        exits = {job["id"]: zygote.wait_exit(job["id"], timeout=240) for job in jobs}
        log = zygote.log_tail()
    found = {}
    for job in jobs:
        assert exits[job["id"]]["code"] == 0, (job["id"], exits[job["id"]], log)
        with open(job["result"], encoding="utf-8") as f:
            found[job["id"]] = json.load(f)
    return found


@pytest.mark.parametrize(
    ("case", "warning"),
    [
        ("fsize", "File too large"),
        ("delete_dir", "No such file or directory"),
        ("unwritable", "cannot write a run under"),
    ],
)
def test_a_write_fault_costs_one_warning_and_not_the_training(results, case, warning):
    baseline, result = results["baseline"], results[case]
    assert result["error"] is None
    assert result["weights"] == baseline["weights"] and result["loss"] == baseline["loss"]
    assert len(result["warnings"]) == 1 and warning in result["warnings"][0], result["warnings"]


def test_a_file_size_limit_leaves_a_readable_run(results):
    (run,) = RunStore(os.path.dirname(results["fsize"]["run_dir"])).runs()
    assert run.error is None and run.status == "finished"
    steps = run.batch_metrics()["step"].tolist()
    assert steps == list(range(1, len(steps) + 1))
    sizes = {name: os.path.getsize(os.path.join(run.path, name)) for name in os.listdir(run.path) if "." in name}
    assert max(sizes.values()) == FSIZE, sizes  # a stream was cut by the limit, mid-record
    for name in sizes:
        if name.endswith(".jsonl"):
            with open(os.path.join(run.path, name), "rb") as f:
                for line in f.read().split(b"\n")[:-1]:
                    json.loads(line)  # whole records; only the unterminated tail is a fragment
    assert not any("malformed" in problem for problem in run.problems)
    assert len(run.weights()) > 0 and len(run.activations()) > 0
    assert all(os.path.getsize(run.file_path(path)) == size
               for path, size in zip(run.checkpoints()["path"], run.checkpoints()["bytes"], strict=True))


def test_a_deleted_run_directory_stays_deleted(results):
    run_dir = results["delete_dir"]["run_dir"]
    assert not os.path.exists(run_dir), sorted(os.listdir(run_dir))
    assert RunStore(os.path.dirname(run_dir)).runs() == []


def test_an_unwritable_log_dir_creates_nothing(results):
    assert results["unwritable"]["run_dir"] is None


def test_odd_metric_values_are_recorded_without_a_warning(results):
    """NaN, Inf, numpy scalars, arrays, text, None and objects in the logs: recorded as far as JSON allows."""
    result = results["metrics"]
    assert result["error"] is None and result["weights"] == results["baseline"]["weights"]
    assert result["warnings"] == []
    (run,) = RunStore(os.path.dirname(result["run_dir"])).runs()
    assert run.status == "finished" and run.problems == []
    batches = run.batch_metrics()
    assert batches["nan_metric"].isna().all() and (batches["inf_metric"] == math.inf).all()
    assert (batches["numpy_metric"] == 0.25).all() and "vector_metric" not in batches  # not a number: no column
    with open(os.path.join(run.path, "batch.jsonl"), encoding="utf-8") as f:
        first = json.loads(f.readline())
    assert first["vector_metric"] == [0.0, 1.0, 2.0] and first["text_metric"] == "high"
    assert first["none_metric"] is None and first["object_metric"].startswith("<object object")
    nan_events = run.events().query("kind == 'nan'")
    assert {"nan_metric", "inf_metric"} <= {data["metric"] for data in nan_events["data"]}


def test_hparams_that_are_not_json_are_kept_as_text(results):
    result = results["hparams"]
    assert result["error"] is None and result["weights"] == results["baseline"]["weights"]
    assert result["warnings"] == []
    (run,) = RunStore(os.path.dirname(result["run_dir"])).runs()
    hparams = run.meta["hparams"]
    assert hparams["fn"].startswith("<function") and hparams["obj"].startswith("<object")
    assert hparams["array"] == [[1.0, 1.0], [1.0, 1.0]] and sorted(hparams["set"]) == [1, 2]
    assert hparams["3"] == "int key" and hparams["nested"] == {"deep": [1.5, [1, 2]]}
    assert math.isnan(hparams["nan"]) and run.status == "finished"


@pytest.mark.parametrize(("case", "error"), [("strict-unwritable", "NotADirectoryError"), ("strict-fsize", "OSError")])
def test_strict_mode_raises_the_fault(results, case, error):
    assert results[case]["error"] is not None and results[case]["error"].startswith(error), results[case]
