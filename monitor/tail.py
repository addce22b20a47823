"""Incremental reading of append-only JSONL files.

A `JsonlTail` remembers how far it has read; each `read()` returns only the complete lines written since, so the
cost of a refresh grows with the new bytes, not with the length of the run. A torn last line (a writer caught
mid-write, or killed) is held back until its newline arrives. A file that shrank or was replaced is read again from
the start, and the caller is told so.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerascope.monitor.format import inside
from kerascope.monitor.run_files import open_regular, require_regular
from kerascope.monitor.table import MAX_DROPPED_NAMES

# A single line longer than this is not a record any writer of ours produces: it is dropped, not buffered forever.
MAX_LINE_BYTES = 4 * 1024 * 1024
# The first read of a large file is parsed by pyarrow's multi-threaded JSON reader instead of line by line.
BULK_PARSE_BYTES = 1 * 1024 * 1024
# What pyarrow is never handed (such chunks are parsed line by line with Python's json): a line with more `[`/`{`
# than MAX_BULK_NESTING (pyarrow's parser recurses natively without a depth limit, and a line nested ~20,000 levels
# deep crashes the process with SIGSEGV where Python's json raises RecursionError), or one longer than
# MAX_BULK_LINE_BYTES (100,000 keys in one record cost pyarrow 500 MB). Our writers' numeric records are flat and short.
MAX_BULK_NESTING = 64
MAX_BULK_LINE_BYTES = 64 * 1024
_SCAN_BLOCK_BYTES = 4 * 1024 * 1024  # the scan looks at this much at a time (bounded memory)
READ_BLOCK_BYTES = 64 * 1024 * 1024


@dataclass
class Chunk:
    """Complete lines read by one `JsonlTail.read()` call."""

    data: bytes = b""
    reset: bool = False  # the file was truncated or replaced: drop what was read before
    more: bool = False  # `max_bytes` stopped the read before the end of the file: call read() again
    problems: list[str] = field(default_factory=list)


class JsonlTail:
    """Incremental reader of one JSONL file.

    Args:
        path: the file (it may not exist yet).
        logdir: when given, the file is read only while it resolves inside this folder (a symlink that leaves the
            runs folder raises PermissionError instead of being followed).
    """

    def __init__(self, path: str, logdir: str | None = None) -> None:
        self.path = path
        self.logdir = logdir
        self.offset = 0
        self._identity: tuple[int, int] | None = None
        self._pending = b""
        self._skipping_long_line = False

    def read(self, max_bytes: int | None = None) -> Chunk:
        """The complete lines appended since the last call (at most about `max_bytes` of them when given)."""
        chunk = Chunk()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._identity is not None:
                self._restart(chunk)
            return chunk
        require_regular(st.st_mode)
        identity = (st.st_dev, st.st_ino)
        # Checked once per file identity, so following an open file costs no path resolution per read.
        if identity != self._identity and self.logdir is not None and not inside(self.logdir, self.path):
            raise PermissionError("a link that leads outside the runs root: not read")
        if self._identity is not None and (identity != self._identity or st.st_size < self.offset):
            self._restart(chunk)
        self._identity = identity
        if st.st_size <= self.offset:
            return chunk
        pieces = []
        budget = st.st_size - self.offset if max_bytes is None else min(max_bytes, st.st_size - self.offset)
        with open_regular(self.path) as f:
            f.seek(self.offset)
            while budget > 0:
                block = f.read(min(READ_BLOCK_BYTES, budget))
                if not block:
                    break
                budget -= len(block)
                self.offset += len(block)
                pieces.append(self._complete_lines(block, chunk))
        chunk.data = b"".join(pieces)
        chunk.more = self.offset < st.st_size
        return chunk

    def _restart(self, chunk: Chunk) -> None:
        chunk.reset = True
        self.offset = 0
        self._pending = b""
        self._skipping_long_line = False
        self._identity = None

    def _complete_lines(self, block: bytes, chunk: Chunk) -> bytes:
        data = self._pending + block
        cut = data.rfind(b"\n") + 1
        complete, self._pending = data[:cut], data[cut:]
        if self._skipping_long_line and cut:
            complete = complete[complete.find(b"\n") + 1 :]
            self._skipping_long_line = False
        if len(self._pending) > MAX_LINE_BYTES:
            name = os.path.basename(self.path)
            chunk.problems.append(f"{name}: a line longer than {MAX_LINE_BYTES:,} bytes was dropped")
            self._pending = b""
            self._skipping_long_line = True
        return complete


def iter_records(data: bytes) -> Iterator[tuple[dict[str, Any] | None, int]]:
    """Each non-blank JSONL line of `data` as (the dict it holds, or None when it is not a JSON object; its byte
    length with the newline). A generator, so that a caller folding records one by one never holds them all."""
    for line in io.BytesIO(data):  # line by line, not a list of a million lines (io.BytesIO shares `data`)
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            value = None
        yield (value if isinstance(value, dict) else None), len(line) + (not line.endswith(b"\n"))


def parse_records(data: bytes, sizes: list[int] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Parse complete JSONL lines into dicts; returns (records, number of lines that were not a JSON object).

    When `sizes` is given, the byte length of each returned record's line is appended to it.
    """
    records: list[dict[str, Any]] = []
    bad = 0
    for record, size in iter_records(data):
        if record is None:
            bad += 1
            continue
        records.append(record)
        if sizes is not None:
            sizes.append(size)
    return records, bad


