"""Checkpoints: best / last / every epoch, saved under a temporary name and renamed, indexed in index.json."""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

import keras

from kerascope.monitor import RunWriter
from kerascope.monitor import format as fmt


def check_checkpoint_options(checkpoint: str | None, mode: str) -> None:
    """Raise ValueError for a `checkpoint` policy or `mode` that LiveMonitor does not know."""
    if checkpoint is not None and checkpoint not in fmt.CHECKPOINT_POLICIES:
        raise ValueError(f"checkpoint must be one of {fmt.CHECKPOINT_POLICIES} or None, got {checkpoint!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f'mode must be "auto", "min" or "max", got {mode!r}')


class CheckpointKeeper:
    """Save the model at epoch end according to a policy and keep checkpoints/index.json up to date.

    Args:
        writer: the run's writer (index.json goes through `write_json`, atomically).
        policy: "best" (best.keras when `monitor` improved), "last" (last.keras every epoch), "all" (one per epoch).
        monitor: the log key compared for "best" and `is_best`.
        mode: "min" or "max".
    """

    def __init__(self, writer: RunWriter, policy: str, monitor: str, mode: str) -> None:
        if policy not in fmt.CHECKPOINT_POLICIES:
            raise ValueError(f"checkpoint must be one of {fmt.CHECKPOINT_POLICIES} or None, got {policy!r}")
        self.writer = writer
        self.policy = policy
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        self.index: list[dict[str, Any]] = []

    def attach(self, writer: RunWriter) -> None:
        """Continue with a reopened writer (a later fit() of the same run): the best value and index carry over."""
        self.writer = writer

    def continue_from(self, entries: list[dict[str, Any]]) -> None:
        """Start from the index of a resumed run (the entries before its restore point) and their best value."""
        self.index = list(entries)
        best = [fmt.as_float(entry.get("value")) for entry in self.index if entry.get("is_best")]
        self.best = best[-1] if best else None

    def _improved(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def save(self, model: keras.Model, epoch: int, step: int, logs: dict[str, Any]) -> dict[str, Any] | None:
        """Save if the policy says so; returns the index entry written, or None when nothing was saved."""
        value = fmt.as_float(logs.get(self.monitor))
        is_best = self._improved(value)
        if self.policy == "best" and not is_best:
            return None
        if is_best:
            self.best = value
        filename = {"best": "best.keras", "last": "last.keras"}.get(self.policy, f"epoch-{epoch + 1:04d}.keras")
        relpath = f"{fmt.CHECKPOINT_DIR}/{filename}"
        size = self._write(model, os.path.join(self.writer.run_dir, relpath))
        values = (epoch, step, relpath, self.monitor, value, is_best, size, time.time())
        entry = dict(zip(fmt.CHECKPOINT_COLUMNS, values, strict=True))
        if self.policy == "all":
            if is_best:
                for older in self.index:
                    older["is_best"] = False
        else:
            self.index = [row for row in self.index if row["path"] != relpath]
        self.index.append(entry)
        self.writer.write_json(fmt.CHECKPOINT_INDEX_FILE, self.index)
        return entry

    @staticmethod
    def _write(model: keras.Model, path: str) -> int:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.mkdir(directory)  # not makedirs: a deleted run directory must not come back half-empty
        # model.save writes in place; a temporary name in the same directory makes the final rename atomic.
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=directory)
        os.close(fd)
        try:
            model.save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return os.path.getsize(path)
