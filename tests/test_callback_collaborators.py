"""LiveMonitor's collaborators driven directly: metric directions and running means, batch records and their order,
checkpoint keeping, and the reporter's events and warnings.

Real objects throughout: Keras metric objects updated on known batches, a real RunWriter in a temporary folder, a
tiny real model saved as .keras files. No training loop: each hook is called as LiveMonitor calls it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings

import keras
import numpy as np
import pytest
from train_helpers import read_json, read_jsonl

from kerascope.callbacks._batches import BatchOrder, BatchRecords, batch_interval
from kerascope.callbacks._checkpoints import CheckpointKeeper, check_checkpoint_options
from kerascope.callbacks._metrics import check_directions, flat_metrics, mean_metric_keys, metric_direction
from kerascope.callbacks._reporter import MAX_WARNING_EVENTS, RunReporter
from kerascope.monitor import RunWriter


def peak(y_true, y_pred):
    """A user-defined metric function: Keras does not know which way it is better."""
    return keras.ops.max(y_pred, axis=-1)


# -- metrics --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_headed():
    """A two-output model after one eager training step (Keras builds its compiled metrics in the first step)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((3,), name="x")
    h = keras.layers.Dense(4)(x)
    model = keras.Model(x, {"head": keras.layers.Dense(2, activation="softmax", name="head")(h),
                            "aux": keras.layers.Dense(1, activation="sigmoid", name="aux")(h)})
    model.compile("sgd", {"head": "sparse_categorical_crossentropy", "aux": "binary_crossentropy"}, run_eagerly=True,
                  metrics={"head": ["accuracy", peak],
                           "aux": ["mae", keras.metrics.AUC(name="auc"), keras.metrics.RootMeanSquaredError("rmse")]})
    logs = model.train_on_batch(np.ones((4, 3), "float32"),
                                {"head": np.array([0, 1, 0, 1]), "aux": np.array([[0.0], [1.0], [1.0], [0.0]])},
                                return_dict=True)
    return model, logs


def test_compiled_metrics_are_opened_up_to_the_metric_objects(two_headed):
    model, _ = two_headed
    names = [m.name for m in flat_metrics(model.metrics)]
    assert sorted(names) == ["accuracy", "auc", "aux_loss", "head_loss", "loss", "mae", "peak", "rmse"]


def test_running_mean_keys_of_a_two_output_model(two_headed):
    model, logs = two_headed
    assert sorted(logs) == ["aux_auc", "aux_loss", "aux_mae", "aux_rmse", "head_accuracy", "head_loss", "head_peak",
                            "loss"]
    # AUC is no mean; RMSE is the root of one: neither has a per-batch value derivable from running values.
    assert mean_metric_keys(sorted(logs), model.metrics) == ["aux_loss", "aux_mae", "head_accuracy", "head_loss",
                                                             "head_peak", "loss"]


def test_a_key_matching_a_mean_and_a_non_mean_metric_is_left_out():
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    precision_mean = keras.metrics.Mean(name="precision")
    precision = keras.metrics.Precision(name="precision")
    head_auc = keras.metrics.Mean(name="head_auc")
    auc = keras.metrics.AUC(name="auc")
    keys = ["loss", "val_loss", "accuracy", "out_accuracy", "precision", "out_precision", "auc", "head_auc",
            "tail_auc", "custom"]
    assert mean_metric_keys(keys, [accuracy, precision_mean, precision, head_auc, auc]) == [
        "loss", "val_loss", "accuracy", "out_accuracy", "head_auc"]
    assert mean_metric_keys(["loss", "accuracy_1"], [keras.metrics.Mean(name="accuracy_1")]) == ["loss", "accuracy_1"]
    assert mean_metric_keys(["total"], []) == []


def test_metric_directions_must_be_min_or_max():
    given = {"peak": "max", "drift": "min"}
    checked = check_directions(given)
    assert checked == given and checked is not given
    assert check_directions(None) == {}
    with pytest.raises(ValueError, match=r"""^metric_directions\['peak'\] must be "min" or "max", got 'up'$"""):
        check_directions({"drift": "min", "peak": "up"})


