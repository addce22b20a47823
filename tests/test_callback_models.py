"""LiveMonitor on functional, nested (fine-tuned in two fit calls) and subclassed models."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from train_helpers import BATCH, FEATURES, data, events, open_run, read_json, records

from kerascope import LiveMonitor, RunStore


def test_functional_model_with_two_inputs(runs_root):
    keras.utils.set_random_seed(0)
    left, right = keras.Input((FEATURES,), name="left"), keras.Input((3,), name="right")
    merged = keras.layers.Concatenate(name="merge")(
        [
            keras.layers.Dense(4, activation="relu", name="left_dense")(left),
            keras.layers.Dense(4, activation="tanh", name="right_dense")(right),
        ]
    )
    model = keras.Model([left, right], keras.layers.Dense(1, name="out")(merged), name="two_inputs")
    model.compile("sgd", "mse", metrics=["mae"])
    x, _ = data()
    x2 = np.random.default_rng(1).normal(size=(len(x), 3)).astype("float32")
    y = x[:, :1] + x2[:, :1]
    live_monitor = LiveMonitor(str(runs_root), activation_data=[x[:32], x2[:32]])
    model.fit([x, x2], y, validation_split=0.25, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])

    layers = {a["layer"] for a in records(live_monitor.run_dir, "activations.jsonl")}
    assert layers == {"left_dense", "right_dense", "merge", "out"}
    merge = next(a for a in records(live_monitor.run_dir, "activations.jsonl") if a["layer"] == "merge")
    assert sum(merge["histogram"]["counts"]) == 32 * 8
    dot = open_run(live_monitor.run_dir).model_graph_dot()
    for edge in (
        '"left" -> "left_dense"',
        '"right" -> "right_dense"',
        '"left_dense" -> "merge"',
        '"right_dense" -> "merge"',
        '"merge" -> "out"',
    ):
        assert edge in dot
    epochs = records(live_monitor.run_dir, "epoch.jsonl")
    assert [e["step"] for e in epochs] == [3, 6] and all("val_mae" in e for e in epochs)


def nested_model() -> tuple[keras.Model, keras.Model]:
    keras.utils.set_random_seed(0)
    base_input = keras.Input((FEATURES,))
    features = keras.layers.Dense(8, activation="relu", name="features")(base_input)
    base = keras.Model(base_input, keras.layers.Dense(4, activation="relu", name="embed")(features), name="base")
    base.trainable = False
    inputs = keras.Input((FEATURES,), name="image")
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(base(inputs, training=False))
    return keras.Model(inputs, outputs, name="finetune"), base


def test_nested_frozen_base_fine_tuned_in_two_fit_calls(runs_root):
    model, base = nested_model()
    x, y = data()
    live_monitor = LiveMonitor(str(runs_root), name="fine-tune", activation_data=x[:32], checkpoint="last")
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
    first_run_dir = live_monitor.run_dir
    base.trainable = True
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=4, initial_epoch=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])

    run_dir = live_monitor.run_dir
    assert run_dir == first_run_dir and len(RunStore(str(runs_root)).runs()) == 1
    phases = [e["data"] for e in events(run_dir, "phase")]
    assert [p["phase"] for p in phases] == [1, 2]
    assert phases[0]["trainable_params"] == 10 and phases[0]["non_trainable_params"] == 72 + 36
    assert phases[1]["trainable_params"] == 10 + 72 + 36 and phases[1]["non_trainable_params"] == 0
    assert [p["initial_epoch"] for p in phases] == [0, 2]
    assert phases[0]["lr"] == pytest.approx(1e-2) and phases[1]["lr"] == pytest.approx(1e-4)
    change = events(run_dir, "lr_change")
    assert [(e["data"]["old"], e["data"]["new"]) for e in change] == [(pytest.approx(1e-2), pytest.approx(1e-4))]

    batches = records(run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == list(range(1, 17))
    assert [b["lr"] for b in batches] == pytest.approx([1e-2] * 8 + [1e-4] * 8)
    epochs = records(run_dir, "epoch.jsonl")
    assert [(e["epoch"], e["phase"], e["step"]) for e in epochs] == [(0, 1, 4), (1, 1, 8), (2, 2, 12), (3, 2, 16)]
    assert [e["kind"] for e in events(run_dir) if e["kind"] in ("train_begin", "train_end")] == [
        "train_begin",
        "train_end",
        "train_begin",
        "train_end",
    ]

    run = open_run(run_dir)
    assert run.status == "finished" and read_json(run_dir, "status.json")["phase"] == 2
    layers = run.layers()
    assert sorted(set(layers["phase"])) == [1, 2]
    trainable = {(row.phase, row.name): row.trainable for row in layers.itertuples()}
    assert trainable[(1, "features")] is False and trainable[(2, "features")] is True
    assert set(layers[layers["phase"] == 1]["parent"].dropna()) == {"base"}

    activation_layers = {a["layer"] for a in records(run_dir, "activations.jsonl")}
    assert activation_layers == {"base", "head", "base/features", "base/embed"}
    embed = [a for a in records(run_dir, "activations.jsonl") if a["layer"] == "base/embed"]
    base_out = [a for a in records(run_dir, "activations.jsonl") if a["layer"] == "base"]
    assert [a["mean"] for a in embed] == pytest.approx([a["mean"] for a in base_out])  # same tensor, two names
    weights = {(w["layer"], w["weight"]) for w in records(run_dir, "weights.jsonl")}
    assert ("base/features", "kernel") in weights and ("head", "kernel") in weights
    dot = run.model_graph_dot()
    assert 'subgraph "cluster_base"' in dot and '"base/embed" -> "head"' in dot
    checkpoint = run.checkpoints()
    assert list(checkpoint["path"]) == ["checkpoints/last.keras"] and list(checkpoint["epoch"]) == [3]
    restored = keras.saving.load_model(run.file_path("checkpoints/last.keras"))
    np.testing.assert_allclose(restored.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), rtol=1e-5)


class Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__(name="subclassed")
        self.hidden = keras.layers.Dense(8, activation="relu", name="hidden")
        self.out = keras.layers.Dense(2, activation="softmax", name="out")

    def call(self, inputs):
        return self.out(self.hidden(inputs))


def test_subclassed_model_skips_activations_with_an_explanation(runs_root):
    x, y = data()
    model = Subclassed()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    live_monitor = LiveMonitor(str(runs_root), activation_data=x[:32], checkpoint="best", monitor="loss")
    with warnings.catch_warnings(record=True) as with_warnings:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
    assert len(history.history["loss"]) == 2
    assert not [w for w in with_warnings if "LiveMonitor" in str(w.message)]
    skipped = {e["data"]["what"]: e["message"] for e in events(live_monitor.run_dir, "skipped")}
    assert "Sequential or functional" in skipped["activations"] and "subclassed" in skipped["activations"].lower()
    assert records(live_monitor.run_dir, "activations.jsonl") == []
    assert {w["layer"] for w in records(live_monitor.run_dir, "weights.jsonl")} == {"hidden", "out"}
    assert len(records(live_monitor.run_dir, "batch.jsonl")) == 8
    run = open_run(live_monitor.run_dir)
    assert run.status == "finished" and "hidden (Dense)" in run.model_summary()
    assert run.model_graph_dot().startswith("digraph")
    assert len(run.checkpoints()) >= 1


class Block(keras.Model):
    """A subclassed block inside a functional model: its output is probed, its inner layers cannot be."""

    def __init__(self) -> None:
        super().__init__(name="block")
        self.inner = keras.layers.Dense(3, name="inner")

    def call(self, inputs):
        return self.inner(inputs)


def test_siamese_model_with_shared_layers_and_a_lambda(runs_root):
    """A shared tower and Dense, a Lambda distance: one entry per call; only the subclassed block's inside skipped."""
    keras.utils.set_random_seed(0)
    left, right = keras.Input((FEATURES,), name="left"), keras.Input((FEATURES,), name="right")
    layers = [keras.layers.Dense(6, activation="relu", name="t1"), keras.layers.Dense(4, name="t2")]
    tower = keras.Sequential([keras.Input((FEATURES,)), *layers], name="tower")
    shared = keras.layers.Dense(4, name="shared_proj")
    distance = keras.layers.Lambda(lambda t: keras.ops.abs(t[0] - t[1]), name="l1_distance")(
        [shared(tower(left)), shared(tower(right))]
    )
    out = keras.layers.Dense(1, activation="sigmoid", name="out")(Block()(distance))
    model = keras.Model([left, right], out, name="siamese")
    model.compile("adam", "binary_crossentropy")
    x, _ = data()
    x2 = data(seed=1)[0]
    y = (np.abs(x[:, 0] - x2[:, 0]) > 1).astype("float32")
    live_monitor = LiveMonitor(str(runs_root), activation_data=[x[:32], x2[:32]], weight_freq=0, system_freq=0)
    model.fit([x, x2], y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])

    found = records(live_monitor.run_dir, "activations.jsonl")
    assert {a["layer"] for a in found} == {
        "tower@1", "tower@2", "tower@1/t1", "tower@1/t2", "tower@2/t1", "tower@2/t2",
        "shared_proj@1", "shared_proj@2", "l1_distance", "block", "out",
    }
    last = {a["layer"]: a for a in found if a["epoch"] == 1}
    # Each call on its own input: the tower's last layer is the tower's output, the two calls differ.
    assert last["tower@1/t2"]["mean"] == pytest.approx(last["tower@1"]["mean"])
    assert last["tower@2/t2"]["mean"] == pytest.approx(last["tower@2"]["mean"])
    assert last["tower@1"]["mean"] != pytest.approx(last["tower@2"]["mean"])
    expected = keras.ops.convert_to_numpy(tower(x2[:32], training=False))
    assert last["tower@2"]["mean"] == pytest.approx(float(expected.mean()), rel=1e-5)
    skipped = [e for e in events(live_monitor.run_dir, "skipped") if e["data"]["what"].startswith("activations")]
    assert len(skipped) == 1  # the block's inner layers, and nothing else
    assert "block" in skipped[0]["message"] and "subclassed" in skipped[0]["message"]
