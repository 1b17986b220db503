"""AppTest of the Train, Map and Errors pages from the entry file, with real trainings on the tiny demo.

The first-launch path (no model yet -> one click -> results) and a run launched from the Train page are
both real `cropcore train` processes (a Random Forest and a 1-epoch TempCNN on the tiny demo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cropcore.data import layout
from dashboard import loaders, runs_view

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TRAIN, MAP, ERRORS = "app_pages/train.py", "app_pages/map.py", "app_pages/errors.py"
TRAINING_TIMEOUT = 150


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory: pytest.TempPathFactory, sim_root: Path) -> Path:
    """A runs folder inside the data folder, shared by this module's tests (they build on each other)."""
    folder = layout.data_dir() / "runs-apptest"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(loaders.RUNS_ENV, str(folder))
        yield folder


def new_app(page: str | None = None) -> AppTest:
    """A fresh session of the app, opened directly on ``page`` (the entry page when None)."""
    at = AppTest.from_file(APP, default_timeout=120)
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """All messages, captions and markdown of the page as one string."""
    elements = [*at.info, *at.error, *at.warning, *at.success, *at.caption, *at.markdown]
    return "\n".join(str(element.value) for element in elements)


def wait_for_runs(folder: Path, count: int) -> list[runs_view.RunInfo]:
    """Poll the runs folder until ``count`` runs have finished (or fail the test with their errors)."""
    deadline = time.monotonic() + TRAINING_TIMEOUT
    while time.monotonic() < deadline:
        runs = [run for run in runs_view.list_runs(folder) if run.state not in ("running", runs_view.STARTING)]
        if len(runs) >= count:
            failed = [f"{run.run_id}: {run.error}" for run in runs if run.state != "done"]
            assert not failed, failed
            return runs
        time.sleep(1)
    pytest.fail(f"training did not finish within {TRAINING_TIMEOUT} s: {runs_view.list_runs(folder)}")


def test_first_launch_and_a_train_page_run_together(runs_folder: Path) -> None:
    """No model yet: Map and Errors offer the quick demo; one click starts it, and a 1-epoch TempCNN
    launched from the Train page at the same time also finishes; both are listed, then mapped."""
    at = open_page(new_app(MAP), MAP)
    assert "No trained model yet" in texts(at)
    errors = open_page(at, ERRORS)
    assert "No trained model yet" in texts(errors)
    errors.button(key="errors_quickdemo").click().run()
    assert not errors.exception

    at = open_page(new_app(TRAIN), TRAIN)
    at.button(key="train_quick").click().run()
    assert at.selectbox(key="train_model").value == "TempCNN"
    at.selectbox(key="train_model").select("LSTM").run()
    assert at.number_input(key="train_lr").value > 0  # prefilled from the paper's values
    at.selectbox(key="train_model").select("TempCNN").run()
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_batch_size").set_value(64)
    at.button(key="train_launch").click().run()
    assert not at.exception and "Started TempCNN" in texts(at)

    runs = wait_for_runs(runs_folder, 2)
    at.run()
    table = at.dataframe[0].value
    assert set(table["status"]) == {"done"} and {"TempCNN", "RandomForest"} <= set(table["model"])
    tempcnn = next(run for run in runs if run.model == "TempCNN")
    at.selectbox(key="train_watch").select(tempcnn.run_id).run()
    assert not at.exception and at.get("plotly_chart")
    at = open_page(new_app(MAP), MAP)
    assert at.get("deck_gl_json_chart"), texts(at)


def test_train_page_shows_dead_and_broken_runs(runs_folder: Path) -> None:
    broken = runs_folder / "20000101-000000-old-run"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "status.json").write_text('{"state": "runn')
    dead = runs_folder / "20000101-000001-dead-run"
    dead.mkdir(exist_ok=True)
    (dead / "config.json").write_text(json.dumps({"model": "LSTM", "level": "L1C", "mode": "validation"}))
    (dead / "status.json").write_text(json.dumps({"state": "running", "pid": 999_999_999, "epoch": 1, "epochs": 9}))
    try:
        at = open_page(new_app(TRAIN), TRAIN)
        table = at.dataframe[0].value.set_index("run")
        assert table.loc[broken.name, "status"] == "unreadable"
        assert table.loc[dead.name, "status"] == "failed"
    finally:
        for folder in (broken, dead):
            for file in folder.iterdir():
                file.unlink()
            folder.rmdir()


