"""app/formatting.py on known inputs: status labels, progress text and fraction, ETA, durations, sizes, numbers, and
markdown escaping of user text."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kerascope import RunStore, RunWriter
from kerascope.app import formatting
from kerascope.monitor.run_info import Divergence, Overview, RunProgress, Stop


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real run (progress() reads only the overview it is given; duration() falls back to the run's creation)."""
    root = tmp_path_factory.mktemp("runs")
    writer = RunWriter(root, "fmt run", flush_interval=3600)
    writer.close()
    return RunStore(root).run(writer.run_id)


def overview(status="running", divergence=None, stop=None, best_epoch=None, last_epoch=None, last_step=None,
             **progress) -> Overview:
    return Overview(status=status, reason=None, progress=RunProgress(**progress), divergence=divergence, stop=stop,
                    best_epoch=best_epoch, last_epoch=last_epoch, last_step=last_step, metrics={})


@pytest.mark.parametrize(("view", "fraction", "text"), [
    # epoch 1 of 4, half of it done since the last epoch record (step 10)
    (overview(epoch=1, epochs=4, step=15, steps_per_epoch=10, last_epoch=0, last_step=10), 1.5 / 4,
     "epoch 2/4 · step 15"),
    (overview(epoch=1, epochs=4, step=1234, steps_per_epoch=10, last_epoch=0, last_step=1229), 1.5 / 4,
     "epoch 2/4 · step 1,234"),
    # no record of the previous epoch: whole epochs counted from step 0
    (overview(epoch=2, epochs=4, step=25, steps_per_epoch=10), 2.5 / 4, "epoch 3/4 · step 25"),
    (overview(epoch=2, epochs=4, step=25, steps_per_epoch=10, last_epoch=1), 2.5 / 4, "epoch 3/4 · step 25"),
    (overview(epoch=2, epochs=4, step=25, steps_per_epoch=10, last_epoch=0, last_step=3), 2.5 / 4,
     "epoch 3/4 · step 25"),
    (overview(epoch=1, epochs=4, step=20, steps_per_epoch=10, last_epoch=1, last_step=20), 2 / 4,
     "epoch 2/4 · step 20"),  # the epoch's record is in: it is done
    (overview(epoch=1, epochs=4, step=99, steps_per_epoch=10, last_epoch=0, last_step=10), 2 / 4,
     "epoch 2/4 · step 99"),  # at most the whole epoch
    (overview(epoch=1, epochs=4, step=5, steps_per_epoch=10, last_epoch=0, last_step=10), 1 / 4,
     "epoch 2/4 · step 5"),  # at least none of it
    (overview(epoch=1, epochs=4, step=15, last_epoch=0, last_step=10), 1 / 4, "epoch 2/4 · step 15"),  # unsized
    (overview(epoch=1, epochs=4, step=15, steps_per_epoch=0, last_epoch=0, last_step=10), 1 / 4,
     "epoch 2/4 · step 15"),
    (overview(epoch=1, epochs=4, steps_per_epoch=10, last_epoch=0, last_step=10), 1 / 4, "epoch 2/4"),
    (overview(epoch=6, epochs=4), 1.0, "epoch 4/4"),
    (overview(epoch=1, epochs=4, step=2, steps_per_epoch=1, last_epoch=0, last_step=1), 2 / 4,
     "epoch 2/4 · step 2"),  # one step per epoch
    (overview("finished", epoch=0, epochs=1), 1.0, "epoch 1/1"),
    (overview(epoch=0, epochs=0, step=3), None, "step 3"),
    (overview(epoch=0, step=3), None, "step 3"),
    (overview(epochs=3, step=0), None, "step 0"),
    (overview(), None, "no progress recorded yet"),
    (overview("finished", epoch=3, epochs=4, step=40), 1.0, "epoch 4/4 · step 40"),
    (overview("finished", epoch=1, epochs=4, step=20), 2 / 4, "epoch 2/4 · step 20"),
    (overview("stale", epoch=1, epochs=4, step=15, steps_per_epoch=10, last_epoch=0, last_step=10), 1.5 / 4,
     "epoch 2/4 · step 15"),
    (overview("finished", stop=Stop(2, False), best_epoch=1, epoch=2, epochs=10, step=30), None,
     "stopped early at epoch 3 of 10 (best epoch 2) · step 30"),
    (overview("finished", stop=Stop(2, False), best_epoch=0, epoch=2, step=30), None,
     "stopped early at epoch 3 (best epoch 1) · step 30"),
    (overview("finished", stop=Stop(2, False), epoch=2, epochs=10), None, "stopped early at epoch 3 of 10"),
    (overview("finished", stop=Stop(2, True), epoch=2, epochs=10), 3 / 10, "epoch 3/10"),  # a NaN guard
    (overview("running", stop=Stop(2, False), epoch=2, epochs=10), 2 / 10, "epoch 3/10"),
    (overview("interrupted", stop=Stop(2, False), epoch=2, epochs=10), 2 / 10, "epoch 3/10"),
    (overview("diverged", divergence=Divergence("loss", "nan", 45, 4), epoch=4, epochs=10, step=45), None,
     "diverged at epoch 5 of 10 · step 45"),
    (overview("diverged", divergence=Divergence("loss", "nan", 45, 4), epoch=4), None, "diverged at epoch 5"),
    (overview("diverged", divergence=Divergence("loss", "nan", 45, None), stop=Stop(4, False), epoch=4, epochs=10),
     None, "stopped early at epoch 5 of 10"),
    (overview("diverged", stop=Stop(4, True), epoch=4, epochs=10), 4 / 10, "epoch 5/10"),
    (overview("failed", divergence=Divergence("loss", "nan", 45, 4), epoch=4, epochs=10), 4 / 10, "epoch 5/10"),
])
def test_progress_fraction_and_text(run, view, fraction, text):
    shown = formatting.progress(run, view)
    assert shown.fraction == (None if fraction is None else pytest.approx(fraction))
    assert shown.text == text
    if view.status != "running":
        assert shown.eta_s is None


