"""The Procfile's web command, run exactly as a platform runs it (through a shell, with $PORT set): it binds every
interface, so it refuses to start without $KERASCOPE_PASSWORD, and with one it shows nothing but a password form
until the password is given (checked in a real Chromium)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request

import pytest
from run_factory import make_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
PATIENCE_MS = 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_command() -> str:
    with open(os.path.join(REPO, "Procfile"), encoding="utf-8") as f:
        commands = dict(line.split(":", 1) for line in f if ":" in line and not line.startswith("#"))
    return commands["web"].strip()


def platform_env(runs_root, port: int, password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KERASCOPE_PASSWORD"}
    env.update(PORT=str(port), KERASCOPE_LOGDIR=os.fspath(runs_root))
    if password is not None:
        env["KERASCOPE_PASSWORD"] = password
    return env


def start_web(runs_root, port: int) -> subprocess.Popen:
    """The web command with a password, once it answers /_stcore/health."""
    process = subprocess.Popen(["sh", "-c", f"exec {web_command()}"], cwd=REPO,
                               env=platform_env(runs_root, port, PASSWORD), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    body = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                body = response.read()
                break
        except OSError:
            time.sleep(0.2)
    assert body == b"ok", process.stdout.read().decode(errors="replace") if process.poll() is not None else ""
    return process


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    process.wait(timeout=10)
    return process.stdout.read().decode(errors="replace")


def test_procfile_web_command_refuses_to_serve_without_a_password(runs_root):
    port = free_port()
    out = subprocess.run(["sh", "-c", f"exec {web_command()}"], cwd=REPO, env=platform_env(runs_root, port, None),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "refusing to serve on 0.0.0.0 without a password" in out.stderr and "KERASCOPE_PASSWORD" in out.stderr
    with socket.socket() as s:  # nothing listens
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_procfile_web_command_answers_health(runs_root):
    port = free_port()
    output = stop(start_web(runs_root, port))
    assert f"serving {os.fspath(runs_root)} on http://0.0.0.0:{port}" in output


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make chromium)")
def test_procfile_web_command_sends_no_run_data_before_the_password(runs_root):
    sync_api = pytest.importorskip("playwright.sync_api")
    make_run(runs_root, "confidential-experiment", hparams={"secret_hparam": 1})
    port = free_port()
    process = start_web(runs_root, port)
    received: list[str] = []
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page()
            page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: received.append(
                payload if isinstance(payload, str) else payload.decode("utf-8", errors="replace"))))
            page.goto(f"http://127.0.0.1:{port}/run")
            field = page.get_by_label("Password", exact=True)
            field.wait_for(timeout=PATIENCE_MS)
            field.fill("guess")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("Wrong password.").wait_for(timeout=PATIENCE_MS)
            assert not any("confidential-experiment" in frame or "secret_hparam" in frame for frame in received)
            assert "confidential-experiment" not in page.content()
            field.fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("confidential-experiment").first.wait_for(timeout=PATIENCE_MS)
            browser.close()
    finally:
        stop(process)
    assert any("confidential-experiment" in frame for frame in received)  # the check above could have seen it
