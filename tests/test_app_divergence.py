"""The "What went wrong" panel and the gradient charts, in AppTest, over a real diverged run (TF, tiny model)."""

from __future__ import annotations

import os

import keras
import pytest
from page_charts import chart_figures, open_page
from streamlit.testing.v1 import AppTest
from train_helpers import data

from kerascope import LiveMonitor, RunStore


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """A regression trained at LR 1e3 (a typo for 1e-3) with gradients every batch, stopped by TerminateOnNaN."""
    root = tmp_path_factory.mktemp("runs")
    x, y = data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu", name="hidden"),
                              keras.layers.Dense(1, name="out")], name="regression")
    model.compile(keras.optimizers.SGD(1e3), "mse")
    live = LiveMonitor(str(root), name="lr typo", gradient_data=(x[:32], y[:32].astype("float32")), gradient_freq=1,
                       activation_data=x[:32], system_freq=0)
    model.fit(x, y.astype("float32"), epochs=10, batch_size=32, verbose=0,
              callbacks=[live, keras.callbacks.TerminateOnNaN()])
    return root, os.path.basename(live.run_dir)


def panel_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_run_page_says_what_went_wrong(diverged):
    root, run_id = diverged
    at = open_page(root, "views/run.py", run_id=run_id)
    text = panel_text(at)
    assert "What went wrong" in text
    divergence = RunStore(str(root)).run(run_id).divergence
    assert divergence.step == 3 and "**When:** step 3" in text  # step 3's loss is infinite
    assert "**Learning rate:** 1000" in text
    # Step 3's update made every gradient non-finite; `out`'s norm had jumped most (about twice `hidden`'s jump).
    assert divergence.layer == "out" and "**First layer to break:** out" in text
    assert "**Evidence:**" in text
    loss = next(f for f in chart_figures(at) if f["layout"]["title"]["text"] == "loss per batch")
    marks = [trace for trace in loss["data"] if trace.get("name") == "divergence"]
    assert marks and "diverged · out" in str(marks)  # the lines, then their labels


def test_activations_page_draws_gradient_heatmap_and_lines_with_the_lr(diverged):
    root, run_id = diverged
    at = open_page(root, "views/activations.py", run_id=run_id)
    figures = {f["layout"]["title"]["text"]: f for f in chart_figures(at)}
    heatmap = figures["gradient norm per layer and step (log colour)"]
    assert heatmap["data"][0]["y"] == ["hidden", "out"]
    assert heatmap["data"][0]["colorbar"]["ticktext"][0].startswith("1e")
    layer = at.selectbox(key="gradient_layer").value
    lines = figures[f"{layer}: gradient norms and learning rate"]
    names = [trace["name"] for trace in lines["data"]]
    assert f"{layer}/kernel" in names and f"{layer}/bias" in names and "learning rate" in names
    assert lines["layout"]["yaxis"]["type"] == "log"
    at.selectbox(key="gradient_layer").select("out" if layer == "hidden" else "hidden").run()
    titles = [f["layout"]["title"]["text"] for f in chart_figures(at)]
    assert any(t.endswith(": gradient norms and learning rate") and not t.startswith(layer) for t in titles)


def test_a_run_without_gradients_says_how_to_record_them(tmp_path):
    x, y = data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(2, name="out")])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    live = LiveMonitor(str(tmp_path), system_freq=0)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[live])
    at = open_page(tmp_path, "views/activations.py", run_id=os.path.basename(live.run_dir))
    assert any("gradient_data=" in info.value for info in at.info)
    run_page = open_page(tmp_path, "views/run.py", run_id=os.path.basename(live.run_dir))
    assert not any("What went wrong" in m.value for m in run_page.markdown)
