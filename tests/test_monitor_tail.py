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


def test_the_first_read_of_an_existing_file_is_not_a_reset(tmp_path):
    path = tmp_path / "epoch.jsonl"
    append(path, b'{"epoch":0}\n')
    chunk = JsonlTail(str(path)).read()
    assert (chunk.data, chunk.reset, chunk.more, chunk.problems) == (b'{"epoch":0}\n', False, False, [])


def test_a_link_that_leaves_the_runs_root_is_refused(tmp_path):
    root, outside = tmp_path / "runs", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    append(outside / "batch.jsonl", b'{"secret":1}\n')
    os.symlink(outside / "batch.jsonl", root / "batch.jsonl")
    with pytest.raises(PermissionError, match="^a link that leads outside the runs root: not read$"):
        JsonlTail(str(root / "batch.jsonl"), logdir=str(root)).read()
    assert JsonlTail(str(root / "batch.jsonl")).read().data == b'{"secret":1}\n'  # no root given: not confined
    append(root / "own.jsonl", b'{"a":1}\n')
    assert JsonlTail(str(root / "own.jsonl"), logdir=str(root)).read().data == b'{"a":1}\n'


def test_max_bytes_bounds_each_read_and_more_says_what_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(tail_module, "READ_BLOCK_BYTES", 4)
    path = tmp_path / "batch.jsonl"
    append(path, b'{"s":1}\n{"s":2}\n{"s":3}\n')  # three lines of 8 bytes
    tail = JsonlTail(str(path))
    chunk = tail.read(max_bytes=10)
    assert (chunk.data, chunk.more, tail.offset) == (b'{"s":1}\n', True, 10)
    chunk = tail.read(max_bytes=10)
    assert (chunk.data, chunk.more, tail.offset) == (b'{"s":2}\n', True, 20)
    chunk = tail.read(max_bytes=10)
    assert (chunk.data, chunk.more, tail.offset) == (b'{"s":3}\n', False, 24)
    chunk = tail.read(max_bytes=10)
    assert (chunk.data, chunk.more, chunk.reset) == (b"", False, False)


def test_one_byte_at_a_time(tmp_path):
    path = tmp_path / "batch.jsonl"
    append(path, b"{}\n")
    tail = JsonlTail(str(path))
    assert [(c.data, c.more) for c in (tail.read(1), tail.read(1), tail.read(1))] == [
        (b"", True), (b"", True), (b"{}\n", False)]


def test_a_file_cut_short_while_it_is_read_returns_what_was_there(tmp_path, monkeypatch):
    path = tmp_path / "batch.jsonl"
    append(path, b'{"s":1}\n{"s":2}\n')
    real_open = tail_module.open_regular

    def truncated_after_stat(name):  # the writer rewrites the file between read()'s stat and its open
        os.truncate(name, 0)
        return real_open(name)

    monkeypatch.setattr(tail_module, "open_regular", truncated_after_stat)
    chunk = JsonlTail(str(path)).read()
    assert (chunk.data, chunk.more) == (b"", True)


def test_a_line_exactly_at_the_limit_is_kept_and_reading_goes_on_after_a_dropped_one(tmp_path, monkeypatch):
    monkeypatch.setattr(tail_module, "MAX_LINE_BYTES", 20)
    path = tmp_path / "batch.jsonl"
    tail = JsonlTail(str(path))
    line = b'{"k":"' + b"x" * 12 + b'"}'  # 20 bytes before its newline
    append(path, line)
    assert tail.read().data == b"" and tail.read().problems == []
    append(path, b'\n{"long":"' + b"y" * 20)
    chunk = tail.read()
    assert chunk.data == line + b"\n" and chunk.problems == ["batch.jsonl: a line longer than 20 bytes was dropped"]
    append(path, b'"}\n{"a":1}\n')
    assert tail.read().data == b'{"a":1}\n'
    append(path, b'{"a":2}\n')
    assert tail.read().data == b'{"a":2}\n'  # the skipping ended with the long line


def test_record_sizes_count_the_newline_even_when_it_is_missing():
    sizes: list[int] = []
    records, bad = parse_records(b'{"a":1}\n\n[2]\n{"b":22}', sizes)
    assert records == [{"a": 1}, {"b": 22}] and bad == 1 and sizes == [8, 9]


