"""Small pieces shared by the pages: safe text, status badges, the run picker, progress/ETA, the live toggle."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import streamlit as st

from kerascope.app import state
from kerascope.monitor import format as fmt
from kerascope.monitor.reader import Run

STATUS_STYLE = {  # status -> (badge colour, icon, words)
    fmt.RUNNING: ("blue", "▶", "running"),
    fmt.FINISHED: ("green", "✓", "finished"),
    fmt.FAILED: ("red", "✗", "failed"),
    fmt.INTERRUPTED: ("orange", "■", "interrupted"),
    fmt.STALE: ("orange", "⚠", "stale"),
    fmt.BROKEN: ("red", "⚠", "broken"),
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


def status_badge(run: Run) -> None:
    color, icon, words = STATUS_STYLE.get(run.status, ("gray", "?", run.status))
    st.badge(words, icon=None, color=color)


def run_label(run: Run) -> str:
    """How a run is named in pickers: its name, status and short id (names may repeat)."""
    return f"{run.name} · {status_label(run.status)} · {run.id[-4:]}"


@dataclass(frozen=True)
class Progress:
    fraction: float | None  # of the current fit() call's epochs; None when unknown
    text: str  # "epoch 3/10 · step 1,250"
    eta_s: float | None  # seconds left, for live runs


def progress(run: Run) -> Progress:
    """Where the run stands: epoch/step of the current fit() call and, while it runs, the time left."""
    info = run.status_info
    epoch, epochs, step = info.get("epoch"), info.get("epochs"), info.get("step")
    steps_per_epoch = info.get("steps_per_epoch")
    parts = []
    fraction = None
    if isinstance(epoch, int) and isinstance(epochs, int) and epochs > 0:
        done = epoch + 1 if run.status == fmt.FINISHED else epoch + _epoch_fraction(run, epoch, steps_per_epoch)
        fraction = min(max(done / epochs, 0.0), 1.0)
        parts.append(f"epoch {min(epoch + 1, epochs)}/{epochs}")
    if isinstance(step, int):
        parts.append(f"step {step:,}")
    eta = None
    started = info.get("started")
    if run.status == fmt.RUNNING and fraction and isinstance(started, (int, float)):
        eta = (time.time() - started) * (1 - fraction) / fraction
    return Progress(fraction, " · ".join(parts) or "no progress recorded yet", eta)


def _epoch_fraction(run: Run, epoch: int, steps_per_epoch: object) -> float:
    """How far into `epoch` the latest logged batch is (0 when batches are not logged or the size is unknown)."""
    if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
        return 0.0
    arrays = run.arrays("batch")
    if "batch" not in arrays or not len(arrays["batch"]) or arrays["epoch"][-1] != epoch:
        return 0.0
    return min((arrays["batch"][-1] + 1) / steps_per_epoch, 1.0)


def duration(run: Run) -> float | None:
    """Seconds from start to end (or to the latest heartbeat while running)."""
    info = run.status_info
    start = info.get("started", run.created)
    end = info.get("ended") or info.get("heartbeat")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return max(end - start, 0.0)
    return None


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def size_text(size: object) -> str:
    if not isinstance(size, (int, float)) or isinstance(size, bool):
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return "—"


def count_text(count: object) -> str:
    return f"{count:,}" if isinstance(count, int) and not isinstance(count, bool) else "—"


def run_picker(runs: list[Run], page: str) -> Run | None:
    """A sidebar select box of runs; the choice is shared by the single-run pages."""
    if not runs:
        return None
    current = state.current_run(runs)
    ids = [run.id for run in runs]
    by_id = {run.id: run for run in runs}
    key = f"run_picker_{page}"
    if st.session_state.get(key) not in by_id:
        st.session_state[key] = current.id
    chosen = st.sidebar.selectbox("Run", ids, key=key, format_func=lambda run_id: run_label(by_id[run_id]))
    st.session_state[state.RUN_KEY] = chosen
    return by_id[chosen]


def readable_run(page: str, title: str) -> Run | None:
    """The head of a single-run page: the run picker and the run's header; None when there is nothing to show.

    Without runs the page shows `title` and how to get runs; a broken run shows its reason in the header.
    """
    run = run_picker(state.store().runs(), page)
    if run is None:
        st.title(title)
        no_runs_message()
        return None
    run_header(run)
    return None if run.error else run


def live_toggle() -> None:
    """Pause/resume live updates (paused charts keep the user's zoom: nothing re-renders them)."""
    st.session_state[state.LIVE_KEY] = st.sidebar.toggle(
        "Live updates", value=state.live(), key="live_toggle",
        help="Refresh charts as the training writes. Turn off to zoom and inspect without interruptions.")


def no_runs_message() -> None:
    st.info(f"No runs under `{md_escape(state.logdir())}` yet. Start a training with "
            "`LiveMonitor(\"" + md_escape(state.logdir()) + "\")` in its callbacks, or point the dashboard at "
            "another directory with `python -m kerascope --logdir DIR`; new runs appear here on their own.")


def run_header(run: Run) -> None:
    """Title, status badge, reason and read problems of one run."""
    st.title(md_escape(run.name))
    columns = st.columns([1, 5])
    with columns[0]:
        status_badge(run)
    with columns[1]:
        st.caption(md_escape(run.id))
    if run.reason:
        (st.error if run.status in (fmt.BROKEN, fmt.FAILED) else st.warning)(md_escape(run.reason))
    for problem in run.problems[:5]:
        st.warning(md_escape(problem))
