"""The Run page's charts (app/run_charts.py) built from runs written to disk with RunWriter: which charts, in which
order, their traces' x and y on each x axis, the learning rate's log axis, the best-epoch line and the overflow note."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from kerascope import RunStore, RunWriter
from kerascope.app import run_charts
from kerascope.app.run_charts import ChartOptions
from kerascope.monitor import format as fmt

STEP = ChartOptions("step", 0.0)
EPOCH = ChartOptions("epoch", 0.0)
TIME = ChartOptions("time", 0.0)


def write_run(root, *, epochs=(), batches=(), events=(), system=(), monitor=None, steps_per_epoch=None,
              name="run"):
    meta = {"options": {"monitor": monitor}} if monitor else None
    writer = RunWriter(root, name=name, meta=meta)
    for stream, records in (("epoch", epochs), ("batch", batches), ("system", system)):
        for record in records:
            writer.log(stream, record)
    for kind, fields in events:
        writer.event(kind, kind, **fields)
    if steps_per_epoch is not None:
        writer.update_status(steps_per_epoch=steps_per_epoch)
    writer.close(fmt.FINISHED)
    return RunStore(root).run(os.path.basename(writer.run_dir))


def epoch_records(count: int, **columns) -> list[dict]:
    """`count` epochs of 2 steps each, 10 s apart, with these columns (lists of values)."""
    return [{"epoch": e, "step": 2 * (e + 1), "time": 1000.0 + 10 * e, **{k: v[e] for k, v in columns.items()}}
            for e in range(count)]


def batch_records(count: int, per_epoch: int = 2, **columns) -> list[dict]:
    return [{"step": s + 1, "epoch": s // per_epoch, "batch": s % per_epoch, "time": 1000.0 + s,
             **{k: v[s] for k, v in columns.items()}} for s in range(count)]


def data_traces(figure) -> list:
    return [trace for trace in figure.data if trace.yaxis != "y2"]


def data_lines(figure) -> list:
    return [trace for trace in figure.data if trace.mode != "text"]


def xy(trace) -> tuple[list, list]:
    return [float(x) for x in trace.x], [float(y) for y in trace.y]


def test_epoch_charts_pair_train_and_val_with_loss_then_the_key_metric_first(runs_root):
    run = write_run(runs_root, monitor="val_b_acc", epochs=epoch_records(
        3, a_metric=[1.0, 2.0, 3.0], b_acc=[0.1, 0.2, 0.3], val_b_acc=[0.2, 0.3, 0.4], loss=[3.0, 2.0, 1.0],
        val_loss=[3.5, 2.5, 1.5], val_only=[5.0, 6.0, 7.0], lr=[0.1, 0.1, 0.1]))
    figures = run_charts.epoch_figures(run, EPOCH)
    assert list(figures) == ["loss", "b_acc", "a_metric", "val_only"]
    loss = figures["loss"]
    assert [(t.name, *xy(t)) for t in data_traces(loss)] == [
        ("loss", [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]), ("val_loss", [1.0, 2.0, 3.0], [3.5, 2.5, 1.5])]
    assert loss.data[0].mode == "lines+markers"  # one point per epoch: markers, no smoothing
    assert [b.label for b in loss.layout.updatemenus[0].buttons] == ["linear", "log", "cut top 1 %"]
    assert [b.label for b in figures["b_acc"].layout.updatemenus[0].buttons] == ["linear", "log"]
    assert loss.layout.title.text == "loss" and figures["b_acc"].layout.title.text == "b_acc"
    assert [t.name for t in data_traces(figures["val_only"])] == ["val_only"]


def test_epoch_charts_on_the_step_and_time_axes(runs_root):
    run = write_run(runs_root, epochs=epoch_records(2, loss=[2.0, 1.0]))
    assert xy(run_charts.epoch_figures(run, STEP)["loss"].data[0])[0] == [2.0, 4.0]
    times = run_charts.epoch_figures(run, TIME)["loss"].data[0].x
    assert list(pd.to_datetime(times)) == list(pd.to_datetime([1000.0, 1010.0], unit="s"))


def test_a_run_without_a_monitored_metric_orders_loss_then_by_name(runs_root):
    run = write_run(runs_root, epochs=epoch_records(1, zeta=[1.0], alpha=[1.0], loss=[1.0]))
    assert run_charts.key_metric(run) is None
    assert list(run_charts.epoch_figures(run, EPOCH)) == ["loss", "alpha", "zeta"]
    assert run_charts.key_metric(write_run(runs_root, monitor="val_acc", name="other")) == "acc"


def test_epoch_records_missing_the_chosen_axis_plot_by_epoch_then_by_row():
    frame = pd.DataFrame({"epoch": [0.0, 1.0, 2.0], "step": [np.nan] * 3, "time": [5.0, np.nan, 7.0]})
    assert list(run_charts.epoch_x(frame, "step")) == [1.0, 2.0, 3.0]
    assert list(run_charts.epoch_x(frame, "time")) == [5.0, pytest.approx(np.nan, nan_ok=True), 7.0]
    no_epochs = frame.assign(epoch=np.nan)
    assert list(run_charts.epoch_x(no_epochs, "step")) == [1.0, 2.0, 3.0]
    assert list(run_charts.epoch_x(no_epochs, "epoch")) == [1.0, 2.0, 3.0]


def early_stopped(root, *, nan_guard=False, name="stopped"):
    events = [(fmt.EVENT_EARLY_STOP, {"step": 8, "epoch": 3})]
    if nan_guard:
        events.insert(0, (fmt.EVENT_NAN, {"step": 8, "epoch": 3, "metric": "val_loss"}))
    return write_run(root, name=name, monitor="val_loss", events=events, epochs=epoch_records(
        4, loss=[4.0, 3.0, 2.0, 1.0], val_loss=[3.0, 1.0, 2.0, 2.5]))


def test_an_early_stopped_run_marks_its_best_epoch_on_every_axis(runs_root):
    run = early_stopped(runs_root)
    for options, x in ((EPOCH, 2.0), (STEP, 4.0)):
        loss = run_charts.epoch_figures(run, options)["loss"]
        best = next(t for t in loss.data if t.name == "best epoch")
        assert best.x[0] == x
    labels = [t for t in run_charts.epoch_figures(run, EPOCH)["loss"].data if t.mode == "text"]
    assert ["best epoch 2"] in [list(t.text) for t in labels]
    assert run_charts.best_marker(run, run.epoch_metrics(), np.array([10.0, 20.0, 30.0, 40.0])) == (20.0, 1)


def test_no_best_epoch_line_without_an_early_stop_or_after_a_nan_guard(runs_root):
    assert run_charts.best_marker(early_stopped(runs_root, nan_guard=True), pd.DataFrame({"epoch": [1]}),
                                  np.ones(1)) is None
    finished = write_run(runs_root, name="finished", monitor="val_loss",
                         epochs=epoch_records(2, loss=[2.0, 1.0], val_loss=[2.0, 1.0]))
    assert run_charts.best_marker(finished, finished.epoch_metrics(), np.ones(2)) is None
    stopped = early_stopped(runs_root, name="again")
    assert run_charts.best_marker(stopped, pd.DataFrame({"epoch": [0.0, 2.0]}), np.ones(2)) is None  # not charted
    unmonitored = write_run(runs_root, name="no metric", events=[(fmt.EVENT_EARLY_STOP, {"step": 2, "epoch": 0})],
                            epochs=epoch_records(1, accuracy=[0.5]))
    assert run_charts.best_marker(unmonitored, unmonitored.epoch_metrics(), np.ones(1)) is None


def test_the_best_epoch_marks_the_last_record_of_a_repeated_epoch(runs_root):
    run = early_stopped(runs_root)
    frame = pd.DataFrame({"epoch": [1.0, 1.0, 2.0]})
    assert run_charts.best_marker(run, frame, np.array([5.0, 6.0, 7.0])) == (6.0, 1)


def test_system_charts_draw_cpu_and_memory_in_megabytes(runs_root):
    run = write_run(runs_root, system=[{"time": 1000.0, "cpu_percent": 150.0, "rss_bytes": 2**20 * 100,
                                        "gpu_memory_bytes": 2**21},
                                       {"time": 1060.0, "cpu_percent": 50.0, "rss_bytes": 2**20 * 150,
                                        "gpu_memory_bytes": 2**22}])
    figures = run_charts.system_figures(run)
    assert list(figures) == ["cpu", "memory"]
    cpu, memory = figures["cpu"], figures["memory"]
    assert cpu.layout.title.text == "process CPU %" and cpu.layout.height == 260
    assert [(t.name, list(t.y)) for t in cpu.data] == [("CPU %", [150.0, 50.0])]
    assert list(pd.to_datetime(cpu.data[0].x)) == list(pd.to_datetime([1000.0, 1060.0], unit="s"))
    assert memory.layout.title.text == "memory (MB)" and memory.layout.height == 260
    assert [(t.name, list(t.y)) for t in memory.data] == [("RSS (MB)", [100.0, 150.0]),
                                                          ("GPU memory (MB)", [2.0, 4.0])]


def test_system_charts_show_what_was_recorded(runs_root):
    cpu_only = write_run(runs_root, name="cpu", system=[{"time": 1.0, "cpu_percent": 10.0}])
    assert list(run_charts.system_figures(cpu_only)) == ["cpu"]
    rss_only = write_run(runs_root, name="rss", system=[{"time": 1.0, "rss_bytes": 2.0**20}])
    assert [t.name for t in run_charts.system_figures(rss_only)["memory"].data] == ["RSS (MB)"]
    assert run_charts.system_figures(write_run(runs_root, name="none")) == {}


def lr_run(root, name="lr", **extra):
    return write_run(root, name=name, steps_per_epoch=2, **extra, batches=batch_records(
        4, loss=[4.0, 3.0, 2.0, 1.0], batch_loss=[4.0, 2.0, 1.0, 1.0], accuracy=[0.1, 0.2, 0.3, 0.4],
        aaa=[1.0, 1.0, 1.0, 1.0], lr=[0.1, 0.1, 0.01, 0.01]))


def test_batch_charts_show_each_batchs_own_value_and_the_learning_rate_on_a_log_axis(runs_root):
    run = lr_run(runs_root)
    figures = run_charts.batch_figures(run, EPOCH)
    assert list(figures) == ["loss", "learning rate", "aaa", "accuracy"]
    loss = figures["loss"]
    assert loss.layout.title.text == "loss per batch"
    assert [(t.name, *xy(t)) for t in data_traces(loss)] == [("loss", [0.5, 1.0, 1.5, 2.0], [4.0, 2.0, 1.0, 1.0])]
    assert [b.label for b in loss.layout.updatemenus[0].buttons] == ["linear", "log", "cut top 1 %"]
    accuracy = figures["accuracy"]  # no batch_ value: the running mean, titled as it is
    assert accuracy.layout.title.text == "accuracy" and xy(accuracy.data[0])[1] == [0.1, 0.2, 0.3, 0.4]
    lr = figures["learning rate"]
    assert lr.layout.title.text == "learning rate per batch" and lr.layout.yaxis.type == "log"
    assert [(t.name, *xy(t)) for t in data_traces(lr)] == [("lr", [0.5, 1.0, 1.5, 2.0], [0.1, 0.1, 0.01, 0.01])]
    assert xy(run_charts.batch_figures(run, STEP)["loss"].data[0])[0] == [1.0, 2.0, 3.0, 4.0]


def test_batch_charts_are_smoothed_but_the_learning_rate_never_is(runs_root):
    figures = run_charts.batch_figures(lr_run(runs_root), ChartOptions("step", 0.6))
    assert [t.name for t in figures["loss"].data] == ["loss (raw)", "loss"]
    assert list(figures["loss"].data[1].y) != [4.0, 2.0, 1.0, 1.0]
    assert [t.name for t in data_traces(figures["learning rate"])] == ["lr"]


def test_a_run_without_batches_has_no_batch_charts(runs_root):
    assert run_charts.batch_figures(write_run(runs_root, epochs=epoch_records(1, loss=[1.0])), STEP) == {}


def test_batch_charts_mark_the_best_epoch_of_an_early_stopped_run(runs_root):
    run = lr_run(runs_root, monitor="val_loss", events=[(fmt.EVENT_EARLY_STOP, {"step": 4, "epoch": 1})],
                 epochs=epoch_records(2, loss=[2.0, 1.0], val_loss=[1.0, 2.0]))
    loss = run_charts.batch_figures(run, STEP)["loss"]
    assert [t.x[0] for t in data_lines(loss) if t.name == "best epoch"] == [2.0]


def test_a_run_without_batch_lr_charts_the_epoch_lr_after_loss_and_the_key_metric(runs_root):
    run = write_run(runs_root, monitor="val_acc", epochs=epoch_records(
        3, zz=[1.0, 1.0, 1.0], acc=[0.1, 0.2, 0.3], loss=[3.0, 2.0, 1.0], learning_rate=[0.1, 0.01, 0.001]))
    sections = run_charts.page_figures(run, EPOCH)
    assert list(sections["epoch"]) == ["loss", "acc", "learning rate", "zz"] and sections["batch"] == {}
    lr = sections["epoch"]["learning rate"]
    assert lr.layout.title.text == "learning rate" and lr.layout.yaxis.type == "log"
    assert [(t.name, t.mode, *xy(t)) for t in data_traces(lr)] == [("lr", "lines+markers", [1.0, 2.0, 3.0],
                                                                     [0.1, 0.01, 0.001])]


def test_the_epoch_lr_column_that_holds_values_is_charted(runs_root):
    run = write_run(runs_root, epochs=epoch_records(2, loss=[2.0, 1.0], lr=[None, None], learning_rate=[0.5, 0.25]))
    assert xy(run_charts.epoch_lr_figure(run, STEP).data[0]) == ([2.0, 4.0], [0.5, 0.25])
    both = write_run(runs_root, name="both", epochs=epoch_records(2, loss=[2.0, 1.0], lr=[0.1, 0.1],
                                                                  learning_rate=[0.5, 0.25]))
    assert xy(run_charts.epoch_lr_figure(both, STEP).data[0])[1] == [0.1, 0.1]  # LiveMonitor's own first
    assert run_charts.epoch_lr_figure(write_run(runs_root, name="no lr", epochs=epoch_records(1, loss=[1.0])),
                                      STEP) is None


def test_the_epoch_lr_chart_marks_the_best_epoch(runs_root):
    run = write_run(runs_root, monitor="val_loss", events=[(fmt.EVENT_EARLY_STOP, {"step": 4, "epoch": 1})],
                    epochs=epoch_records(2, loss=[2.0, 1.0], val_loss=[1.0, 2.0], lr=[0.1, 0.05]))
    lr = run_charts.epoch_lr_figure(run, EPOCH)
    assert [t.x[0] for t in data_lines(lr) if t.name == "best epoch"] == [1.0]


def test_the_batch_learning_rate_moves_to_the_epoch_section_after_the_leading_charts(runs_root):
    run = lr_run(runs_root, monitor="val_aaa", epochs=epoch_records(
        2, other=[1.0, 2.0], aaa=[1.0, 1.0], loss=[2.0, 1.0], lr=[0.9, 0.9]))
    sections = run_charts.page_figures(run, STEP)
    assert list(sections["epoch"]) == ["loss", "aaa", "learning rate", "other"]
    assert sections["epoch"]["learning rate"].layout.title.text == "learning rate per batch"
    assert list(sections["batch"]) == ["loss", "aaa", "accuracy"]


def test_before_the_first_epoch_ends_the_batch_section_leads_with_loss_and_learning_rate(runs_root):
    sections = run_charts.page_figures(lr_run(runs_root), STEP)
    assert sections["epoch"] == {} and list(sections["batch"])[:2] == ["loss", "learning rate"]


def test_a_run_with_no_learning_rate_keeps_its_sections_as_they_are(runs_root):
    run = write_run(runs_root, epochs=epoch_records(1, loss=[1.0]), batches=batch_records(2, loss=[1.0, 1.0]))
    sections = run_charts.page_figures(run, STEP)
    assert list(sections["epoch"]) == ["loss"] and list(sections["batch"]) == ["loss"]


def many_metrics_run(root, epoch_metrics: int, batch_metrics: int, name="many"):
    epoch = {f"m{i:02d}": [1.0] for i in range(epoch_metrics)}
    epoch.update({f"val_m{i:02d}": [1.0] for i in range(epoch_metrics)})  # twins share their metric's chart
    batch = {f"b{i:02d}": [1.0] for i in range(batch_metrics)}
    return write_run(root, name=name, epochs=epoch_records(1, **epoch), batches=batch_records(1, **batch))


def test_a_run_logging_more_metrics_than_the_page_charts_says_how_many_are_left_out(runs_root):
    run = many_metrics_run(runs_root, 30, 25)
    assert len(run_charts.epoch_figures(run, STEP)) == run_charts.MAX_CHARTS == 24
    assert list(run_charts.batch_figures(run, STEP))[-1] == "b23"
    assert run_charts.chart_overflow(run) == ("truncated: 7 more metrics are not charted (the first 24 per level "
                                              "are); Compare and its CSV export reach every one")
    assert run_charts.chart_overflow(many_metrics_run(runs_root, 24, 24, name="exact")) is None
    assert run_charts.chart_overflow(many_metrics_run(runs_root, 10, 40, name="batch only")).startswith(
        "truncated: 16 more metrics")
    assert run_charts.chart_overflow(many_metrics_run(runs_root, 25, 3, name="epoch only")).startswith(
        "truncated: 1 more metrics")


def test_the_page_charts_the_batch_loss_whatever_the_number_of_batch_metrics(runs_root):
    columns = {f"a{i:02d}": [1.0] for i in range(30)}
    run = write_run(runs_root, batches=batch_records(1, loss=[1.0], **columns))
    assert list(run_charts.batch_figures(run, STEP)) == ["loss", *(f"a{i:02d}" for i in range(23))]


def test_batches_of_an_unfinished_first_epoch_sit_at_their_share_of_the_recorded_epoch_length(runs_root):
    # 2 of 4 batches done: the epoch axis reads 0.25 and 0.5, not 0.5 and 1 (the end of the epoch).
    run = write_run(runs_root, steps_per_epoch=4, batches=batch_records(2, per_epoch=4, loss=[2.0, 1.0],
                                                                        lr=[0.1, 0.1]))
    figures = run_charts.batch_figures(run, EPOCH)
    assert xy(figures["loss"].data[0])[0] == [0.25, 0.5] and xy(figures["learning rate"].data[0])[0] == [0.25, 0.5]


def lr_change_names(figure) -> list[str]:
    return [t.name for t in figure.data if t.name == "LR changes" and t.mode == "lines"]


def test_every_chart_draws_the_runs_events(runs_root):
    event = [(fmt.EVENT_LR_CHANGE, {"step": 2, "epoch": 1, "old": 0.1, "new": 0.01})]
    run = lr_run(runs_root, events=event, epochs=epoch_records(2, loss=[2.0, 1.0]))
    for figure in (*run_charts.epoch_figures(run, STEP).values(), *run_charts.batch_figures(run, STEP).values()):
        assert lr_change_names(figure) == ["LR changes"], figure.layout.title.text
    epoch_lr = write_run(runs_root, name="epoch lr", events=event, epochs=epoch_records(2, loss=[2.0, 1.0],
                                                                                         lr=[0.1, 0.01]))
    assert lr_change_names(run_charts.epoch_lr_figure(epoch_lr, STEP)) == ["LR changes"]


def test_batch_and_learning_rate_charts_on_the_time_axis_draw_datetimes(runs_root):
    run = lr_run(runs_root)
    when = list(pd.to_datetime([1000.0, 1001.0, 1002.0, 1003.0], unit="s"))
    for name in ("loss", "learning rate"):
        assert list(pd.to_datetime(run_charts.batch_figures(run, TIME)[name].data[0].x)) == when
    epoch_lr = write_run(runs_root, name="epoch lr", epochs=epoch_records(2, loss=[2.0, 1.0], lr=[0.1, 0.01]))
    assert list(pd.to_datetime(run_charts.epoch_lr_figure(epoch_lr, TIME).data[0].x)) == list(
        pd.to_datetime([1000.0, 1010.0], unit="s"))
    memory = write_run(runs_root, name="memory", system=[{"time": 1000.0, "rss_bytes": 2.0**20}])
    assert list(pd.to_datetime(run_charts.system_figures(memory)["memory"].data[0].x)) == [
        pd.Timestamp("1970-01-01 00:16:40")]
