"""The Compare page's charts (app/compare_charts.py) over runs written to disk with RunWriter: one colour per run on
every chart, the metrics in order, groups of runs as mean and min-max band, and final values against an hparam."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from kerascope import RunStore, RunWriter
from kerascope.app import charts, compare_charts
from kerascope.app.compare_charts import Grid

EPOCHS = Grid("epoch", "epoch", 0.0)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f"]


def write_run(root, name, *, epochs=(), batches=(), hparams=None, tags=None, group=None, steps_per_epoch=None):
    meta = {"hparams": hparams, "tags": tags, "group": group}
    writer = RunWriter(root, name=name, meta={k: v for k, v in meta.items() if v is not None})
    for stream, records in (("epoch", epochs), ("batch", batches)):
        for record in records:
            writer.log(stream, record)
    if steps_per_epoch:
        writer.update_status(steps_per_epoch=steps_per_epoch)
    writer.close("finished")
    return RunStore(root).run(os.path.basename(writer.run_dir))


def epochs(**columns) -> list[dict]:
    count = len(next(iter(columns.values())))
    return [{"epoch": e, "step": 10 * (e + 1), "time": float(e), **{k: v[e] for k, v in columns.items()}}
            for e in range(count)]


def batches(**columns) -> list[dict]:
    count = len(next(iter(columns.values())))
    return [{"step": s + 1, "epoch": s // 2, "batch": s % 2, "time": float(s), **{k: v[s] for k, v in columns.items()}}
            for s in range(count)]


def simple_runs(root, count: int) -> list:
    return [write_run(root, f"run {i}", epochs=epochs(loss=[1.0 + i, 0.5 + i])) for i in range(count)]


def test_each_run_keeps_its_colour_on_every_chart_in_pick_order(runs_root):
    runs = simple_runs(runs_root, 12)
    colours = compare_charts.run_colors(runs)
    assert [colours[run.id] for run in runs] == PALETTE + PALETTE[:2]


def test_grid_metrics_put_val_loss_then_loss_then_val_twins_first(runs_root):
    first = write_run(runs_root, "a", epochs=epochs(loss=[1.0], accuracy=[0.5], val_accuracy=[0.4], lr=[0.1]))
    second = write_run(runs_root, "b", epochs=epochs(val_loss=[1.0], auc=[0.5], val_zz=[0.1], loss=[1.0]))
    assert compare_charts.grid_metrics([first, second], "epoch") == ["val_loss", "loss", "val_accuracy", "val_zz",
                                                                     "accuracy", "auc"]


def test_batch_grid_metrics_are_the_per_batch_values_and_the_learning_rate(runs_root):
    run = write_run(runs_root, "a", batches=batches(loss=[1.0], batch_loss=[1.0], batch_val_x=[1.0],
                                                    batch_acc=[0.5], lr=[0.1]))
    assert compare_charts.grid_metrics([run], "batch") == ["loss", "val_x", "acc", "lr"]
    no_lr = write_run(runs_root, "b", batches=batches(acc=[0.5], batch_acc=[0.5]))
    assert compare_charts.grid_metrics([no_lr], "batch") == ["acc"]


def test_run_series_on_the_epoch_level_by_epoch_or_step(runs_root):
    run = write_run(runs_root, "a", epochs=epochs(loss=[2.0, 1.0]))
    series = compare_charts.run_series(run, "loss", EPOCHS, "#123456")
    assert (series.name, list(series.x), list(series.y), series.color) == (f"a ({run.id[-4:]})", [1.0, 2.0],
                                                                           [2.0, 1.0], "#123456")
    assert list(compare_charts.run_series(run, "loss", Grid("epoch", "step", 0.0)).x) == [10.0, 20.0]
    assert compare_charts.run_series(run, "accuracy", EPOCHS) is None


def test_run_series_on_the_batch_level_reads_each_batchs_value_and_the_lr(runs_root):
    run = write_run(runs_root, "a", steps_per_epoch=2, batches=batches(loss=[9.0, 9.0, 9.0], batch_loss=[3.0, 2.0, 1.0],
                                                                       lr=[0.1, 0.1, 0.05]))
    series = compare_charts.run_series(run, "loss", Grid("batch", "step", 0.0))
    assert (list(series.x), list(series.y), series.key) == ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0],
                                                            f"{run.path}/batch_loss")
    assert list(compare_charts.run_series(run, "loss", Grid("batch", "epoch", 0.0)).x) == [0.5, 1.0, 1.5]
    lr = compare_charts.run_series(run, "lr", Grid("batch", "step", 0.0), "#000000")
    assert (list(lr.y), lr.key, lr.color) == ([0.1, 0.1, 0.05], f"{run.path}/lr", "#000000")
    assert compare_charts.run_series(run, "acc", Grid("batch", "step", 0.0)) is None
    no_batches = write_run(runs_root, "b", epochs=epochs(loss=[1.0]))
    assert compare_charts.run_series(no_batches, "loss", Grid("batch", "step", 0.0)) is None


def test_the_grid_draws_every_run_in_its_colour_with_markers_on_epoch_charts(runs_root):
    first = write_run(runs_root, "a", epochs=epochs(loss=[2.0, 1.0], val_loss=[2.5, 1.5]))
    second = write_run(runs_root, "b", epochs=epochs(loss=[3.0, 2.0, 1.5]))
    figures = compare_charts.grid_figures([first, second], EPOCHS)
    assert list(figures) == ["val_loss", "loss"]
    loss = figures["loss"]
    assert [(t.name, t.line.color, t.mode, list(t.x), list(t.y)) for t in loss.data] == [
        (f"a ({first.id[-4:]})", PALETTE[0], "lines+markers", [1.0, 2.0], [2.0, 1.0]),
        (f"b ({second.id[-4:]})", PALETTE[1], "lines+markers", [1.0, 2.0, 3.0], [3.0, 2.0, 1.5])]
    assert [t.name for t in figures["val_loss"].data] == [f"a ({first.id[-4:]})"]
    assert loss.layout.height == 300 and loss.layout.title.text == "loss" and loss.layout.showlegend is None
    assert [b.label for b in loss.layout.updatemenus[0].buttons] == ["linear", "log", "cut top 1 %"]
    assert loss.layout.yaxis.type == "linear"


def test_batch_grids_are_smoothed_except_the_learning_rate_which_is_on_a_log_axis(runs_root):
    run = write_run(runs_root, "a", batches=batches(batch_loss=[3.0, 1.0, 2.0, 0.5], lr=[0.1, 0.1, 0.01, 0.01]))
    figures = compare_charts.grid_figures([run], Grid("batch", "step", 0.6))
    assert list(figures) == ["loss", "lr"]
    assert [t.name.endswith("(raw)") for t in figures["loss"].data] == [True, False]
    assert figures["loss"].data[1].mode == "lines"  # batch level: no markers
    lr = figures["lr"]
    assert len(lr.data) == 1 and list(lr.data[0].y) == [0.1, 0.1, 0.01, 0.01] and lr.layout.yaxis.type == "log"
    assert [b.label for b in lr.layout.updatemenus[0].buttons] == ["linear", "log"]


def test_eleven_runs_drop_markers_and_more_than_twenty_drop_the_legend(runs_root):
    runs = simple_runs(runs_root, 21)
    ten = compare_charts.grid_figures(runs[:10], EPOCHS)["loss"]
    assert ten.data[0].mode == "lines+markers"
    eleven = compare_charts.grid_figures(runs[:11], EPOCHS)["loss"]
    assert eleven.data[0].mode == "lines"
    twenty = compare_charts.grid_figures(runs[:20], EPOCHS)["loss"]
    assert twenty.layout.showlegend is None and twenty.layout.hovermode == "x unified"
    crowded = compare_charts.grid_figures(runs, EPOCHS)["loss"]
    assert crowded.layout.showlegend is False and crowded.layout.hovermode == "closest"
    assert [t.line.color for t in crowded.data][10:12] == PALETTE[:2]


def test_at_most_a_hundred_runs_are_drawn_sharing_the_points():
    assert compare_charts.drawn(list(range(150))) == list(range(100))
    assert [compare_charts.points_per_run(n) for n in (0, 1, 20, 21, 100, 400, 401, 1000)] == [
        2000, 2000, 2000, 1904, 400, 100, 100, 100]


def test_a_run_longer_than_its_share_of_points_is_downsampled(runs_root):
    many = write_run(runs_root, "long", batches=batches(batch_loss=list(np.linspace(1.0, 0.0, 2500))))
    drawn = compare_charts.grid_figures([many], Grid("batch", "step", 0.0))["loss"].data[0]
    assert len(drawn.x) == 2000 and drawn.x[0] == 1.0 and drawn.x[-1] == 2500.0


@pytest.mark.parametrize("group_by, expected", [
    (compare_charts.NAME_PREFIX, ["seed", "lr", "seed", "plain", "7"]),
    (compare_charts.FIRST_TAG, ["mlp", "(no tag)", "wide", "(no tag)", "(no tag)"]),
    (compare_charts.SEARCH, ["sweep", "(no group)", "sweep", "(no group)", "(no group)"]),
    (compare_charts.HPARAM + "lr", ["lr=0.01", "lr=0.001", "lr=0.01", "lr not set", "lr=[1,2]"]),
])
def test_runs_group_by_name_prefix_first_tag_search_or_hparam(runs_root, group_by, expected):
    runs = [write_run(runs_root, "seed 3", hparams={"lr": 0.01}, tags=["mlp", "x"], group="sweep"),
            write_run(runs_root, "lr=2", hparams={"lr": 0.001}, tags=[]),
            write_run(runs_root, "seed_12", hparams={"lr": 0.01}, tags=["wide"], group="sweep"),
            write_run(runs_root, "plain"),
            write_run(runs_root, "7", hparams={"lr": [1, 2]})]
    assert [compare_charts.group_of(run, group_by) for run in runs] == expected


def test_without_groups_each_run_is_its_own_group(runs_root):
    run = write_run(runs_root, "a")
    assert compare_charts.group_of(run, compare_charts.NO_GROUPS) == run.id


def test_group_options_offer_a_search_only_when_some_run_has_one_and_every_hparam(runs_root):
    plain = write_run(runs_root, "a", hparams={"units": 3, "lr": 0.1})
    assert compare_charts.group_options([plain]) == ["no groups", "name prefix", "first tag", "hparam: lr",
                                                     "hparam: units"]
    searched = write_run(runs_root, "b", hparams={"dropout": 0.5}, group="sweep")
    assert compare_charts.group_options([plain, searched]) == [
        "no groups", "search (run group)", "name prefix", "first tag", "hparam: dropout", "hparam: lr", "hparam: units"]


def test_the_group_band_is_each_runs_mean_min_and_max_inside_its_own_range():
    series = [charts.Series("a", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])),
              charts.Series("b", np.array([2.0, 1.0]), np.array([6.0, 4.0])),  # unsorted x
              charts.Series("c", np.array([1.0, 4.0, 5.0]), np.array([np.nan, 8.0, 10.0]))]
    x, mean, low, high = compare_charts.group_band(series)
    assert list(x) == [1.0, 2.0, 3.0, 4.0, 5.0]
    # x=1: a 1, b 4 (c starts at 4); x=2: a 2, b 6; x=3: a 3 alone; x=4, 5: c alone.
    assert list(mean) == [2.5, 4.0, 3.0, 8.0, 10.0]
    assert list(low) == [1.0, 2.0, 3.0, 8.0, 10.0] and list(high) == [4.0, 6.0, 3.0, 8.0, 10.0]


def test_a_run_without_finite_values_leaves_the_band_to_the_others():
    series = [charts.Series("a", np.array([1.0, 2.0]), np.array([1.0, 3.0])),
              charts.Series("b", np.array([1.0, 2.0]), np.array([np.nan, np.nan]))]
    x, mean, low, high = compare_charts.group_band(series)
    assert (list(x), list(mean), list(low), list(high)) == ([1.0, 2.0], [1.0, 3.0], [1.0, 3.0], [1.0, 3.0])


def test_group_charts_draw_a_band_and_a_mean_line_per_group(runs_root):
    runs = [write_run(runs_root, "seed 1", epochs=epochs(loss=[4.0, 2.0], lr=[0.1, 0.1])),
            write_run(runs_root, "seed 2", epochs=epochs(loss=[2.0, 1.0])),
            write_run(runs_root, "other", epochs=epochs(loss=[5.0, 3.0], acc=[0.5, 0.6]))]
    figures = compare_charts.group_figures(runs, EPOCHS, compare_charts.NAME_PREFIX)
    assert list(figures) == ["loss", "acc"]
    high, low, mean, other_high, other_low, other_mean = figures["loss"].data
    assert (list(high.x), list(high.y), list(low.y), list(mean.y)) == ([1.0, 2.0], [4.0, 2.0], [2.0, 1.0],
                                                                       [3.0, 1.5])
    assert (high.line.width, high.showlegend, high.hoverinfo, high.fill) == (0, False, "skip", None)
    assert (low.fill, low.fillcolor, low.showlegend, low.hoverinfo) == ("tonexty", "rgba(31,119,180,0.18)", False,
                                                                        "skip")
    assert (mean.name, mean.line.color, mean.line.width, mean.mode) == ("seed (2 runs)", PALETTE[0], 2, "lines")
    assert high.legendgroup == low.legendgroup == mean.legendgroup == "seed (2 runs)"
    assert list(mean.customdata) == ["3", "1.5"] and mean.hovertemplate == "%{customdata}"
    assert (other_mean.name, other_mean.line.color, other_low.fillcolor) == ("other (1 run)", PALETTE[1],
                                                                             "rgba(255,127,14,0.18)")
    assert [t.name for t in figures["acc"].data if t.showlegend is not False] == ["other (1 run)"]
    loss = figures["loss"].layout
    assert loss.title.text == "loss · mean and min-max per group" and loss.height == 300
    assert loss.yaxis.type == "linear" and loss.hovermode == "x unified" and loss.legend.y == -0.18


def test_the_group_chart_of_the_learning_rate_has_a_log_axis(runs_root):
    run = write_run(runs_root, "<a> 1", batches=batches(lr=[0.1, 0.01]))
    figures = compare_charts.group_figures([run], Grid("batch", "step", 0.0), compare_charts.NAME_PREFIX)
    assert figures["lr"].layout.yaxis.type == "log" and figures["lr"].data[2].name == "&lt;a&gt; (1 run)"


def test_a_metric_no_group_has_draws_no_chart(runs_root):
    runs = [write_run(runs_root, "a", batches=batches(batch_loss=[1.0])),
            write_run(runs_root, "b", batches=batches(lr=[0.1]))]
    figures = compare_charts.group_figures(runs, Grid("batch", "step", 0.0), compare_charts.NO_GROUPS)
    assert [t.name for t in figures["loss"].data if t.name] == [f"{runs[0].id} (1 run)"]
    assert [t.line.color for t in figures["lr"].data if t.name] == [PALETTE[1]]  # the second group's colour
    eleven = [write_run(runs_root, f"r{i}", batches=batches(lr=[0.1])) for i in range(11)]
    colours = [t.line.color for t in compare_charts.group_figures(eleven, Grid("batch", "step", 0.0),
                                                                  compare_charts.NO_GROUPS)["lr"].data if t.name]
    assert colours == PALETTE + PALETTE[:1]


def test_the_scatter_draws_one_labelled_point_per_run():
    frame = pd.DataFrame({"units": [32, 64, 128], "val_loss": [0.5, "n/a", 0.25]}, index=["a <1>", "b", "c"])
    figure = compare_charts.scatter_figure(frame, "units", "val_loss", PALETTE, log_x=True)
    points = figure.data[0]
    assert list(points.x) == [32, 64, 128] and list(points.y)[::2] == [0.5, 0.25] and np.isnan(points.y[1])
    assert list(points.text) == ["a &lt;1&gt;", "b", "c"] and points.mode == "markers+text"
    assert list(points.marker.color) == PALETTE[:3] and points.marker.size == 11
    assert list(points.hovertext) == ["a &lt;1&gt;<br>units: 32<br>val_loss: 0.5", "b<br>units: 64<br>val_loss: n/a",
                                      "c<br>units: 128<br>val_loss: 0.25"]
    assert points.hoverinfo == "text" and points.textposition == "top center"
    layout = figure.layout
    assert layout.title.text == "val_loss against units" and layout.showlegend is False and layout.height == 340
    assert (layout.xaxis.title.text, layout.xaxis.type, layout.yaxis.title.text) == ("units", "log", "val_loss")
    assert compare_charts.scatter_figure(frame, "units", "val_loss", PALETTE).layout.xaxis.type == "-"


def test_batch_series_are_named_by_run_and_sit_at_their_share_of_the_recorded_epoch_length(runs_root):
    run = write_run(runs_root, "live", steps_per_epoch=4, batches=batches(batch_loss=[2.0, 1.0]))
    series = compare_charts.run_series(run, "loss", Grid("batch", "epoch", 0.0))
    assert series.name == f"live ({run.id[-4:]})" and list(series.x) == [0.25, 0.5]


def test_more_than_twenty_runs_share_the_charts_point_budget(runs_root):
    runs = [write_run(runs_root, f"r{i}", batches=batches(batch_loss=list(np.linspace(1.0, 0.0, 2000))))
            for i in range(21)]
    figure = compare_charts.grid_figures(runs, Grid("batch", "step", 0.0))["loss"]
    assert [len(trace.x) for trace in figure.data] == [40_000 // 21] * 21


def test_the_group_band_is_drawn_as_lines_without_width_or_markers(runs_root):
    runs = [write_run(runs_root, f"seed {i}", epochs=epochs(loss=[2.0 + i, 1.0 + i, 0.5 + i])) for i in range(2)]
    high, low, mean = compare_charts.group_figures(runs, EPOCHS, compare_charts.NAME_PREFIX)["loss"].data
    assert [(t.mode, list(t.x)) for t in (high, low, mean)] == [("lines", [1.0, 2.0, 3.0])] * 3
    assert (high.line.width, low.line.width) == (0, 0)
    layout = compare_charts.group_figures(runs, EPOCHS, compare_charts.NAME_PREFIX)["loss"].layout.to_plotly_json()
    layout.pop("template")
    assert layout == {"title": {"text": "loss · mean and min-max per group", "font": {"size": 15}, "x": 0.0,
                                "xanchor": "left"},
                      "height": 300, "margin": {"l": 10, "r": 10, "t": 44, "b": 10}, "hovermode": "x unified",
                      "legend": {"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0.0},
                      "yaxis": {"type": "linear", "automargin": True}}


def test_the_scatter_layout():
    frame = pd.DataFrame({"units": [32, 64], "val_loss": [0.5, 0.25]}, index=["a", "b"])
    layout = compare_charts.scatter_figure(frame, "units", "val_loss", PALETTE).layout.to_plotly_json()
    layout.pop("template")
    assert layout == {"title": {"text": "val_loss against units", "font": {"size": 15}, "x": 0.0}, "height": 340,
                      "margin": {"l": 10, "r": 10, "t": 44, "b": 10}, "showlegend": False,
                      "xaxis": {"title": {"text": "units"}, "type": "-", "automargin": True},
                      "yaxis": {"title": {"text": "val_loss"}, "automargin": True}}
