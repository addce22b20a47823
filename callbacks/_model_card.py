"""The model card: summary text, layer table, config, DOT source of the graph (built by hand) and plot_model PNG."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import keras

from kerascope.callbacks._statistics import nested_layers
from kerascope.monitor import RunWriter
from kerascope.monitor import format as fmt

SUMMARY_WIDTH = 120
_columns_lock = threading.Lock()


def summary_text(model: keras.Model) -> str:
    """model.summary() as plain text (print_fn receives it without ANSI codes)."""
    chunks: list[str] = []
    # Keras prints through a rich Console, which crops to the terminal width (80 without a terminal) unless COLUMNS
    # says otherwise; rich reads it when the console is created, inside summary().
    with _columns_lock:
        saved = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = str(SUMMARY_WIDTH)
        try:
            model.summary(
                line_length=SUMMARY_WIDTH,
                expand_nested=True,
                show_trainable=True,
                print_fn=lambda text, *args, **kwargs: chunks.append(text),
            )
        finally:
            if saved is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = saved
    return "\n".join(chunks)


def _shape(layer: keras.layers.Layer) -> Any:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return None
    shapes = [list(tensor.shape) for tensor in keras.tree.flatten(output)]
    return shapes[0] if len(shapes) == 1 else shapes


def layer_table(model: keras.Model) -> list[dict[str, Any]]:
    """name, class, output_shape, params, trainable, parent (the enclosing model's display name) per layer."""
    rows = []
    for name, layer in nested_layers(model):
        parent, _, short = name.rpartition("/")
        rows.append(
            {
                "name": short,
                "path": name,
                "class": type(layer).__name__,
                "output_shape": _shape(layer),
                "params": int(layer.count_params()) if layer.built else 0,
                "trainable": bool(layer.trainable),
                "parent": parent or None,
            }
        )
    return rows


def json_config(model: keras.Model) -> dict[str, Any] | None:
    """model.get_config() when it is plain JSON (a subclassed model's config may hold arbitrary objects)."""
    try:
        config = model.get_config()
        json.dumps(config, allow_nan=True)
    except (NotImplementedError, TypeError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _DotBuilder:
    """Walks the layer graph (Keras nodes) and emits DOT; nested models become clusters wired to their own layers."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def model(self, model: keras.Model, prefix: str, indent: str) -> tuple[list[str], list[str]]:
        """Emit `model`'s layers and edges; return the node ids that its inputs enter and its outputs leave."""
        layers = list(model.layers)
        entries_exits: dict[int, tuple[list[str], list[str]]] = {}
        for layer in layers:
            node_id = prefix + layer.name
            if isinstance(layer, keras.Model):
                self.lines.append(f"{indent}subgraph {_quote('cluster_' + node_id)} {{")
                self.lines.append(f"{indent}  label={_quote(f'{layer.name} ({type(layer).__name__})')};")
                entries_exits[id(layer)] = self.model(layer, node_id + "/", indent + "  ")
                self.lines.append(f"{indent}}}")
            else:
                shape = _shape(layer)
                label = f"{layer.name}\n{type(layer).__name__}" + (f"\n{shape}" if shape is not None else "")
                style = "" if layer.trainable or not layer.weights else ", style=dashed"
                self.lines.append(f"{indent}{_quote(node_id)} [label={_quote(label)}{style}];")
                entries_exits[id(layer)] = ([node_id], [node_id])
        if isinstance(model, keras.Sequential):
            for before, after in zip(layers, layers[1:], strict=False):
                self._edges(entries_exits[id(before)][1], entries_exits[id(after)][0], indent)
            if not layers:
                return [], []
            return entries_exits[id(layers[0])][0], entries_exits[id(layers[-1])][1]
        members = {id(layer) for layer in layers}
        has_parent = set()
        for layer in layers:
            for parent in _inbound_layers(layer, members):
                has_parent.add(id(layer))
                self._edges(entries_exits[id(parent)][1], entries_exits[id(layer)][0], indent)
        outputs = {id(tensor._keras_history.operation) for tensor in keras.tree.flatten(getattr(model, "outputs", []))}
        entries = [n for layer in layers if id(layer) not in has_parent for n in entries_exits[id(layer)][0]]
        exits = [n for layer in layers if id(layer) in outputs for n in entries_exits[id(layer)][1]]
        if not layers:
            return [], []
        return entries, exits or entries_exits[id(layers[-1])][1]

    def _edges(self, sources: list[str], targets: list[str], indent: str) -> None:
        for source in sources:
            for target in targets:
                self.lines.append(f"{indent}{_quote(source)} -> {_quote(target)};")


def _inbound_layers(layer: keras.layers.Layer, members: set[int]) -> list[keras.layers.Layer]:
    """The layers of the same model whose outputs feed `layer` (Keras keeps them on the layer's inbound nodes)."""
    parents = []
    for node in getattr(layer, "_inbound_nodes", []):
        for tensor in node.input_tensors:
            source = tensor._keras_history.operation
            if source is not None and id(source) in members and source not in parents:
                parents.append(source)
    return parents


def graph_dot(model: keras.Model) -> str:
    """DOT source of the model's layer graph, without graphviz; a subclassed model is one node per layer."""
    builder = _DotBuilder()
    try:
        builder.model(model, "", "  ")
    except (AttributeError, ValueError, KeyError, IndexError):
        # Subclassed models have no layer graph: list their layers, unconnected.
        builder.lines = [
            f"  {_quote(name)} [label={_quote(name + chr(10) + type(layer).__name__)}];"
            for name, layer in nested_layers(model)
        ]
    header = [f"digraph {_quote(model.name)} {{", "  rankdir=TB;", "  node [shape=box, fontname=Helvetica];"]
    return "\n".join(header + builder.lines + ["}"]) + "\n"


def plot_model_png(model: keras.Model, path: str) -> str | None:
    """Write keras.utils.plot_model's PNG atomically to `path`; return None, or why it was skipped."""
    try:
        import pydot  # noqa: F401
    except ImportError:
        return "graph.png needs pydot and graphviz: pip install pydot; apt-get install graphviz (or brew install)"
    if shutil.which("dot") is None:
        return "graph.png needs graphviz's `dot` binary on PATH: apt-get install graphviz (or brew install graphviz)"
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=directory)
    os.close(fd)
    try:
        keras.utils.plot_model(
            model, to_file=tmp, show_shapes=True, show_layer_names=True, show_trainable=True, expand_nested=True
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return None


def write_model_card(writer: RunWriter, model: keras.Model, phase: int, skip: Callable[[str, str], None]) -> None:
    """summary.txt, this phase's layers.jsonl line, config.json, graph.dot and graph.png; `skip(what, why)` is told
    what could not be written and how to get it."""
    writer.log("layers", {"phase": phase, "time": time.time(), "layers": layer_table(model)})
    writer.write_file(fmt.GRAPH_DOT_FILE, graph_dot(model))
    try:
        writer.write_file(fmt.SUMMARY_FILE, summary_text(model))
    except ValueError as exc:  # an unbuilt subclassed model cannot summarize itself
        skip("summary", f"model.summary() failed: {exc}")
    config = json_config(model)
    if config is not None:
        # Already plain JSON: written as is, since write_json's conversion cuts nesting deeper than a nested model's.
        writer.write_file(fmt.CONFIG_FILE, json.dumps(config, indent=1, allow_nan=True))
    else:
        skip(
            "config",
            "model.get_config() is not JSON-serializable (typical of subclassed models without "
            "get_config); config.json is not written",
        )
    try:
        why = plot_model_png(model, os.path.join(writer.run_dir, fmt.GRAPH_PNG_FILE))
    except (ValueError, OSError, ImportError) as exc:  # pydot or dot failing on an unusual model
        why = f"keras.utils.plot_model failed: {str(exc)[:300]}"
    if why:
        skip("graph.png", why)
