"""Activation and weight statistics with numpy, and the probe model that exposes every layer's output."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

HISTOGRAM_BINS = 30


def summarize(values: Any) -> dict[str, Any]:
    """mean, std, min, max, zero_frac, count and a 30-bin histogram of an array.

    Non-finite values are left out of the histogram and show in mean/std/min/max as NaN/Inf.
    """
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind not in "fiub" or flat.dtype.itemsize < 4:
        flat = flat.astype("float32")
    if flat.size == 0:
        return {"count": 0}
    low, high = float(np.min(flat)), float(np.max(flat))
    finite = flat if math.isfinite(low) and math.isfinite(high) else flat[np.isfinite(flat)]
    return {
        "mean": float(np.mean(flat, dtype="float64")),
        "std": float(np.std(flat, dtype="float64")),
        "min": low,
        "max": high,
        "zero_frac": float(np.count_nonzero(flat == 0) / flat.size),
        "count": int(flat.size),
        "histogram": _histogram(finite, low, high) if finite.size else None,
    }


def _histogram(finite: np.ndarray, low: float, high: float) -> dict[str, list] | None:
    """30 bins over the finite values; None when numpy cannot split the range (values near the float limits)."""
    if max(abs(low), abs(high)) > 1e30:  # float32 bin arithmetic overflows near its limits
        finite = finite.astype("float64")
    try:
        if math.isfinite(low) and math.isfinite(high) and high > low:
            # Known finite range: numpy skips its own min/max passes.
            counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS, range=(low, high))
        else:
            counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    except (ValueError, IndexError):  # "Too many bins for data range", e.g. a diverged layer's outputs
        return None
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def nested_layers(model: keras.Model, prefix: str = "") -> list[tuple[str, keras.layers.Layer]]:
    """Every layer with its display name ("outer/inner" inside nested models), InputLayers left out."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        name = prefix + layer.name
        found.append((name, layer))
        if isinstance(layer, keras.Model):
            found.extend(nested_layers(layer, name + "/"))
    return found


def weight_records(model: keras.Model) -> list[dict[str, Any]]:
    """One record per weight of every layer: layer, weight, mean, std, norm, min, max, zero_frac, histogram."""
    records = []
    for name, layer in nested_layers(model):
        if isinstance(layer, keras.Model):
            continue  # its weights are reported with its own layers
        for variable in layer.weights:
            values = np.asarray(variable.numpy())
            stats = summarize(values)
            # The L2 norm from the moments: sum(x^2) = n * (std^2 + mean^2), without another pass over the values.
            stats["norm"] = math.sqrt(stats["count"] * (stats["std"] ** 2 + stats["mean"] ** 2)) if values.size else 0.0
            records.append({"layer": name, "weight": variable.name, "trainable": bool(variable.trainable), **stats})
    return records


def _calls(layer: keras.layers.Layer, outer: keras.Model) -> list[Any]:
    """The Keras nodes of a layer's calls in `outer`'s graph, in call order.

    A shared layer or tower (siamese networks, weight tying) has one node per call; a base model reused in several
    models (pretrained in one, fine-tuned in another) also has nodes in the other graphs, which are left out.
    """
    nodes = list(getattr(layer, "_inbound_nodes", []))
    graph = getattr(outer, "_functional", None) or outer  # a Sequential model keeps its graph in `_functional`
    owned = {id(node) for depth in getattr(graph, "_nodes_by_depth", {}).values() for node in depth}
    calls = [node for node in nodes if id(node) in owned]
    return calls if calls or len(nodes) != 1 else nodes


def _single(tensors: Any) -> Any:
    tensors = list(tensors)
    return tensors[0] if len(tensors) == 1 else tensors