def test_directions_from_overrides_losses_keras_metrics_and_names(two_headed):
    model, _ = two_headed
    metrics = model.metrics
    cases = {
        "loss": "min", "val_loss": "min", "head_loss": "min", "val_aux_loss": "min",
        "head_accuracy": "max", "val_head_accuracy": "max", "aux_auc": "max", "aux_mae": "min", "aux_rmse": "min",
        "head_peak": "min",  # a user function: the name rule, which calls unknown names lower-is-better
        "val_f1_score": "max", "val_whatever": "min",
    }
    assert {key: metric_direction(key, metrics, {}) for key in cases} == cases
    assert metric_direction("head_peak", metrics, {"head_peak": "max"}) == "max"
    assert metric_direction("val_head_peak", metrics, {"head_peak": "max"}) == "max"
    assert metric_direction("val_head_peak", metrics, {"val_head_peak": "min", "head_peak": "max"}) == "min"
    assert metric_direction("val_loss", metrics, {"loss": "max"}) == "max"  # the user's word over the loss rule


def test_a_metric_known_by_keras_wins_over_its_name():
    # "error" in a name reads lower-is-better; Keras says cosine similarity and R2 are higher-is-better.
    similarity_error = keras.metrics.CosineSimilarity(name="similarity_error")
    r2 = keras.metrics.R2Score(name="fit_error")
    assert metric_direction("val_similarity_error", [similarity_error], {}) == "max"
    assert metric_direction("out_fit_error", [r2], {}) == "max"
    # A metric matched by exact name comes before one matched by its suffix.
    exact = keras.metrics.MeanSquaredError(name="head_score")
    suffix = keras.metrics.AUC(name="score")
    assert metric_direction("head_score", [suffix, exact], {}) == "min"
    assert metric_direction("head_score", [suffix], {}) == "max"
    # A metric object that says nothing (a plain Mean) falls through to the next match, then to the name rule.
    assert metric_direction("accuracy_gap", [keras.metrics.Mean(name="accuracy_gap")], {}) == "max"


# -- batches --------------------------------------------------------------------------------------------------------


def test_update_freq_means_log_every_nth_batch():
    assert [batch_interval(f) for f in ("batch", "epoch", 1, 3)] == [1, 0, 1, 3]
    for wrong in (0, -2, True, "steps", 2.0, None):
        with pytest.raises(ValueError, match=r'^update_freq must be "batch", "epoch" or a positive int, got '):
            batch_interval(wrong)


def running_logs(per_batch: list[dict[str, float]]) -> list[dict[str, float]]:
    """Keras's batch logs for these per-batch values: running means since the epoch began."""
    logs, totals = [], {}
    for count, values in enumerate(per_batch, start=1):
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value
        logs.append({key: totals[key] / count for key in values})
    return logs