def lines(records) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def test_inputs_pyarrow_refuses_are_parsed_piece_by_piece(monkeypatch):
    monkeypatch.setattr(tail_module, "BULK_PARSE_BYTES", 64)
    records = [{"step": i, "loss": i / 4} for i in range(12)]
    records[3] = {"step": 3, "loss": "high"}  # a text value: pyarrow refuses the whole input
    records[9]["acc"] = 0.5  # a column that only a later piece has
    data = lines(records[:6]) + b"{broken\n" + lines(records[6:])
    columns, rows, bad = parse_numeric_columns(data)
    assert (rows, bad) == (12, 1) and list(columns) == ["step", "loss", "acc"]
    np.testing.assert_array_equal(columns["step"], np.arange(12.0))
    np.testing.assert_array_equal(columns["loss"], [0, 0.25, 0.5, np.nan, 1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75])
    np.testing.assert_array_equal(columns["acc"], [np.nan] * 9 + [0.5] + [np.nan] * 2)
    # The column cap holds where lines are parsed one by one (the two pieces pyarrow refused); pyarrow's pieces keep
    # every column (the table caps them after).
    dropped: set[str] = set()
    columns, rows, bad = parse_numeric_columns(data, max_columns=1, dropped=dropped)
    assert (rows, bad, dropped) == (12, 1, {"loss"})
    np.testing.assert_array_equal(columns["step"], np.arange(12.0))
    np.testing.assert_array_equal(columns["loss"], [0, 0.25, 0.5] + [np.nan] * 6 + [2.25, 2.5, 2.75])


def test_a_single_line_longer_than_a_piece_is_parsed_on_its_own(monkeypatch):
    monkeypatch.setattr(tail_module, "BULK_PARSE_BYTES", 64)
    data = json.dumps({"step": 1, "note": "n" * 200, "loss": 0.5}).encode()  # no newline: one piece
    columns, rows, bad = parse_numeric_columns(data)
    assert (list(columns), rows, bad) == (["step", "loss"], 1, 0)
    assert columns["loss"].tolist() == [0.5]


def test_pyarrow_and_the_line_parser_agree_on_bools_nulls_and_missing_values(monkeypatch):
    data = lines([{"step": 1, "flag": True, "none": None, "x": 1}, {"step": 2, "flag": False, "none": None}] * 40)
    assert len(data) >= 2 * 64
    line_by_line = parse_numeric_columns(data)  # small: line by line
    monkeypatch.setattr(tail_module, "BULK_PARSE_BYTES", 64)
    bulk = parse_numeric_columns(data)  # pyarrow
    for columns, rows, bad in (line_by_line, bulk):
        assert sorted(columns) == ["flag", "step", "x"] and (rows, bad) == (80, 0)
        np.testing.assert_array_equal(columns["flag"], [1.0, 0.0] * 40)
        np.testing.assert_array_equal(columns["x"], [1.0, np.nan] * 40)


def reference_bulk_parsable(data: bytes, nesting: int, line_bytes: int) -> bool:
    """Every line (its newline included) at most `line_bytes` long and with at most `nesting` openers."""
    *ended, last = data.split(b"\n")
    if any(len(line) + 1 > line_bytes for line in ended) or len(last) > line_bytes:
        return False
    return all(line.count(b"[") + line.count(b"{") <= nesting for line in (*ended, last))


def test_bulk_parsable_matches_its_definition_across_scan_blocks(monkeypatch):
    monkeypatch.setattr(tail_module, "MAX_BULK_NESTING", 3)
    monkeypatch.setattr(tail_module, "MAX_BULK_LINE_BYTES", 10)
    monkeypatch.setattr(tail_module, "_SCAN_BLOCK_BYTES", 4)
    rng = np.random.default_rng(7)
    alphabets = [np.frombuffer(b"a[{\n\n", dtype=np.uint8), np.frombuffer(b"aaaaaaa[{\n", dtype=np.uint8)]
    checked = {True: 0, False: 0}
    for index in range(3000):
        data = rng.choice(alphabets[index % 2], size=int(rng.integers(0, 40))).tobytes()
        expected = reference_bulk_parsable(data, 3, 10)
        assert tail_module.bulk_parsable(data) is expected, data
        checked[expected] += 1
    assert min(checked.values()) > 300  # both answers well exercised
    for data, expected in [(b"", True), (b"a" * 9 + b"\n", True), (b"a" * 10 + b"\n", False), (b"a" * 10, True),
                           (b"a" * 11, False), (b"[[[\n[[[\n", True), (b"[[[[\n", False), (b"\n" + b"[" * 4, False),
                           (b"aaa[[\n[[a\n", True), (b"aaa[[[[\naa", False),
                           (b"a\n" + b"a" * 10 + b"\n", False), (b"a\n" + b"a" * 9 + b"\n", True),
                           (b"a\n" + b"a" * 11, False), (b"a\n" + b"a" * 10, True)]:
        assert tail_module.bulk_parsable(data) is expected, data


