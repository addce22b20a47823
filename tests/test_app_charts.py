"""The dashboard's data helpers on their own: downsampling, smoothing, escaping, alerts and CSV export."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest
from run_factory import make_run

from kerascope import RunStore, RunWriter
from kerascope.app import alerts, charts, smoothing, tables
from kerascope.monitor import format as fmt


def test_downsample_bounds_points_and_keeps_extremes():
    x = np.arange(1_000_000, dtype=float)
    y = np.sin(x / 5000)
    y[123_457] = 50.0  # a spike a naive stride would miss
    y[876_543] = -50.0
    xs, ys = charts.downsample(x, y)
    assert len(xs) <= charts.MAX_POINTS
    assert ys.max() == 50.0 and ys.min() == -50.0
    assert xs[0] == 0 and xs[-1] == 999_999


def test_downsample_accepts_unsorted_steps():
    x = np.concatenate([np.arange(3000), np.arange(1000, 4000)]).astype(float)  # a resumed run re-logs steps
    xs, _ = charts.downsample(x, np.ones_like(x))
    assert np.all(np.diff(xs) >= 0)


def test_ema_matches_tensorboard_debiased_smoothing():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    weight, last, expected = 0.9, 0.0, []
    for i, value in enumerate(y):
        last = last * weight + (1 - weight) * value
        expected.append(last / (1 - weight ** (i + 1)))
    np.testing.assert_allclose(smoothing.ema(y, weight), expected, rtol=1e-9)
    assert smoothing.ema(y, 0.0) is y


def test_cached_smoothing_extends_an_appended_series_and_restarts_a_rewritten_one():
    rng = np.random.default_rng(1)
    y = rng.normal(size=20_000)
    cache = smoothing.EmaCache()
    for end in (5, 3000, 3001, 20_000):  # across the debiased head (about 370 points for 0.9) and past it
        np.testing.assert_allclose(cache.smooth("run/loss", y[:end], 0.9), smoothing.ema(y[:end], 0.9),
                                   rtol=1e-12, atol=1e-14)  # within 1e-14 where it crosses zero
    rewritten = y[:100] + 1.0
    np.testing.assert_allclose(cache.smooth("run/loss", rewritten, 0.9), smoothing.ema(rewritten, 0.9))


def test_user_text_is_escaped_for_plotly():
    figure = charts.metric_figure([charts.Series("<b>x</b>", np.arange(3.0), np.ones(3))], title="<i>t</i>")
    assert figure.data[0].name == "&lt;b&gt;x&lt;/b&gt;"
    assert figure.layout.title.text == "&lt;i&gt;t&lt;/i&gt;"


def test_nan_values_are_dropped_not_drawn():
    y = np.array([1.0, np.nan, 3.0, np.inf])
    figure = charts.metric_figure([charts.Series("loss", np.arange(4.0), y)], title="loss")
    assert list(figure.data[0].y) == [1.0, 3.0]


def test_alerts_for_divergence_and_exploding_activations(runs_root):
    run = RunStore(runs_root).run(os.path.basename(make_run(runs_root, "fine")))
    assert alerts.run_alerts(run) == []
    assert [a.title for a in alerts._divergence(pd.DataFrame({"loss": [1.0, 0.5, 0.4, 1.5]}))] == ["loss is diverging"]
    activations = pd.DataFrame({"step": [1, 2], "layer": ["d", "d"], "std": [0.5, 5000.0], "zero_frac": [0.1, 0.1]})
    assert [a.title for a in alerts._activation_alerts(activations)] == ["Exploding activations"]


def test_alert_texts_read_numbers_as_number_text_writes_them(runs_root):
    """"5e-04", not Python's "0.0005": the banners and "What went wrong" write numbers as the tables do."""
    (diverging,) = alerts._divergence(pd.DataFrame({"loss": [0.5, 4e-04, 9e-04, 0.002]}))
    assert diverging.detail == "loss is 0.002, 5x its best value 4e-04"
    activations = pd.DataFrame({"step": [1, 2], "layer": ["d", "d"], "std": [1e-05, 0.0123456], "zero_frac": [0, 0]})
    (exploding,) = alerts._activation_alerts(activations)
    assert "d (std 0.01235)" in exploding.detail
    writer = RunWriter(runs_root, name="spike")
    for epoch, loss in enumerate([0.5, 4e-04]):
        writer.log("epoch", {"epoch": epoch, "step": epoch + 1, "time": float(epoch), "loss": loss})
    writer.event(fmt.EVENT_DIVERGENCE, "the loss spiked", step=3, epoch=2,
                 data={"metric": "loss", "value": 0.0123456, "rule": fmt.DIVERGENCE_SPIKE, "lr": 0.0005,
                       "best": 0.0004, "layer": "dense",
                       "evidence": {"rule": "largest jump", "source": "gradients", "value": 0.0123456,
                                    "baseline": 0.0005, "ratio": 24.6912}})
    writer.close(fmt.DIVERGED)
    rows = dict(alerts.what_went_wrong(RunStore(runs_root).run(os.path.basename(writer.run_dir))))
    assert rows["What"] == "loss rose to 0.01235, 30.87x its best 4e-04"
    assert rows["Learning rate"] == "5e-04"
    assert rows["Evidence"] == "its gradient norm jumped to 0.01235, 24.69x its recent median 5e-04 (the largest jump)"


