"""`python -m kerascope`: the Streamlit command line it builds (binding, port, watcher) and the environment it sets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from run_factory import make_run
from streamlit.testing.v1 import AppTest

from kerascope.app import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_defaults_bind_localhost_and_keep_streamlit_away_from_the_runs():
    command = cli.streamlit_command(cli.parse_args(["--logdir", "runs"]))
    assert command[1:4] == ["-m", "kerascope.app.server", "run"] and command[4] == cli.APP_SCRIPT
    assert option(command, "--server.address") == "127.0.0.1"
    assert option(command, "--server.port") == "8501"  # always given: Streamlit would silently move to a free one
    assert option(command, "--server.fileWatcherType") == "none"
    assert option(command, "--server.headless") == "true"
    assert option(command, "--browser.gatherUsageStats") == "false"
    assert option(command, "--runner.postScriptGC") == "false"  # a full GC after every live tick costs a core


def test_host_port_and_logdir_from_arguments_and_environment(monkeypatch):
    monkeypatch.setenv(cli.LOGDIR_ENV, "/data/runs")
    args = cli.parse_args(["--host", "0.0.0.0", "--port", "9000", "--poll"])
    assert args.logdir == "/data/runs" and args.poll
    command = cli.streamlit_command(args)
    assert option(command, "--server.address") == "0.0.0.0"
    assert option(command, "--server.port") == "9000"


def test_a_local_logdir_is_made_absolute_and_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.resolve_logdir("runs") == os.fspath(tmp_path / "runs") and (tmp_path / "runs").is_dir()
    url = f"file://{tmp_path}/other/runs"
    assert cli.resolve_logdir(url) == os.fspath(tmp_path / "other" / "runs") and (tmp_path / "other" / "runs").is_dir()


def test_the_dashboard_never_imports_keras_or_tensorflow(runs_root):
    script = f"""
import os, sys
sys.path[:0] = [{REPO!r}, os.path.join({REPO!r}, "tests")]
from run_factory import make_root
make_root({os.fspath(runs_root)!r})
os.environ["KERASCOPE_LOGDIR"] = {os.fspath(runs_root)!r}
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(os.path.join({REPO!r}, "app", "streamlit_app.py"), default_timeout=60)
for page in ("views/runs.py", "views/run.py", "views/activations.py", "views/model.py", "views/checkpoints.py",
             "views/compare.py"):
    at.switch_page(page).run()
    assert not at.exception, page
