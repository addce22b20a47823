"""How runs read as text on the pages: status labels, progress and ETA, durations, sizes, counts (no Streamlit)."""

from __future__ import annotations

import math
import numbers
import re
import time
from dataclasses import dataclass

import numpy as np

from kerascope.monitor import Overview, Run
from kerascope.monitor import format as fmt

STATUS_STYLE = {  # status -> (badge colour, icon, words)
    fmt.RUNNING: ("blue", "▶", "running"),
    fmt.FINISHED: ("green", "✓", "finished"),
    fmt.FAILED: ("red", "✗", "failed"),
    fmt.INTERRUPTED: ("orange", "■", "interrupted"),
    fmt.STALE: ("orange", "⚠", "stale"),
    fmt.BROKEN: ("red", "⚠", "broken"),
    fmt.DIVERGED: ("red", "↯", "diverged"),
}
# Every ASCII punctuation character can be backslash-escaped in CommonMark; ":" too, which stops Streamlit's
# `:color[...]` and `:emoji:` directives from acting on user text.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=\"'])")


def md_escape(text: object) -> str:
    """User text (run names, layer names, messages) made inert for st.markdown and friends."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def status_label(status: str) -> str:
    """"✓ finished": the status as plain text with its icon, for tables."""
    _, icon, words = STATUS_STYLE.get(status, ("gray", "?", status))
    return f"{icon} {words}"


def run_label(run: Run) -> str:
    """How a run is named in pickers: its name, status and short id (names may repeat)."""
    return f"{run.name} · {status_label(run.status)} · {run.id[-4:]}"


@dataclass(frozen=True)
class Progress:
    """Where a run stands, for the progress bar and the runs list.

    Example:
    ```python
    shown = progress(run)
    print(shown.text, format_seconds(shown.eta_s))  # "epoch 3/10 · step 1,250", "2 min 05 s"
    ```
    """

    fraction: float | None  # of the current fit() call's epochs; None when unknown
    text: str  # "epoch 3/10 · step 1,250"
    eta_s: float | None  # seconds left, for live runs


def progress(run: Run, overview: Overview | None = None) -> Progress:
    """Where the run stands: epoch/step of the current fit() call and, while it runs, the time left (from status.json
    and the run's summary: no stream is read)."""
    view = overview or run.overview()
    info = view.progress
    status = view.status
    parts = []
    fraction = None
    stop = view.stop if status in (fmt.FINISHED, fmt.DIVERGED) else None
    if status == fmt.DIVERGED and view.divergence is not None and view.divergence.epoch is not None:
        of = f" of {info.epochs}" if info.epochs else ""
        parts.append(f"diverged at epoch {view.divergence.epoch + 1}{of}")
    elif stop is not None and not stop.by_nan_guard:  # a bar at 39 % would say "unfinished"; it ended on purpose
        of = f" of {info.epochs}" if info.epochs else ""
        best = view.best_epoch
        parts.append(f"stopped early at epoch {stop.epoch + 1}{of}" + (f" (best epoch {best + 1})" if best is not None
                                                                       else ""))
    elif info.epoch is not None and info.epochs is not None and info.epochs > 0:
        epoch, epochs = info.epoch, info.epochs
        done = epoch + 1 if status == fmt.FINISHED else epoch + _epoch_fraction(view, epoch)
        fraction = min(max(done / epochs, 0.0), 1.0)
        parts.append(f"epoch {min(epoch + 1, epochs)}/{epochs}")
    if info.step is not None:
        parts.append(f"step {info.step:,}")
    eta = None
    if status == fmt.RUNNING and fraction and info.started is not None:
        eta = (time.time() - info.started) * (1 - fraction) / fraction
    return Progress(fraction, " · ".join(parts) or "no progress recorded yet", eta)


def _epoch_fraction(view: Overview, epoch: int) -> float:
    """How far into `epoch` the run is: the steps status.json counts since the last epoch record (0 when the size of
    an epoch is unknown)."""
    steps_per_epoch, step = view.progress.steps_per_epoch, view.progress.step
    if view.last_epoch == epoch:
        return 1.0  # the epoch ended; the next one has not begun
    if steps_per_epoch is None or steps_per_epoch <= 0 or step is None:
        return 0.0
    if view.last_epoch == epoch - 1 and view.last_step is not None:
        begun = view.last_step
    else:  # no record of the previous epoch: count whole epochs from step 0
        begun = epoch * steps_per_epoch
    return min(max((step - begun) / steps_per_epoch, 0.0), 1.0)


def duration(run: Run, overview: Overview | None = None) -> float | None:
    """Seconds from start to end (or to the latest heartbeat while running)."""
    info = overview.progress if overview is not None else run.progress
    start = info.started if info.started is not None else run.created
    end = info.ended or info.heartbeat
    return None if end is None else max(end - start, 0.0)


def format_seconds(seconds: float | None) -> str:
    """"42 s", "3 min 07 s", "2 h 05 min"; "" for None."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def size_text(size: object) -> str:
    """Bytes as "812 B", "33.4 KB", "1.2 GB"; "—" when not a number."""
    if not isinstance(size, (int, float)) or isinstance(size, bool):
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return "—"


def count_text(count: int | None) -> str:
    """An integer with thousands separators; "—" for None."""
    return "—" if count is None else f"{count:,}"


def number_text(value: object) -> str:
    """A number as people read it here: 4 significant digits, scientific below 1e-3 ("8.1e-05"), "NaN"/"Inf"."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return "" if value is None else str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value != 0 and abs(value) < 1e-3:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    return f"{value:.4g}"


def numbers_text(values: object) -> list[str]:
    """`number_text` of each value of an array, fast enough for every point of a chart's traces (hover texts).

    Example:
    ```python
    numbers_text(np.array([0.5694743, 8.1e-05, np.nan]))  # ["0.5695", "8.1e-05", "NaN"]
    ```
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    # Python's ".4g" is number_text's own format for the common values; the rest (non-finite, or below 1e-3, where
    # ".4g" keeps 0.0001234 in fixed notation) go through number_text, once per distinct value: a learning rate
    # repeats the same few values.
    texts = [f"{value:.4g}" for value in array.tolist()]
    with np.errstate(invalid="ignore"):
        special = ~np.isfinite(array) | ((array != 0) & (np.abs(array) < 1e-3))
    if special.any():
        where = np.flatnonzero(special)
        distinct, inverse = np.unique(array[where], return_inverse=True)
        spelled = [number_text(value) for value in distinct.tolist()]
        for index, text_index in zip(where.tolist(), inverse.ravel().tolist(), strict=True):
            texts[index] = spelled[text_index]
    return texts
