"""The learning rate of each step, read from real optimizers and schedules without a training loop.

`LearningRateReader` is compared with the schedules' closed forms at iterations on both sides of its look-ahead table;
`LearningRateTracker` is driven as LiveMonitor drives it (its batch begin, the update, its batch end) while a real
Keras callback writes the LR from its own hooks, and the oracle is the optimizer's `learning_rate` read just before
each update. A LossScaleOptimizer skips the updates whose gradients overflow: those steps are fed infinite gradients.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from kerascope.callbacks._learning_rate import (
    _CHUNK,
    AssignmentWatch,
    LearningRateReader,
    LearningRateTracker,
    base_optimizer,
)

S = keras.optimizers.schedules


def exponential() -> S.LearningRateSchedule:
    return S.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)


def exponential_at(iteration: int) -> float:
    return 0.1 * 0.5 ** (iteration / 3)


def as32(value: float) -> float:
    """What a float32 LR variable holds for `value`."""
    return float(np.float32(value))


class StepFunction(S.LearningRateSchedule):
    """A user's schedule written with a Python `if`: it cannot take a vector of steps."""

    def __call__(self, step):
        return 0.1 if int(step) < 5 else 0.01

    def get_config(self):
        return {}


class MultiOptimizer:
    """A user's multi-optimizer (one optimizer per group of layers), as optimizer wrappers hold them."""

    def __init__(self, optimizers):
        self.optimizers = optimizers


def test_the_optimizer_holding_the_lr_is_found_inside_wrappers():
    inner = keras.optimizers.SGD(0.1)
    scaled = keras.optimizers.LossScaleOptimizer(inner)
    first, second = keras.optimizers.Adam(0.01), keras.optimizers.SGD(0.5)
    assert base_optimizer(inner) is inner
    assert base_optimizer(scaled) is inner
    assert base_optimizer(MultiOptimizer([first, second])) is first
    assert base_optimizer(MultiOptimizer([scaled, second])) is inner
    assert base_optimizer(MultiOptimizer((MultiOptimizer([second]),))) is second
    empty = MultiOptimizer([])
    assert base_optimizer(empty) is empty


class LossScaled:
    """A user's wrapper that exposes the optimizer it wraps as `inner_optimizer`, as LossScaleOptimizer does."""

    def __init__(self, inner_optimizer):
        self.inner_optimizer = inner_optimizer


def test_wrappers_are_unwrapped_whichever_order_they_nest_in():
    first, second = keras.optimizers.Adam(0.01), keras.optimizers.SGD(0.5)
    assert base_optimizer(LossScaled(MultiOptimizer([first, second]))) is first
    assert base_optimizer(LossScaled(LossScaled(second))) is second
    assert base_optimizer(MultiOptimizer([LossScaled(MultiOptimizer([second]))])) is second


class CountedDecay(S.ExponentialDecay):
    """ExponentialDecay that remembers the steps it was called with: one entry per call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[np.ndarray] = []

    def __call__(self, step):
        self.calls.append(np.array(step))
        return super().__call__(step)


def test_a_schedule_is_evaluated_once_per_look_ahead_table_not_per_batch():
    """Per-batch work stays tiny: one vectorized call covers the next 4,096 iterations."""
    schedule = CountedDecay(0.1, decay_steps=3, decay_rate=0.5)
    reader = LearningRateReader(keras.optimizers.SGD(schedule))
    schedule.calls.clear()  # whatever the optimizer evaluated when it was made
    got = [reader.at_iteration(i) for i in range(0, 300)]
    assert got == pytest.approx([exponential_at(i) for i in range(300)], rel=1e-5)
    assert len(schedule.calls) == 1
    assert schedule.calls[0].dtype == np.int64
    assert schedule.calls[0].tolist() == list(range(_CHUNK))
    assert reader.at_iteration(_CHUNK - 1) == pytest.approx(exponential_at(_CHUNK - 1), rel=1e-5)
    assert reader.at_iteration(0) == pytest.approx(0.1) and len(schedule.calls) == 1
    assert reader.at_iteration(_CHUNK + 5) == pytest.approx(exponential_at(_CHUNK + 5), rel=1e-5)
    assert len(schedule.calls) == 2 and schedule.calls[1].tolist() == list(range(_CHUNK + 5, 2 * _CHUNK + 5))
    assert reader.at_iteration(_CHUNK + 5) == pytest.approx(exponential_at(_CHUNK + 5), rel=1e-5)
    assert len(schedule.calls) == 2


class CountedStepFunction(StepFunction):
    """StepFunction (a Python `if`) that counts its calls and returns numpy's float32, as numpy-based schedules do."""

    def __init__(self):
        self.calls = 0

    def __call__(self, step):
        self.calls += 1
        return np.float32(super().__call__(step))


