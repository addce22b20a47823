"""Build realistic run directories with kerascope.monitor.RunWriter, exactly as docs/run-format.md documents them.

The dashboard tests use these instead of training a model: every stream, event kind and model file the callback
writes is present, with values shaped like a real (small) training run.

Example:
```python
run_dir = make_run(tmp_path, name="mlp", epochs=4, steps_per_epoch=20)
```
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from kerascope import RunWriter
from kerascope.monitor import format as fmt

LAYERS = (("dense", "Dense", [None, 32], 8224), ("dense_1", "Dense", [None, 10], 330))
SUMMARY = """Model: "mlp"
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━┓
┃ Layer (type)        ┃ Output Shape      ┃    Param # ┃ Traina… ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━┩
│ dense (Dense)       │ (None, 32)        │      8,224 │   Y   │
├─────────────────────┼───────────────────┼────────────┼───────┤
│ dense_1 (Dense)     │ (None, 10)        │        330 │   Y   │
└─────────────────────┴───────────────────┴────────────┴───────┘
 Total params: 8,554 (33.41 KB)
"""
GRAPH_DOT = (
    'digraph G {\n  input [label="input (None, 256)"];\n  dense [label="dense: Dense"];\n'
    '  dense_1 [label="dense_1: Dense"];\n  input -> dense;\n  dense -> dense_1;\n}\n'
)
# A 1x1 transparent PNG: the format only promises a PNG file, the tests check it is served and shown.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a6c60000000049454e44ae426082"
)


def histogram(rng: np.random.Generator, scale: float) -> dict[str, list[float]]:
    counts, edges = np.histogram(rng.normal(0.0, scale, 500), bins=30)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def make_run(
    root: str | os.PathLike[str],
    name: str = "mlp",
    *,
    epochs: int = 4,
    steps_per_epoch: int = 20,
    hparams: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    status: str = fmt.FINISHED,
    nan_at_epoch: int | None = None,
    dead_layer: bool = False,
    seed: int = 0,
) -> str:
    """Write a complete run (every stream and model file) and return its directory.

    Args:
        root: the runs root.
        name: the run's display name (any text).
        epochs: epochs written to epoch.jsonl (batch.jsonl gets `steps_per_epoch` lines per epoch).
        steps_per_epoch: batches per epoch.
        hparams: run.json hparams; default {"lr": 0.01, "units": 32}.
        tags: run.json tags.
        status: final status; `running` leaves the writer's heartbeat fresh and writes no `ended`.
        nan_at_epoch: from this epoch on the loss is NaN and a `nan` event is written.
        dead_layer: makes dense's activations all zeros (zero_frac 1.0), as a dead ReLU layer.
        seed: varies the curves between runs.
    """
    rng = np.random.default_rng(seed)
    hparams = {"lr": 0.01, "units": 32} if hparams is None else hparams
    meta = {
        "hparams": hparams,
        "tags": tags or ["test"],
        "notes": "built by tests/run_factory.py",
        "keras_version": "3.15.1",
        "backend": "tensorflow",
        "fit_params": {"epochs": epochs, "steps": steps_per_epoch, "verbose": 0},
        "optimizer": {"class_name": "Adam", "config": {"learning_rate": hparams.get("lr", 0.01)}},
        "model": {
            "name": "mlp",
            "class": "Sequential",
            "total_params": 8554,
            "trainable_params": 8554,
            "non_trainable_params": 0,
            "size_bytes": 34216,
        },
        "options": {"update_freq": 1, "checkpoint": "best", "monitor": "val_loss", "mode": "min"},
    }
    writer = RunWriter(root, name=name, meta=meta, flush_interval=60.0)
    start = time.time() - epochs * 2.0
    lr = float(hparams.get("lr", 0.01)) if isinstance(hparams.get("lr"), (int, float)) else 0.01
    writer.event("train_begin", "fit() call 1 started", step=0, epoch=0, phase=1)
    writer.event(
        "phase",
        "phase 1: 8,554 trainable parameters",
        step=0,
        epoch=0,
        phase=1,
        trainable_params=8554,
        non_trainable_params=0,
        initial_epoch=0,
        epochs=epochs,
        lr=lr,
    )
    writer.write_file(fmt.SUMMARY_FILE, SUMMARY)
    writer.write_file(fmt.GRAPH_DOT_FILE, GRAPH_DOT)
    writer.write_file(fmt.GRAPH_PNG_FILE, TINY_PNG)
    writer.write_json(fmt.CONFIG_FILE, {"name": "mlp", "layers": [{"class_name": c} for _, c, _, _ in LAYERS]})
    layers = [
        {"name": n, "class": c, "output_shape": s, "params": p, "trainable": True, "parent": None}
        for n, c, s, p in LAYERS
    ]
    writer.log("layers", {"phase": 1, "time": start, "layers": layers})
    step, best, checkpoints = 0, math.inf, []
    for epoch in range(epochs):
        if epoch == epochs // 2 and epoch > 0:
            writer.event("lr_change", f"learning rate {lr:g} -> {lr / 2:g}", step=step, epoch=epoch, old=lr, new=lr / 2)
            lr /= 2
        running_loss, running_acc = 0.0, 0.0
        for batch in range(steps_per_epoch):
            step += 1
            loss = 2.0 * math.exp(-0.05 * step * (1 + seed * 0.1)) + 0.05 * rng.random()
            acc = 1.0 - loss / 2.5
            if nan_at_epoch is not None and epoch >= nan_at_epoch:
                loss = math.nan
            running_loss = (running_loss * batch + loss) / (batch + 1)
            running_acc = (running_acc * batch + acc) / (batch + 1)
            writer.log(
                "batch",
                {
                    "step": step,
                    "epoch": epoch,
                    "batch": batch,
                    "time": start + epoch * 2.0 + batch * 2.0 / steps_per_epoch,
                    "loss": running_loss,
                    "accuracy": running_acc,
                    "batch_loss": loss,
                    "batch_accuracy": acc,
                    "lr": lr,
                },
            )
        val_loss = running_loss * 1.1 + 0.02
        record = {
            "epoch": epoch,
            "step": step,
            "time": start + (epoch + 1) * 2.0,
            "phase": 1,
            "loss": running_loss,
            "accuracy": running_acc,
            "val_loss": val_loss,
            "val_accuracy": running_acc - 0.02,
            "lr": lr,
        }
        writer.log("epoch", record)
        if nan_at_epoch is not None and epoch == nan_at_epoch:
            writer.event("nan", "loss became NaN", step=step, epoch=epoch, metric="loss", value=math.nan)
        for layer_name, _, _, _ in LAYERS:
            dead = dead_layer and layer_name == "dense"
            scale = 0.0 if dead else 0.5 + 0.1 * epoch
            writer.log(
                "activations",
                {
                    "step": step,
                    "epoch": epoch,
                    "layer": layer_name,
                    "mean": 0.0 if dead else 0.2,
                    "std": scale,
                    "min": 0.0,
                    "max": 3 * scale,
                    "zero_frac": 1.0 if dead else 0.3,
                    "histogram": histogram(rng, max(scale, 1e-3)),
                },
            )
            for weight, w_scale in (("kernel", 0.05 + 0.01 * epoch), ("bias", 0.01)):
                writer.log(
                    "weights",
                    {
                        "step": step,
                        "epoch": epoch,
                        "layer": layer_name,
                        "weight": weight,
                        "mean": 0.0,
                        "std": w_scale,
                        "norm": 10 * w_scale,
                        "min": -3 * w_scale,
                        "max": 3 * w_scale,
                        "histogram": histogram(rng, w_scale),
                    },
                )
        writer.log("system", {"time": record["time"], "cpu_percent": 150.0, "rss_bytes": 5e8})
        if math.isfinite(val_loss) and val_loss < best:
            best = val_loss
            writer.write_file("checkpoints/best.keras", b"PK\x03\x04 not a real model " + bytes([epoch]))
            checkpoints = [
                {
                    "epoch": epoch,
                    "step": step,
                    "path": "checkpoints/best.keras",
                    "monitor": "val_loss",
                    "value": val_loss,
                    "is_best": True,
                    "bytes": 28,
                    "time": record["time"],
                }
            ]
            writer.write_json(fmt.CHECKPOINT_INDEX_FILE, checkpoints)
            writer.event(
                "checkpoint",
                f"saved checkpoints/best.keras (val_loss {val_loss:.4f})",
                step=step,
                epoch=epoch,
                path="checkpoints/best.keras",
                value=val_loss,
                is_best=True,
            )
    writer.update_status(
        started=start, epoch=epochs - 1, step=step, epochs=epochs, steps_per_epoch=steps_per_epoch, phase=1
    )
    if status == fmt.RUNNING:
        writer.flush()  # left open, like a training still in progress (its heartbeat ages after flush_interval)
        return writer.run_dir
    writer.event("train_end", "fit() call 1 ended", step=step, epoch=epochs - 1, phase=1, epochs_done=epochs)
    writer.close(status=status, reason="ValueError: boom" if status == fmt.FAILED else None)
    return writer.run_dir


def make_broken_run(root: str | os.PathLike[str], run_id: str = "20260101-000000-broken-0000") -> str:
    """A run directory whose run.json is not JSON: the dashboard must show it as broken, with the reason."""
    path = os.path.join(os.fspath(root), run_id)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, fmt.RUN_FILE), "w", encoding="utf-8") as f:
        f.write('{"format_version": 1, "name": ')
    return path


def make_future_run(root: str | os.PathLike[str], run_id: str = "20260101-000001-future-0000") -> str:
    """A run written by a newer Kerascope (format_version 3): shown as broken, with a message to upgrade."""
    path = os.path.join(os.fspath(root), run_id)
    os.makedirs(path, exist_ok=True)
    fmt.write_json_atomic(os.path.join(path, fmt.RUN_FILE),
                          {"format_version": fmt.FORMAT_VERSION + 1, "id": run_id, "name": "from 2030"})
    fmt.write_json_atomic(os.path.join(path, fmt.STATUS_FILE), {"status": "finished", "heartbeat": time.time()})
    return path


def make_root(root: str | os.PathLike[str]) -> dict[str, str]:
    """A runs root with the cases the pages must handle: finished runs to compare, a live run, a failed run with
    NaN, a run with a dead layer and a user name that looks like markup, a broken directory and a run from a
    newer format version."""
    return {
        "baseline": make_run(root, "baseline", hparams={"lr": 0.01, "units": 32}, tags=["mlp"], seed=0),
        "wide": make_run(root, "wide", hparams={"lr": 0.001, "units": 128}, tags=["mlp", "wide"], seed=1),
        "live": make_run(root, "live run", epochs=3, status=fmt.RUNNING, seed=2),
        "nan": make_run(root, "diverged", status=fmt.FAILED, nan_at_epoch=2, seed=3),
        "markup": make_run(root, "<b>bold</b> *stars* :red[x]", dead_layer=True, seed=4),
        "broken": make_broken_run(root),
        "future": make_future_run(root),
    }
