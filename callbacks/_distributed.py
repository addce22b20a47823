"""Is this process the one that writes the run? Only the active backend's module is imported."""

from __future__ import annotations

from typing import Any

import keras


def process_index(model: Any = None) -> int:
    """The distributed process index under the active backend (0 when not distributed).

    Args:
        model: the model being trained: on TensorFlow its `distribute_strategy` (the strategy whose scope built it)
            tells, even when the training loop runs outside that scope (a custom loop driving the callbacks).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return int(jax.process_index())
    if backend == "torch":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
        return 0
    if backend == "tensorflow":
        import tensorflow as tf

        # In multi-worker training only the chief's strategy checkpoints; Keras 3 has no chief notion of its own.
        strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        extended = strategy.extended
        return 0 if getattr(extended, "should_checkpoint", True) else 1
    return 0


def is_chief(model: Any = None) -> bool:
    """True in the process that should write the run directory (JAX process 0, torch rank 0, TF's checkpointer)."""
    return process_index(model) == 0
