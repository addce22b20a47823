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


def _outer_call(nested: keras.Model, outer: keras.Model) -> Any:
    """The Keras node of a nested model's call in the enclosing graph.

    A base model reused in several models (pretrained in one, fine-tuned in another) has one node per call: the
    one that belongs to `outer`'s graph is the one to probe.
    """
    nodes = getattr(nested, "_inbound_nodes", [])
    graph = getattr(outer, "_functional", None) or outer  # a Sequential model keeps its graph in `_functional`
    owned = {id(node) for depth in getattr(graph, "_nodes_by_depth", {}).values() for node in depth}
    calls = [node for node in nodes if id(node) in owned] or nodes
    if len(calls) != 1:
        raise ValueError(f"nested model {nested.name!r} is called {len(calls)} times; cannot tell which call to probe")
    return calls[0]


def _outer_input(nested: keras.Model, outer: keras.Model) -> Any:
    """The tensor a nested model receives in the enclosing graph (its own `input` is its inner Input)."""
    tensors = _outer_call(nested, outer).input_tensors
    return tensors[0] if len(tensors) == 1 else list(tensors)


class ActivationProbe:
    """A model from the inputs to every layer's output, run in inference mode on the user's activation data.

    Nested models are probed on their own input (the outer model's intermediate output) because their layers'
    outputs are not connected to the outer inputs. Raises ValueError, with how to fix it, for subclassed models.

    Args:
        model: a built Sequential or functional model.
        prefix: prepended to layer names (for nested models).
    """

    def __init__(self, model: keras.Model, prefix: str = "") -> None:
        # One slot per probe output: a layer's display name, or None for a nested model's input.
        self.slots: list[str | None] = []
        outputs: list[Any] = []
        self.nested: list[tuple[int, ActivationProbe]] = []  # (index of the nested model's input, its probe)
        try:
            # A functional model's `input` keeps the structure it is called with (a tensor, a list, a dict), as the
            # data will come; a Sequential model has one input (and no `input` before it is called).
            inputs = model.inputs[0] if isinstance(model, keras.Sequential) else model.input
            for name, layer in ((prefix + layer.name, layer) for layer in model.layers):
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                nested = isinstance(layer, keras.Model)
                # A nested model's own `output` lives in its inner graph; the enclosing graph holds its call.
                layer_output = _outer_call(layer, model).output_tensors if nested else layer.output
                for index, output in enumerate(keras.tree.flatten(layer_output)):
                    self.slots.append(name if index == 0 else f"{name}:{index}")
                    outputs.append(output)
                if nested:
                    self.nested.append((len(outputs), ActivationProbe(layer, name + "/")))
                    self.slots.append(None)
                    outputs.append(_outer_input(layer, model))
            if inputs is None:
                raise ValueError("the model has no symbolic inputs")
            self.model = keras.Model(inputs, outputs)
        except (ValueError, AttributeError, TypeError) as exc:
            raise ValueError(
                f"per-layer activations need a Sequential or functional model: the layers of {type(model).__name__} "
                f"{model.name!r} have no symbolic outputs, as in a subclassed model ({str(exc)[:160]}). Build the "
                "model with keras.Sequential or the functional API (keras.Model(inputs, outputs)) to record them; "
                "weight statistics are recorded anyway"
            ) from None

    def records(self, data: Any) -> list[dict[str, Any]]:
        """Statistics of every layer's output on `data` (inputs as the model takes them)."""
        # An eager call: predict_on_batch would trace a new function for every probe (~0.1 s on a small MLP).
        values = [keras.ops.convert_to_numpy(value) for value in keras.tree.flatten(self.model(data, training=False))]
        records = [{"layer": name, **summarize(value)} for name, value in zip(self.slots, values, strict=True) if name]
        for index, probe in self.nested:
            records.extend(probe.records(values[index]))
        return records
