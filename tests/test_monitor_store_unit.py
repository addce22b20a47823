"""RunStore (monitor/store.py) with a catalog and a watcher: what a listing looks at again, what the catalog is
trusted for, what is written back to it, list versions, progress of a first scan, and `run()`."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import pathlib
import shutil
import threading
import time

import pytest

from kerascope.monitor import Catalog, RunStore, RunWatcher
from kerascope.monitor import store as store_module


def write_run(root, run_id: str, *, created: float = 1.0, name: str = "first", status: str = "finished"
              ) -> pathlib.Path:
    path = pathlib.Path(root) / run_id
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps({"format_version": 1, "name": name, "created": created}))
    (path / "status.json").write_text(json.dumps({"status": status}))
    return path


def settle(root) -> int:
    """Date the root back a minute (as a root not modified lately); returns its mtime in ns."""
    past = time.time_ns() - 60 * 10**9
    os.utime(root, ns=(past, past))
    return past


def rewrite_keeping_stamp(path: pathlib.Path, text: str) -> None:
    """Change a file's content in place, keeping its size, mtime and inode (what the catalog compares)."""
    st = os.stat(path)
    assert len(text.encode()) == st.st_size
    with open(path, "r+b") as f:
        f.write(text.encode())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def idle(runs_root):
    """A watcher that is not started: the tests say what changed with `note_changed`."""
    return RunWatcher(runs_root, start=False)


def ids(store: RunStore) -> list[str]:
    return [run.id for run in store.runs()]


# -- the root's entries, with a watcher ----------------------------------------------------------------------------


def test_with_a_watcher_a_settled_root_is_read_again_only_when_it_changes(runs_root, idle):
    write_run(runs_root, "a", created=1.0)
    store = RunStore(runs_root, watcher=idle)
    settled = settle(runs_root)
    assert ids(store) == ["a"]
    write_run(runs_root, "b", created=2.0)
    os.utime(runs_root, ns=(settled, settled))  # the same mtime as when it was read: entries trusted
    assert ids(store) == ["a"]
    os.utime(runs_root)  # its mtime moved: read again
    assert ids(store) == ["b", "a"]


def test_a_recently_modified_root_is_read_again_at_every_listing(runs_root, idle):
    write_run(runs_root, "a", created=1.0)
    now = time.time_ns()
    os.utime(runs_root, ns=(now, now))
    store = RunStore(runs_root, watcher=idle)
    assert ids(store) == ["a"]
    write_run(runs_root, "b", created=2.0)
    os.utime(runs_root, ns=(now, now))  # same mtime tick: only its age says it may have changed
    assert ids(store) == ["b", "a"]


def test_runs_that_lose_or_gain_their_files_leave_or_join_the_list(runs_root, idle):
    a = write_run(runs_root, "a", created=1.0)
    (runs_root / "c").mkdir()  # a run being created: no run.json nor status.json yet
    store = RunStore(runs_root, watcher=idle)
    settle(runs_root)
    assert ids(store) == ["a"]
    (a / "run.json").unlink()
    assert ids(store) == ["a"]  # status.json is left: still a run
    (a / "status.json").unlink()
    assert ids(store) == ["a"]  # the watcher did not say a changed
    idle.note_changed(["a"])
    assert ids(store) == []
    write_run(runs_root, "c", created=3.0)  # files inside: the root's mtime does not move
    assert ids(store) == ["c"]
    write_run(runs_root, "a", created=1.0)  # a directory without run files is looked at again at each call
    assert ids(store) == ["c", "a"]


