"""batch.jsonl records from Keras's batch logs, including each batch's own value of running-mean metrics."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from kerascope.callbacks._metrics import mean_metric_keys


def batch_interval(update_freq: str | int) -> int:
    """LiveMonitor's `update_freq` as "log every N-th batch" (0: no batch records)."""
    if update_freq == "batch":
        return 1
    if update_freq == "epoch":
        return 0
    if isinstance(update_freq, int) and not isinstance(update_freq, bool) and update_freq >= 1:
        return update_freq
    raise ValueError(f'update_freq must be "batch", "epoch" or a positive int, got {update_freq!r}')


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


class BatchOrder:
    """Puts batch ends back in training order.

    On JAX and torch Keras dispatches `on_train_batch_end` of an `async_safe` callback to a thread pool, so the ends
    can arrive out of order, while `on_train_batch_begin` is always called in order on the training thread. The
    begins give the order; an end is released once every batch begun before it has ended. With
    `steps_per_execution=k` Keras reports one begin (first batch) and one end (last batch) per k batches.

    Example:
    ```python
    order = BatchOrder()
    order.begin(0); order.begin(1)
    order.end(1, {"loss": 0.4})  # [] : batch 0 has not ended yet
    order.end(0, {"loss": 0.5})  # [(0, {...}), (1, {...})]
    ```
    """

    def __init__(self) -> None:
        self._begun: deque[int] = deque()
        self._ended: dict[int, dict[str, Any]] = {}

    def reset(self) -> None:
        self._begun.clear()
        self._ended.clear()

    def begin(self, batch: int) -> None:
        self._begun.append(batch)

    def end(self, batch: int, logs: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """The batch ends that are now in order to be recorded (hooks called without begins pass straight through)."""
        if not self._begun:
            return [(batch, logs)]
        self._ended[batch] = logs
        ready = []
        while self._begun and self._ended:
            first = self._begun[0]
            limit = self._begun[1] if len(self._begun) > 1 else None
            # The end of the run of batches that began at `first` lies before the next begin.
            end = next((b for b in self._ended if b >= first and (limit is None or b < limit)), None)
            if end is None:
                break
            self._begun.popleft()
            ready.append((end, self._ended.pop(end)))
        return ready

    def leftovers(self) -> list[tuple[int, dict[str, Any]]]:
        """At epoch end (Keras has waited for every dispatched hook): whatever is still held, in batch order."""
        held = sorted(self._ended.items())
        self.reset()
        return held
