"""What a dashboard exposed to others must hold: user text in widget labels stays text, only the hosts the dashboard
is served as may open its WebSocket, and a deployment asks for a password before it sends any run data."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

from page_charts import open_page
from run_factory import make_run
from test_browser import free_port, wait_healthy
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kerascope.app import cli
from kerascope.monitor import format as fmt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACKER = "![t](http://tracker.example/track.png)"  # markdown that makes the browser fetch an image
MARKDOWN_IMAGE = re.compile(r"(?<!\\)!(?<!\\)\[[^\]]*(?<!\\)\]\(")


def test_user_text_in_widget_labels_is_escaped(runs_root):
    run_dir = make_run(runs_root, "labels", epochs=2, steps_per_epoch=2)
    run_id = os.path.basename(run_dir)
    with open(os.path.join(run_dir, fmt.EPOCH_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps({"epoch": 2, "step": 6, "time": 1.0, TRACKER: 0.5}) + "\n")
    checkpoint = "![c](track.png).keras"
    with open(os.path.join(run_dir, fmt.CHECKPOINT_DIR, checkpoint), "wb") as f:
        f.write(b"PK")
    with open(os.path.join(run_dir, fmt.CHECKPOINT_INDEX_FILE), "w", encoding="utf-8") as f:
        json.dump([{"epoch": 1, "step": 4, "path": f"checkpoints/{checkpoint}", "value": 0.1}], f)

    at = open_page(str(runs_root), "views/compare.py", compare_ids=[run_id])
    at.selectbox(key="compare_metric_epoch").select(TRACKER).run()
    assert not at.exception, [e.value for e in at.exception]
    export = at.get("download_button")[0].proto.label
    assert "tracker" in export and not MARKDOWN_IMAGE.search(export), export

    at = open_page(str(runs_root), "views/checkpoints.py", run_id=run_id)
    download = at.get("download_button")[0].proto.label
    assert "track" in download and not MARKDOWN_IMAGE.search(download), download


def websocket_accepted(port: int, host: str) -> bool:
    """Open /_stcore/stream as a browser on a page named `host` would (Host and Origin say `host`), over a TCP
    connection to 127.0.0.1: what a web page whose name was rebound to this machine's address does."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        with connect(f"ws://{host}:{port}/_stcore/stream", sock=sock, origin=f"http://{host}:{port}",
                     subprotocols=["streamlit"], open_timeout=10):
            return True
    except InvalidStatus as exc:
        assert exc.response.status_code == 403
        return False


def test_a_websocket_from_a_foreign_host_is_refused(runs_root):
    make_run(runs_root, "secret run")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "kerascope", "--logdir", str(runs_root), "--port", str(port)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, process)
        assert websocket_accepted(port, "127.0.0.1") and websocket_accepted(port, "localhost")
        assert not websocket_accepted(port, "rebind.evil.example")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_non_loopback_bind_needs_a_password_or_an_explicit_no_auth(runs_root):
    base = [sys.executable, "-m", "kerascope", "--logdir", str(runs_root), "--host", "0.0.0.0", "--port", "1"]
    env = {k: v for k, v in os.environ.items() if k != "KERASCOPE_PASSWORD"}
    refused = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "refusing to serve on 0.0.0.0 without a password" in refused.stderr
    args = cli.parse_args(["--host", "0.0.0.0", "--no-auth"])
    assert "WARNING: serving on 0.0.0.0 without a password" in cli.check_exposure(args, {})
    assert cli.check_exposure(cli.parse_args(["--host", "0.0.0.0"]), {"KERASCOPE_PASSWORD": "x"}) is None
    assert cli.check_exposure(cli.parse_args([]), {}) is None  # 127.0.0.1
    hosts = cli.allowed_hosts(cli.parse_args(["--host", "0.0.0.0", "--allowed-hosts", "runs.example.com"]))
    assert {"localhost", "127.0.0.1", "runs.example.com"} <= set(hosts) and "*" not in hosts