print(sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_vendored_cartesian_bundle_matches_the_installed_plotly_js():
    """A plotly upgrade that changes plotly.js must come with the matching cartesian bundle (app/vendor/README.md):
    the figures plotly.py writes are for its own plotly.js."""
    import plotly

    installed = os.path.join(os.path.dirname(plotly.__file__), "package_data", cli.PLOTLY_JS)
    assert cli.plotly_js_version(cli.VENDORED_CARTESIAN) == cli.plotly_js_version(installed) is not None


def test_plotly_js_is_served_gzipped_and_the_cartesian_bundle_only_for_the_same_version(tmp_path, monkeypatch):
    import gzip

    served = cli.install_plotly_js(os.fspath(tmp_path))
    assert sorted(os.path.basename(path) for path in served) == ["plotly-cartesian.min.js.gz", "plotly.min.js.gz"]
    with gzip.open(tmp_path / "plotly.min.js.gz") as bundle:
        assert b"plotly.js v" in bundle.read(200)
    other = tmp_path / "other-version.js.gz"  # what an older vendored file would be
    with gzip.open(other, "wb") as bundle:
        bundle.write(b"/**\n* plotly.js (cartesian - minified) v1.0.0\n*/\n")
    monkeypatch.setattr(cli, "VENDORED_CARTESIAN", os.fspath(other))
    served = cli.install_plotly_js(os.fspath(tmp_path))
    assert [os.path.basename(path) for path in served] == ["plotly.min.js.gz"]
    assert not (tmp_path / "plotly-cartesian.min.js.gz").exists()  # the charts then draw with the full bundle


def blocked(path) -> str:
    """A folder that cannot be created, whoever runs the test (root ignores permissions): a file sits there."""
    path.write_text("a file, not a folder")
    return os.fspath(path)


def test_plotly_js_that_is_current_is_not_written_again(tmp_path):
    served = cli.install_plotly_js(os.fspath(tmp_path))
    inodes = [os.stat(path).st_ino for path in served]
    assert cli.install_plotly_js(os.fspath(tmp_path)) == served
    assert [os.stat(path).st_ino for path in served] == inodes  # not replaced: a read-only copy that is current works


def test_a_read_only_package_folder_serves_plotly_js_from_the_cache_directory(tmp_path):
    static_dir, cache = blocked(tmp_path / "static"), os.fspath(tmp_path / "cache")
    script, warning = cli.serve_plotly_js(static_dir, fallback_root=cache)
    folder = os.path.dirname(script)
    assert os.path.dirname(folder) == cache and os.path.basename(script) == "streamlit_app.py"
    assert sorted(os.listdir(os.path.join(folder, "static"))) == ["plotly-cartesian.min.js.gz", "plotly.min.js.gz"]
    assert warning == f"Kerascope: cannot write plotly.js into {static_dir} (File exists); serving it from {folder}"
    inode = os.stat(script).st_ino
    assert cli.serve_plotly_js(static_dir, fallback_root=cache) == (script, warning)
    assert os.stat(script).st_ino == inode  # the next start rewrites nothing


def test_without_any_writable_folder_the_dashboard_starts_without_charts(tmp_path):
    static_dir, cache = blocked(tmp_path / "static"), blocked(tmp_path / "cache")
    script, warning = cli.serve_plotly_js(static_dir, fallback_root=cache)
    assert script == cli.APP_SCRIPT
    assert warning.startswith(f"Kerascope: WARNING: cannot write plotly.js into {static_dir} (File exists), nor into "
                              f"{cache}{os.sep}dashboard-") and warning.endswith("the dashboard's charts will not draw")
    assert "\n" not in warning


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, patience_s: float = 60.0) -> bytes:
    deadline = time.monotonic() + patience_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except urllib.error.HTTPError:
            raise  # the server answered: no use asking again
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_dashboard_runs_from_the_fallback_entry_script(tmp_path, runs_root):
    run_id = os.path.basename(make_run(runs_root, "opened from the list", epochs=2, steps_per_epoch=5))
    script, _ = cli.serve_plotly_js(blocked(tmp_path / "static"), fallback_root=os.fspath(tmp_path / "cache"))
    # The pages: the runs list opens a run (a page switch by path, whichever folder the entry script is in).
    os.environ[cli.LOGDIR_ENV] = os.fspath(runs_root)
    at = AppTest.from_file(script, default_timeout=60)
    at.session_state["runs_open"] = run_id  # what a click on the run's row asks for
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.slider(key="run_smoothing") and any("opened from the list" in t.value for t in at.title)
    # The server: Streamlit serves plotly.js from beside that script.
    port = free_port()
    args = cli.parse_args(["--logdir", os.fspath(runs_root), "--port", str(port)])
    env = {**os.environ, cli.LOGDIR_ENV: os.fspath(runs_root)}
    server = subprocess.Popen(cli.streamlit_command(args, script), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        assert fetch(f"http://127.0.0.1:{port}/_stcore/health") == b"ok"
        bundle = fetch(f"http://127.0.0.1:{port}/app/static/plotly.min.js.gz")
        with open(os.path.join(os.path.dirname(script), "static", "plotly.min.js.gz"), "rb") as f:
            assert bundle == f.read() and bundle[:2] == b"\x1f\x8b"
    finally:
        server.terminate()
        server.wait(timeout=30)
