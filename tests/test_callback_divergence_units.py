"""Divergence forensics driven directly: the watch over logged metrics, the per-layer reductions, the layer history,
the blame, and Forensics itself on a tiny real model whose gradients are known by hand. No training loop: each hook is
called as LiveMonitor calls it.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest

from kerascope.callbacks._divergence import (
    HISTORY,
    DivergenceWatch,
    Forensics,
    LayerHistory,
    Trigger,
    _describe,
    activation_spreads,
    blame,
    layer_gradient_norms,
)

NAN, INF = math.nan, math.inf


def same(found: Any, expected: Any) -> bool:
    """Equality where NaN equals NaN (dicts, lists and floats)."""
    if isinstance(expected, dict):
        return isinstance(found, dict) and list(found) == list(expected) and all(
            same(found[key], value) for key, value in expected.items())
    if isinstance(expected, (list, tuple)):
        return type(found) is type(expected) and len(found) == len(expected) and all(
            same(a, b) for a, b in zip(found, expected, strict=True))
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(found, float) and math.isnan(found)
    return found == expected and type(found) is type(expected)


# -- DivergenceWatch ------------------------------------------------------------------------------------------------


def test_a_batch_loss_counts_towards_the_best_only_from_the_fifth_batch_of_an_epoch():
    watch = DivergenceWatch(10.0)
    watch.batch(1, 0, 3, {"loss": 0.5}, None)  # the 4th batch's running mean: noisy
    assert watch.best is None
    watch.batch(2, 0, 4, {"loss": 0.7}, None)  # the 5th
    assert watch.best == 0.7


def test_a_batch_loss_counts_at_the_last_batch_of_a_short_epoch():
    watch = DivergenceWatch(10.0)
    watch.batch(1, 0, 1, {"loss": 0.5}, 3)  # 2 of 3 batches
    assert watch.best is None
    watch.batch(2, 0, 1, {"loss": 0.6}, 2)  # 2 of 2: the epoch's mean
    assert watch.best == 0.6


def test_an_epoch_loss_always_counts_and_the_best_is_the_lowest_as_a_float():
    watch = DivergenceWatch(10.0)
    for loss in (2, 0.5, 0.8):
        watch.epoch(1, 0, {"loss": loss})
    assert watch.best == 0.5
    fresh = DivergenceWatch(10.0)
    fresh.epoch(1, 0, {"loss": 2})
    assert fresh.best == 2.0 and type(fresh.best) is float


def test_logs_without_a_numeric_loss_leave_the_best_alone():
    watch = DivergenceWatch(10.0)
    watch.epoch(1, 0, {"accuracy": 0.5})
    watch.epoch(2, 0, {"loss": "n/a"})
    assert (watch.best, watch.trigger) == (None, None)


def test_a_non_finite_loss_is_a_trigger_with_the_best_seen_before():
    watch = DivergenceWatch(10.0)
    watch.epoch(3, 0, {"loss": 0.5})
    watch.batch(7, 1, 2, {"accuracy": 0.9, "loss": NAN}, 4)
    trigger = watch.trigger
    assert (trigger.step, trigger.epoch, trigger.metric, trigger.rule, trigger.best) == (
        7, 1, "loss", "non-finite", 0.5)
    assert math.isnan(trigger.value)


def test_the_loss_is_named_before_other_broken_metrics_else_the_first_broken_one():
    watch = DivergenceWatch(10.0)
    watch.batch(1, 0, 0, {"ratio": INF, "recall": NAN, "loss": NAN}, None)
    assert watch.trigger.metric == "loss"
    other = DivergenceWatch(10.0)
    other.batch(1, 0, 0, {"loss": 1.0, "ratio": -INF, "recall": NAN}, None)
    assert (other.trigger.metric, other.trigger.value, other.trigger.best) == ("ratio", -INF, None)


def test_only_python_floats_are_judged_since_keras_hands_callbacks_floats():
    watch = DivergenceWatch(10.0)
    watch.batch(1, 0, 0, {"loss": 1.0, "raw": np.float32("nan"), "count": 3}, None)
    assert watch.trigger is None


def test_a_pending_trigger_is_not_replaced_by_a_later_divergence():
    watch = DivergenceWatch(10.0)
    watch.batch(1, 0, 0, {"ratio": NAN, "loss": 1.0}, None)
    watch.batch(2, 0, 1, {"ratio": 1.0, "loss": NAN}, None)
    watch.epoch(3, 0, {"loss": 0.001})
    assert (watch.trigger.step, watch.trigger.metric) == (1, "ratio")
    assert watch.best is None  # nothing is judged while a trigger waits


def test_a_loss_above_factor_times_its_best_is_a_spike():
    watch = DivergenceWatch(10.0)
    watch.epoch(1, 0, {"loss": 0.5})
    watch.epoch(2, 0, {"loss": 5.0})  # exactly 10x: not above
    assert (watch.trigger, watch.best) == (None, 0.5)
    watch.batch(3, 1, 4, {"loss": 51}, None)
    assert watch.trigger == Trigger(3, 1, "loss", 51.0, "spike", 0.5)
    assert type(watch.trigger.value) is float
    assert watch.best == 0.5


def test_an_unsettled_batch_loss_is_no_spike():
    watch = DivergenceWatch(10.0)
    watch.epoch(1, 0, {"loss": 0.5})
    watch.batch(2, 1, 0, {"loss": 500.0}, None)
    assert (watch.trigger, watch.best) == (None, 0.5)


def test_without_a_factor_only_non_finite_values_diverge():
    watch = DivergenceWatch(None)
    watch.epoch(1, 0, {"loss": 0.5})
    watch.epoch(2, 0, {"loss": 1e9})
    assert (watch.trigger, watch.best) == (None, 0.5)


def test_a_best_of_zero_makes_no_spike():
    watch = DivergenceWatch(10.0)
    watch.epoch(1, 0, {"loss": 0.0})
    watch.epoch(2, 0, {"loss": 1.0})
    assert (watch.trigger, watch.best) == (None, 0.0)


def test_a_best_below_one_still_makes_spikes():
    watch = DivergenceWatch(2.0)
    watch.epoch(1, 0, {"loss": 0.3})
    watch.epoch(2, 0, {"loss": 0.7})
    assert watch.trigger == Trigger(2, 0, "loss", 0.7, "spike", 0.3)


def test_take_hands_a_trigger_over_once():
    watch = DivergenceWatch(10.0)
    assert watch.take() is None
    watch.epoch(4, 0, {"loss": NAN})
    first = watch.take()
    assert (first.step, first.metric) == (4, "loss")
    assert watch.take() is None and watch.trigger is None


def test_after_the_loss_diverged_nothing_more_is_reported():
    watch = DivergenceWatch(10.0)
    watch.epoch(1, 0, {"loss": 0.5})
    watch.epoch(2, 0, {"loss": 6.0})
    assert watch.take().rule == "spike"
    watch.epoch(3, 0, {"loss": NAN, "ratio": NAN})
    watch.epoch(4, 0, {"loss": 600.0})
    assert (watch.trigger, watch.done, watch.best) == (None, True, 0.5)


def test_after_another_metric_diverged_the_loss_and_other_metrics_still_are_reported_once_each():
    watch = DivergenceWatch(10.0)
    watch.batch(1, 0, 0, {"ratio": NAN, "loss": 1.0}, None)
    assert watch.take().metric == "ratio"
    assert (watch.done, watch.reported) == (False, {"ratio"})
    watch.batch(2, 0, 1, {"ratio": NAN, "loss": 1.0}, None)  # ratio again: already reported
    assert watch.trigger is None
    watch.batch(3, 0, 2, {"ratio": NAN, "recall": INF, "loss": 1.0}, None)
    assert watch.take().metric == "recall"
    watch.batch(4, 0, 3, {"ratio": NAN, "recall": NAN, "loss": NAN}, None)
    assert watch.take().metric == "loss"
    assert (watch.done, watch.reported) == (True, {"ratio", "recall"})


def test_a_val_loss_divergence_ends_the_reporting_too():
    watch = DivergenceWatch(10.0)
    watch.epoch(1, 0, {"loss": 1.0, "val_loss": INF})
    assert watch.take().metric == "val_loss"
    assert watch.done is True


# -- per-layer reductions and history -------------------------------------------------------------------------------


def gradient(layer: str, norm: float, nonfinite_frac: float = 0.0) -> dict[str, Any]:
    return {"layer": layer, "weight": "w", "norm": norm, "max_abs": norm, "nonfinite_frac": nonfinite_frac}


def test_layer_gradient_norms_combine_a_layers_weights_and_any_non_finite_weight_breaks_the_layer():
    records = [gradient("dense", 3.0), gradient("dense", 4.0), gradient("out", 2.0),
               gradient("bad_frac", 5.0, nonfinite_frac=0.25), gradient("bad_frac", 1.0),
               gradient("bad_norm", 1.0), gradient("bad_norm", INF), gradient("solo", 0.5)]
    assert same(layer_gradient_norms(records),
                {"dense": 5.0, "out": 2.0, "bad_frac": NAN, "bad_norm": NAN, "solo": 0.5})


def activation(layer: str, std: Any, **stats: Any) -> dict[str, Any]:
    return {"layer": layer, "mean": 0.0, "std": std, "min": -1.0, "max": 1.0, **stats}


def test_activation_spreads_per_layer_where_a_shared_layer_keeps_its_last_call_and_any_broken_call_breaks_it():
    records = [activation("tower", 0.5), activation("tower@2", 0.75), activation("head:1", 2),
               activation("bad", NAN), activation("bad@2", 1.0),
               activation("late", 1.0), activation("late@1:2", 3.0, max=INF),
               activation("m", 1.0, mean=None), activation("lo", 1.0, min=-INF), activation("me", 1.0, mean=NAN),
               activation("conv2d_3", 0.25), activation("at@x", 0.125)]
    found = activation_spreads(records)
    assert same(found, {"tower": 0.75, "head": 2.0, "bad": NAN, "late": NAN, "m": NAN, "lo": NAN, "me": NAN,
                        "conv2d_3": 0.25, "at@x": 0.125})


def test_layer_history_keeps_the_last_finite_values_per_source_and_layer():
    history = LayerHistory()
    for value in range(1, 11):
        history.add("gradients", {"dense": float(value), "out": NAN})
    history.add("activations", {"dense": 100.0, "out": INF})
    assert list(history.values) == [("gradients", "dense"), ("activations", "dense")]
    assert list(history.values[("gradients", "dense")]) == [float(v) for v in range(11 - HISTORY, 11)]
    assert history.baseline("gradients", "dense") == 6.5  # the median of 3..10
    assert history.baseline("activations", "dense") == 100.0
    assert history.baseline("gradients", "out") is None
    assert history.baseline("weights", "dense") is None


# -- blame ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def history() -> LayerHistory:
    found = LayerHistory()
    for gradients, spreads in (({"conv": 1.0, "dense": 2.0, "head": 0.5, "flat": 0.0},
                                {"conv": 1.0, "dense": 4.0, "pool": 1.0}),
                               ({"conv": 1.2, "dense": 2.2, "head": 0.6, "flat": 0.0},
                                {"conv": 1.0, "dense": 4.0, "pool": 1.0}),
                               ({"conv": 1.1, "dense": 8.0, "head": 0.55, "flat": 0.0},
                                {"conv": 3.0, "dense": 4.0, "pool": 1.0})):
        found.add("gradients", gradients)
        found.add("activations", spreads)
    return found


ORDER = ["conv", "pool", "dense", "head"]


def test_the_first_non_finite_layer_in_forward_order_is_blamed_with_every_broken_layer(history):
    now = {"gradients": {"head": NAN, "dense": 2.0, "conv": 1.0},
           "activations": {"head": 1.0, "pool": INF, "dense": NAN, "conv": 1.0}}
    layer, evidence = blame(ORDER, now, history)
    assert layer == "pool"
    assert same(evidence, {"rule": "first non-finite", "source": "activations", "value": INF,
                           "nonfinite_layers": ["pool", "dense", "head"]})


def test_a_layer_broken_in_both_sources_names_the_first_source_and_is_listed_once(history):
    now = {"gradients": {"conv": 1.0, "dense": NAN}, "activations": {"conv": 1.0, "dense": NAN}}
    layer, evidence = blame(ORDER, now, history)
    assert same((layer, evidence), ("dense", {"rule": "first non-finite", "source": "gradients", "value": NAN,
                                              "nonfinite_layers": ["dense"]}))


def test_layers_outside_the_forward_order_are_not_blamed_as_first_non_finite():
    layer, evidence = blame(["a"], {"gradients": {"ghost": NAN, "a": 1.0}}, LayerHistory())
    assert same((layer, evidence), ("a", {"rule": "largest gradient norm", "source": "gradients", "value": 1.0}))


def test_without_a_non_finite_layer_the_largest_jump_against_its_own_history_is_blamed(history):
    # Baselines: gradients conv 1.1, dense 2.2, head 0.55 (flat 0: never a ratio); activations conv 1, dense 4.
    now = {"gradients": {"conv": 1.1, "dense": 4.4, "head": 1.65, "flat": 3.0, "new": 50.0},
           "activations": {"conv": 1.0, "dense": 8.0, "pool": 3.5}}
    layer, evidence = blame(ORDER, now, history)
    assert (layer, evidence) == ("pool", {"rule": "largest jump", "source": "activations", "value": 3.5,
                                          "baseline": 1.0, "ratio": 3.5})
    # Layers without a usable baseline (new: none; flat: 0) are passed over, and the others still measured.
    layer, evidence = blame(ORDER, {"gradients": {"new": 0.1, "flat": 3.0, "conv": 1.1, "head": 1.65}}, history)
    assert (layer, evidence["ratio"], evidence["baseline"]) == ("head", pytest.approx(3.0), 0.55)


def test_equal_jumps_blame_the_first_one_measured(history):
    now = {"gradients": {"conv": 2.2, "dense": 4.4}, "activations": {"conv": 2.0, "dense": 8.0}}
    layer, evidence = blame(ORDER, now, history)
    assert (layer, evidence["source"], evidence["ratio"]) == ("conv", "gradients", 2.0)


def test_when_every_gradient_broke_the_last_finite_values_jump_is_measured(history):
    # dense's gradient history 2.0, 2.2, 8.0: the last (8.0) against the median before it (2.1) is the largest jump;
    # pool's output still reads finite but its spread did not move.
    # A layer without history (new) is passed over, and does not end the measuring of the others.
    now = {"gradients": {"new": NAN, "conv": NAN, "dense": NAN, "head": INF, "flat": NAN},
           "activations": {"pool": 1.0, "conv": NAN}}
    layer, evidence = blame(ORDER, now, history)
    assert (layer, evidence["rule"], evidence["source"], evidence["value"], evidence["baseline"]) == (
        "dense", "largest jump", "gradients", 8.0, pytest.approx(2.1))
    assert evidence["ratio"] == pytest.approx(8.0 / 2.1)
    assert evidence["nonfinite_layers"] == ["conv", "dense", "head"]


def test_when_everything_broke_a_layer_needs_two_finite_values_before_to_be_measured():
    history = LayerHistory()
    history.add("gradients", {"a": 1.0, "b": 1.0})
    history.add("gradients", {"b": 3.0})
    layer, evidence = blame(["a", "b"], {"gradients": {"a": NAN, "b": NAN}}, history)
    assert (layer, evidence["value"], evidence["baseline"], evidence["ratio"]) == ("b", 3.0, 1.0, 3.0)
    single = LayerHistory()
    single.add("gradients", {"a": 1.0, "b": 2.0})
    layer, evidence = blame(["a", "b"], {"gradients": {"a": NAN, "b": NAN}}, single)
    assert same((layer, evidence), ("a", {"rule": "first non-finite", "source": "gradients", "value": NAN,
                                          "nonfinite_layers": ["a", "b"]}))


def test_all_broken_is_judged_on_the_gradients_when_there_are_any(history):
    # Every gradient broke, one activation still reads finite: the jump rule, not the first non-finite activation.
    now = {"gradients": {"conv": NAN, "dense": NAN}, "activations": {"conv": INF, "dense": 4.0}}
    assert blame(ORDER, now, history)[0] == "dense"
    # Without gradients, the activations are judged: one finite spread means "first non-finite".
    layer, evidence = blame(ORDER, {"activations": {"conv": 1.0, "dense": NAN}}, history)
    assert (layer, evidence["rule"]) == ("dense", "first non-finite")
    # Every activation broke: each last finite spread against its history before; none moved, so the first measured.
    layer, evidence = blame(ORDER, {"activations": {"pool": NAN, "dense": NAN}}, history)
    assert (layer, evidence["rule"], evidence["ratio"]) == ("pool", "largest jump", 1.0)


def test_without_history_the_largest_finite_gradient_norm_is_blamed_else_nothing():
    empty = LayerHistory()
    now = {"gradients": {"a": 1.0, "b": 3.0, "c": 2.0}, "activations": {"a": 9.0}}
    assert blame(["a", "b", "c"], now, empty) == ("b", {"rule": "largest gradient norm", "source": "gradients",
                                                        "value": 3.0})
    assert blame(["a"], {"activations": {"a": 9.0}}, empty) == (None, {})
    assert blame(["a"], {}, empty) == (None, {})


def test_a_jump_after_layers_broke_lists_them(history):
    now = {"gradients": {"conv": NAN, "dense": NAN, "head": NAN}, "activations": {"pool": 2.0}}
    layer, evidence = blame(ORDER, now, history)
    assert layer == "dense"  # the gradient jump 8 / 2.1 beats pool's 2.0
    assert evidence["nonfinite_layers"] == ["conv", "dense", "head"]
    layer, evidence = blame(ORDER, {"activations": {"pool": 2.0}}, history)
    assert (layer, "nonfinite_layers" in evidence) == ("pool", False)


# -- _describe ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("evidence", "said"), [
    ({"rule": "first non-finite", "source": "activations", "value": NAN}, "its activations are non-finite"),
    ({"rule": "first non-finite", "source": "gradients", "value": INF}, "its gradients are non-finite"),
    ({"rule": "largest jump", "source": "gradients", "value": 12.345, "baseline": 2.0, "ratio": 6.1749},
     "gradient norm 12.3, 6.17x its recent 2"),
    ({"rule": "largest jump", "source": "activations", "value": 0.5, "baseline": 0.0123456, "ratio": 40.5},
     "activation spread 0.5, 40.5x its recent 0.0123"),
    ({"rule": "largest gradient norm", "source": "gradients", "value": 3.14159}, "largest gradient norm, 3.14"),
    ({}, "largest activation spread, nan"),
])
def test_the_evidence_in_words(evidence, said):
    assert _describe(evidence) == said


# -- Forensics on a tiny model --------------------------------------------------------------------------------------
# hidden (1 -> 1, kernel 1, no bias) then out (1 -> 1, kernel 2, no bias), MSE on x = 1, y = 0: the prediction is 2,
# the loss 4, d loss / d out = 2 * 2 * 1 = 4 and d loss / d hidden = 2 * 2 * 2 = 8.
X, Y = np.ones((1, 1), "float32"), np.zeros((1, 1), "float32")
HIDDEN_NORM, OUT_NORM = 8.0, 4.0


def chain(name: str = "chain", *, compiled: bool = True) -> keras.Model:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, name="hidden"),
                              keras.layers.Dense(1, use_bias=False, name="out")], name=name)
    model.set_weights([np.ones((1, 1), "float32"), np.full((1, 1), 2.0, "float32")])
    if compiled:
        model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


class Recorder:
    """What Forensics hands LiveMonitor's writer and reporter, kept in order."""

    def __init__(self, activations: list[dict[str, Any]] | None = None, lr: float | None = 0.0123456) -> None:
        self.logged: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[tuple, dict[str, Any]]] = []
        self.skipped: list[tuple[str, str]] = []
        self.lr_steps: list[int] = []
        self.activation_models: list[keras.Model] = []
        self._activations, self._lr = activations, lr

    def forensics(self, data: Any, freq: int, factor: float | None = 10.0) -> Forensics:
        return Forensics(data, freq, factor, log=lambda stream, record: self.logged.append((stream, record)),
                         event=lambda *args, **kwargs: self.events.append((args, kwargs)),
                         skip=lambda stream, reason: self.skipped.append((stream, reason)),
                         lr_at=self.lr_at, activations=self.activations)

    def lr_at(self, step: int) -> float | None:
        self.lr_steps.append(step)
        return self._lr

    def activations(self, model: keras.Model) -> list[dict[str, Any]] | None:
        self.activation_models.append(model)
        return self._activations


