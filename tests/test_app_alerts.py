"""The Run page's banners and its "What went wrong" panel (app/alerts.py), on runs written to disk with RunWriter:
which banners show for known records, in which order, and the exact text a user reads."""

from __future__ import annotations

import math
import os

import pandas as pd
import pytest

from kerascope import RunStore, RunWriter
from kerascope.app import alerts
from kerascope.monitor import format as fmt

DEAD_TEXT = "Dead ReLUs: try a lower learning rate, LeakyReLU or better initialization"


def write_run(root, *, epochs=(), activations=(), events=(), batches=(), status=fmt.FINISHED):
    """A run with these records, read back through RunStore as the dashboard reads it."""
    writer = RunWriter(root, name="run")
    for record in epochs:
        writer.log("epoch", record)
    for record in batches:
        writer.log("batch", record)
    for record in activations:
        writer.log("activations", record)
    for kind, message, fields in events:
        writer.event(kind, message, **fields)
    writer.close(status)
    return RunStore(root).run(os.path.basename(writer.run_dir))


def losses(*values: float, column: str = "loss") -> list[dict]:
    return [{"epoch": epoch, "step": epoch + 1, "time": float(epoch), column: value}
            for epoch, value in enumerate(values)]


def activation(step: int, layer: str, std: object = 0.5, zero_frac: object = 0.1, **stats: object) -> dict:
    return {"step": step, "epoch": step - 1, "layer": layer, "mean": 0.0, "std": std, "min": 0.0, "max": 1.0,
            "zero_frac": zero_frac, **stats}


def titles(run) -> list[str]:
    return [alert.title for alert in alerts.run_alerts(run)]


def test_a_healthy_run_shows_no_banner(runs_root):
    run = write_run(runs_root, epochs=losses(1.0, 0.6, 0.5, 0.45),
                    activations=[activation(1, "dense"), activation(2, "dense", std=0.6)])
    assert alerts.run_alerts(run) == []


def test_nan_events_and_an_infinite_last_epoch_name_the_broken_metrics(runs_root):
    epochs = losses(1.0, 0.5)
    epochs[-1].update({"val_loss": math.inf, "accuracy": 0.5, "lr": math.inf})  # lr is not a metric
    epochs[0].update({"accuracy": math.inf})  # an earlier epoch's Inf is history, not the run's state
    run = write_run(runs_root, epochs=epochs, events=[
        (fmt.EVENT_NAN, "loss became NaN", {"step": 2, "epoch": 1, "metric": "loss"}),
        (fmt.EVENT_NAN, "no metric named", {"step": 2, "epoch": 1}),
        (fmt.EVENT_NAN, "named twice", {"step": 2, "epoch": 1, "metric": "loss"}),
        (fmt.EVENT_WARNING, "not a nan event", {"step": 2, "epoch": 1, "metric": "accuracy"}),
    ])
    (alert,) = alerts.run_alerts(run)
    assert alert == alerts.Alert(
        "error", "NaN/Inf in metrics", "non-finite values in loss, val_loss: training has numerically broken down "
        "(lower the learning rate, clip gradients, check the inputs)")


def test_only_the_last_epoch_record_counts_for_infinite_values(runs_root):
    epochs = losses(1.0, 0.9, 0.8)
    epochs[1]["accuracy"] = math.inf  # a middle epoch's Inf, since recovered
    epochs[2]["accuracy"] = 0.5
    assert titles(write_run(runs_root, epochs=epochs)) == []
    epochs[1]["accuracy"], epochs[2]["accuracy"] = 0.5, -math.inf
    assert titles(write_run(runs_root, epochs=epochs)) == ["NaN/Inf in metrics"]


def test_a_nan_in_the_last_epoch_record_alone_is_left_to_the_nan_event(runs_root):
    # np.isinf: a NaN in the epoch record is what the callback's `nan` event reports (with its metric).
    run = write_run(runs_root, epochs=losses(1.0, math.nan))
    assert titles(run) == []


def test_a_loss_more_than_twice_its_best_and_still_rising_is_diverging(runs_root):
    epochs = losses(1.0, 0.5, 0.9, 1.25)
    for record, val in zip(epochs, (1.2, 0.6, 0.7, 0.8), strict=True):
        record["val_loss"] = val  # 0.8 is not more than twice 0.6: no banner for val_loss
    run = write_run(runs_root, epochs=epochs)
    assert alerts.run_alerts(run) == [alerts.Alert("warning", "loss is diverging",
                                                   "loss is 1.25, 2.5x its best value 0.5")]


