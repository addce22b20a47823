"""Events, skips and warnings: how LiveMonitor tells the run (and the user) what happened."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

from kerascope.callbacks._lifecycle import describe
from kerascope.monitor.writer import RunWriter

MAX_WARNING_EVENTS = 20


class RunReporting:
    """Mixin of LiveMonitor: writes events with the current step/epoch and turns errors into one warning.

    Monitoring must never stop training: `_call` runs a piece of work and, on error, warns once per monitor and
    records a `warning` event once per (place, error type); with `strict` it re-raises instead.
    """

    strict: bool
    _writer: RunWriter | None
    _step: int
    _epoch: int
    _stop_reported: bool

    def _init_reporting(self) -> None:
        self._warned = False
        self._warning_events: set[str] = set()
        self._skipped: set[str] = set()
        self._nan_reported: set[str] = set()

    def _event(self, kind: str, message: str, *, step: int | None = None, **data: Any) -> None:
        record: dict[str, Any] = {
            "time": time.time(),
            "step": self._step if step is None else step,
            "epoch": self._epoch,
            "kind": kind,
            "message": message,
        }
        if data:
            record["data"] = data
        self._writer.log("events", record)

    def _skip(self, what: str, message: str) -> None:
        """Record once per run that something could not be recorded, and how to enable it."""
        if what not in self._skipped:
            self._skipped.add(what)
            self._event("skipped", message, what=what)

    def _check_nan(self, logs: dict[str, Any]) -> None:
        """A `nan` event the first time (per fit() call) each metric is NaN or infinite."""
        for key, value in logs.items():
            if isinstance(value, float) and not math.isfinite(value) and key not in self._nan_reported:
                self._nan_reported.add(key)
                self._event("nan", f"{key} is {value} at step {self._step}", metric=key, value=value)

    def _check_early_stop(self, model: Any) -> None:
        if self._stop_reported or not getattr(model, "stop_training", False):
            return
        self._stop_reported = True
        self._event("early_stop", f"training stopped early at epoch {self._epoch}", epoch=self._epoch)

    def _lr_changed(self, change: tuple[float, float] | None, when: str) -> None:
        if change is not None:
            old, new = change
            self._event("lr_change", f"learning rate {old:.6g} -> {new:.6g} ({when})", old=old, new=new)

    def _call(self, where: str, func: Callable[..., Any], *args: Any) -> None:
        try:
            func(*args)
        except Exception as exc:
            self._failed(where, exc)

    def _failed(self, where: str, exc: Exception) -> None:
        if self.strict:
            raise exc
        message = f"{where} failed: {describe(exc)}"
        self._warn_once(message)
        key = f"{where}:{type(exc).__name__}"
        if (
            self._writer is not None
            and key not in self._warning_events
            and len(self._warning_events) < MAX_WARNING_EVENTS
        ):
            self._warning_events.add(key)
            self._event("warning", message)

    def _warn_once(self, message: str) -> None:
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"LiveMonitor: {message}. Training continues; the run may miss some records (strict=True raises).",
            RuntimeWarning,
            stacklevel=3,
        )
