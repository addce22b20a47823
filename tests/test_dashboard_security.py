"""What a dashboard exposed to others must hold: user text in widget labels stays text, only the hosts the dashboard
is served as may open its WebSocket, and a deployment asks for a password before it sends any run data."""

from __future__ import annotations

import hmac
import json
import os
import re
import socket
import subprocess
import sys
import time
import unicodedata

import pytest
from page_charts import open_page
from run_factory import make_run
from streamlit.testing.v1 import AppTest
from test_browser import free_port, wait_healthy
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kerascope.app import auth, cli
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


PASSWORD = "correct horse"


@pytest.fixture
def gated(runs_root, monkeypatch):
    """A runs root with one run, served behind KERASCOPE_PASSWORD, with a fresh process-wide failure limiter."""
    make_run(runs_root, "secret run")
    monkeypatch.setenv(cli.PASSWORD_ENV, PASSWORD)
    monkeypatch.setattr(auth, "_limiter", auth.FailureLimiter(auth.MAX_FAILURES, auth.FAILURE_WINDOW_S))
    return runs_root


def mentions(at: AppTest, text: str) -> bool:
    """Whether any element on the page (its protobuf: labels, options, table data) contains `text`."""
    def walk(node: object) -> bool:
        proto = getattr(node, "proto", None)
        if proto is not None and text in str(proto):
            return True
        return any(walk(child) for child in getattr(node, "children", {}).values())

    return walk(at.main) or walk(at.sidebar)


def sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input(key="kerascope_password").input(password)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_password_form_shows_no_run_until_the_right_password(gated):
    at = open_page(str(gated), "views/runs.py")
    assert [t.value for t in at.title] == ["Kerascope"] and not mentions(at, "secret run")
    assert [e.value for e in sign_in(at, "wrong").error] == ["Wrong password."]
    assert not mentions(at, "secret run")
    sign_in(at, PASSWORD)
    assert not at.error and at.session_state[auth.AUTH_KEY] is True
    assert mentions(at, "secret run")  # the run list, now that the session gave the password


def test_five_wrong_passwords_lock_out_the_right_one_in_every_session(gated):
    attacker = open_page(str(gated), "views/runs.py")
    for _ in range(auth.MAX_FAILURES):
        assert [e.value for e in sign_in(attacker, "guess").error] == ["Wrong password."]
    (locked,) = sign_in(attacker, PASSWORD).error
    assert locked.value.startswith("Too many wrong passwords: try again in ")
    assert auth.AUTH_KEY not in attacker.session_state
    # The limit is the process's, not the session's: a new session is refused as well, right password or not.
    other = open_page(str(gated), "views/runs.py")
    (locked,) = sign_in(other, PASSWORD).error
    assert locked.value.startswith("Too many wrong passwords") and auth.AUTH_KEY not in other.session_state
    assert not mentions(other, "secret run")


def test_failure_limiter_counts_failures_in_a_sliding_window():
    limiter = auth.FailureLimiter(3, 60.0)
    for _ in range(3):
        assert limiter.wait_s() == 0.0
        limiter.failed()
    assert 59.0 < limiter.wait_s() <= 60.0  # the third failure locks: the oldest one frees a try in 60 s
    short = auth.FailureLimiter(2, 0.05)
    short.failed()
    short.failed()
    assert 0 < short.wait_s() <= 0.05
    time.sleep(0.06)  # past the window (a sleep lasts at least that long): both failures have expired
    assert short.wait_s() == 0.0
    short.failed()
    assert short.wait_s() == 0.0  # one failure inside the new window: under the limit


def test_password_matches_compares_equal_length_digests_in_constant_time(monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    expected = "pässwörd 🔑"
    assert auth.password_matches(expected, expected)
    assert not auth.password_matches("pässwörd", expected)  # a prefix
    assert not auth.password_matches(expected + " ", expected)
    assert not auth.password_matches("", expected)
    assert not auth.password_matches(unicodedata.normalize("NFD", expected), expected)  # other code points
    assert auth.password_matches("", "")
    # Every comparison is hmac.compare_digest over two 32-byte digests, whatever the lengths of the passwords.
    assert len(compared) == 6 and all(len(a) == len(b) == 32 for a, b in compared)
