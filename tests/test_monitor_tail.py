"""JsonlTail (incremental reads, torn lines, truncation, replacement, long lines), the JSONL parsers, NumericTable."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kerascope.monitor import tail as tail_module
from kerascope.monitor.table import NumericTable
from kerascope.monitor.tail import JsonlTail, parse_numeric_columns, parse_records


def append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_reads_only_what_was_appended_since_the_last_read(tmp_path):
    path = tmp_path / "batch.jsonl"
    tail = JsonlTail(str(path))
    assert tail.read().data == b""  # a file that does not exist yet is not an error
    append(path, b'{"step":1}\n{"step":2}\n')
    assert tail.read().data == b'{"step":1}\n{"step":2}\n'
    assert tail.read().data == b""
    append(path, b'{"step":3}\n')
    chunk = tail.read()
    assert chunk.data == b'{"step":3}\n' and not chunk.reset and tail.offset == os.path.getsize(path)


def test_a_torn_last_line_is_held_back_until_its_newline_arrives(tmp_path):
    path = tmp_path / "batch.jsonl"
    tail = JsonlTail(str(path))
    append(path, b'{"step":1}\n{"step":2,"lo')
    assert tail.read().data == b'{"step":1}\n'
    append(path, b'ss":0.5')
    assert tail.read().data == b""
    append(path, b'}\n{"st')
    assert tail.read().data == b'{"step":2,"loss":0.5}\n'


def test_truncation_restarts_from_the_beginning_and_says_so(tmp_path):
    path = tmp_path / "epoch.jsonl"
    tail = JsonlTail(str(path))
    append(path, b'{"epoch":0}\n{"epoch":1}\n')
    tail.read()
    with open(path, "wb") as f:
        f.write(b'{"epoch":9}\n')
    chunk = tail.read()
    assert chunk.reset and chunk.data == b'{"epoch":9}\n'


def test_a_replaced_file_is_read_again_even_when_it_is_longer(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = JsonlTail(str(path))
    append(path, b'{"a":1}\n')
    tail.read()
    replacement = tmp_path / "new.jsonl"
    replacement.write_bytes(b'{"b":1}\n{"b":2}\n')
    os.replace(replacement, path)
    chunk = tail.read()
    assert chunk.reset and chunk.data == b'{"b":1}\n{"b":2}\n'


def test_a_deleted_file_resets_once(tmp_path):
    path = tmp_path / "system.jsonl"
    tail = JsonlTail(str(path))
    append(path, b'{"time":1}\n{"time":2,')
    tail.read()
    path.unlink()
    assert tail.read().reset
    second = tail.read()
    assert not second.reset and second.data == b""
    append(path, b'{"time":3}\n')
    assert tail.read().data == b'{"time":3}\n'  # the torn fragment of the old file is gone too


def test_a_line_longer_than_the_limit_is_dropped_with_a_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(tail_module, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "batch.jsonl"
    tail = JsonlTail(str(path))
    append(path, b'{"step":1}\n{"huge":"' + b"x" * 1500)
    chunk = tail.read()
    assert chunk.data == b'{"step":1}\n'
    assert chunk.problems == ["batch.jsonl: a line longer than 1,000 bytes was dropped"]
    append(path, b"y" * 300)  # still the same line: dropped without growing memory
    assert tail.read().data == b"" and tail._pending == b"y" * 300
    append(path, b'"}\n{"step":2}\n')
    assert tail.read().data == b'{"step":2}\n'


def test_reads_in_blocks_keep_lines_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(tail_module, "READ_BLOCK_BYTES", 7)
    path = tmp_path / "batch.jsonl"
    body = b"".join(json.dumps({"step": i, "loss": i / 3}).encode() + b"\n" for i in range(50))
    append(path, body + b'{"step":')
    tail = JsonlTail(str(path))
    assert tail.read().data == body


def test_parse_records_counts_what_is_not_a_json_object():
    data = b'{"a":1}\n[1,2]\n"text"\n{bad\n\n   \n' + b"[" * 100000 + b"\n" + b'{"b":NaN}\n\xff\xfe\n'
    records, bad = parse_records(data)
    assert records[0] == {"a": 1} and np.isnan(records[1]["b"]) and len(records) == 2
    assert bad == 5


def test_numeric_columns_keep_numbers_and_blank_out_the_rest():
    records = [{"step": 1, "loss": 0.5, "name": "x"}, {"step": 2, "loss": "high", "acc": True}, {"step": 3}]
    columns, rows, bad = parse_numeric_columns(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    assert (rows, bad) == (3, 0)
    assert set(columns) == {"step", "loss", "acc"}  # "name" never holds a number
    np.testing.assert_array_equal(columns["step"], [1, 2, 3])
    np.testing.assert_array_equal(columns["loss"], [0.5, np.nan, np.nan])
    np.testing.assert_array_equal(columns["acc"], [np.nan, 1.0, np.nan])


@pytest.mark.parametrize("bad_line", [b"", b"{broken\n", b'{"step":"text"}\n'])
def test_large_inputs_parse_the_same_with_or_without_pyarrow(bad_line):
    rows = [{"step": i, "loss": 1 / (i + 1), "lr": 0.001} for i in range(30000)]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    assert len(data) >= tail_module.BULK_PARSE_BYTES
    columns, count, bad = parse_numeric_columns(data + bad_line)
    expected_bad = 1 if bad_line.startswith(b"{broken") else 0
    assert count == 30000 + (1 if b"text" in bad_line else 0) and bad == expected_bad
    np.testing.assert_array_equal(columns["step"][:30000], np.arange(30000))
    np.testing.assert_allclose(columns["loss"][:30000], [r["loss"] for r in rows])


def test_numeric_table_grows_and_aligns_late_and_missing_columns():
    table = NumericTable()
    table.append({"step": np.array([1.0, 2.0]), "loss": np.array([0.9, 0.8])}, 2)
    table.append({"step": np.arange(3.0, 2003.0), "acc": np.full(2000, 0.5)}, 2000)  # past the first capacity
    assert len(table) == 2002
    frame = table.frame(("step",))
    assert list(frame.columns) == ["step", "acc", "loss"] and frame["step"].dtype == np.int64
    assert frame["step"].tolist() == list(range(1, 2003))
    assert np.isnan(frame["acc"][:2]).all() and np.isnan(frame["loss"][2:]).all()
    assert table.frame(("step",)) is frame  # cached until the next append
    table.append({"step": np.array([np.nan])}, 1)
    assert table.frame(("step",)) is not frame and table.frame()["step"].dtype == np.float64  # a gap: no int cast
    views = table.arrays()
    assert len(views["loss"]) == 2003 and not views["loss"].flags.writeable
    table.append({}, 0)
    assert len(table) == 2003
    table.clear()
    assert len(table) == 0 and table.frame().empty


def test_a_column_cap_keeps_the_first_names_and_counts_the_rest():
    record = {"step": 1, **{f"m{i}": float(i) for i in range(1000)}}
    dropped: set[str] = set()
    columns, rows, _ = parse_numeric_columns(json.dumps(record).encode() + b"\n", max_columns=10, dropped=dropped)
    assert list(columns) == ["step", *(f"m{i}" for i in range(9))] and rows == 1 and len(dropped) == 991
