"""Training loops that change what a "step" or "the learning rate" is: LiveMonitor records what Keras really trained.

The oracles are Keras's own: the optimizer's iteration counter, `history.history`, and the optimizer state read by a
probe callback at the moment the update used it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import keras
import pytest
from train_helpers import data, events, mlp, open_run, read_json, records

from kerascope import LiveMonitor


class IterationProbe(keras.callbacks.Callback):
    """The (inner) optimizer's iteration counter at every batch begin and end Keras reports."""

    def __init__(self) -> None:
        super().__init__()
        self.begins: list[int] = []
        self.ends: list[int] = []

    def _iterations(self) -> int:
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.begins.append(self._iterations())

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.ends.append(self._iterations())


def test_steps_per_execution_with_a_partial_last_group(runs_root):
    """21 steps per epoch in groups of 4: hooks see ends 3, 7, ..., 19 and a nominal 23 for the 1-step last group."""
    if keras.backend.backend() == "torch":
        pytest.skip("Keras's PyTorch trainer requires steps_per_execution=1")
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=5, decay_rate=0.5)
    x, y = data(samples=21 * 8)
    model = mlp(keras.optimizers.SGD(schedule))
    model.compile(model.optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=4)
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0)
    probe = IterationProbe()
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[live_monitor, probe])

    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    assert iterations == 42
    run = open_run(live_monitor.run_dir)
    batches = run.batch_metrics()
    # One record per group of 4 steps, at the optimizer's real iteration count after the group.
    assert [int(s) for s in batches["step"]] == probe.ends == [4, 8, 12, 16, 20, 21, 25, 29, 33, 37, 41, 42]
    assert [int(b) for b in batches["batch"]] == [3, 7, 11, 15, 19, 20] * 2
    # The LR of the step recorded: the schedule at that step's update (iteration step - 1).
    assert list(batches["lr"]) == pytest.approx([float(schedule(s - 1)) for s in probe.ends], rel=1e-5)
    epochs = run.epoch_metrics()
    assert [int(s) for s in epochs["step"]] == [21, 42]
    assert list(epochs["loss"]) == pytest.approx(history.history["loss"], rel=1e-6)
    assert read_json(live_monitor.run_dir, "status.json")["step"] == iterations
    assert run.status == "finished"


def loss_scaled_fit(callbacks: list[keras.callbacks.Callback],
                    validation_split: float = 0.0) -> tuple[keras.Model, Any]:
    """float16 with a huge initial loss scale: the first updates overflow and are skipped; the schedule waits.

    Seeded: every call skips the same updates. Returns the model and its schedule.
    """
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(schedule), initial_scale=2.0**40)
    x, y = data()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = mlp(optimizer)
        model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=callbacks, validation_split=validation_split)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model, schedule


def inner_iterations(model: keras.Model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.inner_optimizer.iterations))


