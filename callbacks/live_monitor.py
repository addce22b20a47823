"""LiveMonitor: the Keras callback that writes a Kerascope run directory (format: docs/run-format.md)."""

from __future__ import annotations

import copy
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import keras

from kerascope.callbacks import _lifecycle as lifecycle
from kerascope.callbacks._batches import BatchOrder, BatchRecords, batch_interval
from kerascope.callbacks._checkpoints import CheckpointKeeper, check_checkpoint_options
from kerascope.callbacks._distributed import is_chief
from kerascope.callbacks._divergence import DEFAULT_DIVERGENCE_FACTOR, DEFAULT_GRADIENT_FREQ, Forensics
from kerascope.callbacks._gradients import unpack
from kerascope.callbacks._learning_rate import LearningRateTracker
from kerascope.callbacks._metrics import check_directions, metric_direction
from kerascope.callbacks._model_card import write_model_card
from kerascope.callbacks._reporter import RunReporter
from kerascope.callbacks._resume import RunOpener, check_resume
from kerascope.callbacks._run_meta import environment, model_info, optimizer_info, parameter_counts, recorded_options
from kerascope.callbacks._statistics import ActivationProbe, weight_records
from kerascope.callbacks._system import SystemSampler
from kerascope.callbacks._tuner import current_trial, new_group_id
from kerascope.monitor import RunWriter, check_logdir, url_protocol
from kerascope.monitor import format as fmt


@dataclass
class _Fit:
    """What LiveMonitor keeps about the fit() call it records; a new one at every on_train_begin."""

    phase: int  # 1-based index of this fit() call in the run
    start_step: int  # the run's global step when it began
    thread: int  # the thread running fit() ...
    frame: Any  # ... and fit()'s frame: once it is off that thread's stack, an exception left fit()
    started: float  # time.monotonic(): a SIGINT after this one interrupted this fit()
    shell_error: BaseException | None  # the shell's last error before: a newer one is what ended this fit()
    epochs: int | None  # fit(epochs=...), the exclusive end
    steps_per_epoch: int | None  # Keras's params["steps"]; None for a dataset of unknown length
    epoch_start_step: int = 0
    initial_epoch: int | None = None
    epochs_done: int = 0
    lr_pending: bool = True  # read a float LR at the next batch begin, after every callback's on_epoch_begin
    lr_at_begin: float | None = None
    described: bool = False  # parameter counts and model card written (a subclassed model: at the first epoch end)
    trainable_counts: tuple[int, int] = (0, 0)
    phase_event_pending: bool = True
    stop_reported: bool = False
    monitor_logged: bool = False  # the checkpoint monitor was in some epoch's logs
    unmonitored_logs: list[str] | None = None  # an epoch's log names without it (a val_ metric may come later)
    searched: bool = False  # fit() was left and the exception was looked for once, in vain
    probe: ActivationProbe | None = None
    sampler: SystemSampler | None = None
    card_thread: threading.Thread | None = None