def test_map_page_widgets(runs_folder: Path) -> None:
    at = open_page(new_app(MAP), MAP)
    for view in ("true", "correct", "confidence", "predicted"):
        at.radio(key="map_view").set_value(view).run()
        assert not at.exception and at.get("deck_gl_json_chart"), view
    at.multiselect(key="map_classes").select("wheat").run()
    at.radio(key="map_filter_by").set_value("true").run()
    at.radio(key="map_shape").set_value("points").run()
    at.radio(key="map_basemap").set_value("None (offline)").run()
    assert not at.exception and at.get("deck_gl_json_chart")
    deck = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    assert deck["layers"][0]["@@type"] == "ScatterplotLayer"
    assert all(row["true"] == "wheat" for row in deck["layers"][0]["data"])
    assert not at.get("download_button")  # exports are prepared only on request
    at.toggle(key="map_export_ready").set_value(True).run()
    assert not at.exception and len(at.get("download_button")) == 2
    runs = {run.model: run for run in runs_view.list_runs(runs_folder)}
    at.selectbox(key="map_run").select(runs["TempCNN"].label).run()
    assert not at.exception and at.get("deck_gl_json_chart")


def test_map_page_overview_image(runs_folder: Path) -> None:
    """The overview is one image painted on the server, recoloured per view; the page says what it lacks."""
    at = open_page(new_app(MAP), MAP)
    at.radio(key="map_basemap").set_value("None (offline)").run()
    at.radio(key="map_shape").set_value("overview").run()
    assert not at.exception
    layer, = json.loads(at.get("deck_gl_json_chart")[0].proto.json)["layers"]
    assert layer["@@type"] == "BitmapLayer" and layer["image"].startswith("data:image/png;base64,")
    assert "drawn as an overview image" in texts(at) and "Tooltips" in texts(at)
    at.radio(key="map_view").set_value("correct").run()
    recoloured, = json.loads(at.get("deck_gl_json_chart")[0].proto.json)["layers"]
    assert not at.exception and recoloured["image"] != layer["image"]


def test_map_page_imports_no_models(runs_folder: Path) -> None:
    """Drawing a run's map needs no network code: importing cropcore.models (torch) took 2 s of a fresh
    server's first map, even with the map itself on disk. (The dataset, read on a cache miss, uses torch.)"""
    script = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
              "at = AppTest.from_file(sys.argv[1], default_timeout=120)\nat.switch_page(sys.argv[2])\nat.run()\n"
              "assert not at.exception and at.get('deck_gl_json_chart'), at.exception\n"
              "print('cropcore.models' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, APP, MAP], capture_output=True, text=True, timeout=180,
                            env={**os.environ, loaders.RUNS_ENV: str(runs_folder)}, check=True)
    assert result.stdout.split()[-1] == "False"


def test_map_page_checkpoints_are_data_inside_the_data_folder(runs_folder: Path) -> None:
    at = open_page(new_app(MAP), MAP)
    at.radio(key="map_source").set_value("Checkpoint file").run()
    checkpoint = next(runs_folder.glob("*TempCNN*/checkpoint.pt")).relative_to(layout.data_dir())
    at.selectbox(key="map_checkpoint").select(str(checkpoint)).run()
    assert not at.exception and at.get("deck_gl_json_chart"), texts(at)
    (layout.data_dir() / "not-a-model.pt").write_bytes(b"definitely not a torch file")
    at = open_page(new_app(MAP), MAP)
    at.radio(key="map_source").set_value("Checkpoint file").run()
    at.selectbox(key="map_checkpoint").select("not-a-model.pt").run()
    assert not at.exception and "Not a usable checkpoint" in texts(at)


def test_typed_paths_stay_inside_the_data_folder(sim_root: Path) -> None:
    folder = layout.data_dir().resolve()
    assert loaders.inside_data_folder("runs/x/checkpoint.pt") == folder / "runs" / "x" / "checkpoint.pt"
    for outside in ("/etc/passwd", "../outside.pt", "runs/../../outside.pt"):
        with pytest.raises(ValueError, match="outside the data folder"):
            loaders.inside_data_folder(outside)


def test_errors_page_on_the_predictions(runs_folder: Path) -> None:
    at = open_page(new_app(ERRORS), ERRORS)
    assert len(at.get("plotly_chart")) >= 3
    scores = at.dataframe[0].value
    assert "overall_accuracy" in scores.columns and len(scores) >= 1
    at.selectbox(key="errors_pair").select(at.selectbox(key="errors_pair").options[-1]).run()
    assert not at.exception
    if at.selectbox(key="errors_parcel").options:
        at.selectbox(key="errors_parcel").select(at.selectbox(key="errors_parcel").options[-1]).run()
        assert not at.exception and at.get("deck_gl_json_chart")
    at.multiselect(key="errors_compare").unselect(at.multiselect(key="errors_compare").value[0]).run()
    assert not at.exception
    runs = {run.model: run for run in runs_view.list_runs(runs_folder)}
    at.selectbox(key="errors_run").select(runs["TempCNN"].label).run()
    assert not at.exception
