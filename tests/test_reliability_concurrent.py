"""8 processes write into one runs root at once (4 real LiveMonitor trainings, 4 RunWriters appending records of up
to 30 kB at a high rate) while a RunStore in this process tails them, as the dashboard does.

No torn or half record is ever returned; what a read returned is always a prefix of what a later read returns; and
once the writers are done every record is there exactly once.
"""

from __future__ import annotations

import time

from zygote import Zygote

from kerascope import RunStore

TRAININGS, WRITERS = 4, 4
EPOCHS, STEPS_PER_EPOCH = 6, 8
RECORDS = 1500


def check_snapshot(run, previous: int) -> int:
    """Whole records in order, never fewer than before; returns how many there are."""
    frame = run.batch_metrics()
    if not len(frame):
        return previous
    steps = frame["step"].tolist()
    assert steps == list(range(1, len(steps) + 1)), (run.name, steps[-5:])
    assert len(steps) >= previous, (run.name, len(steps), previous)
    assert frame["loss"].notna().all() and frame["time"].notna().all()
    if "size" in frame:  # a RunWriter record: its payload arrived whole
        assert (frame["loss"] == frame["step"] / 2).all()
    assert not [p for p in run.problems if "malformed" in p or "longer" in p], run.problems
    return len(steps)


def test_eight_writers_and_a_tailing_reader(tmp_path):
    root = str(tmp_path / "runs")
    jobs = [{"id": f"train-{i}", "scenario": "train", "root": root, "epochs": EPOCHS} for i in range(TRAININGS)]
    jobs += [{"id": f"write-{i}", "scenario": "write", "root": root, "records": RECORDS} for i in range(WRITERS)]
    store = RunStore(root)
    seen: dict[str, int] = {}
    reads = 0
    with Zygote(tmp_path, jobs, parallel=len(jobs)) as zygote:
        deadline = time.monotonic() + 240
        while len(zygote.exited) < len(jobs):
            assert time.monotonic() < deadline, zygote.log_tail()
            for run in store.runs():
                seen[run.name] = check_snapshot(run, seen.get(run.name, 0))
                reads += 1
        exits = {job["id"]: zygote.wait_exit(job["id"]) for job in jobs}
    assert all(exit["code"] == 0 for exit in exits.values()), (exits, zygote.log_tail())
    assert reads > len(jobs)  # the store did read while they wrote
    runs = {run.name: run for run in RunStore(root).runs()}
    assert sorted(runs) == sorted(job["id"] for job in jobs)
    for name, run in runs.items():
        expected = EPOCHS * STEPS_PER_EPOCH if name.startswith("train") else RECORDS
        assert run.batch_metrics()["step"].tolist() == list(range(1, expected + 1)), name
        assert run.status == "finished" and run.problems == []
        if name.startswith("train"):
            assert run.epoch_metrics()["epoch"].tolist() == list(range(EPOCHS))
        # The tailing store, which read the run piece by piece, ends with exactly the same records.
        assert store.run(run.id).batch_metrics().equals(run.batch_metrics())
