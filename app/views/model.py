"""Model: parameter counts and size, the summary text, the graph and the layer table per training phase."""

from __future__ import annotations

import streamlit as st

from kerascope.app import widgets
from kerascope.monitor.reader import Run


def show_counts(run: Run) -> None:
    model = run.meta.get("model") if isinstance(run.meta.get("model"), dict) else {}
    columns = st.columns(4)
    columns[0].metric("Total parameters", widgets.count_text(model.get("total_params")))
    columns[1].metric("Trainable", widgets.count_text(model.get("trainable_params")))
    columns[2].metric("Non-trainable", widgets.count_text(model.get("non_trainable_params")))
    columns[3].metric("Weights size", widgets.size_text(model.get("size_bytes")))


def show_graph(run: Run) -> None:
    png = run.model_graph_png()
    dot = run.model_graph_dot()
    if png:
        st.image(png, caption="keras.utils.plot_model")
    elif dot:
        st.graphviz_chart(dot, width="content")
    else:
        st.info("No model graph recorded.")
    if dot:
        with st.expander("DOT source"):
            st.code(dot, language="dot")


def show_layers(run: Run) -> None:
    layers = run.layers()
    if not len(layers):
        st.info("No layer table recorded.")
        return
    phases = sorted(p for p in layers["phase"].dropna().unique())
    if len(phases) > 1:
        # One trainable column per fit() call makes freezing and unfreezing visible at a glance.
        table = layers.pivot_table(index=["name", "class"], columns="phase", values="trainable", aggfunc="last",
                                   sort=False)
        table.columns = [f"trainable (phase {int(p)})" for p in table.columns]
        last = layers[layers["phase"] == phases[-1]].set_index(["name", "class"])[["output_shape", "params"]]
        frame = last.join(table, how="outer").reset_index()
    else:
        frame = layers.drop(columns=["phase"])
    frame = frame.assign(output_shape=frame["output_shape"].map(lambda s: str(s) if s is not None else ""))
    st.dataframe(frame, hide_index=True, width="stretch")


def main() -> None:
    run = widgets.readable_run("model", "Model")
    if run is None:
        return
    show_counts(run)
    summary, graph = st.tabs(["Summary", "Graph"])
    with summary:
        text = run.model_summary()
        if text:
            st.code(text, language=None)
        else:
            st.info("No model summary recorded yet: it is written when fit() starts.")
    with graph:
        show_graph(run)
    st.subheader("Layers")
    show_layers(run)
    config = run.model_config()
    if config is not None:
        with st.expander("Model config (get_config)"):
            st.json(config, expanded=False)


main()
