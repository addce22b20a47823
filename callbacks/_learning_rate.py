"""Read the learning rate an optimizer applies, cheaply enough to record it at every batch.

A float learning rate lives in a variable that only callbacks change, at any hook (LearningRateScheduler at epoch
begin, ReduceLROnPlateau at epoch end, cyclic and warm-up callbacks at every batch). Reading the variable costs a
backend op (about 0.1 ms on TensorFlow, more than the whole per-batch budget), so it is read only at epoch begin,
and every write in between is seen as it happens: `AssignmentWatch` wraps the variable's `assign` (the optimizer's
`learning_rate` setter calls it) and takes the value written, with whether it was written before a step (a batch or
epoch begin hook) or after one (a batch or epoch end hook) — so the LR of each step is exact whichever position the
writing callback has in the callback list. Where Keras runs batch ends in a worker thread (JAX and torch, for this
async-safe callback), a batch end that runs after the next step's begin hooks gets the next step's float LR when a
callback changes it at every batch. A LearningRateSchedule is a function of
the optimizer's iteration counter: it is evaluated once per epoch for all of the epoch's steps at once (one vectorized
call instead of a few backend ops per batch) and looked up per batch; schedules that cannot take a vector of steps
(those built on `ops.cond`, such as CosineDecay with warmup) are evaluated per batch.

A LossScaleOptimizer skips the update of a step whose gradients overflow, and its inner optimizer's counter (where the
schedule is evaluated) does not advance: with such an optimizer and a schedule the counter is followed step by step
(`IterationCounter`, without syncing JAX's training state) and each step gets the iteration its update really used.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras.optimizers.schedules import LearningRateSchedule

from kerascope.monitor.format import as_float

# At most this many steps are evaluated ahead in one call (an unsized dataset has no known epoch length).
_CHUNK = 4096


def base_optimizer(optimizer: Any) -> Any:
    """The optimizer that holds the learning rate: LossScaleOptimizer's inner one, a multi-optimizer's first one."""
    for _ in range(8):
        inner = getattr(optimizer, "inner_optimizer", None)
        if inner is not None:
            optimizer = inner
            continue
        children = getattr(optimizer, "optimizers", None)
        if isinstance(children, (list, tuple)) and children:
            optimizer = children[0]
            continue
        break
    return optimizer


def _to_float(value: Any) -> float | None:
    try:
        if isinstance(value, (int, float)):
            return float(value)
        # Variable.numpy() reads the value without numpy's __array__ protocol (deprecated use on TF variables).
        return as_float(value.numpy() if isinstance(value, keras.Variable) else keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return None


class LearningRateReader:
    """The learning rate of one optimizer, at its current state or at a given iteration.

    Args:
        optimizer: a Keras optimizer (possibly a LossScaleOptimizer or a multi-optimizer).
    """

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = base_optimizer(optimizer)
        self.skips_updates = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)  # on gradient overflow
        raw = getattr(self.optimizer, "_learning_rate", None)
        self.schedule: LearningRateSchedule | None = raw if isinstance(raw, LearningRateSchedule) else None
        self._vectorized = self.schedule is not None
        self._table_start = 0
        self._table = np.empty(0)

    def iterations(self) -> int | None:
        """The optimizer's iteration counter now (the index of the next update)."""
        value = _to_float(getattr(self.optimizer, "iterations", None))
        return None if value is None else int(value)

    def current(self) -> float | None:
        """The learning rate the next update will use (reads the variable / evaluates the schedule)."""
        return _to_float(self.optimizer.learning_rate)

    def at_iteration(self, iteration: int) -> float | None:
        """The learning rate of update number `iteration` (0-based), or the current one for a float LR."""
        if self.schedule is None:
            return None
        offset = iteration - self._table_start
        if 0 <= offset < len(self._table):
            return float(self._table[offset])
        if self._vectorized and self._fill(iteration):
            return float(self._table[0])
        return _to_float(self.schedule(iteration))

    def _fill(self, first: int) -> bool:
        """Evaluate the schedule for the next _CHUNK iterations in one call; False when it cannot take a vector."""
        steps = np.arange(first, first + _CHUNK, dtype="int64")
        try:
            values = keras.ops.convert_to_numpy(self.schedule(steps)).astype("float64").reshape(-1)
        except Exception:
            values = np.empty(0)
        if values.shape != (_CHUNK,):
            self._vectorized = False
            return False
        self._table_start, self._table = first, values
        return True


def _to_int(value: Any) -> int | None:
    number = _to_float(value)
    return None if number is None else int(number)


_JAX_COPY: list[Callable[[Any], Any]] = []


def _jax_copy() -> Callable[[Any], Any]:
    """A compiled copy of a JAX array: about 5 us to dispatch, and it does not wait for the array to be computed."""
    if not _JAX_COPY:
        import jax

        _JAX_COPY.append(jax.jit(jax.numpy.copy))
    return _JAX_COPY[0]


