"""Events (early stop, NaN), checkpoints, and how LiveMonitor behaves when things go wrong."""

from __future__ import annotations

import json
import os
import time
import warnings

import keras
import numpy as np
import pytest
from train_helpers import BATCH, data, events, mlp, open_run, read_json, records

from kerascope import LiveMonitor


def test_early_stopping_is_an_event(runs_root):
    x, y = data()
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0)
    # No epoch after the first improves by 100: EarlyStopping (after the monitor in the list) stops after epoch 1.
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=100.0)
    mlp().fit(x, y, epochs=10, batch_size=BATCH, verbose=0, callbacks=[live_monitor, stopper])
    stops = events(live_monitor.run_dir, "early_stop")
    assert len(stops) == 1 and stops[0]["data"]["epoch"] == 1
    assert events(live_monitor.run_dir, "train_end")[0]["data"]["epochs_done"] == 2
    assert read_json(live_monitor.run_dir, "status.json")["status"] == "finished"


def test_nan_loss_is_flagged_once_per_metric(runs_root):
    x, _ = data()
    y = np.full((len(x), 1), np.nan, dtype="float32")
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    live_monitor = LiveMonitor(str(runs_root), system_freq=0)
    model.fit(x, y, validation_data=(x[:32], y[:32]), epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
    flagged = [(e["data"]["metric"], e["step"]) for e in events(live_monitor.run_dir, "nan")]
    assert flagged == [("loss", 1), ("val_loss", 4)]
    batches = records(live_monitor.run_dir, "batch.jsonl")
    assert len(batches) == 8 and all(np.isnan(b["loss"]) for b in batches)
    assert open_run(live_monitor.run_dir).batch_metrics()["loss"].isna().all()


@pytest.mark.parametrize("policy", ["best", "last", "all"])
def test_checkpoints_are_indexed_and_loadable(runs_root, policy):
    x, y = data()
    model = mlp(keras.optimizers.Adam(0.05))
    live_monitor = LiveMonitor(str(runs_root), checkpoint=policy, weight_freq=0, system_freq=0)
    model.fit(x, y, validation_data=(x[:32], y[:32]), epochs=3, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
    val_losses = [e["val_loss"] for e in records(live_monitor.run_dir, "epoch.jsonl")]
    best_epoch = int(np.argmin(val_losses))
    index = read_json(live_monitor.run_dir, "checkpoints/index.json")
    for entry in index:
        path = os.path.join(live_monitor.run_dir, entry["path"])
        assert entry["bytes"] == os.path.getsize(path) and entry["monitor"] == "val_loss"
        assert entry["value"] == pytest.approx(val_losses[entry["epoch"]]) and entry["step"] == 4 * (entry["epoch"] + 1)
    checkpoint_dir = os.path.join(live_monitor.run_dir, "checkpoints")
    assert not [name for name in os.listdir(checkpoint_dir) if name.startswith(".tmp")]
    if policy == "best":
        assert [(e["path"], e["epoch"], e["is_best"]) for e in index] == [("checkpoints/best.keras", best_epoch, True)]
    elif policy == "last":
        assert [(e["path"], e["epoch"]) for e in index] == [("checkpoints/last.keras", 2)]
        last = keras.saving.load_model(os.path.join(live_monitor.run_dir, "checkpoints/last.keras"))
        for restored_weight, trained_weight in zip(last.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(restored_weight, trained_weight)
        return
    else:
        assert [e["path"] for e in index] == [f"checkpoints/epoch-000{i}.keras" for i in (1, 2, 3)]
        assert [e["is_best"] for e in index] == [i == best_epoch for i in range(3)]
    best = next(e for e in index if e["is_best"])
    restored = keras.saving.load_model(os.path.join(live_monitor.run_dir, best["path"]))
    evaluated = restored.evaluate(x[:32], y[:32], verbose=0, return_dict=True)["loss"]
    assert evaluated == pytest.approx(val_losses[best_epoch], rel=1e-4)
    improvements = sum(1 for i in range(3) if val_losses[i] < min(val_losses[:i], default=np.inf))
    saves = 3 if policy == "all" else improvements
    assert len(events(live_monitor.run_dir, "checkpoint")) == saves


def unwritable_root(tmp_path) -> str:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the runs root should be")
    return str(blocker / "runs")


def test_unwritable_log_dir_warns_once_and_training_completes(tmp_path):
    x, y = data()
    live_monitor = LiveMonitor(unwritable_root(tmp_path))
    with pytest.warns(RuntimeWarning, match="cannot write a run") as caught:
        history = mlp().fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
    assert len([w for w in caught if "LiveMonitor" in str(w.message)]) == 1
    assert len(history.history["loss"]) == 2 and live_monitor.run_dir is None


def test_strict_raises_on_an_unwritable_log_dir(tmp_path):
    x, y = data()
    with pytest.raises(OSError):
        mlp().fit(
            x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[LiveMonitor(unwritable_root(tmp_path), strict=True)]
        )


def test_an_error_inside_the_callback_is_one_warning_and_an_event(runs_root):
    x, y = data()
    wrong_shape = x[:16, :3]  # the model takes 8 features: the activation probe fails every epoch
    live_monitor = LiveMonitor(str(runs_root), activation_data=wrong_shape, system_freq=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = mlp().fit(x, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
    assert len([w for w in caught if "LiveMonitor" in str(w.message)]) == 1
    assert len(history.history["loss"]) == 3
    warning_events = events(live_monitor.run_dir, "warning")
    assert len(warning_events) == 1
    assert warning_events[0]["message"].startswith("activation statistics failed: ValueError")
    assert len(records(live_monitor.run_dir, "batch.jsonl")) == 12
    assert read_json(live_monitor.run_dir, "status.json")["status"] == "finished"
    with pytest.raises(ValueError):
        mlp().fit(
            x,
            y,
            epochs=1,
            batch_size=BATCH,
            verbose=0,
            callbacks=[LiveMonitor(str(runs_root), activation_data=wrong_shape, strict=True)],
        )


class FailAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int, error: BaseException) -> None:
        super().__init__()
        self.epoch, self.error = epoch, error

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise self.error


def wait_for_status(run_dir: str, status: str, limit_s: float = 60.0) -> dict:
    """Poll status.json until it reads `status` (the monitor notices within a few system ticks)."""
    deadline = time.monotonic() + limit_s
    while True:
        with open(os.path.join(run_dir, "status.json"), encoding="utf-8") as f:
            info = json.load(f)
        if info["status"] == status or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def test_fit_raising_to_a_caller_that_catches_it_marks_the_run_failed(runs_root):
    x, y = data()
    model = mlp()
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0.2)
    with pytest.raises(ValueError, match="boom") as caught:
        model.fit(x, y, epochs=5, batch_size=BATCH, verbose=0,
                  callbacks=[live_monitor, FailAtEpoch(1, ValueError("boom"))])
    info = wait_for_status(live_monitor.run_dir, "failed")
    # The caller still holds the exception (pytest's ExceptionInfo): its type and message are the reason.
    assert info["status"] == "failed" and info["reason"] == "ValueError: boom"
    assert caught.value.args == ("boom",)
    assert [e["kind"] for e in events(live_monitor.run_dir)][-1] == "failed"
    # The same monitor continues the run in the next fit() call.
    model.fit(x, y, epochs=3, initial_epoch=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
    info = read_json(live_monitor.run_dir, "status.json")
    assert info["status"] == "finished" and info["phase"] == 2 and "reason" not in info
    assert [b["step"] for b in records(live_monitor.run_dir, "batch.jsonl")] == list(range(1, 13))


def test_best_checkpoint_on_a_val_metric_with_validation_freq(runs_root):
    """validation_freq=2: epochs without validation are no reason for a "not in the epoch logs" event."""
    x, y = data()
    live_monitor = LiveMonitor(str(runs_root), checkpoint="best", monitor="val_loss", weight_freq=0, system_freq=0)
    history = mlp().fit(
        x, y, validation_split=0.25, validation_freq=2, epochs=4, batch_size=BATCH, verbose=0, callbacks=[live_monitor]
    )
    assert len(history.history["val_loss"]) == 2
    assert [e for e in events(live_monitor.run_dir, "skipped") if e["data"]["what"] == "checkpoint"] == []
    saved = read_json(live_monitor.run_dir, "checkpoints/index.json")
    assert saved and {c["epoch"] for c in saved} <= {1, 3}


def test_best_checkpoint_on_a_val_metric_never_logged_says_so(runs_root):
    x, y = data()
    live_monitor = LiveMonitor(str(runs_root), checkpoint="best", monitor="val_loss", weight_freq=0, system_freq=0)
    mlp().fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
    skipped = [e for e in events(live_monitor.run_dir, "skipped") if e["data"]["what"] == "checkpoint"]
    assert len(skipped) == 1 and "pass monitor=" in skipped[0]["message"]
