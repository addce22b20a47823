"""Kerascope's run format: the writer used during training, and the readers used by the dashboard and notebooks.

The public API is what this package exports plus `monitor.format`, the schema (file names, columns, statuses, event
kinds, metric directions). Nothing here imports keras or tensorflow. Names are imported lazily so that the training
side (which needs only RunWriter) does not pay for pandas and watchdog.
"""

from importlib import import_module
from typing import Any

from kerascope.monitor.format import FORMAT_VERSION

_LAZY = {
    "MetricSummary": "kerascope.monitor.run_info",
    "ModelInfo": "kerascope.monitor.run_info",
    "Overview": "kerascope.monitor.run_info",
    "Run": "kerascope.monitor.reader",
    "RunFormatError": "kerascope.monitor.run_files",
    "RunOptions": "kerascope.monitor.run_info",
    "RunProgress": "kerascope.monitor.run_info",
    "RunStore": "kerascope.monitor.store",
    "RunWatcher": "kerascope.monitor.watcher",
    "RunWriter": "kerascope.monitor.writer",
}

__all__ = ["FORMAT_VERSION", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'monitor' has no attribute {name!r}")
