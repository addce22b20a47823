"""Run setup of LiveMonitor: opening (or resuming) the run directory, the model card and the phase event."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import keras

from kerascope.callbacks import _lifecycle as lifecycle
from kerascope.callbacks import _model_card as card
from kerascope.callbacks._run_meta import environment, monitor_options, parameter_counts
from kerascope.monitor import format as fmt
from kerascope.monitor.writer import RunWriter


class RunSetup:
    """Mixin of LiveMonitor: the writer of the run and what is written once per `fit()` call."""

    log_dir: str
    name: str | None
    hparams: dict[str, Any]
    tags: list[str]
    notes: str
    flush_interval: float
    strict: bool
    run_dir: str | None
    params: dict[str, Any] | None
    _writer: RunWriter | None
    _disabled: bool
    _phase: int
    _epoch: int
    _card_thread: threading.Thread | None

    def _open_writer(self, model: keras.Model, phase_meta: dict[str, Any]) -> bool:
        try:
            if self.run_dir is None:
                meta = {
                    "process_index": 0,
                    **environment(),
                    "hparams": fmt.to_jsonable(self.hparams),
                    "tags": self.tags,
                    "notes": self.notes,
                    "options": monitor_options(self),
                    **phase_meta,
                }
                self._writer = RunWriter(
                    self.log_dir,
                    self.name or model.name,
                    meta=meta,
                    flush_interval=self.flush_interval,
                    on_error=self._warn_once,
                )
                self.run_dir = self._writer.run_dir
            else:
                self._writer = RunWriter.resume(
                    self.run_dir, flush_interval=self.flush_interval, on_error=self._warn_once
                )
                self._writer.update_meta(**phase_meta)
        except OSError as exc:
            if self.strict:
                raise
            self._disabled = True
            warnings.warn(
                f"LiveMonitor: cannot write a run under {self.log_dir!r} ({lifecycle.describe(exc)}); "
                "monitoring is off for this callback, training continues",
                RuntimeWarning,
                stacklevel=4,
            )
            return False
        return True

    def _describe_model(self, model: keras.Model) -> None:
        """Parameter counts (run.json, phase event) and the model card."""
        self._described = True
        self._trainable_counts = parameter_counts(model)
        if self.strict:  # synchronously, so that errors raise in the training thread
            card.write_model_card(self._writer, model, self._phase, self._skip)
            return
        # summary() and plot_model (which runs graphviz) take up to a second: keep them off the training thread.
        self._card_thread = threading.Thread(
            target=self._call,
            args=("model card", card.write_model_card, self._writer, model, self._phase, self._skip),
            name="kerascope-model-card",
            daemon=True,
        )
        self._card_thread.start()

    def _emit_phase_event(self) -> None:
        """The phase event, once per fit(), as soon as both the first epoch and the parameter counts are known."""
        if not self._phase_event_pending or not self._described:
            return
        self._phase_event_pending = False
        trainable, non_trainable = self._trainable_counts
        epochs = (self.params or {}).get("epochs")
        initial_epoch = self._epoch if self._phase_initial_epoch is None else self._phase_initial_epoch
        self._event(
            "phase",
            f"phase {self._phase}: epochs {initial_epoch}-{epochs}, {trainable:,} trainable parameters",
            step=self._phase_start_step,
            phase=self._phase,
            trainable_params=trainable,
            non_trainable_params=non_trainable,
            initial_epoch=initial_epoch,
            epochs=epochs,
            lr=self._phase_lr,
        )
