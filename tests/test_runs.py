"""Run folders: atomic files, unique names, status another process can trust, cancellation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cropcore.training import runs


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    runs.write_json(tmp_path / "a.json", {"x": 1})
    runs.write_bytes(tmp_path / "b.bin", b"123")
    assert runs.read_json(tmp_path / "a.json") == {"x": 1}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_written_files_follow_the_umask_and_bad_json_is_named(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        runs.write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # not owner-only like mkstemp's files
    (tmp_path / "a.json").write_text("{cut")
    with pytest.raises(ValueError, match="a.json is not valid JSON"):
        runs.read_json(tmp_path / "a.json")


def test_a_failing_writer_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")

    def broken(temporary: Path) -> None:
        temporary.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        runs.write_with(target, broken)
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_run_folders_are_unique_and_names_are_checked(tmp_path: Path) -> None:
    first = runs.create_run_dir(tmp_path, "TempCNN", "L1C", "evaluation1", name="demo")
    second = runs.create_run_dir(tmp_path, "TempCNN", "L1C", "evaluation1", name="demo")
    assert (first.name, second.name) == ("demo", "demo-2")
    automatic = runs.create_run_dir(tmp_path, "LSTM", "L2A", "validation")
    assert automatic.name.endswith("-LSTM-L2A-validation")
    with pytest.raises(ValueError, match="path separators"):
        runs.create_run_dir(tmp_path, "LSTM", "L2A", "validation", name="../escape")


def test_status_lifecycle(tmp_path: Path) -> None:
    status = runs.StatusWriter(tmp_path, epochs=5)
    state = runs.read_status(tmp_path)
    assert state["state"] == "running" and state["pid"] == os.getpid() and state["epochs"] == 5
    status.write(epoch=2, eta_seconds=3.0)
    assert runs.read_status(tmp_path)["epoch"] == 2
    status.finish("failed", "boom")
    assert runs.read_status(tmp_path)["error"] == "boom"
    with pytest.raises(ValueError, match="final state"):
        status.finish("running")


def test_a_dead_process_reads_as_failed(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    runs.StatusWriter(tmp_path, epochs=3)
    record = runs.read_json(tmp_path / runs.STATUS) | {"pid": child.pid}
    (tmp_path / runs.STATUS).write_text(json.dumps(record))
    state = runs.read_status(tmp_path)
    assert state["state"] == "failed" and str(child.pid) in state["error"]


def test_a_zombie_child_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        assert not runs.pid_alive(child.pid)
    finally:
        child.wait()
    assert runs.pid_alive(os.getpid())


def test_unreadable_status_reads_as_failed(tmp_path: Path) -> None:
    (tmp_path / runs.STATUS).write_text("{half")
    assert runs.read_status(tmp_path)["state"] == "failed"
    assert runs.read_status(tmp_path / "missing")["state"] == "failed"


def test_cancel_file_and_log_round_trip(tmp_path: Path) -> None:
    assert not runs.cancel_requested(tmp_path)
    runs.request_cancel(tmp_path)
    assert runs.cancel_requested(tmp_path)
    rows = [{"epoch": 1, "train_loss": 2.0, "test_loss": 1.5, "overall_accuracy": 0.5, "average_accuracy": 0.4,
             "weighted_f1": 0.45, "kappa": 0.3, "seconds": 1.2}]
    runs.write_log(tmp_path / runs.LOG, rows)
    assert (tmp_path / runs.LOG).read_text().splitlines()[0] == ",".join(runs.LOG_COLUMNS)
    assert runs.read_log(tmp_path / runs.LOG) == rows