def test_a_watcher_that_lost_track_makes_every_run_looked_at_again(runs_root, idle, monkeypatch, catalog_dir):
    a = write_run(runs_root, "a")
    b = write_run(runs_root, "b", status="running")
    store = RunStore(runs_root, watcher=idle, catalog=Catalog(runs_root, catalog_dir))
    settle(runs_root)
    assert ids(store) == ["b", "a"]
    (a / "run.json").unlink()
    (a / "status.json").unlink()
    (b / "status.json").write_text(json.dumps({"status": "finished"}))
    idle.note_changed(["b"])
    monkeypatch.setattr(store_module, "CATALOG_SYNC_S", 0.0)
    monkeypatch.setattr(idle, "changed_since", lambda since_total: None)  # past its change log
    assert ids(store) == ["b"]
    assert Catalog(runs_root, catalog_dir).load()["b"][1]["status"]["status"] == "finished"


def test_a_root_that_disappears_lists_nothing(runs_root, idle):
    write_run(runs_root, "a")
    store = RunStore(runs_root, watcher=idle)
    assert ids(store) == ["a"]
    shutil.rmtree(runs_root)
    assert ids(store) == []
    write_run(runs_root, "b")
    assert ids(store) == ["b"]


def test_a_started_watcher_makes_the_store_see_runs_come_and_go(runs_root):
    watcher = RunWatcher(runs_root)

    def listed_within_patience(expected: list[str]) -> list[str]:
        """Listings until the watcher's events made the store see `expected` (a liveness wait: 30 s at most)."""
        deadline = time.monotonic() + 30
        while (found := ids(store)) != expected and time.monotonic() < deadline:
            time.sleep(0.02)
        return found

    try:
        store = RunStore(runs_root, watcher=watcher)
        assert ids(store) == []
        path = write_run(runs_root, "live", status="running")
        assert listed_within_patience(["live"]) == ["live"]
        shutil.rmtree(path)
        assert listed_within_patience([]) == []
    finally:
        watcher.stop()


# -- listing versions and run() ------------------------------------------------------------------------------------


def test_the_listing_version_changes_only_with_the_runs_or_their_order(runs_root):
    write_run(runs_root, "a", created=1.0)
    store = RunStore(runs_root)
    assert (store.scanned, store.listing_version, store.opened) == (False, 0, (0, 0))
    version, runs = store.listing()
    assert [r.id for r in runs] == ["a"] and store.scanned is True and version == 1
    assert store.listing()[0] == version
    write_run(runs_root, "b", created=2.0)
    later, runs = store.listing()
    assert later > version and [r.id for r in runs] == ["b", "a"]
    shutil.rmtree(runs_root / "b")
    last, runs = store.listing()
    assert last > later and [r.id for r in runs] == ["a"]


def test_runs_of_equal_creation_time_are_ordered_by_id_newest_first(runs_root):
    for run_id in ("b", "c", "a"):
        write_run(runs_root, run_id, created=5.0)
    assert ids(RunStore(runs_root)) == ["c", "b", "a"]


def test_run_returns_the_cached_run_while_its_directory_exists(runs_root):
    path = write_run(runs_root, "a")
    store = RunStore(runs_root)
    run = store.run("a")
    assert store.run("a") is run
    shutil.rmtree(path)
    with pytest.raises(KeyError, match="no run 'a' under"):
        store.run("a")
    write_run(runs_root, "late")
    assert store.run("late").id == "late"  # not listed yet: found by listing again


def test_a_first_scan_reports_progress_and_pauses_the_garbage_collector_from_500_runs(runs_root):
    for i in range(500):
        run = runs_root / f"r{i:03d}"
        run.mkdir()
        (run / "status.json").write_text('{"status": "finished"}')
    seen = []
    store = RunStore(runs_root)
    runs = store.runs(progress=lambda done, total: seen.append((done, total, gc.isenabled(), store.opened)))
    assert len(runs) == 500 and gc.isenabled()
    assert seen == [(0, 500, False, (0, 500)), (200, 500, False, (200, 500)), (400, 500, False, (400, 500))]