def test_the_eta_is_the_time_left_at_the_runs_pace(run):
    before = time.time()
    view = overview(epoch=1, epochs=4, step=15, steps_per_epoch=10, last_epoch=0, last_step=10, started=before - 300)
    eta = formatting.progress(run, view).eta_s
    after = time.time()
    # 1.5 of 4 epochs in 300 s: 2.5 epochs left at 200 s each
    assert (before - (before - 300)) * 2.5 / 1.5 <= eta <= (after - (before - 300)) * 2.5 / 1.5
    assert formatting.progress(run, overview(epoch=1, epochs=4, step=15)).eta_s is None  # no start
    assert formatting.progress(run, overview(epoch=0, epochs=4, started=before)).eta_s is None  # nothing done yet


def test_progress_reads_the_runs_overview_when_given_none(runs_root):
    writer = RunWriter(runs_root, "live", flush_interval=3600)
    try:
        writer.update_status(epoch=0, epochs=2, step=7)
        writer.flush()
        shown = formatting.progress(RunStore(runs_root).run(writer.run_id))
        assert (shown.fraction, shown.text) == (0.0, "epoch 1/2 · step 7")
    finally:
        writer.close()


def test_duration_runs_from_the_start_to_the_end_or_the_heartbeat(run):
    assert formatting.duration(run, overview(started=100.0, ended=160.5, heartbeat=170.0)) == 60.5
    assert formatting.duration(run, overview(started=100.0, heartbeat=130.0)) == 30.0
    assert formatting.duration(run, overview(started=100.0, ended=90.0)) == 0.0
    assert formatting.duration(run, overview(started=100.0)) is None
    assert formatting.duration(run, overview(heartbeat=run.created + 12.0)) == pytest.approx(12.0)  # from creation
    ended = run.progress.ended
    assert formatting.duration(run) == pytest.approx(max(ended - run.progress.started, 0.0))


@pytest.mark.parametrize(("seconds", "text"), [
    (None, ""), (0, "0 s"), (59.4, "59 s"), (59.5, "1 min 00 s"), (187, "3 min 07 s"), (3599, "59 min 59 s"),
    (3600, "1 h 00 min"), (7500, "2 h 05 min"), (90061, "25 h 01 min"),
])
def test_format_seconds(seconds, text):
    assert formatting.format_seconds(seconds) == text


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 B"), (812, "812 B"), (1023, "1,023 B"), (1024, "1.0 KB"), (1536.0, "1.5 KB"), (34202, "33.4 KB"),
    (1024**2, "1.0 MB"), (1288490189, "1.2 GB"), (5 * 1024**4, "5,120.0 GB"),
    (True, "—"), ("12", "—"), (None, "—"),
])
def test_size_text(size, text):
    assert formatting.size_text(size) == text


def test_count_text():
    assert formatting.count_text(None) == "—"
    assert formatting.count_text(1234567) == "1,234,567"


@pytest.mark.parametrize(("value", "text"), [
    (None, ""), (True, "True"), ("abc", "abc"), (float("nan"), "NaN"), (float("inf"), "Inf"), (float("-inf"), "-Inf"),
    (0, "0"), (0.0, "0"), (0.5694743, "0.5695"), (123456, "1.235e+05"), (0.001, "0.001"), (-0.001, "-0.001"),
    (0.000999, "9.99e-04"), (8.1e-05, "8.1e-05"), (-5e-4, "-5e-04"), (1e-4, "1e-04"), (2.5e-4, "2.5e-04"),
    (1.2346e-4, "1.235e-04"), (np.float32(0.25), "0.25"), (np.int64(3), "3"),
])
def test_number_text(value, text):
    assert formatting.number_text(value) == text


def test_numbers_text_spells_each_value_as_number_text():
    values = [0.5694743, 8.1e-05, float("nan"), float("inf"), float("-inf"), 0.0, 1e-3, 8.1e-05, 123456.0, -2e-4,
              -0.5]
    assert formatting.numbers_text(np.array(values)) == [
        "0.5695", "8.1e-05", "NaN", "Inf", "-Inf", "0", "0.001", "8.1e-05", "1.235e+05", "-2e-04", "-0.5"]
    assert formatting.numbers_text([[1, 2], [3, 4]]) == ["1", "2", "3", "4"]
    assert formatting.numbers_text([0.25, 1.0]) == ["0.25", "1"]
    assert formatting.numbers_text([]) == []


def test_md_escape_makes_every_markdown_character_literal():
    special = "\\`*_{}[]()#+-.!|<>~$:&=\"'"
    assert formatting.md_escape(special) == "".join("\\" + c for c in special)
    assert formatting.md_escape("a *b*\nc") == "a \\*b\\* c"
    assert formatting.md_escape(3.5) == "3\\.5"
    assert formatting.md_escape("plain words 42") == "plain words 42"


@pytest.mark.parametrize(("status", "label"), [
    ("running", "▶ running"), ("finished", "✓ finished"), ("failed", "✗ failed"), ("interrupted", "■ interrupted"),
    ("stale", "⚠ stale"), ("broken", "⚠ broken"), ("diverged", "↯ diverged"), ("odd", "? odd"),
])
def test_status_label(status, label):
    assert formatting.status_label(status) == label


def test_run_label_names_the_run_its_status_and_short_id(run):
    assert formatting.run_label(run) == f"fmt run · ✓ finished · {run.id[-4:]}"
