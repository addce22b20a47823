"""The layering anyone can check: app/ reads runs only through kerascope.monitor's public API and its typed values,
LiveMonitor is one class over Keras's Callback, and the app modules documented as Streamlit-free are."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import kerascope.monitor

REPO = pathlib.Path(__file__).resolve().parent.parent
APP_SOURCES = sorted((REPO / "app").rglob("*.py"))
# The app modules that build tables, charts and text from runs without Streamlit (tested and benchmarked without it),
# and the command line, which starts before Streamlit does.
STREAMLIT_FREE = ("query", "formatting", "compare_charts", "tables", "run_charts", "charts", "smoothing", "alerts",
                  "cli")


def test_the_app_never_reads_run_json_dicts():
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in APP_SOURCES for number, line in enumerate(path.read_text().splitlines(), 1)
             if "meta.get(" in line]
    assert found == []


def test_the_app_imports_only_the_public_monitor_api():
    public = set(kerascope.monitor.__all__) | {"format"}
    found = []
    for path in APP_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
                names: list[str] = []
            elif isinstance(node, ast.ImportFrom):
                modules, names = [node.module or ""], [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.startswith("kerascope.monitor.") and module != "kerascope.monitor.format":
                    found.append(f"{path.relative_to(REPO)}: {module}")
                if module == "kerascope.monitor":
                    found += [f"{path.relative_to(REPO)}: kerascope.monitor.{name}" for name in names
                              if name not in public]
    assert found == []


def test_live_monitor_is_one_class_over_keras_callback():
    import keras

    from kerascope import LiveMonitor

    assert [cls for cls in LiveMonitor.__mro__ if cls.__module__.startswith("kerascope")] == [LiveMonitor]
    assert LiveMonitor.__mro__[1] is keras.callbacks.Callback


def test_streamlit_free_app_modules_import_neither_streamlit_nor_keras():
    code = f"""
import importlib, json, sys
found = {{}}
for name in {STREAMLIT_FREE!r}:
    importlib.import_module("kerascope.app." + name)
    found[name] = sorted(m for m in sys.modules if m.split(".")[0] in ("streamlit", "keras", "tensorflow"))[:3]
print(json.dumps(found))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # Each module with what was loaded once it was imported (in this order): the first non-empty entry is the culprit.
    assert json.loads(result.stdout) == dict.fromkeys(STREAMLIT_FREE, [])
