"""Only process 0 writes in distributed training: two real processes joined in one process group train together.

JAX (jax.distributed, CPU wheels) runs in `make test` (so CI) through `make test-distributed`, torch (gloo) in `make
test-backends`. TensorFlow: two workers of a TF_CONFIG cluster under `MultiWorkerMirroredStrategy`. Keras 3's `fit`
fails under that strategy whatever the callbacks ("PerReplica ... to a Tensor", keras-team/keras#20585), so the
workers run the custom training loop TensorFlow's multi-worker guide teaches, driving LiveMonitor through Keras's own
`CallbackList` as `fit` would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from kerascope import RunStore

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

WORKER = """
import os, sys
rank, port, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if os.environ["KERAS_BACKEND"] == "torch":
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
else:
    import jax
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=rank)
from train_helpers import BATCH, data, mlp
from kerascope import LiveMonitor
x, y = data()
live_monitor = LiveMonitor(root, name=f"rank {rank}", system_freq=0)
mlp().fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[live_monitor])
print("RUN_DIR", live_monitor.run_dir, flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(BACKEND not in ("jax", "torch"), reason="jax and torch: make test-distributed, make test-backends")
def test_only_process_zero_writes_the_run(runs_root):
    port = str(free_port())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, REPO])}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), port, str(runs_root)], env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    run_dirs = [line.split(" ", 1)[1] for out in outputs for line in out.splitlines() if line.startswith("RUN_DIR")]
    assert run_dirs[1] == "None" and run_dirs[0] != "None", outputs
    runs = RunStore(runs_root).runs()
    assert [(run.name, run.status, run.meta["process_index"]) for run in runs] == [("rank 0", "finished", 0)]
    assert len(runs[0].epoch_metrics()) == 2


TF_WORKER = """
import json, os, sys
index, ports, root = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                                      "task": {"type": "worker", "index": index}})
import keras
import tensorflow as tf
from train_helpers import BATCH, data, mlp
from kerascope import LiveMonitor
strategy = tf.distribute.MultiWorkerMirroredStrategy()
x, y = data()
with strategy.scope():
    model = mlp()
batches = iter(strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).repeat()))
steps = len(x) // BATCH

@tf.function
def train_step(batch):
    def replica_step(inputs):
        bx, by = inputs
        with tf.GradientTape() as tape:
            loss = model.compute_loss(bx, by, model(bx, training=True))
        model.optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss
    return strategy.reduce("MEAN", strategy.run(replica_step, args=(batch,)), axis=None)

live_monitor = LiveMonitor(root, name=f"worker {index}", system_freq=0)
callbacks = keras.callbacks.CallbackList([live_monitor], model=model, epochs=2, steps=steps, verbose=0)
callbacks.on_train_begin()
for epoch in range(2):
    callbacks.on_epoch_begin(epoch)
    for step in range(steps):
        callbacks.on_train_batch_begin(step)
        loss = float(train_step(next(batches)))
        callbacks.on_train_batch_end(step, {"loss": loss})
    callbacks.on_epoch_end(epoch, {"loss": loss})
callbacks.on_train_end()
print("RUN_DIR", live_monitor.run_dir, flush=True)
"""


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's MultiWorkerMirroredStrategy")
def test_only_the_chief_of_a_multi_worker_strategy_writes_the_run(runs_root):
    ports = f"{free_port()},{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, REPO]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers = [subprocess.Popen([sys.executable, "-c", TF_WORKER, str(index), ports, str(runs_root)], env=env,
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for index in (0, 1)]
    outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    run_dirs = [line.split(" ", 1)[1] for out in outputs for line in out.splitlines() if line.startswith("RUN_DIR")]
    assert run_dirs[1] == "None" and run_dirs[0] != "None", outputs
    runs = RunStore(runs_root).runs()
    assert [(run.name, run.status) for run in runs] == [("worker 0", "finished")]
    assert len(runs[0].epoch_metrics()) == 2
    assert list(runs[0].batch_metrics()["step"]) == list(range(1, 9))  # 2 epochs of 128 samples in batches of 32