def test_a_schedule_that_cannot_take_a_vector_is_tried_once_then_called_per_iteration():
    schedule = CountedStepFunction()
    reader = LearningRateReader(keras.optimizers.SGD(schedule))
    schedule.calls = 0
    got = [reader.at_iteration(i) for i in (0, 4, 5, 6)]
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert all(isinstance(value, float) for value in got)
    assert schedule.calls == 1 + 4  # the vector attempt (refused), then one call per iteration
    reader.at_iteration(7)
    assert schedule.calls == 6


def test_a_float_lr_is_read_from_its_variable_and_has_no_schedule():
    optimizer = keras.optimizers.SGD(0.05)
    reader = LearningRateReader(optimizer)
    assert reader.schedule is None and not reader.skips_updates
    assert reader.current() == as32(0.05)
    assert reader.at_iteration(3) is None
    optimizer.learning_rate = 0.02
    assert reader.current() == as32(0.02)


def test_reading_a_float_lr_variable_warns_nothing():
    """The variable is read with Variable.numpy(): numpy's __array__ protocol on a TensorFlow variable raises a
    DeprecationWarning (numpy 2's copy keyword) into the user's training output at every epoch."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("on JAX and PyTorch Keras's own Variable.numpy() and convert_to_numpy go through __array__")
    reader = LearningRateReader(keras.optimizers.SGD(0.05))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reader.current() == as32(0.05)


def test_the_iteration_counter_counts_updates():
    variable = keras.Variable(np.zeros(2, "float32"))
    optimizer = keras.optimizers.SGD(0.1)
    reader = LearningRateReader(optimizer)
    optimizer.build([variable])
    assert reader.iterations() == 0
    for _ in range(3):
        optimizer.apply([keras.ops.ones((2,))], [variable])
    assert reader.iterations() == 3 and isinstance(reader.iterations(), int)


ITERATIONS = [0, 1, 2, 5, _CHUNK - 1, _CHUNK, _CHUNK + 1, 3, 2 * _CHUNK + 7, 2 * _CHUNK, 10]


def test_a_schedule_is_read_at_each_iteration_across_its_look_ahead_table():
    reader = LearningRateReader(keras.optimizers.SGD(exponential()))
    assert reader.schedule is not None
    assert _CHUNK == 4096
    got = [reader.at_iteration(i) for i in ITERATIONS]
    assert got == pytest.approx([exponential_at(i) for i in ITERATIONS], rel=1e-5)
    assert all(isinstance(value, float) for value in got)
    assert reader.current() == pytest.approx(0.1, rel=1e-6)


def test_a_piecewise_schedule_changes_exactly_at_its_boundaries():
    reader = LearningRateReader(keras.optimizers.SGD(S.PiecewiseConstantDecay([4, 9], [0.1, 0.05, 0.01])))
    got = [reader.at_iteration(i) for i in (0, 4, 5, 9, 10, _CHUNK + 3)]
    assert got == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.01, 0.01], rel=1e-6)


def test_a_schedule_that_cannot_take_a_vector_is_evaluated_per_iteration():
    cosine = S.CosineDecay(0.0, decay_steps=100, warmup_target=0.1, warmup_steps=10)
    reader = LearningRateReader(keras.optimizers.SGD(cosine))
    iterations = [0, 5, 10, 60, 5, 200]
    assert [reader.at_iteration(i) for i in iterations] == pytest.approx(
        [float(cosine(i)) for i in iterations], rel=1e-6)
    assert [reader.at_iteration(i) for i in iterations] == pytest.approx([0.0, 0.05, 0.1, 0.05, 0.05, 0.0], abs=1e-6)
    python_if = LearningRateReader(keras.optimizers.SGD(StepFunction()))
    assert [python_if.at_iteration(i) for i in (0, 4, 5, _CHUNK + 1, 2)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.1])


def test_a_loss_scale_optimizer_reads_its_inner_schedule_and_skips_updates():
    reader = LearningRateReader(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(exponential())))
    assert reader.skips_updates and reader.schedule is not None
    assert reader.at_iteration(6) == pytest.approx(0.025, rel=1e-6)
    assert not LearningRateReader(keras.optimizers.SGD(exponential())).skips_updates


# -- the tracker, driven as LiveMonitor drives it --------------------------------------------------------------------


def tiny_model(optimizer) -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="out")], name="lr_model")
    model.compile(optimizer, "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def update(model, overflow: bool = False) -> None:
    """One optimizer update (the gradients of one step); `overflow`: infinite gradients, which a LossScaleOptimizer
    skips."""
    fill = np.inf if overflow else 1.0
    grads = [keras.ops.full(v.shape, fill) for v in model.trainable_variables]
    model.optimizer.apply(grads, model.trainable_variables)


def applied_lr(model) -> float:
    """The oracle: the LR the next update will apply."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class WritesLR(keras.callbacks.Callback):
    """A user's callback that sets the LR from its hooks: {("on_train_batch_end", step): lr, ...}, where `step`
    counts the steps run before the batch (batch hooks) or is the epoch (epoch hooks)."""

    def __init__(self, plan):
        super().__init__()
        self.plan = plan
        self.steps = 0

    def _maybe(self, hook, index):
        if (hook, index) in self.plan:
            self.model.optimizer.learning_rate = self.plan[(hook, index)]
        if ("assign " + hook, index) in self.plan:  # the variable's own assign, as some schedulers write it
            self.model.optimizer.learning_rate.assign(self.plan[("assign " + hook, index)])

    def on_epoch_begin(self, epoch, logs=None):
        self._maybe("on_epoch_begin", epoch)

    def on_epoch_end(self, epoch, logs=None):
        self._maybe("on_epoch_end", epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self._maybe("on_train_batch_begin", self.steps)

    def on_train_batch_end(self, batch, logs=None):
        self._maybe("on_train_batch_end", self.steps)
        self.steps += 1


def run_epochs(model, tracker, other, epochs, steps, first_step=0, overflow=()):
    """LiveMonitor first in the callback list, `other` after it; returns (LR recorded per step, oracle per step,
    LR recorded per epoch, LR changes seen at each epoch's end)."""
    recorded, oracle, per_epoch, changes = [], [], [], []
    step = first_step
    for epoch in range(epochs):
        if other:
            other.on_epoch_begin(epoch)
        for batch in range(steps):
            if batch == 0:
                changes.append(tracker.start_epoch())
            tracker.batch_begin(step)
            if other:
                other.on_train_batch_begin(batch)
            oracle.append(applied_lr(model))
            update(model, overflow=step in overflow)
            step += 1
            tracker.steps_done(step)
            recorded.append(tracker.at_step(step))
            if other:
                other.on_train_batch_end(batch)
        if other:
            other.on_epoch_end(epoch)
        per_epoch.append(tracker.at_step(step))
        changes.append(tracker.check())
    return recorded, oracle, per_epoch, changes


def test_a_float_lr_written_by_a_callback_at_any_hook_applies_from_the_right_step():
    model = tiny_model(keras.optimizers.SGD(0.1))
    tracker = LearningRateTracker()
    other = WritesLR({("on_train_batch_end", 0): 0.05,      # after step 1: from step 2
                      ("on_train_batch_begin", 2): 0.04,    # before step 3 (after our batch begin)
                      ("on_epoch_end", 0): 0.02,            # from epoch 1
                      ("on_epoch_begin", 1): np.float32(0.03),
                      ("on_train_batch_begin", 4): keras.ops.convert_to_tensor(0.01)})  # a tensor: read once
    other.set_model(model)
    tracker.begin_phase(model, step=0)
    recorded, oracle, per_epoch, changes = run_epochs(model, tracker, other, epochs=2, steps=3)
    assert oracle == pytest.approx([0.1, 0.05, 0.04, 0.03, 0.01, 0.01], rel=1e-6)
    assert recorded == pytest.approx(oracle, rel=1e-6)
    assert per_epoch == pytest.approx([0.04, 0.01], rel=1e-6)
    assert changes[0] is None  # nothing seen before the first epoch
    assert changes[1:3] == [pytest.approx((0.1, 0.02), rel=1e-6), pytest.approx((0.02, 0.03), rel=1e-6)]
    assert changes[3] == pytest.approx((0.03, 0.01), rel=1e-6)
    tracker.end_phase()


def test_a_float_lr_without_changes_is_the_same_at_every_step_and_no_change():
    model = tiny_model(keras.optimizers.SGD(0.1))
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    recorded, _, per_epoch, changes = run_epochs(model, tracker, None, epochs=2, steps=2)
    assert recorded == [as32(0.1)] * 4 and per_epoch == [as32(0.1)] * 2
    assert changes == [None] * 4
    assert not tracker.scheduled and tracker.current() == as32(0.1)


def test_an_lr_change_is_reported_once_and_only_when_it_is_one():
    model = tiny_model(keras.optimizers.SGD(0.1))
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    assert tracker.check() is None  # first reading
    model.optimizer.learning_rate = float(np.nextafter(np.float32(0.1), np.float32(1)))  # one float32 step: noise
    assert tracker.check() is None
    model.optimizer.learning_rate = 0.001
    assert tracker.check() == pytest.approx((0.1, 0.001), rel=1e-6)
    assert tracker.check() is None
    model.optimizer.learning_rate = 0.0011
    assert tracker.check() == pytest.approx((0.001, 0.0011), rel=1e-6)


def test_the_lr_variable_gets_its_own_assign_back_when_fit_ends():
    model = tiny_model(keras.optimizers.SGD(0.1))
    variable = model.optimizer._learning_rate
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    assert "assign" in variable.__dict__
    tracker.end_phase()
    assert "assign" not in variable.__dict__
    model.optimizer.learning_rate = 0.5
    assert applied_lr(model) == 0.5
    tracker.end_phase()  # twice is harmless


def test_two_monitors_on_one_optimizer_both_see_writes_and_leave_it_clean():
    model = tiny_model(keras.optimizers.SGD(0.1))
    variable = model.optimizer._learning_rate
    first, second = LearningRateTracker(), LearningRateTracker()
    first.begin_phase(model, step=0)
    second.begin_phase(model, step=0)
    for tracker in (first, second):
        tracker.start_epoch()
        tracker.batch_begin(0)
    model.optimizer.learning_rate = 0.25
    assert first.at_step(1) == 0.25 and second.at_step(1) == 0.25
    second.end_phase()
    first.end_phase()
    assert "assign" not in variable.__dict__


def test_a_watch_detached_out_of_order_leaves_the_newer_one_in_place():
    variable = keras.Variable(0.1)
    seen = []
    older = AssignmentWatch(variable, lambda value, after: seen.append(("older", value)))
    newer = AssignmentWatch(variable, lambda value, after: seen.append(("newer", value)))
    older.detach()
    variable.assign(0.2)
    assert seen == [("older", 0.2), ("newer", 0.2)]  # the newer wrapper still calls through the older one
    newer.detach()
    assert variable.__dict__.get("assign") is not None  # the older wrapper: newer restores what it found
    assert float(variable.numpy()) == pytest.approx(0.2)


def test_a_write_outside_any_callback_applies_from_the_next_step():
    model = tiny_model(keras.optimizers.SGD(0.1))
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    tracker.start_epoch()
    tracker.batch_begin(0)
    model.optimizer.learning_rate = 0.07  # a custom loop's own code, between our hooks
    assert tracker.at_step(1) == 0.07  # the value written, as written


def test_a_monitor_that_never_began_records_no_lr():
    tracker = LearningRateTracker()
    assert tracker.at_step(3) is None and tracker.current() is None and tracker.check() is None
    assert not tracker.scheduled


def test_a_schedule_gives_each_step_the_lr_of_its_iteration_across_fits():
    model = tiny_model(keras.optimizers.SGD(exponential()))
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    recorded, oracle, per_epoch, changes = run_epochs(model, tracker, None, epochs=2, steps=3)
    assert tracker.scheduled
    assert oracle == pytest.approx([exponential_at(i) for i in range(6)], rel=1e-6)
    assert recorded == pytest.approx(oracle, rel=1e-6)
    assert per_epoch == pytest.approx([exponential_at(2), exponential_at(5)], rel=1e-6)
    assert changes == [None] * 4  # a schedule's decay is no event
    tracker.end_phase()
    # A second fit() continues the run's steps and the optimizer's iterations.
    tracker.begin_phase(model, step=6)
    recorded, oracle, _, _ = run_epochs(model, tracker, None, epochs=1, steps=2, first_step=6)
    assert recorded == pytest.approx([exponential_at(6), exponential_at(7)], rel=1e-6)
    assert recorded == pytest.approx(oracle, rel=1e-6)


def test_after_a_recompile_the_schedule_starts_over_at_the_runs_step():
    model = tiny_model(keras.optimizers.SGD(exponential()))
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    run_epochs(model, tracker, None, epochs=1, steps=4)
    model.compile(keras.optimizers.SGD(exponential()), "mse")  # a fresh optimizer at iteration 0
    model.optimizer.build(model.trainable_variables)
    tracker.begin_phase(model, step=4)
    recorded, oracle, _, _ = run_epochs(model, tracker, None, epochs=1, steps=3, first_step=4)
    assert recorded == pytest.approx([exponential_at(0), exponential_at(1), exponential_at(2)], rel=1e-6)
    assert recorded == pytest.approx(oracle, rel=1e-6)


# These apply a LossScaleOptimizer's updates one call at a time, outside fit(): JAX's runs only inside a traced train
# step (its overflow check leaks a tracer when called eagerly). Under JAX the same skipped-step LRs are checked through
# fit() in test_callback_training_loops.py.
DIRECT_LOSS_SCALE = pytest.mark.skipif(keras.backend.backend() == "jax",
                                       reason="JAX's LossScaleOptimizer steps only inside a traced train step")


@DIRECT_LOSS_SCALE
def test_a_loss_scale_optimizer_gives_skipped_steps_the_lr_they_were_taken_at():
    model = tiny_model(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(exponential())))
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    recorded, oracle, _, _ = run_epochs(model, tracker, None, epochs=2, steps=4, overflow={1, 2, 5})
    # The inner counter stands still at the overflowing steps: iterations 0, 1, 1, 1, 2, 3, 3, 4.
    assert oracle == pytest.approx([exponential_at(i) for i in (0, 1, 1, 1, 2, 3, 3, 4)], rel=1e-6)
    assert recorded == pytest.approx(oracle, rel=1e-6)


