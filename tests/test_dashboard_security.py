"""What a dashboard exposed to others must hold: user text in widget labels stays text, only the hosts the dashboard
is served as may open its WebSocket, and a deployment asks for a password before it sends any run data."""

from __future__ import annotations

import json
import os
import re

from run_factory import make_run
from streamlit.testing.v1 import AppTest

from kerascope.monitor import format as fmt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(REPO, "app", "streamlit_app.py")
TRACKER = "![t](http://tracker.example/track.png)"  # markdown that makes the browser fetch an image
MARKDOWN_IMAGE = re.compile(r"(?<!\\)!(?<!\\)\[[^\]]*(?<!\\)\]\(")


def open_page(root: str, page: str, **session: object) -> AppTest:
    os.environ["KERASCOPE_LOGDIR"] = root
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(page)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_user_text_in_widget_labels_is_escaped(runs_root):
    run_dir = make_run(runs_root, "labels", epochs=2, steps_per_epoch=2)
    run_id = os.path.basename(run_dir)
    with open(os.path.join(run_dir, fmt.EPOCH_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps({"epoch": 2, "step": 6, "time": 1.0, TRACKER: 0.5}) + "\n")
    checkpoint = "![c](track.png).keras"
    with open(os.path.join(run_dir, fmt.CHECKPOINT_DIR, checkpoint), "wb") as f:
        f.write(b"PK")
    with open(os.path.join(run_dir, fmt.CHECKPOINT_INDEX_FILE), "w", encoding="utf-8") as f:
        json.dump([{"epoch": 1, "step": 4, "path": f"checkpoints/{checkpoint}", "value": 0.1}], f)

    at = open_page(str(runs_root), "views/compare.py", compare_ids=[run_id])
    at.selectbox(key="compare_metric_epoch").select(TRACKER).run()
    assert not at.exception, [e.value for e in at.exception]
    export = at.get("download_button")[0].proto.label
    assert "tracker" in export and not MARKDOWN_IMAGE.search(export), export

    at = open_page(str(runs_root), "views/checkpoints.py", run_id=run_id)
    download = at.get("download_button")[0].proto.label
    assert "track" in download and not MARKDOWN_IMAGE.search(download), download
