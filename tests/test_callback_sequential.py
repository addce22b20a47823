"""LiveMonitor on a Sequential MLP: batch and epoch records, derived per-batch values, statistics, model card."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from train_helpers import BATCH, data, events, mlp, open_run, read_json, records

from kerascope import LiveMonitor


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    x, y = data()
    # accuracy is a running mean (its per-batch value is derivable), IoU is not (a confusion matrix).
    model = mlp(metrics=["accuracy", keras.metrics.MeanIoU(num_classes=2, sparse_y_pred=False, name="iou")])
    live_monitor = LiveMonitor(
        str(root),
        name="mlp / baseline",
        hparams={"dropout": 0.2, "layers": (8, 2), "odd": object()},
        tags=["test"],
        notes="tiny",
        activation_data=x[:64],
    )
    history = model.fit(
        x, y, validation_data=(x[:64], y[:64]), epochs=3, batch_size=BATCH, verbose=0, callbacks=[live_monitor]
    )
    return live_monitor.run_dir, history


def test_batch_records_count_steps_across_epochs(sequential_run):
    run_dir, _ = sequential_run
    batches = records(run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == list(range(1, 13))
    assert [b["epoch"] for b in batches] == [0] * 4 + [1] * 4 + [2] * 4
    assert [b["batch"] for b in batches] == [0, 1, 2, 3] * 3
    assert all({"loss", "accuracy", "iou", "batch_loss", "batch_accuracy", "lr", "time"} <= set(b) for b in batches)
    assert not any("batch_iou" in b for b in batches)


def test_per_batch_values_average_to_the_epoch_mean(sequential_run):
    run_dir, history = sequential_run
    batches = records(run_dir, "batch.jsonl")
    for epoch in range(3):
        in_epoch = [b for b in batches if b["epoch"] == epoch]
        # Equal batch sizes: the mean of the batches' own losses is Keras's epoch loss.
        assert np.mean([b["batch_loss"] for b in in_epoch]) == pytest.approx(history.history["loss"][epoch], rel=1e-4)
        assert in_epoch[0]["batch_loss"] == in_epoch[0]["loss"]
        # Keras's running mean is reproduced from the derived values.
        for i, b in enumerate(in_epoch):
            running = np.mean([c["batch_accuracy"] for c in in_epoch[: i + 1]])
            assert b["accuracy"] == pytest.approx(running, abs=1e-5)


def test_epoch_records_hold_all_logs_and_val_metrics(sequential_run):
    run_dir, history = sequential_run
    epochs = records(run_dir, "epoch.jsonl")
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert [e["step"] for e in epochs] == [4, 8, 12]
    for e in epochs:
        assert {"loss", "accuracy", "iou", "val_loss", "val_accuracy", "val_iou", "lr", "phase"} <= set(e)
        assert e["val_loss"] == pytest.approx(history.history["val_loss"][e["epoch"]])
        assert e["lr"] == pytest.approx(0.001)


def test_run_meta_status_and_events(sequential_run):
    run_dir, _ = sequential_run
    meta = read_json(run_dir, "run.json")
    assert meta["format_version"] == 1 and meta["name"] == "mlp / baseline"
    assert meta["hparams"]["layers"] == [8, 2] and meta["hparams"]["odd"].startswith("<object")
    assert meta["tags"] == ["test"] and meta["notes"] == "tiny"
    assert meta["backend"] == keras.backend.backend() and meta["keras_version"] and meta["python_version"]
    assert meta["fit_params"]["epochs"] == 3 and meta["fit_params"]["steps"] == 4
    assert meta["optimizer"]["class"] == "Adam" and meta["optimizer"]["config"]["learning_rate"] == pytest.approx(1e-3)
    assert meta["model"]["total_params"] == 8 * 8 + 8 + 8 * 2 + 2
    assert meta["model"]["size_bytes"] == 4 * meta["model"]["total_params"]
    assert meta["options"]["update_freq"] == "batch" and meta["options"]["activation_samples"] == 64
    status = read_json(run_dir, "status.json")
    assert status["status"] == "finished" and status["step"] == 12 and status["epoch"] == 2 and status["phase"] == 1
    assert status["ended"] >= status["started"]
    kinds = [e["kind"] for e in events(run_dir)]
    assert kinds[:2] == ["train_begin", "phase"] and kinds[-1] == "train_end"
    assert "warning" not in kinds and "nan" not in kinds
    phase = events(run_dir, "phase")[0]["data"]
    assert phase["trainable_params"] == 90 and phase["initial_epoch"] == 0 and phase["epochs"] == 3


def test_summary_json_matches_what_training_recorded(sequential_run):
    """The writer keeps summary.json (docs/run-format.md): last and best of every epoch metric with its direction."""
    run_dir, history = sequential_run
    summary = read_json(run_dir, "summary.json")
    assert summary["status"] == "finished" and summary["epochs_logged"] == 3 and summary["name"] == "mlp / baseline"
    assert summary["progress"]["step"] == 12 and summary["model"]["total_params"] == 90
    val_loss = history.history["val_loss"]
    assert summary["metrics"]["val_loss"]["last"] == pytest.approx(val_loss[-1])
    assert summary["metrics"]["val_loss"]["best"] == pytest.approx(min(val_loss))
    assert summary["metrics"]["val_loss"]["best_epoch"] == int(np.argmin(val_loss))
    assert summary["metrics"]["accuracy"]["direction"] == "max" and summary["metrics"]["iou"]["direction"] == "max"
    assert summary["metrics"]["accuracy"]["best"] == pytest.approx(max(history.history["accuracy"]))
    assert summary["sources"] == {name: os.path.getsize(os.path.join(run_dir, name))
                                  for name in ("epoch.jsonl", "events.jsonl")}


def test_activation_and_weight_statistics(sequential_run):
    run_dir, _ = sequential_run
    activations = records(run_dir, "activations.jsonl")
    assert [(a["epoch"], a["layer"]) for a in activations] == [(e, n) for e in range(3) for n in ("hidden", "out")]
    hidden = activations[0]
    assert hidden["min"] >= 0.0 and 0.0 <= hidden["zero_frac"] <= 1.0  # ReLU
    assert len(hidden["histogram"]["counts"]) == 30 and len(hidden["histogram"]["edges"]) == 31
    assert sum(hidden["histogram"]["counts"]) == 64 * 8
    out = activations[1]
    assert out["min"] >= 0.0 and out["max"] <= 1.0 and out["mean"] == pytest.approx(0.5)  # softmax rows sum to 1
    weights = records(run_dir, "weights.jsonl")
    assert {(w["layer"], w["weight"]) for w in weights} == {
        ("hidden", "kernel"),
        ("hidden", "bias"),
        ("out", "kernel"),
        ("out", "bias"),
    }
    kernel = next(w for w in weights if w["layer"] == "hidden" and w["weight"] == "kernel")
    assert sum(kernel["histogram"]["counts"]) == 64 and kernel["norm"] > 0


def test_model_card_and_reader_view(sequential_run):
    run_dir, _ = sequential_run
    run = open_run(run_dir)
    assert run.status == "finished" and not run.problems
    summary = run.model_summary()
    assert "hidden (Dense)" in summary and "Trainable" in summary and "\x1b[" not in summary
    dot = run.model_graph_dot()
    assert dot.startswith("digraph") and '"hidden" -> "out"' in dot
    assert run.model_graph_png() is not None and os.path.getsize(run.model_graph_png()) > 1000
    assert run.model_config()["name"] == "tiny_mlp"
    layers = run.layers()
    assert list(layers["name"]) == ["hidden", "out"] and list(layers["params"]) == [72, 18]
    assert list(run.batch_metrics()["step"]) == list(range(1, 13))


@pytest.mark.parametrize(("update_freq", "steps"), [(3, [3, 6, 9, 12]), ("epoch", [])])
def test_update_freq(runs_root, update_freq, steps):
    x, y = data()
    live_monitor = LiveMonitor(str(runs_root), update_freq=update_freq, weight_freq=0, system_freq=0)
    mlp().fit(x, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
    batches = records(live_monitor.run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == steps
    # The batch before each logged one is kept, so the logged batch still gets its own value.
    assert all("batch_loss" in b for b in batches)
    assert len(records(live_monitor.run_dir, "epoch.jsonl")) == 3
    assert records(live_monitor.run_dir, "weights.jsonl") == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"update_freq": "step"}, "update_freq must be"),
        ({"update_freq": 0}, "update_freq must be"),
        ({"update_freq": True}, "update_freq must be"),
        ({"checkpoint": "sometimes"}, "checkpoint must be one of"),
        ({"mode": "up"}, "mode must be"),
    ],
)
def test_invalid_options_are_refused_when_the_monitor_is_made(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        LiveMonitor(str(tmp_path), **options)
    assert not os.listdir(tmp_path)  # nothing written before the first fit()
