"""LiveMonitor behaviours pinned to exact values: each test fails when the behaviour it names breaks.

Statistics are compared with numpy on known weights and inputs (an optimizer with learning rate 0 keeps the weights
as set), checkpoints with the epoch logs, the heartbeat and the flush interval with what a reader sees on disk.
docs/testing.md lists the mutation each test was shown to catch.
"""

from __future__ import annotations

import os
import time
import zipfile

import keras
import numpy as np
import pytest
from train_helpers import BATCH, data, events, mlp, open_run, read_json, records

from kerascope import LiveMonitor

BN_EPSILON = 1e-3
KERNEL = np.array([[1.0, 0.0, -1.0], [0.5, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype="float32")
BIAS = np.array([0.1, 0.0, -0.2], dtype="float32")
OUT_KERNEL = np.array([[1.0, -1.0], [0.0, 0.0], [0.25, 2.0]], dtype="float32")
OUT_BIAS = np.array([0.0, 0.5], dtype="float32")


def known_model() -> keras.Model:
    """Dense(relu, one dead unit) -> Dropout(0.5) -> BatchNormalization -> Dense(softmax), weights set by hand.

    SGD with learning rate 0 leaves every trainable weight as set; BatchNormalization still moves its moving
    statistics during training, so inference and training mode give different outputs.
    """
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    h = keras.layers.Dense(3, activation="relu", name="hidden")(inputs)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    h = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.5, name="bn")(h)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(h)
    model = keras.Model(inputs, outputs, name="known")
    model.get_layer("hidden").set_weights([KERNEL, BIAS])
    model.get_layer("out").set_weights([OUT_KERNEL, OUT_BIAS])
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    return model


def numpy_stats(values: np.ndarray) -> dict:
    flat = np.asarray(values, dtype="float64").reshape(-1)
    return {
        "mean": flat.mean(),
        "std": flat.std(),
        "min": flat.min(),
        "max": flat.max(),
        "zero_frac": np.count_nonzero(flat == 0) / flat.size,
        "count": flat.size,
    }


def assert_stats(record, expected: dict, what: str) -> None:
    for key in ("mean", "std", "min", "max"):
        assert record[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-5), (what, key)
    assert record["zero_frac"] == pytest.approx(expected["zero_frac"]), (what, "zero_frac")
    assert record["count"] == expected["count"], (what, "count")


@pytest.fixture(scope="module")
def known_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("known")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    probe = rng.normal(size=(20, 4)).astype("float32")
    model = known_model()
    live_monitor = LiveMonitor(str(root), activation_data=probe, system_freq=0)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[live_monitor])
    return open_run(live_monitor.run_dir), model, probe


def test_weight_statistics_match_numpy_on_known_weights(known_run):
    run, model, _ = known_run
    weights = run.weights()
    by_name = {(row["layer"], row["weight"]): row for _, row in weights.iterrows()}
    assert set(by_name) == {("hidden", "kernel"), ("hidden", "bias"), ("bn", "gamma"), ("bn", "beta"),
                            ("bn", "moving_mean"), ("bn", "moving_variance"), ("out", "kernel"), ("out", "bias")}
    for (layer, weight), row in by_name.items():
        values = next(v for v in model.get_layer(layer).weights if v.name == weight).numpy()
        assert_stats(row, numpy_stats(values), (layer, weight))
        # The L2 norm, not an RMS: sqrt of the sum of squares.
        assert row["norm"] == pytest.approx(float(np.linalg.norm(values.astype("float64"))), rel=1e-5), (layer, weight)
    kernel = by_name[("hidden", "kernel")]
    assert kernel["norm"] == pytest.approx(np.sqrt(1 + 1 + 0.25 + 4 + 1))  # the hand-set kernel above
    assert kernel["zero_frac"] == pytest.approx(7 / 12)
    counts, edges = np.histogram(KERNEL, bins=30)
    assert kernel["histogram"]["counts"] == counts.tolist()
    np.testing.assert_allclose(kernel["histogram"]["edges"], edges, rtol=1e-6)
    assert bool(by_name[("bn", "moving_mean")]["trainable"]) is False
    assert bool(by_name[("hidden", "kernel")]["trainable"]) is True