class LiveMonitor(keras.callbacks.Callback):
    """Record a training run into a run directory that the Kerascope dashboard shows live.

    One directory per run under `logdir`, with per-batch and per-epoch metrics, the learning rate at every batch
    (whatever sets it), activation, weight and (with `gradient_data`) gradient statistics, a model card, checkpoints,
    events (phases, early stopping, LR changes, NaNs, the first divergence with the layer that broke first), which
    way each metric is better, and a status with a heartbeat. Repeated `fit()` calls with the
    same instance continue the same run as phases 2, 3, ... (e.g. fine-tuning after unfreezing). Monitoring never
    stops training: an error inside the callback becomes one warning (and a `warning` event) unless `strict=True`. In
    distributed training only the chief process writes. Under a KerasTuner search (which deep-copies callbacks: each
    copy records its own run) every trial becomes a run named by its trial id, with the trial's hyperparameters added
    to `hparams`, and the runs of one search share a run.json `group`.

    Resume after a crash: a script restarted after `kill -9` or a lost machine, with `keras.callbacks.BackupAndRestore`
    restoring the epoch, continues its run when given `resume="auto"` (the newest unfinished run of the same name in
    `logdir` whose process is gone) or `resume="<run id>"`. Steps continue from the restored epoch, the records the
    dead process wrote for that epoch and later ones are dropped (the streams are rewritten without them, so each step
    has one record), a `resumed` event marks the point, and the status goes back to `running`. Without a run to
    continue, a new run starts.

    Keras calls no hook when an exception leaves `fit()`, so the status is kept honest another way: an uncaught
    exception (`sys.excepthook`, `threading.excepthook`) marks the run `failed` with its reason, or `interrupted` for
    KeyboardInterrupt; an exception that a caller catches (a notebook cell, try/except) is noticed within a system
    tick (`system_freq`, at most 2 s) because the `fit()` frame left the stack, and carries the exception's type and
    message while the caller still holds it (else it says that an exception was caught); exiting during `fit()`
    (`atexit`) marks it `failed`. After `kill -9` the heartbeat stops and readers show the run as `stale`.

    Args:
        logdir: the runs folder; the run directory `logdir/<time>-<name>-<hex>` is created at the first fit(). An
            fsspec URL (`s3://bucket/runs`, `gs://...`, `az://...`) writes the run to object storage (format version
            2): the backend must be installed (`pip install "kerascope[s3]"`, else ImportError here) and takes its
            credentials from its own environment and config; uploads run in the background from a local spool.
        name: the run's display name (any text); defaults to the model's name.
        hparams: hyperparameters to record (a dict; values that are not JSON are stored as their repr).
        tags: a list of short labels.
        notes: free text.
        update_freq: `"batch"` (every batch), an int N (every N-th batch) or `"epoch"` (no batch records).
        activation_data: inputs (as `model.predict` takes them, e.g. `x_val[:256]`) on which per-layer activation
            statistics are computed in inference mode. None records no activations (an event says so).
        activation_freq: take activation statistics every this many epochs (0 turns them off).
        weight_freq: take weight statistics every this many epochs (0 turns them off).
        gradient_data: `(x, y)` or `(x, y, sample_weight)`: one small fixed batch (e.g. 64 validation samples) on
            which per-weight gradient statistics of the compiled loss are computed in inference mode. None (the
            default) records no gradients. A model that overrides `train_step` gets a `skipped` event instead.
        gradient_freq: take gradient statistics every this many batches (0 turns them off).
        divergence_factor: a `divergence` event is written when a metric first becomes NaN/Inf, or when the loss
            rises above this many times its best; None keeps only the NaN/Inf rule. The event names the step, the
            LR and the first layer whose activations or gradients broke, with a snapshot of both at that moment.
        checkpoint: `"best"`, `"last"`, `"all"` or None: which `.keras` checkpoints to keep in the run.
        monitor: the metric compared for `"best"` and the `is_best` flag, like `ModelCheckpoint`.
        mode: `"auto"`, `"min"` or `"max"` for `monitor`; "auto" takes the metric's recorded direction.
        metric_directions: `{"metric name": "min" | "max"}` for metrics whose Keras object does not say which way is
            better (a custom metric function); a name covers its `val_` twin. Others are taken from Keras.
        system_freq: seconds between CPU / RSS / GPU memory samples (0 turns them off).
        flush_interval: seconds between background appends; a crash loses at most this much data. None: 0.5 s for
            a local logdir, 5 s between uploads for an object store (the local spool still gets every 0.5 s).
        strict: re-raise errors from the callback instead of warning (for debugging the monitor itself).
        resume: None (always a new run), `"auto"` or a run id: continue an unfinished run after a restart (above).

    Example:

    ```python
    from kerascope import LiveMonitor

    live = LiveMonitor("runs", name="baseline", hparams={"dropout": 0.2}, activation_data=x_val[:256],
                       checkpoint="best")
    model.fit(x, y, validation_data=(x_val, y_val), epochs=10, callbacks=[live])
    print(live.run_dir)
    # then: python -m kerascope --logdir runs

    # A script that may be killed and started again: the restart continues the same run.
    live = LiveMonitor("runs", name="long", resume="auto")
    model.fit(x, y, epochs=100, callbacks=[keras.callbacks.BackupAndRestore("backup"), live])
    ```
    """

    def __init__(
        self,
        logdir: str = "runs",
        name: str | None = None,
        *,
        hparams: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        update_freq: str | int = "batch",
        activation_data: Any = None,
        activation_freq: int = 1,
        weight_freq: int = 1,
        gradient_data: Any = None,
        gradient_freq: int = DEFAULT_GRADIENT_FREQ,
        divergence_factor: float | None = DEFAULT_DIVERGENCE_FACTOR,
        checkpoint: str | None = None,
        monitor: str = "val_loss",
        mode: str = "auto",
        metric_directions: dict[str, str] | None = None,
        system_freq: float = 2.0,
        flush_interval: float | None = None,
        strict: bool = False,
        resume: str | None = None,
    ) -> None:
        super().__init__()
        check_logdir(logdir)  # a URL whose backend is missing fails here, never as a local folder named "s3:"
        self._log_every = batch_interval(update_freq)
        check_checkpoint_options(checkpoint, mode)
        check_resume(resume)
        # Batch hooks only touch plain Python state, so Keras may run them off the main thread (JAX, torch).
        self.async_safe = True
        self.logdir = logdir
        self.name = name
        self.hparams = dict(hparams or {})
        self.tags = [str(tag) for tag in (tags or [])]
        self.notes = notes or ""
        self.update_freq = update_freq
        self.activation_data = activation_data
        self.activation_freq = activation_freq
        self.weight_freq = weight_freq
        if gradient_data is not None:
            unpack(gradient_data)  # a clear ValueError now rather than a warning in the middle of fit()
        self.gradient_data = gradient_data
        self.gradient_freq = gradient_freq
        self.divergence_factor = divergence_factor
        self.checkpoint = checkpoint
        self.monitor = monitor
        self.mode = mode
        self.metric_directions = check_directions(metric_directions)
        self.system_freq = system_freq
        remote = url_protocol(logdir) is not None
        default_interval = fmt.REMOTE_FLUSH_INTERVAL_S if remote else 0.5
        self.flush_interval = default_interval if flush_interval is None else flush_interval
        self.strict = strict
        self.resume = resume
        # One group id per KerasTuner search, shared by this instance and all its deep copies (one per trial).
        self._search_groups: dict[int, str] = {}
        self._new_run()

    def _new_run(self) -> None:
        """The state of one run (none yet): what lasts across the run's fit() calls."""
        self._reporter = RunReporter(self.strict, self._position)
        self._run = RunOpener(self.logdir, self.flush_interval, self.strict, self._reporter.warn_once)
        self._writer: RunWriter | None = None
        self._disabled = False  # not the chief process, or the run directory could not be written
        self._active = False  # inside a fit() call that is being recorded
        self._fit: _Fit | None = None
        self._step = 0  # global: batches trained in this run
        self._epoch = 0
        self._directions: dict[str, dict[str, str]] = {}  # run.json `metrics`
        self._lr = LearningRateTracker()
        self._batches = BatchRecords(self._log_every)
        self._order = BatchOrder()
        self._checkpoints: CheckpointKeeper | None = None
        self._lifecycle_lock = threading.RLock()  # the fit() ends exactly once, whoever notices first
        self._batch_lock = threading.Lock()
        self._forensics = Forensics(
            self.gradient_data, self.gradient_freq, self.divergence_factor,
            log=lambda stream, record: self._writer.log(stream, record), event=self._reporter.event,
            skip=self._reporter.skip, lr_at=self._lr.at_step, activations=self._snapshot_activations,
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> LiveMonitor:
        """A fresh monitor with the same options, recording its own run (KerasTuner copies callbacks per trial).

        `activation_data` and `gradient_data` are shared, not copied: they are only read, and may be large.
        """
        clone = copy.copy(self)
        memo[id(self)] = clone
        clone.hparams = copy.deepcopy(self.hparams, memo)
        clone.tags = list(self.tags)
        clone.metric_directions = dict(self.metric_directions)
        clone._new_run()
        return clone

    @property
    def run_dir(self) -> str | None:
        """The run's directory (its URL on an object store); None until the first fit() creates it."""
        return self._run.run_dir

    def wait_uploaded(self, timeout: float | None = None) -> bool:
        """For a run on an object store: block until everything the ended fit() recorded is uploaded and compacted
        (True), or `timeout` seconds pass (False). A local run is always complete: True at once.

        At interpreter exit this happens by itself (for up to 60 s); call it to be sure before reading the run
        elsewhere, e.g. at the end of a notebook cell.
        """
        writer = self._writer
        wait = getattr(writer, "wait_uploaded", None)
        return True if wait is None else wait(timeout)

    # -- fit() boundaries --------------------------------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._disabled:
            return
        if self._active:
            self._abort(None, "a new fit() began before the previous one reached on_train_end")
        try:
            model, params = self.model, dict(self.params or {})
            if not is_chief(model):
                self._disabled = True  # only the chief process writes; the others create nothing
                return
            self._writer = self._open_writer(model, params)
            if self._writer is None:
                return
            fit = self._begin_fit(params)  # from here on, a fit() that raises is noticed
            fit.sampler = SystemSampler(self._log_system, self.system_freq, self._tick, self._reporter.warn_once)
            fit.sampler.start()
            # A custom training loop may apply its own optimizer to a model it never compiled: no LR to record then.
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None:
                self._reporter.call("learning rate", self._lr.begin_phase, model, self._step)
            self._forensics.begin_fit(model, self._step)
            fit.lr_at_begin = self._lr.current()
            self._batches.begin_phase(list(model.metrics))
            self._writer.update_status(
                phase=fit.phase, epoch=self._epoch, step=self._step, epochs=fit.epochs,
                steps_per_epoch=params.get("steps"),
            )
            self._reporter.event(fmt.EVENT_TRAIN_BEGIN, f"fit() call {fit.phase} began", phase=fit.phase)
            self._reporter.lr_change(self._lr.check(), f"fit() call {fit.phase} begins")
            if self._checkpoints is not None:
                self._checkpoints.attach(self._writer)  # the best value and the index carry over
            if optimizer is None:
                self._reporter.skip(
                    "learning rate", "no learning rate: the model has no optimizer (it was never compiled); "
                    "compile it with the optimizer that trains it to record the LR"
                )
            if self.activation_data is None and self.activation_freq:
                self._reporter.skip(
                    "activations", "no activation statistics: pass LiveMonitor(activation_data=x_val[:256])"
                )
            if model.built:  # a subclassed model is built by its first train step: described at the first epoch end
                self._describe_model(model)
            self._writer.flush()
        except Exception as exc:
            self._reporter.failed("on_train_begin", exc)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._active:
            return
        fit = self._fit
        try:
            self._reporter.call("divergence snapshot", self._forensics.snapshot, self.model, self._epoch)
            self._emit_phase_event()
            self._reporter.lr_change(self._lr.check(), "after training")
            self._report_unmonitored()
            self._check_early_stop(self.model)
            self._reporter.event(
                fmt.EVENT_TRAIN_END,
                f"fit() call {fit.phase} ended after {fit.epochs_done} epoch(s)",
                phase=fit.phase,
                epochs_done=fit.epochs_done,
            )
        except Exception as exc:
            self._reporter.failed("on_train_end", exc)
        self._end_fit(fmt.FINISHED)

    # -- epochs ----------------------------------------------------------------------------------------------

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._active:
            return
        fit = self._fit
        self._epoch = epoch
        # The epoch in progress, as the dashboard's progress and ETA read it (an existing key: safe while the writer
        # thread serializes the dict).
        self._writer.status["epoch"] = epoch
        fit.lr_pending = True
        self._order.reset()
        if fit.initial_epoch is None:
            fit.initial_epoch = epoch
        if self._run.resumed is not None and not self._run.resumed.rewound:
            self._reporter.call("resume", self._rewind, epoch)  # may move the step back (a restart from epoch 0)
        fit.epoch_start_step = self._step
        self._reporter.call("on_epoch_begin", self._emit_phase_event)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._active:
            return
        logs = logs or {}
        report = self._reporter
        with self._batch_lock:
            for ended, ended_logs in self._order.leftovers():
                report.call("on_train_batch_end", self._record_batch, ended, ended_logs)
        report.call("on_epoch_end", self._record_epoch, epoch, logs)
        report.call("metric directions", self._record_directions, logs)
        model = self.model  # on JAX this syncs the trained state into the variables, once per epoch
        # A divergence seen in this epoch's last batches or its logs (TerminateOnNaN ends the epoch right there),
        # judged before this epoch's statistics join the layers' history.
        report.call("divergence snapshot", self._forensics.snapshot, model, epoch)
        # Each extra on its own: a failing activation probe must not cost the checkpoint.
        done = epoch + 1
        if self.weight_freq and done % self.weight_freq == 0:
            report.call("weight statistics", self._log_statistics, "weights", weight_records, model)
        if self.activation_data is not None and self.activation_freq and done % self.activation_freq == 0:
            report.call("activation statistics", self._log_activations, model)
        if self.checkpoint:
            report.call("checkpoint", self._save_checkpoint, model, epoch, logs)
        report.call("on_epoch_end", self._check_early_stop, model)
        report.call("flush", self._flush_epoch, epoch)

    def _record_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        fit, writer = self._fit, self._writer
        fit.epochs_done += 1
        if not fit.described:
            writer.update_meta(model=model_info(self.model))
            self._describe_model(self.model)
            self._emit_phase_event()
        record: dict[str, Any] = {"epoch": epoch, "step": self._step, "time": time.time(), "phase": fit.phase}
        record.update(logs)
        lr = self._lr.at_step(self._step)
        if lr is not None:
            record["lr"] = lr
        self._reporter.check_nan(logs)
        self._forensics.watch.epoch(self._step, epoch, logs)
        writer.log("epoch", record)
        self._reporter.lr_change(self._lr.check(), f"after epoch {epoch}")  # ReduceLROnPlateau, when it ran first

    def _record_directions(self, logs: dict[str, Any]) -> None:
        """run.json `metrics`: the direction of every metric logged so far (val_ twins appear with validation)."""
        new = [key for key in logs if key not in self._directions and key not in fmt.NON_METRIC_COLUMNS]
        if not new:
            return
        metrics = list(self.model.metrics)  # built by now: Keras builds compiled metrics in the first train step
        for key in new:
            self._directions[key] = {"direction": metric_direction(key, metrics, self.metric_directions)}
        self._writer.update_meta(metrics=self._directions)

    def _flush_epoch(self, epoch: int) -> None:
        self._writer.update_status(epoch=epoch, step=self._step)
        self._writer.flush()
        if self.strict and self._writer.errors:
            raise OSError(self._writer.errors[0])

    # -- batches (hot path: plain Python, no model access, no I/O) --------------------------------------------

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._active:
            return
        # The training thread, in order, before the batch's update: the float LR is read here once per epoch, after
        # every callback's on_epoch_begin (LearningRateScheduler may come after this one) and while JAX still has
        # the variables attached.
        self._start_epoch_lr()
        step = self._fit.epoch_start_step + batch  # updates done so far: the weights the gradients are taken at
        self._reporter.call("learning rate", self._lr.batch_begin, step)
        self._order.begin(batch)
        if self._forensics.due(step):  # every gradient_freq batches, or a divergence to snapshot: few batches
            self._reporter.call("gradient statistics", self._forensics.at_batch_begin, self.model, step, self._epoch)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._active:
            return
        try:
            with self._batch_lock:
                for ended, ended_logs in self._order.end(batch, logs or {}):
                    self._record_batch(ended, ended_logs)
        except Exception as exc:
            self._reporter.failed("on_train_batch_end", exc)

    def _record_batch(self, batch: int, logs: dict[str, Any]) -> None:
        fit = self._fit
        self._start_epoch_lr()  # hooks called without on_train_batch_begin
        # With steps_per_execution=k Keras reports the nominal end (begin + k - 1) of an epoch's last, partial group.
        if fit.steps_per_epoch and batch >= fit.steps_per_epoch:
            batch = fit.steps_per_epoch - 1
        step = fit.epoch_start_step + batch + 1
        if step > self._step:
            self._step = step
        self._lr.steps_done(step)
        self._forensics.watch.batch(step, self._epoch, batch, logs, fit.steps_per_epoch)
        record = self._batches.record(step, self._epoch, batch, logs)
        if record is None:
            return
        lr = self._lr.at_step(step)
        if lr is not None:
            record["lr"] = lr
        self._reporter.check_nan(logs)
        self._writer.log("batch", record)
        self._writer.status["step"] = step  # an existing key: safe while the writer thread serializes the dict

    def _start_epoch_lr(self) -> None:
        """Once per epoch, at its first batch: the float LR the epoch's updates use."""
        if self._fit.lr_pending:
            self._fit.lr_pending = False
            self._reporter.call("learning rate", self._report_epoch_lr)

    def _report_epoch_lr(self) -> None:
        self._reporter.lr_change(self._lr.start_epoch(), f"epoch {self._epoch} begins")

    # -- what is recorded once per fit() ----------------------------------------------------------------------

    def _open_writer(self, model: keras.Model, params: dict[str, Any]) -> RunWriter | None:
        """Create the run directory at the first fit(), reopen it at later ones; None (monitoring off) on failure.

        run.json is written once per fit(): everything it needs is gathered first.
        """
        optimizer = getattr(model, "optimizer", None)  # None for a model that was never compiled (a custom loop)
        fit_meta = {"fit_params": fmt.to_jsonable(params), "optimizer": optimizer_info(optimizer)}
        if model.built:
            fit_meta["model"] = model_info(model)
        try:
            if self.run_dir is not None:
                return self._run.reopen(fit_meta)
            name = self.name or model.name
            writer = self._run.resume(name, self.resume, fit_meta) if self.resume else None
            if writer is not None:
                # Until the first epoch says where training picked up: where the records on disk end.
                self._step, self._epoch = self._run.resumed.step, self._run.resumed.epoch
                return writer
            return self._run.create(*self._new_run_meta(name, fit_meta))
        except OSError as exc:
            if self.strict:
                raise
            self._disabled = True
            warnings.warn(
                f"LiveMonitor: cannot write a run under {self.logdir!r} ({lifecycle.describe(exc)}); "
                "monitoring is off for this callback, training continues",
                RuntimeWarning,
                stacklevel=3,
            )
            return None

    def _new_run_meta(self, name: str, fit_meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The name and run.json of a new run; under a KerasTuner search the trial is the run, the search its group."""
        hparams = self.hparams
        trial = current_trial()
        if trial is not None:
            name = trial.trial_id if self.name is None else f"{self.name} {trial.trial_id}"
            hparams = {**hparams, **trial.hparams}
            fit_meta = {**fit_meta, fmt.RUN_GROUP: self._search_groups.setdefault(id(trial.tuner),
                                                                                new_group_id(trial.tuner))}
        meta = {
            "process_index": 0,
            **environment(),
            "hparams": fmt.to_jsonable(hparams),
            "tags": self.tags,
            "notes": self.notes,
            "options": recorded_options(self),
            **fit_meta,
        }
        return name, meta

    def _rewind(self, epoch: int) -> None:
        """The restarted fit() begins at `epoch`: drop what the dead process recorded from there on, and go on from
        the step before it."""
        resumed, fit = self._run.resumed, self._fit
        self._step = fit.start_step = self._run.rewind(self._writer, epoch)
        fit.phase_event_pending = not resumed.kept_phase_event
        # A restored optimizer's counter (BackupAndRestore loads it with the weights) maps steps to schedule values.
        self._lr.begin_phase(self.model, self._step)
        dropped = sum(resumed.dropped.values())
        self._reporter.event(
            fmt.EVENT_RESUMED,
            f"resumed at epoch {epoch} (step {self._step}) after a restart; the run was {resumed.status}"
            + (f", {dropped} superseded record(s) dropped" if dropped else ""),
            previous_status=resumed.status,
            dropped=resumed.dropped,
        )
        self._writer.update_status(epoch=epoch, step=self._step)

    def _begin_fit(self, params: dict[str, Any]) -> _Fit:
        """The state of a new fit(), watched from now on for an exception that leaves it (see `_abort`)."""
        thread, frame = lifecycle.fit_frame()
        if self._fit is not None:
            phase = self._fit.phase + 1
        else:
            resumed = self._run.resumed
            phase = resumed.phase if resumed is not None else 1  # a restart continues the cut-short fit
        self._fit = _Fit(
            phase=phase,
            start_step=self._step,
            thread=thread,
            frame=frame,
            started=time.monotonic(),
            shell_error=lifecycle.last_shell_error(),
            epochs=params.get("epochs"),
            steps_per_epoch=params.get("steps"),
            epoch_start_step=self._step,
        )
        self._reporter.begin_phase(self._writer)
        lifecycle.watch_sigint()
        self._active = True
        lifecycle.register(self, thread)
        return self._fit

    def _log_system(self, record: dict[str, Any]) -> None:
        self._writer.log("system", record)

    def _describe_model(self, model: keras.Model) -> None:
        """Parameter counts (run.json, phase event) and the model card."""
        fit = self._fit
        fit.described = True
        fit.trainable_counts = parameter_counts(model)
        card_args = (self._writer, model, fit.phase, self._reporter.skip)
        if self.strict:  # synchronously, so that errors raise in the training thread
            write_model_card(*card_args)
            return
        # summary() and plot_model (which runs graphviz) take up to a second: keep them off the training thread.
        fit.card_thread = threading.Thread(
            target=self._reporter.call,
            args=("model card", write_model_card, *card_args),
            name="kerascope-model-card",
            daemon=True,
        )
        fit.card_thread.start()

    def _emit_phase_event(self) -> None:
        """The phase event, once per fit(), as soon as both the first epoch and the parameter counts are known."""
        fit = self._fit
        if not fit.phase_event_pending or not fit.described:
            return
        fit.phase_event_pending = False
        trainable, non_trainable = fit.trainable_counts
        initial_epoch = self._epoch if fit.initial_epoch is None else fit.initial_epoch
        self._reporter.event(
            fmt.EVENT_PHASE,
            f"phase {fit.phase}: epochs {initial_epoch}-{fit.epochs}, {trainable:,} trainable parameters",
            step=fit.start_step,
            phase=fit.phase,
            trainable_params=trainable,
            non_trainable_params=non_trainable,
            initial_epoch=initial_epoch,
            epochs=fit.epochs,
            lr=fit.lr_at_begin,
        )

    # -- what is recorded at epoch ends -----------------------------------------------------------------------

    def _log_statistics(self, stream: str, compute: Any, *args: Any) -> None:
        for record in compute(*args):
            self._writer.log(stream, {"step": self._step, "epoch": self._epoch, **record})

    def _activation_probe(self, model: keras.Model) -> ActivationProbe | None:
        fit = self._fit
        if self._reporter.skipped("activations"):
            return None
        if fit.probe is None:
            try:
                fit.probe = ActivationProbe(model)
            except ValueError as exc:
                self._reporter.skip("activations", str(exc))
                return None
            for name, reason in fit.probe.skipped:
                self._reporter.skip(f"activations of {name}", f"no activation statistics for {name}: {reason}")
        return fit.probe

    def _log_activations(self, model: keras.Model) -> None:
        probe = self._activation_probe(model)
        if probe is not None:
            records = probe.records(self.activation_data)
            self._forensics.observe_activations(records)  # the history a divergence's jump is measured against
            self._log_statistics("activations", lambda: records)

    def _snapshot_activations(self, model: keras.Model) -> list[dict[str, Any]] | None:
        """Activations at a divergence, on `activation_data` or else the inputs of `gradient_data`."""
        data = self.activation_data if self.activation_data is not None else (
            unpack(self.gradient_data)[0] if self.gradient_data is not None else None)
        probe = self._activation_probe(model) if data is not None else None
        return probe.records(data) if probe is not None else None

    def _save_checkpoint(self, model: keras.Model, epoch: int, logs: dict[str, Any]) -> None:
        if self._checkpoints is None:
            # Made at the first save, when Keras has built the metric objects that say which way is better.
            mode = self.mode if self.mode != "auto" else metric_direction(self.monitor, model.metrics,
                                                                          self.metric_directions)
            self._checkpoints = CheckpointKeeper(self._writer, self.checkpoint, self.monitor, mode)
            if self._run.resumed is not None:
                self._checkpoints.continue_from(self._run.resumed.checkpoints)
        keeper, fit = self._checkpoints, self._fit
        if keeper.monitor in logs:
            fit.monitor_logged = True
        else:
            # With validation_freq > 1 a val_ metric is missing from the epochs without validation: said only if it
            # is never logged in this fit() (at its end).
            fit.unmonitored_logs = sorted(logs)
            if not keeper.monitor.startswith(fmt.VAL_PREFIX):
                self._report_unmonitored()
            if keeper.policy == "best":
                return
        entry = keeper.save(model, epoch, self._step, logs)
        if entry is not None:
            value = entry["value"]
            shown = f"{value:.4g}" if isinstance(value, float) else "not logged"
            self._reporter.event(
                fmt.EVENT_CHECKPOINT,
                f"saved {entry['path']} ({keeper.monitor}={shown})",
                path=entry["path"],
                value=value,
                is_best=entry["is_best"],
            )

    def _report_unmonitored(self) -> None:
        """The skip event for a checkpoint monitor that this fit() never logged."""
        fit, keeper = self._fit, self._checkpoints
        if keeper is None or fit.monitor_logged or fit.unmonitored_logs is None:
            return
        self._reporter.skip(
            "checkpoint",
            f"checkpoint={keeper.policy!r} monitors {keeper.monitor!r}, which is not in the epoch logs "
            f"({', '.join(fit.unmonitored_logs) or 'none'}): pass monitor=... to LiveMonitor",
        )

    def _check_early_stop(self, model: keras.Model) -> None:
        fit = self._fit
        if fit.stop_reported or not getattr(model, "stop_training", False):
            return
        fit.stop_reported = True
        # early_stop's data holds the epoch (docs/run-format.md); `epoch=` would name the record's own field.
        self._reporter.event(
            fmt.EVENT_EARLY_STOP, f"training stopped early at epoch {self._epoch}", data={"epoch": self._epoch}
        )

    # -- how a fit() ends: normally, by an exception, or unnoticed by Keras -----------------------------------

    def _end_fit(self, status: str, reason: str | None = None) -> None:
        """Close the fit() exactly once, whichever of on_train_end, `_abort` or `_tick` gets there first."""
        with self._lifecycle_lock:
            if not self._active:
                return
            self._active = False
            fit = self._fit
            fit.frame = None  # the frame holds fit()'s locals (the data): let them go
            lifecycle.unregister(self)
        self._lr.end_phase()
        if fit.sampler is not None:
            fit.sampler.stop()
        if fit.card_thread is not None and fit.card_thread is not threading.current_thread():
            fit.card_thread.join(timeout=30)
        self._writer.update_status(epoch=self._epoch, step=self._step)
        self._writer.close(status, reason)

    def _abort(self, exc: BaseException | None, message: str | None = None) -> None:
        """End the fit() as failed / interrupted: it raised, or the process exits without on_train_end."""
        with self._lifecycle_lock:
            if not self._active:
                return
            if exc is None and lifecycle.sigint_since(self._fit.started):  # Ctrl-C, caught by the caller
                exc, message = KeyboardInterrupt("Ctrl-C (SIGINT) during fit()"), None
            status = fmt.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else fmt.FAILED
            reason = message or lifecycle.describe(exc)
            self._reporter.event(status, reason, error=reason)
            self._end_fit(status, reason)

    def _tick(self) -> None:
        """From the system thread: notice that fit() was left by an exception that a caller caught."""
        with self._lifecycle_lock:
            fit = self._fit
            if not self._active or fit.frame is None or lifecycle.frame_alive(fit.thread, fit.frame):
                return
            error = lifecycle.last_shell_error()
            if error is None or error is fit.shell_error:
                # A Ctrl-C that the caller caught reads as such (`_abort`), whatever became of its KeyboardInterrupt.
                sigint = lifecycle.sigint_since(fit.started)
                error = None if sigint else lifecycle.caught_exception(fit.thread, fit.frame)
                if error is None and not sigint and not fit.searched:
                    # The exception may be in flight between fit() and the caller (Keras's traceback filter re-raises
                    # it): look again at the next tick before saying that it cannot be known.
                    fit.searched = True
                    return
            if error is not None:
                self._abort(error)
            else:
                self._abort(
                    None,
                    "fit() ended without reaching on_train_end: an exception left fit() and was caught by the caller",
                )

    def _position(self) -> tuple[int, int]:
        """The (global step, epoch) that events are stamped with."""
        return self._step, self._epoch
