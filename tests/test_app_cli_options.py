"""`kerascope` (app/cli.py) without starting a server: the options and their defaults, what --help says, which binds
are refused and with which message, the Host names the dashboard accepts, the full Streamlit command line, and what
`main` prints before it hands the process to Streamlit (never a password or a URL's credentials)."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import socket
import subprocess
import sys

import pytest

from kerascope.app import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "hunter2-do-not-print"


@pytest.fixture
def clean_environment(monkeypatch):
    for name in (cli.LOGDIR_ENV, cli.ALLOWED_HOSTS_ENV, cli.PASSWORD_ENV, cli.POLL_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_serve_the_runs_folder_on_localhost_8501(clean_environment):
    assert vars(cli.parse_args([])) == {"logdir": "runs", "port": 8501, "host": "127.0.0.1", "poll": False,
                                        "allowed_hosts": "", "no_auth": False}


def test_every_option_is_read(clean_environment):
    args = cli.parse_args(["--logdir", "/data", "--port", "9000", "--host", "::1", "--poll", "--allowed-hosts",
                           "a.example, b.example", "--no-auth"])
    assert vars(args) == {"logdir": "/data", "port": 9000, "host": "::1", "poll": True,
                          "allowed_hosts": "a.example, b.example", "no_auth": True}


def test_logdir_and_allowed_hosts_default_to_their_environment_variables(clean_environment):
    clean_environment.setenv(cli.LOGDIR_ENV, "s3://bucket/runs")
    clean_environment.setenv(cli.ALLOWED_HOSTS_ENV, "proxy.example")
    args = cli.parse_args([])
    assert (args.logdir, args.allowed_hosts) == ("s3://bucket/runs", "proxy.example")
    assert cli.parse_args(["--logdir", "other"]).logdir == "other"


def test_a_port_that_is_not_a_number_is_refused(clean_environment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--port", "http"])
    assert exit_info.value.code == 2
    assert "kerascope: error: argument --port: invalid int value: 'http'" in capsys.readouterr().err


def test_help_names_the_program_and_says_what_each_option_does(clean_environment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: kerascope [-h] [--logdir LOGDIR] [--port PORT] [--host HOST] [--poll] "
                           "[--allowed-hosts ALLOWED_HOSTS] [--no-auth] Live dashboard over a directory of Keras runs.")
    for line in (
        "--logdir LOGDIR the runs root: a folder, or an object-store URL such as s3://bucket/runs (default: "
        "$KERASCOPE_LOGDIR or ./runs)",
        "--port PORT port to serve on (default 8501)",
        "--host HOST address to bind (default 127.0.0.1; 0.0.0.0 exposes the runs to the network)",
        "--poll poll the filesystem instead of inotify (network filesystems; auto-detected too)",
        "--allowed-hosts ALLOWED_HOSTS comma-separated host names the dashboard is reached by, besides localhost and "
        "this machine's names (a proxy's domain; '*' accepts any; default: $KERASCOPE_ALLOWED_HOSTS); a page whose "
        "name resolves here under another name (DNS rebinding) is refused",
        "--no-auth serve on a non-loopback --host without a password ($KERASCOPE_PASSWORD): anyone who reaches the "
        "port reads every run",
    ):
        assert line in text


@pytest.mark.parametrize("host, loopback", [
    ("localhost", True), ("LocalHost", True), ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("[2001:db8::1]", False),
    ("example.com", False), ("", False), ("localhost.example.com", False),
])
def test_which_binds_serve_this_machine_only(host, loopback):
    assert cli.is_loopback(host) is loopback


def args(*argv: str) -> argparse.Namespace:
    return cli.parse_args(["--logdir", "runs", *argv])


def test_a_loopback_bind_accepts_only_the_loopback_names_and_the_ones_added(clean_environment):
    assert cli.allowed_hosts(args()) == ["localhost", "127.0.0.1", "::1"]
    assert cli.allowed_hosts(args("--allowed-hosts", " Proxy.Example.com ,,b.example , localhost,*")) == [
        "localhost", "127.0.0.1", "::1", "proxy.example.com", "b.example", "*"]


def test_a_network_bind_accepts_its_address_and_this_machines_names(clean_environment):
    def once(*names: str) -> list[str]:
        return list(dict.fromkeys(name.lower() for name in names))

    loopback, machine = ("localhost", "127.0.0.1", "::1"), (socket.gethostname(), socket.getfqdn())
    assert cli.allowed_hosts(args("--host", "192.168.1.5")) == once(*loopback, "192.168.1.5", *machine)
    assert cli.allowed_hosts(args("--host", "[2001:DB8::1]", "--allowed-hosts", "x.example")) == once(
        *loopback, "2001:db8::1", *machine, "x.example")
    assert cli.allowed_hosts(args("--host", "XENIA.lan")) == once(*loopback, "xenia.lan", *machine)
    for wildcard in ("0.0.0.0", "::", ""):  # every address: no one address to name
        assert cli.allowed_hosts(args("--host", wildcard)) == once(*loopback, *machine)


def test_a_network_bind_without_a_password_is_refused_with_the_way_out(clean_environment):
    with pytest.raises(SystemExit) as refused:
        cli.check_exposure(args("--host", "0.0.0.0"), environ={})
    assert refused.value.code == (
        "kerascope: refusing to serve on 0.0.0.0 without a password: anyone who reaches the port would read every "
        "run. Set KERASCOPE_PASSWORD, or pass --no-auth to serve without one.")
    with pytest.raises(SystemExit):
        cli.check_exposure(args("--host", "0.0.0.0"), environ={cli.PASSWORD_ENV: ""})  # empty: no password


def test_a_network_bind_with_a_password_or_a_loopback_one_needs_no_warning(clean_environment):
    assert cli.check_exposure(args("--host", "0.0.0.0"), environ={cli.PASSWORD_ENV: SECRET}) is None
    assert cli.check_exposure(args("--host", "0.0.0.0", "--no-auth"), environ={cli.PASSWORD_ENV: SECRET}) is None
    assert cli.check_exposure(args(), environ={}) is None
    assert cli.check_exposure(args("--host", "localhost", "--no-auth"), environ={}) is None


def test_no_auth_serves_a_network_bind_with_a_warning(clean_environment):
    warning = cli.check_exposure(args("--host", "10.0.0.2", "--port", "9000", "--no-auth"), environ={})
    assert warning == ("Kerascope: WARNING: serving on 10.0.0.2 without a password (--no-auth): anyone who reaches "
                       "port 9000 can read every run, hparam, note and checkpoint.")


def test_check_exposure_reads_the_process_environment_by_default(clean_environment):
    with pytest.raises(SystemExit):
        cli.check_exposure(args("--host", "0.0.0.0"))
    clean_environment.setenv(cli.PASSWORD_ENV, SECRET)
    assert cli.check_exposure(args("--host", "0.0.0.0")) is None


def test_the_streamlit_command_line(clean_environment):
    command = cli.streamlit_command(args("--host", "127.0.0.1", "--port", "8600", "--allowed-hosts", "p.example"),
                                    script="/somewhere/entry.py")
    assert command == [
        cli.sys.executable, "-m", "kerascope.app.server", "run", "/somewhere/entry.py",
        "--server.address", "127.0.0.1", "--server.port", "8600",
        "--server.allowedHosts", "localhost", "--server.allowedHosts", "127.0.0.1", "--server.allowedHosts", "::1",
        "--server.allowedHosts", "p.example",
        "--server.enableCORS", "true", "--server.enableXsrfProtection", "true", "--server.headless", "true",
        "--server.fileWatcherType", "none", "--server.enableStaticServing", "true", "--server.runOnSave", "false",
        "--runner.postScriptGC", "false", "--global.disableWidgetStateDuplicationWarning", "true",
        "--client.showErrorDetails", "type", "--client.toolbarMode", "minimal", "--browser.gatherUsageStats", "false",
        "--theme.base", "light", "--theme.primaryColor", "#2563eb"]
    assert cli.streamlit_command(args())[4] == cli.APP_SCRIPT


def test_the_password_never_reaches_the_command_line(clean_environment):
    clean_environment.setenv(cli.PASSWORD_ENV, SECRET)
    assert SECRET not in " ".join(cli.streamlit_command(args("--host", "0.0.0.0")))


def test_the_plotly_js_version_is_read_from_the_bundle_header(tmp_path):
    plain = tmp_path / "plotly.min.js"
    plain.write_bytes(b"/**\n* plotly.js v3.10.2\n* Copyright\n*/\n" + b"x" * 500)
    packed = tmp_path / "cartesian.min.js.gz"
    with gzip.open(packed, "wb") as f:
        f.write(b"/**\n* plotly.js (cartesian - minified) v4.1.1\n*/")
    unknown = tmp_path / "other.js"
    unknown.write_bytes(b"/* some other bundle v1.2.3 */")
    damaged = tmp_path / "damaged.js"
    damaged.write_bytes(b"/**\xff\xfe\n* plotly.js v2.0.1\n*/")  # bytes that are not UTF-8 before the version
    late = tmp_path / "late.js"
    late.write_bytes(b" " * 200 + b"plotly.js v9.9.9")  # past the header: not read
    assert [cli.plotly_js_version(os.fspath(p)) for p in (plain, packed, damaged, unknown, late)] == [
        "3.10.2", "4.1.1", "2.0.1", None, None]


def test_a_static_file_is_written_complete_readable_by_all_and_dated_as_its_source(tmp_path):
    static = tmp_path / "static"
    path = cli._install(os.fspath(static), "bundle.js", 1_600_000_000.0, lambda out: out.write(b"new"))
    assert path == os.fspath(static / "bundle.js") and (static / "bundle.js").read_bytes() == b"new"
    assert os.stat(path).st_mode & 0o777 == 0o644 and os.path.getmtime(path) == 1_600_000_000.0
    assert os.listdir(static) == ["bundle.js"]  # no temporary file left
    cli._install(os.fspath(static), "bundle.js", 1_600_000_000.0, lambda out: out.write(b"again"))
    assert (static / "bundle.js").read_bytes() == b"new"  # current: not written again
    cli._install(os.fspath(static), "bundle.js", 1_700_000_000.0, lambda out: out.write(b"changed"))
    assert (static / "bundle.js").read_bytes() == b"changed"


def test_a_static_file_is_written_beside_its_target_as_a_hidden_temporary_first(tmp_path):
    seen = []

    def write(out):
        seen.extend(os.listdir(tmp_path))  # the rename into place stays on one filesystem: atomic
        out.write(b"js")

    cli._install(os.fspath(tmp_path), "bundle.js", 1.0, write)
    assert len(seen) == 1 and seen[0].startswith(".tmp-")


def test_the_gzipped_bundle_is_the_same_bytes_on_every_install(tmp_path):
    first = cli.install_plotly_js(os.fspath(tmp_path / "a"))[0]
    with open(first, "rb") as f:
        header = f.read(10)
    assert header[:3] == b"\x1f\x8b\x08" and header[4:8] == b"\x00\x00\x00\x00"  # no timestamp inside


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary_one(tmp_path):
    def fail(out):
        out.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cli._install(os.fspath(tmp_path), "bundle.js", 1.0, fail)
    assert os.listdir(tmp_path) == []


def test_the_fallback_entry_script_runs_the_dashboards_and_is_rewritten_only_when_it_differs(tmp_path):
    path = cli._write_entry_script(os.fspath(tmp_path))
    assert path == os.fspath(tmp_path / "streamlit_app.py")
    source = (tmp_path / "streamlit_app.py").read_text(encoding="utf-8")
    assert f"_APP = {cli.APP_SCRIPT!r}\n" in source
    namespace = {}
    exec(compile(source.replace("exec(_code", "_ran = (_code"), path, "exec"), namespace)
    assert namespace["_APP"] == cli.APP_SCRIPT and namespace["_ran"][1]["__file__"] == cli.APP_SCRIPT
    inode = os.stat(path).st_ino
    assert cli._write_entry_script(os.fspath(tmp_path)) == path and os.stat(path).st_ino == inode
    (tmp_path / "streamlit_app.py").write_text("# an older one", encoding="utf-8")
    cli._write_entry_script(os.fspath(tmp_path))
    assert (tmp_path / "streamlit_app.py").read_text(encoding="utf-8") == source


def test_an_unknown_storage_url_is_refused_with_the_reason(tmp_path):
    with pytest.raises(SystemExit) as refused:
        cli.resolve_logdir("nope://bucket/runs")
    assert refused.value.code == "kerascope: unknown storage protocol nope:// (fsspec has no backend of that name)"


def test_an_object_store_url_is_kept_and_no_folder_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.resolve_logdir("memory://bucket/runs") == "memory://bucket/runs"
    assert os.listdir(tmp_path) == []


class Exec(Exception):
    """Raised instead of replacing the test process: what `main` would have run."""


def run_main(monkeypatch, argv, static_dir=None):
    def exec_instead(path, command):
        raise Exec(path, command)

    monkeypatch.setattr(os, "execv", exec_instead)
    if static_dir is not None:
        monkeypatch.setattr(cli, "STATIC_DIR", static_dir)
    with pytest.raises(Exec) as ran:
        cli.main(argv)
    return ran.value.args


def test_main_sets_the_dashboards_environment_and_hands_over_to_streamlit(clean_environment, tmp_path, capsys):
    clean_environment.chdir(tmp_path)
    static = os.fspath(tmp_path / "static")
    path, command = run_main(clean_environment, ["--logdir", "runs", "--port", "8765", "--poll"], static)
    assert path == command[0] == cli.sys.executable and command[4] == cli.APP_SCRIPT
    assert sorted(os.listdir(static)) == ["plotly-cartesian.min.js.gz", "plotly.min.js.gz"]
    assert command[command.index("--server.port") + 1] == "8765"
    assert os.environ[cli.LOGDIR_ENV] == os.fspath(tmp_path / "runs") and (tmp_path / "runs").is_dir()
    assert os.environ[cli.POLL_ENV] == "1"
    out = capsys.readouterr().out
    assert out == f"Kerascope: serving {tmp_path / 'runs'} on http://127.0.0.1:8765\n"
    assert capsys.readouterr().err == ""  # plotly.js is where it belongs: nothing to warn about
    run_main(clean_environment, ["--logdir", "runs"], static)
    assert os.environ[cli.POLL_ENV] == ""


def test_main_never_prints_the_password_or_the_urls_credentials(clean_environment, tmp_path, capsys):
    clean_environment.setenv(cli.PASSWORD_ENV, SECRET)
    _, command = run_main(clean_environment, ["--logdir", f"memory://user:{SECRET}@bucket/runs?key={SECRET}",
                                              "--host", "0.0.0.0"], os.fspath(tmp_path / "static"))
    captured = capsys.readouterr()
    assert "Kerascope: serving memory://bucket/runs on http://0.0.0.0:8501" in captured.out
    assert SECRET not in captured.out + captured.err + " ".join(command)
    assert "WARNING" not in captured.err  # a password is set: nothing to warn about


def test_main_refuses_a_network_bind_without_a_password_before_serving(clean_environment, tmp_path, capsys):
    clean_environment.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        cli.main(["--logdir", "runs", "--host", "0.0.0.0"])
    assert str(refused.value.code).startswith("kerascope: refusing to serve on 0.0.0.0 without a password")
    assert not (tmp_path / "runs").exists() and capsys.readouterr().out == ""


def test_main_warns_on_stderr_when_serving_without_a_password(clean_environment, tmp_path, capsys):
    clean_environment.chdir(tmp_path)
    run_main(clean_environment, ["--logdir", "runs", "--host", "0.0.0.0", "--no-auth"], os.fspath(tmp_path / "static"))
    err = capsys.readouterr().err
    assert re.search(r"^Kerascope: WARNING: serving on 0\.0\.0\.0 without a password \(--no-auth\)", err, re.M)


def test_main_serves_plotly_js_from_the_cache_when_the_package_folder_is_read_only(clean_environment, tmp_path,
                                                                                     capsys):
    clean_environment.chdir(tmp_path)
    blocked = tmp_path / "static"
    blocked.write_text("a file, not a folder")  # a folder that cannot be created, even by root
    clean_environment.setenv("KERASCOPE_CACHE_DIR", os.fspath(tmp_path / "cache"))
    _, command = run_main(clean_environment, ["--logdir", "runs"], os.fspath(blocked))
    script = command[4]
    assert script != cli.APP_SCRIPT and os.path.dirname(os.path.dirname(script)) == os.fspath(tmp_path / "cache")
    captured = capsys.readouterr()
    assert captured.err == (f"Kerascope: cannot write plotly.js into {blocked} (File exists); serving it from "
                            f"{os.path.dirname(script)}\n")
    assert captured.out.startswith("Kerascope: serving ")


def test_the_fallback_folder_is_private_and_named_for_this_installed_dashboard(tmp_path):
    blocked = tmp_path / "static"
    blocked.write_text("a file, not a folder")
    script, _ = cli.serve_plotly_js(os.fspath(blocked), fallback_root=os.fspath(tmp_path / "cache"))
    folder = os.path.dirname(script)
    digest = hashlib.sha256(cli.APP_SCRIPT.encode("utf-8")).hexdigest()[:12]
    assert os.path.basename(folder) == f"dashboard-{digest}"
    assert os.stat(folder).st_mode & 0o777 == 0o700  # it holds a script the dashboard runs: no one else writes there


def test_without_any_writable_folder_the_warning_says_why_each_was_refused(tmp_path):
    blocked, cache = tmp_path / "static", tmp_path / "cache"
    blocked.write_text("a file, not a folder")
    cache.write_text("a file, not a folder")
    script, warning = cli.serve_plotly_js(os.fspath(blocked), fallback_root=os.fspath(cache))
    folder = os.path.join(cache, f"dashboard-{hashlib.sha256(cli.APP_SCRIPT.encode('utf-8')).hexdigest()[:12]}")
    assert (script, warning) == (cli.APP_SCRIPT, f"Kerascope: WARNING: cannot write plotly.js into {blocked} (File "
                                                 f"exists), nor into {folder} (Not a directory): the dashboard's "
                                                 "charts will not draw")


def test_the_serving_line_reaches_a_pipe_before_streamlit_replaces_the_process(tmp_path):
    """Under a service manager or `| tee`, stdout is a pipe (block-buffered): os.execv drops an unflushed buffer,
    as the os._exit standing in for it here does."""
    script = ("import os, sys\nos.execv = lambda path, args: os._exit(0)\n"
              "from kerascope.app.cli import main\nmain(sys.argv[1:])\n")
    result = subprocess.run([sys.executable, "-c", script, "--logdir", os.fspath(tmp_path / "runs"), "--port", "8777"],
                            capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == f"Kerascope: serving {tmp_path / 'runs'} on http://127.0.0.1:8777\n"
