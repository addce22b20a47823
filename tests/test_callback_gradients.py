"""Gradient statistics and divergence forensics, on real training (any backend: `make test-backends` runs it too)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from train_helpers import data, events, mlp, open_run, records

from kerascope import LiveMonitor
from kerascope.callbacks._divergence import LayerHistory, blame

EPOCHS, STEPS = 3, 4  # 128 samples, batch 32


def numpy_gradients(model: keras.Model, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[tuple[str, str], float]:
    """The oracle: backpropagation through the tiny MLP (relu -> softmax, weighted sparse CE) in numpy."""
    (w1, b1), (w2, b2) = (layer.get_weights() for layer in model.layers)
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
    return live.run_dir, numpy_gradients(model, x[:32], y[:32], w)


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


def test_lr_typo_gets_a_divergence_event_naming_step_lr_and_layer(tmp_path):
    model, x, y = exploding_regression(1e3)  # meant 1e-3
    live = LiveMonitor(str(tmp_path), gradient_data=(x[:32], y[:32]), gradient_freq=1, system_freq=0)
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[live])
    (divergence,) = events(live.run_dir, "divergence")
    data_ = divergence["data"]
    assert data_["layer"] in {"hidden", "out"}
    assert data_["lr"] == pytest.approx(1e3)
    batches = {r["step"]: r for r in records(live.run_dir, "batch.jsonl")}
    assert data_["step"] == divergence["step"] and data_["step"] in batches
    # The step named is the first whose loss broke the rule: non-finite, or 10x the best loss before it.
    losses = [batches[s]["loss"] for s in sorted(batches) if s <= data_["step"]]
    assert not math.isfinite(losses[-1]) or losses[-1] > 10 * data_["best"]
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
