"""Command line: `python -m kerascope --logdir DIR [--port N] [--host H] [--poll] [--allowed-hosts H,..] [--no-auth]`
(also installed as `kerascope`).

A non-loopback `--host` needs a password in $KERASCOPE_PASSWORD (or an explicit `--no-auth`): the dashboard serves every
run to whoever reaches the port.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import ipaddress
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from importlib.util import find_spec
from typing import BinaryIO

from kerascope.monitor import cache_dir, check_logdir, redact_url, url_protocol
from kerascope.monitor.format import write_bytes_atomic

APP_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "streamlit_app.py")
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")  # served at /app/static/
PLOTLY_JS = "plotly.min.js"
CARTESIAN_JS = "plotly-cartesian.min.js.gz"  # served name of the vendored partial bundle (app/vendor/README.md)
VENDORED_CARTESIAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor", CARTESIAN_JS)
LOGDIR_ENV = "KERASCOPE_LOGDIR"
POLL_ENV = "KERASCOPE_POLL"
PASSWORD_ENV = "KERASCOPE_PASSWORD"  # read by the dashboard's password gate (app/auth.py)
ALLOWED_HOSTS_ENV = "KERASCOPE_ALLOWED_HOSTS"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# The entry script written beside plotly.js when the package folder is read-only (`serve_plotly_js`).
ENTRY_SCRIPT = '''"""Kerascope's dashboard, started from here because plotly.js could not be put beside its own
entry script (a read-only install): Streamlit serves static files only from beside the script it runs. Written by the
`kerascope` command."""

_APP = {app!r}
with open(_APP, encoding="utf-8") as _source:
    _code = compile(_source.read(), _APP, "exec")
exec(_code, {{"__name__": "__main__", "__file__": _APP}})
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kerascope", description="Live dashboard over a directory of Keras runs.")
    parser.add_argument("--logdir", default=os.environ.get(LOGDIR_ENV, "runs"),
                        help=f"the runs root: a folder, or an object-store URL such as s3://bucket/runs (default: "
                             f"${LOGDIR_ENV} or ./runs)")
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the runs to the network)")
    parser.add_argument("--poll", action="store_true",
                        help="poll the filesystem instead of inotify (network filesystems; auto-detected too)")
    parser.add_argument("--allowed-hosts", default=os.environ.get(ALLOWED_HOSTS_ENV, ""),
                        help="comma-separated host names the dashboard is reached by, besides localhost and this "
                             f"machine's names (a proxy's domain; '*' accepts any; default: ${ALLOWED_HOSTS_ENV}); "
                             "a page whose name resolves here under another name (DNS rebinding) is refused")
    parser.add_argument("--no-auth", action="store_true",
                        help=f"serve on a non-loopback --host without a password (${PASSWORD_ENV}): anyone who reaches "
                             "the port reads every run")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    """True when binding `host` serves this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(args: argparse.Namespace) -> list[str]:
    """The Host names the dashboard's WebSocket accepts (Streamlit's `server.allowedHosts`).

    Loopback names always; on a non-loopback bind also the bound address and this machine's names; plus what
    `--allowed-hosts` adds. A web page that rebinds its own name to this address sends its own name as Host and is
    refused.
    """
    hosts = list(LOOPBACK_NAMES)
    if not is_loopback(args.host):
        if args.host not in ("0.0.0.0", "::", ""):
            hosts.append(args.host.strip("[]"))
        hosts += [socket.gethostname(), socket.getfqdn()]
    hosts += [host.strip() for host in args.allowed_hosts.split(",") if host.strip()]
    return list(dict.fromkeys(host.lower() for host in hosts))