def test_a_small_scan_keeps_the_garbage_collector_running(runs_root):
    write_run(runs_root, "a")
    seen = []
    RunStore(runs_root).runs(progress=lambda done, total: seen.append((done, total, gc.isenabled())))
    assert seen == [(0, 1, True)]
    with store_module.collection_paused(10_000):
        assert gc.isenabled() is False
    assert gc.isenabled()
    gc.disable()
    try:
        with store_module.collection_paused(10_000):
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


# -- the catalog ---------------------------------------------------------------------------------------------------


@pytest.fixture
def catalog_dir(tmp_path):
    return str(tmp_path / "catalogs")


def test_runs_whose_files_did_not_change_are_listed_from_the_catalog(runs_root, catalog_dir):
    path = write_run(runs_root, "a", name="first")
    assert ids(RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir))) == ["a"]
    rewrite_keeping_stamp(path / "run.json", (path / "run.json").read_text().replace("first", "other"))
    (run,) = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
    assert run.name == "first"  # from the catalog: no file was opened
    (path / "status.json").write_text(json.dumps({"status": "failed"}))  # a stamp moved: read from the files
    (run,) = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
    assert (run.name, run.status) == ("other", "failed")


def test_catalog_rows_of_another_version_are_not_used(runs_root, catalog_dir):
    path = write_run(runs_root, "a", name="first")
    catalog = Catalog(runs_root, catalog_dir)
    stamps = store_module._stamps(str(path))
    for snapshot in ({"meta": {}}, [1], {"meta": [], "error": None, "status": {}, "status_stamp": None,
                                         "summary": None, "summary_key": None}):
        catalog.put([("a", stamps, snapshot)])
        (run,) = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
        assert run.name == "first" and run.meta["name"] == "first"
    row = {"meta": {"format_version": 1, "name": "cataloged"}, "error": None, "status": {"status": "finished"},
           "status_stamp": None, "summary": None, "summary_key": None}  # stamps not known: read when asked
    catalog.put([("a", stamps, row)])
    (run,) = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
    assert (run.name, run.status, run.overview().last_epoch) == ("cataloged", "finished", None)
    row = dataclasses.asdict(store_module.Run(str(path)).snapshot())
    row["summary"] = {**row["summary"], "metrics": ["not", "an", "object"], "last_epoch": 7}  # a foreign row
    catalog.put([("a", stamps, row)])
    (run,) = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
    assert run.overview(recheck=False).metrics == {} and run.overview(recheck=False).last_epoch is None


def test_a_catalog_snapshot_keeps_the_stamps_it_was_read_at(runs_root, catalog_dir):
    write_run(runs_root, "a")
    RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
    (run,) = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
    snapshot, fresh = run.snapshot(), store_module.Run(run.path).snapshot()
    for field in ("meta", "error", "status", "status_stamp", "summary_key", "meta_stamp"):
        assert getattr(snapshot, field) == getattr(fresh, field)  # tuples again, as a fresh read has them
    assert run.refresh() is False  # run.json is known unchanged: not read again


def test_catalog_rows_of_runs_no_longer_under_the_root_are_deleted(runs_root, catalog_dir):
    write_run(runs_root, "a")
    b = write_run(runs_root, "b")
    store = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir))
    assert ids(store) == ["b", "a"]
    shutil.rmtree(b)
    store.runs()
    assert set(Catalog(runs_root, catalog_dir).load()) == {"a"}
    write_run(runs_root, "c")
    catalog = Catalog(runs_root, catalog_dir)
    shutil.rmtree(runs_root / "a")
    RunStore(runs_root, catalog=catalog).runs()  # a first scan drops the rows of runs it did not find
    assert set(Catalog(runs_root, catalog_dir).load()) == {"c"}


