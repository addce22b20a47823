"""Checkpoints: the saved .keras files of a run, with downloads served only from inside the runs root."""

from __future__ import annotations

import os
from collections.abc import Callable

import pandas as pd
import streamlit as st

from kerascope.app import widgets
from kerascope.app.formatting import md_escape, number_text, size_text
from kerascope.monitor import Run


def checkpoint_table(run: Run) -> pd.DataFrame:
    frame = run.checkpoints().copy()
    frame["size"] = frame["bytes"].map(size_text)
    frame["saved"] = pd.to_datetime(pd.to_numeric(frame["time"], errors="coerce"), unit="s").dt.floor("s")
    frame["best"] = frame["is_best"].map(lambda best: "★ best" if best is True else "")
    frame["epoch"] = pd.to_numeric(frame["epoch"], errors="coerce") + 1  # as Keras prints it: "Epoch 1/10"
    frame["value"] = frame["value"].map(number_text)
    return frame[["epoch", "step", "monitor", "value", "best", "size", "saved", "path"]]


def reader(run: Run, relpath: str) -> Callable[[], bytes]:
    """Bytes of a checkpoint, read when the user clicks (a deferred download keeps reruns cheap)."""

    def read() -> bytes:
        with run.open_file(relpath) as f:
            return f.read()

    return read


def download(run: Run, relpath: str) -> None:
    try:
        path = run.file_path(relpath)
    except (PermissionError, FileNotFoundError) as exc:
        st.error(md_escape(exc))
        return
    # Widget labels are markdown too: the file name is user text.
    st.download_button(f"Download {md_escape(os.path.basename(path))} ({size_text(os.path.getsize(path))})",
                       data=reader(run, relpath), file_name=f"{run.id}-{os.path.basename(path)}",
                       mime="application/octet-stream", icon=":material/download:", on_click="ignore")


def main() -> None:
    run = widgets.readable_run("Checkpoints")
    if run is None:
        return
    table = checkpoint_table(run)
    if not len(table):
        how = ' Pass `checkpoint="best"` (or "last", "all") to LiveMonitor to save them.'
        st.info("No checkpoints in this run." + ("" if run.options.checkpoint else how))
        return
    st.dataframe(table, hide_index=True, width="stretch")  # value: number_text's text
    paths = [str(path) for path in table["path"].dropna().unique()]
    if paths:
        relpath = st.selectbox("Checkpoint file", paths, key="checkpoint_file")
        download(run, relpath)
    st.caption("Checkpoints are Keras archives (`keras.saving.load_model`); the dashboard never loads them.")


main()
