"""The files of a run directory that are read whole: JSON with size caps, the model card, the checkpoint index.

Every path is checked to lie inside the runs root (symlinks resolved) before it is opened; nothing is deserialized
beyond JSON.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from kerascope.monitor import format as fmt
from kerascope.monitor.format import inside

MAX_JSON_FILE_BYTES = 16 * 1024 * 1024
MAX_TEXT_FILE_BYTES = 4 * 1024 * 1024
CHECKPOINT_COLUMNS = ("epoch", "step", "path", "monitor", "value", "is_best", "bytes", "time")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class RunFormatError(ValueError):
    """A run directory this version cannot read (newer format, unreadable run.json)."""


def read_json_file(path: str, max_bytes: int = MAX_JSON_FILE_BYTES) -> Any:
    """Load a JSON file with a size cap and a readable error for anything wrong with it."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise RunFormatError(f"{os.path.basename(path)} is {size:,} bytes, more than the {max_bytes:,} allowed")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RunFormatError(f"{os.path.basename(path)} is not valid JSON ({str(exc)[:120]})") from None


class RunFiles:
    """Mixin of Run: the whole-file readers, confined to the runs root."""

    id: str
    path: str
    root: str
    problems: list[str]

    def _problem(self, message: str) -> None:
        if message not in self.problems and len(self.problems) < 50:
            self.problems.append(message)

    def _file(self, relpath: str) -> str:
        return os.path.join(self.path, relpath)

    def _read_json(self, relpath: str) -> Any:
        path = self._file(relpath)
        if not inside(self.root, path):
            raise PermissionError(f"{relpath} leads outside the runs root: not read")
        return read_json_file(path)

    def checkpoints(self) -> pd.DataFrame:
        """epoch, step, path (relative to the run directory), monitor, value, is_best, bytes, time."""
        try:
            index = self._read_json(fmt.CHECKPOINT_INDEX_FILE)
        except FileNotFoundError:
            index = []
        except OSError as exc:
            self._problem(f"checkpoints/index.json: {exc.strerror or exc}")
            index = []
        except RunFormatError as exc:
            self._problem(f"checkpoints/index.json: {exc}")
            index = []
        rows = [row for row in index if isinstance(row, dict)] if isinstance(index, list) else []
        return frame_of(rows, CHECKPOINT_COLUMNS)

    def model_summary(self) -> str:
        """The model.summary() text recorded at the last fit() call ("" when none)."""
        return self._text(fmt.SUMMARY_FILE)

    def model_graph_dot(self) -> str:
        """DOT source of the model graph ("" when none)."""
        return self._text(fmt.GRAPH_DOT_FILE)

    def model_graph_png(self) -> str | None:
        """Path of the plot_model PNG, or None when graphviz was not available to the training process.

        A file that does not start with the PNG signature (a garbled or foreign file) counts as absent.
        """
        path = self._file(fmt.GRAPH_PNG_FILE)
        if not (os.path.isfile(path) and inside(self.root, path)):
            return None
        try:
            with open(path, "rb") as f:
                return path if f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE else None
        except OSError:
            return None

    def model_config(self) -> dict[str, Any] | None:
        """model.get_config() as JSON (never deserialized into a model), or None."""
        try:
            config = self._read_json(fmt.CONFIG_FILE)
        except (OSError, RunFormatError):
            return None
        return config if isinstance(config, dict) else None

    def file_path(self, relpath: str) -> str:
        """Absolute path of a regular file inside this run; refuses `..`, absolute paths and escaping links."""
        if not relpath or os.path.isabs(relpath) or ".." in relpath.replace("\\", "/").split("/"):
            raise PermissionError(f"refused path {relpath!r}: only relative paths inside the run are served")
        path = self._file(relpath)
        if not inside(self.root, path) or not inside(self.path, path):
            raise PermissionError(f"refused path {relpath!r}: it leads outside the runs root")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{relpath!r} is not a regular file in run {self.id!r}")
        return path

    def _text(self, relpath: str) -> str:
        path = self._file(relpath)
        try:
            if not inside(self.root, path):
                return ""
            with open(path, "rb") as f:
                return f.read(MAX_TEXT_FILE_BYTES).decode("utf-8", errors="replace")
        except OSError:
            return ""


def frame_of(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    ordered = list(columns) + [c for c in frame.columns if c not in columns]
    return frame[ordered]