def test_before_its_watcher_starts_the_catalog_is_trusted_then_recheck_reads_what_changed(runs_root, catalog_dir):
    a = write_run(runs_root, "a", name="first")
    write_run(runs_root, "b", name="other")
    RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
    (a / "run.json").write_text(json.dumps({"format_version": 1, "name": "renamed", "created": 1.0}))
    watcher = RunWatcher(runs_root, start=False)
    store = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir), watcher=watcher)
    version, runs = store.listing()
    assert {run.id: run.name for run in runs} == {"a": "first", "b": "other"}
    assert store.recheck() == ["a"]
    later, runs = store.listing()
    assert later > version and {run.id: run.name for run in runs} == {"a": "renamed", "b": "other"}
    assert store.recheck() == []
    assert Catalog(runs_root, catalog_dir).load()["a"][1]["meta"]["name"] == "renamed"
    assert RunStore(runs_root).recheck() == []  # without a catalog there is nothing to compare


def test_runs_that_changed_are_written_back_to_the_catalog_at_most_every_sync_interval(runs_root, catalog_dir, idle,
                                                                                          monkeypatch):
    path = write_run(runs_root, "a", status="running")
    store = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir), watcher=idle)
    assert ids(store) == ["a"]

    def cataloged_status() -> str:
        return Catalog(runs_root, catalog_dir).load()["a"][1]["status"]["status"]

    assert cataloged_status() == "running"
    (path / "status.json").write_text(json.dumps({"status": "finished"}))
    idle.note_changed(["a"])
    store.runs()
    assert cataloged_status() == "running"  # cataloged less than CATALOG_SYNC_S ago: later
    monkeypatch.setattr(store_module, "CATALOG_SYNC_S", 0.0)
    store.runs()  # no new event: remembered as not written back
    assert cataloged_status() == "finished"
    (path / "status.json").write_text(json.dumps({"status": "failed"}))
    store.runs()
    assert cataloged_status() == "finished"  # the watcher did not see it change
    idle.note_changed(["a"])
    store.runs()
    assert cataloged_status() == "failed"


def test_a_store_over_an_object_store_url_ignores_catalog_and_watcher(tmp_path, idle, catalog_dir):
    pytest.importorskip("fsspec")
    store = RunStore("memory://kerascope-store-test/runs", catalog=Catalog(tmp_path, catalog_dir), watcher=idle)
    assert store.catalog is None and store.watcher is None and store.remote is not None


def test_a_run_listed_from_the_catalog_reads_none_of_its_files_while_their_stamps_match(runs_root, catalog_dir):
    path = write_run(runs_root, "a", name="first")
    (path / "epoch.jsonl").write_text('{"epoch":0,"val_loss":0.5}\n{"epoch":1,"val_loss":0.7}\n')
    RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
    rewrite_keeping_stamp(path / "run.json", (path / "run.json").read_text().replace("first", "other"))
    rewrite_keeping_stamp(path / "status.json", '{"status": "failed"}  ')
    rewrite_keeping_stamp(path / "epoch.jsonl", '{"epoch":0,"val_loss":0.5}\n{"epoch":1,"val_loss":0.1}\n')
    seen = []
    store = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir))
    (run,) = store.runs(progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 1)] and store.opened == (0, 0)
    assert (run.name, run.status, run.best_epoch) == ("first", "finished", 0)
    run.refresh()
    assert (run.name, run.status, run.best_epoch) == ("first", "finished", 0)
    assert run.epoch_metrics()["val_loss"].tolist() == [0.5, 0.1]  # streams are read as they are


def test_runs_cataloged_broken_are_listed_broken_for_the_same_reason(runs_root, catalog_dir):
    no_run_json = runs_root / "no-run-json"
    no_run_json.mkdir()
    (no_run_json / "status.json").write_text('{"status": "finished"}')
    no_status = write_run(runs_root, "no-status", created=2.0)
    (no_status / "status.json").unlink()
    first = {run.id: (run.status, run.reason) for run in RunStore(runs_root, catalog=Catalog(runs_root,
                                                                                                catalog_dir)).runs()}
    assert first == {"no-run-json": ("broken", "run.json is missing: not a run directory, or its creation was "
                                               "interrupted"),
                     "no-status": ("broken", "status.json is missing")}
    again = {run.id: (run.status, run.reason) for run in RunStore(runs_root, catalog=Catalog(runs_root,
                                                                                                catalog_dir)).runs()}
    assert again == first


