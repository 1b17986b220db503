"""Reading run folders robustly, the launch command line, and the Train/Errors figure builders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cropcore.constants import CLASSES
from dashboard import launch, model_charts, runs_view


def write_run(folder: Path, state: str = "done", pid: int | None = None, predictions: bool = True) -> Path:
    """A minimal run folder following the contract."""
    folder.mkdir(parents=True)
    config = {"model": "TempCNN", "level": "L1C", "mode": "evaluation1", "train_regions": ["frh01", "frh02", "frh03"],
              "test_regions": ["frh04"], "epochs": 3, "simulated": True, "root": str(folder)}
    status = {"state": state, "pid": pid, "started": "2026-01-02T03:04:05+00:00", "updated": "x", "epoch": 2,
              "epochs": 3, "error": None, "eta_seconds": 12.5}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "log.csv").write_text("epoch,train_loss,test_loss,overall_accuracy,average_accuracy,weighted_f1,kappa,seconds\n"
                                    "1,1.5,1.6,0.5,0.4,0.45,0.3,2.0\n2,1.2,1.3,0.6,0.5,0.55,0.4,2.0\n")
    (folder / "metrics.json").write_text(json.dumps({"regions": {"frh04": {
        "overall_accuracy": 0.6, "average_accuracy": 0.5, "weighted_f1": 0.55, "kappa": 0.4}}}))
    if predictions:
        rng = np.random.default_rng(0)
        probabilities = rng.dirichlet(np.ones(9), size=20).astype("float32")
        table = pd.DataFrame({"id": np.arange(20), "region": "frh04", "true": rng.integers(0, 9, 20),
                              "predicted": probabilities.argmax(1)})
        for k, name in enumerate(CLASSES):
            table[f"prob_{name}"] = probabilities[:, k]
        table.to_parquet(folder / "predictions.parquet")
    return folder


def test_done_run(tmp_path: Path) -> None:
    run = runs_view.read_run(write_run(tmp_path / "a"))
    assert run.state == "done" and run.readable and run.has_predictions
    assert run.scores["overall_accuracy"] == pytest.approx(0.6)
    assert run.test_regions == ("frh04",) and run.data == "simulated"
    table = runs_view.runs_table([run])
    assert table.loc[0, "OA"] == pytest.approx(0.6) and table.loc[0, "epoch"] == "2/3"
    assert table.loc[0, "started"] == "2026-01-02 03:04:05 UTC"


def test_running_run_with_dead_pid_is_failed(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    run = runs_view.read_run(write_run(tmp_path / "dead", state="running", pid=process.pid))
    assert run.state == "failed" and "stopped" in run.error
    alive = runs_view.read_run(write_run(tmp_path / "alive", state="running", pid=os.getpid()))
    assert alive.state == "running"


@pytest.mark.parametrize("damage", ["half-json", "no-status", "old-format", "not-object"])
def test_broken_folders_are_unreadable(tmp_path: Path, damage: str) -> None:
    folder = write_run(tmp_path / damage)
    if damage == "half-json":
        (folder / "status.json").write_text('{"state": "runn')
    elif damage == "no-status":
        (folder / "status.json").unlink()
    elif damage == "old-format":
        (folder / "status.json").write_text(json.dumps({"finished": True}))
    else:
        (folder / "config.json").write_text("[1, 2]")
    run = runs_view.read_run(folder)
    assert run.state == runs_view.UNREADABLE and not run.readable and run.error
    assert runs_view.runs_table([run]).loc[0, "status"] == runs_view.UNREADABLE


def test_list_runs_skips_hidden_and_sorts_newest_first(tmp_path: Path) -> None:
    write_run(tmp_path / "r1")
    newer = write_run(tmp_path / "r2")
    status = json.loads((newer / "status.json").read_text())
    (newer / "status.json").write_text(json.dumps({**status, "started": "2027-01-01T00:00:00+00:00"}))
    (tmp_path / ".launches").mkdir()
    (tmp_path / "stray-file.txt").write_text("x")
    assert [run.run_id for run in runs_view.list_runs(tmp_path)] == ["r2", "r1"]
    assert runs_view.list_runs(tmp_path / "missing") == []


def test_launch_record_without_folder_shows_its_error(tmp_path: Path) -> None:
    launches = tmp_path / runs_view.LAUNCHES_DIR
    launches.mkdir()
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    (launches / "x.log").write_text("starting\ncropcore train: error: no data at /nowhere\n")
    (launches / "x.json").write_text(json.dumps({"pid": process.pid, "model": "LSTM", "log": str(launches / "x.log")}))
    (run,) = runs_view.list_runs(tmp_path)
    assert run.state == "failed" and "no data" in run.error


def test_read_log_tolerates_partial_files(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "a")
    assert list(runs_view.read_log(folder)["epoch"]) == [1, 2]
    (folder / "log.csv").write_text("epoch,train_loss\n1,0.5\n2,")
    assert len(runs_view.read_log(folder)) == 2
    (folder / "log.csv").write_text("")
    assert runs_view.read_log(folder).empty
    assert runs_view.read_log(tmp_path / "nothing").empty


def test_read_predictions_checks_columns(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "a")
    predictions = runs_view.read_predictions(folder)
    expected = predictions[[f"prob_{name}" for name in CLASSES]].to_numpy().max(axis=1)
    assert np.allclose(predictions["confidence"], expected)
    pd.DataFrame({"id": [1]}).to_parquet(folder / "predictions.parquet")
    with pytest.raises(ValueError, match="lacks"):
        runs_view.read_predictions(folder)
    (folder / "predictions.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(ValueError, match="unreadable"):
        runs_view.read_predictions(folder)
    with pytest.raises(ValueError, match="no predictions"):
        runs_view.read_predictions(tmp_path / "missing")


def test_format_eta() -> None:
    assert runs_view.format_eta(None) == "–"
    assert runs_view.format_eta(5) == "5 s"
    assert runs_view.format_eta(65) == "1 min 05 s"
    assert runs_view.format_eta(3700) == "1 h 01 min"


def test_train_request_argv() -> None:
    network = launch.TrainRequest("TempCNN", "L1C", "evaluation1", "/d", "/r", 3, 256, 1e-3, 1e-6)
    argv = network.argv()
    assert argv[:4] == [sys.executable, "-m", "cropcore", "train"]
    assert argv[argv.index("--epochs") + 1] == "3" and argv[argv.index("--learning-rate") + 1] == "0.001"
    forest = launch.TrainRequest("RandomForest", "L2A", "validation", "/d", "/r", 3, 256, 1e-3, 0.0).argv()
    assert "--epochs" not in forest and "--model" in forest


def test_launch_is_detached_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = "import time; print('hello', flush=True); time.sleep(0.5)"
    monkeypatch.setattr(launch.TrainRequest, "argv", lambda self: [sys.executable, "-c", script])
    request = launch.TrainRequest("TempCNN", "L1C", "evaluation1", "/d", str(tmp_path), 1, 8, 1e-3, 0.0)
    started = launch.launch(request)
    assert os.getsid(started.pid) == started.pid  # its own session: survives the app and its tab
    launch._CHILDREN[-1].wait(timeout=30)
    assert Path(started.log).read_text().strip() == "hello"
    record = json.loads(Path(started.record).read_text())
    assert record["pid"] == started.pid and record["model"] == "TempCNN"
    launch.request_cancel(tmp_path)
    assert (tmp_path / "cancel").exists()


def test_confusion_builders() -> None:
    predictions = pd.DataFrame({"region": ["frh04"] * 6 + ["frh01"] * 2, "true": [0, 0, 1, 1, 1, 2, 0, 1],
                                "predicted": [0, 1, 1, 0, 0, 2, 0, 1], "id": range(8), "confidence": np.linspace(0, 1, 8)})
    scores = model_charts.region_scores(predictions)
    assert list(scores["region"]) == ["frh01", "frh04"]
    assert scores.set_index("region").loc["frh01", "overall_accuracy"] == 1.0
    confusion = model_charts.region_confusions(predictions)["frh04"]
    pairs = model_charts.confused_pairs(confusion)
    assert (pairs.iloc[0]["true"], pairs.iloc[0]["predicted"], pairs.iloc[0]["parcels"]) == ("wheat", "barley", 2)
    assert pairs.iloc[0]["share of true class"] == pytest.approx(2 / 3)
    normalised = model_charts.normalise_rows(confusion)
    assert np.allclose(normalised[:3].sum(axis=1), 1) and normalised[5].sum() == 0
    heatmap = model_charts.confusion_heatmap(confusion, normalised=True)
    assert list(heatmap.data[0].x) == list(CLASSES)
    parcels = model_charts.pair_parcels(predictions, "frh04", "wheat", "barley")
    assert list(parcels["id"]) == [3, 4]
    per_class = model_charts.per_class_table(confusion)
    assert per_class.loc[1, "support"] == 3
    assert len(model_charts.per_class_bars(per_class).data) == 3


def test_table2_layout_and_bars() -> None:
    table = model_charts.table2({"runA": {"overall_accuracy": 0.8, "average_accuracy": 0.6, "weighted_f1": 0.7,
                                          "kappa": 0.5}, "runB": {"overall_accuracy": 0.7}})
    assert list(table.index) == list(model_charts.TABLE2_ROWS.values())
    assert list(table.columns) == ["runA", "runB"] and np.isnan(table.loc["Cohen's kappa", "runB"])
    figure = model_charts.comparison_bars(table)
    assert {trace.name for trace in figure.data} == {"runA", "runB"}


def test_training_curves() -> None:
    log = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "test_loss": [1.1, 0.7],
                        "overall_accuracy": [0.5, 0.6]})
    assert [trace.name for trace in model_charts.loss_figure(log).data] == ["train loss", "test loss"]
    assert [trace.name for trace in model_charts.score_figure(log).data] == ["overall accuracy"]
