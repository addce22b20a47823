"""batch.jsonl records from Keras's batch logs, including each batch's own value of running-mean metrics."""

from __future__ import annotations

import time
from typing import Any

from callbacks._metrics import mean_metric_keys


class BatchRecords:
    """Builds one record per logged batch; pure Python on floats, cheap enough for every batch.

    Keras logs running means since the epoch began; for mean-type metrics the batch's own value is
    `(b+1)*m_b - b*m_(b-1)` (exact for equal batch sizes). The batch before each logged one is kept, so the value is
    there even when `log_every` skips batches.

    Args:
        log_every: 1 logs every batch, N every N-th global step, 0 none.
    """

    def __init__(self, log_every: int) -> None:
        self.log_every = log_every
        self._metric_objects: list[Any] = []
        self._mean_keys: list[str] | None = None
        self._prev: tuple[int, dict[str, Any]] | None = None

    def begin_phase(self, metric_objects: list[Any]) -> None:
        """Forget the previous fit(): its metrics may differ (a recompile), and Keras has not built them yet."""
        self._metric_objects = metric_objects
        self._mean_keys = None
        self._prev = None

    def record(self, step: int, epoch: int, batch: int, logs: dict[str, Any]) -> dict[str, Any] | None:
        """The record for this batch, or None when `log_every` skips it."""
        every = self.log_every
        if every != 1 and (every == 0 or step % every):
            if every and (step + 1) % every == 0:
                self._prev = (batch, logs)
            return None
        if self._mean_keys is None:  # after the first train step, when Keras has built its compiled metrics
            self._mean_keys = mean_metric_keys(logs, self._metric_objects)
        record = {"step": step, "epoch": epoch, "batch": batch, "time": time.time()}
        record.update(logs)
        prev = self._prev
        if batch == 0:
            for key in self._mean_keys:
                record["batch_" + key] = logs.get(key)
        elif prev is not None and prev[0] == batch - 1:
            before = prev[1]
            for key in self._mean_keys:
                if key in logs and key in before:
                    record["batch_" + key] = (batch + 1) * logs[key] - batch * before[key]
        self._prev = (batch, logs)
        return record
