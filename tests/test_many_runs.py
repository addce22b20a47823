"""Listing at sweep scale: summary.json (written, updated, derived), lazy streams (the files a listing opens, seen by
a real audit hook), the SQLite catalog (invalidation, corruption, two processes), filter expressions and groups."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from page_charts import open_page
from run_factory import make_root, make_run

from kerascope import RunStore, RunWriter
from kerascope.app.query import Query, QueryError
from kerascope.monitor import format as fmt
from kerascope.monitor.catalog import Catalog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STREAMS = (fmt.BATCH_FILE, fmt.ACTIVATIONS_FILE, fmt.WEIGHTS_FILE, fmt.GRADIENTS_FILE, fmt.SYSTEM_FILE)


def read_summary(run_dir: str) -> dict:
    with open(os.path.join(run_dir, fmt.RUN_SUMMARY_FILE), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The pages' usual root plus a sweep: three runs of one group and one run written before summary.json."""
    path = tmp_path_factory.mktemp("runs")
    ids = {key: os.path.basename(run_dir) for key, run_dir in make_root(path).items()}
    for index, lr in enumerate((0.1, 0.01, 0.001)):
        run_dir = make_run(path, f"trial {index}", hparams={"lr": lr, "units": 64}, seed=5 + index)
        meta_path = os.path.join(run_dir, fmt.RUN_FILE)
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        fmt.write_json_atomic(meta_path, {**meta, fmt.RUN_GROUP: "sweep-1"})
        with open(os.path.join(run_dir, fmt.GRADIENTS_FILE), "w", encoding="utf-8") as f:  # listing never reads it
            for step in range(1, 21):
                record = {"step": step, "epoch": 0, "layer": "dense", "weight": "kernel", "norm": 0.5, "max_abs": 0.1}
                f.write(json.dumps(record) + "\n")
        ids[f"trial {index}"] = os.path.basename(run_dir)
    old = make_run(path, "old run", hparams={"lr": 0.05, "units": 16}, seed=9)
    os.unlink(os.path.join(old, fmt.RUN_SUMMARY_FILE))
    ids["old"] = os.path.basename(old)
    return path, ids


# -- summary.json ----------------------------------------------------------------------------------------------------


def test_the_writer_writes_and_updates_the_summary(runs_root):
    writer = RunWriter(runs_root, name="live", meta={"metrics": {"auc": {"direction": "max"}}}, flush_interval=3600)
    assert read_summary(writer.run_dir)["status"] == fmt.RUNNING  # from the start: a listing never waits for it
    for epoch, (loss, auc) in enumerate([(0.9, 0.6), (0.5, 0.8), (0.7, 0.7)]):
        writer.log("epoch", {"epoch": epoch, "step": 10 * (epoch + 1), "time": 1.0, "loss": loss, "auc": auc})
    writer.flush()
    summary = read_summary(writer.run_dir)
    assert summary["epochs_logged"] == 3 and summary["last_epoch"]["step"] == 30
    assert summary["metrics"]["loss"] == {"last": 0.7, "best": 0.5, "best_epoch": 1, "direction": "min"}
    assert summary["metrics"]["auc"] == {"last": 0.7, "best": 0.8, "best_epoch": 1, "direction": "max"}
    assert summary["monitor"] == "loss" and summary["best_epoch"] == 1
    writer.log("epoch", {"epoch": 3, "step": 40, "time": 2.0, "loss": float("nan"), "auc": 0.9})
    writer.event(fmt.EVENT_NAN, "loss became NaN", step=40, epoch=3, metric="loss", value=float("nan"))
    writer.close(status=fmt.INTERRUPTED)
    summary = read_summary(writer.run_dir)
    assert summary["status"] == fmt.INTERRUPTED and summary["epochs_logged"] == 4
    assert summary["metrics"]["auc"]["best"] == 0.9 and summary["metrics"]["loss"]["best"] == 0.5
    assert summary["divergence"] == {"metric": "loss", "value": "nan", "step": 40, "epoch": 3}
    (run,) = RunStore(runs_root).runs()
    assert run.status == fmt.DIVERGED and "loss became NaN at step 40 (epoch 4)" in run.reason


