"""Per-epoch extras of LiveMonitor: weight and activation statistics and checkpoints, each isolated."""

from __future__ import annotations

from typing import Any

import keras

from kerascope.callbacks._checkpoints import CheckpointKeeper
from kerascope.callbacks._statistics import ActivationProbe, weight_records
from kerascope.monitor.writer import RunWriter


class EpochExtras:
    """Mixin of LiveMonitor. Each extra runs through `_call`: a failing probe must not cost the checkpoint."""

    activation_data: Any
    activation_freq: int
    weight_freq: int
    _writer: RunWriter
    _checkpoints: CheckpointKeeper | None
    _probe: ActivationProbe | None
    _skipped: set[str]
    _step: int
    _epoch: int

    def _epoch_extras(self, model: keras.Model, epoch: int, logs: dict[str, Any]) -> None:
        done = epoch + 1
        if self.weight_freq and done % self.weight_freq == 0:
            self._call("weight statistics", self._log_stats, "weights", weight_records, model)
        if self.activation_data is not None and self.activation_freq and done % self.activation_freq == 0:
            self._call("activation statistics", self._log_activations, model)
        if self._checkpoints is not None:
            self._call("checkpoint", self._save_checkpoint, model, epoch, logs)

    def _log_stats(self, stream: str, compute: Any, *args: Any) -> None:
        for record in compute(*args):
            self._writer.log(stream, {"step": self._step, "epoch": self._epoch, **record})

    def _log_activations(self, model: keras.Model) -> None:
        if "activations" in self._skipped:
            return
        if self._probe is None:
            try:
                self._probe = ActivationProbe(model)
            except ValueError as exc:
                self._skip("activations", str(exc))
                return
        self._log_stats("activations", self._probe.records, self.activation_data)

    def _save_checkpoint(self, model: keras.Model, epoch: int, logs: dict[str, Any]) -> None:
        keeper = self._checkpoints
        if keeper.monitor not in logs:
            self._skip(
                "checkpoint",
                f"checkpoint={keeper.policy!r} monitors {keeper.monitor!r}, which is not in the epoch logs "
                f"({', '.join(sorted(logs)) or 'none'}): pass monitor=... to LiveMonitor",
            )
            if keeper.policy == "best":
                return
        entry = keeper.save(model, epoch, self._step, logs)
        if entry is not None:
            value = entry["value"]
            shown = f"{value:.4g}" if isinstance(value, float) else "not logged"
            self._event(
                "checkpoint",
                f"saved {entry['path']} ({keeper.monitor}={shown})",
                path=entry["path"],
                value=entry["value"],
                is_best=entry["is_best"],
            )
