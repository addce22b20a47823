"""Gradient statistics and divergence forensics, on real training (any backend: `make test-backends` runs it too)."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest
from train_helpers import data, events, mlp, open_run, records

from kerascope import LiveMonitor
from kerascope.callbacks._divergence import LayerHistory, blame

EPOCHS, STEPS = 3, 4  # 128 samples, batch 32


def numpy_gradients(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray,
                    w: np.ndarray) -> dict[tuple[str, str], float]:
    """The oracle: backpropagation through the tiny MLP (relu -> softmax, weighted sparse CE) in numpy, at `weights`
    (`model.get_weights()` of `train_helpers.mlp`)."""
    w1, b1, w2, b2 = weights
    z1 = x @ w1 + b1
    h = np.maximum(z1, 0)
    logits = h @ w2 + b2
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    # Keras's default reduction: the sum of weighted per-sample losses over the batch size.
    dlogits = (p - np.eye(2)[y]) * w[:, None] / len(x)
    dh = dlogits @ w2.T * (z1 > 0)
    grads = {("hidden", "kernel"): x.T @ dh, ("hidden", "bias"): dh.sum(0),
             ("out", "kernel"): h.T @ dlogits, ("out", "bias"): dlogits.sum(0)}
    return {key: float(np.linalg.norm(g)) for key, g in grads.items()}


def exploding_regression(lr: float) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """A small regression whose SGD step is far beyond 2 / curvature: the loss grows by orders of magnitude per step
    on every backend until it overflows."""
    x, y = data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu", name="hidden"),
                              keras.layers.Dense(1, name="out")], name="regression")
    model.compile(keras.optimizers.SGD(lr), "mse")
    return model, x, y.astype("float32")


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """SGD at LR 0: the weights never move, so every record must equal one direct computation."""
    x, y = data()
    w = np.linspace(0.5, 1.5, 32).astype("float32")
    model = mlp(keras.optimizers.SGD(0.0))
    live = LiveMonitor(str(tmp_path_factory.mktemp("runs")), gradient_data=(x[:32], y[:32], w), gradient_freq=3,
                       system_freq=0, weight_freq=0)
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[live])
    return live.run_dir, numpy_gradients(model.get_weights(), x[:32], y[:32], w)


def test_gradient_records_for_every_trainable_weight_at_the_frequency(frozen_run):
    run_dir, expected = frozen_run
    found = records(run_dir, "gradients.jsonl")
    steps = sorted({r["step"] for r in found})
    assert steps == [3, 6, 9]  # 12 updates: gradients on the weights after 3, 6 and 9 of them
    for step in steps:
        at_step = {(r["layer"], r["weight"]): r for r in found if r["step"] == step}
        assert set(at_step) == set(expected)
        for key, norm in expected.items():
            assert at_step[key]["norm"] == pytest.approx(norm, rel=1e-4)
            assert at_step[key]["nonfinite_frac"] == 0.0
            assert 0 < at_step[key]["max_abs"] <= at_step[key]["norm"]
        global_norm = math.sqrt(sum(n * n for n in expected.values()))
        assert [r["global_norm"] for r in at_step.values()] == pytest.approx([global_norm] * 4, rel=1e-4)
    frame = open_run(run_dir).gradients()
    assert list(frame.columns[:7]) == ["step", "epoch", "layer", "weight", "norm", "max_abs", "nonfinite_frac"]
    assert len(frame) == len(found)
    assert not events(run_dir, "divergence")  # a run that trains quietly has none


def test_gradients_are_taken_in_inference_mode(tmp_path):
    """A Dropout(0.5) between the layers: in inference mode it passes everything through, so every record equals the
    oracle of the same network without it; in training mode it would drop a random half (other norms at each step)."""
    x, y = data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu", name="hidden"),
                              keras.layers.Dropout(0.5, name="dropout"),
                              keras.layers.Dense(2, activation="softmax", name="out")], name="with_dropout")
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    w = np.ones(32, dtype="float32")
    live = LiveMonitor(str(tmp_path), gradient_data=(x[:32], y[:32], w), gradient_freq=1, system_freq=0,
                       weight_freq=0)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[live])
    expected = numpy_gradients(model.get_weights(), x[:32], y[:32], w)
    found = records(live.run_dir, "gradients.jsonl")
    assert len({r["step"] for r in found}) >= 6
    for record in found:
        assert record["norm"] == pytest.approx(expected[(record["layer"], record["weight"])], rel=1e-4)


class WeightsAtBatchBegin(keras.callbacks.Callback):
    """The oracle's input: the model's weights at chosen batch begins (global step = updates done so far)."""

    def __init__(self, steps: set[int]) -> None:
        super().__init__()
        self.steps = steps
        self.begun = 0
        self.weights: dict[int, list[np.ndarray]] = {}

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.begun in self.steps:
            self.weights[self.begun] = [np.array(v) for v in self.model.get_weights()]
        self.begun += 1


def test_gradients_are_taken_at_the_weights_of_the_step_they_are_recorded_at(tmp_path):
    """SGD at LR 0.5: the weights move at every update, so each record must match backpropagation at the weights
    after exactly `step` updates (stale weights, or the weights of a step before or after, give other norms)."""
    x, y = data()
    w = np.linspace(0.5, 1.5, 32).astype("float32")
    model = mlp(keras.optimizers.SGD(0.5))
    live = LiveMonitor(str(tmp_path), gradient_data=(x[:32], y[:32], w), gradient_freq=3, system_freq=0,
                       weight_freq=0)
    oracle = WeightsAtBatchBegin({3, 6, 9})
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[live, oracle])

    found = records(live.run_dir, "gradients.jsonl")
    assert sorted({r["step"] for r in found}) == [3, 6, 9]
    expected = {step: numpy_gradients(oracle.weights[step], x[:32], y[:32], w) for step in (3, 6, 9)}
    assert expected[3] != pytest.approx(expected[6], rel=1e-2)  # the weights did move between records
    for step, norms in expected.items():
        at_step = {(r["layer"], r["weight"]): r["norm"] for r in found if r["step"] == step}
        assert at_step == pytest.approx(norms, rel=1e-4)


def linear_regression(lr: Any) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """One Dense(1) on 8 standard-normal features, SGD with a step far above 2 / curvature: the loss grows about
    10,000-fold per epoch of 4 steps and stays finite for 6 epochs."""
    x, y = data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1, name="linear")], name="linear")
    model.compile(keras.optimizers.SGD(lr), "mse")
    return model, x, y.astype("float32")


@pytest.mark.parametrize(("factor", "fired_at"), [(10.0, 8), (1e5, 12), (None, None)])
def test_a_loss_spike_is_a_divergence_before_any_nan_at_the_factor_given(tmp_path, factor, fired_at):
    """The spike rule judges running-mean losses once settled (here each epoch's last batch, steps 4, 8, ...): the
    best is step 4's; step 8 is ~10^4 x it and step 12 ~10^8 x it, so a factor of 10 fires at step 8, 10^5 at step 12,
    and None never (no loss is NaN in these 24 steps)."""
    schedule = keras.optimizers.schedules.ExponentialDecay(1.5, decay_steps=1, decay_rate=0.99)
    model, x, y = linear_regression(schedule)
    options = {} if factor == 10.0 else {"divergence_factor": factor}  # 10 is the default
    live = LiveMonitor(str(tmp_path), system_freq=0, weight_freq=0, **options)
    model.fit(x, y, epochs=6, batch_size=32, verbose=0, shuffle=False, callbacks=[live])

    losses = {r["step"]: r["loss"] for r in records(live.run_dir, "batch.jsonl")}
    assert len(losses) == 24 and all(math.isfinite(v) for v in losses.values())
    found = events(live.run_dir, "divergence")
    run = open_run(live.run_dir)
    if fired_at is None:
        assert not found and run.status == "finished"
        return
    (divergence,) = found
    data_ = divergence["data"]
    assert (data_["rule"], data_["metric"], data_["step"], divergence["step"]) == ("spike", "loss", fired_at, fired_at)
    assert data_["value"] == pytest.approx(losses[fired_at], rel=1e-6)
    assert data_["best"] == pytest.approx(losses[4], rel=1e-6)
    assert data_["value"] > data_["best"] * (factor or 10)
    assert data_["lr"] == pytest.approx(float(schedule(fired_at - 1)), rel=1e-6)  # the update that made step 8
    assert run.status == "diverged" and run.divergence.step == fired_at


def test_the_first_layer_whose_activations_overflow_is_blamed(tmp_path):
    """`blowup` (an exp activation) overflows at step 5 while the Dense before it stays finite. The loss-scaling
    optimizer skips the non-finite update, so the snapshot is taken on the weights that overflowed, not on weights that
    a NaN update poisoned everywhere."""
    x, y = data()
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(4, name="stable"),
                              keras.layers.Activation("exponential", name="blowup"),
                              keras.layers.Dense(1, name="head")])
    rng = np.random.default_rng(0)  # the same weights on every backend (their initializers draw differently)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5)), "mse")
    live = LiveMonitor(str(tmp_path), activation_data=x[:32], divergence_factor=None, system_freq=0, weight_freq=0)
    model.fit(x, y.astype("float32"), epochs=2, batch_size=32, verbose=0, shuffle=False, callbacks=[live])

    (divergence,) = events(live.run_dir, "divergence")
    data_ = divergence["data"]
    losses = {r["step"]: r["loss"] for r in records(live.run_dir, "batch.jsonl")}
    assert (data_["rule"], data_["step"]) == ("non-finite", 5)
    assert math.isfinite(losses[4]) and not math.isfinite(losses[5])
    assert data_["layer"] == "blowup"
    assert data_["evidence"]["rule"] == "first non-finite" and data_["evidence"]["source"] == "activations"
    assert data_["evidence"]["nonfinite_layers"] == ["blowup", "head"]
    snapshot = {r["layer"]: r for r in records(live.run_dir, "activations.jsonl") if r.get("snapshot")}
    assert set(snapshot) == {"stable", "blowup", "head"} and math.isfinite(snapshot["stable"]["max"])
    assert open_run(live.run_dir).divergence.layer == "blowup"


def test_a_custom_metric_turning_nan_gets_the_event_but_the_run_is_not_diverged(tmp_path):
    """A metric that is NaN from the first batch (a ratio over a class absent from the batch, say) while the loss
    trains normally: the divergence event names it, and the run still reads as finished."""

    def empty_class_ratio(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.sum(y_pred) * 0.0 / keras.ops.sum(keras.ops.zeros_like(y_pred))  # 0 / 0

    x, y = data()
    model = mlp(keras.optimizers.SGD(0.05), metrics=[empty_class_ratio])
    live = LiveMonitor(str(tmp_path), system_freq=0, weight_freq=0)
    history = model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[live])

    assert all(math.isnan(v) for v in history.history["empty_class_ratio"])
    assert all(math.isfinite(v) for v in history.history["loss"])
    (divergence,) = events(live.run_dir, "divergence")
    data_ = divergence["data"]
    assert (data_["metric"], data_["rule"], data_["step"]) == ("empty_class_ratio", "non-finite", 1)
    run = open_run(live.run_dir)
    assert run.status == "finished" and run.divergence is None


def test_lr_typo_gets_a_divergence_event_naming_step_lr_and_layer(tmp_path):
    """Step 2's running-mean loss is ~10^10 x step 1's, but two batches are not settled for the spike rule; step 3's
    is infinite. The layer is `out`: snapshot right after step 3's update (TensorFlow), every gradient is non-finite
    and `out`'s norm had jumped most at the record before (~10^25 x its step-1 norm; `hidden` about half that); where
    batch ends run in a worker thread (JAX, PyTorch) the snapshot may come after a later update, when `hidden`'s
    ReLUs are dead (zero gradients) and `out` is the only non-finite layer."""
    model, x, y = exploding_regression(1e3)  # meant 1e-3
    live = LiveMonitor(str(tmp_path), gradient_data=(x[:32], y[:32]), gradient_freq=1, system_freq=0)
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[live])
    (divergence,) = events(live.run_dir, "divergence")
    data_ = divergence["data"]
    assert (data_["rule"], data_["step"], divergence["step"]) == ("non-finite", 3, 3)
    assert data_["layer"] == "out"
    assert data_["lr"] == pytest.approx(1e3)
    losses = {r["step"]: r["loss"] for r in records(live.run_dir, "batch.jsonl")}
    assert math.isfinite(losses[2]) and not math.isfinite(losses[3])
    run = open_run(live.run_dir)
    assert run.status == "diverged" and run.divergence.layer == data_["layer"] and run.divergence.step == data_["step"]
    assert data_["layer"] in run.reason


def test_nan_run_stopped_by_terminate_on_nan_keeps_its_snapshot(tmp_path):
    model, x, y = exploding_regression(1e3)
    live = LiveMonitor(str(tmp_path), gradient_data=(x[:32], y[:32]), gradient_freq=0, activation_data=x[:32],
                       activation_freq=0, divergence_factor=None, system_freq=0)
    history = model.fit(x, y, epochs=30, batch_size=32, verbose=0,
                        callbacks=[live, keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) < 30  # TerminateOnNaN stopped it
    (divergence,) = events(live.run_dir, "divergence")
    step = divergence["data"]["step"]
    assert divergence["data"]["rule"] == "non-finite"
    gradients = records(live.run_dir, "gradients.jsonl")  # gradient_freq=0: only the snapshot
    assert {(r["step"], r["snapshot"]) for r in gradients} == {(step, True)}
    assert {r["layer"] for r in gradients} == {"hidden", "out"}
    activations = [r for r in records(live.run_dir, "activations.jsonl") if r.get("snapshot")]
    assert {r["layer"] for r in activations} == {"hidden", "out"} and {r["step"] for r in activations} == {step}


class CustomStep(keras.Model):
    """A model whose train_step builds its own loss (as a VAE or a GAN does)."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)

    def train_step(self, *args, **kwargs):
        return super().train_step(*args, **kwargs)


def test_custom_train_step_gets_a_skipped_event(tmp_path):
    x, y = data()
    model = CustomStep()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    live = LiveMonitor(str(tmp_path), gradient_data=(x[:32], y[:32]), gradient_freq=1, system_freq=0)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[live])
    skipped = [e for e in events(live.run_dir, "skipped") if e["data"]["what"] == "gradients"]
    assert len(skipped) == 1 and "CustomStep overrides train_step" in skipped[0]["message"]
    assert not records(live.run_dir, "gradients.jsonl")
    assert not events(live.run_dir, "warning")