def test_a_nan_divergence_reads_nan_and_inf_spelled_out(runs_root):
    writer = RunWriter(runs_root, name="inf")
    writer.event(fmt.EVENT_DIVERGENCE, "the loss became inf", step=3, epoch=0,
                 data={"metric": "loss", "value": float("inf"), "rule": fmt.DIVERGENCE_NONFINITE})
    writer.close(fmt.DIVERGED)
    rows = dict(alerts.what_went_wrong(RunStore(runs_root).run(os.path.basename(writer.run_dir))))
    assert rows["What"] == "loss became Inf"


def test_a_histogram_hover_reads_values_and_shares_as_number_text_writes_them():
    frame = pd.DataFrame({"step": [1, 2], "histogram": [{"edges": [-2e-04, 0.0, 2e-04], "counts": [1, 3]},
                                                        {"edges": [-2e-04, 0.0, 2e-04], "counts": [2, 2]}]})
    heatmap = charts.histogram_over_time(frame, title="dense", bins=2).data[0]
    assert heatmap.hovertemplate == "step %{x}<br>value %{text}<br>share %{customdata}<extra></extra>"
    assert [list(row) for row in heatmap.text] == [["-1e-04", "-1e-04"], ["1e-04", "1e-04"]]
    assert [list(row) for row in heatmap.customdata] == [["0.25", "0.5"], ["0.75", "0.5"]]


def test_csv_export_holds_every_recorded_value(runs_root):
    first = make_run(runs_root, "a", epochs=3, steps_per_epoch=7)
    second = make_run(runs_root, "b", epochs=2, steps_per_epoch=7)
    runs = [RunStore(runs_root).run(os.path.basename(path)) for path in (first, second)]
    frame = pd.read_csv(io.BytesIO(tables.series_csv(runs, "batch_loss", "batch")))
    assert list(frame.columns) == ["run_id", "run_name", "metric", "step", "epoch", "batch", "time", "value"]
    assert len(frame) == 21 + 14
    assert frame.groupby("run_name")["step"].max().to_dict() == {"a": 21, "b": 14}


def overlay_traces(figure) -> tuple[dict[str, object], dict[str, object]]:
    """The event kinds' traces of a metric figure: (lines and ticks by legend name, label traces by legend name)."""
    overlay = [trace for trace in figure.data if trace.yaxis == "y2"]
    return ({trace.name: trace for trace in overlay if trace.mode != "text"},
            {trace.name: trace for trace in overlay if trace.mode == "text"})


def test_events_are_one_toggleable_trace_per_kind_with_labels_that_do_not_overlap():
    events = pd.DataFrame({"step": [10, 10, 11, 20, 25], "epoch": [0, 0, 0, 1, 1],
                           "kind": ["phase", "lr_change", "early_stop", "checkpoint", "nan"],
                           "message": ["p", "lr", "stop", "saved best.keras (val_loss=0.3)", "nan"],
                           "data": [{"phase": 2, "trainable_params": 1221}, {"new": 8.1e-05}, {}, {}, {}]})
    figure = charts.metric_figure([charts.Series("loss", np.arange(100.0), np.ones(100))], title="loss",
                                  events=events)
    lines, labels = overlay_traces(figure)
    assert set(lines) == {"phases", "LR changes", "early stop", "NaN / Inf", "checkpoints"}
    # A kind's labels share its legend group: a click on the kind's legend entry hides them with the lines.
    assert all(labels[name].legendgroup == lines[name].legendgroup == name and labels[name].showlegend is False
               for name in labels)
    assert list(labels["phases"].text) == ["phase 2 · 1,221 trainable"]
    # Lines at steps 10, 10, 11 and 25 are close: the one-off events take the top rows, the LR change the last one.
    tops = {text: y for trace in labels.values() for text, y in zip(trace.text, trace.y, strict=True)}
    assert tops == pytest.approx({"early stop": 1.0, "NaN": 0.91, "phase 2 · 1,221 trainable": 0.82})
    assert "LR changes" not in labels  # no row left: its line's hover still names it
    assert lines["checkpoints"].mode == "markers" and list(lines["checkpoints"].x) == [20.0]
    assert lines["checkpoints"].hovertext == ("saved best.keras (val_loss=0.3)",)
    assert figure.layout.legend.y < 0  # below the plot: the toolbar and the scale buttons never cover it


