"""Start `cropcore train` as a detached process and ask running ones to stop.

The training process runs in its own session (``start_new_session=True``), so closing the browser tab,
stopping the Streamlit server or a page rerun never kills it. It writes its run folder itself (see
runs_view); the dashboard only keeps a small launch record (pid, command, log file) under
``<runs_root>/.launches/`` so that a process that dies before creating its folder still shows up with
its error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from dashboard.runs_view import LAUNCHES_DIR

#: Quick preset: a small network for few epochs on the demo, about a minute on 2 shared cores.
QUICK_DEMO: dict[str, object] = {"model": "TempCNN", "epochs": 3, "batch_size": 256}
#: First-launch training: fastest route to predictions (seconds on the demo).
FIRST_LAUNCH_MODEL = "RandomForest"
RANDOM_FOREST = "RandomForest"
#: Processes started by this app (polled by reap_children; the runs do not depend on this list).
_CHILDREN: list[subprocess.Popen] = []


@dataclass(frozen=True)
class TrainRequest:
    """Arguments of one `cropcore train` call (names as on its command line)."""

    model: str
    level: str
    mode: str
    root: str
    out: str
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int = 0
    device: str = "cpu"

    def argv(self) -> list[str]:
        """The command line, run with the app's own interpreter (``python -m cropcore train ...``)."""
        command = [
            sys.executable, "-m", "cropcore", "train",
            "--model", self.model, "--level", self.level, "--mode", self.mode,
            "--root", self.root, "--out", self.out, "--seed", str(self.seed), "--device", self.device,
            "--no-progress",
        ]
        if self.model != RANDOM_FOREST:
            command += [
                "--epochs", str(self.epochs), "--batch-size", str(self.batch_size),
                "--learning-rate", repr(float(self.learning_rate)),
                "--weight-decay", repr(float(self.weight_decay)),
            ]
        return command


@dataclass(frozen=True)
class Launch:
    """A started process and where its console output goes."""

    pid: int
    log: str
    record: str
    started: str


def launch(request: TrainRequest, *, cwd: str | Path | None = None) -> Launch:
    """Start the training process detached; returns at once.

    Console output goes to ``<out>/.launches/<stamp>-<model>.log``; the run folder itself is created by
    the process under ``request.out``.
    """
    launches = Path(request.out) / LAUNCHES_DIR
    launches.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    stamp = f"{now:%Y%m%d-%H%M%S-%f}-{request.model}"
    log_path = launches / f"{stamp}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            request.argv(),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd else None, env=env, start_new_session=True, close_fds=True,
        )
    _CHILDREN.append(process)
    record_path = launches / f"{stamp}.json"
    started = now.isoformat(timespec="seconds")
    record = {**asdict(request), "pid": process.pid, "log": str(log_path), "started": started,
              "argv": request.argv()}
    tmp = record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, record_path)
    return Launch(pid=process.pid, log=str(log_path), record=str(record_path), started=started)


def reap_children() -> None:
    """Collect the app's exited training processes so they do not linger as zombies."""
    _CHILDREN[:] = [process for process in _CHILDREN if process.poll() is None]


def request_cancel(run_dir: str | Path) -> None:
    """Ask a running run to stop after its current batch (the training loop watches this file)."""
    (Path(run_dir) / "cancel").touch()
