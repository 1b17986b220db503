"""`cropcore train`, `evaluate` and `predict` end to end on the tiny simulated demo.

Networks are made small through ``--hparam`` so that each run takes a few seconds on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import torch

from cropcore.cli import main
from cropcore.constants import CLASSES
from cropcore.training import runs
from cropcore.training.loop import Hooks, NonFiniteLossError, resolve_config, train

SMALL = {"hidden_dims": 16}  # TempCNN at a fraction of its size
PREDICTION_COLUMNS = ["id", "region", "true", "predicted", *(f"prob_{name}" for name in CLASSES)]



pytestmark = pytest.mark.usefixtures("one_torch_thread")

def tiny(root: Path, out: Path, **settings) -> object:
    base = {"level": "L1C", "mode": "evaluation1", "root": str(root), "out": str(out), "epochs": 2,
            "batch_size": 64, "hparams": SMALL, "progress": False}
    return resolve_config("TempCNN", **{**base, **settings})


@pytest.fixture(scope="module")
def finished_run(sim_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    code = main(["train", "--model", "tempcnn", "--root", str(sim_root), "--out", str(out), "--epochs", "2",
                 "--batch-size", "64", "--hparam", "hidden_dims=16", "--run-name", "tiny", "--no-progress"])
    assert code == 0
    return out / "tiny"


def test_run_folder_follows_the_contract(finished_run: Path) -> None:
    names = {path.name for path in finished_run.iterdir()}
    assert {"config.json", "status.json", "log.csv", "checkpoint.pt", "metrics.json", "predictions.parquet"} <= names
    assert not [name for name in names if name.startswith(".")]  # no temporary files left
    config = runs.read_json(finished_run / "config.json")
    assert config["model"] == "TempCNN" and config["train_regions"] == ["frh01", "frh02", "frh03"]
    assert Path(config["root"]).is_absolute()  # re-scoring the run works from any folder
    assert config["test_regions"] == ["frh04"] and config["simulated"] is True
    assert config["learning_rate"] == pytest.approx(0.00023892874563871753)
    status = runs.read_status(finished_run)
    assert status["state"] == "done" and status["epoch"] == 2 and status["error"] is None
    log = pd.read_csv(finished_run / "log.csv")
    assert list(log.columns) == list(runs.LOG_COLUMNS) and log["epoch"].tolist() == [1, 2]
    metrics = runs.read_json(finished_run / "metrics.json")
    assert metrics["epoch"] == 2 and set(metrics["regions"]) == {"frh04"} and metrics["simulated"] is True
    report = metrics["regions"]["frh04"]
    expected = {"overall_accuracy", "average_accuracy", "weighted_f1", "kappa", "macro_f1", "per_class", "confusion"}
    assert expected <= set(report)
    assert report["overall_accuracy"] == pytest.approx(log["overall_accuracy"].iloc[-1])


def test_checkpoint_is_plain_data(finished_run: Path) -> None:
    payload = torch.load(finished_run / "checkpoint.pt", weights_only=True)
    assert payload["format"] == "cropcore-checkpoint" and payload["model"] == "TempCNN"
    assert (payload["input_dim"], payload["num_classes"], payload["sequence_length"]) == (13, 9, 45)
    assert payload["epoch"] == 2 and payload["hparams"]["hidden_dims"] == 16
    assert payload["band_order"][:2] == ["B1", "B2"] and "optimizer_state" in payload


def test_predictions_table(finished_run: Path, sim_root: Path) -> None:
    from cropcore.data import BreizhCrops

    table = pd.read_parquet(finished_run / "predictions.parquet")
    assert list(table.columns) == PREDICTION_COLUMNS
    assert len(table) == len(BreizhCrops("frh04", root=sim_root)) and table["id"].is_unique
    probabilities = table[PREDICTION_COLUMNS[4:]].to_numpy()
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    assert (table["predicted"] == probabilities.argmax(axis=1)).all()


def test_cancel_then_resume_equals_an_uninterrupted_run(sim_root: Path, tmp_path: Path, finished_run: Path) -> None:
    """Also proves repeatability: the same seed in a fresh run gives identical weights and scores."""
    hooks = Hooks(on_epoch_end=lambda epoch, run_dir: runs.request_cancel(run_dir) if epoch == 1 else None)
    stopped = train(tiny(sim_root, tmp_path), hooks=hooks)
    assert stopped.state == "cancelled" and runs.read_status(stopped.run_dir)["state"] == "cancelled"
    assert torch.load(stopped.run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert main(["train", "--resume", str(stopped.run_dir), "--no-progress"]) == 0
    assert runs.read_status(stopped.run_dir)["state"] == "done"
    resumed = torch.load(stopped.run_dir / "checkpoint.pt", weights_only=True)["model_state"]
    reference = torch.load(finished_run / "checkpoint.pt", weights_only=True)["model_state"]
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key
    pd.testing.assert_frame_equal(pd.read_csv(stopped.run_dir / "log.csv").drop(columns="seconds"),
                                  pd.read_csv(finished_run / "log.csv").drop(columns="seconds"))
    pd.testing.assert_frame_equal(pd.read_parquet(stopped.run_dir / "predictions.parquet"),
                                  pd.read_parquet(finished_run / "predictions.parquet"))


def test_validation_mode_reports_the_best_epoch_by_validation_loss(sim_root: Path, tmp_path: Path) -> None:
    result = train(tiny(sim_root, tmp_path, mode="validation", epochs=3, learning_rate=0.05,
                         batch_size=256))
    log = pd.read_csv(result.run_dir / "log.csv")
    best = int(log.loc[log["test_loss"].idxmin(), "epoch"])
    assert result.metrics["epoch"] == best and set(result.metrics["regions"]) == {"frh03"}
    assert torch.load(result.run_dir / "best.pt", weights_only=True)["epoch"] == best


def test_non_finite_loss_fails_the_run_naming_epoch_and_batch(sim_root: Path, tmp_path: Path) -> None:
    def poison(epoch: int, batch: int, model: torch.nn.Module) -> None:
        if (epoch, batch) == (1, 2):
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 2"):
        train(tiny(sim_root, tmp_path, run_name="nan"), hooks=Hooks(on_batch=poison))
    status = runs.read_status(tmp_path / "nan")
    assert status["state"] == "failed" and "epoch 1, batch 2" in status["error"]


def test_test_draws_are_seeded_and_averaged(finished_run: Path, sim_root: Path) -> None:
    from cropcore.evaluation.inference import score_checkpoint

    path = finished_run / "checkpoint.pt"
    one = score_checkpoint(path, ["frh04"], root=sim_root)
    again = score_checkpoint(path, ["frh04"], root=sim_root)
    three = score_checkpoint(path, ["frh04"], root=sim_root, draws=3)
    second = score_checkpoint(path, ["frh04"], root=sim_root, seed=1)
    assert np.array_equal(one.probabilities, again.probabilities)  # deterministic
    assert not np.allclose(one.probabilities, three.probabilities)
    averaged = (one.probabilities + second.probabilities
                + score_checkpoint(path, ["frh04"], root=sim_root, seed=2).probabilities) / 3
    assert np.allclose(three.probabilities, averaged, atol=1e-6)


def test_random_forest_through_the_same_command(sim_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--model", "RandomForest", "--mode", "evaluation4", "--root", str(sim_root), "--out",
                 str(tmp_path), "--hparam", "n_estimators=10", "--run-name", "rf", "--save-forest"])
    assert code == 0
    assert "scores on SIMULATED data" in capsys.readouterr().out
    run_dir = tmp_path / "rf"
    assert runs.read_status(run_dir)["state"] == "done" and not (run_dir / "checkpoint.pt").exists()
    table = pd.read_parquet(run_dir / "predictions.parquet")
    assert list(table.columns) == PREDICTION_COLUMNS and set(table["region"]) == {"frh01"}
    assert (run_dir / "forest.skops").is_file()
    assert runs.read_json(run_dir / "metrics.json")["regions"]["frh01"]["parcels"] == len(table)
    # the saved forest predicts the same parcels again, through `cropcore predict`
    assert main(["predict", "--run", str(run_dir), "--region", "frh01", "--out", str(tmp_path / "rf.parquet")]) == 0
    assert "frh01 (SIMULATED data" in capsys.readouterr().out
    again = pd.read_parquet(tmp_path / "rf.parquet")
    assert (again["predicted"].to_numpy() == table["predicted"].to_numpy()).all()
    # and through `cropcore evaluate --run --region`, which scores the run's model again
    assert main(["evaluate", "--run", str(run_dir), "--region", "frh01"]) == 0
    assert f"{runs.read_json(run_dir / 'metrics.json')['regions']['frh01']['overall_accuracy']:.4f}" in (
        capsys.readouterr().out)


def test_a_forest_fit_stops_when_cancelled(sim_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit never returns to the loop between batches: the cancel file (or SIGTERM) interrupts it."""
    from cropcore.models.forest import RandomForest

    monkeypatch.setattr(RandomForest, "fit", lambda self, *args: time.sleep(60))
    monkeypatch.setattr(runs, "cancel_requested", lambda run_dir: True)
    handler = signal.getsignal(signal.SIGTERM)
    began = time.perf_counter()
    result = train(resolve_config("RandomForest", root=str(sim_root), out=str(tmp_path), progress=False))
    assert result.state == "cancelled" and time.perf_counter() - began < 30
    assert runs.read_status(result.run_dir)["state"] == "cancelled"
    assert signal.getsignal(signal.SIGTERM) is handler  # the process's own handling is back