class ActivationProbe:
    """A model from the inputs to every layer's output, run in inference mode on the user's activation data.

    A layer called several times in the graph (a shared layer or tower) gets one entry per call, `name@1`, `name@2`,
    ... in call order. Nested models are probed on their own input (the outer model's intermediate output, once per
    call) because their layers' outputs are not connected to the outer inputs. What cannot be probed is listed in
    `skipped` with the reason (the inside of a nested subclassed model, a layer the graph never calls); a model that
    has no graph at all (subclassed) raises ValueError, with how to fix it.

    Args:
        model: a built Sequential or functional model.
        prefix: prepended to layer names (for nested models).
    """

    def __init__(self, model: keras.Model, prefix: str = "") -> None:
        # One slot per probe output: a layer's display name, or None for a nested model's input.
        self.slots: list[str | None] = []
        outputs: list[Any] = []
        # (index of the nested model's first input among the outputs, how many inputs it takes, its probe)
        self.nested: list[tuple[int, int, ActivationProbe]] = []
        self.skipped: list[tuple[str, str]] = []  # (display name, why it has no activation statistics)
        reason = "its layers are called by its own Python code"
        try:
            # A functional model's `input` keeps the structure it is called with (a tensor, a list, a dict), as the
            # data will come; a Sequential model has one input (and no `input` before it is called). A subclassed
            # model called inside a functional one has an `input` too, but no graph of its own layers.
            graph = getattr(model, "_functional", None) or model
            has_graph = hasattr(graph, "_nodes_by_depth")
            inputs = model.inputs[0] if isinstance(model, keras.Sequential) else model.input
        except (ValueError, AttributeError, TypeError) as exc:
            inputs, reason = None, str(exc)[:160]
        if isinstance(model, keras.Sequential) and inputs is None:
            # pop(rebuild=False) and add(rebuild=False) leave a Sequential model without inputs until it is built.
            raise ValueError(
                f"per-layer activations need a built model: Sequential {model.name!r} has no inputs yet ({reason}). "
                "Build it first (model.build(input_shape), or start it with keras.Input) to record them; weight "
                "statistics are recorded anyway"
            )
        if inputs is None or not has_graph:
            raise ValueError(
                f"per-layer activations need a Sequential or functional model: {type(model).__name__} "
                f"{model.name!r} is a subclassed model, whose layers have no symbolic outputs ({reason}). Build it "
                "with keras.Sequential or the functional API (keras.Model(inputs, outputs)) to record them; weight "
                "statistics are recorded anyway"
            )
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            calls = _calls(layer, model)
            if not calls:
                self.skipped.append((prefix + layer.name, "the model's graph never calls this layer"))
            for number, node in enumerate(calls, start=1):
                name = prefix + layer.name + (f"@{number}" if len(calls) > 1 else "")
                for index, output in enumerate(keras.tree.flatten(node.output_tensors)):
                    self.slots.append(name if index == 0 else f"{name}:{index}")
                    outputs.append(output)
                if isinstance(layer, keras.Model):
                    self._add_nested(layer, name, node, outputs)
        self.model = keras.Model(inputs, outputs)

    def _add_nested(self, nested: keras.Model, name: str, node: Any, outputs: list[Any]) -> None:
        """Probe a nested model's layers on the input this call gives it; a subclassed one is skipped, with why."""
        try:
            probe = ActivationProbe(nested, name + "/")
        except ValueError as exc:
            self.skipped.append((name + "/*", str(exc)))
            return
        self.skipped.extend(probe.skipped)
        # One output per input tensor: the probe's outputs are flattened when it runs, a nested list would shift them.
        inputs = keras.tree.flatten(node.input_tensors)
        self.nested.append((len(outputs), len(inputs), probe))
        self.slots.extend([None] * len(inputs))
        outputs.extend(inputs)

    def records(self, data: Any) -> list[dict[str, Any]]:
        """Statistics of every layer's output on `data` (inputs as the model takes them)."""
        # An eager call: predict_on_batch would trace a new function for every probe (~0.1 s on a small MLP).
        values = [keras.ops.convert_to_numpy(value) for value in keras.tree.flatten(self.model(data, training=False))]
        records = [{"layer": name, **summarize(value)} for name, value in zip(self.slots, values, strict=True) if name]
        for index, count, probe in self.nested:
            records.extend(probe.records(_single(values[index : index + count])))
        return records
