"""Runs on object storage (format version 2), against a real S3 server (SeaweedFS on 127.0.0.1, tests/s3_server.py).

LiveMonitor trains real tiny models into `s3://runs/...` while RunStore reads the bucket; the server is killed and
started again mid-run; wrong credentials and a missing bucket; compaction; two writers on different hosts into one
prefix; a URL whose backend is not installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import warnings

import keras
import pytest
from s3_server import BUCKET, SECRET_KEY, s3_server  # noqa: F401  (the session fixture)
from train_helpers import BATCH, data, mlp

from kerascope import LiveMonitor, RunStore
from kerascope.app.cli import resolve_logdir
from kerascope.monitor import format as fmt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATIENCE_S = 60.0
STEPS = 128 // BATCH  # steps per epoch of train_helpers.data()


@pytest.fixture(scope="module", autouse=True)
def spool(tmp_path_factory):
    """Spools and the readers' copies of checkpoints in test folders, not in ~/.cache."""
    folders = {"KERASCOPE_SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
               "KERASCOPE_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    saved = {name: os.environ.get(name) for name in folders}
    os.environ.update(folders)
    yield folders["KERASCOPE_SPOOL_DIR"]
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def wait_for(condition, what: str, patience_s: float = PATIENCE_S):
    """Poll `condition()` until it returns something true; fail saying `what` after `patience_s` (no timing assert)."""
    deadline = time.monotonic() + patience_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def finished_run(url: str, run_id: str):
    """The run read by a fresh RunStore once it is finished and compacted, else None."""
    store = RunStore(url)
    try:
        run = store.run(run_id)
    except KeyError:
        return None
    files = store.remote.files(run_id)
    return run if run.status == fmt.FINISHED and fmt.COMPACTED_FILE in files else None


class ReadLive(keras.callbacks.Callback):
    """At each epoch end, wait until a RunStore on the bucket shows that epoch: the run is read while it trains."""

    def __init__(self, url: str, live_monitor: LiveMonitor) -> None:
        super().__init__()
        self.store, self.monitor, self.seen = RunStore(url), live_monitor, []

    def on_epoch_end(self, epoch, logs=None):
        run_id = self.monitor.run_dir.rsplit("/", 1)[-1]

        def shown():
            runs = {run.id: run for run in self.store.runs()}
            run = runs.get(run_id)
            return run if run is not None and len(run.epoch_metrics()) == epoch + 1 else None

        run = wait_for(shown, f"epoch {epoch} in the bucket")
        self.seen.append((run.status, len(run.epoch_metrics()), len(run.batch_metrics())))


@pytest.fixture(scope="module")
def s3_run(s3_server):  # noqa: F811
    url = f"s3://{BUCKET}/live"
    x, y = data()
    live_monitor = LiveMonitor(url, name="on s3", hparams={"lr": 0.01}, activation_data=x[:32], checkpoint="best",
                          flush_interval=0.5)
    reader = ReadLive(url, live_monitor)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlp().fit(x, y, validation_data=(x[:32], y[:32]), epochs=3, batch_size=BATCH, verbose=0,
                  callbacks=[live_monitor, reader])
    assert live_monitor.wait_uploaded(PATIENCE_S)
    run_id = live_monitor.run_dir.rsplit("/", 1)[-1]
    return url, run_id, live_monitor, reader.seen, [str(w.message) for w in caught if "LiveMonitor" in str(w.message)]


def test_a_run_trained_on_s3_is_read_live_and_complete(s3_run, s3_server):  # noqa: F811
    url, run_id, live_monitor, seen, warned = s3_run
    assert warned == []
    assert live_monitor.run_dir == f"{url}/{run_id}"
    # Read while training: running, one more epoch each time, every batch of it already there.
    assert [(status, epochs) for status, epochs, _ in seen] == [("running", 1), ("running", 2), ("running", 3)]
    assert [batches for _, _, batches in seen] == [STEPS, 2 * STEPS, 3 * STEPS]
    run = finished_run(url, run_id)
    assert run is not None and run.problems == []
    assert run.meta["format_version"] == fmt.OBJECT_FORMAT_VERSION and run.name == "on s3"
    assert run.batch_metrics()["step"].tolist() == list(range(1, 3 * STEPS + 1))
    assert run.epoch_metrics()["epoch"].tolist() == [0, 1, 2]
    assert {"train_begin", "phase", "train_end"} <= set(run.events()["kind"])
    assert len(run.activations()) and len(run.weights()) and len(run.layers())
    assert "hidden" in run.model_summary()
    best = run.checkpoints()
    assert best["path"].tolist()[-1] == "checkpoints/best.keras"
    with open(run.file_path("checkpoints/best.keras"), "rb") as f:
        assert f.read(2) == b"PK"  # a .keras archive, copied from the bucket
    assert not os.path.exists(os.path.join(REPO, "s3:")) and not os.path.exists("s3:")


def test_finishing_compacts_each_stream_into_one_object(s3_run, s3_server):  # noqa: F811
    url, run_id, _, _, _ = s3_run
    keys = sorted(key.split(f"{run_id}/", 1)[1] for key in s3_server.client().find(f"{BUCKET}/live/{run_id}"))
    assert not [key for key in keys if key.startswith(fmt.SEGMENTS_DIR + "/")]
    for relpath in ("batch.jsonl", "epoch.jsonl", "events.jsonl", "activations.jsonl", "weights.jsonl",
                    "model/layers.jsonl", fmt.COMPACTED_FILE, fmt.RUN_FILE, fmt.STATUS_FILE, "model/summary.txt"):
        assert relpath in keys
    lines = s3_server.client().cat_file(f"{BUCKET}/live/{run_id}/batch.jsonl").decode().splitlines()
    assert len(lines) == 3 * STEPS


def test_credentials_are_never_written_or_shown(s3_run, s3_server, spool):  # noqa: F811
    url, run_id, _, _, _ = s3_run
    client = s3_server.client()
    for key in client.find(BUCKET):
        assert SECRET_KEY.encode() not in client.cat_file(key), key
    for folder, _, names in os.walk(spool):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                assert SECRET_KEY.encode() not in f.read(), name
    run = RunStore(url).run(run_id)
    assert run.options.logdir == url


def test_store_killed_mid_run_loses_nothing(s3_server):  # noqa: F811
    url = f"s3://{BUCKET}/outage"
    x, y = data()
    live_monitor = LiveMonitor(url, name="outage", flush_interval=0.5, weight_freq=0)

    class Outage(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:  # the first epoch reached the store; then the store goes away
                run_id = live_monitor.run_dir.rsplit("/", 1)[-1]
                wait_for(lambda: len(RunStore(url).run(run_id).epoch_metrics()) == 1
                         if run_id in RunStore(url).remote.run_ids() else False, "epoch 0 in the bucket")
                s3_server.kill()
            else:
                time.sleep(0.6)  # let the uploader try (and fail) during the outage

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mlp().fit(x, y, epochs=4, batch_size=BATCH, verbose=0, callbacks=[live_monitor, Outage()])
            # Training is over; the uploader says once (from its thread) that the store is unreachable.
            wait_for(lambda: [w for w in caught if "LiveMonitor" in str(w.message)], "the warning")
            time.sleep(1.0)  # a second warning would come now
        messages = [str(w.message) for w in caught if "LiveMonitor" in str(w.message)]
        assert len(messages) == 1 and "uploads to s3://runs/outage/" in messages[0], messages
        assert "records are kept in" in messages[0]
    finally:
        s3_server.start()
    assert live_monitor.wait_uploaded(PATIENCE_S)
    run = finished_run(url, live_monitor.run_dir.rsplit("/", 1)[-1])
    assert run is not None
    assert run.batch_metrics()["step"].tolist() == list(range(1, 4 * STEPS + 1))
    assert run.epoch_metrics()["epoch"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        (f"s3://{BUCKET}/wrong-key", {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "access denied"),
        ("s3://no-such-bucket/runs", {}, "the bucket does not exist"),
    ],
    ids=["wrong-credentials", "missing-bucket"],
)
def test_refused_uploads_warn_once_and_training_goes_on(s3_server, url, env, expected, monkeypatch):  # noqa: F811
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    x, y = data()
    live_monitor = LiveMonitor(url, flush_interval=0.2, weight_freq=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = mlp().fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
        assert live_monitor.wait_uploaded(1.0) is False
    try:
        assert len(history.history["loss"]) == 2
        messages = [str(w.message) for w in caught if "LiveMonitor" in str(w.message)]
        assert len(messages) == 1 and expected in messages[0], messages
        assert "not-the-secret" not in messages[0] and SECRET_KEY not in messages[0]
    finally:
        live_monitor._writer.uploader.stop()  # give up on the refused uploads now rather than at interpreter exit


WRITER_SCRIPT = """
import socket, sys, time
socket.gethostname = lambda: sys.argv[1]  # a second "machine"
from kerascope.monitor.remote_writer import RemoteRunWriter
writer = RemoteRunWriter(sys.argv[2], name="same name", flush_interval=0.2)
for step in range(1, 201):
    writer.log("batch", {"step": step, "epoch": 0, "batch": step - 1, "time": time.time(), "loss": 1.0 / step})
    if step % 50 == 0:
        time.sleep(0.3)
writer.close()
print(writer.run_id)  # and exit at once: the last upload and the compaction happen on the way out
"""


def test_two_machines_writing_into_one_prefix_never_collide(s3_server, spool):  # noqa: F811
    url = f"s3://{BUCKET}/shared"
    env = {**os.environ, "PYTHONPATH": REPO}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, host, url], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for host in ("node-a", "node-b")]
    ids = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        ids.append(out.strip())
    assert len(set(ids)) == 2
    runs = {run.id: run for run in RunStore(url).runs()}
    assert set(runs) == set(ids)
    assert sorted(run.meta["host"] for run in runs.values()) == ["node-a", "node-b"]
    for run in runs.values():
        assert run.status == fmt.FINISHED and run.batch_metrics()["step"].tolist() == list(range(1, 201))


def test_a_url_without_its_backend_fails_at_construction(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for url, extra in (("gs://bucket/runs", "gcs"), ("az://container/runs", "azure")):
        try:
            __import__({"gcs": "gcsfs", "azure": "adlfs"}[extra])
            continue  # installed here: nothing to refuse
        except ImportError:
            pass
        with pytest.raises(ImportError, match=rf'pip install "kerascope\[{extra}\]"'):
            LiveMonitor(url)
        with pytest.raises(ImportError, match=rf'pip install "kerascope\[{extra}\]"'):
            RunStore(url)
        with pytest.raises(SystemExit, match=rf'pip install "kerascope\[{extra}\]"'):
            resolve_logdir(url)  # python -m kerascope --logdir gs://...
    with pytest.raises(ValueError, match="without its '//'"):
        LiveMonitor("s3:bucket/runs")
    assert resolve_logdir(f"s3://{BUCKET}/runs") == f"s3://{BUCKET}/runs"
    assert os.listdir(tmp_path) == []  # no folder named "gs:", "az:" or "s3:"


def test_the_dashboard_on_an_s3_root_follows_a_live_run(s3_server):  # noqa: F811
    """`python -m kerascope --logdir s3://...` in a real Chromium: a run being uploaded moves without a reload."""
    browser_helpers = pytest.importorskip("test_browser")
    if not os.path.exists(browser_helpers.CHROMIUM):
        pytest.skip("needs Debian's chromium (make chromium)")
    from kerascope.monitor.remote_writer import RemoteRunWriter

    url = f"s3://{BUCKET}/dashboard"
    writer = RemoteRunWriter(url, name="uploaded live", flush_interval=0.5)
    try:
        browser_helpers.log_epoch(writer, 0, epochs=5)
        with browser_helpers.dashboard_page(url) as (page, base):
            page.goto(f"{base}/run")
            page.get_by_text("uploaded live", exact=True).first.wait_for(timeout=browser_helpers.PATIENCE_MS)
            page.get_by_text("epoch 1/5", exact=False).first.wait_for(timeout=browser_helpers.PATIENCE_MS)
            browser_helpers.wait_for_points(page, "loss", 1)
            navigations = page.evaluate("performance.getEntriesByType('navigation').length")
            browser_helpers.log_epoch(writer, 1, epochs=5)
            browser_helpers.wait_for_points(page, "loss", 2)
            assert page.evaluate("performance.getEntriesByType('navigation').length") == navigations
            assert SECRET_KEY not in page.content() and url in page.content()  # the sidebar names the root
    finally:
        writer.close()
        assert writer.wait_uploaded(PATIENCE_S)


def test_a_reader_follows_segments_compaction_and_a_resumed_phase(s3_server):  # noqa: F811
    """One reader across the whole life of a run: segments, the compacted stream, a second fit()'s segments on top of
    it and its second compaction; every record once, in order."""
    from kerascope.monitor.remote_writer import RemoteRunWriter

    url = f"s3://{BUCKET}/phases"

    def log(writer, steps):
        for step in steps:
            writer.log("batch", {"step": step, "epoch": 0, "batch": step - 1, "time": time.time(), "loss": 1 / step})
        writer.flush()

    writer = RemoteRunWriter(url, name="two phases", flush_interval=0.2)
    store = RunStore(url)
    steps = lambda: store.run(writer.run_id).batch_metrics()["step"].tolist()  # noqa: E731
    log(writer, range(1, 51))
    wait_for(lambda: writer.run_id in store.remote.run_ids() and steps() == list(range(1, 51)), "the first segment")
    log(writer, range(51, 101))
    writer.close()
    assert writer.wait_uploaded(PATIENCE_S)
    wait_for(lambda: steps() == list(range(1, 101)), "the compacted stream")

    resumed = RemoteRunWriter.resume_remote(url, writer.run_dir, flush_interval=0.2)
    log(resumed, range(101, 151))
    wait_for(lambda: steps() == list(range(1, 151)), "the second phase's segment")
    resumed.close()
    assert resumed.wait_uploaded(PATIENCE_S)
    wait_for(lambda: fmt.FINISHED == store.run(writer.run_id).status, "the second end")
    assert steps() == list(range(1, 151))
    assert RunStore(url).run(writer.run_id).batch_metrics()["step"].tolist() == list(range(1, 151))
    keys = s3_server.client().find(f"{BUCKET}/phases/{writer.run_id}")
    assert not [key for key in keys if f"/{fmt.SEGMENTS_DIR}/" in key]


def test_the_runs_page_lists_an_s3_root_and_says_why_one_cannot_be_listed(s3_run, s3_server):  # noqa: F811
    from page_charts import open_page

    url, run_id, _, _, _ = s3_run
    shown = open_page(url, "views/runs.py")
    text = " ".join(str(element.value) for element in [*shown.markdown, *shown.caption, *shown.text])
    assert url in text and SECRET_KEY not in text
    by_name = shown.dataframe[0].value.set_index("name")
    assert by_name.loc["on s3", "status"] == "✓ finished" and by_name.loc["on s3", "hparams"] == "lr=0.01"
    missing = open_page("s3://no-such-bucket/runs", "views/runs.py")
    shown_errors = [re.sub(r"\\(.)", r"\1", error.value) for error in missing.error]  # markdown escapes undone
    assert shown_errors == ["Cannot list s3://no-such-bucket/runs: the bucket does not exist (FileNotFoundError)"]


KILLED_SCRIPT = """
import os, signal, sys, time
from kerascope.monitor.remote_writer import RemoteRunWriter
writer = RemoteRunWriter(sys.argv[1], name="killed", flush_interval=3600)  # one upload at start, then none
while not writer.uploader.requests:
    time.sleep(0.05)
for step in range(1, 101):
    writer.log("batch", {"step": step, "epoch": 0, "batch": step - 1, "time": time.time(), "loss": 1.0 / step})
writer.flush()  # in the local spool, not in the bucket
print(writer.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_records_a_killed_process_left_in_the_spool_are_sent_by_the_next_writer(s3_server):  # noqa: F811
    from kerascope.monitor.remote_writer import RemoteRunWriter

    url = f"s3://{BUCKET}/killed"
    killed = subprocess.run([sys.executable, "-c", KILLED_SCRIPT, url], env={**os.environ, "PYTHONPATH": REPO},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    run_id = killed.stdout.strip()
    assert RunStore(url).run(run_id).batch_metrics().empty  # the records never left the dead process's machine
    writer = RemoteRunWriter(url, name="next", flush_interval=0.2)
    try:
        assert writer.recovered == [run_id]
        run = wait_for(lambda: (lambda r: r if len(r.batch_metrics()) == 100 else None)(RunStore(url).run(run_id)),
                       "the killed run's records")
        assert run.batch_metrics()["step"].tolist() == list(range(1, 101))
        assert run.status_info["status"] == fmt.RUNNING  # as its process left it: readers show it stale in time
    finally:
        writer.close()
        assert writer.wait_uploaded(PATIENCE_S)
