"""Per-weight gradient statistics on a fixed batch, with the model's compiled loss, on TensorFlow, JAX and PyTorch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from kerascope.callbacks._statistics import nested_layers

# Statistics per gradient, in the order the backend functions return them.
STATS = ("norm", "max_abs", "nonfinite_frac")


def unpack(data: Any) -> tuple[Any, Any, Any]:
    """(x, y, sample_weight) from LiveMonitor's `gradient_data`; ValueError for anything else."""
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        x, y, *rest = data
        return x, y, rest[0] if rest else None
    raise ValueError(
        "gradient_data must be a tuple (x, y) or (x, y, sample_weight) of one small fixed batch, "
        f"e.g. (x_val[:64], y_val[:64]); got {type(data).__name__}"
    )


def _defined_by_user(model: keras.Model, method: str) -> str | None:
    """The name of the class that overrides `method` outside Keras, or None when Keras's own runs."""
    for cls in type(model).__mro__:
        if method in vars(cls):
            module = cls.__module__ or ""
            return None if module.startswith("keras.") or module == "keras" else cls.__qualname__
    return None


def why_not(model: keras.Model) -> str | None:
    """Why the compiled loss on (x, y) is not what `model` trains with, or None when gradients can be rebuilt."""
    custom = _defined_by_user(model, "train_step")
    if custom is not None:
        return (
            f"{custom} overrides train_step, so the loss it trains with may need more than (x, y) and cannot be "
            "rebuilt outside it: no gradient statistics (a model that only overrides compute_loss is supported)"
        )
    if not model.trainable_weights:
        return "the model has no trainable weights: no gradient statistics"
    if getattr(model, "_compile_loss", None) is None and _defined_by_user(model, "compute_loss") is None:
        return "the model was compiled without a loss: no gradient statistics"
    return None


def _gradient_stats(gradient: Any) -> Any:
    """[norm, max_abs, nonfinite_frac] of one gradient as a backend tensor (traced into the compiled function).

    The norm is taken on the gradient divided by its largest magnitude, so that squares of huge gradients (a
    diverging run) do not overflow float32 before the square root.
    """
    ops = keras.ops
    g = ops.cast(ops.reshape(gradient, (-1,)), "float32")
    nonfinite_frac = ops.mean(ops.cast(ops.logical_not(ops.isfinite(g)), "float32"))
    max_abs = ops.max(ops.abs(g))
    scale = ops.where(ops.logical_and(ops.isfinite(max_abs), max_abs > 0), max_abs, ops.ones_like(max_abs))
    norm = scale * ops.sqrt(ops.sum(ops.square(g / scale)))
    return ops.stack([norm, max_abs, nonfinite_frac])