class IterationCounter:
    """An optimizer's iteration counter, followed during fit() step by step without syncing the model's state.

    A batch end needs the counter after its steps. On TensorFlow Keras calls batch ends in the training thread right
    after their step, and the variable is read there. On JAX and PyTorch it may call an async-safe callback's batch
    ends in a worker thread, after later steps began: there, a batch begin whose previous steps are not recorded yet
    captures the counter (in the training thread, before the next update; on JAX a copy of the array in the trainer's
    in-flight state — the variables are detached from it until the epoch ends, and the next step consumes the state's
    arrays —, made on the device by a compiled copy, without waiting for the step; on PyTorch a copy, because the
    update changes the tensor in place). A batch end reads the counter live first and then uses the capture when there
    is one: a read that raced with the next step's update is never used, and a step cannot consume the counter before
    its capture is taken.

    Args:
        model: the model being trained (not through `Callback.model`, which syncs JAX's state at every access).
        optimizer: the optimizer that owns the counter (`LearningRateReader.optimizer`).
    """

    def __init__(self, model: Any, optimizer: Any) -> None:
        self._model = model
        self._variable = optimizer.iterations
        self._backend = keras.backend.backend()
        self._index: int | None = None  # the counter's position in the JAX trainer's optimizer state
        if self._backend == "jax":
            variables = list(getattr(getattr(model, "optimizer", None), "variables", None) or [])
            self._index = next((i for i, v in enumerate(variables) if v is self._variable), None)
        # JAX detaches the variables during an epoch: without the counter's place in the state it cannot be followed.
        self.usable = self._backend != "jax" or self._index is not None
        self._captured: dict[int, Any] = {}  # global step before a batch begin -> the counter then

    def _live(self) -> Any:
        """The counter now, not yet read from the device: on JAX an array, elsewhere the variable."""
        if self._index is None:
            return self._variable
        model = self._model
        state = getattr(model, "_jax_state", None)
        # The trainer's state while a training epoch runs; during validation it is the evaluation's, which has no
        # optimizer variables (they stay attached to the variables then).
        values = state.get("optimizer_variables") if state and not getattr(model, "_jax_state_synced", True) else None
        return values[self._index] if values else self._variable.value

    def clear(self) -> None:
        """Forget captures of steps already recorded (an epoch begins: every batch end before it was recorded)."""
        self._captured.clear()

    def capture(self, step: int) -> None:
        """In the training thread, at a batch begin: the counter after global `step`, before the next update."""
        if self._backend == "jax":
            self._captured[step] = _jax_copy()(self._live())
        elif self._backend != "tensorflow":  # batch ends run in the training thread on TensorFlow: nothing to keep
            self._captured[step] = keras.ops.copy(self._variable.value)

    def after(self, step: int) -> int | None:
        """The counter after the update of global `step` (a batch end reported it; its logs are ready)."""
        try:
            live = _to_int(self._live())
        except RuntimeError:  # JAX: a later step consumed the array; its batch begin captured the value first
            live = None
        captured = self._captured.pop(step, None)
        return live if captured is None else _to_int(captured)


# Hook names (Keras's CallbackList and every Callback use them) that run before a training step, and after one.
_BEFORE_STEP = frozenset({"on_train_batch_begin", "on_batch_begin", "on_epoch_begin", "on_train_begin"})
_AFTER_STEP = frozenset({"on_train_batch_end", "on_batch_end", "on_epoch_end"})


def _written_after_step() -> bool:
    """Whether the assignment in progress comes from a batch or epoch end hook (it applies from the next step)."""
    frame = sys._getframe(2)  # the caller of the wrapped assign
    for _ in range(40):
        if frame is None:
            break
        name = frame.f_code.co_name
        if name in _AFTER_STEP:
            return True
        if name in _BEFORE_STEP:
            return False
        frame = frame.f_back
    return False  # outside callbacks (between fit() calls, a custom loop): before the next step


