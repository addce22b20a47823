"""kill -9 of real training processes at 23 different moments, plus Ctrl-C, an exception and a caught exception.

One zygote (tests/zygote.py) pays the TensorFlow import and forks every training process. Some are killed from
here when their run directory shows a given state (N batch records read by a tailing RunStore, a checkpoint being
written, status.json rewritten, ...); some kill themselves at an exact point of a write (most of a batch append
written, just before status.json / run.json / a checkpoint / index.json / summary.txt is renamed into place); some in
a training hook. Afterwards every run must open, hold every record the tailing RunStore had shown, hold no half
record, say `running` on disk and `stale` once its heartbeat is old, and accept a resumed writer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest
from zygote import Zygote

from kerascope import RunStore, RunWriter
from kerascope.monitor import format as fmt

BATCH_COLUMNS = ("step", "epoch", "batch", "time", "loss", "accuracy", "batch_loss", "batch_accuracy", "lr")


def external(trigger: str, value: int, **job) -> dict:
    return {"scenario": "killed", "trigger": trigger, "value": value, **job}


def injected(point: str, nth: int, **job) -> dict:
    return {"scenario": "killed", "point": point, "nth": nth, **job}


# job id -> job (the root and result are filled in by the fixture)
KILLS = {
    "ext-batch-1": external("batch", 1),
    "ext-batch-10": external("batch", 10),
    "ext-batch-25": external("batch", 25),
    "ext-batch-60": external("batch", 60),
    "ext-batch-120": external("batch", 120, flush_interval=0.5),
    "ext-epoch-2": external("epoch", 2),
    "ext-status-3": external("status", 3),
    "ext-system-2": external("system", 2),
    "ext-summary": external("summary", 1),
    "ext-checkpoint-writing": external("checkpoint_tmp", 1, checkpoint="all"),
    "ext-checkpoint-2": external("checkpoint", 2, checkpoint="all"),
    "self-partial-batch-write-1": injected("partial_batch_write", 1),
    "self-partial-batch-write-5": injected("partial_batch_write", 5),
    "self-status-replace-2": injected("before_status_replace", 2),
    "self-status-replace-6": injected("before_status_replace", 6),
    "self-run-json-replace-phase-2": injected("before_run_json_replace", 2, phases=True),  # resume rewrites it
    "self-checkpoint-replace-1": injected("before_checkpoint_replace", 1, checkpoint="all"),
    "self-index-replace-2": injected("before_index_replace", 2, checkpoint="all"),
    "self-summary-replace-1": injected("before_summary_replace", 1),
    "hook-batch-3": {"scenario": "killed", "kill_step": 3},
    "hook-batch-30": {"scenario": "killed", "kill_step": 30, "flush_interval": 0.5},
    "hook-epoch-end-2": {"scenario": "killed", "kill_epoch": 2, "checkpoint": "last"},
    "hook-phase-2-batch-5": {"scenario": "killed", "phases": True, "kill_step": 5},
}
# The Ctrl-C jobs train far longer than the sweep can take, so that a SIGINT sent late on a loaded machine cannot find
# fit() already finished.
ENDINGS = {
    "ctrl-c": external("sigint", 20, epochs=10_000),
    "exception": {"scenario": "killed", "error": "raise", "epochs": 5},
    "keyboard-interrupt": {"scenario": "killed", "error": "interrupt", "epochs": 5},
    "exception-caught-by-caller": {"scenario": "killed", "error": "raise", "epochs": 5, "caught": True},
    "ctrl-c-caught-by-caller": external("sigint", 20, caught=True, epochs=10_000),
}


def triggered(job: dict, run, seen_inodes: set[int]) -> bool:
    """Whether the run directory shows the state at which `job` is to be killed."""
    trigger, value = job["trigger"], job["value"]
    if trigger in ("batch", "sigint"):
        return len(run.batch_metrics()) >= value
    if trigger == "epoch":
        return len(run.epoch_metrics()) >= value
    if trigger == "system":
        return len(run.system_metrics()) >= value
    if trigger == "summary":
        return os.path.exists(os.path.join(run.path, fmt.SUMMARY_FILE))
    if trigger == "status":
        try:
            seen_inodes.add(os.stat(os.path.join(run.path, fmt.STATUS_FILE)).st_ino)
        except FileNotFoundError:
            pass
        return len(seen_inodes) >= value
    names = os.listdir(os.path.join(run.path, fmt.CHECKPOINT_DIR)) if os.path.isdir(
        os.path.join(run.path, fmt.CHECKPOINT_DIR)) else []
    if trigger == "checkpoint_tmp":
        return any(name.startswith(".tmp-") and name.endswith(".keras") for name in names)
    return sum(name.endswith(".keras") and not name.startswith(".") for name in names) >= value


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Run every job; kill the externally triggered ones from here while a RunStore tails the shared root."""
    work = tmp_path_factory.mktemp("kill-sweep")
    root = str(work / "runs")
    jobs = [{"id": job_id, "root": root, **job} for job_id, job in {**KILLS, **ENDINGS}.items()]
    seen: dict[str, list[int]] = {}  # batch steps the tailing store showed just before the kill
    store = RunStore(root)
    with Zygote(work, jobs, parallel=5) as zygote:
        waiting = {job["id"]: job for job in jobs if "trigger" in job}
        inodes: dict[str, set[int]] = {job_id: set() for job_id in waiting}
        deadline = time.monotonic() + 240
        while waiting:
            assert time.monotonic() < deadline, f"never triggered: {sorted(waiting)}\n{zygote.log_tail()}"
            runs = {run.name: run for run in store.runs()}
            for job_id, job in list(waiting.items()):
                assert job_id not in zygote.exited, f"{job_id} ended before its trigger: {zygote.log_tail()}"
                run = runs.get(job_id)
                if run is None or not zygote.running(job_id) or not triggered(job, run, inodes[job_id]):
                    continue
                frame = run.batch_metrics()
                seen[job_id] = frame["step"].tolist() if "step" in frame else []
                os.kill(zygote.pid(job_id), signal.SIGINT if job["trigger"] == "sigint" else signal.SIGKILL)
                del waiting[job_id]
            time.sleep(0.02)
        exits = {job["id"]: zygote.wait_exit(job["id"], timeout=240) for job in jobs}
    return root, exits, seen, zygote.log_tail()