def test_a_catalog_row_written_before_run_json_stamps_were_kept_reads_run_json_once(runs_root, catalog_dir):
    path = write_run(runs_root, "a", name="first")
    snapshot = dataclasses.asdict(store_module.Run(str(path)).snapshot())
    del snapshot["meta_stamp"]
    snapshot["meta"] = {**snapshot["meta"], "name": "cataloged"}
    Catalog(runs_root, catalog_dir).put([("a", store_module._stamps(str(path)), snapshot)])
    (run,) = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir)).runs()
    assert run.name == "cataloged"
    assert run.refresh() is True and run.name == "first"
    assert run.refresh() is False


def test_several_changed_runs_are_all_written_back(runs_root, catalog_dir, idle, monkeypatch):
    paths = [write_run(runs_root, run_id, status="running") for run_id in ("a", "b", "c")]
    store = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir), watcher=idle)
    store.runs()
    for path in paths[:2]:
        (path / "status.json").write_text(json.dumps({"status": "finished"}))
    idle.note_changed(["a", "b"])
    store.runs()  # too soon after they were cataloged: remembered
    monkeypatch.setattr(store_module, "CATALOG_SYNC_S", 0.0)
    idle.note_changed(["c"])  # changed too, but not its files: c is written back as it is
    store.runs()
    rows = Catalog(runs_root, catalog_dir).load()
    assert {run_id: row[1]["status"]["status"] for run_id, row in rows.items()} == {
        "a": "finished", "b": "finished", "c": "running"}


def test_a_store_over_an_object_store_names_its_root_as_the_store_does(idle):
    pytest.importorskip("fsspec")
    store = RunStore("memory://kerascope-store-test/runs/")
    assert store.logdir == store.remote.url == "memory://kerascope-store-test/runs"


def test_a_listing_asked_for_progress_reports_while_another_thread_opens_runs(runs_root):
    write_run(runs_root, "a")
    store = RunStore(runs_root)
    store._opening.acquire()  # as a first scan in another thread holds it
    seen, listed = [], []
    thread = threading.Thread(target=lambda: listed.append(store.runs(progress=lambda *p: seen.append(p))),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    store._opening.release()
    thread.join(10)
    assert seen[0] == (0, 0) and [run.id for run in listed[0]] == ["a"]


def test_a_run_changed_before_it_was_opened_is_not_written_back_for_that_change(runs_root, catalog_dir, idle,
                                                                                monkeypatch):
    path = write_run(runs_root, "a", status="running")
    idle.note_changed(["a"])  # reported before the store read the run: what it read is current
    store = RunStore(runs_root, catalog=Catalog(runs_root, catalog_dir), watcher=idle)
    store.runs()
    (path / "status.json").write_text(json.dumps({"status": "finished"}))  # not reported (yet)
    monkeypatch.setattr(store_module, "CATALOG_SYNC_S", 0.0)
    store.runs()
    assert Catalog(runs_root, catalog_dir).load()["a"][1]["status"]["status"] == "running"
    idle.note_changed(["a"])
    store.runs()
    assert Catalog(runs_root, catalog_dir).load()["a"][1]["status"]["status"] == "finished"


def test_run_of_a_listed_run_does_not_list_the_root_again(runs_root):
    write_run(runs_root, "a")
    store = RunStore(runs_root)
    version, _ = store.listing()
    write_run(runs_root, "b", created=2.0)
    assert store.run("a").id == "a" and store.listing_version == version  # the root of 10,000 runs is not read
    assert store.run("b").id == "b" and store.listing_version > version  # not listed yet: the root is read