@pytest.mark.parametrize("values, diverging", [
    ((1.0, 0.5, 1.0), False),  # exactly twice the best: not more
    ((1.0, 0.5, 1.01), True),
    ((1.0, 0.5, 3.0, 3.0), False),  # high but no longer rising
    ((1.0, 0.5, 3.0, 2.5), False),  # falling back
    ((0.5, 1.5), False),  # two epochs are too few to call it
    ((0.5, math.nan, math.inf, 1.5), False),  # only finite values count: two of them
    ((0.5, math.nan, 0.6, 1.5), True),
    ((0.0, 0.0, 1.0), False),  # a best of 0 gives no ratio
    ((-2.0, -1.0, 3.0), False),
])
def test_divergence_needs_three_finite_epochs_a_doubled_loss_and_a_rise(runs_root, values, diverging):
    run = write_run(runs_root, epochs=losses(*values))
    assert titles(run) == (["loss is diverging"] if diverging else [])


def test_val_loss_diverging_alone_has_its_own_banner(runs_root):
    run = write_run(runs_root, epochs=losses(0.2, 0.1, 0.1, 0.35, column="val_loss"))
    assert alerts.run_alerts(run) == [alerts.Alert("warning", "val_loss is diverging",
                                                   "val_loss is 0.35, 3.5x its best value 0.1")]


def test_a_loss_too_short_to_judge_does_not_hide_a_diverging_val_loss(runs_root):
    epochs = losses(1.0, math.nan, math.nan, math.nan)
    for record, val in zip(epochs, (0.2, 0.1, 0.1, 0.35), strict=True):
        record["val_loss"] = val
    assert titles(write_run(runs_root, epochs=epochs)) == ["val_loss is diverging"]


def test_dead_layers_at_the_latest_step_are_named_with_their_share_of_zeros(runs_root):
    run = write_run(runs_root, activations=[
        activation(1, "early", zero_frac=1.0),  # dead once, alive at the latest step
        activation(1, "dense", zero_frac=0.2),
        activation(2, "early", zero_frac=0.5),
        activation(2, "dense", zero_frac=0.99),  # the threshold itself counts
        activation(2, "conv", zero_frac=0.985),
        activation(2, "out", zero_frac=1.0),
    ])
    assert alerts.run_alerts(run) == [alerts.Alert(
        "warning", "Dead units", f"layers whose outputs are almost all zero: dense (99% zeros), out (100% zeros). "
        f"{DEAD_TEXT}")]


def test_exploding_activations_by_size_or_by_growth_since_the_first_record(runs_root):
    run = write_run(runs_root, activations=[
        activation(1, "big", std=900.0), activation(1, "grown", std=0.01), activation(1, "steady", std=0.01),
        activation(1, "from_zero", std=0.0), activation(1, "limit", std=0.5),
        activation(2, "big", std=1000.5), activation(2, "grown", std=1.01), activation(2, "steady", std=1.0),
        activation(2, "from_zero", std=5.0), activation(2, "limit", std=1000.0),
    ])
    # big: above 1e3; grown: 101x its first spread; steady: exactly 100x (not more); from_zero: no ratio from 0;
    # limit: not above 1e3, but 2,000x its first spread.
    assert alerts.run_alerts(run) == [alerts.Alert(
        "warning", "Exploding activations", "activations grew very large in big (std 1000), grown (std 1.01), "
        "limit (std 1000): consider normalization or a lower learning rate")]


def test_a_spread_of_exactly_the_limit_without_growth_is_not_exploding(runs_root):
    run = write_run(runs_root, activations=[activation(1, "d", std=100.0), activation(2, "d", std=1000.0)])
    assert titles(run) == []
    run = write_run(runs_root, activations=[activation(1, "e", std=100.0), activation(2, "e", std=1000.001)])
    assert titles(run) == ["Exploding activations"]


def test_activation_values_that_are_not_numbers_are_skipped_and_the_other_banners_still_show(runs_root):
    run = write_run(runs_root, epochs=losses(1.0, 0.5, 0.9, 1.25), activations=[
        activation(1, "a", std="big"), activation(1, "b", std=0.5, zero_frac="lots"),
        activation(2, "a", std=0.02), activation(2, "b", std=0.5, zero_frac="1.0"),
        activation(3, "a", std=5.0), activation(3, "b", std="huge", zero_frac=1.0),
    ])
    # a: its first numeric spread (0.02) grew 250x; b: dead at the latest step, its text spread skipped.
    assert alerts.run_alerts(run) == [
        alerts.Alert("warning", "loss is diverging", "loss is 1.25, 2.5x its best value 0.5"),
        alerts.Alert("warning", "Dead units", f"layers whose outputs are almost all zero: b (100% zeros). {DEAD_TEXT}"),
        alerts.Alert("warning", "Exploding activations", "activations grew very large in a (std 5): consider "
                     "normalization or a lower learning rate"),
    ]


