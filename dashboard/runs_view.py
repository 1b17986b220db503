"""Read run folders (written by `cropcore train`) into plain records and DataFrames.

Pure and defensive: another process may be writing a folder while we read it, and folders may come
from an older cropcore. Nothing here raises for such a folder; it becomes an "unreadable" row with the
reason, so the dashboard never shows a traceback for it.

Run folder contract: config.json, status.json, log.csv, checkpoint.pt, metrics.json,
predictions.parquet, cancel (see CONTRACTS / cropcore.training).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from cropcore.constants import CLASSES
from cropcore.training.runs import pid_alive

STATES: tuple[str, ...] = ("running", "done", "failed", "cancelled")
#: Shown for a folder we cannot make sense of (half-written, older format, not a run).
UNREADABLE = "unreadable"
#: A launch recorded by the dashboard whose process has not created its run folder yet.
STARTING = "starting"
#: Per-epoch log columns the live view plots.
LOG_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", "test_loss", "overall_accuracy", "average_accuracy", "weighted_f1", "kappa",
    "seconds",
)
#: The paper's four scores, in Table 2 order: (metrics.json key, label).
PAPER_METRICS: tuple[tuple[str, str], ...] = (
    ("overall_accuracy", "OA"),
    ("average_accuracy", "AA"),
    ("weighted_f1", "weighted F1"),
    ("kappa", "kappa"),
)
PREDICTION_COLUMNS: tuple[str, ...] = ("id", "region", "true", "predicted")
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"prob_{name}" for name in CLASSES)
#: Folder of the dashboard's launch records inside a runs root (hidden from the run list).
LAUNCHES_DIR = ".launches"


@dataclass
class RunInfo:
    """What the dashboard shows about one run folder."""

    run_id: str
    path: Path
    state: str
    model: str = ""
    level: str = ""
    mode: str = ""
    train_regions: tuple[str, ...] = ()
    test_regions: tuple[str, ...] = ()
    data: str = ""
    started: str = ""
    epoch: int | None = None
    epochs: int | None = None
    eta_seconds: float | None = None
    error: str | None = None
    pid: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    has_predictions: bool = False
    has_checkpoint: bool = False

    @property
    def readable(self) -> bool:
        return self.state != UNREADABLE

    @property
    def label(self) -> str:
        """Short human label: model, level, mode and the run id."""
        if not self.model:
            return self.run_id
        return f"{self.model} · {self.level} · {self.mode} · {self.run_id}"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file; ValueError if missing, truncated or not an object."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{Path(path).name} missing") from error
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{Path(path).name} is not valid JSON (half-written?)") from error
    if not isinstance(value, dict):
        raise ValueError(f"{Path(path).name} is not a JSON object")
    return value


def _regions(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(item) for item in value)
    return ()


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def final_scores(metrics: dict[str, Any]) -> dict[str, float]:
    """The paper's four scores from metrics.json, averaged over test regions when there are several.

    Accepts ``{"regions": {"frh04": {...}}}``, ``{"frh04": {...}}`` or a flat ``{"overall_accuracy": ...}``.
    """
    per_region = region_metrics(metrics)
    if not per_region:
        return {}
    scores: dict[str, float] = {}
    for key, _ in PAPER_METRICS:
        values = [float(entry[key]) for entry in per_region.values() if isinstance(entry.get(key), (int, float))]
        if values:
            scores[key] = sum(values) / len(values)
    return scores


def region_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """metrics.json normalised to {region: {metric: value, ...}} (empty when no region entry is found)."""
    if any(isinstance(metrics.get(key), (int, float)) for key, _ in PAPER_METRICS):
        return {"all": metrics}
    container = metrics.get("regions", metrics)
    if not isinstance(container, dict):
        return {}
    return {
        str(region): entry
        for region, entry in container.items()
        if isinstance(entry, dict) and any(key in entry for key, _ in PAPER_METRICS)
    }


def read_run(path: Path) -> RunInfo:
    """One run folder as a RunInfo; never raises (unreadable folders get state "unreadable")."""
    path = Path(path)
    run = RunInfo(run_id=path.name, path=path, state=UNREADABLE)
    try:
        config = read_json(path / "config.json")
        status = read_json(path / "status.json")
    except ValueError as error:
        run.error = str(error)
        return run
    state = status.get("state")
    if state not in STATES or not isinstance(config.get("model"), str):
        run.error = "older or unknown run format (no valid state/model)"
        return run
    run.state = state
    run.model = config["model"]
    run.level = str(config.get("level", ""))
    run.mode = str(config.get("mode", ""))
    run.train_regions = _regions(config.get("train_regions"))
    run.test_regions = _regions(config.get("test_regions"))
    run.data = "simulated" if config.get("simulated") else str(config.get("root", ""))
    run.started = str(status.get("started", ""))
    run.epoch = _int_or_none(status.get("epoch"))
    run.epochs = _int_or_none(status.get("epochs", config.get("epochs")))
    run.eta_seconds = _float_or_none(status.get("eta_seconds"))
    run.error = status.get("error") if isinstance(status.get("error"), str) else None
    run.pid = _int_or_none(status.get("pid"))
    run.has_predictions = (path / "predictions.parquet").is_file()
    run.has_checkpoint = (path / "checkpoint.pt").is_file()
    if run.state == "running" and not pid_alive(run.pid):
        run.state = "failed"
        run.error = run.error or "the training process stopped without finishing (killed or crashed)"
    if run.state == "done":
        try:
            run.scores = final_scores(read_json(path / "metrics.json"))
        except ValueError:
            run.scores = {}
    return run


def read_launches(runs_root: Path, claimed_pids: set[int]) -> list[RunInfo]:
    """Dashboard launches whose process has not written a run folder (yet, or ever)."""
    records = []
    for record_path in sorted((Path(runs_root) / LAUNCHES_DIR).glob("*.json")):
        try:
            record = read_json(record_path)
        except ValueError:
            continue
        pid = _int_or_none(record.get("pid"))
        if pid is None or pid in claimed_pids:
            continue
        alive = pid_alive(pid)
        log_path = Path(str(record.get("log", "")))
        error = None if alive else (last_log_line(log_path) or "the process exited before creating its run")
        records.append(RunInfo(
            run_id=record_path.stem, path=record_path, state=STARTING if alive else "failed",
            model=str(record.get("model", "")), level=str(record.get("level", "")),
            mode=str(record.get("mode", "")), started=str(record.get("started", "")), error=error, pid=pid,
        ))
    return records


def last_log_line(path: Path, limit: int = 300) -> str | None:
    """Last non-empty line of a log file (an error message, usually), or None."""
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:limit] if lines else None


def list_runs(runs_root: Path) -> list[RunInfo]:
    """Every run folder under runs_root plus pending launches, newest first."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    runs = [read_run(child) for child in root.iterdir() if child.is_dir() and not child.name.startswith(".")]
    claimed = {run.pid for run in runs if run.pid is not None}
    runs += read_launches(root, claimed)
    return sorted(runs, key=lambda run: (run.started or "", run.run_id), reverse=True)


