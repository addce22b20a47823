"""RunFiles: the files of one run directory, opened only when they resolve inside the logdir (symlinks resolved).

Nothing is deserialized beyond JSON, and whole-file reads are size-capped.
"""

from __future__ import annotations

import json
import os
from typing import Any

from kerascope.monitor.format import inside

MAX_JSON_FILE_BYTES = 16 * 1024 * 1024
MAX_TEXT_FILE_BYTES = 4 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class RunFormatError(ValueError):
    """A run file this version cannot read: unreadable, too large, not JSON, or a newer format."""


class RunFiles:
    """Confined access to the files of one run directory.

    Every path is checked to lie inside `logdir` before it is opened, so a link planted in a run cannot make the
    dashboard read or serve a file from elsewhere.

    Args:
        run_dir: the run directory.
        logdir: the runs folder that every file must resolve inside.

    Example:
    ```python
    files = RunFiles("runs/20260101-120000-mlp-1a2b", "runs")
    meta = files.read_json("run.json")      # FileNotFoundError, or RunFormatError saying why
    summary = files.read_text("model/summary.txt")
    ```
    """

    def __init__(self, run_dir: str, logdir: str) -> None:
        self.run_dir = run_dir
        self.logdir = logdir

    def path(self, relpath: str) -> str:
        """The absolute path of `relpath` in the run, unchecked (for watching files that may not exist yet)."""
        return os.path.join(self.run_dir, relpath)

    def confined(self, relpath: str) -> str:
        """The absolute path of `relpath`; PermissionError when it resolves outside the logdir."""
        path = self.path(relpath)
        if not inside(self.logdir, path):
            raise PermissionError(f"{relpath} leads outside the runs root: not read")
        return path

    def stamp(self, relpath: str) -> tuple[int, int]:
        """(inode, mtime in ns) of a file, which changes whenever it is replaced or rewritten. Raises like read_json."""
        try:
            st = os.stat(self.path(relpath))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise RunFormatError(exc.strerror or str(exc)) from exc
        return st.st_ino, st.st_mtime_ns

    def read_json(self, relpath: str) -> Any:
        """A whole JSON file. Raises FileNotFoundError when it is missing, else RunFormatError saying why it could not
        be read (the OS error, the size cap, invalid JSON, a link outside the logdir)."""
        try:
            path = self.confined(relpath)
            size = os.path.getsize(path)
            if size > MAX_JSON_FILE_BYTES:
                raise RunFormatError(
                    f"{os.path.basename(path)} is {size:,} bytes, more than the {MAX_JSON_FILE_BYTES:,} allowed"
                )
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise RunFormatError(exc.strerror or str(exc)) from exc
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise RunFormatError(f"{os.path.basename(path)} is not valid JSON ({str(exc)[:120]})") from None

    def read_text(self, relpath: str) -> str:
        """A text file (at most MAX_TEXT_FILE_BYTES, undecodable bytes replaced); "" when missing or unreadable."""
        try:
            with open(self.confined(relpath), "rb") as f:
                return f.read(MAX_TEXT_FILE_BYTES).decode("utf-8", errors="replace")
        except OSError:
            return ""

    def png(self, relpath: str) -> str | None:
        """The path of a PNG file, or None when missing, unreadable or not a PNG (a garbled or foreign file)."""
        try:
            path = self.confined(relpath)
            if not os.path.isfile(path):
                return None
            with open(path, "rb") as f:
                return path if f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE else None
        except OSError:
            return None

    def served(self, relpath: str) -> str:
        """The path of a regular file to hand to a user; refuses `..`, absolute paths and links leaving the run."""
        if not relpath or os.path.isabs(relpath) or ".." in relpath.replace("\\", "/").split("/"):
            raise PermissionError(f"refused path {relpath!r}: only relative paths inside the run are served")
        path = self.path(relpath)
        if not inside(self.logdir, path) or not inside(self.run_dir, path):
            raise PermissionError(f"refused path {relpath!r}: it leads outside the runs root")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{relpath!r} is not a regular file in run {os.path.basename(self.run_dir)!r}")
        return path
