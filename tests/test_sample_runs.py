"""The sample runs each show what they are meant to teach (they are opened with RunStore, as the app does).

Every check runs twice: on the committed runs (what `make dashboard` shows) and on runs generated now by
`python -m sample_runs.generate --fast` (a slice of the data, 6 epochs), so that a regression in LiveMonitor fails
here rather than hiding behind files written by an older version.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from kerascope import RunStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_ROOT = os.path.join(REPO, "sample_runs")


@pytest.fixture(scope="module", params=["committed", "fresh"])
def runs(request, tmp_path_factory):
    root = SAMPLE_ROOT
    if request.param == "fresh":
        root = str(tmp_path_factory.mktemp("fresh_samples"))
        generated = subprocess.run([sys.executable, "-m", "sample_runs.generate", "--logdir", root, "--fast"], cwd=REPO,
                                   capture_output=True, text=True, timeout=900)
        assert generated.returncode == 0, generated.stderr[-3000:]
    store = RunStore(root)
    by_prefix = {run.name[:2]: run for run in store.runs()}
    assert len(by_prefix) == 11, sorted(run.name for run in store.runs())
    return by_prefix


def layer_classes(run) -> set[str]:
    return set(run.layers()["class"])


def test_every_run_is_complete_and_readable(runs):
    for prefix, run in runs.items():
        assert run.error is None, (run.name, run.error)
        assert not run.problems, (run.name, run.problems)
        assert len(run.epoch_metrics()) > 0, run.name
        assert run.model_summary(), run.name
        assert run.model_graph_dot().startswith("digraph"), run.name
        assert run.model_graph_png() is not None, run.name
        if prefix not in {"10", "11"}:
            # 08's loss turns NaN and TerminateOnNaN stops it: it reads diverged, the others finished.
            assert run.status == ("diverged" if prefix == "08" else "finished"), (run.name, run.status)
            assert len(run.activations()) > 0, run.name
            assert len(run.weights()) > 0, run.name
            assert len(run.checkpoints()) >= 1, run.name


def test_shipped_runs_stay_small():
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(SAMPLE_ROOT) for f in files)
    assert total <= 20 * 1024 * 1024


def test_batch_norm_run_has_batch_normalization_layers(runs):
    assert "BatchNormalization" in layer_classes(runs["02"])
    assert "BatchNormalization" not in layer_classes(runs["01"])


def test_step_decay_lr_steps_down_every_five_epochs(runs):
    epochs = runs["03"].epoch_metrics()
    expected = 3e-3 * 0.5 ** (epochs["epoch"] // 5)
    np.testing.assert_allclose(epochs["lr"], expected, rtol=1e-5)
    batch_lr = runs["03"].batch_metrics()["lr"]
    assert batch_lr.nunique() == epochs["epoch"].max() // 5 + 1 >= 2 and batch_lr.is_monotonic_decreasing


def test_exponential_decay_lr_falls_at_every_batch(runs):
    batch = runs["04"].batch_metrics()
    # A batch's lr is the one its update used: the schedule at the optimizer's iteration count before it, step - 1.
    expected = 3e-3 * 0.8 ** ((batch["step"] - 1) / 100)
    np.testing.assert_allclose(batch["lr"], expected, rtol=1e-3)
    assert batch["lr"].nunique() == len(batch) > 50


def test_augmentation_run_has_preprocessing_layers(runs):
    assert {"RandomRotation", "RandomTranslation", "RandomZoom"} <= layer_classes(runs["05"])


def test_early_stopping_run_stopped_early_and_reduced_lr(runs):
    run = runs["06"]
    events = run.events()
    assert (events["kind"] == "early_stop").any()
    assert run.epoch_metrics()["epoch"].max() < 79
    assert (events["kind"] == "lr_change").any()
    assert run.epoch_metrics()["lr"].min() < 3e-3


def test_fine_tuning_run_has_three_phases_with_changing_trainable_counts(runs):
    run = runs["07"]
    phases = run.phases()
    assert list(phases["phase"]) == [1, 2, 3]
    trainable = list(phases["trainable_params"])
    assert trainable[1] < trainable[0] and trainable[1] < trainable[2]
    assert phases["non_trainable_params"].iloc[1] > 0
    steps = run.batch_metrics()["step"]
    assert steps.is_monotonic_increasing and steps.is_unique
    assert set(run.layers()["phase"]) == {1, 2, 3}
    lr_by_phase = run.epoch_metrics().groupby("phase")["lr"].last()
    assert lr_by_phase[3] == pytest.approx(1e-4)


def test_divergent_run_is_flagged_with_a_nan_event(runs):
    events = runs["08"].events()
    assert {"lr_change", "nan", "early_stop"} <= set(events["kind"])  # the LR jump, the NaN, TerminateOnNaN
    assert not np.isfinite(runs["08"].batch_metrics()["loss"]).all()
    assert runs["08"].epoch_metrics()["lr"].max() > 1e3



def test_divergent_run_names_the_step_the_lr_and_the_layer_with_gradients(runs):
    run = runs["08"]
    divergence = run.divergence
    assert divergence.lr == pytest.approx(5e4)  # the typo, at the step it broke
    assert divergence.layer in set(run.layers()["name"])
    gradients = run.gradients()
    assert set(gradients["layer"]) == {"conv1", "conv2", "dense", "classifier"}  # every layer with weights
    assert gradients["snapshot"].fillna(False).astype(bool).any()
    assert (gradients["step"] < divergence.step).any()  # the history before it


def test_compressed_model_is_much_smaller(runs):
    baseline, tiny = runs["01"].meta["model"], runs["09"].meta["model"]
    assert tiny["total_params"] * 10 < baseline["total_params"]
    assert tiny["size_bytes"] * 10 < baseline["size_bytes"]


def test_interrupted_and_failed_runs_say_so(runs):
    assert runs["10"].status == "interrupted"
    assert "KeyboardInterrupt" in (runs["10"].reason or "")
    assert runs["11"].status == "failed"
    assert "corrupt" in (runs["11"].reason or "")
    for prefix in ("10", "11"):
        assert runs[prefix].epoch_metrics()["epoch"].max() >= 2
