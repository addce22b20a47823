"""Divergence forensics: gradient statistics every N batches, the first divergence, and the layer that broke first."""

from __future__ import annotations

import math
import re
import statistics
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras

from kerascope.callbacks._gradients import GradientProbe
from kerascope.callbacks._statistics import nested_layers
from kerascope.monitor import format as fmt

DEFAULT_GRADIENT_FREQ = 50
DEFAULT_DIVERGENCE_FACTOR = 10.0
# The loss spike rule compares running means of at least this many batches (an epoch's first batches are noisy).
SPIKE_WARMUP_BATCHES = 5
HISTORY = 8  # recent records per layer that a jump is measured against
_CALL_SUFFIX = re.compile(r"(@\d+)?(:\d+)?$")  # activation rows of shared layers (`tower@2`) and extra outputs


@dataclass(frozen=True)
class Trigger:
    """What was seen first: a metric that became non-finite, or the loss above `factor` times its best."""

    step: int
    epoch: int
    metric: str
    value: float
    rule: str  # fmt.DIVERGENCE_NONFINITE or fmt.DIVERGENCE_SPIKE
    best: float | None = None


class DivergenceWatch:
    """Notices the first divergence of a run in the logged metrics (plain Python: safe on Keras's callback thread).

    Args:
        factor: the loss spike threshold (loss above `factor` x the run's best running-mean loss); None turns the
            spike rule off (non-finite metrics are always a divergence).
    """

    def __init__(self, factor: float | None) -> None:
        self.factor = factor
        self.best: float | None = None
        self.trigger: Trigger | None = None  # the first divergence, until it is taken
        self.done = False  # the loss diverged and was reported: one loss divergence per run
        # Other metrics that turned non-finite, reported once each: a custom metric that is NaN by design (a ratio
        # over a class absent from the batch) must not hide the loss diverging later.
        self.reported: set[str] = set()
        # Batch ends may run on Keras's callback thread while the training thread takes the trigger.
        self._lock = threading.Lock()

    def batch(self, step: int, epoch: int, batch: int, logs: dict[str, Any], steps_per_epoch: int | None) -> None:
        done = batch + 1
        self._check(step, epoch, logs, settled=done >= SPIKE_WARMUP_BATCHES or done == steps_per_epoch)

    def epoch(self, step: int, epoch: int, logs: dict[str, Any]) -> None:
        self._check(step, epoch, logs, settled=True)

    def _check(self, step: int, epoch: int, logs: dict[str, Any], settled: bool) -> None:
        if self.done or self.trigger is not None:
            return
        with self._lock:
            if not self.done:
                self._judge(step, epoch, logs, settled)

    def _judge(self, step: int, epoch: int, logs: dict[str, Any], settled: bool) -> None:
        broken = [k for k, v in logs.items()  # Keras hands callbacks Python floats
                  if v.__class__ is float and not math.isfinite(v) and k not in self.reported]
        if broken:
            metric = "loss" if "loss" in broken else broken[0]
            self.trigger = Trigger(step, epoch, metric, logs[metric], fmt.DIVERGENCE_NONFINITE, self.best)
            return
        loss = logs.get("loss")
        if not isinstance(loss, (int, float)) or not settled:
            return
        if self.factor and self.best is not None and self.best > 0 and loss > self.factor * self.best:
            self.trigger = Trigger(step, epoch, "loss", float(loss), fmt.DIVERGENCE_SPIKE, self.best)
        elif self.best is None or loss < self.best:
            self.best = float(loss)

    def take(self) -> Trigger | None:
        """The pending divergence, once: after the loss's, nothing more is reported; after another metric's, only
        the other metrics' and the loss's."""
        with self._lock:
            trigger, self.trigger = self.trigger, None
            if trigger is not None:
                if fmt.is_loss_divergence(trigger.metric, trigger.rule):
                    self.done = True
                else:
                    self.reported.add(trigger.metric)
            return trigger


def _layer_of(row: str) -> str:
    return _CALL_SUFFIX.sub("", row)


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def layer_gradient_norms(records: list[dict[str, Any]]) -> dict[str, float]:
    """Each layer's gradient norm (over all its weights) from one batch's gradient records."""
    squares: dict[str, float] = {}
    for record in records:
        norm = record["norm"]
        if record["nonfinite_frac"] > 0 or not math.isfinite(norm):
            squares[record["layer"]] = math.nan
        else:
            squares[record["layer"]] = squares.get(record["layer"], 0.0) + norm * norm
    return {layer: math.sqrt(value) if math.isfinite(value) else value for layer, value in squares.items()}


def activation_spreads(records: list[dict[str, Any]]) -> dict[str, float]:
    """Each layer's activation std from one set of activation records (NaN where any statistic is non-finite)."""
    spreads: dict[str, float] = {}
    for record in records:
        layer = _layer_of(str(record.get("layer")))
        stats = [record.get(k) for k in ("mean", "std", "min", "max")]
        if not _finite(*stats):
            spreads[layer] = math.nan  # one non-finite call of a shared layer makes the layer non-finite
        elif math.isfinite(spreads.get(layer, 0.0)):
            spreads[layer] = float(record["std"])
    return spreads