def test_a_run_without_summary_or_with_a_lagging_one_is_derived_from_its_files(root, runs_root):
    path, ids = root
    store = RunStore(path)
    old = store.run(ids["old"])
    assert not os.path.exists(os.path.join(old.path, fmt.RUN_SUMMARY_FILE))
    twin = make_run(runs_root, "old run", hparams={"lr": 0.05, "units": 16}, seed=9)  # the same run, summary kept
    written = read_summary(twin)
    derived = old.summary
    for key in ("epochs_logged", "metrics", "monitor", "best_epoch", "divergence", "stop", "hparams"):
        assert derived[key] == written[key], key
    # A crash between an append and the summary's rewrite: the summary lags, the files win.
    with open(os.path.join(twin, fmt.EPOCH_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps({"epoch": 4, "step": 100, "time": 3.0, "loss": 0.001}) + "\n")
    lagging = RunStore(runs_root).run(os.path.basename(twin))
    assert lagging.summary["metrics"]["loss"]["best"] == 0.001 and lagging.summary["epochs_logged"] == 5


AUDIT_LISTING = r"""
import json, os, sys
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        opened.append(os.fsdecode(args[0]))
sys.addaudithook(hook)
from streamlit.testing.v1 import AppTest
from kerascope import RunStore
from kerascope.monitor.catalog import Catalog
root, app, mode = sys.argv[1:4]
os.environ["KERASCOPE_LOGDIR"] = root
if mode == "store":
    store = RunStore(root, catalog=Catalog(root))
    for run in store.runs():
        run.overview(), run.name, run.hparams
else:
    at = AppTest.from_file(app, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) >= 5
print(json.dumps([path for path in opened if path.startswith(root)]))
"""


@pytest.mark.parametrize("mode", ["store", "page"])
def test_listing_opens_no_batch_activation_weight_or_system_stream(root, tmp_path, mode):
    """A real audit hook (sys.addaudithook, in a child process) records every file opened while listing."""
    path, ids = root
    env = dict(os.environ, KERASCOPE_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", AUDIT_LISTING, str(path), os.path.join(REPO, "app",
                          "streamlit_app.py"), mode], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    opened = json.loads(out.stdout.strip().splitlines()[-1])
    assert any(p.endswith(fmt.RUN_SUMMARY_FILE) for p in opened)
    assert not [p for p in opened if p.endswith(STREAMS)], opened
    # Streams behind a summary are read only for the runs without a current one (the old run, the broken ones).
    epoch_reads = {os.path.basename(os.path.dirname(p)) for p in opened if p.endswith(fmt.EPOCH_FILE)}
    assert epoch_reads <= {ids["old"], ids["broken"], ids["future"]}, epoch_reads


# -- the catalog -----------------------------------------------------------------------------------------------------


