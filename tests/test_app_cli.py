"""`python -m kerascope`: the Streamlit command line it builds (binding, port, watcher) and the environment it sets."""

from __future__ import annotations

import os
import subprocess
import sys

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
