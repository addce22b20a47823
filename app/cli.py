"""Command line: `python -m kerascope --logdir DIR [--port N] [--host H] [--poll]` (also installed as `kerascope`)."""

from __future__ import annotations

import argparse
import os
import sys

APP_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "streamlit_app.py")
LOGDIR_ENV = "KERASCOPE_LOGDIR"
POLL_ENV = "KERASCOPE_POLL"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kerascope", description="Live dashboard over a directory of Keras runs.")
    parser.add_argument("--logdir", default=os.environ.get(LOGDIR_ENV, "runs"),
                        help=f"the runs root (default: ${LOGDIR_ENV} or ./runs)")
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the runs to the network)")
    parser.add_argument("--poll", action="store_true",
                        help="poll the filesystem instead of inotify (network filesystems; auto-detected too)")
    return parser.parse_args(argv)


def streamlit_command(args: argparse.Namespace) -> list[str]:
    """The `streamlit run` command line for these arguments.

    Streamlit's own source watcher is off (`fileWatcherType none`) so it never walks the runs root; error details
    are limited to the exception type and message so a traceback cannot leak paths to a remote viewer.
    """
    return [
        sys.executable, "-m", "streamlit", "run", APP_SCRIPT,
        "--server.address", args.host,
        "--server.port", str(args.port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--client.showErrorDetails", "type",
        "--client.toolbarMode", "minimal",
        "--browser.gatherUsageStats", "false",
        "--theme.base", "light",
        "--theme.primaryColor", "#2563eb",
    ]


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
    logdir = os.path.abspath(args.logdir)
    os.makedirs(logdir, exist_ok=True)
    os.environ[LOGDIR_ENV] = logdir
    os.environ[POLL_ENV] = "1" if args.poll else ""
    print(f"Kerascope: serving {logdir} on http://{args.host}:{args.port}", flush=True)
    command = streamlit_command(args)
    os.execv(command[0], command)
