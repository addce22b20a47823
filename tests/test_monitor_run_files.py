"""RunFiles (monitor/run_files.py): what a run's files read as, what is refused and why, and the size caps."""

from __future__ import annotations

import errno
import json
import os

import pytest

from kerascope.monitor import run_files
from kerascope.monitor.run_files import NotRegularFileError, RunFiles, RunFormatError, open_regular, require_regular

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def files(runs_root):
    (runs_root / "r" / "model").mkdir(parents=True)
    return RunFiles(str(runs_root / "r"), str(runs_root))


def write(files: RunFiles, relpath: str, data: bytes | str) -> str:
    path = files.path(relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def test_open_regular_reads_a_regular_file_and_refuses_everything_else(tmp_path):
    (tmp_path / "file").write_bytes(b"data")
    with open_regular(str(tmp_path / "file")) as f:
        assert f.read() == b"data" and f.mode == "rb"
        assert not os.get_inheritable(f.fileno())  # a training process started by the dashboard never gets it
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFileError) as fifo:
        open_regular(str(tmp_path / "fifo"))  # returns at once: no writer is waited for
    assert (fifo.value.errno, fifo.value.strerror) == (errno.EINVAL, "not a regular file (a FIFO): not read")
    with pytest.raises(NotRegularFileError) as folder:
        open_regular(str(tmp_path))
    assert (folder.value.errno, folder.value.strerror) == (errno.EISDIR, os.strerror(errno.EISDIR))
    with pytest.raises(NotRegularFileError) as device:
        open_regular("/dev/null")
    assert device.value.strerror == "not a regular file (a device or socket): not read"
    with pytest.raises(FileNotFoundError):
        open_regular(str(tmp_path / "missing"))


def test_require_regular_accepts_only_a_regular_files_mode(tmp_path):
    (tmp_path / "file").write_text("x")
    require_regular(os.stat(tmp_path / "file").st_mode)
    assert isinstance(NotRegularFileError(1, "x"), OSError)


def test_paths_are_joined_unchecked_and_confined_to_the_root(files, tmp_path):
    assert files.path("model/summary.txt") == os.path.join(files.run_dir, "model/summary.txt")
    assert files.confined("run.json") == os.path.join(files.run_dir, "run.json")
    os.symlink(tmp_path, files.path("escape"))
    with pytest.raises(PermissionError, match=r"^escape/x leads outside the runs root: not read$"):
        files.confined("escape/x")


def test_stamp_changes_when_a_file_is_replaced(files):
    path = write(files, "status.json", "{}")
    st = os.stat(path)
    assert files.stamp("status.json") == (st.st_ino, st.st_mtime_ns)
    write(files, "new.json", "{}")
    os.replace(files.path("new.json"), path)
    assert files.stamp("status.json") != (st.st_ino, st.st_mtime_ns)
    with pytest.raises(FileNotFoundError):
        files.stamp("missing.json")
    with pytest.raises(RunFormatError, match=r"^Not a directory$") as error:
        files.stamp("status.json/inside")
    assert isinstance(error.value.__cause__, NotADirectoryError)


def test_read_json_returns_the_value_or_says_why_not(files, tmp_path, monkeypatch):
    write(files, "run.json", json.dumps({"a": [1, 2]}))
    assert files.read_json("run.json") == {"a": [1, 2]}
    with pytest.raises(FileNotFoundError):
        files.read_json("missing.json")
    write(files, "bad.json", "{" + "x" * 300)
    with pytest.raises(RunFormatError) as bad:
        files.read_json("bad.json")
    assert str(bad.value) == ("bad.json is not valid JSON (Expecting property name enclosed in double quotes: line 1 "
                              "column 2 (char 1))")
    assert bad.value.__cause__ is None
    write(files, "deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(RunFormatError, match=r"^deep.json is not valid JSON \(maximum recursion depth exceeded"):
        files.read_json("deep.json")
    (tmp_path / "secret.json").write_text("{}")
    os.symlink(tmp_path / "secret.json", files.path("linked.json"))
    with pytest.raises(RunFormatError, match=r"^linked.json leads outside the runs root: not read$"):
        files.read_json("linked.json")
    os.mkdir(files.path("folder.json"))
    with pytest.raises(RunFormatError, match=r"^Is a directory$"):
        files.read_json("folder.json")


def test_read_json_refuses_a_file_over_its_cap_by_its_size(files, monkeypatch):
    monkeypatch.setattr(run_files, "MAX_JSON_FILE_BYTES", 1000)
    write(files, "big.json", json.dumps(["x" * 1500]))
    with pytest.raises(RunFormatError, match=r"^big.json is 1,504 bytes, more than the 1,000 allowed$"):
        files.read_json("big.json")
    write(files, "fits.json", json.dumps(["x" * 996]))
    assert files.read_json("fits.json") == ["x" * 996]


def test_read_text_is_capped_decoded_and_empty_when_unreadable(files, monkeypatch):
    write(files, "model/summary.txt", "Model: é\n".encode() + b"\xff\n")
    assert files.read_text("model/summary.txt") == "Model: é\n\ufffd\n"
    monkeypatch.setattr(run_files, "MAX_TEXT_FILE_BYTES", 8)
    assert files.read_text("model/summary.txt") == "Model: \ufffd"  # cut inside the two bytes of é
    assert files.read_text("missing.txt") == "" and files.read_text("model") == ""


def test_png_is_served_only_when_it_starts_with_the_png_signature(files):
    path = write(files, "model/graph.png", PNG + b"\x00" * 20)
    assert files.png("model/graph.png") == path
    write(files, "model/graph.png", b"GIF89a" + PNG)
    assert files.png("model/graph.png") is None
    write(files, "model/graph.png", PNG[:-1])
    assert files.png("model/graph.png") is None
    assert files.png("missing.png") is None and files.png("model") is None


@pytest.mark.parametrize(("relpath", "error", "message"), [
    ("", PermissionError, "refused path '': only relative paths inside the run are served"),
    ("/etc/passwd", PermissionError, "refused path '/etc/passwd': only relative paths inside the run are served"),
    ("model/../../x", PermissionError, "refused path 'model/../../x': only relative paths inside the run are served"),
    ("model\\..\\x", PermissionError, "refused path 'model\\\\..\\\\x': only relative paths inside the run are served"),
    ("out/x", PermissionError, "refused path 'out/x': it leads outside the runs root"),
    ("sibling/run.json", PermissionError, "refused path 'sibling/run.json': it leads outside the runs root"),
    ("model", FileNotFoundError, "'model' is not a regular file in run 'r'"),
    ("missing.keras", FileNotFoundError, "'missing.keras' is not a regular file in run 'r'"),
])
def test_served_refuses_what_is_not_a_regular_file_of_the_run(files, tmp_path, relpath, error, message):
    os.symlink(tmp_path, files.path("out"))
    sibling = os.path.join(os.path.dirname(files.run_dir), "other")
    os.mkdir(sibling)
    with open(os.path.join(sibling, "run.json"), "w") as f:
        f.write("{}")
    os.symlink(sibling, files.path("sibling"))  # inside the root, outside the run
    with pytest.raises(error) as refused:
        files.served(relpath)
    assert str(refused.value) == message


def test_served_returns_the_path_of_a_file_inside_the_run(files):
    path = write(files, "checkpoints/best.keras", b"zip")
    assert files.served("checkpoints/best.keras") == path
