"""Training-time overhead of LiveMonitor (defaults, with statistics, with gradients) against no callback, CSVLogger
and TensorBoard(update_freq="batch").

MLP 784-256-128-10, batch 64, 20k random samples, 3 epochs, TensorFlow CPU. The configurations are interleaved
(each repeat runs all of them, in a rotating order) in one process on one compiled model, so that machine load and
TensorFlow's warm-up hit them alike; the table reports the median of the repeats.

Usage: python bench/callback_overhead.py [--repeats 7] [--epochs 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerascope import LiveMonitor  # noqa: E402

SAMPLES, BATCH = 20_000, 64


def build_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


HOOKS = (
    "on_train_begin",
    "on_epoch_begin",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_epoch_end",
    "on_train_end",
)


def timed(live_monitor: LiveMonitor) -> LiveMonitor:
    """Sum the time the training loop spends inside the monitor's hooks into `live_monitor.hook_seconds`.

    This attributes time to the callback directly, which stays readable when machine load swamps the wall-clock
    difference between two fits.
    """
    live_monitor.hook_seconds = 0.0
    for name in HOOKS:
        hook = getattr(live_monitor, name)

        def wrapper(*args: object, _hook: Callable[..., None] = hook, **kwargs: object) -> None:
            start = time.perf_counter()
            try:
                _hook(*args, **kwargs)
            finally:
                live_monitor.hook_seconds += time.perf_counter() - start

        setattr(live_monitor, name, wrapper)
    return live_monitor


def configurations(workdir: str, x_val: np.ndarray,
                   y_val: np.ndarray) -> dict[str, Callable[[], list[keras.callbacks.Callback]]]:
    """Name -> a function returning the fresh callback list for one fit()."""
    runs = os.path.join(workdir, "runs")
    configs = {
        "no callback": lambda: [],
        "CSVLogger": lambda: [keras.callbacks.CSVLogger(os.path.join(workdir, "log.csv"))],
        'TensorBoard(update_freq="batch")': lambda: [
            keras.callbacks.TensorBoard(os.path.join(workdir, "tb"), update_freq="batch", histogram_freq=0)
        ],
        "LiveMonitor defaults": lambda: [timed(LiveMonitor(runs, name="bench"))],
        "LiveMonitor + activation & weight stats": lambda: [
            timed(LiveMonitor(runs, name="bench-stats", activation_data=x_val, activation_freq=1, weight_freq=1))
        ],
        # Per-layer gradients on 64 samples every DEFAULT_GRADIENT_FREQ batches (each LiveMonitor traces its own
        # gradient function once: counted in every fit here).
        "LiveMonitor + gradients (default gradient_freq)": lambda: [
            timed(LiveMonitor(runs, name="bench-gradients", gradient_data=(x_val[:64], y_val[:64])))
        ],
    }
    if importlib.util.find_spec("tensorboard") is None:  # tensorflow-cpu does not bring it: pip install tensorboard
        print("tensorboard is not installed: the TensorBoard row is left out", file=sys.stderr)
        del configs['TensorBoard(update_freq="batch")']
    return configs


def hook_cost_us(calls: int = 50_000) -> float:
    """Microseconds per batch in a live LiveMonitor's batch hooks (begin + end: metrics, LR, record)."""
    with tempfile.TemporaryDirectory() as workdir:
        model = build_model()
        live_monitor = LiveMonitor(workdir, system_freq=0, weight_freq=0)
        x = np.random.default_rng(0).random((BATCH, 784), dtype=np.float32)
        model.fit(x, np.zeros(BATCH, "int32"), epochs=1, verbose=0, callbacks=[live_monitor])
        live_monitor.set_model(model)
        live_monitor.on_train_begin()
        live_monitor.on_epoch_begin(0)
        logs = {"loss": 0.5, "accuracy": 0.8}
        start = time.perf_counter()
        for batch in range(calls):
            live_monitor.on_train_batch_begin(batch)
            live_monitor.on_train_batch_end(batch, logs)
        elapsed = time.perf_counter() - start
        live_monitor.on_epoch_end(0, logs)
        live_monitor.on_train_end()
    return elapsed / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES).astype("int32")
    model = build_model()
    model.fit(x[: BATCH * 20], y[: BATCH * 20], batch_size=BATCH, epochs=1, verbose=0)  # trace once, for all configs

    with tempfile.TemporaryDirectory() as workdir:
        configs = configurations(workdir, x[:256], y[:256])
        names = list(configs)
        wall: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        in_hooks: dict[str, list[float]] = {name: [] for name in names}
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                callbacks = configs[name]()
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                model.fit(x, y, batch_size=BATCH, epochs=args.epochs, verbose=0, callbacks=callbacks)
                wall[name].append(time.perf_counter() - start_wall)
                cpu[name].append(time.process_time() - start_cpu)
                hook_seconds = [cb.hook_seconds for cb in callbacks if hasattr(cb, "hook_seconds")]
                if hook_seconds:
                    in_hooks[name].append(sum(hook_seconds) / wall[name][-1])
            print(
                f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{n}={wall[n][-1]:.2f}s" for n in names),
                file=sys.stderr,
                flush=True,
            )

    steps = args.epochs * -(-SAMPLES // BATCH)
    base = names[0]

    def overhead(samples: dict[str, list[float]], name: str) -> str:
        # Each repeat compares with the no-callback fit of the same repeat (run minutes apart at most), which
        # cancels slow changes of machine load; the median of those ratios is reported.
        ratios = [run / ref for run, ref in zip(samples[name], samples[base], strict=True)]
        return "—" if name == base else f"{(statistics.median(ratios) - 1) * 100:+.1f} %"

    print(
        "| configuration | median fit time (s) | ms / step | overhead (wall, paired median) "
        "| overhead (process CPU time, paired median) | time in LiveMonitor hooks | runs |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        median = statistics.median(wall[name])
        hooks = f"{statistics.median(in_hooks[name]) * 100:.1f} %" if in_hooks[name] else "—"
        print(
            f"| {name} | {median:.2f} | {median / steps * 1e3:.2f} | {overhead(wall, name)} "
            f"| {overhead(cpu, name)} | {hooks} | {len(wall[name])} |"
        )
    print(
        f"\nLiveMonitor batch hooks alone (on_train_batch_begin + _end): {hook_cost_us():.1f} µs per batch "
        f"({steps} steps, {args.epochs} epochs, batch {BATCH}, {SAMPLES} samples)"
    )


if __name__ == "__main__":
    main()