def test_activation_statistics_are_taken_in_inference_mode_and_match_numpy(known_run):
    run, model, probe = known_run
    activations = {row["layer"]: row for _, row in run.activations().iterrows()}
    assert set(activations) == {"hidden", "drop", "bn", "out"}
    hidden = np.maximum(probe.astype("float64") @ KERNEL + BIAS, 0.0)
    bn = model.get_layer("bn")
    gamma, beta, moving_mean, moving_variance = (w.numpy().astype("float64") for w in bn.weights)
    # Inference mode: Dropout passes its input through, BatchNormalization uses its moving statistics.
    normalized = gamma * (hidden - moving_mean) / np.sqrt(moving_variance + BN_EPSILON) + beta
    logits = normalized @ OUT_KERNEL + OUT_BIAS
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    expected = {"hidden": hidden, "drop": hidden, "bn": normalized, "out": softmax}
    for layer, values in expected.items():
        assert_stats(activations[layer], numpy_stats(values), layer)
    # The dead unit (an all-zero kernel column and bias) and the ReLU make exact zeros: zero_frac counts them.
    assert activations["hidden"]["zero_frac"] == pytest.approx(np.mean(hidden == 0))
    assert 0.4 < activations["hidden"]["zero_frac"] < 0.9
    assert activations["drop"]["zero_frac"] == activations["hidden"]["zero_frac"]
    counts, _ = np.histogram(hidden, bins=30)
    assert activations["hidden"]["histogram"]["counts"] == counts.tolist()


@pytest.mark.parametrize("metric, monitored", [("accuracy", "val_accuracy"),
                                               (keras.metrics.CosineSimilarity(), "val_cosine_similarity")])
def test_best_checkpoint_of_a_higher_is_better_metric_keeps_its_highest_epoch(runs_root, metric, monitored):
    # mode="auto": accuracy is known by its name, cosine similarity only by the metric's direction ("up").
    x, y = data()
    x_val, y_val = data(64, seed=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.03), "categorical_crossentropy", metrics=[metric])
    live_monitor = LiveMonitor(str(runs_root), checkpoint="best", monitor=monitored, weight_freq=0, system_freq=0)
    model.fit(x, np.eye(2)[y], validation_data=(x_val, np.eye(2)[y_val]), epochs=5, batch_size=BATCH, verbose=0,
              callbacks=[live_monitor])
    values = [e[monitored] for e in records(live_monitor.run_dir, "epoch.jsonl")]
    assert max(values) > min(values)  # the data makes the choice matter
    index = read_json(live_monitor.run_dir, "checkpoints/index.json")
    best = int(np.argmax(values))  # the first epoch that reached the highest value
    assert [(e["path"], e["epoch"], e["is_best"]) for e in index] == [("checkpoints/best.keras", best, True)]
    assert index[0]["value"] == pytest.approx(max(values))
    saved = [e["data"]["value"] for e in events(live_monitor.run_dir, "checkpoint")]
    assert saved == sorted(set(saved)) and saved[0] == pytest.approx(values[0])
    assert open_run(live_monitor.run_dir).checkpoints()["value"].tolist() == pytest.approx([max(values)])


class HoldCheckpoints(keras.callbacks.Callback):
    """A reader that opens the checkpoint after each save and keeps it open, as a user's copy or a loader would."""

    def __init__(self, live_monitor: LiveMonitor) -> None:
        super().__init__()
        self.monitor = live_monitor
        self.held: list[tuple[object, bytes]] = []

    def on_epoch_end(self, epoch, logs=None):
        handle = open(os.path.join(self.monitor.run_dir, "checkpoints", "last.keras"), "rb")  # noqa: SIM115
        self.held.append((handle, handle.read()))


