"""EMA smoothing (TensorBoard's, debiased) that extends a cached result when a series only grew by appending.

A live run's batch series grows by a few hundred points per refresh while it may already hold a million: smoothing
only the new points keeps a refresh's cost proportional to the new data.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


def debias_length(weight: float) -> int:
    """Points after which the debias factor 1 - w^(i+1) is exactly 1.0 in float64."""
    return int(np.ceil(np.log(1e-17) / np.log(weight)))


def ema(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0."""
    if weight <= 0 or len(y) == 0:
        return y
    smoothed, _ = _filter(y, weight, 0.0)
    _debias(smoothed, weight, 0)
    return smoothed


def _filter(y: np.ndarray, weight: float, state: float) -> tuple[np.ndarray, float]:
    """The undebiased EMA of `y` continuing from `state` (the previous undebiased value); returns it and its end.

    s_j = w^(j+1) * (state + (1 - w) * sum_{i<=j} y_i / w^(i+1)): a cumulative sum in numpy, over blocks short enough
    that 1 / w^(i+1) stays below 1e100, so the loop runs once per block, not per point. (scipy.signal.lfilter
    computes the same but takes most of a second to import, which the first Run page after a start paid.)
    """
    values = np.asarray(y, dtype=np.float64)
    smoothed = np.empty(len(values))
    block = max(1, int(100 / -np.log10(weight)))
    powers = weight ** np.arange(1, min(block, len(values)) + 1)
    for start in range(0, len(values), block):
        part = values[start : start + block]
        weights = powers[: len(part)]
        out = smoothed[start : start + len(part)]
        np.cumsum((1.0 - weight) * part / weights, out=out)
        out += state
        out *= weights
        state = float(out[-1])
    return smoothed, state


def _debias(smoothed: np.ndarray, weight: float, offset: int) -> None:
    """Divide in place by 1 - w^(i+1) for the global indices i = offset.. that still need it."""
    end = min(len(smoothed), debias_length(weight) - offset)
    if end > 0:
        smoothed[:end] /= 1.0 - weight ** np.arange(offset + 1, offset + end + 1)


@dataclass
class _Entry:
    raw: np.ndarray  # the input smoothed so far (a copy, to recognise an appended-to series)
    smoothed: np.ndarray
    state: float  # undebiased EMA after the last point


class EmaCache:
    """Smoothed series by key; a series that starts with the cached input is smoothed only past it.

    Example:
    ```python
    cache = EmaCache()
    first = cache.smooth("run-1/loss", losses, 0.6)
    later = cache.smooth("run-1/loss", np.concatenate([losses, new_losses]), 0.6)  # filters only new_losses
    ```
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[tuple[str, float], _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def smooth(self, key: str, y: np.ndarray, weight: float) -> np.ndarray:
        if weight <= 0 or len(y) == 0:
            return y
        with self._lock:
            entry = self._entries.get((key, weight))
        done = len(entry.raw) if entry is not None else 0
        # Appended-to: same length or longer, and the cached part's ends unchanged (a rewritten file differs there).
        if entry is None or not (0 < done <= len(y) and y[0] == entry.raw[0] and y[done - 1] == entry.raw[-1]):
            smoothed, state = _filter(y, weight, 0.0)
            _debias(smoothed, weight, 0)
            entry = _Entry(np.array(y, dtype=np.float64), smoothed, state)
        elif done < len(y):
            tail, state = _filter(y[done:], weight, entry.state)
            _debias(tail, weight, done)
            entry = _Entry(np.concatenate([entry.raw, y[done:]]), np.concatenate([entry.smoothed, tail]), state)
        with self._lock:
            self._entries[(key, weight)] = entry
            self._entries.move_to_end((key, weight))
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return entry.smoothed
