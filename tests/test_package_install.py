"""The installed package: one top-level `kerascope`, usable from a project with its own callbacks.py, monitor.py, app/.

Builds the wheel, installs it with the dashboard extra (no TensorFlow) into a fresh virtual environment, and uses it
from such a project as a user would: the public imports, RunStore over the shipped sample runs, the dashboard pages
and the `kerascope` command.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RUNS = os.path.join(REPO, "sample_runs")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> str:
    """A fresh virtual environment holding the built wheel with its dashboard extra, and nothing of the checkout."""
    base = tmp_path_factory.mktemp("install")
    wheels = base / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), REPO])
    (wheel,) = glob.glob(str(wheels / "kerascope-*.whl"))
    env_dir = base / "venv"
    run([sys.executable, "-m", "venv", str(env_dir)])
    python = str(env_dir / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[dashboard]"])
    return str(env_dir)


@pytest.fixture
def user_project(tmp_path) -> str:
    """A Keras project with its own modules named like the repository's folders."""
    (tmp_path / "callbacks.py").write_text("USER_CALLBACKS = True\n")
    (tmp_path / "monitor.py").write_text("USER_MONITOR = True\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("USER_APP = True\n")
    (tmp_path / "app" / "__main__.py").write_text("print('the user app')\n")
    return str(tmp_path)


def clean_env() -> dict[str, str]:
    """The environment without anything pointing at the checkout."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "KERASCOPE_LOGDIR")}


def test_site_packages_holds_one_top_level_package(venv):
    site = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))[0]
    names = set(os.listdir(site))
    assert "kerascope" in names
    assert not names & {"app", "callbacks", "monitor"}
    assert not glob.glob(os.path.join(site, "tensorflow*"))  # the dashboard extra brings no TensorFlow


def test_public_imports_and_run_store_work_beside_the_users_modules(venv, user_project):
    script = textwrap.dedent(f"""
        import sys
        import callbacks, monitor, app
        assert callbacks.USER_CALLBACKS and monitor.USER_MONITOR and app.USER_APP  # the user's own modules

        import kerascope
        from kerascope import RunStore, Run, RunWriter, RunWatcher, FORMAT_VERSION
        assert "site-packages" in kerascope.__file__, kerascope.__file__
        runs = RunStore({SAMPLE_RUNS!r}).runs()
        print(len(runs), sorted(run.status for run in runs)[0], FORMAT_VERSION)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow")))
    """)
    result = run([os.path.join(venv, "bin", "python"), "-c", script], cwd=user_project, env=clean_env())
    counts, loaded = result.stdout.strip().splitlines()[-2:]
    shipped = [name for name in os.listdir(SAMPLE_RUNS) if os.path.isfile(os.path.join(SAMPLE_RUNS, name, "run.json"))]
    assert counts.split()[0] == str(len(shipped))
    assert loaded == "[]"


def test_installed_dashboard_pages_render_the_sample_runs_without_keras(venv, user_project):
    script = textwrap.dedent(f"""
        import os, sys
        import kerascope.app
        from streamlit.testing.v1 import AppTest
        os.environ["KERASCOPE_LOGDIR"] = {SAMPLE_RUNS!r}
        entry = os.path.join(os.path.dirname(kerascope.app.__file__), "streamlit_app.py")
        at = AppTest.from_file(entry, default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        for page in ("views/run.py", "views/compare.py"):
            at.switch_page(page).run()
            assert not at.exception, (page, at.exception)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow")))
    """)
    result = run([os.path.join(venv, "bin", "python"), "-c", script], cwd=user_project, env=clean_env())
    assert result.stdout.strip().splitlines()[-1] == "[]"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [["bin/kerascope"], ["bin/python", "-m", "kerascope"]], ids=["script", "module"])
def test_the_dashboard_command_serves_from_the_users_project(venv, user_project, command):
    port = free_port()
    executable = [os.path.join(venv, command[0]), *command[1:]]
    process = subprocess.Popen([*executable, "--logdir", SAMPLE_RUNS, "--port", str(port)], cwd=user_project,
                               env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    health = response.read().decode()
                    break
            except OSError:
                time.sleep(0.3)
        assert health == "ok", process.stdout.read() if process.poll() is not None else "no answer"
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"serving {SAMPLE_RUNS}" in output
    assert "the user app" not in output
