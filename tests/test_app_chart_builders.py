"""The figure builders of app/charts.py on known inputs: the traces, values, axes, hover texts and event marks a user
sees on the Run, Compare and Activations pages."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kerascope.app import charts
from kerascope.monitor import format as fmt

BLUE, ORANGE, GREEN, RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"


def layout(figure) -> dict:
    found = figure.layout.to_plotly_json()
    found.pop("template", None)
    return found


def test_a_metric_chart_draws_each_series_in_its_colour_with_the_charts_own_layout():
    figure = charts.metric_figure([charts.Series("loss", np.arange(1.0, 4.0), np.array([3.0, 2.0, 1.0])),
                                   charts.Series("val_loss", np.arange(1.0, 4.0), np.array([4.0, 3.0, 2.5])),
                                   charts.Series("other", np.arange(2.0), np.ones(2), color="#123456")],
                                  title="loss <all>", height=300)
    assert [(t.name, t.mode, t.line.color, t.line.width, list(t.x), list(t.y)) for t in figure.data[:3]] == [
        ("loss", "lines", BLUE, 2, [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]),
        ("val_loss", "lines", ORANGE, 2, [1.0, 2.0, 3.0], [4.0, 3.0, 2.5]),
        ("other", "lines", "#123456", 2, [0.0, 1.0], [1.0, 1.0])]
    assert len(figure.data) == 3  # no events: no overlay trace
    assert layout(figure) == {
        "title": {"font": {"size": 15}, "text": "loss &lt;all&gt;", "x": 0.0, "xanchor": "left", "xref": "paper"},
        "margin": {"l": 10, "r": 10, "t": 44, "b": 10},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0.0},
        "yaxis": {"type": "linear", "automargin": True, "exponentformat": "e"},
        "yaxis2": {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
        "height": 300, "hovermode": "x unified",
        "updatemenus": [{"active": 0, "buttons": [
            {"args": [{"yaxis.type": "linear", "yaxis.autorange": True}], "label": "linear", "method": "relayout"},
            {"args": [{"yaxis.type": "log", "yaxis.autorange": True}], "label": "log", "method": "relayout"}],
            "direction": "right", "font": {"size": 10}, "pad": {"b": 4, "t": 0}, "showactive": True, "type": "buttons",
            "x": 1.0, "xanchor": "right", "y": 1.0, "yanchor": "bottom"}]}


def test_nine_series_cycle_through_eight_colours():
    series = [charts.Series(f"s{i}", np.arange(2.0), np.ones(2)) for i in range(9)]
    colours = [trace.line.color for trace in charts.metric_figure(series, title="t").data]
    assert colours == [BLUE, ORANGE, GREEN, RED, "#9467bd", "#8c564b", "#e377c2", "#17becf", BLUE]


def test_a_log_chart_starts_on_its_log_button_and_markers_show_each_point():
    figure = charts.metric_figure([charts.Series("lr", np.arange(3.0), np.array([0.1, 0.01, 0.001]))],
                                  title="lr", log_y=True, markers=True)
    assert figure.layout.yaxis.type == "log" and figure.layout.updatemenus[0].active == 1
    assert figure.data[0].mode == "lines+markers" and figure.data[0].marker.size == 5


def test_a_robust_chart_offers_a_range_without_the_top_percent():
    y = np.concatenate([np.linspace(1.0, 2.0, 200), [1000.0]])
    buttons = charts.metric_figure([charts.Series("loss", np.arange(201.0), y)], title="loss",
                                   robust_y=True).layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["linear", "log", "cut top 1 %"]
    high = np.percentile(y, 99)
    pad = (high - 1.0) * 0.05
    assert buttons[2].args == ({"yaxis.type": "linear", "yaxis.autorange": False,
                                "yaxis.range": [pytest.approx(1.0 - pad), pytest.approx(high + pad)]},)
    assert high < 3.0  # the spike is out of that range


@pytest.mark.parametrize("y, expected", [
    ([2.0, 2.0], [1.9, 2.1]),  # flat: 5 % of the value
    ([0.0, 0.0], [-1.0, 1.0]),  # flat at zero: one unit
])
def test_the_cut_range_of_a_flat_curve_still_has_height(y, expected):
    buttons = charts.scale_buttons(np.array(y), False, True)["buttons"]
    assert buttons[2]["args"][0]["yaxis.range"] == pytest.approx(expected)


def test_one_value_gets_no_cut_button_and_plain_charts_never_do():
    assert len(charts.scale_buttons(np.array([5.0]), False, True)["buttons"]) == 2
    assert len(charts.scale_buttons(np.array([1.0, 2.0, 3.0]), False, False)["buttons"]) == 2


def test_smoothing_draws_the_raw_curve_faint_under_the_smoothed_one():
    y = np.array([1.0, 0.0, 1.0, 0.0])
    figure = charts.metric_figure([charts.Series("loss", np.arange(4.0), y)], title="loss", smoothing=0.5)
    raw, smoothed = figure.data[:2]
    assert (raw.name, raw.opacity, raw.line.width, raw.showlegend, raw.hoverinfo) == ("loss (raw)", 0.25, 1, False,
                                                                                       "skip")
    assert list(raw.y) == [1.0, 0.0, 1.0, 0.0] and raw.line.color == smoothed.line.color == BLUE
    # Debiased EMA with weight 0.5: 1, 1/3, 5/7, 1/3.
    assert list(smoothed.y) == pytest.approx([1.0, 1 / 3, 5 / 7, 1 / 3])
    assert list(smoothed.customdata) == ["1", "0.3333", "0.7143", "0.3333"]
    one_point = charts.metric_figure([charts.Series("loss", np.arange(1.0), np.ones(1))], title="l", smoothing=0.5)
    assert [t.name for t in one_point.data] == ["loss"]  # nothing to smooth


def test_a_keyed_series_is_smoothed_as_an_unkeyed_one():
    y = np.linspace(0.0, 1.0, 50) ** 2
    keyed = charts.metric_figure([charts.Series("loss", np.arange(50.0), y, key="run/loss")], title="l", smoothing=0.6)
    plain = charts.metric_figure([charts.Series("loss", np.arange(50.0), y)], title="l", smoothing=0.6)
    assert list(keyed.data[1].y) == pytest.approx(list(plain.data[1].y))


def test_long_series_are_cut_to_the_chart_point_budget_keeping_their_ends():
    x = np.arange(10_000.0)
    figure = charts.metric_figure([charts.Series("loss", x, np.sin(x / 100))], title="l", max_points=500,
                                  smoothing=0.5)
    raw, smoothed = figure.data[:2]
    assert len(raw.x) == len(smoothed.x) == 500 and raw.x[0] == 0.0 and raw.x[-1] == 9999.0
    exact = charts.metric_figure([charts.Series("loss", x[:500], x[:500])], title="l", max_points=500)
    assert len(exact.data[0].x) == 500


def test_the_time_axis_draws_datetimes():
    figure = charts.metric_figure([charts.Series("cpu", np.array([0.0, 60.0]), np.array([1.0, 2.0]))], title="cpu",
                                  x_axis="time")
    assert list(pd.to_datetime(figure.data[0].x)) == [pd.Timestamp("1970-01-01 00:00:00"),
                                                      pd.Timestamp("1970-01-01 00:01:00")]


def test_the_best_epoch_line_is_labelled_with_its_one_based_epoch():
    figure = charts.metric_figure([charts.Series("loss", np.arange(1.0, 6.0), np.ones(5))], title="loss",
                                  x_axis="epoch", best=(3.0, 2))
    line, label = [t for t in figure.data if t.yaxis == "y2"]
    assert (line.name, line.line.color, line.line.dash) == ("best epoch", GREEN, "dash")
    assert list(line.x) == [3.0, 3.0, None] and list(line.y) == [0.0, 1.0, None]
    hover = "the best epoch, whose weights EarlyStopping(restore_best_weights=True) restores"
    assert list(line.hovertext) == [hover, hover, ""]
    assert list(label.text) == ["best epoch 3"] and list(label.x) == [3.0] and list(label.y) == [1.0]
    on_time = charts.metric_figure([charts.Series("loss", np.array([0.0, 60.0]), np.ones(2))], title="loss",
                                   x_axis="time", best=(60.0, 0))
    assert pd.Timestamp(on_time.data[1].x[0]) == pd.Timestamp("1970-01-01 00:01:00")


def test_batch_x_spreads_batches_across_their_epoch():
    arrays = {"step": np.array([1.0, 2.0, 3.0, 4.0]), "epoch": np.array([0.0, 0.0, 1.0, 1.0]),
              "batch": np.array([0.0, 1.0, 0.0, 1.0]), "time": np.array([10.0, 11.0, 12.0, 13.0])}
    assert list(charts.batch_x(arrays, "epoch", 4)) == [0.25, 0.5, 1.25, 1.5]
    assert list(charts.batch_x(arrays, "epoch")) == [0.5, 1.0, 1.5, 2.0]  # steps per epoch unknown: from the batches
    assert list(charts.batch_x(arrays, "epoch", 0)) == [0.5, 1.0, 1.5, 2.0]
    assert list(charts.batch_x(arrays, "epoch", 4.0)) == [0.5, 1.0, 1.5, 2.0]  # not a count: ignored
    assert list(charts.batch_x(arrays, "step", 4)) == [1.0, 2.0, 3.0, 4.0]
    assert list(charts.batch_x(arrays, "time", 4)) == [10.0, 11.0, 12.0, 13.0]
    empty = {"epoch": np.array([]), "batch": np.array([])}
    assert len(charts.batch_x(empty, "epoch")) == 0


def test_finite_drops_points_without_a_value_or_an_x():
    x, y = charts.finite(np.array([0.0, 1.0, np.nan, 3.0]), np.array([1.0, np.inf, 2.0, -np.inf]))
    assert (list(x), list(y)) == ([0.0], [1.0])


def event(kind, step=None, epoch=None, time=None, message="", **data):
    return {"kind": kind, "step": step, "epoch": epoch, "time": time, "message": message, "data": data}


@pytest.mark.parametrize("kind, at_end", [(fmt.EVENT_EARLY_STOP, True), (fmt.EVENT_CHECKPOINT, True),
                                          (fmt.EVENT_NAN, True), (fmt.EVENT_DIVERGENCE, True), (fmt.FAILED, True),
                                          (fmt.INTERRUPTED, True), (fmt.EVENT_PHASE, False),
                                          (fmt.EVENT_LR_CHANGE, False), (fmt.EVENT_RESUMED, False)])
def test_events_sit_at_the_start_or_the_end_of_their_epoch(kind, at_end):
    row = pd.Series(event(kind, step=40, epoch=3, time=60.0))
    assert charts.event_x(row, "epoch") == (4.0 if at_end else 3.0)
    assert charts.event_x(row, "step") == 40.0
    assert charts.event_x(row, "time") == pd.Timestamp("1970-01-01 00:01:00")


def test_an_event_without_the_axis_value_is_not_drawn():
    row = pd.Series(event(fmt.EVENT_PHASE))
    assert [charts.event_x(row, axis) for axis in ("epoch", "step", "time")] == [None, None, None]
    assert charts.event_x(pd.Series(event(fmt.EVENT_PHASE, step="soon", epoch="x")), "step") is None


@pytest.mark.parametrize("row, label", [
    (event(fmt.EVENT_PHASE, phase=2, trainable_params=1221), "phase 2 · 1,221 trainable"),
    (event(fmt.EVENT_PHASE, phase=2), "phase 2"),
    (event(fmt.EVENT_PHASE, trainable_params=1221), "phase · 1,221 trainable"),
    (event(fmt.EVENT_PHASE, phase=3, trainable_params="many"), "phase 3"),
    (event(fmt.EVENT_LR_CHANGE, new=8.1e-05), "LR 8.1e-05"),
    (event(fmt.EVENT_LR_CHANGE, new=2), "LR 2"),
    (event(fmt.EVENT_LR_CHANGE, new="lower"), "LR"),
    (event(fmt.EVENT_DIVERGENCE, layer="<b>dense</b>"), "diverged · &lt;b&gt;dense&lt;/b&gt;"),
    (event(fmt.EVENT_DIVERGENCE, layer=3), "diverged"),
    (event(fmt.EVENT_EARLY_STOP, epoch=4), "early stop"),
    (event(fmt.EVENT_NAN), "NaN"),
    (event(fmt.FAILED), "failed"),
    (event(fmt.INTERRUPTED), "interrupted"),
    (event(fmt.EVENT_RESUMED), "resumed"),
    (event("my <kind>"), "my &lt;kind&gt;"),
])
def test_event_labels(row, label):
    assert charts.event_label(pd.Series(row)) == label


def test_a_stop_in_an_epoch_where_a_metric_became_nan_is_a_nan_guard_stop():
    stop = pd.Series(event(fmt.EVENT_EARLY_STOP, epoch=4))
    assert charts.event_label(stop, {4.0}) == "NaN guard stop"
    assert charts.event_label(stop, {3.0}) == "early stop"
    assert charts.event_label(pd.Series({"kind": fmt.EVENT_PHASE, "data": "junk", "epoch": 4}), {4.0}) == "phase"
    events = pd.DataFrame([event(fmt.EVENT_NAN, step=9, epoch=4), event(fmt.EVENT_EARLY_STOP, step=9, epoch=4)])
    _, labels = overlay(charts.metric_figure([charts.Series("l", np.arange(10.0), np.ones(10))], title="l",
                                             events=events))
    assert list(labels["early stop"].text) == ["NaN guard stop"]


def overlay(figure):
    traces = [t for t in figure.data if t.yaxis == "y2"]
    return ({t.name: t for t in traces if t.mode != "text"}, {t.name: t for t in traces if t.mode == "text"})


def test_each_event_kind_has_its_legend_name_colour_and_dash():
    events = pd.DataFrame([event(kind, step=10 * (i + 1), epoch=i, message=f"m{i}")
                           for i, kind in enumerate([fmt.EVENT_PHASE, fmt.EVENT_LR_CHANGE, fmt.EVENT_EARLY_STOP,
                                                     fmt.EVENT_NAN, fmt.EVENT_DIVERGENCE, fmt.FAILED,
                                                     fmt.INTERRUPTED, fmt.EVENT_RESUMED, "train_end"])])
    figure = charts.metric_figure([charts.Series("l", np.arange(100.0), np.ones(100))], title="l", events=events)
    lines, _ = overlay(figure)
    assert {name: (t.line.color, t.line.dash, t.line.width) for name, t in lines.items()} == {
        "phases": ("#6f42c1", "solid", 1), "LR changes": (ORANGE, "dot", 1), "early stop": (RED, "dash", 1),
        "NaN / Inf": (RED, "solid", 1), "divergence": (RED, "dashdot", 1), "failed": (RED, "solid", 1),
        "interrupted": ("#7f7f7f", "solid", 1), "resumed": ("#17becf", "dash", 1)}  # train_end: not drawn
    assert list(lines["phases"].hovertext) == ["m0", "m0", ""]
    assert all(t.hoverinfo == "text" and t.legendgroup == name for name, t in lines.items())


def test_a_line_without_a_message_hovers_its_label_and_labels_take_the_lines_colour():
    events = pd.DataFrame([event(fmt.EVENT_LR_CHANGE, step=5, epoch=0, message="", new=0.5),
                           event(fmt.EVENT_LR_CHANGE, step=50, epoch=1, message="<b>x</b>", new=0.25)])
    lines, labels = overlay(charts.metric_figure([charts.Series("l", np.arange(100.0), np.ones(100))], title="l",
                                                 events=events))
    assert list(lines["LR changes"].hovertext) == ["LR 0.5", "LR 0.5", "", "&lt;b&gt;x&lt;/b&gt;",
                                                   "&lt;b&gt;x&lt;/b&gt;", ""]
    label = labels["LR changes"]
    assert (label.textfont.size, label.textfont.color, label.cliponaxis, label.hoverinfo) == (10, ORANGE, False, "skip")


def test_only_the_latest_sixty_events_of_a_kind_are_drawn():
    events = pd.DataFrame([event(fmt.EVENT_LR_CHANGE, step=s, epoch=0, new=1.0) for s in range(100)]
                          + [event(fmt.EVENT_CHECKPOINT, step=s, epoch=0, message=f"saved {s}") for s in range(70)])
    lines, _ = overlay(charts.metric_figure([charts.Series("l", np.arange(100.0), np.ones(100))], title="l",
                                            events=events))
    assert [x for x in lines["LR changes"].x if x is not None][::2] == [float(s) for s in range(40, 100)]
    ticks = lines["checkpoints"]
    assert list(ticks.x) == [float(s) for s in range(10, 70)] and ticks.hovertext[0] == "saved 10"
    assert list(ticks.y) == [0.02] * 60 and ticks.marker.symbol == "triangle-up" and ticks.hoverinfo == "text"


def test_checkpoints_without_an_x_on_the_axis_are_left_out():
    events = pd.DataFrame([event(fmt.EVENT_CHECKPOINT, step=None, epoch=2, message="saved")])
    lines, _ = overlay(charts.metric_figure([charts.Series("l", np.arange(10.0), np.ones(10))], title="l",
                                            events=events))
    assert "checkpoints" not in lines
    lines, _ = overlay(charts.metric_figure([charts.Series("l", np.arange(10.0), np.ones(10))], title="l",
                                            x_axis="epoch", events=events))
    assert list(lines["checkpoints"].x) == [3.0]


def test_labels_that_would_pass_the_right_edge_read_leftwards_and_crowded_lines_go_unlabelled():
    # x from 0 to 340 on a 340 px plot: one unit per pixel; "early stop" is 10 * 6 + 8 = 68 px wide.
    span = (0.0, 340.0)
    assert charts.place_labels([(0.0, "early stop")], span) == [charts.LabelPlace(1.0, False)]
    assert charts.place_labels([(272.0, "early stop")], span) == [charts.LabelPlace(1.0, False)]  # ends at the edge
    assert charts.place_labels([(273.0, "early stop")], span) == [charts.LabelPlace(1.0, True)]
    # Past the edge but nearer the left one: reads rightwards all the same.
    assert charts.place_labels([(100.0, "x" * 50)], span) == [charts.LabelPlace(1.0, False)]
    crowded = charts.place_labels([(10.0, "a"), (11.0, "b"), (12.0, "c"), (13.0, "d"), (200.0, "e")], span)
    assert crowded == [charts.LabelPlace(1.0, False), charts.LabelPlace(pytest.approx(0.91), False),
                       charts.LabelPlace(pytest.approx(0.82), False), None, charts.LabelPlace(1.0, False)]
    # Labels that just touch share a row: "a" is 14 px wide.
    assert charts.place_labels([(10.0, "a"), (24.0, "b")], span) == [charts.LabelPlace(1.0, False)] * 2
    assert charts.place_labels([(10.0, "a"), (23.0, "b")], span)[1] == charts.LabelPlace(pytest.approx(0.91), False)
    assert charts.place_labels([(30.0, "a"), (16.0, "b")], span) == [charts.LabelPlace(1.0, False)] * 2
    assert charts.place_labels([(30.0, "a"), (17.0, "b")], span)[1] == charts.LabelPlace(pytest.approx(0.91), False)


def test_label_widths_scale_with_the_chart_span_and_lines_widen_it():
    # 0 to 680 on 340 px: two units per pixel, "a" is 28 units wide.
    assert charts.place_labels([(0.0, "a"), (27.0, "b")], (0.0, 680.0))[1].top == pytest.approx(0.91)
    assert charts.place_labels([(0.0, "a"), (28.0, "b")], (0.0, 680.0))[1].top == 1.0
    # No data span: the lines' own x range (here 0 to 680).
    assert charts.place_labels([(0.0, "a"), (28.0, "b"), (680.0, "c")], None)[1].top == 1.0
    assert charts.place_labels([(0.0, "a"), (28.0, "b")], None, plot_px=680.0)[1].top == 1.0
    # One line and no span: one unit per 340 px, read rightwards.
    assert charts.place_labels([(5.0, "a")], None) == [charts.LabelPlace(1.0, False)]
    assert charts.place_labels([(5.0, "a"), (5.0, "b")], (5.0, 5.0))[1].top == pytest.approx(0.91)


def test_lines_without_an_x_get_no_label():
    assert charts.place_labels([(None, "a"), (float("nan"), "b")], None) == [None, None]
    assert charts.place_labels([(None, "a"), (3.0, "b")], (0.0, 10.0)) == [None, charts.LabelPlace(1.0, False)]
    assert charts.place_labels([("3", "a")], (0.0, 10.0)) == [None]
    assert charts.place_labels([], None) == []
    stamp = pd.Timestamp("2024-01-01 00:00:00")
    assert charts.place_labels([(stamp, "a")], (stamp.timestamp() - 100, stamp.timestamp() + 1000)) == [
        charts.LabelPlace(1.0, False)]


def heatmap_frame(values: dict[str, list[object]], steps=(10, 20)) -> pd.DataFrame:
    return pd.DataFrame([{"row": row, "step": step, "std": value}
                         for row, row_values in values.items() for step, value in zip(steps, row_values, strict=True)])


def test_a_heatmap_has_a_row_per_layer_a_column_per_step_and_hovers_each_value():
    figure = charts.heatmap_figure(heatmap_frame({"dense": [0.5, 0.25], "<out>": [1.0, 2.0]}), row="row",
                                   value="std", title="activation <std>")
    cells = figure.data[0]
    assert list(cells.y) == ["dense", "&lt;out&gt;"] and list(cells.x) == [10, 20]
    assert cells.z.tolist() == [[0.5, 0.25], [1.0, 2.0]]
    assert [list(row) for row in cells.text] == [["0.5", "0.25"], ["1", "2"]]
    assert cells.hovertemplate == "%{y}<br>step %{x}<br>std %{text}<extra></extra>"
    assert (cells.colorscale[0][1], cells.zmin, cells.zmax, cells.colorbar.title.text) == ("#440154", None, None,
                                                                                           "std")
    assert len(figure.data) == 1  # every value finite: no NaN mark
    assert layout(figure) == {"title": {"text": "activation &lt;std&gt;", "font": {"size": 15}},
                              "xaxis": {"title": {"text": "step"}}, "height": 260,
                              "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
                              "yaxis": {"autorange": "reversed", "type": "category", "automargin": True}}


def test_a_heatmap_with_zmax_starts_at_zero_and_grows_with_its_rows():
    rows = {f"layer{i}": [0.1, 0.2] for i in range(10)}
    figure = charts.heatmap_figure(heatmap_frame(rows), row="row", value="std", title="t", zmax=1.0,
                                   colorscale="Inferno")
    assert (figure.data[0].zmin, figure.data[0].zmax, figure.data[0].colorscale[0][1]) == (0, 1.0, "#000004")
    assert figure.layout.height == 60 + 28 * 10


def test_a_layer_whose_values_are_all_nan_stays_a_row_marked_nan():
    """A layer that broke (every statistic NaN) is the one a user looks for: it must not vanish from the heatmap."""
    frame = heatmap_frame({"dense": [0.5, np.nan], "broken": [np.nan, np.nan], "text": ["big", 2.0],
                           "inf": [1.0, np.inf]})
    figure = charts.heatmap_figure(frame, row="row", value="std", title="t")
    cells, marks = figure.data
    assert list(cells.y) == ["dense", "broken", "text", "inf"] and list(cells.x) == [10, 20]
    assert [list(row) for row in cells.text] == [["0.5", "NaN"], ["NaN", "NaN"], ["NaN", "2"], ["1", "Inf"]]
    assert list(zip(marks.x, marks.y, strict=True)) == [(20, "dense"), (10, "broken"), (20, "broken"),
                                                         (10, "text"), (20, "inf")]
    assert (marks.name, marks.mode, marks.marker.symbol, marks.marker.color) == ("NaN / Inf", "markers", "x", RED)
    assert marks.hovertemplate == "%{y}<br>step %{x}<br>NaN / Inf<extra></extra>"
    # A step where every layer is NaN keeps its column too.
    figure = charts.heatmap_figure(heatmap_frame({"a": [1.0, np.nan], "b": [2.0, np.nan]}), row="row",
                                   value="std", title="t")
    assert list(figure.data[0].x) == [10, 20]


def test_records_without_a_layer_or_a_step_are_not_drawn():
    frame = pd.DataFrame({"row": ["a", None, "a"], "step": [1.0, 1.0, np.nan], "std": [0.5, 9.0, 9.0]})
    cells = charts.heatmap_figure(frame, row="row", value="std", title="t").data[0]
    assert (list(cells.y), list(cells.x), cells.z.tolist()) == (["a"], [1.0], [[0.5]])


def test_a_heatmap_keeps_the_last_record_of_a_repeated_step():
    frame = pd.DataFrame({"row": ["a", "a"], "step": [1, 1], "std": [0.5, 0.75]})
    assert charts.heatmap_figure(frame, row="row", value="std", title="t").data[0].z.tolist() == [[0.75]]


def gradient(step, layer, weight, norm, nonfinite_frac=0.0):
    return {"step": step, "layer": layer, "weight": weight, "norm": norm, "nonfinite_frac": nonfinite_frac}


def test_a_layers_gradient_norm_is_the_norm_over_all_its_weights_and_nan_if_any_broke():
    gradients = pd.DataFrame([gradient(1, "a", "kernel", 3.0), gradient(1, "a", "bias", 4.0),
                              gradient(1, "b", "kernel", 0.0), gradient(2, "a", "kernel", 1.0),
                              gradient(2, "a", "bias", np.nan), gradient(2, "b", "kernel", 2.0, 0.5),
                              gradient(3, "b", "kernel", "n/a"), gradient(3, "a", "kernel", 2.0, None),
                              gradient(np.nan, "a", "kernel", 1.0), gradient(4, None, "kernel", 1.0)])
    norms = charts.layer_gradient_norms(gradients)
    assert list(norms.columns) == ["step", "row", "norm"]
    assert norms[["step", "row"]].values.tolist() == [[1, "a"], [1, "b"], [2, "a"], [2, "b"], [3, "b"], [3, "a"]]
    assert norms["norm"].tolist()[:2] == [5.0, 0.0]
    assert norms["norm"].iloc[5] == 2.0
    assert norms["norm"].iloc[2:5].isna().all()


def test_gradient_norms_are_sorted_by_step_keeping_the_layer_order():
    gradients = pd.DataFrame([gradient(2, "b", "k", 1.0), gradient(1, "b", "k", 1.0), gradient(2, "a", "k", 4.0),
                              gradient(1, "a", "k", 4.0)])
    norms = charts.layer_gradient_norms(gradients)
    assert norms[["step", "row"]].values.tolist() == [[1, "b"], [1, "a"], [2, "b"], [2, "a"]]


def test_the_gradient_heatmap_colours_by_log10_and_hovers_the_norm():
    norms = pd.DataFrame({"step": [1, 1, 1, 2, 2, 2], "row": ["a", "b", "c"] * 2,
                          "norm": [1e-3, 0.0, 10.0, np.nan, 1e2, 1.0]})
    figure = charts.gradient_heatmap(norms, title="norms")
    cells = figure.data[0]
    assert cells.z.tolist()[0] == [-3.0, pytest.approx(math.nan, nan_ok=True)]
    assert cells.z[1].tolist() == [-3.0, 2.0]  # an exact zero takes the lowest colour, not the NaN mark
    assert cells.z[2].tolist() == [1.0, 0.0]
    assert [list(row) for row in cells.text] == [["0.001", "NaN"], ["0", "100"], ["10", "1"]]
    assert cells.hovertemplate == "%{y}<br>step %{x}<br>gradient norm %{text}<extra></extra>"
    assert cells.colorscale[0][1] == "#000004"  # Inferno
    assert cells.colorbar.title.text == "norm"
    assert list(cells.colorbar.tickvals) == [-3, -2, -1, 0, 1, 2]
    assert list(cells.colorbar.ticktext) == ["1e-3", "1e-2", "1e-1", "1e0", "1e1", "1e2"]
    assert figure.data[1].name == "NaN / Inf" and list(figure.data[1].y) == ["a"]


def test_gradient_heatmap_ticks_are_at_most_about_eight_decades():
    norms = pd.DataFrame({"step": [1, 1], "row": ["a", "b"], "norm": [1e-10, 1e10]})
    ticks = charts.gradient_heatmap(norms, title="t").data[0].colorbar.tickvals
    assert list(ticks) == [-10, -8, -6, -4, -2, 0, 2, 4, 6, 8, 10]
    norms = pd.DataFrame({"step": [1, 1], "row": ["a", "b"], "norm": [0.5, 3.0]})
    assert list(charts.gradient_heatmap(norms, title="t").data[0].colorbar.tickvals) == [-1, 0, 1]


def test_a_gradient_heatmap_of_zeros_and_nans_has_no_decade_ticks():
    norms = pd.DataFrame({"step": [1, 1], "row": ["a", "b"], "norm": [0.0, np.nan]})
    cells = charts.gradient_heatmap(norms, title="t").data[0]
    assert cells.z.tolist()[0] == [0.0] and cells.colorbar.tickvals is None
    assert cells.colorbar.title.text == "log_norm"


def test_gradient_lines_draw_each_weight_with_nan_marks_and_the_learning_rate():
    gradients = pd.DataFrame([gradient(2, "dense", "kernel", 2.0), gradient(1, "dense", "kernel", 1.0),
                              gradient(1, "dense", "bias", 0.5), gradient(2, "dense", "bias", np.nan, 1.0),
                              gradient(3, "dense", "bias", 0.25, 0.0), gradient(1, "other", "kernel", 9.0)])
    lr = (np.array([1.0, 2.0, 3.0]), np.array([0.1, np.nan, 0.01]))
    figure = charts.gradient_lines(gradients, "dense", lr, title="dense <grads>")
    kernel, bias, broken, rate = figure.data
    assert (kernel.name, list(kernel.x), list(kernel.y), kernel.line.color, kernel.mode) == (
        "dense/kernel", [1.0, 2.0], [1.0, 2.0], BLUE, "lines+markers")
    assert list(kernel.customdata) == ["1", "2"]
    assert (bias.name, list(bias.x), list(bias.y), bias.line.color) == ("dense/bias", [1.0, 3.0], [0.5, 0.25],
                                                                        ORANGE)
    assert (broken.name, list(broken.x), list(broken.y)) == ("bias: NaN / Inf", [2], [0.5])  # at the curve's top
    assert (broken.marker.symbol, broken.marker.color, broken.mode) == ("x", RED, "markers")
    assert (rate.name, rate.yaxis, list(rate.x), list(rate.y), rate.line.dash) == ("learning rate", "y2",
                                                                                   [1.0, 3.0], [0.1, 0.01], "dot")
    assert list(rate.customdata) == ["0.1", "0.01"]
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis2.type == "log"
    assert (figure.layout.yaxis2.overlaying, figure.layout.yaxis2.side) == ("y", "right")
    assert figure.layout.title.text == "dense &lt;grads&gt;"
    assert (figure.layout.yaxis.title.text, figure.layout.yaxis2.title.text) == ("gradient norm", "learning rate")


def test_gradient_lines_of_a_weight_that_was_never_finite_mark_at_one():
    gradients = pd.DataFrame([gradient(1, "d", "kernel", np.nan, 1.0)])
    figure = charts.gradient_lines(gradients, "d", None, title="t")
    assert [t.name for t in figure.data] == ["d/kernel", "kernel: NaN / Inf"]
    assert list(figure.data[1].y) == [1.0]


def test_a_histogram_over_time_normalises_each_step_on_a_common_grid():
    frame = pd.DataFrame({"step": [1, 2, 3],
                          "histogram": [{"edges": [0.0, 1.0, 2.0], "counts": [1, 3]},
                                        {"edges": [2.0, 3.0, 4.0], "counts": [2, 0]},
                                        {"edges": [0.0, 4.0], "counts": [0]}]})
    figure = charts.histogram_over_time(frame, title="dense <h>", bins=4)
    cells = figure.data[0]
    assert list(cells.x) == [1, 2, 3] and list(cells.y) == [0.5, 1.5, 2.5, 3.5]
    assert cells.z.tolist() == [[0.25, 0.0, 0.0], [0.75, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert cells.colorscale[0][1] == "rgb(247,251,255)" and cells.colorbar.title.text == "share"
    assert figure.layout.title.text == "dense &lt;h&gt;" and figure.layout.yaxis.title.text == "value"
    assert figure.layout.height == 340


def test_a_histogram_of_one_value_spreads_over_one_unit():
    frame = pd.DataFrame({"step": [1], "histogram": [{"edges": [2.0, 2.0], "counts": [5]}]})
    cells = charts.histogram_over_time(frame, title="t", bins=2).data[0]
    assert list(cells.y) == [2.25, 2.75] and cells.z.tolist() == [[1.0], [0.0]]


def test_malformed_histograms_are_skipped_and_none_left_gives_an_empty_titled_chart():
    frame = pd.DataFrame({"step": [1, 2, 3, 4], "histogram": [None, {"edges": [0.0, 1.0], "counts": [1, 2]},
                                                              {"edges": [0.0], "counts": []},
                                                              {"edges": [0.0, 1.0], "counts": [4]}]})
    cells = charts.histogram_over_time(frame, title="t", bins=1).data[0]
    assert list(cells.x) == [4] and cells.z.tolist() == [[1.0]]
    empty = charts.histogram_over_time(frame.iloc[:3], title="<t>")
    assert empty.data == () and empty.layout.title.text == "&lt;t&gt;"


def test_parallel_coordinates_code_text_hparams_and_colour_by_the_metric():
    frame = pd.DataFrame({"lr": [0.1, 0.01, 0.001], "optimizer": ["sgd", "adam", "sgd"], "units": ["32", "64", 128],
                          "val_loss": [0.5, "n/a", 0.25]})
    figure = charts.parallel_figure(frame, "val_loss")
    lr, optimizer, units, metric = figure.data[0].dimensions
    assert (lr.label, list(lr.values), lr.tickvals) == ("lr", [0.1, 0.01, 0.001], None)
    assert (list(optimizer.values), list(optimizer.tickvals), list(optimizer.ticktext)) == ([1.0, 0.0, 1.0], [0, 1],
                                                                                           ["adam", "sgd"])
    assert list(units.values) == [32.0, 64.0, 128.0]
    assert metric.label == "val_loss" and list(metric.values)[::2] == [0.5, 0.25] and math.isnan(metric.values[1])
    line = figure.data[0].line
    assert list(line.color)[::2] == [0.5, 0.25] and line.showscale is True and line.colorscale[0][1] == "#440154"
    assert figure.layout.height == 380
    labels = charts.parallel_figure(pd.DataFrame({"<b>": ["x<y", "z"]}), "loss").data[0].dimensions[0]
    assert labels.label == "&lt;b&gt;" and list(labels.ticktext) == ["x&lt;y", "z"]
    assert charts.parallel_figure(pd.DataFrame({"<b>": ["x<y", "z"]}), "loss").data[0].line.color is None


def test_cell_texts_split_values_into_rows():
    assert charts.cell_texts(np.array([[1.0, 2.0], [3.0, np.nan]])) == [["1", "2"], ["3", "NaN"]]
    assert charts.cell_texts(np.array([0.5, 0.25])) == [["0.5", "0.25"]]
    assert charts.cell_texts(np.zeros((2, 0))) == []


def test_a_metric_chart_is_340_px_high_unless_told():
    assert charts.metric_figure([charts.Series("l", np.arange(2.0), np.ones(2))], title="l").layout.height == 340


def test_event_lines_span_the_plot_height_one_segment_per_event():
    events = pd.DataFrame([event(fmt.EVENT_LR_CHANGE, step=5, epoch=0, new=0.5),
                           event(fmt.EVENT_LR_CHANGE, step=50, epoch=1, new=0.25)])
    lines, _ = overlay(charts.metric_figure([charts.Series("l", np.arange(100.0), np.ones(100))], title="l",
                                            events=events))
    trace = lines["LR changes"]
    assert trace.mode == "lines" and list(trace.y) == [0.0, 1.0, None, 0.0, 1.0, None]
    assert list(trace.x) == [5.0, 5.0, None, 50.0, 50.0, None]


def test_one_batch_per_epoch_reads_whole_epochs():
    arrays = {"epoch": np.array([0.0, 1.0]), "batch": np.array([0.0, 0.0])}
    assert list(charts.batch_x(arrays, "epoch")) == [1.0, 2.0]


def test_an_epoch_that_is_not_a_number_places_and_names_the_event_as_unknown():
    stop = pd.Series(event(fmt.EVENT_EARLY_STOP, step=4, epoch="x"))
    assert charts.event_x(stop, "epoch") is None
    assert charts.event_label(stop, {4.0}) == "early stop"


def test_the_gradient_heatmap_layout_and_its_non_finite_norms():
    norms = pd.DataFrame({"step": [1, 1, 1, 2, 2, 2], "row": ["a", "b", "<c>"] * 2,
                          "norm": [1e-8, np.inf, np.nan, 1e8, np.nan, np.nan]})
    figure = charts.gradient_heatmap(norms, title="norms <log>")
    cells = figure.data[0]
    assert list(cells.y) == ["a", "b", "&lt;c&gt;"]  # a layer that never had a finite norm keeps its row
    assert cells.z.tolist()[0] == [-8.0, 8.0] and np.isnan(cells.z[1:]).all()
    assert [list(row) for row in cells.text] == [["1e-08", "1e+08"], ["Inf", "NaN"], ["NaN", "NaN"]]
    assert list(cells.colorbar.tickvals) == [-8, -6, -4, -2, 0, 2, 4, 6, 8]  # 16 decades: every second one
    assert figure.layout.title.text == "norms &lt;log&gt;"
    assert figure.data[1].marker.size == 9


def test_a_heatmap_hovering_another_column_reads_its_last_record_per_cell():
    frame = pd.DataFrame({"row": ["a", "a", "a", "b"], "step": [1, 1, 2, 1], "colour": [0.0, 1.0, 2.0, 3.0],
                          "shown": [10.0, 20.0, 30.0, np.nan]})
    cells = charts.heatmap_figure(frame, row="row", value="colour", title="t", shown=("shown", "norm")).data[0]
    assert cells.z.tolist()[0] == [1.0, 2.0]
    assert [list(row) for row in cells.text] == [["20", "30"], ["NaN", "NaN"]]
    assert cells.hovertemplate == "%{y}<br>step %{x}<br>norm %{text}<extra></extra>"


def test_layers_recorded_one_after_another_are_sorted_by_step_in_layer_order():
    layers = [f"layer{i:02d}" for i in range(20)]
    gradients = pd.DataFrame([gradient(step, layer, "kernel", 1.0) for layer in layers for step in (1, 2)])
    norms = charts.layer_gradient_norms(gradients)
    assert norms["step"].tolist() == [1] * 20 + [2] * 20 and norms["row"].tolist() == layers * 2


def test_gradient_lines_skip_unreadable_norms_and_mark_only_recorded_breakage():
    gradients = pd.DataFrame([gradient(1, "d", "kernel", 1.0, None), gradient(2, "d", "kernel", "n/a", 0.0),
                              gradient(3, "d", "kernel", 4.0, 0.0)])
    figure = charts.gradient_lines(gradients, "d", (np.array([1.0, 3.0]), np.array([0.1, 0.2])), title="d")
    assert [t.name for t in figure.data] == ["d/kernel", "learning rate"]
    assert xy_lists(figure.data[0]) == ([1.0, 3.0], [1.0, 4.0])
    assert (figure.data[1].mode, figure.data[1].line.color) == ("lines", "#7f7f7f")
    broken = charts.gradient_lines(pd.DataFrame([gradient(1, "d", "kernel", 2.0, 0.5)]), "d", None, title="d")
    assert broken.data[1].marker.size == 10 and list(broken.data[1].y) == [2.0]
    found = broken.layout.to_plotly_json()
    found.pop("template")
    assert found == {"title": {"font": {"size": 15}, "text": "d"},
                     "yaxis": {"type": "log", "title": {"text": "gradient norm"}, "automargin": True},
                     "yaxis2": {"type": "log", "title": {"text": "learning rate"}, "overlaying": "y", "side": "right",
                                "showgrid": False, "automargin": True, "tickformat": ".1~e"},
                     "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "legend": {"orientation": "h"},
                     "xaxis": {"title": {"text": "step"}}, "height": 340}


def xy_lists(trace) -> tuple[list, list]:
    return [float(x) for x in trace.x], [float(y) for y in trace.y]


def test_histogram_counts_land_in_the_bin_of_their_own_bin_centre():
    frame = pd.DataFrame({"step": [1], "histogram": [{"edges": [0.0, 2.0, 4.0], "counts": [1, 3]}]})
    cells = charts.histogram_over_time(frame, title="t", bins=4).data[0]
    assert cells.z.tolist() == [[0.0], [0.25], [0.0], [0.75]]


def test_a_histogram_over_time_has_forty_value_bins_and_its_layout():
    frame = pd.DataFrame({"step": [1], "histogram": [{"edges": [0.0, 1.0], "counts": [1]}]})
    figure = charts.histogram_over_time(frame, title="t")
    assert len(figure.data[0].y) == 40
    found = figure.layout.to_plotly_json()
    found.pop("template")
    assert found == {"title": {"font": {"size": 15}, "text": "t"}, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
                     "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": "value"}}, "height": 340}


def test_the_parallel_coordinates_layout():
    figure = charts.parallel_figure(pd.DataFrame({"a": [1, 2], "m": [0.1, 0.2]}), "m")
    trace = figure.data[0]
    assert (trace.labelangle, trace.labelside, trace.labelfont.size, trace.tickfont.size) == (-12, "top", 12, 10)
    found = figure.layout.to_plotly_json()
    found.pop("template")
    assert found == {"margin": {"l": 70, "r": 70, "t": 70, "b": 20}, "height": 380}


def test_quotes_in_user_text_stay_as_typed():
    figure = charts.metric_figure([charts.Series("it's \"best\" & <b>", np.arange(2.0), np.ones(2))], title="a'b")
    assert figure.data[0].name == "it's \"best\" &amp; &lt;b&gt;" and figure.layout.title.text == "a'b"


def test_an_event_without_a_place_on_the_axis_draws_no_line_and_takes_no_label_row():
    events = pd.DataFrame([event(fmt.EVENT_PHASE, step=None, epoch=0, phase=1),
                           event(fmt.EVENT_EARLY_STOP, step=None, epoch=0),
                           event(fmt.EVENT_LR_CHANGE, step=10, epoch=0, new=0.5)])
    lines, labels = overlay(charts.metric_figure([charts.Series("l", np.arange(100.0), np.ones(100))], title="l",
                                                 events=events))
    assert set(lines) == set(labels) == {"LR changes"} and labels["LR changes"].y == (1.0,)


def test_checkpoints_are_green_ticks_on_the_x_axis():
    events = pd.DataFrame([event(fmt.EVENT_CHECKPOINT, step=5, epoch=0, message="saved <best>")])
    lines, labels = overlay(charts.metric_figure([charts.Series("l", np.arange(10.0), np.ones(10))], title="l",
                                                 events=events))
    ticks = lines["checkpoints"]
    assert (ticks.marker.symbol, ticks.marker.size, ticks.marker.color) == ("triangle-up", 9, GREEN)
    assert ticks.hovertext == ("saved &lt;best&gt;",) and labels == {}


def test_an_event_recorded_without_a_message_hovers_its_label_not_none():
    events = pd.DataFrame([{"kind": fmt.EVENT_LR_CHANGE, "step": 5, "epoch": 0, "time": None, "message": None,
                            "data": {"new": 0.5}},
                           {"kind": fmt.EVENT_CHECKPOINT, "step": 6, "epoch": 0, "time": None, "message": np.nan,
                            "data": {}}])
    lines, _ = overlay(charts.metric_figure([charts.Series("l", np.arange(10.0), np.ones(10))], title="l",
                                            events=events))
    assert list(lines["LR changes"].hovertext) == ["LR 0.5", "LR 0.5", ""]
    assert lines["checkpoints"].hovertext == ("checkpoint",)


def test_a_nan_event_whose_epoch_is_not_a_number_names_no_nan_guard_stop():
    events = pd.DataFrame([event(fmt.EVENT_NAN, step=9, epoch="late"), event(fmt.EVENT_EARLY_STOP, step=9, epoch=4)])
    _, labels = overlay(charts.metric_figure([charts.Series("l", np.arange(10.0), np.ones(10))], title="l",
                                             events=events))
    assert list(labels["early stop"].text) == ["early stop"]


def test_the_raw_curve_under_a_smoothed_one_is_a_plain_line_on_the_same_axis():
    x = np.array([0.0, 60.0])
    figure = charts.metric_figure([charts.Series("loss", x, np.array([1.0, 0.0]))], title="loss", smoothing=0.5,
                                  x_axis="time")
    raw, smoothed = figure.data[:2]  # two points are enough to smooth
    assert raw.name == "loss (raw)" and raw.mode == "lines"
    assert list(pd.to_datetime(raw.x)) == list(pd.to_datetime(smoothed.x)) == list(pd.to_datetime(x, unit="s"))


def test_label_widths_follow_the_span_wherever_it_starts():
    # 1,000 to 1,340 on 340 px: one unit per pixel, "a" is 14 units wide.
    span = (1000.0, 1340.0)
    assert charts.place_labels([(1000.0, "a"), (1014.0, "b")], span)[1].top == 1.0
    assert charts.place_labels([(1000.0, "a"), (1013.0, "b")], span)[1].top == pytest.approx(0.91)


def test_a_label_reading_leftwards_keeps_the_space_on_its_left():
    # "early stop" at the right edge reads leftwards over 262 to 330: "a" at 270 must take the next row.
    places = charts.place_labels([(330.0, "early stop"), (270.0, "a"), (240.0, "b")], (0.0, 340.0))
    assert places == [charts.LabelPlace(1.0, True), charts.LabelPlace(pytest.approx(0.91), False),
                      charts.LabelPlace(1.0, False)]


def test_unsorted_long_series_are_downsampled_in_x_order_keeping_their_ends_and_extremes():
    x = np.concatenate([np.arange(3000.0), np.arange(1000.0, 4000.0)])  # a resumed run logs steps 1000-2999 twice
    y = np.ones_like(x)
    y[100], y[5000] = 50.0, -50.0
    xs, ys = charts.downsample(x, y)
    assert len(xs) == charts.MAX_POINTS and np.all(np.diff(xs) >= 0)
    assert (xs[0], xs[-1], ys.max(), ys.min()) == (0.0, 3999.0, 50.0, -50.0)


def test_a_layers_unreadable_nonfinite_share_counts_as_none():
    gradients = pd.DataFrame([gradient(1, "a", "kernel", 3.0, "n/a"), gradient(1, "a", "bias", 4.0, 0.0)])
    assert charts.layer_gradient_norms(gradients)["norm"].tolist() == [5.0]
    figure = charts.gradient_lines(gradients, "a", None, title="a")
    assert [t.name for t in figure.data] == ["a/kernel", "a/bias"]