def parse_numeric_columns(
    data: bytes, max_columns: int | None = None, dropped: set[str] | None = None
) -> tuple[dict[str, np.ndarray], int, int]:
    """Parse JSONL lines into float64 columns; returns (columns, rows, bad lines).

    Large inputs go through pyarrow; if pyarrow refuses them (a malformed line, a value of the wrong type) or a line
    is too deep or too long to hand to it (`bulk_parsable`), they are split into pieces of about BULK_PARSE_BYTES and
    only those pieces are parsed line by line, so one bad record costs one record and little time.

    Line by line, at most `max_columns` columns are built (the first names seen); the names left out are added to
    `dropped` (at most MAX_DROPPED_NAMES of them), so a record with 100,000 keys costs no more than its line.
    """
    if len(data) >= BULK_PARSE_BYTES:
        parsed = _parse_with_pyarrow(data) if bulk_parsable(data) else None
        if parsed is not None:
            columns, rows = parsed
            return columns, rows, 0
        if len(data) >= 2 * BULK_PARSE_BYTES:
            return _parse_in_pieces(data, max_columns, dropped)
    return _columns_from_lines(data, max_columns, dropped)


def _columns_from_lines(
    data: bytes, max_columns: int | None, dropped: set[str] | None
) -> tuple[dict[str, np.ndarray], int, int]:
    """Line-by-line parse straight into columns: each record is reduced to its kept columns as soon as it is read."""
    columns: dict[str, list[float]] = {}
    numeric: set[str] = set()  # columns that held a number at least once (NaN included); the others are dropped
    rows = bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if not isinstance(record, dict):
            bad += 1
            continue
        for name, value in record.items():
            column = columns.get(name)
            if column is None:
                if max_columns is not None and len(columns) >= max_columns:
                    if dropped is not None and len(dropped) < MAX_DROPPED_NAMES:
                        dropped.add(name)
                    continue
                column = columns[name] = [np.nan] * rows
            if isinstance(value, (int, float)):
                column.append(float(value))
                numeric.add(name)
            else:
                column.append(np.nan)
        rows += 1
        for column in columns.values():
            if len(column) < rows:
                column.append(np.nan)
    return {name: np.array(columns[name], dtype=np.float64) for name in columns if name in numeric}, rows, bad


def bulk_parsable(data: bytes) -> bool:
    """True when pyarrow may be handed `data`: no line holds more than MAX_BULK_NESTING opening brackets (`[` or `{`,
    strings included, an upper bound of its nesting depth) and none is longer than MAX_BULK_LINE_BYTES.

    Computed with numpy a few MB at a time, in a few ms per MB.
    """
    view = np.frombuffer(data, dtype=np.uint8)
    check_nesting = data.count(b"[") + data.count(b"{") > MAX_BULK_NESTING
    openers_carried = 0  # openers of the line that continues from the previous block
    line_start = 0  # where the current line began, in `data`
    for start in range(0, len(view), _SCAN_BLOCK_BYTES):
        block = view[start : start + _SCAN_BLOCK_BYTES]
        breaks = np.flatnonzero(block == ord("\n"))
        ends = np.concatenate(([line_start - start - 1], breaks))
        if len(breaks) and np.diff(ends).max() > MAX_BULK_LINE_BYTES:
            return False
        if len(breaks):
            line_start = start + int(breaks[-1]) + 1
        if len(view) - line_start > MAX_BULK_LINE_BYTES and start + len(block) == len(view):
            return False
        if not check_nesting:
            continue
        openers = np.flatnonzero((block == ord("[")) | (block == ord("{")))
        # Openers per line: the line ends cut the sorted opener positions.
        per_line = np.diff(np.searchsorted(openers, breaks), prepend=0)
        if len(per_line):
            per_line[0] += openers_carried
            tail = len(openers) - int(np.searchsorted(openers, breaks[-1]))
        else:
            tail = openers_carried + len(openers)
        if (len(per_line) and per_line.max() > MAX_BULK_NESTING) or tail > MAX_BULK_NESTING:
            return False
        openers_carried = tail
    return True


def _parse_in_pieces(
    data: bytes, max_columns: int | None, dropped: set[str] | None
) -> tuple[dict[str, np.ndarray], int, int]:
    parts: list[tuple[dict[str, np.ndarray], int]] = []
    total_rows = total_bad = start = 0
    while start < len(data):
        end = data.find(b"\n", start + BULK_PARSE_BYTES) + 1 or len(data)
        if end - start == len(data):  # a single line longer than a piece: nothing left to split
            columns, rows, bad = _columns_from_lines(data, max_columns, dropped)
        else:
            columns, rows, bad = parse_numeric_columns(data[start:end], max_columns, dropped)
        parts.append((columns, rows))
        total_rows, total_bad, start = total_rows + rows, total_bad + bad, end
    names = dict.fromkeys(name for columns, _ in parts for name in columns)
    merged = {
        name: np.concatenate([columns.get(name, np.full(rows, np.nan)) for columns, rows in parts]) for name in names
    }
    return merged, total_rows, total_bad


def _parse_with_pyarrow(data: bytes) -> tuple[dict[str, np.ndarray], int] | None:
    """(numeric columns, records) of JSONL `data`, or None when pyarrow refuses it or a column is not numeric. Every
    record counts, also one without a number (as the line-by-line parser counts it)."""
    try:
        import pyarrow as pa
        import pyarrow.json as pa_json

        table = pa_json.read_json(io.BytesIO(data), read_options=pa_json.ReadOptions(block_size=16 * 1024 * 1024))
    except Exception:
        return None
    columns: dict[str, np.ndarray] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            columns[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_null(kind):
            continue
        else:
            # A text or nested value where numbers are expected: let the line-by-line parser judge each line.
            return None
    return columns, table.num_rows
