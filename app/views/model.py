"""Model: parameter counts and size, the summary text, the graph and the layer table per training phase."""

from __future__ import annotations

import numbers

import pandas as pd
import streamlit as st

from kerascope.app import widgets
from kerascope.app.formatting import count_text, size_text
from kerascope.monitor import ModelInfo, Run

MISSING = "—"  # the one way a missing value reads on this page


def phase_counts(run: Run, phase: int | None) -> ModelInfo:
    """Parameter counts at fit() call `phase` (its phase event), or the latest model description."""
    model = run.model_info or ModelInfo()
    phases = run.phases()
    if phase is None or not len(phases) or "phase" not in phases:
        return model
    rows = phases[phases["phase"] == phase]
    if not len(rows):
        return model
    row = rows.iloc[-1]

    def count(name: str) -> int | None:
        value = row.get(name)
        return int(value) if isinstance(value, numbers.Real) and pd.notna(value) else None

    trainable, frozen = count("trainable_params"), count("non_trainable_params")
    total = trainable + frozen if trainable is not None and frozen is not None else model.total_params
    return ModelInfo(model.name, model.class_name, total, trainable, frozen, model.size_bytes)


def show_counts(model: ModelInfo) -> None:
    columns = st.columns(4)
    columns[0].metric("Total parameters", count_text(model.total_params))
    columns[1].metric("Trainable", count_text(model.trainable_params))
    columns[2].metric("Non-trainable", count_text(model.non_trainable_params))
    columns[3].metric("Weights size", size_text(model.size_bytes))


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


def show_layers(run: Run, phase: int | None) -> None:
    """The chosen phase's layer table in model order, with one trainable column per phase (freezing and unfreezing
    visible at a glance)."""
    layers = run.layers()
    if not len(layers):
        st.info("No layer table recorded.")
        return
    phases = sorted(int(p) for p in pd.to_numeric(layers["phase"], errors="coerce").dropna().unique())
    chosen = phase if phase in phases else (phases[-1] if phases else None)
    numeric = pd.to_numeric(layers["phase"], errors="coerce")
    frame = layers[numeric == chosen] if chosen is not None else layers
    frame = frame.drop(columns=["phase", "trainable"]).reset_index(drop=True)
    for each in phases:
        trainable = layers[numeric == each].drop_duplicates("name").set_index("name")["trainable"]
        frame[f"trainable (phase {each})" if len(phases) > 1 else "trainable"] = frame["name"].map(
            trainable).map(lambda value: MISSING if pd.isna(value) else ("yes" if value else "no"))
    frame["params"] = frame["params"].map(lambda count: MISSING if pd.isna(count) else f"{int(count):,}")
    frame = frame.map(lambda value: MISSING if value is None or (isinstance(value, float) and pd.isna(value))
                      else value if isinstance(value, str) else str(value))
    st.dataframe(frame, hide_index=True, width="stretch")


def main() -> None:
    run = widgets.readable_run("Model")
    if run is None:
        return
    phases = run.phases()
    numbers = [int(p) for p in pd.to_numeric(phases["phase"], errors="coerce").dropna()] if "phase" in phases else []
    phase = numbers[-1] if numbers else None
    if len(numbers) > 1:  # fine-tuning: each fit() call has its own trainable set
        phase = st.segmented_control("Phase (fit() call)", numbers, default=numbers[-1], key="model_phase",
                                     format_func=lambda p: f"phase {p}") or numbers[-1]
    show_counts(phase_counts(run, phase))
    summary, graph = st.tabs(["Summary", "Graph"])
    with summary:
        text = run.model_summary()
        if text and numbers and phase != numbers[-1]:
            st.caption(f"model.summary() is recorded at each fit() call and replaced: this is phase {numbers[-1]}'s.")
        if text:
            st.code(text, language=None)
        else:
            st.info("No model summary recorded yet: it is written when fit() starts.")
    with graph:
        show_graph(run)
    st.subheader("Layers")
    show_layers(run, phase)
    config = run.model_config()
    if config is not None:
        with st.expander("Model config (get_config)"):
            st.json(config, expanded=False)


main()
