"""LiveMonitor driven hook by hook, as a custom training loop drives a Keras callback: a real compiled model, a real
run directory, known logs in, exact records out. No fit(): each test takes a fraction of a second, so that
`python tests/mutation.py callbacks-live` can run them for every mutant of callbacks/live_monitor.py. What only a
real fit() shows (Keras's own hook order, a caught exception noticed by the system thread, graph.png) is pinned by
the fit() tests (test_callback_pinned.py, test_callback_events.py, test_callback_sequential.py).
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from typing import Any

import keras
import numpy as np
import pytest
from train_helpers import data, events, mlp, open_run, read_json, records

from kerascope import LiveMonitor
from kerascope.monitor import format as fmt

# Adam's default learning rate as its float32 variable holds it.
LR = float(np.float32(0.001))
PARAMS = {"epochs": 2, "steps": 2, "verbose": 0}
HIDDEN_PARAMS, OUT_PARAMS = 8 * 8 + 8, 8 * 2 + 2  # train_helpers.mlp: Dense(8) on 8 features, Dense(2)


@pytest.fixture(autouse=True)
def _no_graphviz(monkeypatch):
    """graph.png (plot_model through graphviz's `dot`) is most of a model card's time; without `dot` on PATH the card
    skips it (one `skipped` event), and test_callback_sequential.py pins the image."""
    path = os.environ.get("PATH", "")
    kept = [folder for folder in path.split(os.pathsep) if not os.path.exists(os.path.join(folder, "dot"))]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))


_SHARED: list[keras.Model] = []


def tiny() -> keras.Model:
    """train_helpers.mlp(), built once per session (building it is most of a test's time). Nothing here trains it;
    what tests change on it (a stop request, the LR) is put back. Tests that freeze layers or change the LR build
    their own."""
    if not _SHARED:
        _SHARED.append(mlp())
    model = _SHARED[0]
    model.stop_training = False
    model.optimizer.learning_rate.assign(0.001)
    return model


def quiet(root: Any, **options: Any) -> LiveMonitor:
    """A monitor without the parts a test does not look at: system samples and weight statistics."""
    options.setdefault("system_freq", 0)
    options.setdefault("weight_freq", 0)
    return LiveMonitor(str(root), **options)


def begin(live: LiveMonitor, model: keras.Model, params: dict[str, Any] | None = None) -> None:
    live.set_model(model)
    live.set_params(dict(PARAMS if params is None else params))
    live.on_train_begin()



def epoch(live: LiveMonitor, index: int, batch_logs: list[dict[str, float]], epoch_logs: dict[str, float]) -> None:
    """One epoch as Keras's loop calls it: epoch begin, each batch's begin and end, epoch end."""
    live.on_epoch_begin(index)
    for batch, logs in enumerate(batch_logs):
        live.on_train_batch_begin(batch)
        live.on_train_batch_end(batch, logs=dict(logs))
    live.on_epoch_end(index, logs=dict(epoch_logs))


# Running means as Keras logs them: the batches' own losses are 1.0, 0.6 (epoch 0) and 0.5, 0.3 (epoch 1).
EPOCH0 = [{"loss": 1.0, "accuracy": 0.5}, {"loss": 0.8, "accuracy": 0.75}]
EPOCH1 = [{"loss": 0.5, "accuracy": 0.75}, {"loss": 0.4, "accuracy": 1.0}]


def two_epochs(live: LiveMonitor, model: keras.Model, end: bool = True) -> None:
    begin(live, model)
    epoch(live, 0, EPOCH0, {"loss": 0.8, "accuracy": 0.75})
    epoch(live, 1, EPOCH1, {"loss": 0.4, "accuracy": 1.0})
    if end:
        live.on_train_end()


def main_events(run_dir: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The events written by the training thread: the model card's thread (its graph.png skip) runs alongside."""
    return [e for e in events(run_dir, kind) if not (e["kind"] == "skipped" and e["data"]["what"] == "graph.png")]


def kinds(run_dir: str) -> list[str]:
    return [e["kind"] for e in main_events(run_dir)]


def status(run_dir: str) -> dict[str, Any]:
    return read_json(run_dir, "status.json")


# -- the constructor ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"update_freq": "step"}, "update_freq must be"),
        ({"update_freq": 0}, "update_freq must be"),
        ({"checkpoint": "sometimes"}, "checkpoint must be one of"),
        ({"mode": "up"}, "mode must be"),
        ({"resume": ".hidden"}, "resume must be"),
        ({"metric_directions": {"f1": "up"}}, r"metric_directions\['f1'\] must be"),
        ({"gradient_data": np.zeros((4, 8))}, "gradient_data must be a tuple"),
    ],
)
def test_options_are_refused_when_the_monitor_is_made(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        LiveMonitor(str(tmp_path / "runs"), **options)
    assert os.listdir(tmp_path) == []


def test_a_url_whose_protocol_is_unknown_is_refused_when_the_monitor_is_made():
    with pytest.raises(ValueError):
        LiveMonitor("nosuchprotocol://bucket/runs")


def test_default_options_are_recorded_in_run_json(tmp_path):
    live = LiveMonitor(str(tmp_path))
    assert live.async_safe is True and live.run_dir is None and live.wait_uploaded() is True
    begin(live, tiny())
    assert kinds(live.run_dir) == ["train_begin", "skipped"]  # on disk before the first batch
    live.on_train_end()
    assert live.wait_uploaded(0.1) is True
    # A fit() without epochs still gets its phase event, at its end.
    assert [(e["kind"], e["step"]) for e in main_events(live.run_dir)] == [
        ("train_begin", 0), ("skipped", 0), ("phase", 0), ("train_end", 0)]
    assert main_events(live.run_dir, "phase")[0]["data"]["initial_epoch"] == 0
    meta = read_json(live.run_dir, "run.json")
    assert meta["backend"] == keras.backend.backend() and meta["keras_version"] == keras.__version__
    assert meta["options"] == {
        "logdir": str(tmp_path), "update_freq": "batch", "activation_freq": 1, "weight_freq": 1,
        "gradient_freq": 50, "divergence_factor": 10.0, "checkpoint": None, "monitor": "val_loss", "mode": "auto",
        "metric_directions": {}, "system_freq": 2.0, "flush_interval": 0.5, "strict": False, "resume": None,
        "activation_samples": None,
    }
    assert meta["name"] == "tiny_mlp" and "-tiny_mlp-" in os.path.basename(live.run_dir)
    assert meta["hparams"] == {} and meta["tags"] == [] and meta["notes"] == "" and meta["process_index"] == 0
    assert meta["fit_params"] == PARAMS and meta["optimizer"]["class"] == "Adam"
    assert meta["model"]["total_params"] == HIDDEN_PARAMS + OUT_PARAMS and meta["model"]["class"] == "Sequential"
    assert os.path.dirname(live.run_dir) == str(tmp_path)


def test_an_object_store_logdir_uploads_less_often_by_default():
    assert LiveMonitor("memory://bucket/runs").flush_interval == fmt.REMOTE_FLUSH_INTERVAL_S
    assert LiveMonitor("memory://bucket/runs", flush_interval=1.5).flush_interval == 1.5
    assert LiveMonitor("runs-not-created").flush_interval == 0.5


def test_given_options_and_identity_are_recorded_as_given(tmp_path):
    hparams = {"units": 8, "odd": object()}
    x, _ = data(samples=3)
    live = LiveMonitor(
        str(tmp_path), "my run", hparams=hparams, tags=[1, "b"], notes="n", update_freq=2, activation_data=x,
        activation_freq=3, weight_freq=0, gradient_freq=7, divergence_factor=None, checkpoint="last", monitor="loss",
        mode="min", metric_directions={"f": "max"}, system_freq=0, flush_interval=0.25, strict=True,
    )
    hparams["units"] = 16  # the monitor keeps its own copy
    begin(live, tiny())
    live.on_train_end()
    assert [row["phase"] for row in records(live.run_dir, "model/layers.jsonl")] == [1]  # strict: written in place
    meta = read_json(live.run_dir, "run.json")
    assert meta["name"] == "my run" and meta["tags"] == ["1", "b"] and meta["notes"] == "n"
    assert meta["hparams"]["units"] == 8 and meta["hparams"]["odd"].startswith("<object")
    assert meta["options"] == {
        "logdir": str(tmp_path), "update_freq": 2, "activation_freq": 3, "weight_freq": 0, "gradient_freq": 7,
        "divergence_factor": None, "checkpoint": "last", "monitor": "loss", "mode": "min",
        "metric_directions": {"f": "max"}, "system_freq": 0, "flush_interval": 0.25, "strict": True, "resume": None,
        "activation_samples": 3,
    }


# -- the run's lifecycle -----------------------------------------------------------------------------------------


def test_status_goes_from_running_to_finished_with_the_position(tmp_path):
    live = quiet(tmp_path)
    begin(live, tiny())
    live._tick()  # the system thread's check: hooks called outside any fit() frame are never taken as ended
    live._tick()
    running = status(live.run_dir)
    assert (running["status"], running["phase"], running["epoch"], running["step"]) == ("running", 1, 0, 0)
    assert (running["epochs"], running["steps_per_epoch"]) == (2, 2) and "ended" not in running
    epoch(live, 0, EPOCH0, {"loss": 0.8})
    after_epoch = status(live.run_dir)
    assert (after_epoch["status"], after_epoch["epoch"], after_epoch["step"]) == ("running", 0, 2)
    epoch(live, 1, EPOCH1, {"loss": 0.4})
    live.on_train_end()
    done = status(live.run_dir)
    assert (done["status"], done["epoch"], done["step"], done["phase"]) == ("finished", 1, 4, 1)
    assert done["ended"] >= done["started"] and "reason" not in done
    assert open_run(live.run_dir).status == "finished"
    # The system sampler and the model card's thread end with the fit().
    assert [t.name for t in threading.enumerate() if t.name in ("kerascope-system", "kerascope-model-card")] == []


def test_events_of_one_fit_in_order_with_their_position_and_data(tmp_path):
    live = quiet(tmp_path)
    two_epochs(live, tiny())
    found = main_events(live.run_dir)
    assert [(e["kind"], e["step"], e["epoch"]) for e in found] == [
        ("train_begin", 0, 0), ("skipped", 0, 0), ("phase", 0, 0), ("train_end", 4, 1)]
    train_begin, skipped, phase, train_end = found
    assert train_begin["message"] == "fit() call 1 began" and train_begin["data"] == {"phase": 1}
    assert skipped["data"] == {"what": "activations"}
    assert skipped["message"] == "no activation statistics: pass LiveMonitor(activation_data=x_val[:256])"
    assert phase["message"] == f"phase 1: epochs 0-2, {HIDDEN_PARAMS + OUT_PARAMS} trainable parameters"
    assert phase["data"] == {"phase": 1, "trainable_params": HIDDEN_PARAMS + OUT_PARAMS, "non_trainable_params": 0,
                             "initial_epoch": 0, "epochs": 2, "lr": LR}
    assert train_end["message"] == "fit() call 1 ended after 2 epoch(s)"
    assert train_end["data"] == {"phase": 1, "epochs_done": 2}
    card = os.listdir(os.path.join(live.run_dir, "model"))
    assert {"summary.txt", "layers.jsonl", "config.json", "graph.dot"} <= set(card)
    assert [row["phase"] for row in records(live.run_dir, "model/layers.jsonl")] == [1]


def test_no_activation_skip_event_when_activations_are_turned_off(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    two_epochs(live, tiny())
    assert kinds(live.run_dir) == ["train_begin", "phase", "train_end"]


def test_batch_and_epoch_records_count_steps_and_derive_each_batchs_own_loss(tmp_path):
    live = quiet(tmp_path)
    two_epochs(live, tiny())
    batches = records(live.run_dir, "batch.jsonl")
    assert [(b["step"], b["epoch"], b["batch"]) for b in batches] == [(1, 0, 0), (2, 0, 1), (3, 1, 0), (4, 1, 1)]
    assert [b["loss"] for b in batches] == [1.0, 0.8, 0.5, 0.4]
    assert [b["batch_loss"] for b in batches] == pytest.approx([1.0, 0.6, 0.5, 0.3])
    assert [b["lr"] for b in batches] == [LR] * 4
    epochs = records(live.run_dir, "epoch.jsonl")
    assert [{k: e[k] for k in ("epoch", "step", "phase", "loss", "accuracy", "lr")} for e in epochs] == [
        {"epoch": 0, "step": 2, "phase": 1, "loss": 0.8, "accuracy": 0.75, "lr": LR},
        {"epoch": 1, "step": 4, "phase": 1, "loss": 0.4, "accuracy": 1.0, "lr": LR},
    ]
    assert read_json(live.run_dir, "run.json")["metrics"] == {"loss": {"direction": "min"},
                                                              "accuracy": {"direction": "max"}}


def test_a_second_fit_continues_the_run_as_phase_two(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    model = mlp()
    two_epochs(live, model)
    first_dir = live.run_dir
    model.get_layer("hidden").trainable = False  # fine-tuning: fewer trainable parameters in phase 2
    begin(live, model, {"epochs": 4, "steps": 2, "verbose": 0})
    epoch(live, 2, EPOCH0, {"loss": 0.8})
    epoch(live, 3, EPOCH1, {"loss": 0.4})
    live.on_train_end()
    assert live.run_dir == first_dir and os.listdir(tmp_path) == [os.path.basename(first_dir)]
    assert [(b["step"], b["epoch"]) for b in records(first_dir, "batch.jsonl")][4:] == [(5, 2), (6, 2), (7, 3), (8, 3)]
    assert [(e["epoch"], e["step"], e["phase"]) for e in records(first_dir, "epoch.jsonl")] == [
        (0, 2, 1), (1, 4, 1), (2, 6, 2), (3, 8, 2)]
    phases = main_events(first_dir, "phase")
    assert [(e["step"], e["data"]["phase"], e["data"]["initial_epoch"], e["data"]["epochs"]) for e in phases] == [
        (0, 1, 0, 2), (4, 2, 2, 4)]
    assert (phases[1]["data"]["trainable_params"], phases[1]["data"]["non_trainable_params"]) == (
        OUT_PARAMS, HIDDEN_PARAMS)
    assert phases[1]["message"] == f"phase 2: epochs 2-4, {OUT_PARAMS} trainable parameters"
    assert [(e["step"], e["message"]) for e in main_events(first_dir, "train_begin")] == [
        (0, "fit() call 1 began"), (4, "fit() call 2 began")]
    assert [e["data"] for e in main_events(first_dir, "train_end")] == [
        {"phase": 1, "epochs_done": 2}, {"phase": 2, "epochs_done": 2}]
    done = status(first_dir)
    assert (done["status"], done["phase"], done["step"], done["epoch"], done["epochs"]) == ("finished", 2, 8, 3, 4)
    assert read_json(first_dir, "run.json")["fit_params"]["epochs"] == 4
    assert [row["phase"] for row in records(first_dir, "model/layers.jsonl")] == [1, 2]
    begin(live, model, {"epochs": 4, "steps": 2, "verbose": 0})  # nothing left to train: no epoch begins
    live.on_train_end()
    assert [(e["step"], e["epoch"], e["message"]) for e in main_events(first_dir, "phase")][2:] == [
        (8, 3, f"phase 3: epochs 3-4, {OUT_PARAMS} trainable parameters")]


def test_a_model_built_by_its_first_step_is_described_at_the_first_epoch_end(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(8, name="hidden"), keras.layers.Dense(2, name="out")], name="lazy")
    model.compile("adam", "mse")
    live = quiet(tmp_path, activation_freq=0)
    begin(live, model)
    assert "model" not in read_json(live.run_dir, "run.json")
    model.build((None, 8))  # what the first train step does
    epoch(live, 0, EPOCH0, {"loss": 0.8})
    assert read_json(live.run_dir, "run.json")["model"]["total_params"] == HIDDEN_PARAMS + OUT_PARAMS
    assert [(e["kind"], e["step"]) for e in main_events(live.run_dir)] == [("train_begin", 0), ("phase", 0)]
    assert main_events(live.run_dir, "phase")[0]["data"]["trainable_params"] == HIDDEN_PARAMS + OUT_PARAMS
    live.on_train_end()
    assert kinds(live.run_dir) == ["train_begin", "phase", "train_end"]
    assert [row["phase"] for row in records(live.run_dir, "model/layers.jsonl")] == [1]


# -- batches -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("update_freq", "logged"), [(2, [(2, 0.6), (4, 0.3)]), ("epoch", [])])
def test_update_freq_logs_every_nth_step_with_its_own_value(tmp_path, update_freq, logged):
    live = quiet(tmp_path, update_freq=update_freq)
    two_epochs(live, tiny())
    batches = records(live.run_dir, "batch.jsonl")
    assert [(b["step"], round(b["batch_loss"], 6)) for b in batches] == logged
    assert [e["step"] for e in records(live.run_dir, "epoch.jsonl")] == [2, 4]
    assert status(live.run_dir)["step"] == 4


def test_a_last_partial_group_of_steps_is_recorded_at_the_epochs_last_step(tmp_path):
    """steps_per_execution=2 over 3 steps: Keras reports batch 1, then the nominal end 3 of the partial group."""
    live = quiet(tmp_path)
    begin(live, tiny(), {"epochs": 1, "steps": 3})
    live.on_epoch_begin(0)
    for first, last in ((0, 1), (2, 3)):
        live.on_train_batch_begin(first)
        live.on_train_batch_end(last, logs={"loss": 0.5})
    live.on_epoch_end(0, logs={"loss": 0.5})
    live.on_train_end()
    assert [(b["step"], b["batch"]) for b in records(live.run_dir, "batch.jsonl")] == [(2, 1), (3, 2)]
    assert status(live.run_dir)["step"] == 3


def test_batch_ends_arriving_out_of_order_are_recorded_in_training_order(tmp_path):
    live = quiet(tmp_path)
    begin(live, tiny(), {"epochs": 2, "steps": 3})
    live.on_epoch_begin(0)
    for batch in range(3):
        live.on_train_batch_begin(batch)
    for batch in (1, 2, 0):  # a worker thread's order (JAX, torch)
        live.on_train_batch_end(batch, logs={"loss": float(batch)})
    live.on_epoch_end(0, logs={"loss": 1.0})
    live.on_epoch_begin(1)
    live.on_train_batch_begin(0)
    live.on_train_batch_begin(1)
    live.on_train_batch_end(1, logs={"loss": 7.0})  # batch 0's end never comes: held until the epoch ends
    assert [b["step"] for b in records(live.run_dir, "batch.jsonl")] == [1, 2, 3]
    live.on_epoch_end(1, logs={"loss": 7.0})
    live.on_train_end()
    batches = records(live.run_dir, "batch.jsonl")
    assert [(b["step"], b["epoch"], b["batch"], b["loss"]) for b in batches] == [
        (1, 0, 0, 0.0), (2, 0, 1, 1.0), (3, 0, 2, 2.0), (5, 1, 1, 7.0)]
    assert [e["step"] for e in records(live.run_dir, "epoch.jsonl")] == [3, 5]


def test_batch_ends_without_begins_are_recorded_as_they_come(tmp_path):
    live = quiet(tmp_path)
    begin(live, tiny())
    live.on_epoch_begin(0)
    live.on_train_batch_end(1, logs={"loss": 2.0})
    live.on_train_batch_end(0, logs={"loss": 1.0})
    live.on_epoch_end(0, logs={"loss": 1.5})
    live.on_train_end()
    assert [(b["step"], b["batch"]) for b in records(live.run_dir, "batch.jsonl")] == [(2, 1), (1, 0)]
    assert [b["lr"] for b in records(live.run_dir, "batch.jsonl")] == [LR, LR]
    assert status(live.run_dir)["step"] == 2 and records(live.run_dir, "epoch.jsonl")[0]["step"] == 2


# -- validation --------------------------------------------------------------------------------------------------


def test_validation_hooks_record_nothing_and_val_metrics_arrive_with_the_epoch_logs(tmp_path):
    live = quiet(tmp_path, metric_directions={"accuracy": "min"})
    model = tiny()
    begin(live, model)
    epoch(live, 0, EPOCH0, {"loss": 0.8, "accuracy": 0.75})
    assert read_json(live.run_dir, "run.json")["metrics"] == {"loss": {"direction": "min"},
                                                              "accuracy": {"direction": "min"}}
    live.on_epoch_begin(1)
    for batch, logs in enumerate(EPOCH1):
        live.on_train_batch_begin(batch)
        live.on_train_batch_end(batch, logs=dict(logs))
    live.on_test_begin()
    for batch in range(3):
        live.on_test_batch_begin(batch)
        live.on_test_batch_end(batch, logs={"loss": 9.0})
    live.on_test_end(logs={"loss": 0.9, "accuracy": 0.5})
    live.on_epoch_end(1, logs={"loss": 0.4, "accuracy": 1.0, "val_loss": 0.9, "val_accuracy": 0.5,
                               "learning_rate": 0.001})  # ReduceLROnPlateau adds the LR to the logs
    live.on_train_end()
    assert [b["step"] for b in records(live.run_dir, "batch.jsonl")] == [1, 2, 3, 4]
    last = records(live.run_dir, "epoch.jsonl")[-1]
    assert (last["val_loss"], last["val_accuracy"], last["step"], last["learning_rate"]) == (0.9, 0.5, 4, 0.001)
    assert read_json(live.run_dir, "run.json")["metrics"] == {
        "loss": {"direction": "min"}, "accuracy": {"direction": "min"}, "val_loss": {"direction": "min"},
        "val_accuracy": {"direction": "min"}}
    assert status(live.run_dir)["step"] == 4


def test_evaluate_and_predict_outside_fit_write_nothing(tmp_path):
    live = quiet(tmp_path)
    live.set_model(tiny())
    live.on_test_begin()
    live.on_test_batch_end(0, logs={"loss": 1.0})
    live.on_test_end(logs={"loss": 1.0})
    live.on_predict_begin()
    live.on_predict_batch_end(0, logs={"outputs": np.zeros(2)})
    live.on_predict_end()
    assert live.run_dir is None and os.listdir(tmp_path) == []


# -- hooks out of order and failures ------------------------------------------------------------------------------


def test_training_hooks_before_train_begin_or_after_train_end_write_nothing(tmp_path):
    live = quiet(tmp_path)
    live.set_model(tiny())
    live.on_epoch_begin(0)
    live.on_train_batch_begin(0)
    live.on_train_batch_end(0, logs={"loss": 1.0})
    live.on_epoch_end(0, logs={"loss": 1.0})
    live.on_train_end()
    assert live.run_dir is None and os.listdir(tmp_path) == []
    two_epochs(live, live.model)
    written = {name: os.path.getsize(os.path.join(live.run_dir, name))
               for name in ("batch.jsonl", "epoch.jsonl", "events.jsonl", "status.json")}
    live.on_epoch_begin(5)
    live.on_train_batch_begin(0)
    live.on_train_batch_end(0, logs={"loss": 1.0})
    live.on_epoch_end(5, logs={"loss": 1.0})
    live.on_train_end()
    assert {name: os.path.getsize(os.path.join(live.run_dir, name)) for name in written} == written
    assert (status(live.run_dir)["status"], status(live.run_dir)["epoch"]) == ("finished", 1)


def test_a_train_begin_before_the_previous_fits_end_fails_that_fit_and_starts_phase_two(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    model = tiny()
    begin(live, model)
    epoch(live, 0, EPOCH0, {"loss": 0.8})
    begin(live, model)
    failed = main_events(live.run_dir, "failed")
    reason = "a new fit() began before the previous one reached on_train_end"
    assert [(e["step"], e["epoch"], e["message"], e["data"]) for e in failed] == [(2, 0, reason, {"error": reason})]
    running = status(live.run_dir)
    assert (running["status"], running["phase"], running["step"]) == ("running", 2, 2) and "reason" not in running
    epoch(live, 1, EPOCH1, {"loss": 0.4})
    live.on_train_end()
    assert kinds(live.run_dir) == ["train_begin", "phase", "failed", "train_begin", "phase", "train_end"]
    assert (status(live.run_dir)["status"], status(live.run_dir)["step"]) == ("finished", 4)


@pytest.mark.parametrize(
    ("error", "expected"),
    [(ValueError("boom"), ("failed", "ValueError: boom")), (KeyboardInterrupt(), ("interrupted", "KeyboardInterrupt"))],
)
def test_an_uncaught_exception_ends_the_fit_failed_or_interrupted(tmp_path, capsys, error, expected):
    live = quiet(tmp_path, activation_freq=0)
    begin(live, tiny())
    epoch(live, 0, EPOCH0, {"loss": 0.8})
    live.on_epoch_begin(1)
    live.on_train_batch_begin(0)
    live.on_train_batch_end(0, logs={"loss": 0.5})
    sys.excepthook(type(error), error, None)  # what Python calls for an exception that leaves the main thread
    live.on_train_end()  # Keras never calls it then; if it did, the fit has ended already
    kind, reason = expected
    ended = status(live.run_dir)
    assert (ended["status"], ended["reason"], ended["step"], ended["epoch"]) == (kind, reason, 3, 1)
    assert [(e["kind"], e["step"], e["epoch"], e["data"]) for e in main_events(live.run_dir)][2:] == [
        (kind, 3, 1, {"error": reason})]
    assert [b["step"] for b in records(live.run_dir, "batch.jsonl")] == [1, 2, 3]


def test_a_caught_exception_that_left_fit_is_noticed_at_the_next_tick(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    model = tiny()

    def fit(callbacks: list[LiveMonitor]) -> None:  # a training loop named like Keras's: its frame is watched
        begin(callbacks[0], model)
        callbacks[0]._tick()  # fit() is still running: nothing to notice, at this tick or the next
        callbacks[0]._tick()
        assert status(callbacks[0].run_dir)["status"] == "running" and kinds(callbacks[0].run_dir)[-1] != "failed"
        raise ValueError("caught by the caller")

    with pytest.raises(ValueError) as caught:
        fit([live])
    live._tick()  # the system thread's check, every tick: fit() is off the stack and pytest holds the exception
    ended = status(live.run_dir)
    assert (ended["status"], ended["reason"]) == ("failed", "ValueError: caught by the caller")
    assert caught.value.args == ("caught by the caller",)


def test_an_unwritable_logdir_warns_once_and_turns_monitoring_off(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    live = quiet(blocker / "runs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        two_epochs(live, tiny())
        two_epochs(live, live.model)
    warned = [w for w in caught if "LiveMonitor" in str(w.message)]
    runs = str(blocker / "runs")
    assert len(warned) == 1 and warned[0].category is RuntimeWarning
    assert str(warned[0].message).startswith(f"LiveMonitor: cannot write a run under {runs!r} (NotADirectoryError: ")
    assert str(warned[0].message).endswith("; monitoring is off for this callback, training continues")
    assert live.run_dir is None and os.listdir(tmp_path) == ["a-file"]
    strict = quiet(blocker / "runs", strict=True)
    strict.set_model(tiny())
    strict.set_params(dict(PARAMS))
    with pytest.raises(OSError):
        strict.on_train_begin()


def test_an_error_inside_the_callback_is_one_warning_and_one_event_unless_strict(tmp_path):
    x, _ = data(samples=4)
    wrong_shape = x[:, :3]  # the model takes 8 features: the activation probe fails at every epoch end
    live = quiet(tmp_path, activation_data=wrong_shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        two_epochs(live, tiny())
    messages = [str(w.message) for w in caught if "LiveMonitor" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("LiveMonitor: activation statistics failed: ValueError")
    warning_events = main_events(live.run_dir, "warning")
    assert len(warning_events) == 1 and warning_events[0]["message"].startswith("activation statistics failed: ")
    assert (warning_events[0]["step"], warning_events[0]["epoch"]) == (2, 0)
    assert status(live.run_dir)["status"] == "finished" and len(records(live.run_dir, "epoch.jsonl")) == 2
    strict = quiet(tmp_path, activation_data=wrong_shape, strict=True)
    begin(strict, tiny())
    strict.on_epoch_begin(0)
    with pytest.raises(ValueError):
        strict.on_epoch_end(0, logs={"loss": 1.0})
    strict.on_train_end()


# -- what is recorded at epoch ends -------------------------------------------------------------------------------


def test_weight_and_activation_statistics_every_nth_epoch(tmp_path):
    x, _ = data(samples=4)
    live = quiet(tmp_path, activation_data=x, activation_freq=2, weight_freq=3)
    begin(live, tiny(), {"epochs": 3, "steps": 1})
    for index in range(3):
        epoch(live, index, [{"loss": 1.0}], {"loss": 1.0})
    live.on_train_end()
    activations = records(live.run_dir, "activations.jsonl")
    assert [(a["step"], a["epoch"], a["layer"], a["count"]) for a in activations] == [
        (2, 1, "hidden", 4 * 8), (2, 1, "out", 4 * 2)]
    assert activations[1]["mean"] == pytest.approx(0.5)  # softmax rows sum to 1
    weights = records(live.run_dir, "weights.jsonl")
    assert [(w["step"], w["epoch"], w["layer"], w["weight"]) for w in weights] == [
        (3, 2, "hidden", "kernel"), (3, 2, "hidden", "bias"), (3, 2, "out", "kernel"), (3, 2, "out", "bias")]
    assert "skipped" not in kinds(live.run_dir)


def test_activations_of_a_subclassed_model_are_skipped_with_why(tmp_path):
    class Subclassed(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="sub")
            self.dense = keras.layers.Dense(2)

        def build(self, input_shape):
            self.dense.build(input_shape)

        def call(self, inputs):
            return self.dense(inputs)

    model = Subclassed()
    model.compile("adam", "mse")
    model.build((None, 8))
    x, _ = data(samples=4)
    live = quiet(tmp_path, activation_data=x)
    begin(live, model, {"epochs": 2, "steps": 1})
    epoch(live, 0, [{"loss": 1.0}], {"loss": 1.0})
    epoch(live, 1, [{"loss": 1.0}], {"loss": 1.0})
    live.on_train_end()
    skipped = [e for e in main_events(live.run_dir, "skipped") if e["data"]["what"] == "activations"]
    assert len(skipped) == 1 and "subclassed model" in skipped[0]["message"] and skipped[0]["step"] == 1
    assert records(live.run_dir, "activations.jsonl") == []


def test_nan_metrics_are_events_once_per_metric_per_fit(tmp_path):
    live = quiet(tmp_path, activation_freq=0, divergence_factor=None)
    model = tiny()
    begin(live, model)
    epoch(live, 0, [{"loss": math.nan}, {"loss": math.nan}], {"loss": math.nan, "accuracy": math.inf})
    epoch(live, 1, [{"loss": math.nan}, {"loss": math.nan}], {"loss": math.nan})
    live.on_train_end()
    nan = [(e["step"], e["epoch"], e["data"]["metric"], e["message"]) for e in main_events(live.run_dir, "nan")]
    assert nan == [(1, 0, "loss", "loss is nan at step 1"), (2, 0, "accuracy", "accuracy is inf at step 2")]
    begin(live, model, {"epochs": 3, "steps": 1})
    epoch(live, 2, [{"loss": math.nan}], {"loss": 1.0})
    live.on_train_end()
    assert [(e["step"], e["data"]["metric"]) for e in main_events(live.run_dir, "nan")][2:] == [(5, "loss")]


def test_a_stop_requested_by_a_callback_is_one_early_stop_event(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    model = tiny()
    begin(live, model, {"epochs": 5, "steps": 2})
    epoch(live, 0, EPOCH0, {"loss": 0.8})
    live.on_epoch_begin(1)
    model.stop_training = True  # EarlyStopping ahead of the monitor in the callback list
    live.on_epoch_end(1, logs={"loss": 0.9})
    assert kinds(live.run_dir)[-1] == "early_stop"  # written with the epoch, before the fit ends
    live.on_train_end()
    stops = main_events(live.run_dir, "early_stop")
    assert [(e["step"], e["epoch"], e["message"], e["data"]) for e in stops] == [
        (2, 1, "training stopped early at epoch 1", {"epoch": 1})]
    assert kinds(live.run_dir)[-2:] == ["early_stop", "train_end"]


def test_a_stop_requested_after_the_last_epoch_end_is_seen_at_train_end(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    model = tiny()
    begin(live, model)
    epoch(live, 0, EPOCH0, {"loss": 0.8})
    model.stop_training = True  # EarlyStopping after the monitor in the callback list
    live.on_train_end()
    assert [(e["kind"], e["epoch"]) for e in main_events(live.run_dir)][-2:] == [("early_stop", 0), ("train_end", 0)]


# -- learning rate ------------------------------------------------------------------------------------------------


class HalveLearningRate(keras.callbacks.Callback):
    """ReduceLROnPlateau's move, at every epoch end, placed before the monitor in the callback list."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.optimizer.learning_rate.assign(float(self.model.optimizer.learning_rate.numpy()) / 2)


def test_learning_rate_changes_are_events_where_they_happen(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    model = mlp()
    begin(live, model, {"epochs": 3, "steps": 1})
    epoch(live, 0, [{"loss": 1.0}], {"loss": 1.0})
    model.optimizer.learning_rate.assign(0.5)  # LearningRateScheduler at epoch 1's begin
    epoch(live, 1, [{"loss": 1.0}], {"loss": 1.0})
    halve = HalveLearningRate()
    halve.set_model(model)
    live.on_epoch_begin(2)
    live.on_train_batch_begin(0)
    live.on_train_batch_end(0, logs={"loss": 1.0})
    halve.on_epoch_end(2)
    live.on_epoch_end(2, logs={"loss": 1.0})
    model.optimizer.learning_rate.assign(0.125)  # after the last epoch, before train end
    live.on_train_end()
    changes = [(e["step"], e["epoch"], e["message"], e["data"]) for e in main_events(live.run_dir, "lr_change")]
    assert changes == [
        (1, 1, "learning rate 0.001 -> 0.5 (epoch 1 begins)", {"old": LR, "new": 0.5}),
        (3, 2, "learning rate 0.5 -> 0.25 (after epoch 2)", {"old": 0.5, "new": 0.25}),
        (3, 2, "learning rate 0.25 -> 0.125 (after training)", {"old": 0.25, "new": 0.125}),
    ]
    assert [b["lr"] for b in records(live.run_dir, "batch.jsonl")] == [LR, 0.5, 0.5]
    assert [e["lr"] for e in records(live.run_dir, "epoch.jsonl")] == [LR, 0.5, 0.5]
    model.optimizer.learning_rate.assign(0.0625)  # between fits
    begin(live, model, {"epochs": 4, "steps": 1})
    epoch(live, 3, [{"loss": 1.0}], {"loss": 1.0})
    live.on_train_end()
    later = [(e["step"], e["message"]) for e in main_events(live.run_dir, "lr_change")][3:]
    assert later == [(3, "learning rate 0.125 -> 0.0625 (fit() call 2 begins)")]
    assert main_events(live.run_dir, "phase")[1]["data"]["lr"] == 0.0625
    assert records(live.run_dir, "batch.jsonl")[-1]["lr"] == 0.0625
    assert "assign" not in vars(model.optimizer._learning_rate)  # the LR variable's own assign is back


# -- checkpoints --------------------------------------------------------------------------------------------------


def checkpoint_run(tmp_path, losses: list[float], **options: Any) -> str:
    live = quiet(tmp_path, activation_freq=0, **options)
    begin(live, tiny(), {"epochs": len(losses), "steps": 1})
    for index, loss in enumerate(losses):
        epoch(live, index, [{"loss": loss}], {"loss": loss, "val_loss": loss + 1})
    live.on_train_end()
    return live.run_dir


def test_best_checkpoint_is_saved_when_the_monitored_metric_improves(tmp_path):
    run_dir = checkpoint_run(tmp_path, [0.5, 0.7, 0.4], checkpoint="best")
    index = read_json(run_dir, "checkpoints/index.json")
    assert [(c["epoch"], c["step"], c["path"], c["monitor"], c["value"], c["is_best"]) for c in index] == [
        (2, 3, "checkpoints/best.keras", "val_loss", 1.4, True)]
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["best.keras", "index.json"]
    saved = main_events(run_dir, "checkpoint")
    assert [(e["step"], e["message"], e["data"]) for e in saved] == [
        (1, "saved checkpoints/best.keras (val_loss=1.5)",
         {"path": "checkpoints/best.keras", "value": 1.5, "is_best": True}),
        (3, "saved checkpoints/best.keras (val_loss=1.4)",
         {"path": "checkpoints/best.keras", "value": 1.4, "is_best": True})]


def test_mode_max_keeps_the_highest_value(tmp_path):
    run_dir = checkpoint_run(tmp_path, [0.5, 0.7, 0.4], checkpoint="best", monitor="loss", mode="max")
    assert [(e["step"], e["data"]["value"]) for e in main_events(run_dir, "checkpoint")] == [(1, 0.5), (2, 0.7)]


def test_all_checkpoints_one_per_epoch_flag_the_best(tmp_path):
    run_dir = checkpoint_run(tmp_path, [0.5, 0.7], checkpoint="all", monitor="loss")
    index = read_json(run_dir, "checkpoints/index.json")
    assert [(c["path"], c["is_best"]) for c in index] == [
        ("checkpoints/epoch-0001.keras", True), ("checkpoints/epoch-0002.keras", False)]
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == [
        "epoch-0001.keras", "epoch-0002.keras", "index.json"]


def test_a_checkpoint_monitor_missing_from_the_logs_is_said_once(tmp_path):
    run_dir = checkpoint_run(tmp_path, [0.5, 0.4], checkpoint="last", monitor="acc")
    skipped = [e for e in main_events(run_dir, "skipped") if e["data"]["what"] == "checkpoint"]
    assert [(e["step"], e["message"]) for e in skipped] == [
        (1, "checkpoint='last' monitors 'acc', which is not in the epoch logs (loss, val_loss): "
            "pass monitor=... to LiveMonitor")]
    assert [e["message"] for e in main_events(run_dir, "checkpoint")] == [
        "saved checkpoints/last.keras (acc=not logged)"] * 2
    assert [(c["epoch"], c["value"], c["is_best"]) for c in read_json(run_dir, "checkpoints/index.json")] == [
        (1, None, False)]


def test_a_val_checkpoint_monitor_never_logged_is_said_at_train_end(tmp_path):
    live = quiet(tmp_path, activation_freq=0, checkpoint="best", monitor="val_auc")
    begin(live, tiny(), {"epochs": 2, "steps": 1})
    epoch(live, 0, [{"loss": 1.0}], {"loss": 1.0})
    epoch(live, 1, [{"loss": 1.0}], {"loss": 1.0})
    assert main_events(live.run_dir, "skipped") == []  # validation_freq may bring it later
    live.on_train_end()
    skipped = main_events(live.run_dir, "skipped")
    assert [(e["step"], e["data"]["what"], e["message"]) for e in skipped] == [
        (2, "checkpoint", "checkpoint='best' monitors 'val_auc', which is not in the epoch logs (loss): "
                          "pass monitor=... to LiveMonitor")]
    assert not os.path.exists(os.path.join(live.run_dir, "checkpoints"))


def test_the_best_value_carries_over_to_the_next_fit(tmp_path):
    live = quiet(tmp_path, activation_freq=0, checkpoint="best", monitor="loss")
    model = tiny()
    begin(live, model, {"epochs": 1, "steps": 1})
    epoch(live, 0, [{"loss": 0.5}], {"loss": 0.5})
    live.on_train_end()
    begin(live, model, {"epochs": 3, "steps": 1})
    epoch(live, 1, [{"loss": 0.6}], {"loss": 0.6})
    epoch(live, 2, [{"loss": 0.3}], {"loss": 0.3})
    live.on_train_end()
    index = read_json(live.run_dir, "checkpoints/index.json")
    assert [(c["epoch"], c["value"]) for c in index] == [(2, 0.3)]
    assert [e["step"] for e in main_events(live.run_dir, "checkpoint")] == [1, 3]


# -- copies and resume --------------------------------------------------------------------------------------------


def test_a_deep_copy_records_its_own_run_and_shares_the_data(tmp_path):
    x, _ = data(samples=4)
    live = quiet(tmp_path, hparams={"lr": [1]}, tags=["t"], metric_directions={"f": "max"}, activation_data=x,
                 activation_freq=0)
    two_epochs(live, tiny())
    clone = copy.deepcopy(live)
    first, second = copy.deepcopy([live, live])
    assert first is second and first is not live  # one copy per object, as deepcopy promises
    assert clone.run_dir is None and clone.activation_data is x
    assert clone.hparams == {"lr": [1]} and clone.hparams["lr"] is not live.hparams["lr"]
    assert clone.tags == ["t"] and clone.tags is not live.tags
    assert clone.metric_directions == {"f": "max"} and clone.metric_directions is not live.metric_directions
    two_epochs(clone, tiny())
    assert clone.run_dir != live.run_dir and sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(live.run_dir), os.path.basename(clone.run_dir)])
    assert [b["step"] for b in records(clone.run_dir, "batch.jsonl")] == [1, 2, 3, 4]
    assert main_events(clone.run_dir, "phase")[0]["data"]["phase"] == 1


def test_a_restarted_script_resumes_its_failed_run_from_the_restored_epoch(tmp_path, capsys):
    dead = quiet(tmp_path, name="resumable", activation_freq=0, checkpoint="all", monitor="loss")
    model = tiny()
    begin(dead, model)
    epoch(dead, 0, EPOCH0, {"loss": 0.8})
    epoch(dead, 1, EPOCH1, {"loss": 0.9})
    sys.excepthook(RuntimeError, RuntimeError("lost"), None)
    assert status(dead.run_dir)["status"] == "failed"
    restarted = quiet(tmp_path, name="resumable", activation_freq=0, checkpoint="all", monitor="loss",
                      resume="auto")
    begin(restarted, model)
    assert restarted.run_dir == dead.run_dir
    epoch(restarted, 1, EPOCH1, {"loss": 0.85})  # BackupAndRestore restored epoch 1
    restarted.on_train_end()
    # Epoch 1's checkpoint is superseded; epoch 0's (0.8) stays the best, which 0.85 does not beat.
    assert [(c["epoch"], c["value"], c["is_best"]) for c in read_json(dead.run_dir, "checkpoints/index.json")] == [
        (0, 0.8, True), (1, 0.85, False)]
    assert [(b["step"], b["epoch"], b["loss"]) for b in records(dead.run_dir, "batch.jsonl")] == [
        (1, 0, 1.0), (2, 0, 0.8), (3, 1, 0.5), (4, 1, 0.4)]
    assert [(e["epoch"], e["step"], e["loss"]) for e in records(dead.run_dir, "epoch.jsonl")] == [
        (0, 2, 0.8), (1, 4, 0.85)]
    resumed = main_events(dead.run_dir, "resumed")
    assert [(e["step"], e["epoch"], e["message"]) for e in resumed] == [
        (2, 1, "resumed at epoch 1 (step 2) after a restart; the run was failed, 6 superseded record(s) dropped")]
    # The dead process's epoch 1 and its end (checkpoint and failed events, its layer table of phase 1) are superseded.
    assert resumed[0]["data"] == {"previous_status": "failed",
                                  "dropped": {"batch": 2, "epoch": 1, "events": 2, "layers": 1}}
    # The phase event of the fit() cut short stays; the restarted train_begin is stamped where the records ended.
    assert [(e["kind"], e["step"], e["epoch"]) for e in main_events(dead.run_dir)] == [
        ("train_begin", 0, 0), ("phase", 0, 0), ("checkpoint", 2, 0), ("train_begin", 4, 2), ("resumed", 2, 1),
        ("checkpoint", 4, 1), ("train_end", 4, 1)]
    assert [row["phase"] for row in records(dead.run_dir, "model/layers.jsonl")] == [1]
    done = status(dead.run_dir)
    assert (done["status"], done["phase"], done["step"], done["epoch"]) == ("finished", 1, 4, 1)


def test_a_resume_by_run_id_continues_the_phase_cut_short_and_keeps_its_records(tmp_path, capsys):
    dead = quiet(tmp_path, name="first", activation_freq=0)
    model = tiny()
    two_epochs(dead, model)
    begin(dead, model, {"epochs": 4, "steps": 2})
    epoch(dead, 2, EPOCH0, {"loss": 0.3})
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    restarted = quiet(tmp_path, name="another name", activation_freq=0, resume=os.path.basename(dead.run_dir))
    begin(restarted, model, {"epochs": 4, "steps": 2})
    epoch(restarted, 3, EPOCH0, {"loss": 0.3})
    restarted.on_train_end()
    resumed = main_events(dead.run_dir, "resumed")
    assert [(e["step"], e["epoch"], e["message"], e["data"]) for e in resumed] == [
        (6, 3, "resumed at epoch 3 (step 6) after a restart; the run was interrupted, 1 superseded record(s) dropped",
         {"previous_status": "interrupted", "dropped": {"layers": 1}})]  # the cut-short phase's layer table
    assert [b["step"] for b in records(dead.run_dir, "batch.jsonl")] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [(e["epoch"], e["phase"]) for e in records(dead.run_dir, "epoch.jsonl")] == [(0, 1), (1, 1), (2, 2), (3, 2)]
    assert [e["data"]["phase"] for e in main_events(dead.run_dir, "train_end")] == [1, 2]
    assert read_json(dead.run_dir, "run.json")["name"] == "first"
    done = status(dead.run_dir)
    assert (done["status"], done["phase"], done["step"]) == ("finished", 2, 8)


# -- more of what a custom loop may do ----------------------------------------------------------------------------


def test_hooks_without_params_record_steps_as_reported(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    live.set_model(tiny())
    live.on_train_begin()  # set_params never called: no epochs, no steps per epoch known
    live.on_epoch_begin(0)
    live.on_train_batch_end(5, logs={"loss": 1.0})
    live.on_epoch_end(0)  # no logs at all
    live.on_train_end()
    assert [(b["step"], b["batch"]) for b in records(live.run_dir, "batch.jsonl")] == [(6, 5)]
    assert [sorted(e) for e in records(live.run_dir, "epoch.jsonl")] == [["epoch", "lr", "phase", "step", "time"]]
    assert read_json(live.run_dir, "run.json")["fit_params"] == {}
    done = status(live.run_dir)
    assert (done["epochs"], done["steps_per_epoch"], done["step"]) == (None, None, 6)
    assert main_events(live.run_dir, "phase")[0]["message"] == "phase 1: epochs 0-None, 90 trainable parameters"


def test_an_error_in_a_batch_end_is_one_warning_and_strict_raises_it(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    begin(live, tiny())
    live.on_epoch_begin(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in range(2):  # a running mean that is text: the batch's own value cannot be derived
            live.on_train_batch_end(batch, logs={"loss": "high"})
    live.on_epoch_end(0, logs={"loss": 1.0})
    live.on_train_end()
    messages = [str(w.message) for w in caught if "LiveMonitor" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("LiveMonitor: on_train_batch_end failed: TypeError")
    warning_events = main_events(live.run_dir, "warning")
    assert len(warning_events) == 1 and warning_events[0]["step"] == 2  # counted before its record failed
    assert warning_events[0]["message"].startswith("on_train_batch_end failed: TypeError")
    assert [b["step"] for b in records(live.run_dir, "batch.jsonl")] == [1]
    strict = quiet(tmp_path, activation_freq=0, strict=True)
    begin(strict, tiny())
    strict.on_epoch_begin(0)
    strict.on_train_batch_end(0, logs={"loss": "high"})
    with pytest.raises(TypeError):
        strict.on_train_batch_end(1, logs={"loss": "high"})
    strict.on_train_end()


@pytest.mark.filterwarnings("ignore:LiveMonitor. could not write")
def test_a_strict_monitor_raises_when_the_epoch_cannot_be_written(tmp_path):
    live = quiet(tmp_path, activation_freq=0, strict=True)
    begin(live, tiny())
    epoch(live, 0, EPOCH0, {"loss": 0.8})
    shutil.rmtree(live.run_dir)  # the run directory is gone (a cleanup script, a full disk)
    live.on_epoch_begin(1)
    live.on_train_batch_end(0, logs={"loss": 0.5})
    with pytest.raises(OSError):
        live.on_epoch_end(1, logs={"loss": 0.5})
    live.on_train_end()
    assert not os.path.exists(live.run_dir)  # not written back half-empty


def test_a_loss_spike_is_a_divergence_event_by_the_factor_given(tmp_path):
    spiking = checkpoint_run(tmp_path / "spiking", [1.0, 1.5, 3.0], divergence_factor=2.0)
    diverged = main_events(spiking, "divergence")
    assert [(e["step"], e["epoch"], e["message"]) for e in diverged] == [
        (3, 2, "diverged: loss 3 is 3x its best 1 at step 3 (LR 0.001)")]
    assert {k: diverged[0]["data"][k] for k in ("metric", "rule", "value", "best", "lr")} == {
        "metric": "loss", "rule": "spike", "value": 3.0, "best": 1.0, "lr": LR}
    assert main_events(checkpoint_run(tmp_path / "default", [1.0, 1.5, 3.0]), "divergence") == []
    assert main_events(checkpoint_run(tmp_path / "off", [1.0, 1.5, 30.0], divergence_factor=None), "divergence") == []


def test_a_nan_loss_is_a_divergence_with_an_activation_snapshot(tmp_path):
    x, _ = data(samples=4)
    live = quiet(tmp_path, activation_data=x)
    begin(live, tiny(), {"epochs": 1, "steps": 2})
    epoch(live, 0, [{"loss": 1.0}, {"loss": math.nan}], {"loss": math.nan})
    live.on_train_end()
    diverged = main_events(live.run_dir, "divergence")
    assert [(e["step"], e["data"]["metric"], e["data"]["rule"]) for e in diverged] == [(2, "loss", "non-finite")]
    activations = records(live.run_dir, "activations.jsonl")
    assert [(a["step"], a["layer"], a.get("snapshot")) for a in activations] == [
        (2, "hidden", True), (2, "out", True), (2, "hidden", None), (2, "out", None)]


def test_a_divergence_in_the_last_batches_is_judged_at_train_end(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    begin(live, tiny(), {"epochs": 1, "steps": 2})
    live.on_epoch_begin(0)
    live.on_train_batch_end(0, logs={"loss": math.inf})
    live.on_train_end()  # the epoch never ended: an exception ended it, caught by the loop
    assert [(e["kind"], e["step"]) for e in main_events(live.run_dir)][-3:] == [
        ("nan", 1), ("divergence", 1), ("train_end", 1)]


def test_gradient_statistics_every_nth_batch(tmp_path):
    x, y = data(samples=4)
    live = quiet(tmp_path, activation_freq=0, gradient_data=(x, y), gradient_freq=2)
    begin(live, tiny(), {"epochs": 1, "steps": 4})
    epoch(live, 0, [{"loss": 1.0}] * 4, {"loss": 1.0})
    live.on_train_end()
    gradients = records(live.run_dir, "gradients.jsonl")
    # Taken at the batch begin after 2 updates, on the weights those updates left.
    assert [(g["step"], g["epoch"], g["layer"], g["weight"]) for g in gradients] == [
        (2, 0, "hidden", "kernel"), (2, 0, "hidden", "bias"), (2, 0, "out", "kernel"), (2, 0, "out", "bias")]


def test_directions_given_for_a_metric_decide_the_best_checkpoint(tmp_path):
    run_dir = checkpoint_run(tmp_path, [0.5, 0.7, 0.4], checkpoint="best", metric_directions={"loss": "max"})
    assert [(e["step"], e["data"]["value"]) for e in main_events(run_dir, "checkpoint")] == [(1, 1.5), (2, 1.7)]


def test_a_val_checkpoint_monitor_logged_every_other_epoch_is_no_skip(tmp_path):
    live = quiet(tmp_path, activation_freq=0, checkpoint="best")
    begin(live, tiny(), {"epochs": 2, "steps": 1})
    epoch(live, 0, [{"loss": 1.0}], {"loss": 1.0})  # validation_freq=2: no val_loss yet
    epoch(live, 1, [{"loss": 0.9}], {"loss": 0.9, "val_loss": 1.2})
    live.on_train_end()
    assert main_events(live.run_dir, "skipped") == []
    assert [(c["epoch"], c["value"]) for c in read_json(live.run_dir, "checkpoints/index.json")] == [(1, 1.2)]


def test_a_checkpoint_with_no_epoch_logs_says_none(tmp_path):
    live = quiet(tmp_path, activation_freq=0, checkpoint="last", monitor="loss")
    begin(live, tiny(), {"epochs": 1, "steps": 1})
    live.on_epoch_begin(0)
    live.on_epoch_end(0)
    live.on_train_end()
    assert [e["message"] for e in main_events(live.run_dir, "skipped")] == [
        "checkpoint='last' monitors 'loss', which is not in the epoch logs (none): pass monitor=... to LiveMonitor"]


def _a_python_call() -> None:
    """Python runs a pending signal's handler at its next function call."""


def test_ctrl_c_during_a_fit_that_the_loop_caught_reads_interrupted(tmp_path):
    # Python's own SIGINT handler, as a script starts with (a test runner may ignore SIGINT in its workers).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        live = quiet(tmp_path, activation_freq=0)
        model = tiny()
        begin(live, model)
        live.on_epoch_begin(0)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the monitor's handler notes the time, then raises as Python's does
            _a_python_call()
        begin(live, model)  # the next fit() begins: the one cut short by Ctrl-C was interrupted
        live.on_train_end()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    failed_or_interrupted = [(e["kind"], e["message"]) for e in main_events(live.run_dir)
                             if e["kind"] in ("failed", "interrupted")]
    assert failed_or_interrupted == [("interrupted", "KeyboardInterrupt: Ctrl-C (SIGINT) during fit()")]


@pytest.mark.parametrize("shell_error", [None, "before", "after"])
def test_a_fit_left_by_an_exception_nobody_holds_is_noticed_at_the_second_tick(tmp_path, monkeypatch, shell_error):
    live = quiet(tmp_path, activation_freq=0)
    model = tiny()

    def fit(callbacks: list[LiveMonitor]) -> None:
        begin(callbacks[0], model)
        raise ValueError("dropped by the caller")

    if shell_error == "before":  # an error the shell reported before this fit() began is not why it ended
        monkeypatch.setattr(sys, "last_value", RuntimeError("an older error"), raising=False)
    try:
        fit([live])
    except ValueError:
        pass  # the exception is let go
    if shell_error == "after":  # an interactive shell (python -i, IPython) keeps the last error it reported
        monkeypatch.setattr(sys, "last_value", RuntimeError("shown by the shell"), raising=False)
        live._tick()
        assert (status(live.run_dir)["status"], status(live.run_dir)["reason"]) == (
            "failed", "RuntimeError: shown by the shell")
        return
    live._tick()  # the exception may still be on its way to the caller: looked for again at the next tick
    assert status(live.run_dir)["status"] == "running"
    live._tick()
    ended = status(live.run_dir)
    assert (ended["status"], ended["reason"]) == (
        "failed", "fit() ended without reaching on_train_end: an exception left fit() and was caught by the caller")


def test_a_custom_loop_with_an_uncompiled_model_is_recorded_without_an_lr(tmp_path):
    """Keras's "training loop from scratch": the model is never compiled, a separate optimizer applies the updates."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, name="out")], name="uncompiled")
    live = quiet(tmp_path, activation_freq=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        begin(live, model, {"epochs": 1, "steps": 2})
        epoch(live, 0, EPOCH0, {"loss": 0.8})
        live.on_train_end()
    assert [str(w.message) for w in caught if "LiveMonitor" in str(w.message)] == []
    assert [(b["step"], "lr" in b) for b in records(live.run_dir, "batch.jsonl")] == [(1, False), (2, False)]
    assert read_json(live.run_dir, "run.json")["optimizer"] is None
    assert kinds(live.run_dir) == ["train_begin", "skipped", "phase", "train_end"]
    skipped = main_events(live.run_dir, "skipped")[0]
    assert (skipped["step"], skipped["data"]) == (0, {"what": "learning rate"})
    assert skipped["message"].startswith("no learning rate: the model has no optimizer (it was never compiled)")
    assert status(live.run_dir)["status"] == "finished"


class HalveAtBatchEnd(keras.callbacks.Callback):
    """A cyclic LR callback's move at a batch end, placed before the monitor in the callback list."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.optimizer.learning_rate.assign(float(self.model.optimizer.learning_rate.numpy()) / 2)


def test_an_lr_written_at_a_batch_end_applies_from_the_next_step(tmp_path):
    model = mlp()
    live = quiet(tmp_path, activation_freq=0)
    halve = HalveAtBatchEnd()
    halve.set_model(model)
    begin(live, model, {"epochs": 1, "steps": 3})
    live.on_epoch_begin(0)
    for batch in range(3):
        live.on_train_batch_begin(batch)
        halve.on_train_batch_end(batch)
        live.on_train_batch_end(batch, logs={"loss": 1.0})
    live.on_epoch_end(0, logs={"loss": 1.0})
    live.on_train_end()
    assert [b["lr"] for b in records(live.run_dir, "batch.jsonl")] == [LR, LR / 2, LR / 4]
    # Per-step changes are no events; the epoch end says where the LR got to.
    assert [e["message"] for e in main_events(live.run_dir, "lr_change")] == [
        "learning rate 0.001 -> 0.000125 (after epoch 0)"]


def test_a_divergence_snapshot_takes_activations_on_the_gradient_data(tmp_path):
    x, y = data(samples=4)
    live = quiet(tmp_path, activation_freq=0, gradient_data=(x, y), gradient_freq=0)
    begin(live, tiny(), {"epochs": 1, "steps": 2})
    live.on_epoch_begin(0)
    live.on_train_batch_begin(0)
    live.on_train_batch_end(0, logs={"loss": math.nan})
    live.on_train_batch_begin(1)  # the snapshot, before the next update
    live.on_train_batch_end(1, logs={"loss": math.nan})
    live.on_epoch_end(0, logs={"loss": math.nan})
    live.on_train_end()
    activations = records(live.run_dir, "activations.jsonl")
    assert [(a["step"], a["layer"], a["count"], a["snapshot"]) for a in activations] == [
        (1, "hidden", 4 * 8, True), (1, "out", 4 * 2, True)]
    gradients = records(live.run_dir, "gradients.jsonl")
    assert [(g["step"], g["layer"], g["weight"], g["snapshot"]) for g in gradients] == [
        (1, "hidden", "kernel", True), (1, "hidden", "bias", True),
        (1, "out", "kernel", True), (1, "out", "bias", True)]
    assert [(e["step"], e["data"]["metric"]) for e in main_events(live.run_dir, "divergence")] == [(1, "loss")]


def test_each_failing_step_of_an_epoch_end_is_its_own_warning_event(tmp_path):
    x, _ = data(samples=4)
    wrong_shape = x[:, :3]  # the probe fails on it: activation statistics, and the divergence snapshot's activations
    live = quiet(tmp_path / "epoch-end", activation_data=wrong_shape, checkpoint="last", monitor="loss")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        begin(live, tiny(), {"epochs": 1, "steps": 1})
        with open(os.path.join(live.run_dir, "checkpoints"), "w") as blocker:
            blocker.write("a file where the checkpoints folder goes")
        epoch(live, 0, [{"loss": math.nan}], {"loss": math.nan})
        live.on_train_end()
        at_train_end = quiet(tmp_path / "train-end", activation_data=wrong_shape)
        begin(at_train_end, tiny(), {"epochs": 1, "steps": 2})
        at_train_end.on_epoch_begin(0)
        at_train_end.on_train_batch_end(0, logs={"loss": math.nan})
        at_train_end.on_train_end()
    assert len([w for w in caught if "LiveMonitor" in str(w.message)]) == 2  # one per run
    assert [(e["step"], e["message"].split(":")[0]) for e in main_events(live.run_dir, "warning")] == [
        (1, "divergence snapshot failed"), (1, "activation statistics failed"), (1, "checkpoint failed")]
    assert [e["message"].split(":")[0] for e in main_events(at_train_end.run_dir, "warning")] == [
        "divergence snapshot failed"]
    assert (status(live.run_dir)["status"], status(at_train_end.run_dir)["status"]) == ("finished", "finished")


def test_a_train_begin_without_a_model_is_one_warning_and_writes_nothing(tmp_path):
    live = quiet(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        live.on_train_begin()  # the loop forgot set_model()
        live.on_epoch_begin(0)
        live.on_train_end()
    messages = [str(w.message) for w in caught if "LiveMonitor" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("LiveMonitor: on_train_begin failed: AttributeError")
    assert live.run_dir is None and os.listdir(tmp_path) == []


def test_gradient_data_the_model_cannot_take_is_one_warning_at_the_first_due_batch(tmp_path):
    x, y = data(samples=4)
    live = quiet(tmp_path, activation_freq=0, gradient_data=(x[:, :3], y), gradient_freq=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        begin(live, tiny(), {"epochs": 1, "steps": 3})
        epoch(live, 0, [{"loss": 1.0}] * 3, {"loss": 1.0})
        live.on_train_end()
    assert len([w for w in caught if "LiveMonitor" in str(w.message)]) == 1
    assert [(e["step"], e["message"].split(":")[0]) for e in main_events(live.run_dir, "warning")] == [
        (1, "gradient statistics failed")]
    assert records(live.run_dir, "gradients.jsonl") == []


def test_system_samples_are_appended_while_the_fit_runs(tmp_path):
    live = quiet(tmp_path, activation_freq=0, system_freq=0.01, flush_interval=0.02)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        begin(live, tiny())
        # The sampler thread appends every 10 ms and the writer every 20 ms: wait for the first line to arrive.
        deadline = time.monotonic() + 30
        while not records(live.run_dir, "system.jsonl") and time.monotonic() < deadline:
            time.sleep(0.01)
        live.on_train_end()
    samples = records(live.run_dir, "system.jsonl")
    assert samples and {"time", "cpu_percent", "rss_bytes"} <= set(samples[0])
    assert [str(w.message) for w in caught if "LiveMonitor" in str(w.message)] == []
    assert status(live.run_dir)["status"] == "finished"  # the sampler's liveness ticks left a hand-driven fit alone


def test_a_held_batch_end_that_fails_at_the_epoch_end_is_one_warning(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    begin(live, tiny(), {"epochs": 1, "steps": 4})
    live.on_epoch_begin(0)
    for batch in range(4):
        live.on_train_batch_begin(batch)
    live.on_train_batch_end(0, logs={"loss": 1.0})
    live.on_train_batch_end(2, logs={"loss": 1.0})  # held, like the next one: batch 1's end never comes
    live.on_train_batch_end(3, logs={"loss": "high"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        live.on_epoch_end(0, logs={"loss": 1.0})  # released here; batch 3's own value cannot be derived
    live.on_train_end()
    assert len([w for w in caught if "LiveMonitor" in str(w.message)]) == 1
    assert [(e["step"], e["message"].split(":")[0]) for e in main_events(live.run_dir, "warning")] == [
        (4, "on_train_batch_end failed")]
    assert [b["step"] for b in records(live.run_dir, "batch.jsonl")] == [1, 3]


def test_defaults_of_what_run_json_does_not_record():
    live = LiveMonitor()
    assert (live.logdir, live.name, live.hparams, live.tags, live.notes) == ("runs", None, {}, [], "")
    assert (live.activation_data, live.gradient_data, live.run_dir) == (None, None, None)


def test_a_run_id_that_cannot_be_resumed_starts_a_new_run_or_raises_when_strict(tmp_path):
    live = quiet(tmp_path, activation_freq=0, resume="20260101-000000-gone-0000")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        begin(live, tiny())
        live.on_train_end()
    messages = [str(w.message) for w in caught if "LiveMonitor" in str(w.message)]
    assert messages == [f"LiveMonitor: no run '20260101-000000-gone-0000' under {str(tmp_path)!r} to resume; "
                        "a new run is started"]
    assert os.listdir(tmp_path) == [os.path.basename(live.run_dir)] and main_events(live.run_dir, "resumed") == []
    strict = quiet(tmp_path, activation_freq=0, resume="20260101-000000-gone-0000", strict=True)
    strict.set_model(tiny())
    with pytest.raises(ValueError, match="no run '20260101-000000-gone-0000'"):
        strict.on_train_begin()


def test_a_checkpoint_monitor_of_a_higher_is_better_metric_keeps_its_highest_value(tmp_path):
    live = quiet(tmp_path, activation_freq=0, checkpoint="best", monitor="accuracy")
    begin(live, tiny(), {"epochs": 3, "steps": 1})
    for index, accuracy in enumerate([0.5, 0.7, 0.6]):
        epoch(live, index, [{"loss": 1.0, "accuracy": accuracy}], {"loss": 1.0, "accuracy": accuracy})
    live.on_train_end()
    assert [(e["step"], e["data"]["value"]) for e in main_events(live.run_dir, "checkpoint")] == [(1, 0.5), (2, 0.7)]


def test_a_stop_request_that_is_not_a_truth_value_is_a_warning_at_each_hook(tmp_path):
    live = quiet(tmp_path, activation_freq=0)
    model = tiny()
    begin(live, model, {"epochs": 1, "steps": 1})
    model.stop_training = np.array([True, False])  # a callback's mistake: an array has no single truth value
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epoch(live, 0, [{"loss": 1.0}], {"loss": 1.0})
        live.on_train_end()
    assert len([w for w in caught if "LiveMonitor" in str(w.message)]) == 1
    assert [(e["kind"], e["message"].split(":")[0]) for e in main_events(live.run_dir)][-2:] == [
        ("warning", "on_epoch_end failed"), ("warning", "on_train_end failed")]
    assert status(live.run_dir)["status"] == "finished"
