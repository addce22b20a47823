"""Only process 0 writes in distributed training: two real processes joined in one process group train together.

TensorFlow's multi-worker training needs a TF_CONFIG cluster of its own; `make test` (so CI) runs this file under
KERAS_BACKEND=jax (jax.distributed, CPU wheels), `make test-backends` also under torch (torch.distributed with gloo).
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
pytestmark = pytest.mark.skipif(BACKEND not in ("jax", "torch"),
                                reason="jax and torch only: make test-distributed, make test-backends")

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