def test_event_labels_are_kept_apart_by_their_text_width():
    # Run 06's loss chart (x in steps, data from 45 to 1,395): a phase label 26 characters long at step 0 reaches
    # past the LR change at 495 on a half-page chart, so the two take different rows.
    events = pd.DataFrame({"step": [0, 495, 1170, 1305, 1395, 1395], "epoch": [0, 11, 26, 29, 30, 30],
                           "kind": ["phase", "lr_change", "lr_change", "lr_change", "lr_change", "early_stop"],
                           "message": [""] * 6,
                           "data": [{"phase": 1, "trainable_params": 13706}, {"new": 9e-4}, {"new": 2.7e-4},
                                    {"new": 8.1e-05}, {"new": 2.43e-05}, {}]})
    x = np.arange(45.0, 1396.0, 45.0)
    figure = charts.metric_figure([charts.Series("loss", x, np.ones_like(x))], title="loss", events=events)
    _, labels = overlay_traces(figure)
    placed = {text: (x, y, side) for trace in labels.values()
              for text, x, y, side in zip(trace.text, trace.x, trace.y, trace.textposition, strict=True)}
    assert placed == {"phase 1 · 13,706 trainable": (0.0, 1.0, "bottom right"),
                      "early stop": (1395.0, 1.0, "bottom left"),  # at the right edge: reads leftwards
                      "LR 9e-04": (495.0, pytest.approx(0.91), "bottom right"),
                      "LR 2.7e-04": (1170.0, pytest.approx(0.91), "bottom left"),
                      "LR 8.1e-05": (1305.0, pytest.approx(0.82), "bottom left")}
    # On every row, labels are apart by their width at 6 px a character in a 340 px plot (x from 0 to 1,395).
    px = 340 / 1395
    for row in (1.0, 0.91, 0.82):
        extents = sorted((x - len(text) * 6 / px, x) if side == "bottom left" else (x, x + len(text) * 6 / px)
                         for text, (x, y, side) in placed.items() if y == pytest.approx(row))
        assert all(left[1] <= right[0] for left, right in zip(extents, extents[1:], strict=False)), extents
    # A label reads leftwards only where it would pass the chart's right edge: by its width, not its position alone.
    late = pd.DataFrame({"step": [1000, 1100], "epoch": [22, 24], "kind": ["phase", "lr_change"], "message": ["", ""],
                         "data": [{"phase": 2, "trainable_params": 1221}, {"new": 9e-4}]})
    _, labels = overlay_traces(charts.metric_figure([charts.Series("loss", x, np.ones_like(x))], title="loss",
                                                    events=late))
    assert (labels["phases"].textposition, labels["LR changes"].textposition) == (("bottom left",),
                                                                                    ("bottom right",))


def test_event_labels_on_the_time_axis_are_kept_apart_too():
    start = 1.7e9
    events = pd.DataFrame({"step": [0, 10], "epoch": [0, 0], "time": [start, start + 5], "kind": ["phase", "lr_change"],
                           "message": ["", ""], "data": [{"phase": 1, "trainable_params": 13706}, {"new": 9e-4}]})
    x = start + np.arange(100.0)
    figure = charts.metric_figure([charts.Series("loss", x, np.ones_like(x))], title="loss", x_axis="time",
                                  events=events)
    _, labels = overlay_traces(figure)
    assert (labels["phases"].y, labels["LR changes"].y) == ((1.0,), (pytest.approx(0.91),))


