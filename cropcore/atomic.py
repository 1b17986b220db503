"""Files written whole or not at all: a temporary file beside the target, moved into place with ``os.replace``.

A reader (or a crash, or a kill) never sees half a file: it finds the old content or the new. Temporary
files are created with the process's umask, like any other output.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place atomically.

    The temporary file keeps the target's suffix so writers that look at it (GeoPackage) still work. It is
    created with the process's umask (``tempfile.mkstemp`` would make every output owner-only).
    """
    path = Path(path)
    temporary = _create_beside(path)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _create_beside(path: Path) -> str:
    """A new, empty file with a unique hidden name in ``path``'s folder, its mode set by the umask."""
    for _ in range(100):
        candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return str(candidate)
    raise FileExistsError(f"could not create a temporary file beside {path}")


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())


def write_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Let ``writer(temporary_path)`` write a file (torch.save, parquet, GeoPackage), then move it in place."""
    with atomic_path(path) as temporary:
        writer(temporary)
