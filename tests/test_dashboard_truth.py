"""The pages say what happened: diverged and early-stopped runs, the best epoch, the LR axis, phase labels, notes, tags
and system metrics. On runs trained here with real Keras callbacks, and on the shipped sample runs."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from page_charts import chart_figures, open_link
from streamlit.testing.v1 import AppTest
from test_app_pages import decode
from train_helpers import data, mlp

from kerascope import LiveMonitor, RunStore
from kerascope.monitor import format as fmt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(REPO, "sample_runs")


def texts(at: AppTest) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
                    + [w.value for w in at.warning]).replace("\\", "")  # user text is markdown-escaped


def overlay(figure: dict) -> dict[str, dict]:
    """The event kinds' lines and ticks by legend name."""
    return {trace["name"]: trace for trace in figure["data"] if trace.get("yaxis") == "y2" and trace["mode"] != "text"}


def labels(figure: dict) -> dict[str, list[str]]:
    """The event kinds' drawn labels by legend name."""
    return {trace["name"]: trace["text"] for trace in figure["data"]
            if trace.get("yaxis") == "y2" and trace["mode"] == "text"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two real trainings: one whose loss turns NaN under TerminateOnNaN, one stopped by EarlyStopping."""
    logdir = tmp_path_factory.mktemp("truth")
    x, y = data()
    model = mlp(keras.optimizers.SGD(1e12))  # the loss overflows to NaN within the first epoch
    model.fit(x, y, epochs=5, batch_size=32, verbose=0,
              callbacks=[keras.callbacks.TerminateOnNaN(), LiveMonitor(logdir, name="nan run", system_freq=0.05)])
    model = mlp()
    stopper = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(model, "stop_training",
                                                                                      epoch == 3))
    history = model.fit(x, y, validation_split=0.25, epochs=20, batch_size=32, verbose=0,
                        callbacks=[stopper, LiveMonitor(logdir, name="stopped run", notes="patience 1", tags=["es"],
                                                        system_freq=0.05)])
    best = int(np.argmin(history.history["val_loss"]))  # 0-based, the epoch whose weights are best
    ids = {run.name: run.id for run in RunStore(logdir).runs()}
    return logdir, ids, best


def test_a_run_whose_loss_became_nan_reads_diverged_with_its_step(trained):
    logdir, ids, best = trained
    run = RunStore(logdir).run(ids["nan run"])
    assert run.status == fmt.DIVERGED
    assert run.divergence.metric == "loss" and run.divergence.epoch == 0
    assert "NaN guard (TerminateOnNaN)" in run.reason and f"step {run.divergence.step}" in run.reason
    at = open_link(logdir, "views/runs.py")
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["nan run", "status"] == "↯ diverged"
    assert table.loc["nan run", "loss (last)"] == "NaN"  # spelled out, never "None"
    attention = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "nan run" in attention and "became NaN" in attention
    at = open_link(logdir, "views/run.py", run=ids["nan run"])
    assert "loss became NaN at step" in texts(at)
    assert "diverged at epoch 1 of 5" in texts(at)


def test_an_early_stopped_run_says_so_and_marks_its_best_epoch(trained):
    logdir, ids, best = trained
    at = open_link(logdir, "views/run.py", run=ids["stopped run"], x="epoch")
    assert f"stopped early at epoch 4 of 20 (best epoch {best + 1})" in texts(at)
    assert not at.get("progress")  # no bar at 20 %: the run ended on purpose
    loss = next(f for f in chart_figures(at) if f["layout"]["title"]["text"] == "loss")
    marker = overlay(loss)["best epoch"]
    assert [x for x in marker["x"] if x is not None] == [best + 1.0, best + 1.0]  # the end of the best epoch
    assert labels(loss)["best epoch"] == [f"best epoch {best + 1}"]
    assert labels(loss)["early stop"] == ["early stop"]


def test_notes_tags_and_system_metrics_are_shown(trained):
    logdir, ids, best = trained
    at = open_link(logdir, "views/run.py", run=ids["stopped run"])
    assert "patience 1" in texts(at) and "tags: es" in texts(at)
    titles = [f["layout"]["title"]["text"] for f in chart_figures(at)]
    assert "process CPU %" in titles and "memory (MB)" in titles
    table = open_link(logdir, "views/runs.py").dataframe[0].value.set_index("name")
    assert table.loc["stopped run", "notes"] == "patience 1" and table.loc["stopped run", "tags"] == "es"
    assert table.loc["stopped run", "params"] == 90  # 8*8+8 + 8*2+2


def test_a_run_logged_per_epoch_only_charts_its_learning_rate_per_epoch(tmp_path):
    """update_freq="epoch" writes no batch records: the LR each epoch ran with (ReduceLROnPlateau halving it) is
    charted after loss and the key metric, on a log axis."""
    x, y = data()
    model = mlp(keras.optimizers.SGD(0.1))
    plateau = keras.callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=10)  # halves it each epoch
    model.fit(x, y, validation_split=0.25, epochs=4, batch_size=32, verbose=0,
              callbacks=[plateau, LiveMonitor(tmp_path, name="per epoch", update_freq="epoch",
                                              monitor="val_accuracy")])
    (run,) = RunStore(tmp_path).runs()
    assert not run.arrays("batch")
    at = open_link(tmp_path, "views/run.py", run=run.id)
    figures = chart_figures(at)
    assert [f["layout"]["title"]["text"] for f in figures][:3] == ["loss", "accuracy", "learning rate"]
    lr = figures[2]
    assert lr["layout"]["yaxis"]["type"] == "log"
    (line,) = [trace for trace in lr["data"] if trace.get("yaxis") != "y2"]  # no smoothed twin
    assert line["name"] == "lr" and decode(line["y"]) == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert line["customdata"] == ["0.1", "0.1", "0.05", "0.025"]


def test_the_sample_runs_read_as_they_ran():
    runs = {run.name[:2]: run for run in RunStore(SAMPLES).runs()}
    at = open_link(SAMPLES, "views/runs.py")
    attention = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "08 learning rate too high" in attention and "diverged" in attention
    at = open_link(SAMPLES, "views/run.py", run=runs["08"].id)
    assert "loss became NaN at step 138 (epoch 4)" in texts(at)
    at = open_link(SAMPLES, "views/run.py", run=runs["06"].id)
    assert "stopped early at epoch 31 of 80 (best epoch 27)" in texts(at)
    figures = {f["layout"]["title"]["text"]: f for f in chart_figures(at)}
    assert figures["learning rate per batch"]["layout"]["yaxis"]["type"] == "log"
    assert "best epoch" in overlay(figures["loss"])
    at = open_link(SAMPLES, "views/run.py", run=runs["07"].id)
    loss = next(f for f in chart_figures(at) if f["layout"]["title"]["text"] == "loss")
    phases = labels(loss)["phases"]
    assert len(phases) == 3 and all(label.endswith("trainable") for label in phases)
    assert len({label.split(" · ")[1] for label in phases}) >= 2  # the trainable count changes between phases
    assert np.all(np.isfinite([runs["06"].best_epoch]))


def test_group_band_is_the_mean_min_and_max_of_the_runs_where_each_has_values():
    from kerascope.app import charts
    from kerascope.app.compare_charts import group_band
    short = charts.Series("a", np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    long = charts.Series("b", np.array([1.0, 2.0, 3.0]), np.array([3.0, 5.0, 7.0]))
    x, mean, low, high = group_band([short, long])
    assert list(x) == [1.0, 2.0, 3.0]
    assert list(mean) == [2.0, 4.0, 7.0]  # at x=3 only the longer run counts
    assert list(low) == [1.0, 3.0, 7.0] and list(high) == [3.0, 5.0, 7.0]


def test_compare_groups_runs_by_an_hparam_into_mean_and_band(runs_root):
    from run_factory import make_run
    paths = [make_run(runs_root, f"seed {seed}", hparams={"lr": lr}, seed=seed)
             for seed, lr in ((1, 0.01), (2, 0.01), (3, 0.1))]
    ids = [os.path.basename(path) for path in paths]
    at = open_link(runs_root, "views/compare.py", runs=",".join(ids), group="hparam: lr")
    val_loss = next(f for f in chart_figures(at) if f["layout"]["title"]["text"].startswith("val_loss"))
    means = {trace["name"]: trace for trace in val_loss["data"] if trace.get("showlegend") is not False}
    assert set(means) == {"lr=0.01 (2 runs)", "lr=0.1 (1 run)"}
    store = RunStore(runs_root)
    pair = np.vstack([store.run(run_id).epoch_metrics()["val_loss"].to_numpy() for run_id in ids[:2]])
    np.testing.assert_allclose(decode(means["lr=0.01 (2 runs)"]["y"]), pair.mean(axis=0))
    bands = [trace for trace in val_loss["data"] if trace.get("fill") == "tonexty"]
    assert len(bands) == 2
    np.testing.assert_allclose(decode(bands[0]["y"]), pair.min(axis=0))


@pytest.mark.parametrize("group_by, groups", [
    ("name prefix", {"sweep": ["sweep 1", "sweep 2"], "other": ["other 3"]}),
    ("first tag", {"seeds": ["sweep 1", "other 3"], "baseline": ["sweep 2"]}),
])
def test_compare_groups_runs_by_name_prefix_or_first_tag(runs_root, group_by, groups):
    from run_factory import make_run
    tags = {"sweep 1": ["seeds", "x"], "sweep 2": ["baseline"], "other 3": ["seeds"]}
    ids = {name: os.path.basename(make_run(runs_root, name, tags=tags[name], seed=seed))
           for seed, name in enumerate(tags)}
    at = open_link(runs_root, "views/compare.py", runs=",".join(ids.values()), group=group_by)
    val_loss = next(f for f in chart_figures(at) if f["layout"]["title"]["text"].startswith("val_loss"))
    means = {trace["name"]: trace for trace in val_loss["data"] if trace.get("showlegend") is not False}
    expected = {f"{group} ({len(names)} run{'s' * (len(names) > 1)})": names for group, names in groups.items()}
    assert set(means) == set(expected)
    store = RunStore(runs_root)
    for label, names in expected.items():
        curves = np.vstack([store.run(ids[name]).epoch_metrics()["val_loss"].to_numpy() for name in names])
        np.testing.assert_allclose(decode(means[label]["y"]), curves.mean(axis=0))


def test_compare_plots_a_final_metric_against_a_numeric_hparam(runs_root):
    from run_factory import make_run
    lrs = {"a": 0.1, "b": 0.01, "c": 0.001}
    ids = {name: os.path.basename(make_run(runs_root, name, hparams={"lr": lr, "units": 32}, seed=seed))
           for seed, (name, lr) in enumerate(lrs.items())}
    at = open_link(runs_root, "views/compare.py", runs=",".join(ids.values()))
    target = at.selectbox(key="compare_final_metric").value
    assert at.selectbox(key="compare_scatter_hparam").options == ["lr", "units"]
    scatter = next(f for f in chart_figures(at) if f["layout"]["title"]["text"] == f"{target} against lr")
    (points,) = scatter["data"]
    store = RunStore(runs_root)
    finals = {name: store.run(run_id).summary["metrics"] for name, run_id in ids.items()}
    assert len(decode(points["x"])) == 3
    by_x = dict(zip(decode(points["x"]), decode(points["y"]), strict=True))
    assert sorted(by_x) == sorted(lrs.values())
    assert {name: by_x[lr] for name, lr in lrs.items()} == pytest.approx(
        {name: finals[name][target.removeprefix("best ")]["best" if target.startswith("best ") else "last"]
         for name in lrs})


def test_only_the_cells_that_differ_are_highlighted():
    import pandas as pd

    from kerascope.app import tables
    frame = pd.DataFrame({"lr": ["0.1", "0.1", "0.01"], "seed": ["1", "2", "3"], "units": ["8", "8", "8"]},
                         index=["a", "b", "c"])
    marks = tables.differing_cells(frame)
    assert marks["lr"].tolist() == [False, False, True]  # the odd one out
    assert marks["seed"].tolist() == [False, True, True]  # all differ: the first run is the reference
    assert not marks["units"].any()


def test_compare_shows_model_size_against_the_final_metric_on_the_sample_runs():
    runs = {run.name[:2]: run for run in RunStore(SAMPLES).runs()}
    at = open_link(SAMPLES, "views/compare.py", runs=f"{runs['09'].id},{runs['01'].id}")
    finals = at.dataframe[1].value
    assert sorted(finals["params"]) == sorted(float(runs[code].model_info.total_params) for code in ("09", "01"))
    titles = [f["layout"].get("title", {}).get("text", "") for f in chart_figures(at)]
    assert any(title.endswith("against params") for title in titles)


def test_overflowed_layers_are_flagged_not_called_dead_on_the_diverged_sample():
    run = next(run for run in RunStore(SAMPLES).runs() if run.name.startswith("08"))
    at = open_link(SAMPLES, "views/activations.py", run=run.id)
    overflow = [e.value for e in at.error if e.value.startswith("Overflow")]
    assert overflow and "pool1" in overflow[0] and "flatten" in overflow[0]
    heatmap = next(f for f in chart_figures(at) if f["data"][0]["type"] == "heatmap")
    marks = [trace for trace in heatmap["data"] if trace.get("name") == "NaN / Inf"]
    assert len(marks) == 1 and marks[0]["marker"]["symbol"] == "x"  # the run's NaN activations: marked, not blank
    assert len(decode(marks[0]["x"])) >= 1


def test_the_model_page_shows_the_chosen_phase():
    run = next(run for run in RunStore(SAMPLES).runs() if run.name.startswith("07"))
    at = open_link(SAMPLES, "views/model.py", run=run.id)
    assert [m.value for m in at.metric][:3] == ["6,021", "6,021", "0"]  # the last phase: all unfrozen
    at.button_group(key="model_phase").set_value(2).run()
    assert [m.value for m in at.metric][:3] == ["6,021", "1,221", "4,800"]  # the frozen base of phase 2
    layers = at.dataframe[0].value
    assert list(layers["name"])[:2] == ["digit_features", "conv1"]  # model order
    assert layers.set_index("name").loc["conv1", "trainable (phase 2)"] == "no"
    assert layers.set_index("name").loc["digit_features", "parent"] == "—"  # missing reads one way
    assert "nan" not in layers.to_string()


def test_hovers_and_tables_read_small_values_in_scientific_notation(runs_root):
    """8.1e-05, not 0.000081 (plotly's ".4~g") or 81μ: the Run page's hover texts and Compare's final values."""
    import pyarrow as pa

    from kerascope import RunWriter
    ids = []
    for name, loss in (("tiny", 8.1e-05), ("small", 0.005694743)):
        writer = RunWriter(runs_root, name=name)
        writer.log("batch", {"step": 1, "epoch": 0, "batch": 0, "time": 1.0, "loss": loss, "batch_loss": loss,
                             "lr": 2.7e-04})
        writer.log("epoch", {"epoch": 0, "step": 1, "time": 2.0, "loss": loss, "val_loss": np.nan})
        writer.close()
        ids.append(os.path.basename(writer.run_dir))
    at = open_link(runs_root, "views/run.py", run=ids[0])
    hovers = {figure["layout"]["title"]["text"]: {trace["name"]: (trace.get("hovertemplate"), trace.get("customdata"))
                                                  for trace in figure["data"] if trace.get("yaxis") != "y2"}
              for figure in chart_figures(at)}
    assert hovers["loss"]["loss"] == ("%{customdata}", ["8.1e-05"])
    assert hovers["learning rate per batch"]["lr"] == ("%{customdata}", ["2.7e-04"])
    at = open_link(runs_root, "views/compare.py", runs=",".join(ids))
    finals = at.dataframe[-1]
    assert list(finals.value.columns[:3]) == ["epochs", "params", "size"]
    shown = pa.ipc.open_stream(finals.proto.arrow_data.styler.display_values).read_all().to_pandas()
    assert shown["loss"].tolist() == ["8.1e-05", "0.005695"]
    assert shown["val_loss"].tolist() == ["NaN", "NaN"] and shown["params"].tolist() == ["—", "—"]
    assert finals.value["loss"].tolist() == [8.1e-05, 0.005694743]  # the cells sort as numbers