def gradient_rows(step: int, epoch: int, **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    global_norm = math.sqrt(HIDDEN_NORM ** 2 + OUT_NORM ** 2)
    return [("gradients", {"step": step, "epoch": epoch, "layer": layer, "weight": "kernel", "norm": norm,
                           "max_abs": norm, "nonfinite_frac": 0.0, "global_norm": global_norm, **extra})
            for layer, norm in (("hidden", HIDDEN_NORM), ("out", OUT_NORM))]


def test_gradient_statistics_every_freq_batches_from_the_fit_start():
    seen = Recorder()
    forensics = seen.forensics((X, Y), freq=3)
    model = chain()
    forensics.begin_fit(model, 10)
    # Traced on a background thread that never keeps the process alive, named for whoever inspects the threads.
    assert (forensics._warming.name, forensics._warming.daemon) == ("kerascope-gradients", True)
    assert [step for step in range(10, 20) if forensics.due(step)] == [13, 14, 15, 16, 17, 18, 19]
    forensics.at_batch_begin(model, 13, 2)
    assert seen.logged == gradient_rows(13, 2)
    assert [step for step in range(13, 20) if forensics.due(step)] == [15, 16, 17, 18, 19]
    forensics.at_batch_begin(model, 16, 2)  # 15 was skipped: the next is on the grid again
    assert seen.logged[2:] == gradient_rows(16, 2)
    assert [step for step in range(16, 20) if forensics.due(step)] == [18, 19]
    forensics.at_batch_begin(model, 17, 2)  # not due: nothing
    assert len(seen.logged) == 4
    assert seen.skipped == [] and seen.events == []
    assert forensics.history.baseline("gradients", "hidden") == HIDDEN_NORM
    assert list(forensics.history.values[("gradients", "out")]) == [OUT_NORM, OUT_NORM]


def test_without_gradient_data_or_at_freq_zero_nothing_is_due_and_nothing_taken():
    model = chain()
    for data, freq in ((None, 3), ((X, Y), 0)):
        seen = Recorder()
        forensics = seen.forensics(data, freq)
        forensics.begin_fit(model, 0)
        assert not any(forensics.due(step) for step in range(0, 10))
        forensics.at_batch_begin(model, 9, 0)
        assert (seen.logged, seen.skipped) == ([], [])
    assert Recorder().forensics(None, 3).freq == 0
    # At freq 0 the model is not even looked at when the fit starts.
    seen = Recorder()
    seen.forensics((X, Y), 0).begin_fit(chain(compiled=False), 0)
    assert seen.skipped == []


def test_a_model_without_a_loss_is_skipped_at_the_fit_start_once():
    seen = Recorder()
    forensics = seen.forensics((X, Y), freq=1)
    forensics.begin_fit(chain(compiled=False), 0)
    assert seen.skipped == [("gradients", "the model was compiled without a loss: no gradient statistics")]
    assert not forensics.due(5)


def test_an_unbuilt_model_gets_its_probe_when_first_due():
    seen = Recorder()
    forensics = seen.forensics((X, Y), freq=2)
    model = keras.Sequential([keras.layers.Dense(1, name="head")])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    forensics.begin_fit(model, 0)
    assert seen.skipped == [] and forensics.due(2)
    model.build((None, 1))
    model.set_weights([np.full((1, 1), 3.0, "float32"), np.zeros((1,), "float32")])
    forensics.at_batch_begin(model, 2, 0)
    # loss (3x)^2 at x = 1: d/dkernel = d/dbias = 2 * 3 = 6
    assert [(r["layer"], r["weight"], r["norm"]) for _, r in seen.logged] == [("head", "kernel", 6.0),
                                                                              ("head", "bias", 6.0)]


def test_an_unbuilt_model_without_a_loss_is_skipped_when_first_due_then_never_due_again():
    seen = Recorder()
    forensics = seen.forensics((X, Y), freq=2)
    model = keras.Sequential([keras.layers.Dense(1)])
    forensics.begin_fit(model, 0)
    model.build((None, 1))
    forensics.at_batch_begin(model, 2, 0)
    assert [reason for _, reason in seen.skipped] == ["the model was compiled without a loss: no gradient statistics"]
    assert seen.logged == [] and not forensics.due(4)


def test_a_gradient_function_that_fails_to_trace_raises_once_on_the_training_thread():
    seen = Recorder()
    forensics = seen.forensics((np.ones((1, 3), "float32"), Y), freq=1)  # 3 features for a 1-feature model
    model = chain()
    forensics.begin_fit(model, 0)
    with pytest.raises(ValueError):
        forensics.at_batch_begin(model, 1, 0)
    assert not forensics.due(2)
    forensics.at_batch_begin(model, 2, 0)  # no second error
    assert seen.logged == []


def test_a_new_fit_starts_afresh_after_a_failed_probe():
    seen = Recorder()
    forensics = seen.forensics((X, Y), freq=2)
    forensics.begin_fit(chain(compiled=False), 0)
    assert not forensics.due(2)
    model = chain()
    forensics.begin_fit(model, 4)
    assert forensics.due(6)
    forensics.at_batch_begin(model, 6, 1)
    assert seen.logged == gradient_rows(6, 1)


def test_a_divergence_snapshot_has_gradients_activations_the_lr_and_the_layer():
    acts = [{"layer": "hidden", "mean": 1.0, "std": 0.5, "min": 0.0, "max": 2.0},
            {"layer": "out", "mean": NAN, "std": NAN, "min": NAN, "max": NAN}]
    seen = Recorder(activations=acts)
    forensics = seen.forensics((X, Y), freq=5000)
    model = chain()
    forensics.begin_fit(model, 0)
    forensics.observe_activations([{"layer": "hidden", "mean": 1.0, "std": 0.25, "min": 0.0, "max": 2.0}])
    assert forensics.history.baseline("activations", "hidden") == 0.25
    assert not forensics.due(1234)
    forensics.watch.batch(1234, 3, 5, {"loss": NAN}, None)
    assert forensics.due(1234)
    forensics.at_batch_begin(model, 1235, 4)
    assert seen.logged == [*gradient_rows(1234, 4, snapshot=True),
                           ("activations", {"step": 1234, "epoch": 4, **acts[0], "snapshot": True}),
                           ("activations", {"step": 1234, "epoch": 4, **acts[1], "snapshot": True})]
    assert seen.lr_steps == [1234] and seen.activation_models == [model]
    ((args, kwargs),) = seen.events
    assert args == ("divergence", "diverged: loss became nan at step 1,234 (LR 0.01235); first layer to break: out "
                                  "(its activations are non-finite)")
    assert set(kwargs) == {"step", "data"} and kwargs["step"] == 1234
    assert same(kwargs["data"], {"step": 1234, "lr": 0.0123456, "layer": "out", "metric": "loss", "value": NAN,
                                 "rule": "non-finite", "best": None,
                                 "evidence": {"rule": "first non-finite", "source": "activations", "value": NAN,
                                              "nonfinite_layers": ["out"]}})
    assert not forensics.due(1236) and forensics.watch.done


def test_a_spike_snapshot_without_gradients_or_activations_says_so_without_lr_or_layer():
    seen = Recorder(activations=None, lr=None)
    forensics = seen.forensics(None, freq=0)
    model = chain()
    forensics.begin_fit(model, 0)
    forensics.watch.epoch(10, 0, {"loss": 1.5})
    forensics.watch.epoch(20, 1, {"loss": 123.456})
    forensics.snapshot(model, 1)
    assert seen.logged == [] and seen.skipped == []
    ((args, kwargs),) = seen.events
    assert args == ("divergence", "diverged: loss 123.5 is 82.3x its best 1.5 at step 20")
    assert kwargs == {"step": 20, "data": {"step": 20, "lr": None, "layer": None, "metric": "loss",
                                           "value": 123.456, "rule": "spike", "best": 1.5, "evidence": {}}}
    forensics.snapshot(model, 1)  # nothing pending
    assert len(seen.events) == 1


def test_a_snapshot_blames_by_the_gradients_largest_jump():
    seen = Recorder(activations=[])
    forensics = seen.forensics((X, Y), freq=1)
    model = chain()
    forensics.begin_fit(model, 0)
    assert [step for step in range(3) if forensics.due(step)] == [1, 2]
    forensics.history.add("gradients", {"hidden": 4.0, "out": 4.0})
    forensics.watch.epoch(7, 0, {"accuracy": INF})
    forensics.at_batch_begin(model, 8, 1)
    (args, kwargs), = seen.events
    assert args[1] == ("diverged: accuracy became inf at step 7 (LR 0.01235); first layer to break: hidden "
                       "(gradient norm 8, 2x its recent 4)")
    assert kwargs["data"]["evidence"] == {"rule": "largest jump", "source": "gradients", "value": HIDDEN_NORM,
                                          "baseline": 4.0, "ratio": 2.0}
    # The snapshot's statistics, then the regular ones of the same batch begin.
    assert seen.logged == [*gradient_rows(7, 1, snapshot=True), *gradient_rows(8, 1)]


def test_at_freq_zero_a_divergence_still_gets_its_gradient_snapshot():
    seen = Recorder(activations=None)
    forensics = seen.forensics((X, Y), freq=0)
    model = chain()
    forensics.begin_fit(model, 0)
    forensics.watch.epoch(9, 2, {"loss": NAN})
    assert forensics.due(10)
    forensics.at_batch_begin(model, 10, 3)
    assert seen.logged == gradient_rows(9, 3, snapshot=True)
    (args, kwargs), = seen.events
    assert args[1] == ("diverged: loss became nan at step 9 (LR 0.01235); first layer to break: hidden "
                       "(largest gradient norm, 8)")


def test_a_snapshot_orders_the_layers_of_nested_models_forward_without_the_models():
    inner = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, name="a")], name="inner")
    model = keras.Sequential([keras.Input((1,)), inner, keras.layers.Dense(1, name="b")], name="outer")
    acts = [{"layer": "inner", "mean": 0.0, "std": 1.0, "min": 0.0, "max": 0.0},
            {"layer": "b", "mean": NAN, "std": NAN, "min": NAN, "max": NAN},
            {"layer": "inner/a", "mean": NAN, "std": NAN, "min": NAN, "max": NAN}]
    seen = Recorder(activations=acts)
    forensics = seen.forensics(None, freq=0)
    forensics.watch.epoch(3, 0, {"loss": NAN})
    forensics.snapshot(model, 0)
    (_, kwargs), = seen.events
    assert (kwargs["data"]["layer"], kwargs["data"]["evidence"]["nonfinite_layers"]) == ("inner/a", ["inner/a", "b"])
    assert seen.skipped == []


def test_the_event_is_written_even_when_the_snapshot_gradients_fail():
    seen = Recorder(activations=None)
    forensics = seen.forensics((np.ones((1, 3), "float32"), Y), freq=100)
    model = chain()
    forensics.begin_fit(model, 0)
    forensics.watch.epoch(5, 0, {"loss": INF})
    with pytest.raises(ValueError):
        forensics.at_batch_begin(model, 6, 1)
    (args, kwargs), = seen.events
    assert args[1] == "diverged: loss became inf at step 5 (LR 0.01235)"
    assert kwargs["data"]["layer"] is None
