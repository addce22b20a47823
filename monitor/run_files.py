"""RunFiles: the files of one run directory, opened only when they resolve inside the logdir (symlinks resolved).

Nothing is deserialized beyond JSON, whole-file reads are size-capped, and only regular files are read: a FIFO or a
device planted under a run's file name would block a reader (and every dashboard session waiting on it) forever.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any, BinaryIO

from kerascope.monitor.format import inside

MAX_JSON_FILE_BYTES = 16 * 1024 * 1024
MAX_TEXT_FILE_BYTES = 4 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class RunFormatError(ValueError):
    """A run file this version cannot read: unreadable, too large, not JSON, or a newer format."""


class NotRegularFileError(OSError):
    """A run file that is a FIFO, a device, a socket or a folder: never read."""


def open_regular(path: str) -> BinaryIO:
    """Open `path` for reading in binary mode only when it is a regular file, without ever blocking.

    `O_NONBLOCK` makes opening a FIFO return at once instead of waiting for a writer; the type is then checked on the
    open descriptor, so a file swapped for a FIFO between a check and the open is refused too. Reads of a regular file
    ignore O_NONBLOCK.

    Raises:
        NotRegularFileError: the path is not a regular file. FileNotFoundError and other OSErrors as `open` does.

    Example:
    ```python
    with open_regular("runs/some-run/run.json") as f:
        data = f.read(1024)
    ```
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)  # non-inheritable, as every descriptor of Python
    try:
        require_regular(os.fstat(fd).st_mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def require_regular(mode: int) -> None:
    """Raise NotRegularFileError, saying what it is, unless `mode` (an `st_mode`) is a regular file's."""
    if stat.S_ISDIR(mode):
        raise NotRegularFileError(errno.EISDIR, os.strerror(errno.EISDIR))
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind}): not read")


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
            with open_regular(path) as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_JSON_FILE_BYTES:
                    raise RunFormatError(
                        f"{os.path.basename(path)} is {size:,} bytes, more than the {MAX_JSON_FILE_BYTES:,} allowed"
                    )
                data = f.read(MAX_JSON_FILE_BYTES + 1)
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
            with open_regular(self.confined(relpath)) as f:
                return f.read(MAX_TEXT_FILE_BYTES).decode("utf-8", errors="replace")
        except OSError:
            return ""

    def png(self, relpath: str) -> str | None:
        """The path of a PNG file, or None when missing, unreadable or not a PNG (a garbled or foreign file)."""
        try:
            path = self.confined(relpath)
            with open_regular(path) as f:
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
