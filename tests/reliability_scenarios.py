"""What one forked training process of the reliability tests does (see tests/zygote.py).

A job is a dict: `scenario` names a function below, the other keys are its arguments. Every scenario trains the same
tiny model on the same data with the same seed, so runs with and without LiveMonitor can be compared weight for
weight. Results go to `job["result"]` as JSON when the scenario gets that far.

Fault injection for the kill sweep happens at the OS boundary, in the child only: a wrapper around `os.write` or
`os.replace` lets the real call happen (or most of it) and then sends SIGKILL to its own process, so the kill lands
at an exact point of a write, which an outside signal can only hit by chance.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import time
import warnings
from typing import Any

import keras
import numpy as np
from train_helpers import BATCH, data, mlp

from kerascope import LiveMonitor

SAMPLES = 256  # 8 steps per epoch at batch 32


BATCH_RECORD = re.compile(rb'\n?\{"step":\d+,"epoch":\d+,"batch":')


def run(job: dict[str, Any]) -> None:
    globals()[job["scenario"]](job)


def digest(model: keras.Model) -> str:
    h = hashlib.sha256()
    for weight in model.get_weights():
        h.update(np.ascontiguousarray(weight).tobytes())
    return h.hexdigest()


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# -- the kill sweep ----------------------------------------------------------------------------------------------


def install_kill(point: str, nth: int) -> None:
    """SIGKILL this process at the `nth` occurrence of `point` (an OS call made by the monitor's writers)."""
    count = {"n": 0}

    def due() -> bool:
        count["n"] += 1
        return count["n"] == nth

    if point == "partial_batch_write":
        real_write = os.write

        def write(fd: int, payload: Any) -> int:
            # batch.jsonl's records only: weight and activation records also begin with "step" and "epoch".
            if BATCH_RECORD.match(bytes(payload[:80])) and due():
                real_write(fd, bytes(payload[: len(payload) - 5]))  # all but the end of the last record
                kill_self()
            return real_write(fd, payload)

        os.write = write
        return
    suffix = {
        "before_status_replace": "status.json",
        "before_run_json_replace": "run.json",
        "before_checkpoint_replace": ".keras",
        "before_index_replace": "index.json",
        "before_summary_replace": "summary.txt",
    }[point]
    real_replace = os.replace

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if os.fspath(dst).endswith(suffix) and due():
            kill_self()
        real_replace(src, dst, **kwargs)

    os.replace = replace


class KillAt(keras.callbacks.Callback):
    """SIGKILL inside a training hook: after `step` global batches, or at the end of epoch `epoch`."""

    def __init__(self, step: int | None = None, epoch: int | None = None) -> None:
        super().__init__()
        self.step, self.epoch, self.seen = step, epoch, 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.seen += 1
        if self.seen == self.step:
            kill_self()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == self.epoch:
            kill_self()


class Raise(keras.callbacks.Callback):
    """Raise `error` at the end of epoch 1 (an exception or KeyboardInterrupt inside fit)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == 1:
            raise KeyboardInterrupt if self.error == "interrupt" else ValueError("diverged at epoch 1")


def killed(job: dict[str, Any]) -> None:
    """Train (killed from outside, by an injected OS-level kill, or by a hook), or fail / be interrupted."""
    if job.get("point"):
        install_kill(job["point"], job["nth"])
    x, y = data(samples=SAMPLES)
    extra = []
    if job.get("kill_step") or job.get("kill_epoch") is not None:
        extra.append(KillAt(job.get("kill_step"), job.get("kill_epoch")))
    if job.get("error"):
        extra.append(Raise(job["error"]))
    live_monitor = LiveMonitor(job["root"], name=job["id"], flush_interval=job.get("flush_interval", 0.05),
                          checkpoint=job.get("checkpoint"), monitor="loss", system_freq=0.2)
    model = mlp()
    epochs, epochs_done = job.get("epochs", 60), 0
    if job.get("phases"):  # a first fit() ends normally; the second one (phase 2) is the one that gets killed
        model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
        epochs_done = 2
    if job.get("caught"):
        try:
            model.fit(x, y, initial_epoch=epochs_done, epochs=epochs, batch_size=BATCH, verbose=0,
                      callbacks=[live_monitor, *extra])
        except (ValueError, KeyboardInterrupt):
            time.sleep(3)  # the caller went on; the monitor's system thread notices that fit() was left
        return
    model.fit(x, y, initial_epoch=epochs_done, epochs=epochs, batch_size=BATCH, verbose=0,
              callbacks=[live_monitor, *extra])


# -- write faults: same result as without the callback, one warning, nothing raised (unless strict) ---------------


class InjectLogs(keras.callbacks.Callback):
    """Put odd values into the logs that later callbacks (LiveMonitor) receive."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._inject(logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._inject(logs)

    @staticmethod
    def _inject(logs: dict[str, Any] | None) -> None:
        if logs is not None:
            logs.update(nan_metric=float("nan"), inf_metric=float("inf"), numpy_metric=np.float32(0.25),
                        vector_metric=np.arange(3.0), text_metric="high", none_metric=None,
                        object_metric=object())


class DeleteRunDir(keras.callbacks.Callback):
    def __init__(self, live_monitor: LiveMonitor) -> None:
        super().__init__()
        self.monitor = live_monitor

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == 1:
            while os.path.exists(self.monitor.run_dir):  # like `rm -rf`, again if the writer thread added a file
                shutil.rmtree(self.monitor.run_dir, ignore_errors=True)


class Recursive(dict):
    def __repr__(self) -> str:
        return "Recursive(...)"


def faulty(job: dict[str, Any]) -> None:
    """Train 4 epochs under one fault and record loss, weights, warnings and any exception."""
    fault = job["fault"]
    logdir = job["root"]
    hparams: dict[str, Any] = {"lr": 0.001}
    x, y = data(samples=SAMPLES)
    if fault == "unwritable":
        logdir = os.path.join(job["root"], "afile", "runs")  # a path below a regular file: ENOTDIR as root too
    if fault == "hparams":
        loop = Recursive()
        loop["self"] = loop
        hparams = {"fn": lambda v: v, "obj": object(), "array": np.ones((2, 2)), "set": {1, 2}, 3: "int key",
                   "nested": {"deep": [np.float32(1.5), (1, 2)]}, "loop": loop, "nan": float("nan")}
    callbacks: list[keras.callbacks.Callback] = []
    live_monitor = None
    if fault != "baseline":
        live_monitor = LiveMonitor(logdir, name=fault, hparams=hparams, flush_interval=0.05, system_freq=0.2,
                              checkpoint="last", monitor="loss", strict=job.get("strict", False),
                              activation_data=x[:16])
        callbacks = [InjectLogs(), live_monitor] if fault == "metrics" else [live_monitor]
        if fault == "delete_dir":
            callbacks.append(DeleteRunDir(live_monitor))
    if fault == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (job["fsize"], hard))
    model = mlp()
    result: dict[str, Any] = {"error": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            history = model.fit(x, y, epochs=4, batch_size=BATCH, verbose=0, callbacks=callbacks)
            result["loss"] = [float(v) for v in history.history["loss"]]
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
    if fault == "fsize":
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    result["weights"] = digest(model)
    result["warnings"] = [str(w.message) for w in caught if "LiveMonitor" in str(w.message)]
    result["run_dir"] = live_monitor.run_dir if live_monitor is not None else None
    with open(job["result"], "w", encoding="utf-8") as f:
        json.dump(result, f)


# -- concurrent writers ------------------------------------------------------------------------------------------


def train(job: dict[str, Any]) -> None:
    """A plain LiveMonitor training run, to completion."""
    x, y = data(samples=SAMPLES)
    live_monitor = LiveMonitor(job["root"], name=job["id"], flush_interval=0.02, system_freq=0.2)
    mlp().fit(x, y, epochs=job["epochs"], batch_size=BATCH, verbose=0, callbacks=[live_monitor])


def write(job: dict[str, Any]) -> None:
    """RunWriter by hand at a high rate, with records from a few bytes to 30 kB so appends straddle reads."""
    from kerascope import RunWriter

    rng = np.random.default_rng(abs(hash(job["id"])) % 2**32)
    writer = RunWriter(job["root"], name=job["id"], flush_interval=0.005)
    for step in range(1, job["records"] + 1):
        size = int(rng.choice([0, 10, 1000, 30000]))
        writer.log("batch", {"step": step, "epoch": 0, "batch": step - 1, "time": time.time(), "loss": step / 2,
                             "size": size, "pad": "x" * size})
        if step % 50 == 0:
            time.sleep(0.002)
    writer.close()
