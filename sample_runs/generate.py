"""Recreate the shipped sample runs: `python -m sample_runs.generate [--logdir sample_runs] [--only NAME ...]`.

Each run is real Keras training on scikit-learn's digits, recorded by LiveMonitor, and shows one technique so that
the Compare page tells a story: baseline, BatchNormalization, step decay, exponential decay, augmentation, early
stopping with ReduceLROnPlateau, fine-tuning in three phases, a diverging LR, a compressed model; plus one run
interrupted (SIGINT) and one failed (the data pipeline raises) mid-training.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerascope import LiveMonitor  # noqa: E402
from sample_runs.digits import compile_for_classification, digits_split, feature_base, small_cnn, with_head  # noqa: E402

EPOCHS = 20
BATCH = 32
SEED = 7
SAMPLES_DIR = os.path.dirname(os.path.abspath(__file__))
# `--fast` (inherited by the child process of the failing run): the same recipes on a slice of the data, so that the
# tests can check what LiveMonitor writes today rather than the committed files.
FAST_ENV = "KERASCOPE_SAMPLES_FAST"
FAST_TRAIN, FAST_VAL = 320, 96

FAST = os.environ.get(FAST_ENV) == "1"
FINE_TUNING_PHASE_ENDS = (2, 4, 6) if FAST else (8, 14, 20)  # the epochs each fit() of the fine-tuning run ends at
if FAST:
    EPOCHS = 6  # still past the step decay's first step (epoch 5) and the interrupt (epoch 4)

x_train, y_train, x_val, y_val = digits_split(seed=0)
if FAST:
    x_train, y_train, x_val, y_val = x_train[:FAST_TRAIN], y_train[:FAST_TRAIN], x_val[:FAST_VAL], y_val[:FAST_VAL]
probe = x_val[:256]


def steps_per_epoch() -> int:
    return -(-len(x_train) // BATCH)


def live_monitor(logdir: str, name: str, hparams: dict, tags: list[str], notes: str, **options) -> LiveMonitor:
    options.setdefault("checkpoint", "best")
    return LiveMonitor(logdir, name=name, hparams=hparams, tags=tags, notes=notes, activation_data=probe, **options)


def fit(model: keras.Model, live: LiveMonitor, epochs: int = EPOCHS, callbacks: tuple = (), **kwargs) -> None:
    model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=kwargs.pop("batch_size", BATCH),
              callbacks=[live, *callbacks], verbose=0, **kwargs)


def baseline(logdir: str) -> None:
    model = compile_for_classification(small_cnn(), keras.optimizers.Adam(1e-3))
    fit(model, live_monitor(logdir, "01 baseline CNN", {"lr": 1e-3, "batch_norm": False, "schedule": "constant"},
                       ["baseline"], "Two conv blocks, Adam 1e-3: the reference every other run changes one thing of."))


def batch_norm(logdir: str) -> None:
    model = compile_for_classification(small_cnn(batch_norm=True), keras.optimizers.Adam(1e-3))
    fit(model, live_monitor(logdir, "02 batch normalization", {"lr": 1e-3, "batch_norm": True, "schedule": "constant"},
                       ["batchnorm"], "BatchNormalization after each convolution (conv without bias)."))


def step_decay(logdir: str) -> None:
    def halve_every_5(epoch: int, lr: float) -> float:
        return 3e-3 * 0.5 ** (epoch // 5)

    model = compile_for_classification(small_cnn(), keras.optimizers.Adam(3e-3))
    fit(model, live_monitor(logdir, "03 step decay (LearningRateScheduler)",
                       {"lr": 3e-3, "batch_norm": False, "schedule": "step: x0.5 every 5 epochs"},
                       ["lr-schedule"], "LearningRateScheduler halves the LR every 5 epochs: steps in the LR chart."),
        callbacks=(keras.callbacks.LearningRateScheduler(halve_every_5),))


def exponential_decay(logdir: str) -> None:
    schedule = keras.optimizers.schedules.ExponentialDecay(3e-3, decay_steps=100, decay_rate=0.8)
    model = compile_for_classification(small_cnn(), keras.optimizers.Adam(schedule))
    fit(model, live_monitor(logdir, "04 exponential decay", {"lr": 3e-3, "batch_norm": False,
                                                      "schedule": "ExponentialDecay(100 steps, 0.8)"},
                       ["lr-schedule"], "An ExponentialDecay schedule: the LR falls smoothly at every batch."))


def augmentation(logdir: str) -> None:
    model = compile_for_classification(small_cnn(augmentation=True), keras.optimizers.Adam(1e-3))
    fit(model, live_monitor(logdir, "05 data augmentation", {"lr": 1e-3, "batch_norm": False, "schedule": "constant",
                                                      "augmentation": "rotate 0.05, translate 0.1, zoom 0.1"},
                       ["augmentation"], "RandomRotation, RandomTranslation and RandomZoom layers in the model."))


def early_stopping(logdir: str) -> None:
    model = compile_for_classification(small_cnn(), keras.optimizers.Adam(3e-3))
    callbacks = (
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=2, min_lr=1e-5),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True),
    )
    fit(model, live_monitor(logdir, "06 early stopping + ReduceLROnPlateau",
                       {"lr": 3e-3, "batch_norm": False, "schedule": "ReduceLROnPlateau(0.3, patience 2)"},
                       ["early-stopping", "lr-schedule"], "Stops once val_loss has not improved for 4 epochs."),
        epochs=80, callbacks=callbacks)


def fine_tuning(logdir: str) -> None:
    live = live_monitor(logdir, "07 fine-tuning in three phases", {"lr": 3e-3, "fine_tune_lr": 1e-4, "schedule": "phases"},
                  ["fine-tuning"], "Pretrain on digits 0-4; new head on 5-9 with the base frozen; unfreeze at 1e-4.")
    first, second = y_train < 5, y_train >= 5
    val_first, val_second = y_val < 5, y_val >= 5
    pretrained, transferred, tuned = FINE_TUNING_PHASE_ENDS
    base = feature_base()
    pretrain = compile_for_classification(with_head(base, 5, "pretrain"), keras.optimizers.Adam(3e-3))
    pretrain.fit(x_train[first], y_train[first], validation_data=(x_val[val_first], y_val[val_first]),
                 epochs=pretrained, batch_size=BATCH, callbacks=[live], verbose=0)
    base.trainable = False
    transfer = compile_for_classification(with_head(base, 5, "transfer"), keras.optimizers.Adam(3e-3))
    transfer.fit(x_train[second], y_train[second] - 5, validation_data=(x_val[val_second], y_val[val_second] - 5),
                 epochs=transferred, initial_epoch=pretrained, batch_size=BATCH, callbacks=[live], verbose=0)
    base.trainable = True
    compile_for_classification(transfer, keras.optimizers.Adam(1e-4))
    transfer.fit(x_train[second], y_train[second] - 5, validation_data=(x_val[val_second], y_val[val_second] - 5),
                 epochs=tuned, initial_epoch=transferred, batch_size=BATCH, callbacks=[live], verbose=0)


def divergent(logdir: str) -> None:
    def warm_then_typo(epoch: int, lr: float) -> float:
        return 0.05 if epoch < 3 else 5e4  # meant 5e-4: the classic exponent typo

    model = compile_for_classification(small_cnn(), keras.optimizers.SGD(learning_rate=0.05, momentum=0.9))
    fit(model, live_monitor(logdir, "08 learning rate too high", {"lr": "0.05, then 5e4 from epoch 3", "batch_norm": False,
                                                            "schedule": "LearningRateScheduler"},
                       ["divergence", "lr-schedule"],
                       "A schedule typo (5e4 for 5e-4) at epoch 3: the loss turns NaN and TerminateOnNaN stops the run.",
                       # Gradients at every batch (a short run): the heatmap shows which layer blew up, and when.
                       gradient_data=(x_val[:64], y_val[:64]), gradient_freq=1),
        callbacks=(keras.callbacks.LearningRateScheduler(warm_then_typo), keras.callbacks.TerminateOnNaN()))


def compressed(logdir: str) -> None:
    model = compile_for_classification(small_cnn(filters=(4, 8), dense=16, name="tiny_cnn"),
                                       keras.optimizers.Adam(3e-3))
    fit(model, live_monitor(logdir, "09 compressed model", {"lr": 3e-3, "batch_norm": False, "schedule": "constant",
                                                     "filters": "4-8", "dense": 16},
                       ["compression"], "About 20x fewer parameters than the baseline: how much accuracy is lost?"))


class InterruptAt(keras.callbacks.Callback):
    """Sends this process a real SIGINT (as Ctrl-C does) at a given epoch and batch."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def interrupted(logdir: str) -> None:
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started as a background job: let the Ctrl-C land
        signal.signal(signal.SIGINT, signal.default_int_handler)
    model = compile_for_classification(small_cnn(), keras.optimizers.Adam(1e-3))
    try:
        fit(model, live_monitor(logdir, "10 interrupted with Ctrl-C", {"lr": 1e-3, "batch_norm": False,
                                                                "schedule": "constant"},
                           ["interrupted"], "A real SIGINT in epoch 4, as when you press Ctrl-C."),
            callbacks=(InterruptAt(epoch=4, batch=min(10, steps_per_epoch() - 2)),))
    except KeyboardInterrupt:
        pass