def runs_table(runs: list[RunInfo]) -> pd.DataFrame:
    """The runs list as a display table: status, model, data, start time, progress, final scores."""
    rows = []
    for run in runs:
        progress = f"{run.epoch}/{run.epochs}" if run.epoch is not None and run.epochs else ""
        row = {
            "run": run.run_id,
            "status": run.state,
            "model": run.model,
            "level": run.level,
            "mode": run.mode,
            "data": run.data,
            "test regions": ", ".join(run.test_regions),
            "started": format_time(run.started),
            "epoch": progress,
        }
        for key, label in PAPER_METRICS:
            row[label] = run.scores.get(key)
        row["error"] = run.error or ""
        rows.append(row)
    columns = ["run", "status", "model", "level", "mode", "data", "test regions", "started", "epoch",
               *(label for _, label in PAPER_METRICS), "error"]
    return pd.DataFrame(rows, columns=columns)


def format_time(value: str) -> str:
    """ISO time -> 'YYYY-MM-DD HH:MM:SS UTC' (unchanged when not ISO)."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return value or ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if moment.tzinfo is not None else "")


def format_eta(seconds: float | None) -> str:
    """Seconds -> '1 min 05 s' style text; '–' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def read_log(path: Path) -> pd.DataFrame:
    """log.csv of a run (one row per epoch); empty frame with LOG_COLUMNS when absent or half-written."""
    log_path = Path(path) / "log.csv"
    try:
        log = pd.read_csv(log_path, on_bad_lines="skip")
    except (OSError, ValueError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    if "epoch" not in log.columns:
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    for column in log.columns:
        log[column] = pd.to_numeric(log[column], errors="coerce")
    return log.dropna(subset=["epoch"]).reset_index(drop=True)


def read_predictions(path: Path) -> pd.DataFrame:
    """predictions.parquet of a run, checked; ValueError with a readable reason otherwise."""
    file = Path(path) / "predictions.parquet" if Path(path).is_dir() else Path(path)
    try:
        predictions = pd.read_parquet(file)
    except FileNotFoundError as error:
        raise ValueError("this run has no predictions yet") from error
    except Exception as error:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise ValueError(f"predictions file unreadable ({type(error).__name__})") from error
    return check_predictions(predictions)


def check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Validate a predictions table and add a ``confidence`` column (probability of the predicted class)."""
    missing = [column for column in PREDICTION_COLUMNS if column not in predictions.columns]
    if missing:
        raise ValueError(f"predictions table lacks column(s) {', '.join(missing)} (older run format?)")
    predictions = predictions.copy()
    predictions["id"] = predictions["id"].astype("int64")
    predictions["true"] = predictions["true"].astype("int64")
    predictions["predicted"] = predictions["predicted"].astype("int64")
    predictions["region"] = predictions["region"].astype(str).str.lower()
    if all(column in predictions.columns for column in PROBABILITY_COLUMNS):
        probabilities = predictions[list(PROBABILITY_COLUMNS)].to_numpy(dtype="float32")
        rows = range(len(predictions))
        predictions["confidence"] = probabilities[rows, predictions["predicted"].clip(0, len(CLASSES) - 1)]
    elif "confidence" not in predictions.columns:
        predictions["confidence"] = float("nan")
    return predictions


def read_config(path: Path) -> dict[str, Any]:
    """config.json of a run, or {} when unreadable."""
    try:
        return read_json(Path(path) / "config.json")
    except ValueError:
        return {}


def read_metrics(path: Path) -> dict[str, dict[str, Any]]:
    """metrics.json per test region ({} when missing)."""
    try:
        return region_metrics(read_json(Path(path) / "metrics.json"))
    except ValueError:
        return {}
