"""Kerascope: a live training monitor for Keras 3.

```python
from kerascope import LiveMonitor, RunStore
```

`LiveMonitor` (the callback) imports keras; everything else here is dashboard-side and never does. Names are imported
on first use, so `import kerascope` alone costs nothing and a dashboard-only install never touches keras.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

# Installed, kerascope.callbacks / .monitor / .app are folders inside this package (pyproject maps them). In a source
# checkout they are the top-level folders beside this one: look there too, so the same imports work in both.
if not os.path.isdir(os.path.join(__path__[0], "monitor")):
    __path__.append(os.path.dirname(__path__[0]))

__version__ = "0.1.0"

_PUBLIC = {
    "LiveMonitor": "kerascope.callbacks",
    "FORMAT_VERSION": "kerascope.monitor",
    "Run": "kerascope.monitor",
    "RunFormatError": "kerascope.monitor",
    "RunStore": "kerascope.monitor",
    "RunWatcher": "kerascope.monitor",
    "RunWriter": "kerascope.monitor",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'kerascope' has no attribute {name!r}")
