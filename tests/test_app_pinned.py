"""Dashboard behaviours pinned to exact values: user text in the attention box, the ETA, hparams that differ, the
full-resolution CSV export. Pages run in Streamlit's AppTest; markdown is rendered by a CommonMark parser to see what
the user would see. docs/testing.md lists the mutation each test was shown to catch.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import time

import pandas as pd
import pytest
from markdown_it import MarkdownIt
from page_charts import open_page
from run_factory import make_run

from kerascope import RunStore, RunWriter
from kerascope.app import tables  # the CSV export behind the Compare page's download button (Streamlit-free)

# Markdown, Streamlit directives (:red[...], :emoji:, $math$) and HTML, all in text a user wrote.
USER_NAME = "*stars* _under_ [link](http://x.test) `tick` <b>bold</b> ~~gone~~ :red[x] $x^2$ # no heading"
USER_REASON = "ValueError: **boom** | pipe :smile: \\ back <img src=x onerror=alert(1)> 1. item"


def rendered(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("strikethrough").render(markdown)


def test_user_text_in_the_runs_attention_box_stays_text(runs_root):
    writer = RunWriter(runs_root, name=USER_NAME)
    writer.close("failed", reason=USER_REASON)
    at = open_page(runs_root, "views/runs.py")
    boxes = [w.value for w in at.warning if "Runs that need attention" in w.value]
    assert len(boxes) == 1
    body = boxes[0]
    # As CommonMark renders it: the name in the box's own bold, every character of the user's text as text.
    expected = f"<li><strong>{html.escape(USER_NAME, quote=False)}</strong> (✗ failed): " \
               f"{html.escape(USER_REASON, quote=False)}</li>"
    assert expected in rendered(body)
    # Streamlit's own extensions are not CommonMark: their markers must reach it escaped.
    assert not re.search(r"(?<!\\)(:[a-z]+\[|:smile:|\$)", body)


def test_user_text_in_the_run_pages_events_table_stays_text(runs_root):
    writer = RunWriter(runs_root, name="events")
    writer.event("warning", USER_REASON, step=7, epoch=0)
    writer.event(USER_NAME, "a kind a user named", step=8, epoch=1)
    writer.close("finished")
    at = open_page(runs_root, "views/run.py", run_id=os.path.basename(writer.run_dir))
    table = next(block.value for block in at.markdown if block.value.startswith("| time (UTC) |"))
    html_table = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(table)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html_table)
    # One row per event and five cells per row, newest first: a "|" in the text splits no cell.
    assert len(cells) == 5 * len(RunStore(runs_root).runs()[0].events())
    assert html.escape(USER_NAME, quote=False) in cells and html.escape(USER_REASON, quote=False) in cells
    assert not re.search(r"(?<!\\)(:[a-z]+\[|:smile:|\$)", table)


def test_a_run_with_a_heartbeat_seconds_old_reads_running_on_the_runs_page(runs_root):
    writer = RunWriter(runs_root, name="training now", flush_interval=3600.0)
    try:
        path = os.path.join(writer.run_dir, "status.json")
        with open(path, encoding="utf-8") as f:
            status = json.load(f)
        status["heartbeat"] = time.time() - 10.0
        with open(path, "w", encoding="utf-8") as f:
            json.dump(status, f)
        at = open_page(runs_root, "views/runs.py")
        row = at.dataframe[0].value.set_index("name").loc["training now"]
        assert row["status"] == "▶ running" and row["reason"] == ""
        assert not [w for w in at.warning if "Runs that need attention" in w.value]
    finally:
        writer.close()


def seconds(text: str) -> int:
    """format_seconds' text back to seconds: "8 min 20 s" -> 500."""
    units = {"h": 3600, "min": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+) (h|min|s)\b", text))


def test_the_eta_of_a_live_run_is_the_time_left_at_its_pace(runs_root):
    started = time.time() - 300.0
    writer = RunWriter(runs_root, name="eta", flush_interval=3600.0)
    try:
        step = 0
        for epoch, batches in ((0, 10), (1, 5)):  # epoch 0 done, epoch 1 half-way: 1.5 of 4 epochs in 300 s
            for batch in range(batches):
                step += 1
                writer.log("batch", {"step": step, "epoch": epoch, "batch": batch, "time": started + step, "loss": 1.0})
        writer.update_status(started=started, epoch=1, epochs=4, steps_per_epoch=10, step=step)
        writer.flush()
        before = time.time()
        at = open_page(runs_root, "views/runs.py")
        after = time.time()
        row = at.dataframe[0].value.set_index("name").loc["eta"]
        assert row["progress"] == pytest.approx(100 * 1.5 / 4)  # shown in whole percents
        assert row["where"] == "epoch 2/4 · step 15"
        # 2.5 epochs left at 200 s per epoch: 500 s, plus what the page took to open.
        left = 2.5 / 1.5
        assert (before - started) * left - 1 <= seconds(row["ETA"]) <= (after - started) * left + 1
        run_page = open_page(runs_root, "views/run.py", run_id=writer.run_id)
        shown = next(p.proto.text for p in run_page.get("progress"))
        assert "epoch 2/4 · step 15 · ETA " in shown
        eta_text = shown.split("ETA ")[1].split(" · ")[0]
        assert (before - started) * left - 1 <= seconds(eta_text) <= (time.time() - started) * left + 1
    finally:
        writer.close()


def test_only_hparams_that_differ_are_highlighted(runs_root):
    ids = [os.path.basename(make_run(runs_root, name, hparams=hparams, epochs=2, steps_per_epoch=3, seed=i))
           for i, (name, hparams) in enumerate([
               ("a", {"lr": 0.01, "units": 32, "optimizer": "adam"}),
               ("b", {"lr": 0.001, "units": 32, "optimizer": "adam"}),
               ("c", {"lr": 0.01, "units": 32, "optimizer": "adam", "dropout": 0.1}),
           ])]
    at = open_page(runs_root, "views/compare.py", compare_ids=ids)
    table = at.dataframe[0]
    columns = list(table.value.columns)
    assert sorted(columns) == ["dropout", "lr", "optimizer", "units"]
    styles = table.proto.arrow_data.styler.styles
    highlighted = {columns[int(i)] for i in re.findall(r"_col(\d+)\b", styles)}
    assert highlighted == {"lr", "dropout"}  # units and optimizer are the same in every run
    assert "background-color" in styles
    assert "2 of 4 hparams differ" in " ".join(c.value for c in at.caption)
    at.toggle(key="compare_only_diff").set_value(True).run()
    assert sorted(at.dataframe[0].value.columns) == ["dropout", "lr"]


def test_csv_export_keeps_every_value_of_a_series_longer_than_the_display_cap(runs_root):
    run_dir = make_run(runs_root, "long", epochs=2, steps_per_epoch=1300)  # 2,600 batches, above 2,000 points
    run = RunStore(runs_root).run(os.path.basename(run_dir))
    frame = pd.read_csv(io.BytesIO(tables.series_csv([run], "batch_loss", "batch")))
    assert len(frame) == 2600
    assert frame["step"].tolist() == list(range(1, 2601))
    recorded = run.batch_metrics()
    assert frame["value"].tolist() == recorded["batch_loss"].tolist()  # exact: nothing resampled or rounded
    assert frame["time"].tolist() == recorded["time"].tolist()