def test_the_catalog_lists_unchanged_runs_and_rereads_appended_replaced_and_deleted_ones(runs_root, tmp_path):
    cache = str(tmp_path / "cache")
    first, second, third = (make_run(runs_root, name, seed=seed) for seed, name in enumerate(("a", "b", "c")))
    RunStore(runs_root, catalog=Catalog(runs_root, cache)).runs()
    catalog = Catalog(runs_root, cache)
    rows = catalog.load()
    assert set(rows) == {os.path.basename(p) for p in (first, second, third)}
    # Prove that a row is what a restart lists while its stamps match: plant a name only the catalog knows.
    for run_id, (stamps, snapshot) in rows.items():
        snapshot["meta"]["name"] = f"cataloged {snapshot['meta']['name']}"
        catalog.put([(run_id, stamps, snapshot)])
    names = {run.name for run in RunStore(runs_root, catalog=catalog).runs()}
    assert names == {"cataloged a", "cataloged b", "cataloged c"}
    # Append to one run, replace another's status.json, delete the third: those are read from their files again.
    with open(os.path.join(first, fmt.EPOCH_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps({"epoch": 4, "step": 100, "time": 3.0, "loss": 0.001}) + "\n")
    with open(os.path.join(second, fmt.STATUS_FILE), encoding="utf-8") as f:
        status = json.load(f)
    fmt.write_json_atomic(os.path.join(second, fmt.STATUS_FILE), {**status, "status": fmt.FAILED, "reason": "OOM"})
    subprocess.run(["rm", "-r", third], check=True)
    runs = {run.name: run for run in RunStore(runs_root, catalog=catalog).runs()}
    assert set(runs) == {"a", "b"}
    assert runs["a"].overview().metrics["loss"].best == 0.001
    assert runs["b"].status == fmt.FAILED and runs["b"].reason == "OOM"
    assert set(catalog.load()) == {os.path.basename(first), os.path.basename(second)}


def test_a_corrupt_catalog_is_rebuilt_from_the_run_directories(runs_root, tmp_path):
    make_run(runs_root, "a")
    catalog = Catalog(runs_root, str(tmp_path))
    RunStore(runs_root, catalog=catalog).runs()
    catalog.close()
    with open(catalog.path, "r+b") as f:  # the header and the first pages overwritten: not a database any more
        f.write(b"garbage " * 512)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(catalog.path + suffix):
            os.unlink(catalog.path + suffix)
    rebuilt = Catalog(runs_root, str(tmp_path))
    assert rebuilt.rebuilt and "database" in rebuilt.rebuilt
    assert [run.name for run in RunStore(runs_root, catalog=rebuilt).runs()] == ["a"]
    assert len(Catalog(runs_root, str(tmp_path)).load()) == 1
    with sqlite3.connect(rebuilt.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_catalog_rows_that_do_not_parse_are_left_out_and_the_others_kept(runs_root, tmp_path):
    """Rows are decoded many at a time: a row that is not one JSON value (two values, or a cut one) costs only
    itself."""
    for name in ("a", "b", "c", "d"):
        make_run(runs_root, name)
    catalog = Catalog(runs_root, str(tmp_path))
    RunStore(runs_root, catalog=catalog).runs()
    rows = catalog.load()
    two, cut = sorted(rows)[:2]
    with sqlite3.connect(catalog.path) as conn:
        conn.execute("UPDATE runs SET snapshot = '{}, {}' WHERE id = ?", (two,))
        conn.execute("UPDATE runs SET snapshot = '{\"meta\": {' WHERE id = ?", (cut,))
    assert set(catalog.load()) == set(rows) - {two, cut}
    assert {run.name for run in RunStore(runs_root, catalog=catalog).runs()} == {"a", "b", "c", "d"}


TWO_WRITERS = r"""
import sys
from kerascope import RunStore
from kerascope.monitor.catalog import Catalog
root, cache = sys.argv[1:3]
for _ in range(20):
    catalog = Catalog(root, cache)
    assert len(RunStore(root, catalog=catalog).runs()) == 3
    catalog.close()
print("ok")
"""


def test_two_dashboards_share_one_catalog(runs_root, tmp_path):
    for name in ("a", "b", "c"):
        make_run(runs_root, name)
    children = [subprocess.Popen([sys.executable, "-c", TWO_WRITERS, str(runs_root), str(tmp_path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert len(Catalog(runs_root, str(tmp_path)).load()) == 3


def test_the_catalog_lives_outside_the_runs_root(runs_root, tmp_path, monkeypatch):
    monkeypatch.delenv("KERASCOPE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    catalog = Catalog(runs_root)
    assert catalog.path.startswith(str(tmp_path / "xdg" / "kerascope") + os.sep)
    assert not fmt.inside(str(runs_root), catalog.path)
    assert os.stat(catalog.path).st_mode & 0o077 == 0  # it holds every run's hparams and notes


def copy_run_files(source: str, target: str) -> None:
    for name in (fmt.RUN_FILE, fmt.STATUS_FILE):
        with open(os.path.join(source, name), "rb") as f:
            data = f.read()
        with open(os.path.join(target, name), "wb") as f:
            f.write(data)


def wait_for(watcher, condition) -> None:
    for _ in range(80):
        if condition():
            return
        watcher.wait(watcher.total, timeout=0.25)
    assert condition()


def test_with_a_watcher_the_store_rereads_the_root_only_when_it_changed_and_rechecks_what_changed(runs_root):
    """The root's entries are read again when its mtime moves; a directory that gets its run files later, and a run
    whose files are removed (the directory staying), are seen from the watcher's events alone."""
    from kerascope.monitor import RunWatcher

    first, second = make_run(runs_root, "a"), make_run(runs_root, "b")
    later = os.path.join(runs_root, "later")
    os.mkdir(later)  # a run being created: its files come after its directory
    past = time.time() - 60
    os.utime(runs_root, (past, past))  # a settled root: its entries are trusted while its mtime stays
    watcher = RunWatcher(runs_root)
    try:
        store = RunStore(runs_root, watcher=watcher)
        assert sorted(run.name for run in store.runs()) == ["a", "b"]
        version = store.listing_version
        copy_run_files(first, later)  # inside `later`: the root's mtime does not move
        assert os.stat(runs_root).st_mtime == past
        assert sorted(run.id for run in store.runs()) == sorted([os.path.basename(first), "later",
                                                                 os.path.basename(second)])
        assert store.listing_version == version + 1
        before = watcher.version(os.path.basename(second))
        for name in (fmt.RUN_FILE, fmt.STATUS_FILE):
            os.unlink(os.path.join(second, name))
        wait_for(watcher, lambda: watcher.version(os.path.basename(second)) > before)
        assert os.path.basename(second) not in {run.id for run in store.runs()}
        third = make_run(runs_root, "c")  # a new directory: the root's mtime moves
        assert os.path.basename(third) in {run.id for run in store.runs()}
    finally:
        watcher.stop()


def test_runs_listed_before_the_watcher_starts_are_checked_when_it_does(runs_root, tmp_path):
    """Listed from the catalog without a look at their files (the watcher not started yet), the runs whose files
    changed meanwhile are found by `recheck` once it starts, read again, and told to the watcher."""
    from kerascope.monitor import RunWatcher

    cache = str(tmp_path / "cache")
    changed = make_run(runs_root, "a")
    make_run(runs_root, "b")
    RunStore(runs_root, catalog=Catalog(runs_root, cache)).runs()
    meta_path = os.path.join(changed, fmt.RUN_FILE)
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    fmt.write_json_atomic(meta_path, {**meta, "name": "a renamed"})
    watcher = RunWatcher(runs_root, start=False)
    try:
        store = RunStore(runs_root, catalog=Catalog(runs_root, cache), watcher=watcher)
        assert len(store.runs()) == 2
        watcher.start()
        assert store.recheck() == [os.path.basename(changed)]
        watcher.note_changed([os.path.basename(changed)])
        assert sorted(run.name for run in store.runs()) == ["a renamed", "b"]
        assert watcher.changed_since(0) == {os.path.basename(changed)}
        assert store.recheck() == []  # now as read
        assert Catalog(runs_root, cache).load()[os.path.basename(changed)][1]["meta"]["name"] == "a renamed"
    finally:
        watcher.stop()


def table_state(table, store, watcher):
    version, runs = store.listing()
    return table.state(runs, version, watcher)


def test_the_runs_table_patches_the_rows_that_changed_into_the_frame_a_rebuild_would_make(runs_root):
    """The shared table: unchanged, the same state comes back; a run that changed has its row replaced (the frame
    equal to one built from scratch); a new run rebuilds the table."""
    import pandas as pd

    from kerascope.app import tables
    from kerascope.app.runs_list import RunsTable
    from kerascope.monitor import RunWatcher

    for seed, name in enumerate(("a", "b", "c")):
        make_run(runs_root, name, seed=seed)
    watcher = RunWatcher(runs_root, start=False)  # changes are told with note_changed: no timing involved
    store, table = RunStore(runs_root, watcher=watcher), RunsTable()
    first = table_state(table, store, watcher)
    assert table_state(table, store, watcher) is first
    changed = next(run for run in store.runs() if run.name == "b")
    with open(os.path.join(changed.path, fmt.STATUS_FILE), encoding="utf-8") as f:
        status = json.load(f)
    fmt.write_json_atomic(os.path.join(changed.path, fmt.STATUS_FILE), {**status, "status": fmt.FAILED,
                                                                        "reason": "OOM"})
    with open(os.path.join(changed.path, fmt.EPOCH_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps({"epoch": 4, "step": 100, "time": 3.0, "loss": 0.001}) + "\n")
    assert table_state(table, store, watcher) is first  # not told: nothing is looked at
    watcher.note_changed([changed.id])
    patched = table_state(table, store, watcher)
    assert patched.version == first.version + 1
    pd.testing.assert_frame_equal(patched.frame, tables.runs_frame(store.runs()))
    row = patched.frame.set_index("name").loc["b"]
    assert (row["status"], row["reason"], row["loss (best)"]) == ("✗ failed", "OOM", 0.001)
    assert first.frame.set_index("name").loc["b", "status"] == "✓ finished"  # a state handed out never changes
    make_run(runs_root, "d", seed=3)
    grown = table_state(table, store, watcher)
    assert list(grown.frame["name"]) == [run.name for run in store.runs()] and len(grown.frame) == 4
    pd.testing.assert_frame_equal(grown.frame, tables.runs_frame(store.runs()))


# -- filter expressions and groups on the Runs page ------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("lr <", "could not read the expression"),
    ("__import__('os').system('x')", "a function call is not allowed"),
    ("lr.real > 1", "an attribute"),
    ("lr * 2 > 1", "arithmetic"),
    ("lr in [1, 2]", "`in` is not supported"),
    ("0.1", "alone is not a condition"),
])
def test_malformed_expressions_are_refused_with_a_reason(text, message):
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Query(text)


def table(at) -> list[str]:
    return list(at.dataframe[0].value["name"])


def test_runs_page_filters_by_expression_and_explains_a_bad_one(root):
    path, ids = root
    at = open_page(path, "views/runs.py")
    at.text_input(key="runs_where").input("lr < 0.005 and units >= 64").run()
    assert sorted(table(at)) == ["trial 2", "wide"]
    at.text_input(key="runs_where").input('best_val_loss < 10 and group == "sweep-1" and not lr == 0.1').run()
    assert sorted(table(at)) == ["trial 1", "trial 2"]
    at.text_input(key="runs_where").input("lr <<< 3").run()
    assert "Filter expression not applied: could not read the expression" in at.error[0].value
    assert len(table(at)) == len(ids)  # nothing is hidden by an expression that could not be read
    at.text_input(key="runs_where").input("momentum > 0").run()
    assert "unknown name" in at.error[0].value.replace("\\", "")


def test_runs_page_folds_a_group_into_one_row_that_unfolds_best_first(root):
    path, ids = root
    at = open_page(path, "views/runs.py")
    at.toggle(key="runs_fold").set_value(True).run()
    frame = at.dataframe[0].value
    heads = frame[frame["name"] == "sweep-1"]
    assert len(heads) == 1 and heads.iloc[0]["status"] == "▸ 3 runs"
    assert not {"trial 0", "trial 1", "trial 2"} & set(frame["name"])
    trials = {name: RunStore(path).run(ids[name]).overview().metrics["val_loss"].best
              for name in ("trial 0", "trial 1", "trial 2")}
    best_first = sorted(trials, key=trials.get)
    assert heads.iloc[0]["where"] == f"best: {best_first[0]}"
    at.session_state["runs_expanded"] = {"sweep-1"}  # what a click on the group's row does
    at.run()
    names = table(at)
    start = names.index("sweep-1")
    assert names[start + 1:start + 4] == [f"↳ {name}" for name in best_first]
    at.multiselect(key="runs_group").select("sweep-1").run()
    assert sorted(table(at)) == ["sweep-1", *sorted(f"↳ {name}" for name in trials)]


def test_runs_page_pages_and_sorts_by_any_column(runs_root):
    for index in range(55):
        make_run(runs_root, f"run {index:02d}", epochs=1, steps_per_epoch=1, hparams={"lr": 0.5 ** index}, seed=index)
    at = open_page(runs_root, "views/runs.py")
    at.selectbox(key="runs_page_size").set_value(50).run()
    at.selectbox(key="runs_sort").select("name").run()
    assert table(at) == [f"run {index:02d}" for index in range(50)]
    assert "rows 1-50 of 55" in at.caption[0].value
    at.number_input(key="runs_page").set_value(2).run()
    assert table(at) == [f"run {index:02d}" for index in range(50, 55)]
    at.selectbox(key="runs_sort").select("column: id").run()
    at.number_input(key="runs_page").set_value(1).run()
    ids = table_ids = list(at.dataframe[0].value["id"])
    assert ids == sorted(table_ids) and len(ids) == 50
    at.toggle(key="runs_reverse").set_value(True).run()
    assert list(at.dataframe[0].value["id"]) == sorted(os.listdir(runs_root), reverse=True)[:50]


def test_the_catalog_follows_the_watchers_events(runs_root, tmp_path, monkeypatch):
    """A run that changes while the dashboard runs is written back to the catalog (at most every CATALOG_SYNC_S)."""
    from kerascope.monitor import RunWatcher, store

    monkeypatch.setattr(store, "CATALOG_SYNC_S", 0.0)
    run_dir = make_run(runs_root, "a")
    watcher = RunWatcher(runs_root)
    try:
        catalog = Catalog(runs_root, str(tmp_path))
        runs_store = RunStore(runs_root, catalog=catalog, watcher=watcher)
        (run,) = runs_store.runs()
        before = watcher.version(run.id)
        with open(os.path.join(run_dir, fmt.EPOCH_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps({"epoch": 4, "step": 100, "time": 3.0, "loss": 0.001}) + "\n")
        for _ in range(60):
            if watcher.version(run.id) != before:
                break
            watcher.wait(watcher.total, timeout=1.0)
        assert watcher.version(run.id) != before
        runs_store.runs()
        _, snapshot = catalog.load()[run.id]
        assert snapshot["summary"]["metrics"]["loss"]["best"] == 0.001  # derived: summary.json lags the append
    finally:
        watcher.stop()


def test_compare_draws_at_most_its_cap_of_runs_and_says_so(root, monkeypatch):
    from page_charts import chart_figures, open_link

    from kerascope.app import compare_charts

    monkeypatch.setattr(compare_charts, "MAX_DRAWN_RUNS", 2)  # the cap (100) at the scale of this root
    path, ids = root
    picked = [ids["trial 0"], ids["trial 1"], ids["trial 2"]]
    at = open_link(path, "views/compare.py", runs=",".join(picked))
    assert "draw the first 2 of the 3 runs picked" in " ".join(c.value for c in at.caption)
    loss = next(figure for figure in chart_figures(at) if figure["layout"]["title"]["text"] == "loss")
    assert len([trace for trace in loss["data"] if trace.get("mode", "").startswith("lines")]) == 2


def test_the_runs_page_shows_a_change_at_its_next_run_and_keeps_its_view_until_then(runs_root):
    """The page keeps its filtered and sorted view between runs; a run whose files change is shown changed at the
    next run (the app's watcher, in this process with AppTest, says which)."""
    from kerascope.app import state

    changed = make_run(runs_root, "a")
    make_run(runs_root, "b", seed=1)
    at = open_page(runs_root, "views/runs.py")
    assert at.dataframe[0].value.set_index("name").loc["a", "status"] == "✓ finished"
    view = at.session_state["runs_view"]
    at.run()
    assert at.session_state["runs_view"] is view  # nothing changed: the same view, not built again
    watcher, run_id = state.watcher(), os.path.basename(changed)
    before = watcher.version(run_id)
    with open(os.path.join(changed, fmt.STATUS_FILE), encoding="utf-8") as f:
        status = json.load(f)
    fmt.write_json_atomic(os.path.join(changed, fmt.STATUS_FILE), {**status, "status": fmt.FAILED, "reason": "OOM"})
    wait_for(watcher, lambda: watcher.version(run_id) > before)
    at.run()
    row = at.dataframe[0].value.set_index("name").loc["a"]
    assert (row["status"], row["reason"]) == ("✗ failed", "OOM")
