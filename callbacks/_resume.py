"""Where LiveMonitor records (`RunOpener`), and resume after a crash: which run a restarted training script
continues, and which of its records stay.

A script killed mid-run (kill -9, a lost machine) and started again with `keras.callbacks.BackupAndRestore` trains on
from the epoch of the last backup. `LiveMonitor(resume="auto")` then reopens the latest unfinished run of the same
name instead of starting a new one; at the first epoch the restarted fit() begins, the records of that epoch and later
ones (written by the process that died) are dropped, so each step is recorded once, by the training that counts.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kerascope.monitor import Run, RunStore, RunWriter, url_protocol
from kerascope.monitor import format as fmt
from kerascope.monitor.storage import local_path

AUTO = "auto"
# Streams whose records carry the epoch they belong to: those of a superseded epoch are dropped. Every stream but
# system.jsonl (kept whole: what the process did) and the layer tables (dropped by phase), so a new stream is rewound.
_EPOCH_STREAMS = frozenset(fmt.STREAM_FILES) - {"system", "layers"}


def check_resume(resume: str | None) -> None:
    """Raise ValueError for a `resume` option that is neither None, "auto" nor a run id."""
    if resume is not None and (not isinstance(resume, str) or not resume or os.sep in resume or resume[0] == "."):
        raise ValueError(f'resume must be None, "auto" or the id of a run in logdir, got {resume!r}')


@dataclass
class Resumed:
    """A run reopened by a restarted script, until its first epoch says where training picked up."""

    run: Run
    phase: int  # the fit() call that was cut short; the restarted fit() continues it
    status: str  # how the run looked before: running (the process died without a word), failed, interrupted
    epoch: int  # the epoch expected to come next (the one after the last epoch on disk) ...
    step: int  # ... and the step it starts from; both are confirmed or corrected by `rewind`
    rewound: bool = False
    kept_phase_event: bool = False  # the cut-short fit()'s phase event stays (it began before the restore point)
    dropped: dict[str, int] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # index entries before the restore point


def find_resumable(logdir: str, name: str, resume: str) -> tuple[Resumed | None, str | None]:
    """The run to continue, or (None, why not) when a new run has to be started.

    "auto" takes the newest run named `name` that did not finish and whose training process is not alive on this
    host; a run id takes that run unless it finished (its training is complete: nothing to continue).
    """
    store = RunStore(logdir)
    if resume != AUTO:
        try:
            run = store.run(resume)
        except KeyError:
            return None, f"no run {resume!r} under {logdir!r} to resume"
        status = run.status_info.get("status")
        if run.error or status not in (fmt.RUNNING, fmt.FAILED, fmt.INTERRUPTED):
            return None, f"run {resume!r} cannot be resumed ({run.error or f'its status is {status}'})"
        if _alive_elsewhere(run):
            return None, f"run {resume!r} is being written by another process (pid {run.meta.get('pid')})"
        return _resumed(run), None
    candidates = [
        run for run in store.runs()
        if not run.error and run.name == name
        and run.status_info.get("status") in (fmt.RUNNING, fmt.FAILED, fmt.INTERRUPTED)
        and not _alive_elsewhere(run)
    ]
    if not candidates:
        return None, None
    return _resumed(max(candidates, key=lambda run: (run.created, run.id))), None


def _alive_elsewhere(run: Run) -> bool:
    """True when the run's writing process still runs on this host (another script training into it right now)."""
    pid = run.meta.get("pid")
    if run.meta.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return run.status_info.get("status") == fmt.RUNNING


def _resumed(run: Run) -> Resumed:
    info = run.status_info
    phase = info.get("phase")
    epochs = run.epoch_metrics()
    epoch, step = 0, 0
    if len(epochs):
        last = epochs.iloc[-1]
        epoch, step = int(last["epoch"]) + 1, int(last["step"])
    return Resumed(
        run=run,
        phase=phase if isinstance(phase, int) and phase > 0 else 1,
        status=str(info.get("status")),
        epoch=epoch,
        step=step,
    )


def restore_step(run: Run, epoch: int) -> int:
    """The step training resumes from when it restarts at `epoch`: the last one recorded before that epoch."""
    steps = [0]
    for frame in (run.epoch_metrics(), run.batch_metrics()):
        if len(frame):
            before = frame.loc[frame["epoch"] < epoch, "step"]
            if len(before):
                steps.append(int(before.max()))
    return max(steps)


def superseded(resumed: Resumed, epoch: int) -> Any:
    """The `RunWriter.rewind` predicate: keep what the dead process recorded before `epoch`, and the layer tables and
    phase events of the fit() calls before the one cut short."""

    def keep(stream: str, record: dict[str, Any]) -> bool:
        if stream == "layers":
            return not (isinstance(record.get("phase"), int) and record["phase"] >= resumed.phase)
        if stream not in _EPOCH_STREAMS:
            return True
        value = record.get("epoch")
        kept = not (isinstance(value, int) and value >= epoch)
        if kept and stream == "events" and record.get("kind") == fmt.EVENT_PHASE:
            data = record.get("data")
            if isinstance(data, dict) and data.get("phase") == resumed.phase:
                resumed.kept_phase_event = True
        return kept

    return keep


