"""Names and constants of the run-directory format (see docs/run-format.md).

This module is the single place where file names, the format version and the vocabulary of statuses and event kinds
are spelled; the writer and the reader both import them from here.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from typing import Any

FORMAT_VERSION = 1

RUN_FILE = "run.json"
STATUS_FILE = "status.json"
BATCH_FILE = "batch.jsonl"
EPOCH_FILE = "epoch.jsonl"
ACTIVATIONS_FILE = "activations.jsonl"
WEIGHTS_FILE = "weights.jsonl"
EVENTS_FILE = "events.jsonl"
SYSTEM_FILE = "system.jsonl"
MODEL_DIR = "model"
SUMMARY_FILE = "model/summary.txt"
LAYERS_FILE = "model/layers.jsonl"
CONFIG_FILE = "model/config.json"
GRAPH_DOT_FILE = "model/graph.dot"
GRAPH_PNG_FILE = "model/graph.png"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_INDEX_FILE = "checkpoints/index.json"

# Append-only streams, in the order the writer flushes them.
STREAM_FILES = {
    "batch": BATCH_FILE,
    "epoch": EPOCH_FILE,
    "activations": ACTIVATIONS_FILE,
    "weights": WEIGHTS_FILE,
    "events": EVENTS_FILE,
    "system": SYSTEM_FILE,
    "layers": LAYERS_FILE,
}

RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
# Derived by readers, never written: a running run whose heartbeat is older than STALE_AFTER_S, or an unreadable run.
STALE, BROKEN = "stale", "broken"
STATUSES = (RUNNING, FINISHED, FAILED, INTERRUPTED)

HEARTBEAT_INTERVAL_S = 2.0
STALE_AFTER_S = 30.0

EVENT_KINDS = (
    "train_begin",  # a fit() call started
    "phase",  # a fit() call started: trainable counts, epochs, lr (fine-tuning phases)
    "train_end",  # a fit() call ended
    "early_stop",  # model.stop_training was set (EarlyStopping or any callback)
    "lr_change",  # the learning rate differs from the previous logged value
    "checkpoint",  # a .keras file was written
    "nan",  # a metric became NaN or Inf
    "skipped",  # something the callback could not record, and why
    "warning",  # a monitoring error that did not stop training
    "failed",  # fit() raised
    "interrupted",  # KeyboardInterrupt
)

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slugify(name: str, max_len: int = 48) -> str:
    """A file-name-safe version of a user-chosen run name ("lr=1e-3 / bn" -> "lr_1e-3_bn")."""
    slug = _SLUG_UNSAFE.sub("_", name).strip("._-")
    return slug[:max_len] or "run"


def to_jsonable(value: Any, max_depth: int = 8) -> Any:
    """Convert numpy scalars/arrays, tuples and unknown objects into JSON-ready values.

    Floats keep NaN/Infinity (written as the JSON extensions NaN, Infinity, -Infinity). Objects that have no JSON
    form become their repr, so a user's odd hparam is recorded rather than lost.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value
    if max_depth <= 0:
        return repr(value)[:200]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, max_depth - 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, max_depth - 1) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return to_jsonable(value.item(), max_depth - 1)
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist(), max_depth - 1)
    return repr(value)[:200]


def as_float(value: Any) -> float | None:
    """A metric value as a Python float, or None when it is not a scalar number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "item") and getattr(value, "size", 0) == 1:
        try:
            return float(value.item())
        except (TypeError, ValueError):
            return None
    return None


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


def dumps_line(record: dict[str, Any]) -> str:
    """One JSONL line: compact, NaN/Infinity allowed, no embedded newline."""
    return json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"


def inside(root: str, path: str) -> bool:
    """True when `path`, with symlinks resolved, lies inside `root` (also resolved)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def _current_umask() -> int:
    """The process umask, read without changing it (Linux exposes it in /proc; elsewhere the common 022)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_json_atomic(path: str, payload: Any) -> None:
    """Replace `path` with `payload` as JSON so that readers see the old or the new file, never half of one."""
    data = json.dumps(to_jsonable(payload), indent=1, allow_nan=True)
    write_bytes_atomic(path, data.encode("utf-8"))


def write_bytes_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        # mkstemp creates the file 0600; the final file gets the usual mode (0666 less the umask), like the JSONL
        # streams, so that a dashboard running as another user can read what it is allowed to read.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
