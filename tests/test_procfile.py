"""The Procfile's web command, run exactly as a platform runs it (through a shell, with $PORT set), serves the app."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_command() -> str:
    with open(os.path.join(REPO, "Procfile"), encoding="utf-8") as f:
        commands = dict(line.split(":", 1) for line in f if ":" in line and not line.startswith("#"))
    return commands["web"].strip()


def test_procfile_web_command_answers_health(runs_root):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "KERASCOPE_LOGDIR": os.fspath(runs_root)}
    process = subprocess.Popen(["sh", "-c", f"exec {web_command()}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
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
    finally:
        process.terminate()
        process.wait(timeout=10)
    output = process.stdout.read().decode(errors="replace")
    assert f"serving {os.fspath(runs_root)} on http://0.0.0.0:{port}" in output
