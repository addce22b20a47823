"""LiveMonitor: the Keras callback that writes a Kerascope run directory (format: docs/run-format.md)."""

from __future__ import annotations

import threading
import time
from typing import Any

import keras

from kerascope.callbacks import _lifecycle as lifecycle
from kerascope.callbacks._batches import BatchOrder, BatchRecords, batch_interval
from kerascope.callbacks._checkpoints import CheckpointKeeper, check_checkpoint_options
from kerascope.callbacks._distributed import is_chief
from kerascope.callbacks._epoch_extras import EpochExtras
from kerascope.callbacks._learning_rate import LearningRateTracker
from kerascope.callbacks._phase_end import PhaseEnd
from kerascope.callbacks._reporting import RunReporting
from kerascope.callbacks._run_meta import model_info, optimizer_info
from kerascope.callbacks._run_setup import RunSetup
from kerascope.callbacks._statistics import ActivationProbe
from kerascope.callbacks._system import SystemSampler
from kerascope.monitor import format as fmt
from kerascope.monitor.writer import RunWriter


class LiveMonitor(RunSetup, PhaseEnd, EpochExtras, RunReporting, keras.callbacks.Callback):
    """Record a training run into a run directory that the Kerascope dashboard shows live.

    One directory per run under `log_dir`, with per-batch and per-epoch metrics, the learning rate at every batch
    (whatever sets it), activation and weight statistics, a model card, checkpoints, events (phases, early stopping,
    LR changes, NaNs) and a status with a heartbeat. Repeated `fit()` calls with the same instance continue the same
    run as phases 2, 3, ... (e.g. fine-tuning after unfreezing). Monitoring never stops training: an error inside
    the callback becomes one warning (and a `warning` event) unless `strict=True`. In distributed training only the
    chief process writes.

    Keras calls no hook when an exception leaves `fit()`, so the status is kept honest another way: an uncaught
    exception (`sys.excepthook`, `threading.excepthook`) marks the run `failed` with its reason, or `interrupted` for
    KeyboardInterrupt; an exception that a caller catches (a notebook cell, try/except) is noticed within a system
    tick (`system_freq`, at most 2 s) because the `fit()` frame left the stack; exiting during `fit()` (`atexit`)
    marks it `failed`. After `kill -9` the heartbeat stops and readers show the run as `stale`.

    Args:
        log_dir: the runs root; the run directory `log_dir/<time>-<name>-<hex>` is created at the first fit().
        name: the run's display name (any text); defaults to the model's name.
        hparams: hyperparameters to record (a dict; values that are not JSON are stored as their repr).
        tags: a list of short labels.
        notes: free text.
        update_freq: `"batch"` (every batch), an int N (every N-th batch) or `"epoch"` (no batch records).
        activation_data: inputs (as `model.predict` takes them, e.g. `x_val[:256]`) on which per-layer activation
            statistics are computed in inference mode. None records no activations (an event says so).
        activation_freq: take activation statistics every this many epochs (0 turns them off).
        weight_freq: take weight statistics every this many epochs (0 turns them off).
        checkpoint: `"best"`, `"last"`, `"all"` or None: which `.keras` checkpoints to keep in the run.
        monitor: the metric compared for `"best"` and the `is_best` flag, like `ModelCheckpoint`.
        mode: `"auto"`, `"min"` or `"max"` for `monitor`.
        system_freq: seconds between CPU / RSS / GPU memory samples (0 turns them off).
        flush_interval: seconds between background appends; a crash loses at most this much data.
        strict: re-raise errors from the callback instead of warning (for debugging the monitor itself).

    Example:

    ```python
    from kerascope import LiveMonitor

    monitor = LiveMonitor("runs", name="baseline", hparams={"dropout": 0.2}, activation_data=x_val[:256],
                          checkpoint="best")
    model.fit(x, y, validation_data=(x_val, y_val), epochs=10, callbacks=[monitor])
    print(monitor.run_dir)
    # then: python -m kerascope --logdir runs
    ```
    """

    def __init__(
        self,
        log_dir: str = "runs",
        name: str | None = None,
        *,
        hparams: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        update_freq: str | int = "batch",
        activation_data: Any = None,
        activation_freq: int = 1,
        weight_freq: int = 1,
        checkpoint: str | None = None,
        monitor: str = "val_loss",
        mode: str = "auto",
        system_freq: float = 2.0,
        flush_interval: float = 0.5,
        strict: bool = False,
    ) -> None:
        super().__init__()
        log_every = batch_interval(update_freq)
        check_checkpoint_options(checkpoint, mode)
        # Batch hooks only touch plain Python state, so Keras may run them off the main thread (JAX, torch).
        self.async_safe = True
        self.log_dir = log_dir
        self.name = name
        self.hparams = dict(hparams or {})
        self.tags = [str(tag) for tag in (tags or [])]
        self.notes = notes or ""
        self.update_freq = update_freq
        self.activation_data = activation_data
        self.activation_freq = activation_freq
        self.weight_freq = weight_freq
        self.checkpoint = checkpoint
        self.monitor = monitor
        self.mode = mode
        self.system_freq = system_freq
        self.flush_interval = flush_interval
        self.strict = strict
        self.run_dir: str | None = None

        self._init_reporting()
        self._writer: RunWriter | None = None
        self._disabled = False
        self._active = False  # inside a fit() call that is being recorded
        self._lifecycle_lock = threading.RLock()
        self._batch_lock = threading.Lock()
        self._phase = 0
        self._step = 0
        self._epoch = 0
        self._lr = LearningRateTracker()
        self._batches = BatchRecords(log_every)
        self._order = BatchOrder()
        self._checkpoints: CheckpointKeeper | None = None
        self._sampler: SystemSampler | None = None
        self._card_thread: threading.Thread | None = None
        self._fit_frame: Any = None

    # -- fit() boundaries --------------------------------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._disabled:
            return
        if self._active:
            self._abort(None, "a new fit() began before the previous one reached on_train_end")
        self._call("on_train_begin", self._train_begin)

    def _train_begin(self) -> None:
        if not is_chief():
            self._disabled = True  # only the chief process writes; the others create nothing
            return
        model = self.model
        params = dict(self.params or {})
        # run.json is written once per fit(): everything it needs is gathered first.
        phase_meta = {"fit_params": fmt.to_jsonable(params), "optimizer": optimizer_info(model.optimizer)}
        if model.built:  # a subclassed model is built by its first train step: described at the first epoch end
            phase_meta["model"] = model_info(model)
        if not self._open_writer(model, phase_meta):
            return
        writer = self._writer
        self._phase += 1
        self._phase_start_step = self._epoch_start_step = self._step
        self._phase_event_pending = True
        self._phase_initial_epoch: int | None = None
        self._epochs_done = 0
        self._stop_reported = False
        self._nan_reported = set()
        self._lr_pending = True
        self._probe: ActivationProbe | None = None
        self._described = False
        # From here on the phase is live: errors below become warnings, and a failed fit() is noticed.
        self._shell_error_at_begin = lifecycle.last_shell_error()
        self._fit_thread, self._fit_frame = lifecycle.fit_frame()
        self._fit_started = time.monotonic()
        lifecycle.watch_sigint()
        self._active = True
        lifecycle.register(self)
        self._sampler = SystemSampler(
            lambda record: writer.log("system", record), self.system_freq, self._tick, self._warn_once
        )
        self._sampler.start()

        self._call("learning rate", self._lr.begin_phase, model.optimizer, self._step)
        self._phase_lr = self._lr.current()
        self._metric_objects = list(model.metrics)
        self._batches.begin_phase(self._metric_objects)
        writer.update_status(
            phase=self._phase,
            epoch=self._epoch,
            step=self._step,
            epochs=params.get("epochs"),
            steps_per_epoch=params.get("steps"),
        )
        self._event("train_begin", f"fit() call {self._phase} began", phase=self._phase)
        self._lr_changed(self._lr.check(), f"fit() call {self._phase} begins")
        if self.checkpoint:
            if self._checkpoints is None:
                # mode="auto" is resolved at the first save: Keras builds the compiled metrics in the first step.
                self._checkpoints = CheckpointKeeper(writer, self.checkpoint, self.monitor, self.mode)
            self._checkpoints.attach(writer)
        if self.activation_data is None and self.activation_freq:
            self._skip("activations", "no activation statistics: pass LiveMonitor(activation_data=x_val[:256])")
        if model.built:
            self._describe_model(model)
        writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._active:
            self._call("on_train_end", self._train_end)
            self._end_phase(fmt.FINISHED)

    def _train_end(self) -> None:
        model = self.model
        self._emit_phase_event()
        self._lr_changed(self._lr.check(), "after training")
        self._check_early_stop(model)
        self._event(
            "train_end",
            f"fit() call {self._phase} ended after {self._epochs_done} epoch(s)",
            phase=self._phase,
            epochs_done=self._epochs_done,
        )

    # -- epochs ----------------------------------------------------------------------------------------------

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._active:
            self._call("on_epoch_begin", self._epoch_begin, epoch)

    def _epoch_begin(self, epoch: int) -> None:
        self._epoch = epoch
        # The epoch in progress, as the dashboard's progress and ETA read it (an existing key: safe while the writer
        # thread serializes the dict).
        self._writer.status["epoch"] = epoch
        self._epoch_start_step = self._step
        self._lr_pending = True
        self._order.reset()
        if self._phase_initial_epoch is None:
            self._phase_initial_epoch = epoch
        self._emit_phase_event()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._active:
            return
        logs = logs or {}
        with self._batch_lock:
            for ended, ended_logs in self._order.leftovers():
                self._call("on_train_batch_end", self._batch_end, ended, ended_logs)
        self._call("on_epoch_end", self._epoch_end, epoch, logs)
        model = self.model  # on JAX this syncs the trained state into the variables, once per epoch
        self._epoch_extras(model, epoch, logs)
        self._call("on_epoch_end", self._check_early_stop, model)
        self._call("flush", self._flush_epoch, epoch)

    def _epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self._epochs_done += 1
        if not self._described:
            self._writer.update_meta(model=model_info(self.model))
            self._describe_model(self.model)
            self._emit_phase_event()
        record: dict[str, Any] = {"epoch": epoch, "step": self._step, "time": time.time(), "phase": self._phase}
        record.update(logs)
        lr = self._lr.at_step(self._step)
        if lr is not None:
            record["lr"] = lr
        self._check_nan(logs)
        self._writer.log("epoch", record)
        self._lr_changed(self._lr.check(), f"after epoch {epoch}")  # ReduceLROnPlateau, when it ran before this

    def _flush_epoch(self, epoch: int) -> None:
        self._writer.update_status(epoch=epoch, step=self._step)
        self._writer.flush()
        if self.strict and self._writer.errors:
            raise OSError(self._writer.errors[0])

    # -- batches (hot path: plain Python, no model access, no I/O) --------------------------------------------

    def _start_epoch_lr(self) -> None:
        self._lr_changed(self._lr.start_epoch(), f"epoch {self._epoch} begins")

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._active:
            return
        # The training thread, in order, before the batch's update: the float LR is read here once per epoch, after
        # every callback's on_epoch_begin (LearningRateScheduler may come after this one) and while JAX still has
        # the variables attached.
        if self._lr_pending:
            self._lr_pending = False
            self._call("learning rate", self._start_epoch_lr)
        self._order.begin(batch)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._active:
            return
        try:
            with self._batch_lock:
                for ended, ended_logs in self._order.end(batch, logs or {}):
                    self._batch_end(ended, ended_logs)
        except Exception as exc:
            self._failed("on_train_batch_end", exc)

    def _batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        if self._lr_pending:  # hooks called without on_train_batch_begin
            self._lr_pending = False
            self._call("learning rate", self._start_epoch_lr)
        step = self._epoch_start_step + batch + 1
        if step > self._step:
            self._step = step
        record = self._batches.record(step, self._epoch, batch, logs)
        if record is None:
            return
        lr = self._lr.at_step(step)
        if lr is not None:
            record["lr"] = lr
        self._check_nan(logs)
        self._writer.log("batch", record)
        self._writer.status["step"] = step  # an existing key: safe while the writer thread serializes the dict
