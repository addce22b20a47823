"""The per-batch and per-epoch learning rate is right for every source that can set it.

The oracle is the optimizer itself: `LearningRateRecorder` reads `optimizer.learning_rate` just before each update
(schedules evaluate at the iteration about to run); closed forms double-check the schedules.
"""

from __future__ import annotations

import keras
import pytest
from train_helpers import BATCH, LearningRateRecorder, data, events, mlp, records

from kerascope import LiveMonitor

EPOCHS = 4
STEPS = EPOCHS * 4


def exponential() -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5))


def piecewise() -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(keras.optimizers.schedules.PiecewiseConstantDecay([4, 9], [0.1, 0.05, 0.01]))


def loss_scaled() -> keras.optimizers.Optimizer:
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    return keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(schedule))


def exponential_at(iteration: int) -> float:
    return 0.1 * 0.5 ** (iteration / 3)


def piecewise_at(iteration: int) -> float:
    return 0.1 if iteration <= 4 else 0.05 if iteration <= 9 else 0.01


def scheduler() -> keras.callbacks.Callback:
    return keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))


def plateau() -> keras.callbacks.Callback:
    # min_delta larger than any loss change: no epoch counts as an improvement after the first, so the LR halves
    # at the end of every later epoch.
    return keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=100.0, min_lr=1e-6)


CASES = {
    "float": (lambda: keras.optimizers.SGD(0.05), None, lambda i: 0.05),
    "exponential_decay": (exponential, None, exponential_at),
    "piecewise_constant": (piecewise, None, piecewise_at),
    "loss_scale_optimizer": (loss_scaled, None, exponential_at),
    "lr_scheduler": (lambda: keras.optimizers.SGD(0.5), scheduler, lambda i: 0.1 / (i // 4 + 1)),
    "reduce_on_plateau": (lambda: keras.optimizers.SGD(0.1), plateau, lambda i: 0.1 * 0.5 ** max(0, i // 4 - 1)),
}


# Callback order matters only for the callbacks that change the LR: the monitor must see the change either way.
PARAMS = [(case, True) for case in CASES] + [("lr_scheduler", False), ("reduce_on_plateau", False)]


@pytest.mark.parametrize(("case", "monitor_first"), PARAMS, ids=[f"{c}-{'first' if f else 'last'}" for c, f in PARAMS])
def test_per_batch_lr_matches_the_optimizer(runs_root, case, monitor_first):
    make_optimizer, make_callback, expected_at = CASES[case]
    x, y = data()
    live_monitor = LiveMonitor(str(runs_root), weight_freq=0, system_freq=0)
    oracle = LearningRateRecorder()
    others = [make_callback()] if make_callback else []
    callbacks = [live_monitor, *others, oracle] if monitor_first else [*others, live_monitor, oracle]
    mlp(make_optimizer()).fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=callbacks)

    batches = records(live_monitor.run_dir, "batch.jsonl")
    assert [b["step"] for b in batches] == list(range(1, STEPS + 1))
    recorded = [b["lr"] for b in batches]
    assert recorded == pytest.approx(oracle.values, rel=1e-5)
    assert recorded == pytest.approx([expected_at(i) for i in range(STEPS)], rel=1e-5)
    epochs = records(live_monitor.run_dir, "epoch.jsonl")
    # The epoch's LR is the one its last update used.
    assert [e["lr"] for e in epochs] == pytest.approx([expected_at(4 * e + 3) for e in range(EPOCHS)], rel=1e-5)

    changes = [value for e in events(live_monitor.run_dir, "lr_change")
               for value in (e["data"]["old"], e["data"]["new"])]
    if case in ("lr_scheduler", "reduce_on_plateau"):
        per_epoch = [expected_at(4 * e) for e in range(EPOCHS)]
        expected = [(a, b) for a, b in zip(per_epoch, per_epoch[1:], strict=False) if a != b]
        if case == "lr_scheduler":
            expected.insert(0, (0.5, 0.1))  # the scheduler replaces the compiled LR before the first batch
        else:
            expected.append((per_epoch[-1], per_epoch[-1] / 2))  # reduced after the last epoch too
        assert changes == pytest.approx([value for pair in expected for value in pair], rel=1e-5)
    else:
        assert changes == []  # a schedule's smooth decay is not an event
