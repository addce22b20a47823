"""The backend-agnostic core of LiveMonitor (`make test-backends` runs every test_callback_* file under jax and torch).

On JAX and torch Keras dispatches batch hooks to a worker thread (LiveMonitor is `async_safe`), and on JAX the
model's state is synced into its variables only when `callback.model` is read: what is recorded must still be right.
"""

from __future__ import annotations

import concurrent.futures

import keras
import numpy as np
import pytest
from train_helpers import BATCH, LearningRateRecorder, data, events, mlp, open_run, read_json, records

from kerascope import LiveMonitor


def test_schedule_two_fit_calls_statistics_and_checkpoint(runs_root):
    x, y = data()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.7)
    model = mlp(keras.optimizers.SGD(schedule))
    live_monitor = LiveMonitor(str(runs_root), activation_data=x[:32], checkpoint="last", monitor="loss", system_freq=0)
    oracle = LearningRateRecorder()
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor, oracle])
    model.fit(x, y, epochs=3, initial_epoch=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor, oracle])

    run_dir = live_monitor.run_dir
    assert read_json(run_dir, "run.json")["backend"] == keras.backend.backend()
    batches = records(run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == list(range(1, 13))
    assert [b["lr"] for b in batches] == pytest.approx(oracle.values, rel=1e-5)
    assert [b["lr"] for b in batches] == pytest.approx([0.05 * 0.7 ** (i / 2) for i in range(12)], rel=1e-5)
    epochs = records(run_dir, "epoch.jsonl")
    assert [(e["epoch"], e["phase"], e["step"]) for e in epochs] == [(0, 1, 4), (1, 1, 8), (2, 2, 12)]
    for e in epochs:
        in_epoch = [b["batch_loss"] for b in batches if b["epoch"] == e["epoch"]]
        assert np.mean(in_epoch) == pytest.approx(e["loss"], rel=1e-4)
    assert [e["data"]["phase"] for e in events(run_dir, "phase")] == [1, 2]

    # Statistics taken at the last epoch end describe the trained weights (the JAX state was synced).
    kernel = [w for w in records(run_dir, "weights.jsonl") if w["layer"] == "hidden" and w["weight"] == "kernel"][-1]
    trained = keras.ops.convert_to_numpy(model.get_layer("hidden").kernel)
    assert kernel["mean"] == pytest.approx(float(trained.mean()), rel=1e-5, abs=1e-7)
    assert {a["layer"] for a in records(run_dir, "activations.jsonl")} == {"hidden", "out"}
    run = open_run(run_dir)
    assert run.status == "finished" and not run.problems
    restored = keras.saving.load_model(run.file_path("checkpoints/last.keras"))
    np.testing.assert_allclose(restored.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), rtol=1e-5)


def test_batch_ends_arriving_out_of_order_are_recorded_in_order(runs_root):
    """Keras's async dispatch (JAX, torch) runs batch ends on a thread pool: begins stay in order, ends need not."""
    x, y = data()
    model = mlp(keras.optimizers.SGD(0.1))
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)  # builds the model and its metrics
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0)
    live_monitor.set_model(model)
    live_monitor.set_params({"epochs": 1, "steps": 8, "verbose": 0})
    live_monitor.on_train_begin()
    live_monitor.on_epoch_begin(0)
    losses = [1.0 / (batch + 1) for batch in range(8)]
    running = [float(np.mean(losses[: batch + 1])) for batch in range(8)]
    for batch in range(8):
        live_monitor.on_train_batch_begin(batch)
    arrival = [3, 0, 2, 1, 7, 5, 4, 6]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda batch: live_monitor.on_train_batch_end(batch, {"loss": running[batch]}), arrival))
    live_monitor.on_epoch_end(0, {"loss": running[-1]})
    live_monitor.on_train_end()

    batches = records(live_monitor.run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == list(range(1, 9))
    assert [b["batch_loss"] for b in batches] == pytest.approx(losses)
    assert all(b["lr"] == pytest.approx(0.1) for b in batches)
