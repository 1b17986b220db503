"""Run folders: the contract between a training process and whoever watches it (the dashboard).

Layout of ``runs/<run_id>/``: ``config.json``, ``status.json``, ``log.csv``, ``checkpoint.pt`` (latest
state, for resuming), ``best.pt`` (validation mode: the kept epoch), ``metrics.json``,
``predictions.parquet`` and, while asked to stop, an empty ``cancel`` file.

Every file is written to a temporary name in the same folder and moved into place (``cropcore.atomic``,
whose ``write_with`` and ``write_bytes`` this module re-exports), so a reader (or a crash) never sees half a file. ``read_status``
turns a "running" run whose process has died into "failed", so a killed run never looks alive forever.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cropcore.atomic import write_bytes, write_with  # noqa: F401 (write_with: re-exported)

CONFIG = "config.json"
STATUS = "status.json"
LOG = "log.csv"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
CANCEL = "cancel"
FOREST = "forest.skops"

STATES: tuple[str, ...] = ("running", "done", "failed", "cancelled")
LOG_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", "test_loss", "overall_accuracy", "average_accuracy", "weighted_f1", "kappa", "seconds",
)
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")


def utc_now() -> str:
    """ISO-8601 UTC timestamp with seconds, as written in status.json."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (indented, UTF-8)."""
    write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False, allow_nan=True) + "\n").encode())


def read_json(path: Path) -> Any:
    """Read a JSON file.

    Raises:
        ValueError: the file is not valid JSON (the message names it).
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def write_log(path: Path, rows: list[Mapping[str, Any]]) -> None:
    """Rewrite log.csv with all rows so far (small: one row per epoch), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(LOG_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes(path, buffer.getvalue().encode())


def read_log(path: Path) -> list[dict[str, float]]:
    """Rows of log.csv as floats (epoch as int); empty if the file is missing."""
    if not Path(path).exists():
        return []
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    return [
        {key: (int(value) if key == "epoch" else float(value) if value not in ("", None) else float("nan"))
         for key, value in row.items()}
        for row in rows
    ]


def create_run_dir(out: Path, model: str, level: str, mode: str, name: str | None = None) -> Path:
    """Make a new, empty run folder; ``mkdir`` is exclusive, so two runs started together never share one.

    The id is ``<UTC yyyymmdd-HHMMSS>-<model>-<level>-<mode>`` (or ``name``), with ``-2``, ``-3``... if taken.

    Raises:
        ValueError: if ``name`` is not a plain folder name.
    """
    if name is not None and not _RUN_NAME.match(name):
        raise ValueError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (no path separators)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = name or f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{model}-{level}-{mode}"
    for attempt in range(1, 1000):
        candidate = out / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ValueError(f"could not find a free run folder name for {base!r} in {out}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists and is not a zombie (a dead child nobody reaped yet)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


class StatusWriter:
    """Keeps status.json of one run up to date; only the process that owns the run writes it."""

    def __init__(self, run_dir: Path, epochs: int, start_epoch: int = 0) -> None:
        self.path = Path(run_dir) / STATUS
        self.state: dict[str, Any] = {
            "state": "running", "pid": os.getpid(), "started": utc_now(), "updated": utc_now(),
            "epoch": start_epoch, "epochs": epochs, "error": None, "eta_seconds": None,
            "batch": 0, "batches": None,
        }
        self.write()

    def write(self, **changes: Any) -> None:
        """Apply changes and rewrite the file atomically."""
        self.state.update(changes, updated=utc_now())
        write_json(self.path, self.state)

    def finish(self, state: str, error: str | None = None) -> None:
        """Mark the run as done, failed or cancelled."""
        if state not in STATES[1:]:
            raise ValueError(f"final state must be one of {STATES[1:]}, got {state!r}")
        self.write(state=state, error=error, eta_seconds=0.0 if state == "done" else None)


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json of a run, with a dead "running" process reported as failed.

    Returns:
        The status dict; a missing or unreadable file reads as ``{"state": "failed", "error": ...}``.
    """
    path = Path(run_dir) / STATUS
    try:
        status = read_json(path)
        if not isinstance(status, dict) or status.get("state") not in STATES:
            raise ValueError(f"unexpected content {status!r:.80}")
    except (OSError, ValueError) as error:
        return {"state": "failed", "pid": None, "error": f"unreadable {STATUS}: {error}", "epoch": 0, "epochs": 0,
                "started": None, "updated": None, "eta_seconds": None}
    if status["state"] == "running" and not pid_alive(status.get("pid")):
        status = {**status, "state": "failed", "eta_seconds": None,
                  "error": f"the training process (pid {status.get('pid')}) stopped without finishing"}
    return status


def request_cancel(run_dir: Path) -> None:
    """Ask a running run to stop after its current batch."""
    (Path(run_dir) / CANCEL).touch()


def cancel_requested(run_dir: Path) -> bool:
    """Whether someone asked this run to stop."""
    return (Path(run_dir) / CANCEL).exists()


def list_runs(out: Path) -> list[Path]:
    """Run folders under ``out`` (those with a config.json), newest name first."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted((path for path in out.iterdir() if (path / CONFIG).is_file()), key=lambda p: p.name, reverse=True)