def check_exposure(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str | None:
    """Refuse a non-loopback bind without a password; for one allowed by `--no-auth`, the warning to print.

    Returns:
        The warning, or None when the bind is loopback or a password is set.

    Raises:
        SystemExit: a non-loopback `--host`, no $KERASCOPE_PASSWORD and no `--no-auth`.
    """
    environ = os.environ if environ is None else environ
    if is_loopback(args.host) or environ.get(PASSWORD_ENV):
        return None
    if not args.no_auth:
        raise SystemExit(
            f"kerascope: refusing to serve on {args.host} without a password: anyone who reaches the port would read "
            f"every run. Set {PASSWORD_ENV}, or pass --no-auth to serve without one."
        )
    return (f"Kerascope: WARNING: serving on {args.host} without a password (--no-auth): anyone who reaches port "
            f"{args.port} can read every run, hparam, note and checkpoint.")


def streamlit_command(args: argparse.Namespace, script: str = APP_SCRIPT) -> list[str]:
    """The `streamlit run` command line for these arguments, running `script` (`serve_plotly_js` says which), run by
    app/server.py (Streamlit's server plus a thread that reads the runs root while it starts).

    Streamlit's own source watcher is off (`fileWatcherType none`) so it never walks the runs root; error details
    are limited to the exception type and message so a traceback cannot leak paths to a remote viewer.
    """
    hosts = [option for host in allowed_hosts(args) for option in ("--server.allowedHosts", host)]
    return [
        sys.executable, "-m", "kerascope.app.server", "run", script,
        "--server.address", args.host,
        "--server.port", str(args.port),
        *hosts,
        "--server.enableCORS", "true",  # cross-origin requests refused (the default, stated: deployments rely on it)
        "--server.enableXsrfProtection", "true",
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.enableStaticServing", "true",  # plotly.js for the charts, from app/static/
        "--server.runOnSave", "false",
        # Streamlit runs a full gc.collect(2) after every script run, fragment ticks included: with pandas, plotly and
        # pyarrow loaded that is ~0.1 s per tick, most of a core for one viewer at 5 ticks a second. Python's own
        # generational collector still runs.
        "--runner.postScriptGC", "false",
        # Links and revisits restore a page's controls through session state before its widgets (with their defaults)
        # are drawn: by design, not the mistake Streamlit's log warning is about.
        "--global.disableWidgetStateDuplicationWarning", "true",
        "--client.showErrorDetails", "type",
        "--client.toolbarMode", "minimal",
        "--browser.gatherUsageStats", "false",
        "--theme.base", "light",
        "--theme.primaryColor", "#2563eb",
    ]


def plotly_js_version(path: str) -> str | None:
    """The version in a plotly.js bundle's header comment ("* plotly.js (cartesian - minified) v4.1.1"), gzipped or
    not."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as bundle:
        head = bundle.read(200).decode("utf-8", errors="replace")
    match = re.search(r"plotly\.js[^\n]*? v(\d+\.\d+\.\d+)", head)
    return match.group(1) if match else None


def _install(static_dir: str, target_name: str, modified: float, write: Callable[[BinaryIO], None]) -> str:
    """Write a static file atomically, and again only when its source changed (`modified`: the source's mtime)."""
    target = os.path.join(static_dir, target_name)
    if os.path.isfile(target) and os.path.getmtime(target) == modified:
        return target
    os.makedirs(static_dir, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=static_dir, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the server may run as another user
        os.utime(temporary, (modified, modified))
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def install_plotly_js(static_dir: str = STATIC_DIR) -> list[str]:
    """Put plotly.js, gzipped, where Streamlit serves the app's static files: the installed plotly package's full
    bundle, and the vendored cartesian bundle when it is the same plotly.js version (else the charts use the full one).

    Streamlit gzips `/app/static/` responses at level 9 on every request (4.8 MB of plotly.js: seconds of server CPU
    per page load); a file that is already gzip is sent as it is, and the browser inflates it natively. Written
    atomically, and again only when the source changed.

    Args:
        static_dir: the `static/` folder beside the dashboard's entry script (served at `/app/static/`).

    Returns:
        The paths of the files served.
    """
    plotly_dir = find_spec("plotly").submodule_search_locations[0]  # not imported: the command starts in a blink
    source = os.path.join(plotly_dir, "package_data", PLOTLY_JS)

    def write_full(out: BinaryIO) -> None:
        with open(source, "rb") as plain, gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as packed:
            shutil.copyfileobj(plain, packed)

    installed = [_install(static_dir, PLOTLY_JS + ".gz", os.stat(source).st_mtime, write_full)]
    stale = os.path.join(static_dir, CARTESIAN_JS)
    if os.path.isfile(VENDORED_CARTESIAN) and plotly_js_version(VENDORED_CARTESIAN) == plotly_js_version(source):

        def write_cartesian(out: BinaryIO) -> None:
            with open(VENDORED_CARTESIAN, "rb") as packed:
                shutil.copyfileobj(packed, out)

        installed.append(_install(static_dir, CARTESIAN_JS, os.stat(VENDORED_CARTESIAN).st_mtime, write_cartesian))
    elif os.path.exists(stale):
        os.remove(stale)  # another plotly.js than the installed one: the charts fall back to the full bundle
    return installed


def serve_plotly_js(static_dir: str = STATIC_DIR, fallback_root: str | None = None) -> tuple[str, str | None]:
    """Put plotly.js where Streamlit will serve it, and say which entry script to run for that.

    Streamlit serves the `static/` folder beside the script it runs: plotly.js goes beside the dashboard's entry script
    (`install_plotly_js`, which writes nothing when the files there are current). When the package folder cannot be
    written (a read-only site-packages), the files go to a folder of Kerascope's cache directory, beside a small entry
    script that runs the dashboard's; when that fails too, the dashboard starts without plotly.js and draws no chart.

    Args:
        static_dir: the `static/` folder beside the dashboard's entry script.
        fallback_root: where the fallback folder goes (default: `cache_dir()`: $KERASCOPE_CACHE_DIR, else
            $XDG_CACHE_HOME/kerascope, else ~/.cache/kerascope).

    Returns:
        The entry script to run, and a one-line warning for the terminal (None when plotly.js is where it belongs).

    Example:
    ```python
    script, warning = serve_plotly_js()
    if warning:
        print(warning, file=sys.stderr)
    command = streamlit_command(parse_args(["--logdir", "runs"]), script)
    ```
    """
    try:
        install_plotly_js(static_dir)
        return APP_SCRIPT, None
    except OSError as exc:
        refused = f"cannot write plotly.js into {static_dir} ({exc.strerror or exc})"
    # One folder per installed dashboard: two installs sharing the cache directory never run each other's script.
    digest = hashlib.sha256(APP_SCRIPT.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    folder = os.path.join(fallback_root or cache_dir(), f"dashboard-{digest}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        install_plotly_js(os.path.join(folder, "static"))
        script = _write_entry_script(folder)
    except OSError as exc:
        return APP_SCRIPT, (f"Kerascope: WARNING: {refused}, nor into {folder} ({exc.strerror or exc}): the "
                            "dashboard's charts will not draw")
    return script, f"Kerascope: {refused}; serving it from {folder}"


def _write_entry_script(folder: str) -> str:
    """The entry script in `folder` that runs the dashboard's (rewritten only when it says something else)."""
    path = os.path.join(folder, os.path.basename(APP_SCRIPT))
    content = ENTRY_SCRIPT.format(app=APP_SCRIPT).encode("utf-8")
    try:
        with open(path, "rb") as current:
            if current.read() == content:
                return path
    except FileNotFoundError:
        pass
    write_bytes_atomic(path, content)
    return path


def resolve_logdir(logdir: str) -> str:
    """A local runs folder as an absolute path (created when missing), or an object-store URL whose backend is
    installed (`s3://bucket/runs`: read by polling, no folder is created). SystemExit with the reason otherwise."""
    try:
        location = check_logdir(logdir)
    except (ImportError, ValueError) as exc:
        raise SystemExit(f"kerascope: {exc}") from None
    if not url_protocol(location):
        os.makedirs(location, exist_ok=True)
    return location


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, then replace this process with the Streamlit server (signals reach it directly).

    Args:
        argv: command-line arguments without the program name; `sys.argv[1:]` when None.

    Example:
    ```python
    from kerascope.app.cli import main
    main(["--logdir", "runs", "--port", "8502"])  # serves http://127.0.0.1:8502 until interrupted
    ```
    """
    args = parse_args(argv)
    warning = check_exposure(args)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    logdir = resolve_logdir(args.logdir)
    os.environ[LOGDIR_ENV] = logdir
    os.environ[POLL_ENV] = "1" if args.poll else ""
    print(f"Kerascope: serving {redact_url(logdir)} on http://{args.host}:{args.port}", flush=True)
    script, warning = serve_plotly_js(STATIC_DIR)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    command = streamlit_command(args, script)
    os.execv(command[0], command)