def kept_checkpoints(run: Run, epoch: int) -> list[dict[str, Any]]:
    """The checkpoint index entries saved before `epoch` (later ones belong to the superseded training)."""
    frame = run.checkpoints()
    entries = []
    for entry in frame.to_dict("records"):
        value = fmt.as_float(entry.get("epoch"))
        if value is not None and value < epoch:
            entries.append({key: fmt.to_jsonable(item) for key, item in entry.items()} | {"epoch": int(value)})
    return entries


class RunOpener:
    """The run a LiveMonitor records into: created at the first fit() (in a local folder, or spooled and uploaded to
    an object store), reopened for each later fit(), or, with `resume`, the unfinished run of a killed script.

    Args:
        logdir: LiveMonitor's logdir (a folder or an object-store URL).
        flush_interval: seconds between the writer's appends (uploads, on an object store).
        strict: raise ValueError when `resume` names a run that cannot be continued (else: a warning, a new run).
        on_error: the writer's error callback (RunReporter.warn_once).

    Example:
    ```python
    opener = RunOpener("runs", 0.5, strict=False, on_error=print)
    writer = opener.resume("mlp", "auto", fit_meta) or opener.create("mlp", meta)  # the first fit()
    writer.close()
    writer = opener.reopen(fit_meta)  # a later fit() of the same run
    ```
    """

    def __init__(self, logdir: str, flush_interval: float, strict: bool, on_error: Callable[[str], None]) -> None:
        self.logdir = logdir
        self.flush_interval = flush_interval
        self.strict = strict
        self.on_error = on_error
        self.run_dir: str | None = None  # the run's directory, or its URL on an object store
        self.spool_dir: str | None = None  # an object-store run: the local directory it is written to first
        self.resumed: Resumed | None = None  # a run reopened after a restart, until its first epoch begins

    def create(self, name: str, meta: dict[str, Any]) -> RunWriter:
        """A new run directory named after `name`, with run.json holding `meta`."""
        if url_protocol(self.logdir) is not None:
            from kerascope.monitor.remote_writer import RemoteRunWriter

            writer = RemoteRunWriter(self.logdir, name, meta=meta, flush_interval=self.flush_interval,
                                     on_error=self.on_error)
            self.run_dir, self.spool_dir = writer.url, writer.run_dir
            return writer
        writer = RunWriter(local_path(self.logdir), name, meta=meta, flush_interval=self.flush_interval,
                           on_error=self.on_error)
        self.run_dir = writer.run_dir
        return writer

    def resume(self, name: str, resume: str, fit_meta: dict[str, Any]) -> RunWriter | None:
        """Reopen the run that `resume` ("auto" or a run id) names, its run.json updated with `fit_meta` and this
        process; None when there is none (then `create` a new run). `resumed` then says where it stopped."""
        if url_protocol(self.logdir) is not None:
            resumed, why_not = None, "resume is not available for an object-storage logdir"
        else:
            resumed, why_not = find_resumable(local_path(self.logdir), name, resume)
        if why_not:
            if self.strict:
                raise ValueError(why_not)
            warnings.warn(f"LiveMonitor: {why_not}; a new run is started", RuntimeWarning, stacklevel=4)
        if resumed is None:
            return None
        writer = RunWriter.resume(resumed.run.path, flush_interval=self.flush_interval, on_error=self.on_error)
        writer.update_meta(**fit_meta, host=socket.gethostname(), pid=os.getpid())
        self.run_dir, self.resumed = writer.run_dir, resumed
        return writer

    def reopen(self, fit_meta: dict[str, Any]) -> RunWriter:
        """This run, for a later fit() (from the local spool for an object-store run), run.json updated with
        `fit_meta`."""
        if self.spool_dir is not None:
            from kerascope.monitor.remote_writer import RemoteRunWriter

            writer: RunWriter = RemoteRunWriter.resume_remote(self.logdir, self.spool_dir,
                                                              flush_interval=self.flush_interval,
                                                              on_error=self.on_error)
        else:
            writer = RunWriter.resume(self.run_dir, flush_interval=self.flush_interval, on_error=self.on_error)
        writer.update_meta(**fit_meta)
        return writer

    def rewind(self, writer: RunWriter, epoch: int) -> int:
        """The restarted fit() begins at `epoch`: drop what the dead process recorded from there on (records, and
        checkpoint index entries); returns the step training goes on from. `resumed` says what was dropped."""
        resumed = self.resumed
        resumed.rewound = True
        step = restore_step(resumed.run, epoch)
        resumed.dropped = writer.rewind(superseded(resumed, epoch))
        resumed.checkpoints = kept_checkpoints(resumed.run, epoch)
        if len(resumed.checkpoints) < len(resumed.run.checkpoints()):
            writer.write_json(fmt.CHECKPOINT_INDEX_FILE, resumed.checkpoints)
        return step
