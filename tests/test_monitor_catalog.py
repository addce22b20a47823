"""Catalog (monitor/catalog.py) on its own: where the database lives, rows written and read back exactly, rows that do
not parse, a foreign, damaged or busy database, and a cache folder that cannot be created."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import threading

import pytest

from kerascope.monitor import catalog as catalog_module
from kerascope.monitor.catalog import Catalog

STAMPS = [["run.json", 120, 1700000000.5, 42], ["status.json", 30, 1700000001.25, 43], None]
SNAPSHOT = {"meta": {"name": "a", "hparams": {"lr": 0.001, "layers": [64, 32]}}, "status": {"status": "finished"},
            "summary": {"loss": {"best": 0.25, "last": math.nan}}}


def expected_path(folder, logdir) -> str:
    digest = hashlib.sha256(os.path.realpath(logdir).encode("utf-8")).hexdigest()[:20]
    return os.path.join(str(folder), f"runs-{digest}.sqlite")


# -- where it lives --------------------------------------------------------------------------------------------------


def test_cache_dir_is_the_explicit_folder_else_xdg_else_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERASCOPE_CACHE_DIR", "cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert catalog_module.cache_dir() == str(tmp_path / "cache")
    monkeypatch.setenv("KERASCOPE_CACHE_DIR", "")
    assert catalog_module.cache_dir() == str(tmp_path / "xdg" / "kerascope")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert catalog_module.cache_dir() == str(tmp_path / "relative" / "kerascope")
    monkeypatch.delenv("KERASCOPE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert catalog_module.cache_dir() == str(tmp_path / "home" / ".cache" / "kerascope")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert catalog_module.cache_dir() == str(tmp_path / "home" / ".cache" / "kerascope")


def test_one_private_database_per_real_logdir_named_by_its_hash(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "link").symlink_to(runs)
    monkeypatch.setenv("KERASCOPE_CACHE_DIR", str(tmp_path / "cache" / "dir"))
    catalog = Catalog(runs)
    assert catalog.logdir == str(runs)
    assert catalog.path == expected_path(tmp_path / "cache" / "dir", runs)
    assert catalog.rebuilt is None
    assert os.stat(tmp_path / "cache" / "dir").st_mode & 0o777 == 0o700
    assert os.stat(catalog.path).st_mode & 0o777 == 0o600
    assert Catalog(tmp_path / "link").path == catalog.path  # the same runs through a symlink: the same catalog
    monkeypatch.chdir(tmp_path)
    elsewhere = Catalog("runs", "other")
    assert elsewhere.path == expected_path(tmp_path / "other", runs)
    assert Catalog(tmp_path / "runs2", "other").path != elsewhere.path
    with sqlite3.connect(catalog.path) as conn:
        assert conn.execute("SELECT key, value FROM info").fetchall() == [("root", str(runs))]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_logdir_whose_name_is_not_utf8_gets_a_catalog(tmp_path):
    """Linux allows any bytes in a name: Python holds the odd ones as surrogate escapes, which SQLite refuses."""
    logdir = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"runs-\xff"))
    catalog = Catalog(logdir, str(tmp_path / "cache"))
    digest = hashlib.sha256(os.fsencode(logdir)).hexdigest()[:20]
    assert catalog.path == str(tmp_path / "cache" / f"runs-{digest}.sqlite")
    assert catalog.rebuilt is None
    with sqlite3.connect(catalog.path) as conn:
        assert conn.execute("SELECT value FROM info").fetchall() == [(f"{tmp_path}/runs-\\xff",)]
    catalog.put([("r", [], {})])
    assert catalog.load() == {"r": ((), {})}


def test_a_run_whose_name_is_not_utf8_stays_uncached_and_the_others_are_cached(tmp_path):
    odd = os.fsdecode(b"run-\xfe")  # a run directory named with a byte that is not UTF-8
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([("a", [1], {"name": odd}), (odd, [2], {}), ("b", [3], {})])
    catalog.delete([odd])
    assert catalog.load() == {"a": ((1,), {"name": odd}), "b": ((3,), {})}
    catalog.delete([odd, "a"])
    assert catalog.load() == {"b": ((3,), {})}
    catalog.put([(odd, [4], {})])
    assert catalog.load() == {"b": ((3,), {})}
    assert catalog.rebuilt is None


def test_the_connection_waits_for_a_busy_database_and_syncs_normally(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    assert catalog_module.BUSY_TIMEOUT_MS == 5000
    conn = catalog._conn
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.in_transaction is False  # autocommit: nothing left open between calls


# -- rows ------------------------------------------------------------------------------------------------------------


def test_rows_come_back_as_written_with_lists_as_tuples(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    assert catalog.load() == {}
    catalog.put([("r1", STAMPS, SNAPSHOT), ("r2", "a stamp", {"meta": {}})])
    catalog.put([])
    again = Catalog(tmp_path / "runs", str(tmp_path))  # another process's view: what reached the database
    loaded = again.load()
    assert set(loaded) == {"r1", "r2"}
    stamps, snapshot = loaded["r1"]
    assert stamps == (("run.json", 120, 1700000000.5, 42), ("status.json", 30, 1700000001.25, 43), None)
    assert isinstance(stamps, tuple) and all(isinstance(stamp, tuple) for stamp in stamps[:2])
    assert math.isnan(snapshot["summary"]["loss"].pop("last"))
    assert snapshot == {"meta": {"name": "a", "hparams": {"lr": 0.001, "layers": [64, 32]}},
                        "status": {"status": "finished"}, "summary": {"loss": {"best": 0.25}}}
    assert isinstance(snapshot["meta"]["hparams"]["layers"], list)  # snapshots keep their lists
    assert loaded["r2"] == ("a stamp", {"meta": {}})
    assert again.rebuilt is None


def test_put_replaces_a_row_and_delete_forgets_rows(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([("a", [1], {"v": 1}), ("b", [2], {"v": 2}), ("c", [3], {"v": 3})])
    catalog.put([("b", [20], {"v": 20})])
    catalog.delete([])
    catalog.delete(["c", "missing"])
    assert catalog.load() == {"a": ((1,), {"v": 1}), "b": ((20,), {"v": 20})}
    catalog.delete(iter(["a"]))
    catalog.put(iter([("d", [4], {"v": 4})]))
    assert catalog.load() == {"b": ((20,), {"v": 20}), "d": ((4,), {"v": 4})}


def test_many_rows_load_across_decoding_chunks(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    count = 2 * catalog_module.LOAD_CHUNK + 1
    catalog.put([(f"run-{i:04d}", [[f"f{i}", i]], {"i": i}) for i in range(count)])
    loaded = catalog.load()
    assert len(loaded) == count
    assert all(loaded[f"run-{i:04d}"] == (((f"f{i}", i),), {"i": i}) for i in range(count))


def test_rows_that_do_not_parse_are_left_out_wherever_they_are(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([(name, [name], {"name": name}) for name in "abcdefg"])
    deep = "[" * 100_000 + "]" * 100_000  # valid JSON that Python's decoder refuses (RecursionError)
    with sqlite3.connect(catalog.path) as conn:
        conn.execute("UPDATE runs SET snapshot = '{}, {}' WHERE id = 'a'")  # two values: would shift the others
        conn.execute("UPDATE runs SET snapshot = '{\"meta\": {' WHERE id = 'c'")  # cut
        conn.execute("UPDATE runs SET stamps = '' WHERE id = 'd'")  # none
        conn.execute("UPDATE runs SET stamps = ? WHERE id = 'f'", (deep,))
    assert catalog.load() == {name: ((name,), {"name": name}) for name in "beg"}


@pytest.mark.parametrize("column", ["stamps", "snapshot"])
def test_a_row_holding_two_values_does_not_shift_the_rows_after_it(tmp_path, column):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([(name, [name], {"name": name}) for name in "abc"])
    with sqlite3.connect(catalog.path) as conn:
        conn.execute(f"UPDATE runs SET {column} = '[\"x\"], [\"y\"]' WHERE id = 'a'")
    assert catalog.load() == {name: ((name,), {"name": name}) for name in "bc"}


def test_rows_loaded_together_share_their_keys_strings(tmp_path):
    """The memory promise of decoding many rows as one document: equal keys are one string object."""
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([(name, [[f"file-{name}", 1]], {"metrics": {"val_loss": 1.0}}) for name in ("a", "b")])
    loaded = catalog.load()
    (first_key,), (second_key,) = (list(loaded[name][1]) for name in ("a", "b"))
    assert first_key == second_key == "metrics" and first_key is second_key
    (first_inner,), (second_inner,) = (list(loaded[name][1]["metrics"]) for name in ("a", "b"))
    assert first_inner is second_inner


def test_deeply_nested_rows_alone_are_left_out(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([("ok", [1], {}), ("deep", [2], {})])
    with sqlite3.connect(catalog.path) as conn:
        conn.execute("UPDATE runs SET snapshot = ? WHERE id = 'deep'", ("[" * 100_000 + "]" * 100_000,))
    assert catalog.load() == {"ok": ((1,), {})}


def test_a_catalog_is_usable_from_other_threads(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    loaded: list[dict] = []

    def work() -> None:
        catalog.put([("t", [1], {"from": "thread"})])
        loaded.append(catalog.load())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert loaded == [{"t": ((1,), {"from": "thread"})}]


# -- failures degrade to "no cache" ----------------------------------------------------------------------------------


def test_a_database_of_another_schema_version_is_rebuilt(tmp_path):
    path = expected_path(tmp_path, tmp_path / "runs")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, stamps TEXT NOT NULL, snapshot TEXT NOT NULL)")
        conn.execute("INSERT INTO runs VALUES ('old', '[]', '{}')")
        conn.execute("PRAGMA user_version=2")
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    assert catalog.rebuilt == "DatabaseError: catalog schema 2, expected 1"
    assert catalog.load() == {}
    catalog.put([("new", [], {})])
    assert Catalog(tmp_path / "runs", str(tmp_path)).load() == {"new": ((), {})}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_database_of_version_0_with_its_tables_is_kept(tmp_path):
    """Version 0 is a database created by a release that did not set user_version yet: its rows stay."""
    path = expected_path(tmp_path, tmp_path / "runs")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, stamps TEXT NOT NULL, snapshot TEXT NOT NULL)")
        conn.execute("INSERT INTO runs VALUES ('old', '[1]', '{}')")
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    assert catalog.rebuilt is None
    assert catalog.load() == {"old": ((1,), {})}


def test_a_file_that_is_not_a_database_is_deleted_with_its_journal_and_rebuilt(tmp_path):
    path = expected_path(tmp_path, tmp_path / "runs")
    for suffix, content in (("", b"not a database " * 300), ("-wal", b"stale wal"), ("-shm", b"stale shm")):
        with open(path + suffix, "wb") as f:
            f.write(content)
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    assert catalog.rebuilt == "DatabaseError: file is not a database"
    assert catalog.load() == {}
    catalog.put([("r", [], {})])
    catalog.close()
    assert not os.path.exists(path + "-wal")  # the stale journal went with it (the last close removes a new one)
    assert Catalog(tmp_path / "runs", str(tmp_path)).load() == {"r": ((), {})}


def test_a_table_dropped_under_an_open_catalog_is_rebuilt_at_the_next_use(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([("a", [], {})])
    with sqlite3.connect(catalog.path) as conn:
        conn.execute("DROP TABLE runs")
    assert catalog.load() == {}
    assert catalog.rebuilt == "OperationalError: no such table: runs"
    catalog.put([("b", [], {})])
    assert catalog.load() == {"b": ((), {})}


def test_a_damaged_database_is_rebuilt_at_the_next_use(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([(f"run-{i}", ["x" * 100], {"pad": "y" * 2000}) for i in range(50)])
    with sqlite3.connect(catalog.path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(catalog.path, "r+b") as f:  # every page after the first (the schema) overwritten
        f.seek(4096)
        f.write(b"\xa5" * (os.path.getsize(catalog.path) - 4096))
    assert catalog.load() == {}
    assert catalog.rebuilt is not None and catalog.rebuilt.startswith("DatabaseError: ")
    catalog.put([("fresh", [], {})])
    assert catalog.load() == {"fresh": ((), {})}


def test_a_busy_database_skips_the_write_and_keeps_the_rows(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(catalog_module, "BUSY_TIMEOUT_MS", 50)
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([("a", [1], {})])
    other = sqlite3.connect(catalog.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another dashboard writing
    caplog.set_level(logging.INFO, logger="kerascope.monitor.catalog")
    try:
        catalog.put([("b", [2], {})])
        catalog.delete(["a"])
        assert catalog.load() == {"a": ((1,), {})}  # WAL: readers go on while another process writes
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert catalog.rebuilt is None
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.INFO, "kerascope: catalog busy, put skipped"),
        (logging.INFO, "kerascope: catalog busy, delete skipped")]
    catalog.put([("c", [3], {})])
    assert catalog.load() == {"a": ((1,), {}), "c": ((3,), {})}


def test_without_a_cache_folder_there_is_no_catalog_and_no_error(tmp_path, caplog):
    (tmp_path / "file").write_text("a file where the cache folder would be")
    catalog = Catalog(tmp_path / "runs", str(tmp_path / "file" / "cache"))
    assert catalog.rebuilt is None
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.WARNING, f"kerascope: no catalog ([Errno 20] Not a directory: '{tmp_path / 'file' / 'cache'}')")]
    catalog.put([("a", [], {})])
    catalog.delete(["a"])
    assert catalog.load() == {}
    catalog.close()
    catalog.close()


def test_a_catalog_that_cannot_be_recreated_is_no_catalog(tmp_path, caplog):
    path = expected_path(tmp_path, tmp_path / "runs")
    os.mkdir(path)  # a folder where the database would be: not deletable as a file, not openable
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    assert catalog.rebuilt == "OperationalError: unable to open database file"
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.WARNING, f"kerascope: catalog {path} unusable (unable to open database file): rebuilt from the run "
                          "directories"),
        (logging.WARNING, "kerascope: no catalog (unable to open database file)")]
    assert catalog.load() == {}
    catalog.put([("a", [], {})])
    assert catalog.load() == {}


def test_close_is_idempotent_and_a_closed_catalog_is_no_catalog(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([("a", [], {})])
    catalog.close()
    catalog.close()
    assert catalog.load() == {}
    catalog.put([("b", [], {})])
    assert Catalog(tmp_path / "runs", str(tmp_path)).load() == {"a": ((), {})}


def test_json_values_round_trip_through_the_row_text(tmp_path):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put([("r", ["é", 1.5], {"text": "é ✓", "inf": math.inf})])
    with sqlite3.connect(catalog.path) as conn:
        stamps_text, snapshot_text = conn.execute("SELECT stamps, snapshot FROM runs").fetchone()
    assert json.loads(stamps_text) == ["é", 1.5]
    assert json.loads(snapshot_text) == {"text": "é ✓", "inf": math.inf}
    assert catalog.load() == {"r": (("é", 1.5), {"text": "é ✓", "inf": math.inf})}


@pytest.mark.parametrize("rows", [[("x", [[1, [2, 3]], 4], {})]])
def test_nested_stamp_lists_become_nested_tuples(tmp_path, rows):
    catalog = Catalog(tmp_path / "runs", str(tmp_path))
    catalog.put(rows)
    assert catalog.load() == {"x": (((1, (2, 3)), 4), {})}