def test_an_update_that_breaks_the_network_fails_the_run(sim_root: Path, tmp_path: Path) -> None:
    """One batch per epoch: the loss of every step is finite, the update after it breaks the network."""
    with pytest.raises(NonFiniteLossError, match=r"non-finite test loss \(the network's outputs\) \(nan\) at epoch 1"):
        train(tiny(sim_root, tmp_path, batch_size=100_000, learning_rate=1e30, epochs=1))
    (run_dir,) = tmp_path.iterdir()
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and "at epoch 1" in status["error"]
    assert not (run_dir / runs.METRICS).exists()  # no scores of a broken network
    with pytest.raises(ValueError, match="learning_rate must be positive and finite"):
        tiny(sim_root, tmp_path, learning_rate=float("inf"))


def test_resume_is_refused_when_it_cannot_go_on(finished_run: Path, sim_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}

    def refused(*options: str) -> str:
        assert main(["train", "--resume", str(run_dir), "--no-progress", *options]) == 2
        assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == before  # nothing touched
        return capsys.readouterr().err

    assert "--batch-size, --seed cannot change them" in refused("--batch-size", "8", "--seed", "3")
    assert "--seed cannot change them" in refused("--seed", "0")  # a zero is a value too
    assert "it has already trained 2 epochs (asked for 1)" in refused("--epochs", "1")
    assert "pass --epochs above 2 to train on" in refused()
    assert "--threads must be a positive integer" in refused("--threads", "0")
    runs.write_json(run_dir / runs.STATUS, {**runs.read_json(run_dir / runs.STATUS), "state": "running",
                                           "pid": os.getpid()})
    before[runs.STATUS] = (run_dir / runs.STATUS).read_bytes()
    assert "it is still training" in refused("--epochs", "3")
    runs.write_json(run_dir / runs.STATUS, {**runs.read_json(run_dir / runs.STATUS), "state": "done"})
    before[runs.STATUS] = (run_dir / runs.STATUS).read_bytes()
    (run_dir / runs.CHECKPOINT).write_bytes(before[runs.CHECKPOINT][:1000])
    before[runs.CHECKPOINT] = (run_dir / runs.CHECKPOINT).read_bytes()
    assert "is not a readable PyTorch checkpoint" in refused("--epochs", "3")
    # the same model with other shapes: refused before the folder changes, not half way through the resume
    from cropcore import models

    other = models.build("TempCNN", input_dim=13, num_classes=9, sequence_length=45, hidden_dims=8)
    models.save_checkpoint(run_dir / runs.CHECKPOINT, other, "TempCNN", epoch=2)
    before[runs.CHECKPOINT] = (run_dir / runs.CHECKPOINT).read_bytes()
    assert "does not fit the network its config.json describes" in refused("--epochs", "3")


