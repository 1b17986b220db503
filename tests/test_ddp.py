"""`torchrun --nproc_per_node=2 -m cropcore train` on CPU (gloo): disjoint shards, one run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from cropcore.training import runs
from cropcore.training.loop import SHARD_LOG_ENV


def test_two_processes_train_disjoint_shards_and_save_once(sim_root: Path, tmp_path: Path) -> None:
    from cropcore.data import BreizhCrops

    shards = tmp_path / "shards"
    out = tmp_path / "runs"
    environment = {**os.environ, SHARD_LOG_ENV: str(shards), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "cropcore", "train", "--model", "TempCNN", "--root", str(sim_root), "--out", str(out),
               "--epochs", "1", "--batch-size", "64", "--hparam", "hidden_dims=8", "--no-progress"]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    seen = [set(map(int, (shards / f"rank{rank}.txt").read_text().split())) for rank in (0, 1)]
    train_ids = set()
    for region in ("frh01", "frh02", "frh03"):
        train_ids |= set(BreizhCrops(region, root=sim_root).index["id"].tolist())
    assert seen[0] and seen[1]
    assert len(seen[0] & seen[1]) <= 1  # disjoint (one parcel may pad an odd total)
    assert seen[0] | seen[1] == train_ids

    (run_dir,) = list(out.iterdir())  # saved once, by rank 0
    assert runs.read_status(run_dir)["state"] == "done"
    assert runs.read_json(run_dir / "config.json")["world_size"] == 2
    table = pd.read_parquet(run_dir / "predictions.parquet")
    assert table["id"].is_unique and len(table) == len(BreizhCrops("frh04", root=sim_root))


def test_a_torchrun_worker_exits_with_its_status_and_all_its_output(tmp_path: Path) -> None:
    """Workers leave through ``distributed.exit_worker``, which skips the interpreter's shutdown: what they
    printed must still arrive, and the status must be the command's."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # output buffered
    environment.update(WORLD_SIZE="2", RANK="1")
    command = [sys.executable, "-m", "cropcore", "demo", "--scale", "0.002", "--root", str(tmp_path / "demo")]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.splitlines()[-1].startswith(f"wrote a simulated Brittany to {tmp_path / 'demo'}")

    failed = subprocess.run([*command[:3], "evaluate", "--run", str(tmp_path / "missing")], env=environment,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and "missing" in failed.stderr
