"""Live demo: `python -m sample_runs.demo [--root demo_runs] [--port 8501]` (or `make demo`).

Starts the dashboard over a demo root and trains a small learning-rate sweep into it, paced so that each run takes
about a minute and you can watch the charts move. Ctrl-C stops training and the dashboard.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from kerascope import LiveMonitor  # noqa: E402
from sample_runs.digits import compile_for_classification, digits_split, small_cnn  # noqa: E402

LEARNING_RATES = (3e-3, 1e-3, 3e-4)


class Pace(keras.callbacks.Callback):
    """Sleeps after each batch: digits train in seconds, too fast to watch."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        time.sleep(self.seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="demo_runs")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--pace", type=float, default=0.04, help="seconds slept after each batch")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    os.makedirs(args.root, exist_ok=True)
    dashboard = subprocess.Popen([sys.executable, "-m", "kerascope", "--logdir", args.root, "--port", str(args.port)])
    print(f"Kerascope demo: open http://127.0.0.1:{args.port} — training into {args.root}/ (Ctrl-C to stop)", flush=True)
    x_train, y_train, x_val, y_val = digits_split()
    try:
        for lr in LEARNING_RATES:
            keras.utils.set_random_seed(1)
            model = compile_for_classification(small_cnn(), keras.optimizers.Adam(lr))
            monitor = LiveMonitor(args.root, name=f"demo lr={lr:g}", hparams={"lr": lr}, tags=["demo"],
                                  activation_data=x_val[:256], checkpoint="best")
            model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs, batch_size=32,
                      callbacks=[monitor, Pace(args.pace)], verbose=0)
            print(f"finished {monitor.run_dir}", flush=True)
        print("Training done; the dashboard keeps serving until Ctrl-C.", flush=True)
        dashboard.wait()
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        dashboard.terminate()
        try:
            dashboard.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dashboard.kill()


if __name__ == "__main__":
    main()