def test_gradient_data_of_the_wrong_shape_is_refused_with_how_to_fix_it():
    x, _ = data()
    with pytest.raises(ValueError, match=r"\(x, y\) or \(x, y, sample_weight\)"):
        LiveMonitor("unused", gradient_data=x)


def test_the_first_layer_in_forward_order_to_break_is_blamed_else_the_largest_jump():
    history = LayerHistory()
    for norms in ({"conv": 1.0, "dense": 2.0, "head": 0.5}, {"conv": 1.2, "dense": 2.2, "head": 0.6}):
        history.add("gradients", norms)
    order = ["conv", "dense", "head"]
    nan = float("nan")
    layer, evidence = blame(order, {"gradients": {"conv": 1.1, "dense": nan, "head": nan}}, history)
    assert (layer, evidence["rule"], evidence["nonfinite_layers"]) == ("dense", "first non-finite", ["dense", "head"])
    layer, evidence = blame(order, {"gradients": {"conv": 1.1, "dense": 2.0, "head": 60.0}}, history)
    assert (layer, evidence["rule"]) == ("head", "largest jump") and evidence["ratio"] == pytest.approx(60 / 0.55)
    # Activations count too, and a non-finite activation comes before a later layer's non-finite gradient.
    layer, _ = blame(order, {"gradients": {"conv": 1.0, "dense": 2.0, "head": nan},
                             "activations": {"conv": 1.0, "dense": float("inf"), "head": nan}}, history)
    assert layer == "dense"


def test_a_custom_metric_nan_from_the_start_does_not_hide_the_loss_diverging_later(tmp_path):
    """The LR-typo regression with a custom metric that is NaN at every batch: the metric gets its event at step 1,
    and the loss still gets its own at step 3 (with its layer and snapshot), which makes the run diverged."""

    def empty_class_ratio(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.sum(y_pred) * 0.0 / keras.ops.sum(keras.ops.zeros_like(y_pred))  # 0 / 0

    model, x, y = exploding_regression(1e3)
    model.compile(keras.optimizers.SGD(1e3), "mse", metrics=[empty_class_ratio])
    live = LiveMonitor(str(tmp_path), gradient_data=(x[:32], y[:32]), gradient_freq=1, system_freq=0)
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[live])

    found = [(e["data"]["metric"], e["data"]["rule"], e["data"]["step"]) for e in events(live.run_dir, "divergence")]
    assert found == [("empty_class_ratio", "non-finite", 1), ("loss", "non-finite", 3)]
    run = open_run(live.run_dir)
    assert run.status == "diverged" and (run.divergence.metric, run.divergence.step) == ("loss", 3)
    assert run.divergence.layer == "out"