class FlakyDigits(keras.utils.PyDataset):
    """Batches of the training set whose reader fails at a given global batch, like a corrupt shard."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at, self.served = fail_at, 0

    def __len__(self) -> int:
        return steps_per_epoch()

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        self.served += 1
        if self.served > self.fail_at:
            raise OSError("shard digits-0003 is corrupt: unexpected end of data")
        return x_train[index * BATCH : (index + 1) * BATCH], y_train[index * BATCH : (index + 1) * BATCH]


def crash_in_the_pipeline(logdir: str) -> None:
    """A training script whose input pipeline raises: nothing catches it, the process dies with a traceback."""
    keras.utils.set_random_seed(SEED)
    model = compile_for_classification(small_cnn(), keras.optimizers.Adam(1e-3))
    live = live_monitor(logdir, "11 failed: data pipeline error", {"lr": 1e-3, "batch_norm": False, "schedule": "constant"},
                  ["failed"], "The input pipeline raises in epoch 3; the run records why it failed.")
    fail_at = 3 * steps_per_epoch() + min(20, steps_per_epoch() // 2)  # in epoch 3
    model.fit(FlakyDigits(fail_at=fail_at), validation_data=(x_val, y_val), epochs=EPOCHS, callbacks=[live], verbose=0)


def failed(logdir: str) -> None:
    # In a child process, so that the exception really ends a training script, as it would for a user.
    script = f"from sample_runs.generate import crash_in_the_pipeline; crash_in_the_pipeline({logdir!r})"
    child = subprocess.run([sys.executable, "-c", script], cwd=os.path.dirname(SAMPLES_DIR), capture_output=True, text=True)
    if child.returncode == 0 or "corrupt" not in child.stderr:
        raise RuntimeError(f"the failing run did not fail as planned:\n{child.stderr[-2000:]}")


RECIPES: dict[str, Callable[[str], None]] = {
    "baseline": baseline,
    "batch_norm": batch_norm,
    "step_decay": step_decay,
    "exponential_decay": exponential_decay,
    "augmentation": augmentation,
    "early_stopping": early_stopping,
    "fine_tuning": fine_tuning,
    "divergent": divergent,
    "compressed": compressed,
    "interrupted": interrupted,
    "failed": failed,
}


def clear_runs(logdir: str) -> None:
    """Remove earlier run directories (those holding a run.json), never anything else."""
    for entry in os.scandir(logdir):
        if entry.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(entry.path, "run.json")):
            shutil.rmtree(entry.path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default=SAMPLES_DIR, help="runs folder to write into (default: this folder)")
    parser.add_argument("--only", nargs="*", choices=sorted(RECIPES), help="generate only these runs")
    parser.add_argument("--fast", action="store_true",
                        help=f"a slice of the data ({FAST_TRAIN} training images): the tests' fresh runs, in seconds")
    args = parser.parse_args(argv)
    if args.fast and os.environ.get(FAST_ENV) != "1":  # the data is sliced at import: start over with the switch on
        os.environ[FAST_ENV] = "1"
        arguments = sys.argv[1:] if argv is None else argv
        os.execv(sys.executable, [sys.executable, "-m", "sample_runs.generate", *arguments])
    os.makedirs(args.logdir, exist_ok=True)
    if not args.only:
        clear_runs(args.logdir)
    for name in args.only or RECIPES:
        keras.utils.set_random_seed(SEED)
        started = time.time()
        RECIPES[name](args.logdir)
        print(f"{name:18s} {time.time() - started:6.1f} s", flush=True)


if __name__ == "__main__":
    main()
