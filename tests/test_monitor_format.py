"""monitor/format.py's helpers on known inputs: metric directions by name, slugs, JSON conversion, atomic writes."""

from __future__ import annotations

import json
import os
import stat
import sys

import numpy as np
import pytest

from kerascope.monitor import format as fmt


@pytest.mark.parametrize(("name", "expected"), [
    ("val_sparse_categorical_accuracy", "max"),
    ("AUC", "max"),  # case does not matter
    ("val_mean_io_u", "max"),
    ("r2_score", "max"),
    ("cosine_similarity", "max"),
    ("poisson", "min"),
    ("val_mae", "min"),
    ("accuracy_loss", "min"),  # words of both kinds: lower is better
    ("throughput", "min"),  # unknown: Keras's mode="auto" default
])
def test_metric_direction_by_name(name, expected):
    assert fmt.metric_direction(name) == expected


@pytest.mark.parametrize(("name", "max_len", "expected"), [
    ("lr=1e-3 / bn", 48, "lr_1e-3_bn"),
    ("  résumé run!  ", 48, "r_sum_run"),
    ("._-keep.dots-and_dashes-._", 48, "keep.dots-and_dashes"),
    ("///", 48, "run"),
    ("", 48, "run"),
    ("x" * 60, 48, "x" * 48),
    ("abcdef", 3, "abc"),
    ("X-ray_XX", 48, "X-ray_XX"),
])
def test_slugify_keeps_safe_characters_and_trims(name, max_len, expected):
    assert fmt.slugify(name, max_len) == expected


def test_slugify_default_length_is_48():
    assert fmt.slugify("y" * 100) == "y" * 48


class Opaque:
    def __repr__(self) -> str:
        return "<" + "o" * 300 + ">"


def test_to_jsonable_converts_numpy_containers_and_unknown_objects():
    converted = fmt.to_jsonable({
        1: np.float32(0.5), "n": None, "b": True, "s": "text", "i": 7, "f": float("nan"),
        "t": (1, np.int64(2)), "set": {3}, "frozen": frozenset({4}), "array": np.array([[1, 2], [3, 4]]),
        "scalar": np.array(2.5), "object": Opaque(),
    })
    assert list(converted) == ["1", "n", "b", "s", "i", "f", "t", "set", "frozen", "array", "scalar", "object"]
    assert converted["1"] == 0.5 and type(converted["1"]) is float
    assert converted["n"] is None and converted["b"] is True and converted["s"] == "text" and converted["i"] == 7
    assert np.isnan(converted["f"])
    assert converted["t"] == [1, 2] and type(converted["t"][1]) is int
    assert converted["set"] == [3] and converted["frozen"] == [4]
    assert converted["array"] == [[1, 2], [3, 4]]
    assert converted["scalar"] == 2.5 and type(converted["scalar"]) is float
    assert converted["object"] == "<" + "o" * 199  # its repr, cut at 200 characters
    json.dumps(converted)  # JSON-ready


def test_to_jsonable_stops_at_its_depth():
    assert fmt.to_jsonable([[[1]]], max_depth=2) == [["[1]"]]
    assert fmt.to_jsonable({"a": {"b": 1}}, max_depth=1) == {"a": "{'b': 1}"}
    assert fmt.to_jsonable(np.array([1, 2]), max_depth=1) == "[1, 2]"  # tolist() took the last level
    assert fmt.to_jsonable(np.float64(0.25), max_depth=1) == 0.25
    assert fmt.to_jsonable(3, max_depth=0) == 3 and fmt.to_jsonable(1.5, max_depth=0) == 1.5
    assert fmt.to_jsonable({"a": {"b": 1}}, max_depth=2) == {"a": {"b": 1}}
    assert fmt.to_jsonable(np.array([[1, 2]]), max_depth=2) == ["[1, 2]"]
    assert fmt.to_jsonable([Opaque()], max_depth=1) == ["<" + "o" * 199]  # a repr at the depth limit is cut too
    boxed = np.empty((), dtype=object)  # a 0-d array holding a nested list: its content counts one level down
    boxed[()] = [[1]]
    assert fmt.to_jsonable(boxed, max_depth=2) == ["[1]"]
    assert fmt.to_jsonable(boxed, max_depth=3) == [[1]]
    nested: list = [0]
    for _ in range(9):
        nested = [nested]
    assert fmt.to_jsonable(nested) == [[[[[[[["[[0]]"]]]]]]]]  # 8 levels by default


