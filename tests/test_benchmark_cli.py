"""`cropcore benchmark` on the tiny demo: one network and the forest, one epoch, the Table 2 layout."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cropcore.cli import main
from cropcore.evaluation import table2



pytestmark = pytest.mark.usefixtures("one_torch_thread")

def test_quick_benchmark_writes_table2(sim_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "table2"
    code = main(["benchmark", "--level", "L1C", "--models", "TempCNN,RandomForest", "--quick", "--epochs", "1",
                 "--trees", "5", "--batch-size", "64", "--root", str(sim_root), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "trained on FRH01-03, tested on FRH04" in printed and "cross-evaluation" in printed

    markdown = (out / "table2-L1C.md").read_text()
    for label in ("| OA |", "| AA |", "| weighted F1 |", "| kappa |", "| | RF | TempCNN |", "SIMULATED", "quick"):
        assert label in markdown, label
    assert "0.770" in markdown  # the paper's RF overall accuracy, side by side
    marker = json.loads((sim_root / "SIMULATED.json").read_text())
    assert f"scale {marker['scale']}, seed {marker['seed']}" in markdown  # which simulation

    table = pd.read_csv(out / "table2-L1C.csv")
    assert set(table["model"]) == {"RF", "TempCNN"}
    cross = table[table["section"] == "cross-evaluation"]
    assert (cross["folds"] == 3).all() and cross["std"].notna().all()
    record = json.loads((out / "table2-L1C.json").read_text())
    assert {(run["model"], run["test"]) for run in record["runs"]} == {
        (model, region) for model in ("TempCNN", "RandomForest") for region in ("frh01", "frh02", "frh04")}
    assert len(list((out / "runs").iterdir())) == 6


def test_unknown_model_lists_the_valid_names(sim_root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", "--models", "TempCNN,Nope", "--root", str(sim_root), "--out", str(tmp_path)]) == 2
    assert "Transformer" in capsys.readouterr().err


@pytest.mark.parametrize(("options", "message"), [
    (["--models", "rf,tempcnn", "--epochs", "0"], "epochs must be a positive integer"),
    (["--models", "rf,TempCNN", "--batch-size", "0"], "batch_size must be a positive integer"),
    (["--models", ","], "names no model"),
    (["--models", "tempcnn,rf", "--trees", "0"], "'n_estimators' parameter"),
    (["--models", "rf", "--threads", "-1"], "--threads must be a positive integer"),
    (["--models", "rf", "--level", "L3"], "unknown level 'L3'"),
    (["--models", "rf", "--device", "gpu"], "unknown device 'gpu'"),
    (["--models", "rf", "--root", "{tmp}/nowhere"], "nowhere"),
])
def test_bad_settings_fail_before_the_first_run(options: list[str], message: str, sim_root: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from cropcore.training import loop

    monkeypatch.setattr(loop, "train", lambda *args, **kwargs: pytest.fail("a run started before the check"))
    options = [option.replace("{tmp}", str(tmp_path)) for option in options]
    root = [] if "--root" in options else ["--root", str(sim_root)]
    assert main(["benchmark", *root, *options, "--out", str(tmp_path / "table2")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "table2").exists()


def test_level_is_named_as_the_paper_names_it(sim_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--level l2a` is L2A: its files, run names and the paper block (which only knows 'L2A')."""
    from cropcore.training import loop

    def diverge(config, **kwargs):
        assert config.level == "L2A" and config.run_name == "RandomForest-L2A-evaluation1"
        raise loop.NonFiniteLossError(1, 1, float("nan"))

    monkeypatch.setattr(loop, "train", diverge)
    out = tmp_path / "table2"
    assert main(["benchmark", "--level", "l2a", "--models", "rf", "--folds", "top", "--root", str(sim_root),
                 "--out", str(out)]) == 0
    assert "0.780" in (out / "table2-L2A.md").read_text()  # the paper's L2A RF overall accuracy


def test_table2_layout_without_data() -> None:
    def scores_with(accuracy: float) -> dict[str, float]:
        return {"overall_accuracy": accuracy, "average_accuracy": 0.4, "weighted_f1": 0.45, "kappa": 0.3}

    scores = {"Transformer": {"frh04": scores_with(0.5)},
              "RandomForest": {"frh01": scores_with(0.6), "frh02": scores_with(0.4), "frh04": scores_with(0.5)}}
    blocks = list(table2.blocks(scores, "L2A").values())
    assert list(blocks[0].columns) == ["RF", "Transformer"]  # the paper's column order
    assert list(blocks[0].index) == ["OA", "AA", "weighted F1", "kappa"]
    # a mean over fewer than the three folds says so
    assert blocks[1].loc["OA", "RF"] == "0.500 ± 0.082" and blocks[1].loc["OA", "Transformer"] == "0.500 (1 of 3 folds)"
    assert blocks[2].loc["kappa", "Transformer"] == "0.750"
    # only the FRH04 test ran (--folds top): no cross-evaluation block built from one fold
    top_only = table2.blocks({"Transformer": {"frh04": scores_with(0.5)}}, "L2A")
    assert len(top_only) == 2 and not any("cross-evaluation" in title for title in top_only)


def test_a_diverged_run_leaves_its_cell_empty(sim_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cropcore.training import loop

    real_train = loop.train

    def train(config, **kwargs):
        if config.mode == "evaluation4":
            raise loop.NonFiniteLossError(1, 10, float("nan"))
        return real_train(config, **kwargs)

    monkeypatch.setattr(loop, "train", train)
    out = tmp_path / "table2"
    assert main(["benchmark", "--models", "TempCNN", "--quick", "--epochs", "1", "--batch-size", "64",
                 "--root", str(sim_root), "--out", str(out)]) == 0
    markdown = (out / "table2-L1C.md").read_text()
    assert "TempCNN evaluation4 (test frh01) diverged" in markdown and "epoch 1, batch 10" in markdown
    cross = pd.read_csv(out / "table2-L1C.csv").query("section == 'cross-evaluation'")
    assert (cross["folds"] == 2).all()
