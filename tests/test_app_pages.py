"""Every dashboard page, driven by Streamlit's AppTest over a run_factory root and over the shipped sample runs.

The assertions read what a user would see: table cells, titles, chart traces (plotly specs), alert texts.
"""

from __future__ import annotations

import base64
import json
import os
import re

import numpy as np
import pytest
from page_charts import chart_figures, chart_specs, open_page
from run_factory import make_root, make_run
from streamlit.testing.v1 import AppTest

from kerascope import RunStore, RunWriter
from kerascope.monitor import format as fmt

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app", "streamlit_app.py")
SAMPLE_ROOT = os.path.join(os.path.dirname(APP), "..", "sample_runs")
PAGES = ("views/runs.py", "views/run.py", "views/activations.py", "views/model.py", "views/checkpoints.py",
         "views/compare.py")


def decode(values):
    """Plotly JSON arrays are either lists or {"dtype", "bdata"} binary blobs."""
    if isinstance(values, dict) and "bdata" in values:
        array = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
        if "shape" in values:
            array = array.reshape([int(n) for n in str(values["shape"]).split(",")])
        return array.tolist()
    return values


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page, by title."""
    return {figure["layout"].get("title", {}).get("text", ""): figure for figure in chart_figures(at)}


def traces(figure: dict) -> dict[str, dict]:
    return {trace.get("name", ""): trace for trace in figure["data"]}


def table_text(at: AppTest, index: int = 0) -> str:
    return at.dataframe[index].value.to_string()


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.title, *at.markdown, *at.caption, *at.warning, *at.error, *at.info)]
    parts += [e.value for e in at.code]
    # User text is shown backslash-escaped (inert markdown): compare with what the reader sees.
    return re.sub(r"\\(.)", r"\1", "\n".join(str(p) for p in parts))


@pytest.fixture
def root(runs_root):
    return runs_root, {key: os.path.basename(path) for key, path in make_root(runs_root).items()}


# -- Runs ------------------------------------------------------------------------------------------------------------


def test_runs_page_lists_every_run_with_status_metrics_and_hparams(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/runs.py")
    frame = at.dataframe[0].value
    by_name = frame.set_index("name")
    assert {"baseline", "wide", "live run", "diverged", "<b>bold</b> *stars* :red[x]", ids["broken"]} <= set(
        frame["name"])
    assert by_name.loc["baseline", "status"] == "✓ finished"
    assert by_name.loc["live run", "status"] == "▶ running"
    assert by_name.loc["diverged", "status"] == "✗ failed"
    assert by_name.loc[ids["broken"], "status"] == "⚠ broken"
    assert "not valid JSON" in by_name.loc[ids["broken"], "reason"]
    assert by_name.loc[ids["future"], "status"] == "⚠ broken"
    assert "upgrade Kerascope" in by_name.loc[ids["future"], "reason"]
    assert by_name.loc["wide", "hparams"] == "lr=0.001, units=128"
    assert by_name.loc["wide", "tags"] == "mlp, wide"
    assert by_name.loc["baseline", "where"] == "epoch 4/4 · step 80"
    assert by_name.loc["baseline", "progress"] == 100.0
    assert {"loss (last)", "loss (best)", "val_loss (last)", "val_loss (best)"} <= set(frame.columns)
    assert by_name.loc["baseline", "loss (best)"] <= by_name.loc["baseline", "loss (last)"]
    assert "not valid JSON" in texts(at)  # the attention box names the broken run and why


def test_runs_page_marks_a_silent_running_run_stale(runs_root):
    run_dir = make_run(runs_root, "killed -9", status="running")
    status_path = os.path.join(run_dir, "status.json")
    with open(status_path, encoding="utf-8") as f:
        status = json.load(f)
    status["heartbeat"] -= 3600  # the training process died an hour ago without a word
    fmt.write_json_atomic(status_path, status)
    at = open_page(runs_root, "views/runs.py")
    row = at.dataframe[0].value.set_index("name").loc["killed -9"]
    assert row["status"] == "⚠ stale"
    assert "no heartbeat" in row["reason"]
    assert row["ETA"] == ""  # no time left is promised for a run that stopped


def test_runs_page_filters_and_sorts(root):
    runs_root, _ = root
    at = open_page(runs_root, "views/runs.py")
    at.text_input(key="runs_filter").input("wide").run()
    assert list(at.dataframe[0].value["name"]) == ["wide"]
    at.text_input(key="runs_filter").input("").run()
    at.multiselect(key="runs_status").select("failed").run()
    assert list(at.dataframe[0].value["name"]) == ["diverged"]
    at.multiselect(key="runs_status").unselect("failed").run()
    at.selectbox(key="runs_sort").select("name").run()
    names = list(at.dataframe[0].value["name"])
    assert names == sorted(names)


def test_runs_page_explains_an_empty_root(runs_root):
    at = open_page(runs_root, "views/runs.py")
    assert "No runs under" in texts(at)
    assert not at.dataframe


# -- Run ------------------------------------------------------------------------------------------------------------


def test_run_page_shows_train_and_val_on_one_chart_batch_charts_lr_and_events(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/run.py", run_id=ids["baseline"])
    assert at.title[0].value == "baseline"
    figures = charts(at)
    assert {"loss", "accuracy", "loss per batch", "accuracy per batch", "learning rate per batch"} <= set(figures)
    loss = traces(figures["loss"])
    assert {"loss", "val_loss"} <= set(loss)
    assert decode(loss["loss"]["x"]) == [20.0, 40.0, 60.0, 80.0]  # one point per epoch, at its step
    lr = traces(figures["learning rate per batch"])["lr"]
    assert sorted(set(decode(lr["y"]))) == [0.005, 0.01]  # halved by the lr_change event
    events = {trace["name"]: trace for trace in figures["loss"]["data"] if trace.get("yaxis") == "y2"}
    assert {"phases", "LR changes", "checkpoints"} <= set(events)  # one legend entry (a toggle) per kind
    assert [text for text in events["phases"]["text"] if text] == ["phase 1 · 8,554 trainable"]
    assert [text for text in events["LR changes"]["text"] if text] == ["LR 0.005"]
    assert events["checkpoints"]["mode"] == "markers"  # ticks on the x axis, not lines across the chart
    table = next(block.value for block in at.markdown if block.value.startswith("| time (UTC) |"))
    rows = [[cell.strip().replace("\\", "") for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert rows[0][1:4] == ["80", "4", "train_end"]  # newest first: step, epoch as Keras prints it, kind
    assert {"phase", "lr_change", "checkpoint", "train_end"} <= {row[3] for row in rows}
    assert "epoch 4/4 · step 80" in at.get("progress")[0].proto.text


def test_run_page_smoothing_and_x_axis_controls(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/run.py", run_id=ids["baseline"])
    assert "loss (raw)" in traces(charts(at)["loss per batch"])  # smoothed by default, the raw trace faint behind
    at.slider(key="run_smoothing").set_value(0.0).run()
    assert "loss (raw)" not in traces(charts(at)["loss per batch"])
    at.button_group[0].set_value("epoch").run()
    assert decode(traces(charts(at)["loss"])["loss"]["x"]) == [1.0, 2.0, 3.0, 4.0]  # epochs completed, as Keras counts
    figures = charts(at)
    assert figures["learning rate per batch"]["layout"]["yaxis"]["type"] == "log"  # LR schedules span decades
    assert figures["loss"]["layout"]["yaxis"]["type"] == "linear"
    scales = [button["label"] for button in figures["loss"]["layout"]["updatemenus"][0]["buttons"]]
    assert scales == ["linear", "log", "cut top 1 %"]  # per chart, in the browser
    at.button_group[0].set_value("step").run()
    specs = {spec["figure"]["layout"]["title"]["text"]: spec for spec in chart_specs(at)}
    assert specs["loss"]["follow"] and specs["loss"]["x_last"] == 80.0  # a zoom slides to the newest step
    at.toggle(key="run_follow").set_value(False).run()
    assert not any(spec["follow"] for spec in chart_specs(at))


def test_an_epoch_level_learning_rate_from_the_keras_logs_is_charted_per_epoch(runs_root):
    """Epoch records with only the `learning_rate` ReduceLROnPlateau puts in the logs (no batch records, no `lr`)."""
    writer = RunWriter(runs_root, name="per epoch", meta={"options": {"monitor": "val_accuracy"}})
    for epoch, (loss, rate) in enumerate(((0.9, 1e-3), (0.7, 1e-3), (0.6, 2e-4), (0.55, 4e-05))):
        writer.log("epoch", {"epoch": epoch, "step": 10 * (epoch + 1), "time": float(epoch), "loss": loss,
                             "val_loss": loss, "accuracy": 1 - loss, "val_accuracy": 1 - loss, "mae": loss,
                             "learning_rate": rate})
    writer.close()
    at = open_page(runs_root, "views/run.py", run_id=os.path.basename(writer.run_dir))
    at.button_group[0].set_value("epoch").run()
    figures = charts(at)
    assert list(figures)[:4] == ["loss", "accuracy", "learning rate", "mae"]
    assert figures["learning rate"]["layout"]["yaxis"]["type"] == "log"
    lr = traces(figures["learning rate"])["lr"]
    assert decode(lr["x"]) == [1.0, 2.0, 3.0, 4.0] and decode(lr["y"]) == [1e-3, 1e-3, 2e-4, 4e-05]


def test_run_page_alerts_on_nan_and_dead_units(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/run.py", run_id=ids["nan"])
    assert any("NaN/Inf in metrics" in e.value for e in at.error)
    assert "ValueError: boom" in texts(at)  # the failed run's reason
    at = open_page(runs_root, "views/run.py", run_id=ids["markup"])
    assert any("Dead units" in w.value and "dense" in w.value for w in at.warning)


def test_run_page_never_renders_user_text_as_markup(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/run.py", run_id=ids["markup"])
    title = at.title[0].value
    assert "<b>" not in title and "\\<b\\>" in title and "\\:red\\[" in title
    for figure in charts(at).values():
        for trace in figure["data"]:
            assert "<b>" not in trace.get("name", "")


def test_run_page_shows_a_broken_run_with_its_reason(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/run.py", run_id=ids["broken"])
    assert any("not valid JSON" in e.value for e in at.error)
    assert not chart_specs(at)


def test_run_page_downsamples_long_series(runs_root):
    run_id = os.path.basename(make_run(runs_root, "long", epochs=5, steps_per_epoch=1000))
    at = open_page(runs_root, "views/run.py", run_id=run_id, run_smoothing=0.0)
    loss = traces(charts(at)["loss per batch"])["loss"]
    assert loss["type"] == "scatter"  # SVG: WebGL contexts cost more at page load than they save at 2,000 points
    assert 1000 <= len(decode(loss["y"])) <= 2000 < 5000


# -- Activations & weights, Model, Checkpoints ---------------------------------------------------------------------


def test_activations_page_heatmaps_and_histograms(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/activations.py", run_id=ids["markup"])
    figures = charts(at)
    heatmap = figures["activation spread (std) per layer and step"]["data"][0]
    assert heatmap["y"] == ["dense", "dense_1"]
    assert "dense: activation histogram over time" in figures
    weights = figures["weight spread (std) per layer and step"]["data"][0]
    assert {"dense/kernel", "dense/bias", "dense_1/kernel"} <= set(weights["y"])
    at.selectbox(key="activation_stat").select("zero_frac").run()
    heatmap = charts(at)["activation zero fraction (dead units near 1) per layer and step"]["data"][0]
    assert decode(heatmap["z"])[0] == [1.0, 1.0, 1.0, 1.0]  # the dead layer
    at.selectbox(key="activation_row").select("dense_1").run()
    assert "dense_1: activation histogram over time" in charts(at)


def test_model_page_summary_counts_graph_and_layers(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/model.py", run_id=ids["baseline"])
    assert 'Model: "mlp"' in at.code[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Total parameters"] == "8,554"
    assert metrics["Weights size"] == "33.4 KB"
    assert at.get("image")  # the plot_model PNG
    layers = at.dataframe[0].value
    assert list(layers["name"]) == ["dense", "dense_1"]
    assert list(layers["params"]) == ["8,224", "330"]


def test_model_page_shows_trainable_flags_per_phase(root):
    runs_root, ids = root
    writer = RunWriter.resume(os.path.join(runs_root, ids["wide"]), flush_interval=60)
    frozen = [{"name": "dense", "class": "Dense", "output_shape": [None, 32], "params": 8224, "trainable": False},
              {"name": "dense_1", "class": "Dense", "output_shape": [None, 10], "params": 330, "trainable": True}]
    writer.log("layers", {"phase": 2, "time": 0.0, "layers": frozen})
    writer.close()
    at = open_page(runs_root, "views/model.py", run_id=ids["wide"])
    layers = at.dataframe[0].value.set_index("name")
    assert list(layers.loc["dense", ["trainable (phase 1)", "trainable (phase 2)"]]) == ["yes", "no"]
    assert list(layers.loc["dense_1", ["trainable (phase 1)", "trainable (phase 2)"]]) == ["yes", "yes"]


def test_model_page_draws_the_dot_source_without_a_png(root):
    runs_root, ids = root
    os.remove(os.path.join(runs_root, ids["wide"], "model", "graph.png"))
    at = open_page(runs_root, "views/model.py", run_id=ids["wide"])
    assert not at.get("image")
    graph = at.get("graphviz_chart")
    assert graph and "dense_1" in graph[0].proto.spec


def test_checkpoints_page_table_and_download(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/checkpoints.py", run_id=ids["baseline"])
    table = at.dataframe[0].value
    assert list(table["path"]) == ["checkpoints/best.keras"]
    assert list(table["best"]) == ["★ best"]
    assert table["epoch"].iloc[0] == 4  # the stored epoch 3, read 1-based as Keras prints it
    button = at.get("download_button")[0]
    assert r"best\.keras" in button.proto.label  # escaped: widget labels are markdown


# -- Compare --------------------------------------------------------------------------------------------------------


def test_compare_page_overlays_runs_and_tables_hparams_and_final_metrics(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/compare.py", compare_ids=[ids["baseline"], ids["wide"]])
    figures = charts(at)
    assert list(figures)[:4] == ["val_loss", "loss", "val_accuracy", "accuracy"]  # every metric, val_loss first
    colours = {}
    for metric in ("val_loss", "loss", "val_accuracy", "accuracy"):
        names = {name: trace["line"]["color"] for name, trace in traces(figures[metric]).items()}
        assert set(names) == {f"baseline ({ids['baseline'][-4:]})", f"wide ({ids['wide'][-4:]})"}
        colours.setdefault("runs", names)
        assert names == colours["runs"]  # one colour per run on every chart
    hparams = at.dataframe[0].value
    assert sorted(hparams["lr"]) == ["0.001", "0.01"]
    assert "2 of 2 hparams differ" in texts(at)
    finals = at.dataframe[1].value
    assert list(finals["epochs"]) == [4.0, 4.0]
    assert (finals["best val_loss"] <= finals["val_loss"]).all()
    parallel = [f for f in chart_figures(at) if f["data"][0]["type"] == "parcoords"]
    assert parallel and "lr" in [dimension["label"] for dimension in parallel[0]["data"][0]["dimensions"]]
    at.button_group(key="compare_level").set_value("batch").run()
    figures = charts(at)
    assert {"loss", "accuracy", "lr"} <= set(figures) and len(traces(figures["loss"])) == 4  # smoothed + raw


def test_runs_page_selection_reaches_compare(root):
    runs_root, ids = root
    at = open_page(runs_root, "views/runs.py")
    at.multiselect(key="runs_compare").set_value([ids["nan"]]).run()
    at.switch_page("views/compare.py").run()
    assert at.multiselect(key="compare_runs").value == [ids["nan"]]


# -- the shipped sample runs ----------------------------------------------------------------------------------------

sample_runs = RunStore(SAMPLE_ROOT).runs() if os.path.isdir(SAMPLE_ROOT) else []


@pytest.mark.skipif(not sample_runs, reason="sample_runs/ has no runs yet (make samples)")
@pytest.mark.parametrize("page", PAGES)
def test_every_page_on_the_sample_runs(page):
    first = next(run for run in sample_runs if run.error is None)
    at = open_page(SAMPLE_ROOT, page, run_id=first.id)
    shown = texts(at)
    if page == "views/runs.py":
        assert set(at.dataframe[0].value["name"]) == {run.name for run in sample_runs}
    elif page == "views/compare.py":  # the newest finished runs, val_loss first
        finished = [run for run in sample_runs if run.status == "finished"][:4]
        figure = next(iter(charts(at).values()))
        assert figure["layout"]["title"]["text"] == "val_loss"
        assert set(traces(figure)) == {f"{run.name} ({run.id[-4:]})" for run in finished}
    else:
        assert first.name in shown
    if page == "views/run.py":
        assert "loss" in charts(at)
    if page == "views/model.py":
        assert first.model_summary().splitlines()[0] in at.code[0].value
    if page == "views/checkpoints.py" and len(first.checkpoints()):
        assert len(at.dataframe[0].value) == len(first.checkpoints())
    elif page == "views/checkpoints.py":
        assert "No checkpoints in this run" in shown


@pytest.mark.parametrize("page", ["views/run.py", "views/activations.py", "views/compare.py"])
def test_charts_are_svg_traces_never_webgl(page):
    """Charts hold at most a few thousand points: SVG draws them, while each WebGL context costs the first paint about
    0.4 s in a software-rendered browser. The diverged sample has every kind of chart (gradients, snapshots)."""
    diverged = next(run for run in sample_runs if "learning_rate_too_high" in run.id)
    figures = chart_figures(open_page(SAMPLE_ROOT, page, run_id=diverged.id))
    kinds = {trace.get("type", "scatter") for figure in figures for trace in figure["data"]}
    assert len(figures) >= 2 and "scatter" in kinds
    assert not [kind for kind in kinds if kind.endswith("gl") or kind in ("scatter3d", "surface", "mesh3d")], kinds


def test_the_run_header_follows_status_json_at_the_next_refresh(runs_root):
    writer = RunWriter(runs_root, name="ending", flush_interval=60)
    writer.log("batch", {"step": 1, "epoch": 0, "batch": 0, "time": 1.0, "loss": 0.5, "batch_loss": 0.5})
    writer.update_status(epoch=0, epochs=2, step=1, steps_per_epoch=2)
    writer.flush()
    run_id = os.path.basename(writer.run_dir)
    at = open_page(runs_root, "views/run.py", run_id=run_id)
    assert [m.value for m in at.markdown if "-badge[" in m.value] == [":blue-badge[running]"]
    writer.close()  # status.json replaced (atomically) with the final status
    # The next script run, in a new session: AppTest cannot rerun one whose run picker's labels (which carry the
    # status) changed; the runs and their readers are the ones the first session used (test_browser_truth.py
    # checks the live header of one browser session).
    at = open_page(runs_root, "views/run.py", run_id=run_id)
    assert [m.value for m in at.markdown if "-badge[" in m.value] == [":green-badge[finished]"]


@pytest.mark.parametrize("epochs", [1, 0])
def test_run_page_draws_loss_the_key_metric_and_the_learning_rate_first(runs_root, epochs):
    writer = RunWriter(runs_root, name="ordered", meta={"options": {"monitor": "val_zeta"}})
    for step in range(1, 4):
        writer.log("batch", {"step": step, "epoch": 0, "batch": step - 1, "time": 1.0, "alpha": 0.5,
                             "batch_alpha": 0.5, "loss": 1.0 / step, "batch_loss": 1.0 / step, "lr": 0.01})
    if epochs:
        writer.log("epoch", {"epoch": 0, "step": 3, "time": 2.0, "alpha": 0.5, "loss": 0.5, "val_loss": 0.6,
                             "zeta": 0.1, "val_zeta": 0.2})
    writer.close()
    at = open_page(runs_root, "views/run.py", run_id=os.path.basename(writer.run_dir))
    titles = [figure["layout"]["title"]["text"] for figure in chart_figures(at)]
    if epochs:
        assert titles == ["loss", "zeta", "learning rate per batch", "alpha", "loss per batch", "alpha per batch"]
    else:  # before the first epoch ends: the batch charts, loss and the learning rate first
        assert titles == ["loss per batch", "learning rate per batch", "alpha per batch"]
