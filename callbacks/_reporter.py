"""RunReporter: how LiveMonitor tells the run (events) and the user (one warning) what happened."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from kerascope.callbacks._lifecycle import describe
from kerascope.monitor import RunWriter
from kerascope.monitor import format as fmt

MAX_WARNING_EVENTS = 20


class RunReporter:
    """Writes events at the current training position and turns monitoring errors into one warning.

    Monitoring must never stop training: `call` runs a piece of work and, on error, warns once per run and records a
    `warning` event once per (place, error type); with `strict` it re-raises instead. What is reported once per run
    (skips, the warning) survives repeated fit() calls; NaN events are once per metric per fit().

    Args:
        strict: re-raise errors instead of warning (for debugging the monitor itself).
        position: returns the (global step, epoch) that events are stamped with.

    Example:
    ```python
    reporter = RunReporter(strict=False, position=lambda: (step, epoch))
    reporter.writer = RunWriter("runs", "by hand")
    reporter.call("weight statistics", compute_and_log)  # an error becomes a warning and a `warning` event
    reporter.skip("activations", "no activation statistics: pass activation_data=...")
    ```
    """

    def __init__(self, strict: bool, position: Callable[[], tuple[int, int]]) -> None:
        self.strict = strict
        self.position = position
        self.writer: RunWriter | None = None  # the writer of the current fit(); None until a run directory exists
        self._warned = False
        self._warning_events: set[str] = set()
        self._skipped: set[str] = set()
        self._nan_reported: set[str] = set()

    def begin_phase(self, writer: RunWriter) -> None:
        """Report into `writer` from now on; NaN events may fire again for the new fit()."""
        self.writer = writer
        self._nan_reported = set()

    def event(
        self, kind: str, message: str, *, step: int | None = None, data: dict[str, Any] | None = None, **fields: Any
    ) -> None:
        """An events.jsonl record at the current position (or at `step`); `fields` join `data`."""
        now_step, epoch = self.position()
        self.writer.event(kind, message, step=now_step if step is None else step, epoch=epoch, data=data, **fields)

    def skip(self, what: str, message: str) -> None:
        """Record once per run that something could not be recorded, and how to enable it."""
        if what not in self._skipped:
            self._skipped.add(what)
            self.event(fmt.EVENT_SKIPPED, message, what=what)

    def skipped(self, what: str) -> bool:
        return what in self._skipped

    def check_nan(self, logs: dict[str, Any]) -> None:
        """A `nan` event the first time (per fit() call) each metric is NaN or infinite."""
        for key, value in logs.items():
            if isinstance(value, float) and not math.isfinite(value) and key not in self._nan_reported:
                self._nan_reported.add(key)
                step, _ = self.position()
                self.event(fmt.EVENT_NAN, f"{key} is {value} at step {step}", metric=key, value=value)

    def lr_change(self, change: tuple[float, float] | None, when: str) -> None:
        """An `lr_change` event when `change` is (old, new)."""
        if change is not None:
            old, new = change
            self.event(fmt.EVENT_LR_CHANGE, f"learning rate {old:.6g} -> {new:.6g} ({when})", old=old, new=new)

    def call(self, where: str, func: Callable[..., Any], *args: Any) -> None:
        """Run `func(*args)`; an exception becomes a warning (see `failed`)."""
        try:
            func(*args)
        except Exception as exc:
            self.failed(where, exc)

    def failed(self, where: str, exc: Exception) -> None:
        if self.strict:
            raise exc
        message = f"{where} failed: {describe(exc)}"
        self.warn_once(message)
        key = f"{where}:{type(exc).__name__}"
        fresh = key not in self._warning_events and len(self._warning_events) < MAX_WARNING_EVENTS
        if self.writer is not None and fresh:
            self._warning_events.add(key)
            self.event(fmt.EVENT_WARNING, message)

    def warn_once(self, message: str) -> None:
        """One RuntimeWarning per run, however many errors follow (they are in the events)."""
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"LiveMonitor: {message}. Training continues; the run may miss some records (strict=True raises).",
            RuntimeWarning,
            stacklevel=3,
        )
