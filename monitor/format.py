"""The run-directory format (docs/run-format.md): the one place that spells its file names, columns, statuses, event
kinds and metric directions, and the atomic file writes both sides rely on.

The writer (training side) and the readers (RunStore, the dashboard) import every name from here.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

# The newest format readers open. Run directories on a local filesystem are written as version 1; runs on an object
# store (an fsspec URL logdir) as version 2, the segment layout below.
FORMAT_VERSION = 2
LOCAL_FORMAT_VERSION = 1
OBJECT_FORMAT_VERSION = 2

RUN_FILE = "run.json"
STATUS_FILE = "status.json"
BATCH_FILE = "batch.jsonl"
EPOCH_FILE = "epoch.jsonl"
ACTIVATIONS_FILE = "activations.jsonl"
WEIGHTS_FILE = "weights.jsonl"
GRADIENTS_FILE = "gradients.jsonl"
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
# What the runs list shows of a run, kept by the writer (monitor/summary.py): an added file, format version 1.
RUN_SUMMARY_FILE = "summary.json"
SUMMARY_VERSION = 1
# summary.json's fields (docs/run-format.md, "summary.json"); `sources` maps EPOCH_FILE and EVENTS_FILE to the byte
# sizes it summarizes, so a reader can tell a summary that lags its streams (a crash between two writes).
SUMMARY_FIELDS = ("summary_version", "time", "name", "status", "progress", "duration_s", "model", "hparams", "tags",
                  "group", "notes", "epochs_logged", "last_epoch", "metrics", "monitor", "best_epoch", "divergence",
                  "stop", "sources")
SUMMARY_METRIC_FIELDS = ("last", "best", "best_epoch", "direction")

# Object-store layout (format version 2): each upload adds immutable segments `segments/<stream>/<seq>.jsonl` (seq
# 1-based, zero-padded, consecutive); finishing a fit() compacts each stream into its version-1 file name
# (batch.jsonl, ...) and writes COMPACTED_FILE, which says how many segments (and bytes) each compacted file holds.
SEGMENTS_DIR = "segments"
SEGMENT_DIGITS = 8
COMPACTED_FILE = "compacted.json"
REMOTE_FLUSH_INTERVAL_S = 5.0  # default seconds between uploads to an object store (local runs: 0.5 s to disk)

# run.json `group`: runs recorded together as one sweep (the trials of one KerasTuner search). An added field.
RUN_GROUP = "group"

# Append-only streams (the names `RunWriter.log` takes), in the order the writer flushes them.
STREAM_FILES = {
    "batch": BATCH_FILE,
    "epoch": EPOCH_FILE,
    "activations": ACTIVATIONS_FILE,
    "weights": WEIGHTS_FILE,
    "gradients": GRADIENTS_FILE,
    "events": EVENTS_FILE,
    "system": SYSTEM_FILE,
    "layers": LAYERS_FILE,
}

# Columns readers always provide, first and in this order (NaN or None where no record has them).
BATCH_COLUMNS = ("step", "epoch", "batch", "time")
EPOCH_COLUMNS = ("epoch", "step", "time")
SYSTEM_COLUMNS = ("time",)
ACTIVATION_COLUMNS = ("step", "epoch", "layer", "mean", "std", "min", "max", "zero_frac", "histogram")
WEIGHT_COLUMNS = ("step", "epoch", "layer", "weight", "mean", "std", "norm", "min", "max", "histogram")
# gradients.jsonl: per trainable weight, on LiveMonitor's `gradient_data`; `snapshot` marks the divergence's records.
GRADIENT_COLUMNS = ("step", "epoch", "layer", "weight", "norm", "max_abs", "nonfinite_frac", "global_norm", "snapshot")
EVENT_COLUMNS = ("time", "step", "epoch", "kind", "message", "data")
LAYER_COLUMNS = ("phase", "name", "class", "output_shape", "params", "trainable")
CHECKPOINT_COLUMNS = ("epoch", "step", "path", "monitor", "value", "is_best", "bytes", "time")
# run.json `options.checkpoint`: which .keras checkpoints LiveMonitor keeps (or null: none).
CHECKPOINT_POLICIES = ("best", "last", "all")
# Columns of batch and epoch records that are not metrics (ReduceLROnPlateau logs `learning_rate` itself).
NON_METRIC_COLUMNS = frozenset({"epoch", "step", "time", "phase", "batch", "lr", "learning_rate"})
BATCH_VALUE_PREFIX = "batch_"  # batch.jsonl: `batch_<metric>` is the batch's own value of a running mean
VAL_PREFIX = "val_"

RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
# Derived by readers, never written: a running run whose heartbeat is older than STALE_AFTER_S, an unreadable run, and
# a run that ended (finished or interrupted) after a metric became NaN or infinite.
STALE, BROKEN, DIVERGED = "stale", "broken", "diverged"
STATUSES = (RUNNING, FINISHED, FAILED, INTERRUPTED)

HEARTBEAT_INTERVAL_S = 2.0
STALE_AFTER_S = 30.0

# Event kinds. A fit() that raised or was interrupted ends with an event whose kind is the status FAILED / INTERRUPTED.
EVENT_TRAIN_BEGIN = "train_begin"  # a fit() call started
EVENT_PHASE = "phase"  # a fit() call started: trainable counts, epochs, lr (fine-tuning phases)
EVENT_TRAIN_END = "train_end"  # a fit() call ended
EVENT_EARLY_STOP = "early_stop"  # model.stop_training was set (EarlyStopping or any callback)
EVENT_LR_CHANGE = "lr_change"  # the learning rate differs from the previous logged value
EVENT_CHECKPOINT = "checkpoint"  # a .keras file was written
EVENT_NAN = "nan"  # a metric became NaN or Inf
EVENT_SKIPPED = "skipped"  # something the callback could not record, and why
EVENT_WARNING = "warning"  # a monitoring error that did not stop training
EVENT_RESUMED = "resumed"  # a restarted script continued the run (LiveMonitor(resume=...)) from a restored epoch
EVENT_DIVERGENCE = "divergence"  # a metric's first divergence: step, LR, the layer that broke first, the evidence
# divergence `rule`: a metric became NaN/Inf, or the loss rose above LiveMonitor(divergence_factor=...) x its best.
DIVERGENCE_NONFINITE, DIVERGENCE_SPIKE = "non-finite", "spike"


def is_loss_divergence(metric: str, rule: str) -> bool:
    """Whether a divergence event means the training broke: a loss (`loss`, `val_loss`, a named output's loss) or a
    spike. Any metric that turns NaN gets an event; a custom metric that is NaN by design (a ratio over a class absent
    from the batch) does not make the run diverged."""
    return "loss" in metric or rule == DIVERGENCE_SPIKE


# run.json `metrics`: {"<log name>": {"direction": MIN | MAX}} for every metric Keras logs.
MIN, MAX = "min", "max"
# For metrics whose Keras object does not say which way is better (user-defined ones) and for runs recorded without
# `metrics`: the name decides. A name with words of both kinds (a custom "accuracy_loss") is lower-is-better.
_LOWER_IS_BETTER = ("loss", "error", "crossentropy", "divergence", "hinge", "poisson", "logcosh", "mae", "mse", "mape",
                    "msle")
_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "fbeta", "score", "iou", "io_u", "r2", "similarity")


def metric_direction(name: str, recorded: Mapping[str, str] | None = None) -> str:
    """MIN or MAX: which way the logged metric `name` is better.

    As `recorded` (run.json `metrics`, read with `recorded_directions`) says for `name`, or for the metric a `val_`
    twin belongs to; else from the name's words alone (unknown names: MIN, as Keras's mode="auto"). Every reader of
    metric directions (Run, the summary, the dashboard's tables) goes through here.

    Example:
    ```python
    metric_direction("val_sparse_categorical_accuracy")  # "max"
    metric_direction("poisson")                          # "min"
    metric_direction("val_peak", {"peak": "max"})        # "max": recorded for its metric
    ```
    """
    if recorded:
        for key in (name, name.removeprefix(VAL_PREFIX)):
            direction = recorded.get(key)
            if direction in (MIN, MAX):
                return direction
    lowered = name.lower()
    if any(word in lowered for word in _LOWER_IS_BETTER):
        return MIN
    return MAX if any(word in lowered for word in _HIGHER_IS_BETTER) else MIN


def recorded_directions(metrics: Any) -> dict[str, str]:
    """run.json `metrics` as {"metric name": MIN | MAX}; anything malformed (not an object, an entry without a valid
    `direction`) is left out.

    Example:
    ```python
    recorded_directions({"loss": {"direction": "min"}, "auc": {"direction": "up"}})  # {"loss": "min"}
    ```
    """
    if not isinstance(metrics, dict):
        return {}
    return {name: entry["direction"] for name, entry in metrics.items()
            if isinstance(entry, dict) and entry.get("direction") in (MIN, MAX)}


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


def dumps_line(record: dict[str, Any]) -> str:
    """One JSONL line: compact, NaN/Infinity allowed, no embedded newline."""
    return json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"


def inside(folder: str, path: str) -> bool:
    """True when `path`, with symlinks resolved, lies inside `folder` (also resolved)."""
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(path)
    return real == real_folder or real.startswith(real_folder + os.sep)


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
