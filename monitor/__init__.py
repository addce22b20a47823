"""Kerascope's run format: the writer used during training, and the readers used by the dashboard and notebooks.

Nothing here imports keras or tensorflow. Names are imported lazily so that the training side (which needs only
RunWriter) does not pay for pandas and watchdog.
"""

from importlib import import_module
from typing import Any

from kerascope.monitor.format import FORMAT_VERSION

_LAZY = {
    "Run": "kerascope.monitor.reader",
    "RunFormatError": "kerascope.monitor.run_files",
    "RunStore": "kerascope.monitor.store",
    "RunWatcher": "kerascope.monitor.watcher",
    "RunWriter": "kerascope.monitor.writer",
}

__all__ = ["FORMAT_VERSION", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'monitor' has no attribute {name!r}")
