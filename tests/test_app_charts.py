"""The dashboard's data helpers on their own: downsampling, smoothing, escaping, alerts and CSV export."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
from run_factory import make_run

from kerascope import RunStore
from kerascope.app import alerts, charts, smoothing, tables


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
        np.testing.assert_allclose(cache.smooth("run/loss", y[:end], 0.9), smoothing.ema(y[:end], 0.9), rtol=1e-12)
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


def test_csv_export_holds_every_recorded_value(runs_root):
    first = make_run(runs_root, "a", epochs=3, steps_per_epoch=7)
    second = make_run(runs_root, "b", epochs=2, steps_per_epoch=7)
    runs = [RunStore(runs_root).run(os.path.basename(path)) for path in (first, second)]
    frame = pd.read_csv(io.BytesIO(tables.series_csv(runs, "batch_loss", "batch")))
    assert list(frame.columns) == ["run_id", "run_name", "metric", "step", "epoch", "batch", "time", "value"]
    assert len(frame) == 21 + 14
    assert frame.groupby("run_name")["step"].max().to_dict() == {"a": 21, "b": 14}


def test_events_at_the_same_step_share_one_label():
    events = pd.DataFrame({"step": [10, 10, 10, 20], "kind": ["phase", "lr_change", "checkpoint", "nan"]})
    figure = charts.metric_figure([charts.Series("loss", np.arange(30.0), np.ones(30))], title="loss", events=events)
    assert len(figure.layout.shapes) == 4  # every event keeps its line
    assert sorted((a.x, a.text) for a in figure.layout.annotations) == [(10.0, "phase · LR"), (20.0, "NaN")]