class AssignmentWatch:
    """Sees every write to a float LR variable without reading it per batch: wraps the variable's `assign`.

    The wrapper calls the original first and never raises on its own account; `detach()` restores the variable.

    Args:
        variable: the optimizer's LR variable (`optimizer._learning_rate` for a float LR).
        on_write: called with (the value written, or None when it is not a plain number, and whether it was written
            after a step).
    """

    def __init__(self, variable: Any, on_write: Callable[[float | None, bool], None]) -> None:
        self.variable = variable
        self._own = variable.__dict__.get("assign")  # another monitor's wrapper, restored by detach()
        original = variable.assign

        def assign(value: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(value, *args, **kwargs)
            try:
                number = float(value) if isinstance(value, (int, float, np.floating, np.integer)) else None
                on_write(number, _written_after_step())
            except Exception:  # noqa: BLE001 - a monitor must never break the user's assignment
                pass
            return result

        self._wrapper = assign
        variable.assign = assign

    def detach(self) -> None:
        if self.variable.__dict__.get("assign") is not self._wrapper:
            return  # replaced since (another monitor attached after this one): leave theirs in place
        if self._own is None:
            del self.variable.assign
        else:
            self.variable.assign = self._own


class LearningRateTracker:
    """The LR applied at each global step of a run, and the changes of a float LR, across fit() calls.

    Example:
    ```python
    tracker = LearningRateTracker()
    tracker.begin_phase(model, step=0)
    change = tracker.start_epoch()  # (old, new) when a callback changed a float LR, else None
    lr = tracker.at_step(1)         # the LR of the update that produced global step 1
    ```
    """

    def __init__(self) -> None:
        self.recorded: float | None = None  # the last float LR seen, kept across fit() calls
        self.epoch_lr: float | None = None
        self._watch: AssignmentWatch | None = None
        self._latest: float | None = None  # a float LR as last written (None: unknown until read)
        self._step_lr: float | None = None  # the float LR of the step under way / just run
        self.reader: LearningRateReader | None = None
        self._iteration0 = 0
        self._phase_start_step = 0
        self._counter: IterationCounter | None = None  # followed step by step (updates can be skipped)
        # The latest group of steps whose updates were counted: (last step before it, its last step, the counter
        # before it, the counter after it).
        self._group = (0, 0, 0, 0)

    def begin_phase(self, model: Any, step: int) -> None:
        """A fit() begins at global `step` (`model`: the model object itself, not `Callback.model`)."""
        self.end_phase()
        self.reader = None  # no LR is recorded for this fit() if the optimizer cannot be read
        self._counter = None
        self.reader = LearningRateReader(model.optimizer)
        variable = getattr(self.reader.optimizer, "_learning_rate", None)
        if isinstance(variable, keras.Variable):
            self._watch = AssignmentWatch(variable, self._written)
        # The optimizer's counter need not match the run's step (a recompile brings a new optimizer at 0).
        self._iteration0 = self.reader.iterations() or 0
        self._phase_start_step = step
        if self.reader.skips_updates and self.reader.schedule is not None:
            counter = IterationCounter(model, self.reader.optimizer)
            self._counter = counter if counter.usable else None  # else: one update per step is assumed
        self._group = (step, step, self._iteration0, self._iteration0)
        self.epoch_lr = None

    def end_phase(self) -> None:
        """Give the LR variable its own `assign` back (fit() ended)."""
        if self._watch is not None:
            self._watch.detach()
            self._watch = None

    def _written(self, value: float | None, after_step: bool) -> None:
        if value is None:  # a tensor: read it once now (a write is rare next to the steps it applies to)
            value = self.reader.current()
        self._latest = value
        if not after_step:
            self._step_lr = value

    def batch_begin(self, step: int) -> None:
        """Our batch begin hook, before the steps after global `step`: they use the latest written float LR (writes
        after this one, by callbacks later in the list, are taken as they happen)."""
        self._step_lr = self._latest
        if self._counter is not None and self._group[1] < step:  # the batch end of `step` is not recorded yet
            self._counter.capture(step)

    def steps_done(self, step: int) -> None:
        """The training thread reported the steps up to global `step` (each batch end, in order)."""
        if self._counter is None or step <= self._group[1]:
            return
        after = self._counter.after(step)
        if after is not None:
            last_iteration = self._group[3]
            self._group = (self._group[1], step, last_iteration, after)

    def _iteration_of(self, step: int) -> int:
        """The counter the update of global `step` ran at."""
        before_step, last_step, before, after = self._group
        if self._counter is not None and before_step < step <= last_step:
            # Which steps of a group of k were skipped is not reported: the skipped ones are taken to come first
            # (the loss scale halves until the gradients are finite), the applied ones use the next counters.
            skipped = (last_step - before_step) - (after - before)
            return before + max(0, step - before_step - 1 - skipped)
        return self._iteration0 + step - self._phase_start_step - 1

    @property
    def scheduled(self) -> bool:
        return self.reader is not None and self.reader.schedule is not None

    def current(self) -> float | None:
        return None if self.reader is None else self.reader.current()

    def at_step(self, step: int) -> float | None:
        """The LR of the update that produced global `step` (for a schedule: at the optimizer iteration before it)."""
        if self.reader is None or self.reader.schedule is None:
            return self._step_lr if self._watch is not None else self.epoch_lr
        return self.reader.at_iteration(self._iteration_of(step))

    def check(self) -> tuple[float, float] | None:
        """Read a float LR now; return (old, new) when it differs from the last one seen."""
        if self.reader is None or self.scheduled:
            return None
        value = self.reader.current()
        old, self.recorded = self.recorded, value
        if old is None or value is None or math.isclose(old, value, rel_tol=1e-7, abs_tol=0.0):
            return None
        return old, value

    def start_epoch(self) -> tuple[float, float] | None:
        """Read the LR the epoch's updates use (after every callback's on_epoch_begin)."""
        change = self.check()
        self.epoch_lr = self._latest = self._step_lr = self.recorded
        if self._counter is not None:
            self._counter.clear()
        return change