def raw(run) -> list[bytes]:
    try:
        with open(os.path.join(run.path, fmt.BATCH_FILE), "rb") as f:
            return f.read().split(b"\n")
    except FileNotFoundError:  # killed before the first batch was flushed
        return [b""]


def check_records(run) -> list[int]:
    """Whole records only: contiguous steps from 1, every field of a batch record present."""
    frame = run.batch_metrics()
    steps = frame["step"].tolist() if len(frame) else []
    assert steps == list(range(1, len(steps) + 1)), steps
    for column in BATCH_COLUMNS:
        if len(frame):
            assert column in frame and frame[column].notna().all(), column
    epochs = run.epoch_metrics()
    assert (epochs["epoch"].tolist() if len(epochs) else []) == list(range(len(epochs)))
    for line in raw(run)[:-1]:
        json.loads(line)  # every complete line is a whole record; only the unterminated tail may be a fragment
    return steps


@pytest.mark.parametrize("job_id", sorted(KILLS))
def test_a_killed_run_keeps_every_flushed_record_and_turns_stale(sweep, job_id, tmp_path):
    root, exits, seen, log = sweep
    assert exits[job_id]["signal"] == signal.SIGKILL, (exits[job_id], log)
    runs = {run.name: run for run in RunStore(root).runs()}
    run = runs[job_id]
    assert run.error is None and run.status_info["status"] == "running" and run.status in ("running", "stale")
    steps = check_records(run)
    assert steps[: len(seen.get(job_id, []))] == seen.get(job_id, [])  # all the dashboard had shown is still there
    assert [p for p in run.problems if "malformed" not in p] == []
    for entry in run.checkpoints().to_dict("records"):  # a listed checkpoint is always complete
        assert os.path.getsize(run.file_path(entry["path"])) == entry["bytes"]
    # Once the heartbeat is older than the window, the run reads as stale (checked on a copy with an old heartbeat).
    copy = tmp_path / "copy" / run.id
    shutil.copytree(run.path, copy)
    status = json.loads((copy / fmt.STATUS_FILE).read_text())
    status["heartbeat"] = time.time() - fmt.STALE_AFTER_S - 1
    (copy / fmt.STATUS_FILE).write_text(json.dumps(status))
    stale = RunStore(tmp_path / "copy").run(run.id)
    assert stale.status == "stale" and stale.reason.startswith("no heartbeat for over 30 s")
    # A writer resuming the run (a later fit()) cuts off any torn tail: the old records and the new one read whole.
    writer = RunWriter.resume(copy, flush_interval=3600)
    writer.log("batch", {"step": len(steps) + 1, "epoch": 0, "batch": 0, "time": 0.0, "loss": 0.0, "accuracy": 0.0,
                         "batch_loss": 0.0, "batch_accuracy": 0.0, "lr": 0.0})
    writer.close()
    resumed = RunStore(tmp_path / "copy").run(run.id)
    assert resumed.batch_metrics()["step"].tolist() == [*steps, len(steps) + 1]
    assert resumed.status == "finished"


def test_the_kill_moments_are_spread_over_the_writes(sweep):
    """The sweep covers at least 20 distinct moments and did produce torn tails and interrupted renames."""
    root, exits, _, _ = sweep
    assert sum(exit["signal"] == signal.SIGKILL for job_id, exit in exits.items() if job_id in KILLS) >= 20
    torn = leftovers = 0
    for run in RunStore(root).runs():
        torn += raw(run)[-1] != b""
        for _, _, names in os.walk(run.path):
            leftovers += sum(name.startswith(".tmp-") for name in names)
    assert torn >= 2 and leftovers >= 3


@pytest.mark.parametrize(
    ("job_id", "status", "reason"),
    [
        ("ctrl-c", "interrupted", "KeyboardInterrupt"),
        ("exception", "failed", "ValueError: diverged at epoch 1"),
        ("keyboard-interrupt", "interrupted", "KeyboardInterrupt"),
        # Keras calls no hook when an exception leaves fit(); the caller still handles the one it caught (its except
        # block runs), so LiveMonitor finds it through its traceback and records its type and message.
        ("exception-caught-by-caller", "failed", "ValueError: diverged at epoch 1"),
        # A Ctrl-C is told apart from other caught exceptions: LiveMonitor notes the SIGINT itself.
        ("ctrl-c-caught-by-caller", "interrupted", "KeyboardInterrupt: Ctrl-C (SIGINT) during fit()"),
    ],
)
def test_an_exception_or_interrupt_inside_fit_is_recorded(sweep, job_id, status, reason):
    root, exits, _, log = sweep
    # Python ends on an uncaught KeyboardInterrupt by re-raising SIGINT; an exception exits with 1, a caught one 0.
    assert exits[job_id]["signal"] in (None, signal.SIGINT) and exits[job_id]["signal"] != signal.SIGKILL, log
    run = {run.name: run for run in RunStore(root).runs()}[job_id]
    assert run.status == status and run.reason == reason
    events = run.events()
    assert events["kind"].tolist()[-1] == status and events["message"].tolist()[-1] == reason
    check_records(run)