def test_a_checkpoint_someone_has_open_is_never_rewritten_in_place(runs_root):
    x, y = data()
    live_monitor = LiveMonitor(str(runs_root), checkpoint="last", weight_freq=0, system_freq=0)
    holder = HoldCheckpoints(live_monitor)  # after LiveMonitor: each epoch's checkpoint is saved when it runs
    mlp().fit(x, y, validation_data=(x[:32], y[:32]), epochs=3, batch_size=BATCH, verbose=0,
              callbacks=[live_monitor, holder])
    try:
        assert len(holder.held) == 3
        for handle, first_read in holder.held:
            handle.seek(0)
            # Saved under a temporary name and renamed: the file a reader opened stays whole and unchanged.
            assert handle.read() == first_read
            assert zipfile.is_zipfile(handle)
        inodes = {os.fstat(handle.fileno()).st_ino for handle, _ in holder.held}
        assert len(inodes) == 3  # each save is a new file
    finally:
        for handle, _ in holder.held:
            handle.close()
    assert not [n for n in os.listdir(os.path.join(live_monitor.run_dir, "checkpoints")) if n.startswith(".tmp")]


class WaitForHeartbeat(keras.callbacks.Callback):
    """In the middle of the second epoch, waits (up to a generous limit) for status.json's heartbeat to move."""

    def __init__(self, live_monitor: LiveMonitor, patience_s: float = 30.0) -> None:
        super().__init__()
        self.monitor, self.patience_s = live_monitor, patience_s
        self.epoch = 0
        self.before: dict | None = None
        self.after: dict | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) != (1, 1):
            return
        self.before = read_json(self.monitor.run_dir, "status.json")
        deadline = time.monotonic() + self.patience_s
        while time.monotonic() < deadline:
            time.sleep(0.05)
            self.after = read_json(self.monitor.run_dir, "status.json")
            if self.after["heartbeat"] > self.before["heartbeat"]:
                return


def test_the_heartbeat_advances_during_a_long_epoch_and_says_where_training_is(runs_root):
    x, y = data()
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0, flush_interval=0.1)
    waiter = WaitForHeartbeat(live_monitor)
    mlp().fit(x, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[live_monitor, waiter])
    # Nothing but the writer's background loop writes status.json inside an epoch.
    assert waiter.after["heartbeat"] > waiter.before["heartbeat"]
    # The epoch in progress (the second) and the batches done in the run (4 + 2): what the dashboard's progress and
    # ETA are computed from.
    assert (waiter.after["status"], waiter.after["epoch"], waiter.after["step"]) == ("running", 1, 6)
    assert (waiter.after["epochs"], waiter.after["steps_per_epoch"]) == (3, 4)


class CountFlushedBatches(keras.callbacks.Callback):
    """At the third batch of each fit(), waits three default flush intervals, then counts batch.jsonl lines."""

    def __init__(self, live_monitor: LiveMonitor) -> None:
        super().__init__()
        self.monitor = live_monitor
        self.counts: list[int] = []

    def on_train_batch_end(self, batch, logs=None):
        if batch == 2:
            time.sleep(1.5)
            self.counts.append(len(records(self.monitor.run_dir, "batch.jsonl")))


def test_the_flush_interval_reaches_the_writer_in_every_fit(runs_root):
    x, y = data()
    model = mlp()
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0, flush_interval=60.0)
    counter = CountFlushedBatches(live_monitor)
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[live_monitor, counter])
    model.fit(x, y, epochs=2, initial_epoch=1, batch_size=BATCH, verbose=0, callbacks=[live_monitor, counter])
    # With a 60 s interval nothing is appended mid-epoch: only epoch ends and the end of fit() flush.
    assert counter.counts == [0, 4]
    assert len(records(live_monitor.run_dir, "batch.jsonl")) == 8