class LayerHistory:
    """Recent gradient norms and activation spreads of each layer, to judge which one jumped."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], deque[float]] = {}

    def add(self, source: str, values: dict[str, float]) -> None:
        for layer, value in values.items():
            if math.isfinite(value):
                self.values.setdefault((source, layer), deque(maxlen=HISTORY)).append(value)

    def baseline(self, source: str, layer: str) -> float | None:
        history = self.values.get((source, layer))
        return statistics.median(history) if history else None


def blame(order: list[str], now: dict[str, dict[str, float]], history: LayerHistory) -> tuple[str | None, dict]:
    """The layer that broke first, and the evidence: in forward order, the first layer whose activations or
    gradients are non-finite; when none is (a loss spike), or all are (the update already spread NaN through every
    weight, so order says nothing), the layer whose gradient norm or activation spread jumped most against its own
    recent history.

    Args:
        order: layer names in forward order.
        now: {"gradients": {layer: norm}, "activations": {layer: std}} at the moment of divergence.
        history: the layers' values before it.
    """
    layers = [layer for layer in order if any(layer in values for values in now.values())]
    broken = [(layer, source) for layer in layers for source, values in now.items()
              if layer in values and not math.isfinite(values[layer])]
    broken_layers = list(dict.fromkeys(layer for layer, _ in broken))
    # "All broken" is judged on the gradients when there are any: every weight is NaN after a NaN update, while
    # some layers' outputs (max pooling) can still read finite.
    judged = now.get("gradients") or now.get("activations") or {}
    all_broken = bool(judged) and not any(math.isfinite(value) for value in judged.values())
    if broken and not all_broken:
        layer, source = broken[0]
        return layer, {"rule": "first non-finite", "source": source, "value": now[source][layer],
                       "nonfinite_layers": broken_layers}
    best: tuple[float, str, str, float, float] | None = None
    for source, values in now.items():
        for layer, value in values.items():
            base = history.baseline(source, layer)
            if base is None and broken:
                continue
            if not math.isfinite(value):
                # All layers broke: measure the last finite value each layer had against its history.
                past = history.values.get((source, layer))
                if not past or len(past) < 2:
                    continue
                value, base = past[-1], statistics.median(list(past)[:-1])
            if base is None or base <= 0:
                continue
            ratio = value / base
            if best is None or ratio > best[0]:
                best = (ratio, layer, source, value, base)
    if best is None:
        if broken_layers:
            layer, source = broken[0]
            return layer, {"rule": "first non-finite", "source": source, "value": now[source][layer],
                           "nonfinite_layers": broken_layers}
        grads = {k: v for k, v in now.get("gradients", {}).items() if math.isfinite(v)}
        if not grads:
            return None, {}
        layer = max(grads, key=grads.get)
        return layer, {"rule": "largest gradient norm", "source": "gradients", "value": grads[layer]}
    ratio, layer, source, value, base = best
    evidence = {"rule": "largest jump", "source": source, "value": value, "baseline": base, "ratio": ratio}
    if broken_layers:
        evidence["nonfinite_layers"] = broken_layers
    return layer, evidence


class Forensics:
    """Gradient statistics every `freq` batches and, at the first divergence, a `divergence` event naming the step,
    the LR and the layer, with an immediate snapshot of activations and gradients.

    Batch-end checks are plain Python (they may run on Keras's callback thread); everything that touches the model
    runs on the training thread, at a batch begin (before the next update), an epoch end or the train end, so the
    snapshot exists even when TerminateOnNaN stops the run at the next batch.

    Args:
        data: `gradient_data`, `(x, y)` or `(x, y, sample_weight)`, or None (no gradient statistics).
        freq: take gradient statistics every this many batches (0 turns them off; the snapshot is still taken).
        factor: the loss spike threshold of `DivergenceWatch`.
        log: `RunWriter.log`-like: (stream, record).
        event: `RunReporter.event`-like.
        skip: `RunReporter.skip`-like.
        lr_at: the learning rate at a step, or None.
        activations: (model) -> activation records on the run's probe data, or None when none can be taken.
    """

    def __init__(self, data: Any, freq: int, factor: float | None, *, log: Callable[[str, dict], None],
                 event: Callable[..., None], skip: Callable[[str, str], None], lr_at: Callable[[int], float | None],
                 activations: Callable[[keras.Model], list[dict[str, Any]] | None]) -> None:
        self.data = data
        self.freq = freq if data is not None else 0
        self.watch = DivergenceWatch(factor)
        self.history = LayerHistory()
        self._log, self._event, self._skip, self._lr_at, self._activations = log, event, skip, lr_at, activations
        self._probe: GradientProbe | None = None
        self._probe_failed = False
        self._warming: threading.Thread | None = None  # traces / compiles the gradient function off the training thread
        self._warm_error: BaseException | None = None
        self._next = 0  # the next step due for gradient statistics

    def begin_fit(self, model: keras.Model, step: int) -> None:
        """A new fit() (the model may be another one, or have other trainable weights): the first statistics come
        after `freq` batches, while the gradient function is traced (compiled on JAX) on a background thread, so
        that training does not wait for it."""
        self._probe, self._probe_failed, self._warming, self._warm_error = None, False, None, None
        self._next = step + self.freq
        if self.freq <= 0 or not model.built:  # a subclassed model is built by its first step: prepared when due
            return
        if self._new_probe(model):
            self._warming = threading.Thread(target=self._warm, name="kerascope-gradients", daemon=True)
            self._warming.start()

    def due(self, step: int) -> bool:
        """Whether `at_batch_begin` has work at this step (cheap: no model access)."""
        return self.watch.trigger is not None or (self.freq > 0 and step >= self._next and not self._probe_failed)

    def _new_probe(self, model: keras.Model) -> bool:
        try:
            self._probe = GradientProbe(model, self.data)
        except ValueError as exc:
            self._probe_failed = True
            self._skip("gradients", str(exc))
            return False
        return True

    def at_batch_begin(self, model: keras.Model, step: int, epoch: int) -> None:
        """Before the update of step `step` + 1: the pending snapshot, then the regular gradient statistics."""
        if self.watch.trigger is not None:
            self.snapshot(model, epoch)
        if self.freq > 0 and step >= self._next:
            self._next = step - step % self.freq + self.freq
            records = self._gradients(model, step, epoch)
            if records:
                self.history.add("gradients", layer_gradient_norms(records))

    def _warm(self) -> None:
        try:
            self._probe.warm_up()
        except BaseException as exc:  # raised again on the training thread, where it becomes one warning
            self._warm_error = exc

    def _wait_warm(self) -> None:
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        if self._warm_error is not None:
            error, self._warm_error, self._probe_failed = self._warm_error, None, True
            raise error

    def observe_activations(self, records: list[dict[str, Any]]) -> None:
        self.history.add("activations", activation_spreads(records))

    def _gradients(self, model: keras.Model, step: int, epoch: int, **extra: Any) -> list[dict[str, Any]]:
        if self.data is None or self._probe_failed:
            return []
        if self._probe is None and not self._new_probe(model):
            return []
        self._wait_warm()
        try:
            records = self._probe.records()
        except Exception:
            # Once per fit(), like a failed warm-up: on PyTorch nothing is traced ahead, so a gradient function that
            # cannot run fails here, and would again at every due step.
            self._probe_failed = True
            raise
        for record in records:
            self._log("gradients", {"step": step, "epoch": epoch, **record, **extra})
        return records

    def snapshot(self, model: keras.Model, epoch: int) -> None:
        """The divergence event, with activations and gradients at this moment, if a divergence is pending."""
        trigger = self.watch.take()
        if trigger is None:
            return
        now: dict[str, dict[str, float]] = {}
        order = [name for name, _ in _forward_layers(model)]
        try:
            grads = self._gradients(model, trigger.step, epoch, snapshot=True)
            if grads:
                now["gradients"] = layer_gradient_norms(grads)
                order = list(dict.fromkeys([*self._probe.layer_order, *order]))
        finally:
            # The event is written even when a statistic failed: the step and the LR are evidence too.
            acts = self._activations(model)
            if acts:
                for record in acts:
                    self._log("activations", {"step": trigger.step, "epoch": epoch, **record, "snapshot": True})
                now["activations"] = activation_spreads(acts)
            layer, evidence = blame(order, now, self.history)
            lr = self._lr_at(trigger.step)
            self._event_for(trigger, layer, evidence, lr)

    def _event_for(self, trigger: Trigger, layer: str | None, evidence: dict[str, Any], lr: float | None) -> None:
        if trigger.rule == fmt.DIVERGENCE_SPIKE:
            what = f"loss {trigger.value:.4g} is {trigger.value / trigger.best:.3g}x its best {trigger.best:.4g}"
        else:
            what = f"{trigger.metric} became {trigger.value}"
        where = f" at step {trigger.step:,}"
        rate = f" (LR {lr:.4g})" if lr is not None else ""
        culprit = f"; first layer to break: {layer} ({_describe(evidence)})" if layer else ""
        self._event(fmt.EVENT_DIVERGENCE, f"diverged: {what}{where}{rate}{culprit}", step=trigger.step,
                    data={"step": trigger.step, "lr": lr, "layer": layer, "metric": trigger.metric,
                          "value": trigger.value, "rule": trigger.rule, "best": trigger.best, "evidence": evidence})


def _describe(evidence: dict[str, Any]) -> str:
    source = evidence.get("source", "")
    noun = "gradient norm" if source == "gradients" else "activation spread"
    if evidence.get("rule") == "first non-finite":
        return f"its {source} are non-finite"
    if evidence.get("rule") == "largest jump":
        return f"{noun} {evidence['value']:.3g}, {evidence['ratio']:.3g}x its recent {evidence['baseline']:.3g}"
    return f"largest {noun}, {evidence.get('value', math.nan):.3g}"


def _forward_layers(model: keras.Model) -> list[tuple[str, Any]]:
    return [(name, layer) for name, layer in nested_layers(model) if not isinstance(layer, keras.Model)]