def test_a_non_finite_spread_is_not_called_exploding(runs_root):
    run = write_run(runs_root, activations=[activation(1, "d", std=0.5), activation(2, "d", std=math.inf)])
    assert titles(run) == []


def test_errors_come_before_warnings(runs_root):
    run = write_run(runs_root, epochs=losses(1.0, 0.5, 0.9, 1.25),
                    activations=[activation(1, "d", zero_frac=1.0)],
                    events=[(fmt.EVENT_NAN, "val_loss became NaN", {"step": 4, "epoch": 3, "metric": "val_loss"})])
    assert titles(run) == ["NaN/Inf in metrics", "loss is diverging", "Dead units"]


def stats(*records: dict) -> pd.DataFrame:
    return pd.DataFrame([{"min": 0.0, "max": 1.0, "mean": 0.0, "std": 0.5, "zero_frac": 0.0, **r} for r in records])


def test_overflowed_rows_are_those_non_finite_or_at_the_float_limit_at_the_latest_step():
    frame = stats({"step": 1, "row": "old", "max": math.inf},  # overflowed earlier only
                  {"step": 2, "row": "fine"},
                  {"step": 2, "row": "huge", "min": -3.4e38, "max": -3.4e38, "std": 0.0},
                  {"step": 2, "row": "limit", "mean": 1e38},
                  {"step": 2, "row": "below", "max": 9.9e37},
                  {"step": 2, "row": "nan", "std": math.nan},  # a missing statistic is not an overflow
                  {"step": 2, "row": "inf", "mean": -math.inf},
                  {"step": 2, "row": "inf", "mean": -math.inf},  # a snapshot repeats the step's records
                  {"step": 2, "row": "text", "std": "n/a"},
                  {"step": 2, "row": "low", "min": -math.inf},
                  {"step": 2, "row": "high", "max": 2e38},
                  {"step": 2, "row": "spread", "std": math.inf})
    assert alerts.overflowed_rows(frame) == ["huge", "limit", "inf", "low", "high", "spread"]
    assert alerts.overflowed_rows(frame.iloc[:0]) == []
    assert alerts.overflowed_rows(frame.drop(columns="row")) == []


def test_dead_share_lists_rows_with_at_least_half_their_units_at_zero_at_the_latest_step():
    frame = stats({"step": 1, "row": "was dead", "zero_frac": 1.0},
                  {"step": 2, "row": "was dead", "zero_frac": 0.1},
                  {"step": 2, "row": "half", "zero_frac": 0.5},
                  {"step": 2, "row": "almost", "zero_frac": 0.49},
                  {"step": 2, "row": "text", "zero_frac": "0.75"},
                  {"step": 2, "row": "junk", "zero_frac": "many"})
    assert alerts.dead_share(frame) == {"half": 0.5, "text": 0.75}
    assert alerts.dead_share(frame.iloc[:0]) == {}
    assert alerts.dead_share(frame.drop(columns="zero_frac")) == {}


# "What went wrong": the panel of a diverged run.


def divergence(**data: object) -> tuple[str, str, dict]:
    return (fmt.EVENT_DIVERGENCE, "diverged", data)


def panel(root, *events, batches=(), status=fmt.DIVERGED, **kwargs) -> dict[str, str]:
    rows = alerts.what_went_wrong(write_run(root, events=list(events), batches=batches, status=status, **kwargs))
    return None if rows is None else dict(rows)


NO_GRADIENTS = ("not recorded: pass LiveMonitor(gradient_data=(x_val[:64], y_val[:64])) to see per-layer gradients "
                "and which layer broke first")


def test_a_run_that_did_not_diverge_has_no_panel(runs_root):
    assert panel(runs_root, status=fmt.FINISHED, epochs=losses(1.0, 0.5)) is None


def test_a_loss_spike_reads_when_what_and_the_learning_rate(runs_root):
    rows = alerts.what_went_wrong(write_run(runs_root, events=[divergence(
        step=1234, epoch=4, metric="loss", value=12.5, rule=fmt.DIVERGENCE_SPIKE, best=0.5, lr=0.003)],
        status=fmt.DIVERGED))
    assert rows == [("When", "step 1,234 (epoch 5)"), ("What", "loss rose to 12.5, 25x its best 0.5"),
                    ("Learning rate", "0.003"), ("Gradients", NO_GRADIENTS)]


