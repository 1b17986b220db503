"""The compute commands keep freed memory for reuse (glibc only); library callers' processes are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cropcore import cli, memory

#: Allocates and frees a 64 MB block, then counts the page faults of allocating it again.
REUSE_PROBE = """
import resource
from cropcore.memory import freed_memory_kept, keep_freed_memory
assert not freed_memory_kept()
applied = keep_freed_memory()
assert freed_memory_kept() == applied
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(64 << 20)
del block
before = faults()
block = bytearray(64 << 20)
print(applied, faults() - before)
"""


def _probe(switch: str) -> tuple[bool, int]:
    env = {**os.environ, memory.ENVIRONMENT_SWITCH: switch}
    out = subprocess.run([sys.executable, "-c", REUSE_PROBE], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not memory.running_glibc(), reason="glibc's allocator only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    pages = (64 << 20) // 4096
    applied, faults = _probe("1")
    assert applied and faults < pages // 10
    applied, faults = _probe("0")  # the switch keeps the defaults: the block is mapped in again
    assert not applied and faults > pages // 2


def test_only_the_commands_own_process_is_tuned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[None] = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(None) or True)
    predict = ["predict", "--checkpoint", str(tmp_path / "missing.pt"), "--region", "frh04",
               "--out", str(tmp_path / "out.parquet")]
    assert cli.main(predict) == 2  # called with arguments: a library caller's process
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["cropcore", *predict])
    assert cli.main() == 2  # the process's own command line
    assert len(calls) == 1
    monkeypatch.setattr(sys, "argv", ["cropcore", "download", "--region", "frh99", "--root", str(tmp_path)])
    assert cli.main() == 2  # runs no network
    assert len(calls) == 1