@DIRECT_LOSS_SCALE
def test_with_steps_per_execution_the_skipped_steps_of_a_group_are_taken_to_come_first():
    model = tiny_model(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(exponential())))
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    tracker.start_epoch()
    # Two groups of three steps: one begin and one end each; the second group's middle step overflows.
    tracker.batch_begin(0)
    for _ in range(3):
        update(model)
    tracker.steps_done(3)
    tracker.steps_done(2)  # an end reported late changes nothing
    tracker.batch_begin(3)
    for overflow in (False, True, False):
        update(model, overflow)
    tracker.steps_done(6)
    tracker.steps_done(6)  # nor one reported twice
    assert [tracker.at_step(s) for s in range(1, 7)] == pytest.approx(
        [exponential_at(i) for i in (0, 1, 2, 3, 3, 4)], rel=1e-6)


@DIRECT_LOSS_SCALE
def test_a_loss_scale_optimizer_with_a_float_lr_needs_no_counter():
    model = tiny_model(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.2)))
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    recorded, _, _, _ = run_epochs(model, tracker, None, epochs=1, steps=3, overflow={1})
    assert recorded == [as32(0.2)] * 3


def test_an_lr_assigned_to_the_variable_in_a_hook_applies_from_the_right_step():
    model = tiny_model(keras.optimizers.SGD(0.1))
    tracker = LearningRateTracker()
    other = WritesLR({("assign on_train_batch_end", 0): 0.05, ("assign on_train_batch_begin", 2): 0.04})
    other.set_model(model)
    tracker.begin_phase(model, step=0)
    recorded, oracle, _, _ = run_epochs(model, tracker, other, epochs=1, steps=3)
    assert oracle == pytest.approx([0.1, 0.05, 0.04], rel=1e-6)
    assert recorded == pytest.approx(oracle, rel=1e-6)


def test_the_compiled_jax_copy_holds_the_same_value():
    jnp = pytest.importorskip("jax.numpy")
    from kerascope.callbacks._learning_rate import _jax_copy

    counter = jnp.asarray(41, dtype="int32")
    copied = _jax_copy()(counter)
    assert int(copied) == 41 and copied is not counter
    assert _jax_copy() is _jax_copy()  # compiled once