def mean_objects() -> list:
    return [keras.metrics.Mean(name="loss"), keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc")]


PER_BATCH = [{"loss": 0.8, "accuracy": 0.25, "auc": 0.5}, {"loss": 0.4, "accuracy": 0.75, "auc": 0.6},
             {"loss": 0.6, "accuracy": 0.5, "auc": 0.7}, {"loss": 0.2, "accuracy": 1.0, "auc": 0.9},
             {"loss": 0.3, "accuracy": 0.5, "auc": 0.8}]


def test_every_batch_gets_its_own_value_of_each_running_mean():
    records = BatchRecords(1)
    records.begin_phase(mean_objects())
    before = time.time()
    got = [records.record(10 + b, 2, b, logs) for b, logs in enumerate(running_logs(PER_BATCH))]
    after = time.time()
    for b, record in enumerate(got):
        assert (record["step"], record["epoch"], record["batch"]) == (10 + b, 2, b)
        assert before <= record["time"] <= after
        assert record["batch_loss"] == pytest.approx(PER_BATCH[b]["loss"], abs=1e-12)
        assert record["batch_accuracy"] == pytest.approx(PER_BATCH[b]["accuracy"], abs=1e-12)
        assert "batch_auc" not in record  # AUC is no running mean
        assert record["auc"] == running_logs(PER_BATCH)[b]["auc"]
    assert list(got[0]) == ["step", "epoch", "batch", "time", "loss", "accuracy", "auc", "batch_loss",
                            "batch_accuracy"]


def test_logging_every_third_batch_still_derives_each_logged_batchs_value():
    logs = running_logs(PER_BATCH * 2)
    records = BatchRecords(3)
    records.begin_phase(mean_objects())
    got = [records.record(step, 0, step - 1, logs[step - 1]) for step in range(1, 11)]
    assert [r is not None for r in got] == [False, False, True, False, False, True, False, False, True, False]
    for step in (3, 6, 9):
        assert got[step - 1]["batch_loss"] == pytest.approx((PER_BATCH * 2)[step - 1]["loss"], abs=1e-12)
        assert got[step - 1]["step"] == step


def test_a_logged_batch_without_the_batch_before_it_has_no_derived_value():
    logs = running_logs(PER_BATCH)
    records = BatchRecords(1)
    records.begin_phase(mean_objects())
    records.record(1, 0, 0, logs[0])
    record = records.record(3, 0, 2, logs[2])  # batch 1 never reported (a gap)
    assert "batch_loss" not in record and record["loss"] == logs[2]["loss"]
    # A metric missing from the batch before (or from this one) is not derived either.
    records.record(4, 0, 3, {"loss": logs[3]["loss"]})
    record = records.record(5, 0, 4, logs[4])
    assert record["batch_loss"] == pytest.approx(PER_BATCH[4]["loss"], abs=1e-12)
    assert "batch_accuracy" not in record
    record = records.record(6, 0, 5, {"accuracy": 0.5})
    assert "batch_loss" not in record
    assert record["batch_accuracy"] == pytest.approx(6 * 0.5 - 5 * logs[4]["accuracy"], abs=1e-12)


def test_the_first_batch_of_an_epoch_is_its_own_value():
    records = BatchRecords(2)
    records.begin_phase(mean_objects())
    assert records.record(1, 0, 0, {"loss": 0.9, "auc": 0.5}) is None
    record = records.record(2, 0, 1, {"loss": 0.7, "auc": 0.6})
    assert record["batch_loss"] == pytest.approx(0.5)
    record = records.record(4, 1, 0, {"loss": 0.3, "auc": 0.6})  # step 4 is the first batch of epoch 1
    assert record["batch_loss"] == 0.3 and "batch_auc" not in record


def test_with_update_freq_epoch_no_batch_is_recorded():
    records = BatchRecords(0)
    records.begin_phase(mean_objects())
    assert [records.record(s, 0, s - 1, {"loss": 1.0}) for s in range(1, 5)] == [None] * 4


def test_a_new_fit_forgets_the_metrics_and_batches_of_the_last_one():
    records = BatchRecords(1)
    records.begin_phase(mean_objects())
    records.record(1, 0, 0, {"loss": 0.5, "accuracy": 0.5})
    records.record(2, 0, 1, {"loss": 0.4, "accuracy": 0.5})
    records.begin_phase([keras.metrics.Mean(name="loss"), keras.metrics.AUC(name="accuracy")])  # a recompile
    record = records.record(3, 1, 1, {"loss": 0.2, "accuracy": 0.75})
    assert "batch_loss" not in record  # batch 0 of this fit() was not seen
    record = records.record(4, 1, 2, {"loss": 0.3, "accuracy": 0.5})
    assert record["batch_loss"] == pytest.approx(0.5) and "batch_accuracy" not in record


def test_the_batch_value_of_real_keras_metrics_is_the_metric_on_that_batch():
    rng = np.random.default_rng(4)
    batches = [(rng.normal(size=(8, 1)), rng.normal(size=(8, 1))) for _ in range(4)]
    running = {"mse": keras.metrics.MeanSquaredError(name="mse"), "rmse": keras.metrics.RootMeanSquaredError("rmse")}
    records = BatchRecords(1)
    records.begin_phase(list(running.values()))
    for b, (y_true, y_pred) in enumerate(batches):
        for metric in running.values():
            metric.update_state(y_true, y_pred)
        logs = {name: float(metric.result()) for name, metric in running.items()}
        record = records.record(b + 1, 0, b, logs)
        assert record["batch_mse"] == pytest.approx(np.mean((y_true - y_pred) ** 2), rel=1e-4)
        assert "batch_rmse" not in record


def test_batch_ends_that_arrive_out_of_order_come_out_in_training_order():
    order = BatchOrder()
    order.begin(0)
    order.begin(1)
    order.begin(2)
    assert order.end(1, {"loss": 1}) == []
    assert order.end(2, {"loss": 2}) == []
    assert order.end(0, {"loss": 0}) == [(0, {"loss": 0}), (1, {"loss": 1}), (2, {"loss": 2})]
    order.begin(3)
    assert order.end(3, {"loss": 3}) == [(3, {"loss": 3})]


def test_with_steps_per_execution_each_begin_is_released_by_the_end_before_the_next_begin():
    order = BatchOrder()
    order.begin(0)  # batches 0-2
    order.begin(3)  # batches 3-5
    order.begin(6)  # batches 6-8
    assert order.end(5, {"at": 5}) == []
    assert order.end(2, {"at": 2}) == [(2, {"at": 2}), (5, {"at": 5})]
    assert order.end(8, {"at": 8}) == [(8, {"at": 8})]
    order.begin(9)  # batches 9-11
    order.begin(12)  # batches 12-14
    assert order.end(14, {"at": 14}) == []  # it belongs to the run that began at 12, which waits for 9's
    assert order.end(11, {"at": 11}) == [(11, {"at": 11}), (14, {"at": 14})]


def test_a_stray_end_is_held_until_the_epoch_ends():
    order = BatchOrder()
    order.begin(0)
    order.begin(3)
    assert order.end(1, {"at": 1}) == [(1, {"at": 1})]
    assert order.end(2, {"at": 2}) == []  # a second end before the begin of 3: no begin left for it
    assert order.end(4, {"at": 4}) == [(4, {"at": 4})]
    assert order.leftovers() == [(2, {"at": 2})]


def test_batch_ends_without_begins_pass_straight_through():
    order = BatchOrder()
    assert order.end(4, {"loss": 4}) == [(4, {"loss": 4})]
    assert order.leftovers() == []


def test_what_is_held_at_epoch_end_comes_out_in_batch_order_and_the_order_starts_over():
    order = BatchOrder()
    for batch in (0, 1, 2, 3):
        order.begin(batch)
    assert order.end(3, {"b": 3}) == []
    assert order.end(2, {"b": 2}) == []
    assert order.leftovers() == [(2, {"b": 2}), (3, {"b": 3})]
    assert order.end(7, {"b": 7}) == [(7, {"b": 7})]  # nothing begun any more
    order.begin(0)
    order.end(1, {"b": 1})
    order.reset()
    assert order.leftovers() == []
    assert order.end(5, {"b": 5}) == [(5, {"b": 5})]


# -- checkpoints ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="out")], name="small")


@pytest.fixture
def writer(tmp_path):
    run = RunWriter(tmp_path / "runs", "checkpoints")
    yield run
    run.close()


def checkpoint_files(writer: RunWriter) -> list[str]:
    return sorted(os.listdir(os.path.join(writer.run_dir, "checkpoints")))


def index(writer: RunWriter) -> list[dict]:
    return read_json(writer.run_dir, "checkpoints/index.json")


def test_checkpoint_options_are_checked():
    for policy in ("best", "last", "all", None):
        for mode in ("auto", "min", "max"):
            check_checkpoint_options(policy, mode)
    with pytest.raises(ValueError, match=r"^checkpoint must be one of \('best', 'last', 'all'\) or None, got 'each'$"):
        check_checkpoint_options("each", "min")
    with pytest.raises(ValueError, match=r'^mode must be "auto", "min" or "max", got \'lowest\'$'):
        check_checkpoint_options("best", "lowest")
    with pytest.raises(ValueError, match=r"^checkpoint must be one of \('best', 'last', 'all'\) or None, got None$"):
        CheckpointKeeper(None, None, "loss", "min")


def test_best_keeps_the_lowest_value_and_ignores_ties_nan_and_missing_values(writer, small_model):
    keeper = CheckpointKeeper(writer, "best", "val_loss", "min")
    values = [0.5, 0.4, 0.4, float("nan"), None, 0.45, 0.3]
    saved = []
    for epoch, value in enumerate(values):
        logs = {"loss": 0.1} if value is None else {"val_loss": value, "loss": 0.1}
        saved.append(keeper.save(small_model, epoch, 10 * (epoch + 1), logs))
    assert [entry is not None for entry in saved] == [True, True, False, False, False, False, True]
    path = os.path.join(writer.run_dir, "checkpoints", "best.keras")
    assert index(writer) == [{"epoch": 6, "step": 70, "path": "checkpoints/best.keras", "monitor": "val_loss",
                              "value": 0.3, "is_best": True, "bytes": os.path.getsize(path),
                              "time": saved[-1]["time"]}]
    assert saved[-1]["bytes"] > 0 and checkpoint_files(writer) == ["best.keras", "index.json"]
    assert keras.saving.load_model(path).get_layer("out").get_weights()[0].shape == (2, 1)


def test_best_keeps_the_highest_value_in_max_mode_and_the_earlier_epoch_of_a_tie(writer, small_model):
    keeper = CheckpointKeeper(writer, "best", "val_accuracy", "max")
    saved = [keeper.save(small_model, epoch, epoch + 1, {"val_accuracy": value})
             for epoch, value in enumerate([0.5, 0.7, 0.6, 0.7])]
    assert [entry is not None for entry in saved] == [True, True, False, False]
    assert [(e["epoch"], e["value"]) for e in index(writer)] == [(1, 0.7)]
    keeper.save(small_model, 4, 5, {"val_accuracy": np.float32(0.75)})
    assert [(e["epoch"], e["value"]) for e in index(writer)] == [(4, 0.75)]


def test_last_rewrites_one_file_and_says_whether_each_epoch_was_the_best(writer, small_model):
    keeper = CheckpointKeeper(writer, "last", "loss", "min")
    flags = []
    for epoch, value in enumerate([0.5, 0.6, 0.4]):
        entry = keeper.save(small_model, epoch, epoch + 1, {"loss": value})
        flags.append(entry["is_best"])
        assert [(e["epoch"], e["path"]) for e in index(writer)] == [(epoch, "checkpoints/last.keras")]
    assert flags == [True, False, True]
    assert checkpoint_files(writer) == ["index.json", "last.keras"]


def test_all_keeps_every_epoch_and_marks_only_the_latest_best(writer, small_model):
    keeper = CheckpointKeeper(writer, "all", "loss", "min")
    for epoch, value in enumerate([0.5, 0.4, 0.6, 0.3, 0.35]):
        keeper.save(small_model, epoch, epoch + 1, {"loss": value})
    assert [(e["path"], e["is_best"]) for e in index(writer)] == [
        ("checkpoints/epoch-0001.keras", False), ("checkpoints/epoch-0002.keras", False),
        ("checkpoints/epoch-0003.keras", False), ("checkpoints/epoch-0004.keras", True),
        ("checkpoints/epoch-0005.keras", False)]
    assert checkpoint_files(writer) == [f"epoch-000{n}.keras" for n in range(1, 6)] + ["index.json"]


def test_a_resumed_run_continues_from_its_last_best_value(writer, small_model):
    keeper = CheckpointKeeper(writer, "best", "loss", "min")
    earlier = [{"epoch": 0, "path": "checkpoints/best.keras", "value": 0.5, "is_best": True},
               {"epoch": 1, "path": "checkpoints/best.keras", "value": 0.4, "is_best": True},
               {"epoch": 2, "path": "checkpoints/best.keras", "value": 0.3, "is_best": True},
               {"epoch": 2, "path": "checkpoints/best.keras", "value": 0.1, "is_best": False}]
    keeper.continue_from(earlier)
    earlier.clear()  # the keeper holds its own list
    assert keeper.save(small_model, 3, 40, {"loss": 0.35}) is None
    assert keeper.save(small_model, 4, 50, {"loss": 0.25})["value"] == 0.25
    assert [e["epoch"] for e in index(writer)] == [4]


def test_a_resumed_run_without_a_best_entry_saves_its_first_value(writer, small_model):
    keeper = CheckpointKeeper(writer, "all", "loss", "min")
    keeper.continue_from([{"epoch": 0, "path": "checkpoints/epoch-0001.keras", "value": None, "is_best": False}])
    entry = keeper.save(small_model, 1, 2, {"loss": 9.0})
    assert entry["is_best"] is True
    assert [(e["epoch"], e["is_best"]) for e in index(writer)] == [(0, False), (1, True)]


def test_a_later_fit_continues_with_its_reopened_writer(writer, small_model):
    keeper = CheckpointKeeper(writer, "best", "loss", "min")
    keeper.save(small_model, 0, 1, {"loss": 0.5})
    writer.close()
    reopened = RunWriter.resume(writer.run_dir)
    try:
        keeper.attach(reopened)
        assert keeper.save(small_model, 1, 2, {"loss": 0.6}) is None  # the best value carried over
        keeper.save(small_model, 2, 3, {"loss": 0.2})
        assert [e["epoch"] for e in index(reopened)] == [2]
    finally:
        reopened.close()


def test_a_deleted_run_directory_is_not_brought_back_by_a_checkpoint(tmp_path, small_model):
    run = RunWriter(tmp_path / "runs", "deleted")
    keeper = CheckpointKeeper(run, "last", "loss", "min")
    shutil.rmtree(run.run_dir)
    with pytest.raises(FileNotFoundError):
        keeper.save(small_model, 0, 1, {"loss": 0.5})
    run.close()
    assert not os.path.exists(os.path.join(run.run_dir, "checkpoints"))


class Unsaveable(keras.layers.Layer):
    def call(self, x):
        return x

    def get_config(self):
        raise RuntimeError("cannot describe this layer")


def test_a_failed_save_leaves_the_last_checkpoint_and_no_temporary_file(writer, small_model):
    keeper = CheckpointKeeper(writer, "last", "loss", "min")
    keeper.save(small_model, 0, 1, {"loss": 0.5})
    path = os.path.join(writer.run_dir, "checkpoints", "last.keras")
    with open(path, "rb") as f:
        saved = f.read()
    broken = keras.Sequential([keras.Input((2,)), Unsaveable(name="unsaveable")])
    with pytest.raises(RuntimeError, match="cannot describe this layer"):
        keeper.save(broken, 1, 2, {"loss": 0.4})
    assert checkpoint_files(writer) == ["index.json", "last.keras"]
    with open(path, "rb") as f:
        assert f.read() == saved
    assert [e["epoch"] for e in index(writer)] == [0]


class ListsItsFolder(keras.layers.Layer):
    """A pass-through layer that, while the model is being saved, notes what the checkpoints folder holds."""

    def __init__(self, folder=None, **kwargs):
        super().__init__(**kwargs)
        self.folder = folder
        self.seen = None

    def call(self, x):
        return x

    def get_config(self):
        if self.folder is not None:
            self.seen = sorted(os.listdir(self.folder))
        return super().get_config()


def test_a_checkpoint_is_written_under_a_hidden_temporary_name_beside_its_final_one(writer):
    keeper = CheckpointKeeper(writer, "best", "loss", "min")
    folder = os.path.join(writer.run_dir, "checkpoints")
    spy = ListsItsFolder(folder, name="spy")
    model = keras.Sequential([keras.Input((2,)), spy])
    keeper.save(model, 0, 1, {"loss": 0.5})
    # While saving: only the temporary file, in the same folder (so the rename is atomic), hidden from listings.
    assert len(spy.seen) == 1 and spy.seen[0].startswith(".tmp-") and spy.seen[0].endswith(".keras")
    assert checkpoint_files(writer) == ["best.keras", "index.json"]


# -- reporter -------------------------------------------------------------------------------------------------------


@pytest.fixture
def reporter(writer):
    position = {"step": 7, "epoch": 2}
    report = RunReporter(strict=False, position=lambda: (position["step"], position["epoch"]))
    report.begin_phase(writer)
    report.where = position  # the test moves training along
    return report


def written_events(writer: RunWriter, kind: str | None = None) -> list[dict]:
    writer.flush()
    found = read_jsonl(os.path.join(writer.run_dir, "events.jsonl"))
    return [e for e in found if kind is None or e["kind"] == kind]


def test_events_are_stamped_with_the_training_position(reporter, writer):
    reporter.event("note", "hello", data={"a": 1}, b=2)
    reporter.event("note", "earlier", step=3)
    events = written_events(writer, "note")
    assert [(e["step"], e["epoch"], e["message"], e.get("data")) for e in events] == [
        (7, 2, "hello", {"a": 1, "b": 2}), (3, 2, "earlier", None)]


def test_a_skip_is_reported_once_per_run_across_fits(reporter, writer):
    assert not reporter.skipped("activations")
    reporter.skip("activations", "no activation statistics: pass activation_data=...")
    reporter.skip("activations", "again")
    reporter.begin_phase(writer)  # a second fit()
    reporter.skip("activations", "and again")
    reporter.skip("graph", "no graph: install graphviz")
    assert reporter.skipped("activations") and reporter.skipped("graph") and not reporter.skipped("weights")
    assert [(e["message"], e["data"]) for e in written_events(writer, "skipped")] == [
        ("no activation statistics: pass activation_data=...", {"what": "activations"}),
        ("no graph: install graphviz", {"what": "graph"})]


def test_nan_and_infinite_metrics_are_events_once_per_metric_per_fit(reporter, writer):
    reporter.check_nan({"loss": 0.5, "accuracy": 1, "name": "x", "flag": True})
    reporter.check_nan({"loss": float("nan"), "val_loss": float("inf"), "mae": -float("inf")})
    reporter.where["step"] = 9
    reporter.check_nan({"loss": float("nan"), "val_loss": 0.2, "accuracy": float("nan")})
    events = written_events(writer, "nan")
    assert [(e["message"], e["step"], e["data"]["metric"]) for e in events] == [
        ("loss is nan at step 7", 7, "loss"), ("val_loss is inf at step 7", 7, "val_loss"),
        ("mae is -inf at step 7", 7, "mae"), ("accuracy is nan at step 9", 9, "accuracy")]
    assert math.isnan(events[0]["data"]["value"]) and events[1]["data"]["value"] == math.inf
    reporter.begin_phase(writer)  # the next fit() reports again
    reporter.check_nan({"loss": float("nan")})
    assert [e["data"]["metric"] for e in written_events(writer, "nan")][-1:] == ["loss"]
    assert len(written_events(writer, "nan")) == 5


def test_a_learning_rate_change_is_an_event_with_old_and_new(reporter, writer):
    reporter.lr_change(None, "epoch 1 begins")
    reporter.lr_change((0.1, 0.0123456789), "epoch 3 begins")
    events = written_events(writer, "lr_change")
    assert [(e["message"], e["data"]) for e in events] == [
        ("learning rate 0.1 -> 0.0123457 (epoch 3 begins)", {"old": 0.1, "new": 0.0123456789})]


def fail(kind: type[Exception], message: str) -> None:
    raise kind(message)


def test_errors_become_one_warning_and_one_event_per_place_and_type(reporter, writer):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reporter.call("weight statistics", fail, ValueError, "bad shape")
        reporter.call("weight statistics", fail, ValueError, "bad shape again")
        reporter.call("weight statistics", fail, KeyError, "missing")
        reporter.call("system", fail, ValueError, "no sensors")
        reporter.call("fine", lambda a, b: a + b, 1, 2)
    assert [(w.category, str(w.message)) for w in caught] == [
        (RuntimeWarning, "LiveMonitor: weight statistics failed: ValueError: bad shape. Training continues; the run "
                         "may miss some records (strict=True raises).")]
    assert [e["message"] for e in written_events(writer, "warning")] == [
        "weight statistics failed: ValueError: bad shape", "weight statistics failed: KeyError: 'missing'",
        "system failed: ValueError: no sensors"]


def test_warning_events_stop_at_their_cap(reporter, writer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in range(MAX_WARNING_EVENTS + 5):
            reporter.failed(f"place {n}", ValueError("x"))
    assert MAX_WARNING_EVENTS == 20
    assert len(written_events(writer, "warning")) == 20


def test_an_error_before_the_run_directory_exists_is_a_warning_only():
    report = RunReporter(strict=False, position=lambda: (0, 0))
    with pytest.warns(RuntimeWarning, match=r"^LiveMonitor: on_train_begin failed: OSError: read-only"):
        report.failed("on_train_begin", OSError("read-only"))
    assert report.writer is None


def test_strict_mode_raises_the_error_itself(writer):
    report = RunReporter(strict=True, position=lambda: (0, 0))
    report.begin_phase(writer)
    error = ValueError("the monitor's own bug")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as raised:
            report.call("weight statistics", fail, ValueError, "the monitor's own bug")
        assert str(raised.value) == "the monitor's own bug"
        with pytest.raises(ValueError) as raised:
            report.failed("x", error)
        assert raised.value is error
    assert written_events(writer, "warning") == []


def test_the_warning_is_once_per_run_across_fits(reporter, writer):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reporter.warn_once("first")
        reporter.begin_phase(writer)
        reporter.warn_once("second")
    assert [str(w.message) for w in caught] == [
        "LiveMonitor: first. Training continues; the run may miss some records (strict=True raises)."]


def test_events_json_lines_are_plain_json(reporter, writer):
    reporter.event("note", "x")
    writer.flush()
    with open(os.path.join(writer.run_dir, "events.jsonl"), encoding="utf-8") as f:
        assert all(json.loads(line)["kind"] for line in f)