class NotAScalar:
    size = 1

    def item(self):
        raise TypeError("no scalar")


class ItemWithoutSize:  # says nothing about being one value
    def item(self):
        return 2.0


class SizeWithoutItem:
    size = 1


@pytest.mark.parametrize(("value", "expected"), [
    (True, 1.0), (False, 0.0), (3, 3.0), (0.25, 0.25), (np.float32(0.5), 0.5), (np.int64(4), 4.0),
    (np.array([2.0]), 2.0), (np.array([[7]]), 7.0),
    (np.array([1.0, 2.0]), None), (np.array([]), None), ("1.0", None), (None, None), ([1.0], None),
    (np.array(["x"]), None), (NotAScalar(), None), (ItemWithoutSize(), None), (SizeWithoutItem(), None),
])
def test_as_float(value, expected):
    result = fmt.as_float(value)
    assert result == expected and (expected is None or type(result) is float)


def test_dumps_line_is_one_compact_line_with_nan_and_infinity():
    record = {"loss": float("nan"), "lr": float("inf"), "text": "a\nb", "values": [1, 2]}
    assert fmt.dumps_line(record) == '{"loss":NaN,"lr":Infinity,"text":"a\\nb","values":[1,2]}\n'


@pytest.fixture(params=[(0o027, 0o640), (0o022, 0o644), (0o002, 0o664)], ids=["027", "022", "002"])
def umask_and_mode(request):
    umask, mode = request.param
    previous = os.umask(umask)
    yield mode
    os.umask(previous)


def test_write_json_atomic_writes_indented_json_with_the_usual_mode(tmp_path, umask_and_mode):
    path = tmp_path / "status.json"
    path.write_text("old")
    fmt.write_json_atomic(str(path), {"status": "running", "loss": float("nan"), "shape": (2, 3)})
    assert path.read_text(encoding="utf-8") == '{\n "status": "running",\n "loss": NaN,\n "shape": [\n  2,\n  3\n ]\n}'
    assert stat.S_IMODE(os.stat(path).st_mode) == umask_and_mode  # 0666 less the umask, not mkstemp's 0600
    assert os.listdir(tmp_path) == ["status.json"]  # no temporary file left behind


OPENED: list[str] | None = None  # paths os.open was given while a test records them


def _record_opens(event: str, args: tuple) -> None:
    if OPENED is not None and event == "open" and isinstance(args[0], str):
        OPENED.append(args[0])


sys.addaudithook(_record_opens)  # audit hooks cannot be removed: this one records only while OPENED is a list


def test_the_temporary_file_is_a_hidden_file_beside_the_target(tmp_path, monkeypatch):
    """Beside it: os.replace never crosses filesystems; hidden: run listings and uploads skip dot files."""
    global OPENED
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    OPENED = []
    try:
        fmt.write_json_atomic(str(run_dir / "status.json"), {"a": 1})
        written = list(OPENED)
    finally:
        OPENED = None
    temporary = [path for path in written if path.startswith(str(tmp_path)) and not path.endswith("status.json")]
    assert len(temporary) == 1
    assert os.path.dirname(temporary[0]) == str(run_dir) and os.path.basename(temporary[0]).startswith(".tmp-")
    assert os.listdir(run_dir) == ["status.json"] and os.listdir(elsewhere) == []


def test_write_bytes_atomic_into_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fmt.write_bytes_atomic("plain.bin", b"\x00\x01")
    assert (tmp_path / "plain.bin").read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["plain.bin"]


def test_a_failed_atomic_write_removes_its_temporary_file_and_raises(tmp_path):
    target = tmp_path / "a-directory"
    (target / "inside").mkdir(parents=True)  # os.replace cannot put a file over a non-empty directory
    with pytest.raises(OSError):
        fmt.write_bytes_atomic(str(target), b"data")
    assert sorted(os.listdir(tmp_path)) == ["a-directory"]
    assert os.listdir(target) == ["inside"]