def test_records_without_numbers_count_as_rows_in_both_parsers(monkeypatch):
    data = b'{"note":null}\n{}\n' * 10
    line_by_line = parse_numeric_columns(data)
    monkeypatch.setattr(tail_module, "BULK_PARSE_BYTES", 64)
    assert tail_module.bulk_parsable(data)
    assert parse_numeric_columns(data) == line_by_line == ({}, 20, 0)


def test_every_bad_line_is_counted_and_the_rest_still_read():
    data = b'{"a":1}\n{bad\n[1]\n{bad again\n"x"\n\n{"a":2}\n'
    columns, rows, bad = parse_numeric_columns(data)
    assert (rows, bad) == (2, 4) and columns["a"].tolist() == [1.0, 2.0]


def test_the_column_cap_without_a_dropped_set_and_the_dropped_names_cap(monkeypatch):
    monkeypatch.setattr(tail_module, "MAX_DROPPED_NAMES", 10)
    record = {"step": 1, **{f"m{index}": 1.0 for index in range(20)}}
    line = json.dumps(record).encode() + b"\n"
    columns, rows, _ = parse_numeric_columns(line, max_columns=2)
    assert list(columns) == ["step", "m0"] and rows == 1
    dropped: set[str] = set()
    parse_numeric_columns(line, max_columns=1, dropped=dropped)
    assert dropped == {f"m{index}" for index in range(10)}


def padded(step: int, loss: object) -> bytes:
    """A 100-byte line (99 and its newline)."""
    line = json.dumps({"step": step, "loss": loss, "pad": ""}).encode()
    return line[:-2] + b"x" * (99 - len(line)) + b'"}\n'


def test_pieces_follow_each_other_to_the_end(monkeypatch):
    monkeypatch.setattr(tail_module, "BULK_PARSE_BYTES", 64)
    data = padded(0, 0.5) + padded(1, "text") + padded(2, 0.25)  # pieces of one line each: 0-100, 100-200, 200-300
    assert len(data) == 300
    columns, rows, bad = parse_numeric_columns(data)
    assert (rows, bad) == (3, 0) and columns["step"].tolist() == [0.0, 1.0, 2.0]
    np.testing.assert_array_equal(columns["loss"], [0.5, np.nan, 0.25])


def test_a_single_long_line_keeps_the_column_cap(monkeypatch):
    monkeypatch.setattr(tail_module, "BULK_PARSE_BYTES", 64)
    data = json.dumps({"step": 1, "note": "n" * 200, "loss": 0.5}).encode()
    dropped: set[str] = set()
    columns, rows, bad = parse_numeric_columns(data, max_columns=1, dropped=dropped)
    assert (list(columns), rows, bad, dropped) == (["step"], 1, 0, {"note", "loss"})


def test_a_line_nested_too_deep_for_pyarrow_is_a_bad_line_not_a_crash():
    rows = b"".join(json.dumps({"step": i, "loss": 0.5}).encode() + b"\n" for i in range(40_000))
    data = rows + b'{"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}\n"
    assert len(data) >= tail_module.BULK_PARSE_BYTES  # large enough for pyarrow, were it not refused
    columns, count, bad = parse_numeric_columns(data)
    assert (count, bad) == (40_000, 1) and columns["step"][-1] == 39_999


def test_a_read_stops_at_the_size_the_file_had_when_it_began(tmp_path, monkeypatch):
    path = tmp_path / "batch.jsonl"
    append(path, b'{"s":1}\n')
    tail = JsonlTail(str(path))
    tail.read()
    append(path, b'{"s":2}\n')
    real_open = tail_module.open_regular

    def appended_after_stat(name):  # the writer appends while read() is under way
        append(path, b'{"s":3}\n')
        return real_open(name)

    monkeypatch.setattr(tail_module, "open_regular", appended_after_stat)
    for max_bytes in (None, 100):
        chunk = tail.read(max_bytes)
        assert (chunk.data, chunk.more) == (b'{"s":2}\n' if max_bytes is None else b'{"s":3}\n', False)
