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


def test_a_torchrun_worker_skips_the_interpreter_shutdown_but_keeps_its_output_and_status(tmp_path: Path) -> None:
    """Workers leave through ``distributed.exit_worker``: no interpreter shutdown (where gloo's threads can abort
    the process), yet everything they printed arrives and the status is the command's."""
    script = ("import atexit, runpy; atexit.register(print, 'interpreter shut down'); "
              "runpy.run_module('cropcore', run_name='__main__')")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # output buffered

    def cropcore(*args: str, world_size: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, *args], env={**environment, "WORLD_SIZE": world_size},
                              capture_output=True, text=True, timeout=120)

    demo = ["demo", "--scale", "0.002", "--root", str(tmp_path / "demo")]
    alone = cropcore(*demo, world_size="1")
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert alone.stdout.splitlines()[-1] == "interpreter shut down"
    worker = cropcore(*demo, world_size="2")
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert worker.stdout.splitlines()[-1].startswith(f"simulated dataset already at {tmp_path / 'demo'}")
    failed = cropcore("evaluate", "--run", str(tmp_path / "missing"), world_size="2")
    assert failed.returncode == 2 and "missing" in failed.stderr and "shut down" not in failed.stdout