def test_a_resumed_run_draws_where_the_restart_took_over():
    events = pd.DataFrame({"step": [12], "epoch": [3], "kind": ["resumed"],
                           "message": ["resumed at epoch 3 (step 12) after a restart"], "data": [{}]})
    figure = charts.metric_figure([charts.Series("loss", np.arange(24.0), np.ones(24))], title="loss", events=events)
    lines, labels = overlay_traces(figure)
    assert set(lines) == set(labels) == {"resumed"} and 12.0 in list(lines["resumed"].x)
    assert list(labels["resumed"].text) == ["resumed"] and list(labels["resumed"].x) == [12.0]


def test_numbers_read_with_four_significant_digits_and_spelled_out_non_finite_values():
    from kerascope.app.formatting import number_text
    assert [number_text(v) for v in (8.1e-05, 0.005694743, 0.31234, 12345.0, float("nan"), float("-inf"))] == [
        "8.1e-05", "0.005695", "0.3123", "1.234e+04", "NaN", "-Inf"]


def test_number_texts_of_an_array_read_as_number_text_writes_each():
    from kerascope.app.formatting import number_text, numbers_text
    values = np.array([8.1e-05, 8.1e-05, 0.0001234, -0.000987, 9.99995e-05, 9.99995e-04, 1e-3, 0.005694743, 0.5, 0.0,
                       -0.0, 12345.6, 1e20, 5e-324, np.nan, np.inf, -np.inf])
    assert numbers_text(values) == [number_text(value) for value in values.tolist()]
    assert numbers_text(values[:4]) == ["8.1e-05", "8.1e-05", "1.234e-04", "-9.87e-04"]


def test_chart_hovers_read_values_as_the_tables_do():
    x = np.arange(1.0, 5.0)
    lr = np.array([0.003, 9e-4, 2.7e-4, 8.1e-05])
    figure = charts.metric_figure([charts.Series("lr", x, lr)], title="learning rate", log_y=True)
    assert figure.data[0].hovertemplate == "%{customdata}"
    assert list(figure.data[0].customdata) == ["0.003", "9e-04", "2.7e-04", "8.1e-05"]
    smoothed = charts.metric_figure([charts.Series("loss", x, np.array([1.0, 0.5, 0.25, 0.125]))], title="loss",
                                    smoothing=0.5)
    drawn = next(trace for trace in smoothed.data if trace.name == "loss")
    assert list(drawn.customdata) == [f"{value:.4g}" for value in drawn.y]  # the smoothed values, as drawn
    frame = pd.DataFrame({"row": ["dense", "dense", "conv", "conv"], "step": [1, 2, 1, 2],
                          "std": [8.1e-05, 0.5694743, 12345.6, np.inf]})
    heatmap = charts.heatmap_figure(frame, row="row", value="std", title="std")
    assert [list(row) for row in heatmap.data[0].text] == [["8.1e-05", "0.5695"], ["1.235e+04", "Inf"]]
    assert "std %{text}" in heatmap.data[0].hovertemplate
    norms = pd.DataFrame({"step": [1, 1], "row": ["dense", "conv"], "norm": [8.1e-05, 0.0]})
    gradients = charts.gradient_heatmap(norms, title="norms")
    assert [list(row) for row in gradients.data[0].text] == [["8.1e-05"], ["0"]]  # the norm, not its log colour
    assert "gradient norm %{text}" in gradients.data[0].hovertemplate


def test_the_events_table_lists_the_newest_events_first_as_inert_text():
    events = pd.DataFrame({
        "time": [1_700_000_000.0, 1_700_000_060.0, 1_700_000_120.0, np.nan],
        "step": [1.0, 10.0, 1234.0, np.nan],
        "epoch": [0.0, 0.0, 2.0, np.nan],
        "kind": ["phase", "warning", "early_stop", None],
        "message": ["phase 1", "a | pipe, *stars* and <b>html</b>", "stopped", None],
    })
    lines = tables.events_markdown(events, rows=3).splitlines()
    assert lines[:2] == ["| time (UTC) | step | epoch | kind | message |", "| --- | ---: | ---: | --- | --- |"]
    assert lines[2] == "|  |  |  |  |  |"  # a record without values: empty cells, not "nan"
    assert lines[3] == r"| 2023-11-14 22:15:20 | 1,234 | 3 | early\_stop | stopped |"
    assert lines[4] == (r"| 2023-11-14 22:14:20 | 10 | 1 | warning | a \| pipe, \*stars\* and \<b\>html\</b\> |")
    assert len(lines) == 5  # the newest 3 rows only
