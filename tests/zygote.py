"""Start many real training processes cheaply: one process pays the TensorFlow import, then forks one child per job.

TensorFlow takes ~6 s to import; the reliability tests need dozens of training processes that are killed, starved
of disk or interrupted. A zygote imports keras/tensorflow/callbacks once (no TF op runs before the fork, so forking
is safe) and forks each job as its own process with its own pid: signals sent to a child hit a real training process.

Protocol: `python tests/zygote.py JOBS.json` prints one JSON line per event on stdout,
`{"event": "started", "id": ..., "pid": ...}` and `{"event": "exited", "id": ..., "code": ..., "signal": ...}`.
At most `parallel` jobs run at once. Each job calls `reliability_scenarios.run(job)` in the child.

Example:
```python
with Zygote(tmp_path, [{"id": "a", "scenario": "train", ...}], parallel=4) as zygote:
    pid = zygote.pid("a")
    os.kill(pid, signal.SIGKILL)
    assert zygote.wait_exit("a")["signal"] == signal.SIGKILL
```
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)


class Zygote:
    """The test-side handle: starts the zygote process and follows its events."""

    def __init__(self, workdir: str | os.PathLike[str], jobs: list[dict[str, Any]], parallel: int = 4) -> None:
        self.jobs_file = os.path.join(os.fspath(workdir), "zygote-jobs.json")
        self.log_file = os.path.join(os.fspath(workdir), "zygote-stderr.log")
        with open(self.jobs_file, "w", encoding="utf-8") as f:
            json.dump({"parallel": parallel, "jobs": jobs}, f)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS]), TF_CPP_MIN_LOG_LEVEL="3")
        self._log = open(self.log_file, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(TESTS, "zygote.py"), self.jobs_file],
            stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
        )
        self.started: dict[str, int] = {}
        self.exited: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._follow, daemon=True)
        self._reader.start()

    def _follow(self) -> None:
        for line in self.process.stdout:
            event = json.loads(line)
            with self._changed:
                if event["event"] == "started":
                    self.started[event["id"]] = event["pid"]
                else:
                    self.exited[event["id"]] = event
                self._changed.notify_all()
            self.events.put(event)

    def _wait(self, predicate, timeout: float, what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout=timeout):
                raise AssertionError(f"timed out waiting for {what}; zygote log: {self.log_tail()}")

    def pid(self, job_id: str, timeout: float = 120) -> int:
        self._wait(lambda: job_id in self.started, timeout, f"job {job_id} to start")
        return self.started[job_id]

    def wait_exit(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        self._wait(lambda: job_id in self.exited, timeout, f"job {job_id} to exit")
        return self.exited[job_id]

    def running(self, job_id: str) -> bool:
        with self._changed:
            return job_id in self.started and job_id not in self.exited

    def log_tail(self, chars: int = 3000) -> str:
        with open(self.log_file, encoding="utf-8", errors="replace") as f:
            return f.read()[-chars:]

    def close(self, timeout: float = 180) -> None:
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _serve(jobs_file: str) -> None:
    with open(jobs_file, encoding="utf-8") as f:
        spec = json.load(f)
    import reliability_scenarios  # imports keras and tensorflow once, before any fork

    pending = list(spec["jobs"])
    running: dict[int, str] = {}
    while pending or running:
        while pending and len(running) < spec["parallel"]:
            job = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                # The child: its exceptions end it through sys.excepthook, like an uncaught error in a script.
                sys.stdin.close()
                # Python's own Ctrl-C handler, as in a script started from a terminal: a zygote started in the
                # background (`cmd &` without job control) inherits SIGINT ignored, and the Ctrl-C jobs would not stop.
                signal.signal(signal.SIGINT, signal.default_int_handler)
                reliability_scenarios.run(job)
                sys.stdout.flush()
                os._exit(0)
            running[pid] = job["id"]
            _emit({"event": "started", "id": job["id"], "pid": pid})
        pid, status = os.wait()
        job_id = running.pop(pid, None)
        if job_id is not None:
            _emit({
                "event": "exited", "id": job_id, "time": time.time(),
                "code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            })


if __name__ == "__main__":
    _serve(sys.argv[1])