def test_schedule_read_at_the_iteration_a_loss_scaled_update_used(runs_root):
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0)
    probe = IterationProbe()
    _, schedule = loss_scaled_fit([live_monitor, probe])

    steps = 3 * 16
    assert probe.ends[-1] < steps  # some updates were skipped: the test is about something
    batches = records(live_monitor.run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == list(range(1, steps + 1))
    # Each update used the schedule at the inner optimizer's iteration counter when it ran.
    expected = [float(schedule(iteration)) for iteration in probe.begins]
    assert [b["lr"] for b in batches] == pytest.approx(expected, rel=1e-5)
    epochs = records(live_monitor.run_dir, "epoch.jsonl")
    assert [e["lr"] for e in epochs] == pytest.approx([expected[15], expected[31], expected[47]], rel=1e-5)


class SlowBatchEnd(keras.callbacks.Callback):
    """An async-safe batch end that takes a while: where Keras runs batch ends in a worker thread (JAX, PyTorch), the
    training thread runs ahead of them. Records the threads they ran in."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.async_safe = True
        self.delay_s = delay_s
        self.threads: set[int] = set()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.threads.add(threading.get_ident())
        time.sleep(self.delay_s)


@pytest.mark.parametrize("delay_s", [0.0, 0.02])
def test_loss_scaled_schedule_with_batch_ends_in_a_worker_thread(runs_root, delay_s):
    """No callback needs synchronous batch ends: JAX keeps the trained state detached from the variables for the whole
    epoch, and on JAX and PyTorch LiveMonitor's batch ends run in a worker thread — after later steps began, or while
    the epoch's validation runs, when they are slow. The oracle is a second, identical run whose probe reads the
    counter at every batch."""
    probe = IterationProbe()
    oracle_model, schedule = loss_scaled_fit([probe], validation_split=0.25)
    slow = SlowBatchEnd(delay_s)
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0)
    model, _ = loss_scaled_fit([slow, live_monitor], validation_split=0.25)

    if keras.backend.backend() in ("jax", "torch"):
        assert threading.get_ident() not in slow.threads  # the batch ends were dispatched to a worker thread
    steps = 3 * 12  # 96 training samples per epoch
    assert inner_iterations(model) == inner_iterations(oracle_model) == probe.ends[-1] < steps  # the same updates
    assert not events(live_monitor.run_dir, "warning")
    batches = records(live_monitor.run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == list(range(1, steps + 1))
    assert [b["lr"] for b in batches] == pytest.approx([float(schedule(i)) for i in probe.begins], rel=1e-5)


class HoldFirstEpochEnd(keras.callbacks.Callback):
    """Holds the worker thread that runs the first epoch's last batch end until that epoch's validation is under way,
    and holds the validation until the callbacks after this one (LiveMonitor) have handled that batch end.

    Put it first and `Released` last: Keras runs one batch end's callbacks in list order in one worker task.
    """

    def __init__(self, last_batch: int) -> None:
        super().__init__()
        self.async_safe = True
        self.last_batch = last_batch
        self.validating = threading.Event()
        self.handled = threading.Event()
        self.held = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if batch == self.last_batch and threading.current_thread() is not threading.main_thread():
            self.held = self.validating.wait(timeout=60)

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if batch == 1 and not self.validating.is_set():  # a validation step has run: its state is the trainer's
            self.validating.set()
            self.handled.wait(timeout=60)


class Released(keras.callbacks.Callback):
    def __init__(self, hold: HoldFirstEpochEnd) -> None:
        super().__init__()
        self.async_safe = True
        self.hold = hold

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if batch == self.hold.last_batch:
            self.hold.handled.set()


def test_loss_scaled_schedule_with_a_batch_end_handled_during_validation(runs_root):
    """On JAX and PyTorch the first epoch's last batch end reaches LiveMonitor while the epoch's validation runs (on
    JAX the trainer then holds the evaluation's state, without optimizer variables): its LR is still the schedule at
    the iteration that update used."""
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow runs batch ends in the training thread, before validation")
    probe = IterationProbe()
    oracle_model, schedule = loss_scaled_fit([probe], validation_split=0.25)
    hold = HoldFirstEpochEnd(last_batch=11)
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0)
    loss_scaled_fit([hold, live_monitor, Released(hold)], validation_split=0.25)

    assert hold.held  # the batch end did wait for the validation
    assert not events(live_monitor.run_dir, "warning")
    batches = records(live_monitor.run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == list(range(1, 37))
    assert [b["lr"] for b in batches] == pytest.approx([float(schedule(i)) for i in probe.begins], rel=1e-5)


class CyclicLearningRate(keras.callbacks.Callback):
    """A triangular cyclic LR set as a float before every step (`at="begin"`) or after it for the next (`"end"`)."""

    def __init__(self, at: str) -> None:
        super().__init__()
        self.at = at
        self.step = 0
        self.applied: list[float] = []  # the LR each update ran with, as this callback set it

    def _value(self) -> float:
        phase = self.step % 6
        return 0.01 * (1 + (phase if phase <= 3 else 6 - phase))

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.at == "begin":
            self.model.optimizer.learning_rate = self._value()
        self.applied.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step += 1
        if self.at == "end":
            self.model.optimizer.learning_rate = self._value()


@pytest.mark.parametrize(("at", "monitor_first"), [("begin", True), ("begin", False), ("end", True), ("end", False)])
def test_float_lr_set_by_a_callback_at_every_batch(runs_root, at, monitor_first):
    x, y = data()
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0)
    cyclic = CyclicLearningRate(at)
    callbacks = [live_monitor, cyclic] if monitor_first else [cyclic, live_monitor]
    mlp(keras.optimizers.SGD(0.005)).fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=callbacks)

    assert len(set(cyclic.applied)) > 2
    batches = records(live_monitor.run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == list(range(1, 13))
    assert [b["lr"] for b in batches] == pytest.approx(cyclic.applied, rel=1e-6)
    epochs = records(live_monitor.run_dir, "epoch.jsonl")
    assert [e["lr"] for e in epochs] == pytest.approx(cyclic.applied[3::4], rel=1e-6)


def test_keras_tuner_search_records_each_trial_as_a_grouped_run(runs_root, tmp_path):
    import keras_tuner  # in requirements.txt: a missing install fails here rather than skipping the search

    x, y = data()

    def build(hp: Any) -> keras.Model:
        model = keras.Sequential(
            [
                keras.Input((x.shape[1],)),
                keras.layers.Dense(hp.Int("units", 2, 16, step=2), activation="relu"),
                keras.layers.Dense(2, activation="softmax"),
            ]
        )
        learning_rate = hp.Choice("learning_rate", [0.1, 0.01, 0.001])
        model.compile(keras.optimizers.SGD(learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    tuner = keras_tuner.RandomSearch(
        build, objective="val_loss", max_trials=3, seed=1, directory=str(tmp_path / "tuner"), project_name="sweep"
    )
    live_monitor = LiveMonitor(str(runs_root), hparams={"dataset": "toy"}, weight_freq=0, system_freq=0)
    tuner.search(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0, callbacks=[live_monitor])

    from kerascope import RunStore

    runs = RunStore(str(runs_root)).runs()
    trials = {trial.trial_id: trial for trial in tuner.oracle.trials.values()}
    assert len(trials) == 3
    assert sorted(run.name for run in runs) == sorted(trials)
    for run in runs:
        assert run.status == "finished"
        assert run.hparams == {"dataset": "toy", **trials[run.name].hyperparameters.values}
        assert len(run.epoch_metrics()) == 2
    groups = {run.group for run in runs}
    assert len(groups) == 1 and None not in groups
    assert live_monitor.run_dir is None  # the original only handed out copies
    # The dashboard shows the search as one sweep: Compare groups the trials by their run group.
    from page_charts import chart_figures, open_link

    at = open_link(runs_root, "views/compare.py", runs=",".join(run.id for run in runs), group="search (run group)")
    val_loss = next(f for f in chart_figures(at) if f["layout"]["title"]["text"].startswith("val_loss"))
    assert [t["name"] for t in val_loss["data"] if t.get("showlegend") is not False] == [f"{groups.pop()} (3 runs)"]
