"""Kerascope's run format: the writer used during training, and the readers used by the dashboard and notebooks.

The public API is what this package exports plus `kerascope.monitor.format`, the schema (file names, columns,
statuses, event kinds, metric directions); its other modules are internal. Nothing here imports keras or tensorflow.
Names are imported lazily so that the training side (which needs only RunWriter) does not pay for pandas and watchdog.

- Writing: `RunWriter`.
- Reading: `RunStore` (the runs of a logdir) and `Run` (one run), whose typed values are `ModelInfo`, `RunOptions`,
  `RunProgress`, `Overview` and `MetricSummary`; `RunFormatError` for a file this version cannot read.
- Following live runs: `RunWatcher` (a local logdir) and `RemoteWatcher` (an object-store one), both `Changes` (what a
  store asks of a watcher), and `Catalog`, the cache that lets a `RunStore` list a large local root without opening
  its runs, kept in `cache_dir()`; `collection_paused(n)` keeps Python's cyclic collector out of building what
  thousands of runs hold.
- Logdirs: `check_logdir` (validate, and where the runs are), `url_protocol` (None for a local folder) and
  `redact_url` (a URL safe to show).

Example:
```python
from kerascope.monitor import RunStore

run = RunStore("runs").runs()[0]
print(run.name, run.status, run.options.checkpoint, run.overview().metrics["loss"].best)
```
"""

from importlib import import_module
from typing import Any

from kerascope.monitor.format import FORMAT_VERSION

_LAZY = {
    "Catalog": "kerascope.monitor.catalog",
    "Changes": "kerascope.monitor.store",
    "MetricSummary": "kerascope.monitor.run_info",
    "ModelInfo": "kerascope.monitor.run_info",
    "Overview": "kerascope.monitor.run_info",
    "RemoteWatcher": "kerascope.monitor.remote_reader",
    "Run": "kerascope.monitor.reader",
    "RunFormatError": "kerascope.monitor.run_files",
    "RunOptions": "kerascope.monitor.run_info",
    "RunProgress": "kerascope.monitor.run_info",
    "RunStore": "kerascope.monitor.store",
    "RunWatcher": "kerascope.monitor.watcher",
    "RunWriter": "kerascope.monitor.writer",
    "cache_dir": "kerascope.monitor.catalog",
    "check_logdir": "kerascope.monitor.storage",
    "collection_paused": "kerascope.monitor.store",
    "redact_url": "kerascope.monitor.storage",
    "url_protocol": "kerascope.monitor.storage",
}

__all__ = ["FORMAT_VERSION", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kerascope.monitor' has no attribute {name!r}")
