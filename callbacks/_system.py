"""System metrics (CPU %, RSS, GPU memory) sampled by a daemon thread, off the training thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import keras

try:
    import psutil
except ImportError:  # psutil is a dependency, but a missing one only costs the CPU/RSS columns
    psutil = None


def _gpu_memory_reader() -> Callable[[], float | None] | None:
    """A function returning the bytes in use on the first GPU of the active backend, or None without a GPU."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if not tf.config.list_physical_devices("GPU"):
                return None
            return lambda: float(tf.config.experimental.get_memory_info("GPU:0")["current"])
        if backend == "jax":
            import jax

            gpus = [d for d in jax.local_devices() if d.platform == "gpu"]
            if not gpus:
                return None
            return lambda: float((gpus[0].memory_stats() or {}).get("bytes_in_use", 0))
        if backend == "torch":
            import torch

            if not torch.cuda.is_available():
                return None
            return lambda: float(torch.cuda.memory_allocated())
    except Exception:
        return None
    return None


TICK_S = 2.0


class SystemSampler:
    """Every `interval` seconds: append a system record via `log` and call `on_tick` (the fit liveness check).

    Args:
        log: receives one record dict per sample (time, cpu_percent, rss_bytes, gpu_memory_bytes).
        interval: seconds between samples; 0 records nothing.
        on_tick: called every `min(interval, 2 s)`, from the sampler thread.
        on_error: receives a message when sampling fails (once per kind of failure).
    """

    def __init__(
        self,
        log: Callable[[dict[str, Any]], None],
        interval: float,
        on_tick: Callable[[], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.log = log
        self.record = interval > 0
        self.interval = interval
        # The liveness check runs at least every TICK_S even when samples are rarer (or off).
        self.tick = min(interval, TICK_S) if interval > 0 else TICK_S
        self.on_tick = on_tick
        self.on_error = on_error
        self._stop = threading.Event()
        self._process = psutil.Process() if psutil is not None else None
        self._gpu_memory = _gpu_memory_reader() if self.record else None
        self._thread = threading.Thread(target=self._loop, name="kerascope-system", daemon=True)

    def start(self) -> None:
        if self._process is not None:
            self._process.cpu_percent(None)  # the first call only sets the reference point
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def sample(self) -> dict[str, Any]:
        record: dict[str, Any] = {"time": time.time()}
        if self._process is not None:
            record["cpu_percent"] = self._process.cpu_percent(None)
            record["rss_bytes"] = float(self._process.memory_info().rss)
        if self._gpu_memory is not None:
            record["gpu_memory_bytes"] = self._gpu_memory()
        return record

    def _loop(self) -> None:
        reported: set[type[Exception]] = set()
        last_sample = time.monotonic()
        while not self._stop.wait(self.tick):
            if self.record and time.monotonic() - last_sample >= self.interval - 1e-3:
                last_sample = time.monotonic()
                self._attempt(lambda: self.log(self.sample()), reported)
            # Apart from the sample: a sample that fails at every tick must not stop the check that fit() is alive.
            self._attempt(self.on_tick, reported)

    def _attempt(self, action: Callable[[], None], reported: set[type[Exception]]) -> None:
        try:
            action()
        except Exception as exc:  # keep ticking: the thread also watches whether fit() is still alive
            if type(exc) not in reported:
                reported.add(type(exc))
                self.on_error(f"system sampling failed: {exc!r}")