def test_forest_settings_are_checked_before_a_run_folder(sim_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert main(["train", "--model", "RandomForest", "--root", str(sim_root), "--out", str(out), "--hparam",
                 "n_estimators=0"]) == 2
    assert "'n_estimators' parameter" in capsys.readouterr().err and not out.exists()


def test_predict_run_scores_with_the_runs_own_draws(sim_root: Path, tmp_path: Path) -> None:
    run = train(tiny(sim_root, tmp_path, seed=5, epochs=1, test_draws=2))
    assert main(["predict", "--run", str(run.run_dir), "--region", "frh04", "--out", str(tmp_path / "p.parquet")]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"),
                                  pd.read_parquet(run.run_dir / runs.PREDICTIONS))


def test_a_class_mapping_with_other_classes_is_refused(sim_root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ten-classes"
    root.mkdir()
    for entry in sim_root.iterdir():
        if entry.name != "classmapping.csv":
            (root / entry.name).symlink_to(entry)
    mapping = pd.read_csv(sim_root / "classmapping.csv", index_col=0)
    mapping.loc[mapping.index.max() + 1] = {"id": 9, "classname": "hemp", "code": "CHV"}
    mapping.to_csv(root / "classmapping.csv")
    out = tmp_path / "runs"
    assert main(["train", "--model", "TempCNN", "--root", str(root), "--out", str(out), "--epochs", "1"]) == 2
    assert "classmapping.csv has 10 classes" in capsys.readouterr().err
    assert not out.exists()  # refused before a run folder was made

def test_bad_input_messages(sim_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--model", "ResNet50", "--root", str(sim_root), "--out", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "unknown model 'ResNet50'" in message and "TempCNN" in message and "RandomForest" in message
    with pytest.raises(ValueError, match="learning_rate"):
        tiny(sim_root, tmp_path, learning_rate=-1.0)
    with pytest.raises(ValueError, match="no hyperparameter"):
        tiny(sim_root, tmp_path, hparams={"depth": 3})
    with pytest.raises(ValueError, match="takes no learning_rate"):
        resolve_config("RandomForest", root=str(sim_root), learning_rate=0.1)


def test_evaluate_cli(finished_run: Path, sim_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--run", str(finished_run), "--json", str(tmp_path / "scores.json")]) == 0
    printed = capsys.readouterr().out
    assert "overall accuracy" in printed and "Cohen's kappa" in printed and "confusion" in printed
    scores = json.loads((tmp_path / "scores.json").read_text())
    stored = runs.read_json(finished_run / "metrics.json")["regions"]["frh04"]
    assert scores["regions"]["frh04"]["kappa"] == pytest.approx(stored["kappa"])
    # the checkpoint re-scored on the same region with the same seed gives the same numbers
    assert main(["evaluate", "--checkpoint", str(finished_run / "checkpoint.pt"), "--region", "frh04", "--root",
                 str(sim_root), "--json", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())["regions"]["frh04"]
    assert again["overall_accuracy"] == pytest.approx(stored["overall_accuracy"])
    assert again["confusion"] == stored["confusion"]


def test_evaluate_names_the_data_simulated_or_real(finished_run: Path, sim_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = str(finished_run / "checkpoint.pt")
    assert main(["evaluate", "--run", str(finished_run), "--json", str(tmp_path / "run.json")]) == 0
    assert "on SIMULATED data" in capsys.readouterr().out
    assert json.loads((tmp_path / "run.json").read_text())["simulated"] is True
    # a root without the simulator's marker is real data: the same files, linked into another root
    real = tmp_path / "real"
    real.mkdir()
    for entry in sim_root.iterdir():
        if entry.name != "SIMULATED.json":
            (real / entry.name).symlink_to(entry)
    assert main(["evaluate", "--checkpoint", checkpoint, "--region", "frh04", "--root", str(real), "--json",
                 str(tmp_path / "real.json")]) == 0
    assert "on real data" in capsys.readouterr().out
    assert json.loads((tmp_path / "real.json").read_text())["simulated"] is False
    # a run's scores are labelled by what its config.json recorded at training time
    copy = tmp_path / "copied-run"
    copy.mkdir()
    for name in ("config.json", "metrics.json", "predictions.parquet"):
        (copy / name).write_bytes((finished_run / name).read_bytes())
    runs.write_json(copy / "config.json", {**runs.read_json(copy / "config.json"), "simulated": False})
    assert main(["evaluate", "--run", str(copy)]) == 0
    assert "on real data" in capsys.readouterr().out


def test_checkpoint_for_another_input_dimension_is_refused(finished_run: Path, sim_root: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--checkpoint", str(finished_run / "checkpoint.pt"), "--region", "frh01", "--level",
                 "L2A", "--root", str(sim_root)])
    assert code == 2
    message = capsys.readouterr().err
    assert "input dimension 13" in message and "10 bands" in message


def test_predict_cli_parquet_and_geopackage(finished_run: Path, sim_root: Path, tmp_path: Path) -> None:
    from cropcore.data import BreizhCrops

    parcels = len(BreizhCrops("frh02", root=sim_root))
    assert main(["predict", "--run", str(finished_run), "--region", "frh02", "--root", str(sim_root),
                 "--out", str(tmp_path / "frh02.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "frh02.parquet")
    assert list(table.columns) == PREDICTION_COLUMNS and len(table) == parcels
    assert main(["predict", "--checkpoint", str(finished_run / "checkpoint.pt"), "--region", "frh02", "--root",
                 str(sim_root), "--out", str(tmp_path / "frh02.gpkg")]) == 0
    layer = gpd.read_file(tmp_path / "frh02.gpkg")
    assert len(layer) == parcels and layer.crs.to_epsg() == 4326 and "prob_wheat" in layer.columns
    assert main(["predict", "--run", str(finished_run), "--region", "frh02", "--out", str(tmp_path / "x.txt")]) == 2


def test_predict_keeps_every_parcel_and_checks_its_output_first(
        finished_run: Path, sim_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from cropcore.data import BreizhCrops

    (tmp_path / "taken.parquet").mkdir()
    assert main(["predict", "--run", str(finished_run), "--region", "frh02", "--out", str(tmp_path / "taken.parquet")]) == 2
    assert "is a folder" in capsys.readouterr().err
    # the suffix is matched case-insensitively when writing, as when checking
    assert main(["predict", "--run", str(finished_run), "--region", "frh02", "--out", str(tmp_path / "p.PARQUET")]) == 0
    assert len(pd.read_parquet(tmp_path / "p.PARQUET")) == len(BreizhCrops("frh02", root=sim_root))
    # a parcel missing from the parcel file is written without a geometry, and the count says so
    full = BreizhCrops.geodataframe
    monkeypatch.setattr(BreizhCrops, "geodataframe", lambda self: full(self).iloc[3:])
    assert main(["predict", "--run", str(finished_run), "--region", "frh02", "--out", str(tmp_path / "p.gpkg")]) == 0
    layer = gpd.read_file(tmp_path / "p.gpkg")
    assert len(layer) == len(BreizhCrops("frh02", root=sim_root)) and layer.geometry.isna().sum() == 3
    assert "3 of them have no geometry" in capsys.readouterr().err


def test_evaluate_run_options(finished_run: Path, sim_root: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from cropcore.data import BreizhCrops

    # a region named twice is scored once; the run's own root is used, and the epoch is shown
    assert main(["evaluate", "--run", str(finished_run), "--region", "frh04", "--region", "FRH04", "--json",
                 str(tmp_path / "once.json")]) == 0
    assert "(epoch 2)" in capsys.readouterr().out
    regions = json.loads((tmp_path / "once.json").read_text())["regions"]
    assert list(regions) == ["frh04"] and regions["frh04"]["parcels"] == len(BreizhCrops("frh04", root=sim_root))
    # options that only apply when scoring again are refused without --region
    assert main(["evaluate", "--run", str(finished_run), "--seed", "3"]) == 2
    assert "--seed applies only when scoring again" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path / "nowhere")]) == 2
    assert "no run folder" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(finished_run / "checkpoint.pt"), "--region", "frh04",
                 "--device", "gpu"]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err


def test_a_forest_file_in_a_network_run_is_never_loaded(finished_run: Path, tmp_path: Path) -> None:
    """predict --run follows the run's config.json: a file planted beside a network's checkpoint is not read."""
    import shutil

    run_dir = tmp_path / "planted"
    shutil.copytree(finished_run, run_dir)
    (run_dir / runs.FOREST).write_bytes(b"not read")
    assert main(["predict", "--run", str(run_dir), "--region", "frh04", "--out", str(tmp_path / "p.parquet")]) == 0
    assert set(pd.read_parquet(tmp_path / "p.parquet")["region"]) == {"frh04"}


def test_resuming_a_finished_run_drops_its_earlier_results(sim_root: Path, tmp_path: Path) -> None:
    from cropcore.training.loop import config_from_record

    done = train(tiny(sim_root, tmp_path, epochs=1))
    seen: list[bool] = []
    hooks = Hooks(on_epoch_end=lambda epoch, run_dir: seen.append((run_dir / runs.METRICS).exists()))
    config = config_from_record(runs.read_json(done.run_dir / runs.CONFIG), epochs=2)
    resumed = train(config, resume=done.run_dir, hooks=hooks)
    assert seen == [False]  # while it trains on, the epoch-1 scores are gone
    assert resumed.state == "done" and runs.read_json(done.run_dir / runs.METRICS)["epoch"] == 2


@pytest.mark.gpu
def test_cuda_bf16_training(sim_root: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    result = train(tiny(sim_root, tmp_path, device="cuda", epochs=1))
    assert result.state == "done" and runs.read_json(result.run_dir / "config.json")["device"] == "cuda"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["TempCNN", "StarRNN"])
def test_cuda_graph_steps_match_eager_steps(name: str) -> None:
    """Replayed graphs train like eager steps: same weights, same batch-norm statistics, odd batches eager."""
    from cropcore import models
    from cropcore.training.cuda_graphs import TrainingForward

    hparams = {"dropout": 0.0}
    torch.manual_seed(0)
    nets = [models.build(name, input_dim=13, num_classes=9, sequence_length=45, **hparams).cuda().train()
            for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    batches = [(torch.rand(size, 45, 13, device="cuda"), torch.randint(0, 9, (size,), device="cuda"))
               for size in (32, 32, 5, 7, 32, 5)]
    initial = {key: value.clone() for key, value in nets[0].state_dict().items()}
    for net, graphs in zip(nets, (False, True)):
        forward = TrainingForward(net, "cuda", use_graphs=graphs)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)  # updates proportional to gradients (Adam's are not)
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.nll_loss(forward(x).float(), y).backward()
            optimizer.step()
        assert set(forward.graphed) == ({(32, 45, 13)} if graphs else set())  # 5 and 7: eager
    eager, graphed = (dict(net.state_dict()) for net in nets)
    for key, value in eager.items():
        if value.is_floating_point():  # bf16 rounding apart, the same updates
            update = torch.linalg.norm(value - initial[key])
            assert torch.linalg.norm(graphed[key] - value) <= 0.05 * update + 1e-5, key
        else:
            assert torch.equal(graphed[key], value), key  # e.g. batch-norm step counters: capture left no trace


def _launch_and_wait_until_training(sim_root: Path, out: Path, name: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "cropcore", "train", "--model", "TempCNN", "--root", str(sim_root), "--out",
               str(out), "--epochs", "500", "--batch-size", "16", "--hparam", "hidden_dims=8", "--run-name", name,
               "--no-progress", "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (out / name / "log.csv").is_file():  # at least one epoch done: surely inside the loop
            return process
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the training process never got going")


@pytest.mark.slow  # two real training processes: about 30 s on an idle machine
def test_terminated_run_is_cancelled_and_killed_run_reads_failed(sim_root: Path, tmp_path: Path) -> None:
    terminated = _launch_and_wait_until_training(sim_root, tmp_path, "term")
    terminated.send_signal(signal.SIGTERM)
    assert terminated.wait(timeout=60) == 1
    assert runs.read_status(tmp_path / "term")["state"] == "cancelled"

    killed = _launch_and_wait_until_training(sim_root, tmp_path, "kill")
    killed.kill()
    killed.wait(timeout=60)
    status = runs.read_status(tmp_path / "kill")
    assert status["state"] == "failed" and "stopped without finishing" in status["error"]


def test_test_draws_report_groups_and_averages_draws(benchmark_script) -> None:
    """benchmarks/bench_test_draws.py: single draws' spread, and groups of K draws averaged as --test-draws K."""
    bench = benchmark_script("bench_test_draws")
    true = np.array([0, 1, 2, 3])
    right = np.eye(9)[[0, 1, 2, 3]] * 0.6
    wrong = np.eye(9)[[0, 1, 2, 0]] * 0.9  # parcel 3 confidently class 0
    rows = bench.table("X", true, [right, wrong], [1, 2])
    single, pair = (row.split(" | ") for row in rows)
    assert single[1:4] == ["1", "2", "0.875 ± 0.177 (0.750–1.000)"] and single[-1] == "25.0% |"
    assert pair[1:4] == ["2", "1", "0.750"]  # averaged, the confident wrong draw wins parcel 3


def test_test_draws_benchmark_runs(sim_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   benchmark_script) -> None:
    bench = benchmark_script("bench_test_draws")
    assert bench.main(["--models", "TempCNN", "--root", str(sim_root), "--epochs", "1", "--batch-size", "64",
                       "--draws", "3", "--groups", "1", "3", "--out", str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| TempCNN |")]
    assert [row.split(" | ")[1:3] for row in rows] == [["1", "3"], ["3", "1"]]