class GradientProbe:
    """Gradients of the model's compiled loss on one fixed batch, in inference mode, per trainable weight.

    Computed outside the user's `train_step` with the backend's own machinery: `tf.GradientTape` in a `tf.function`
    on TensorFlow, `jax.grad` over the model's stateless loss (`compute_loss_and_updates`, what Keras's own JAX
    train step differentiates) on JAX, and autograd on PyTorch. The loss runs inside a `keras.StatelessScope`, so the
    loss metrics it updates on the way (per-output loss trackers) keep their training values. Statistics are reduced
    on the device; only three numbers per weight come back.

    Args:
        model: a built, compiled model whose `train_step` is Keras's own (see `why_not`).
        data: `(x, y)` or `(x, y, sample_weight)`: one small fixed batch, e.g. 64 validation samples.

    Example:
    ```python
    probe = GradientProbe(model, (x_val[:64], y_val[:64]))
    for record in probe.records():
        print(record["layer"], record["weight"], record["norm"])
    ```
    """

    def __init__(self, model: keras.Model, data: Any) -> None:
        reason = why_not(model)
        if reason is not None:
            raise ValueError(reason)
        self.model = model
        x, y, sample_weight = unpack(data)
        convert = keras.ops.convert_to_tensor
        self._x = keras.tree.map_structure(convert, x)
        self._y = keras.tree.map_structure(convert, y)
        self._sample_weight = None if sample_weight is None else keras.tree.map_structure(convert, sample_weight)
        self.variables = list(model.trainable_variables)
        owners = {}
        for name, layer in nested_layers(model):
            if isinstance(layer, keras.Model):
                continue
            for variable in layer.trainable_weights:
                owners.setdefault(id(variable), name)
        # (layer, weight) per trainable variable; weights created by the model itself belong to its own name.
        self.names = [(owners.get(id(v), model.name), v.name) for v in self.variables]
        self.layer_order = list(dict.fromkeys(layer for layer, _ in self.names))
        self._compute, self.warm_up = self._backend_function()

    def _backend_function(self) -> tuple[Callable[[], np.ndarray], Callable[[], None]]:
        """(compute, warm_up): the statistics now, and the one-time tracing / compilation, which needs no values and
        may run on another thread while the model trains (`warm_up` attribute)."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            return self._tensorflow()
        if backend == "jax":
            return self._jax()
        if backend == "torch":
            return self._torch()
        raise ValueError(f"gradient statistics are not available on the {backend} backend")

    def _loss(self, y_pred: Any) -> Any:
        model = self.model
        return model.compute_loss(x=self._x, y=self._y, y_pred=y_pred, sample_weight=self._sample_weight,
                                  training=False)

    def _tensorflow(self) -> tuple[Callable[[], np.ndarray], Callable[[], None]]:
        import tensorflow as tf

        model, variables = self.model, self.variables

        @tf.function(autograph=False)
        def compute(x: Any) -> Any:
            with tf.GradientTape() as tape, keras.StatelessScope():
                loss = self._loss(model(x, training=False))
            gradients = tape.gradient(loss, [v.value for v in variables],
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return tf.stack([_gradient_stats(g) for g in gradients])

        # The first call traces and optimizes the graph (about 0.2 s on an MLP); its result is thrown away.
        def warm_up() -> None:
            compute(self._x)

        return (lambda: compute(self._x).numpy()), warm_up

    def _jax(self) -> tuple[Callable[[], np.ndarray], Callable[[], None]]:
        import jax

        model = self.model

        def loss(trainable: list, non_trainable: list, metrics: list) -> Any:
            value, _ = model.compute_loss_and_updates(trainable, non_trainable, metrics, self._x, self._y,
                                                      self._sample_weight, training=False)
            return value

        @jax.jit
        def compute(trainable: list, non_trainable: list, metrics: list) -> Any:
            gradients = jax.grad(loss)(trainable, non_trainable, metrics)
            return jax.numpy.stack([_gradient_stats(g) for g in gradients])

        groups = (self.variables, model.non_trainable_variables, model.metrics_variables)
        compiled: dict[str, Any] = {}

        def warm_up() -> None:
            # From shapes alone: during fit() JAX keeps the trained values outside the variables.
            shapes = [[jax.ShapeDtypeStruct(tuple(v.shape), jax.numpy.dtype(v.dtype)) for v in group]
                      for group in groups]
            compiled["compute"] = compute.lower(*shapes).compile()

        def run() -> np.ndarray:
            values = [[v.value for v in group] for group in groups]
            return np.asarray(compiled.get("compute", compute)(*values))

        return run, warm_up

    def _torch(self) -> tuple[Callable[[], np.ndarray], Callable[[], None]]:
        import torch

        model, variables = self.model, self.variables

        def run() -> np.ndarray:
            with torch.enable_grad(), keras.StatelessScope():
                loss = self._loss(model(self._x, training=False))
            values = [v.value for v in variables]
            gradients = torch.autograd.grad(loss, values, allow_unused=True)
            with torch.no_grad():
                stats = [_gradient_stats(torch.zeros_like(v) if g is None else g) for g, v in
                         zip(gradients, values, strict=True)]
                return torch.stack(stats).cpu().numpy()

        return run, lambda: None  # eager: nothing to prepare

    def records(self) -> list[dict[str, Any]]:
        """One record per trainable weight: layer, weight, norm, max_abs, nonfinite_frac, global_norm.

        `global_norm` (the norm of all gradients together, as `clipnorm` sees it) is repeated on every record of the
        batch, so that each row stands on its own.
        """
        stats = np.asarray(self._compute(), dtype=np.float64)
        norms = stats[:, 0]
        global_norm = float(math.sqrt(np.sum(np.square(norms)))) if np.isfinite(norms).all() else float(
            np.nan if np.isnan(norms).any() else np.inf)
        return [
            {"layer": layer, "weight": weight, **{k: float(v) for k, v in zip(STATS, row, strict=True)},
             "global_norm": global_norm}
            for (layer, weight), row in zip(self.names, stats, strict=True)
        ]