def test_a_non_finite_loss_without_step_or_epoch_reads_an_unknown_step(runs_root):
    rows = panel(runs_root, (fmt.EVENT_DIVERGENCE, "diverged", {"metric": "val_loss", "value": math.nan}))
    assert rows == {"When": "an unknown step", "What": "val_loss became NaN", "Learning rate": "not recorded",
                    "Gradients": NO_GRADIENTS}


def test_a_spike_without_a_best_reads_what_it_became(runs_root):
    rows = panel(runs_root, divergence(step=3, epoch=0, metric="loss", value=7.0, rule=fmt.DIVERGENCE_SPIKE))
    assert rows["When"] == "step 3 (epoch 1)" and rows["What"] == "loss became 7"


BATCHES = [{"step": step, "epoch": 0, "batch": step - 1, "time": float(step), "loss": 1.0, "lr": lr}
           for step, lr in ((2, 0.1), (4, 0.05), (6, math.nan), (8, 0.01))]


@pytest.mark.parametrize("step, shown", [(4, "0.05"), (5, "0.05"), (9, "0.01"), (2, "0.1"), (1, "not recorded"),
                                         (6, "not recorded")])
def test_without_an_lr_in_the_divergence_the_last_batch_lr_at_or_before_its_step_is_shown(runs_root, step, shown):
    rows = panel(runs_root, divergence(step=step, epoch=0, metric="loss", value=math.inf), batches=BATCHES)
    assert rows["Learning rate"] == shown


def test_batches_without_an_lr_leave_the_learning_rate_not_recorded(runs_root):
    batches = [{k: v for k, v in record.items() if k != "lr"} for record in BATCHES]
    rows = panel(runs_root, divergence(step=4, epoch=0, metric="loss", value=math.inf), batches=batches)
    assert rows["Learning rate"] == "not recorded"


def gradient(step: int, layer: str) -> dict:
    return {"step": step, "epoch": 0, "layer": layer, "weight": "kernel", "norm": 1.0, "max_abs": 1.0,
            "nonfinite_frac": 0.0, "global_norm": 1.0}


@pytest.mark.parametrize("evidence, text", [
    ({"rule": "first non-finite", "source": "activations"},
     "its activations were the first in forward order to turn NaN/Inf"),
    ({"rule": "largest jump", "source": "gradients", "value": 50.0, "baseline": 0.5, "ratio": 100.0,
      "nonfinite_layers": ["out", "hidden"]},
     "its gradient norm jumped to 50, 100x its recent median 0.5 (the largest jump); non-finite at that moment: out, "
     "hidden"),
    ({"rule": "largest jump", "source": "activations", "value": 8, "baseline": 2, "ratio": 4},
     "its activation spread (std) jumped to 8, 4x its recent median 2 (the largest jump)"),
    ({"rule": "largest jump", "source": "gradients", "value": 50.0, "baseline": None, "ratio": 100.0},
     "the largest gradient norm (50); no history to compare with yet"),
    ({"rule": "largest", "source": "activations", "value": 1234.6, "nonfinite_layers": []},
     "the largest activation spread (std) (1235); no history to compare with yet"),
])
def test_the_first_layer_to_break_comes_with_its_evidence(runs_root, evidence, text):
    writer = RunWriter(runs_root, name="evidence")
    writer.log("gradients", gradient(1, "hidden"))
    writer.event(fmt.EVENT_DIVERGENCE, "diverged", step=3, epoch=0, metric="loss", value=math.inf, layer="hidden",
                 evidence=evidence)
    writer.close(fmt.DIVERGED)
    rows = alerts.what_went_wrong(RunStore(runs_root).run(os.path.basename(writer.run_dir)))
    assert rows == [("When", "step 3 (epoch 1)"), ("What", "loss became Inf"), ("Learning rate", "not recorded"),
                    ("First layer to break", "hidden"), ("Evidence", text),
                    ("Gradients", "per-layer gradient norms over steps: the Activations & weights page")]


@pytest.mark.parametrize("evidence", [None, {}, {"rule": "largest jump", "source": "gradients", "value": "big"}])
def test_a_layer_without_usable_evidence_is_named_alone(runs_root, evidence):
    fields = {"step": 3, "epoch": 0, "metric": "loss", "value": math.inf, "layer": "hidden"}
    if evidence is not None:
        fields["evidence"] = evidence
    rows = alerts.what_went_wrong(write_run(runs_root, events=[divergence(**fields)], status=fmt.DIVERGED))
    assert rows[3] == ("First layer to break", "hidden") and rows[4][0] == "Gradients"
    assert "Evidence" not in dict(rows)
