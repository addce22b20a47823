"""The keras.io corpus (tests/keras_io_corpus/): what RunStore reads back equals what Keras handed to callbacks and
what `history.history` holds, for each script, on the backend of the test process (TensorFlow in `make test`, JAX
and PyTorch in `make test-backends`)."""

from __future__ import annotations

import importlib
import math
import pkgutil

import keras
import keras_io_corpus
import pytest
from keras_io_corpus import Spy

from kerascope import RunStore

SCRIPTS = sorted(module.name for module in pkgutil.iter_modules(keras_io_corpus.__path__))
BACKEND = keras.backend.backend()
# Scripts that cannot run on a backend, with the reason (Keras's limitation, not the monitor's).
UNSUPPORTED: dict[tuple[str, str], str] = {}


def test_the_corpus_has_at_least_15_scripts():
    assert len(SCRIPTS) >= 15


def same(recorded, expected) -> bool:
    """A recorded number equals the one Keras logged (JSON keeps a float exactly; NaN equals NaN)."""
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(recorded, float) and math.isnan(recorded)
    return recorded == pytest.approx(expected, rel=1e-6, abs=1e-12)


def numbers(logs: dict) -> dict:
    return {key: float(value) for key, value in logs.items() if isinstance(value, (int, float))}


@pytest.mark.parametrize("script", SCRIPTS)
def test_recorded_equals_what_keras_reported(script, tmp_path):
    if (script, BACKEND) in UNSUPPORTED:
        pytest.xfail(UNSUPPORTED[(script, BACKEND)])
    logdir = str(tmp_path / "runs")
    spy = Spy()
    histories = importlib.import_module(f"keras_io_corpus.{script}").train(logdir, spy)
    runs = sorted(RunStore(logdir).runs(), key=lambda run: run.created)
    assert spy.fits and runs
    if histories:  # one LiveMonitor: one run, every fit() a phase of it
        assert len(runs) == 1 and len(histories) == len(spy.fits)
        assignment = [(runs[0], spy.fits)]
    else:  # a KerasTuner search: one run per trial
        assert len(runs) == len(spy.fits) and len({run.group for run in runs}) == 1
        assignment = [(run, [fit]) for run, fit in zip(runs, spy.fits, strict=True)]
    for run, fits in assignment:
        assert run.status == "finished", run.reason
        check_epochs(run, fits)
        check_batches(run, fits)
    if histories:
        check_history(runs[0], histories)


def check_epochs(run, fits) -> None:
    frame = run.epoch_metrics()
    expected = [(epoch, numbers(logs)) for fit in fits for epoch, logs in fit["epochs"]]
    assert [int(e) for e in frame["epoch"]] == [epoch for epoch, _ in expected]
    for row, (_, logs) in zip(frame.to_dict("records"), expected, strict=True):
        for key, value in logs.items():
            # LR callbacks add `learning_rate` (the epoch's LR) to the logs after an earlier callback saw them: the
            # run's own `lr` holds that value.
            recorded = row["lr"] if key == "learning_rate" and key not in row else row[key]
            assert same(recorded, value), (key, recorded, value)


def check_batches(run, fits) -> None:
    frame = run.batch_metrics()
    expected = [(epoch, batch, numbers(logs)) for fit in fits for epoch, batch, logs in fit["batches"]]
    assert [int(s) for s in frame["step"]] == list(range(1, len(expected) + 1))
    positions = zip(frame["epoch"], frame["batch"], strict=True)
    assert [(int(e), int(b)) for e, b in positions] == [(e, b) for e, b, _ in expected]
    rows = frame.to_dict("records")
    for row, (_, _, logs) in zip(rows, expected, strict=True):
        for key, value in logs.items():
            assert same(row[key], value), (key, row[key], value)
    # The LR of each step, as the optimizer held it just before the update (the spy runs last at batch begin).
    lrs = [lr for fit in fits for lr in fit["lr"]]
    assert "lr" in frame
    assert [row["lr"] for row in rows] == pytest.approx(lrs, rel=1e-5)


def check_history(run, histories) -> None:
    frame = run.epoch_metrics()
    start = 0
    for history in histories:
        epochs = len(history.epoch)
        assert [int(e) for e in frame["epoch"][start : start + epochs]] == history.epoch
        for key, values in history.history.items():
            if key == "learning_rate":
                continue  # logged by LR callbacks into the logs; compared with the spy above
            recorded = list(frame[key][start : start + epochs])
            assert all(same(r, v) for r, v in zip(recorded, values, strict=True)), (key, recorded, values)
        start += epochs
    assert start == len(frame)

