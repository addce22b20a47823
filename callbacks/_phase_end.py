"""How a `fit()` call's phase ends in LiveMonitor: normally, by an exception, or unnoticed by Keras."""

from __future__ import annotations

import threading
from typing import Any

from kerascope.callbacks import _lifecycle as lifecycle
from kerascope.callbacks._system import SystemSampler
from kerascope.monitor import format as fmt
from kerascope.monitor.writer import RunWriter


class PhaseEnd:
    """Mixin of LiveMonitor: closes the phase exactly once, whichever of the ways below gets there first."""

    _writer: RunWriter
    _active: bool
    _lifecycle_lock: threading.RLock
    _fit_frame: Any
    _fit_thread: int
    _shell_error_at_begin: BaseException | None
    _fit_started: float  # time.monotonic() when the phase began
    _sampler: SystemSampler | None
    _card_thread: threading.Thread | None
    _step: int
    _epoch: int

    def _end_phase(self, status: str, reason: str | None = None) -> None:
        with self._lifecycle_lock:
            if not self._active:
                return
            self._active = False
            self._fit_frame = None  # the frame holds fit()'s locals (the data): let them go
            lifecycle.unregister(self)
        if self._sampler is not None:
            self._sampler.stop()
        if self._card_thread is not None and self._card_thread is not threading.current_thread():
            self._card_thread.join(timeout=30)
        self._writer.update_status(epoch=self._epoch, step=self._step)
        self._writer.close(status, reason)

    def _abort(self, exc: BaseException | None, message: str | None = None) -> None:
        """End the phase as failed / interrupted: fit() raised, or the process exits without on_train_end."""
        with self._lifecycle_lock:
            if not self._active:
                return
            if exc is None and lifecycle.sigint_since(self._fit_started):  # Ctrl-C, caught by the caller
                exc, message = KeyboardInterrupt("Ctrl-C (SIGINT) during fit()"), None
            kind = fmt.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else fmt.FAILED
            reason = message or lifecycle.describe(exc)
            self._event(kind, reason, error=reason)
            self._end_phase(kind, reason)

    def _tick(self) -> None:
        """From the system thread: notice that fit() was left by an exception that a caller caught."""
        with self._lifecycle_lock:
            frame = self._fit_frame
            if not self._active or frame is None or lifecycle.frame_alive(self._fit_thread, frame):
                return
            error = lifecycle.last_shell_error()
            if error is not None and error is not self._shell_error_at_begin:
                self._abort(error)
            else:
                self._abort(
                    None,
                    "fit() ended without reaching on_train_end: an exception left fit() and was caught by the caller",
                )
