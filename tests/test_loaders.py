"""The dashboard's cache keys: entries kept on disk must never outlive the files they were built from."""

from __future__ import annotations

import os
from pathlib import Path

from cropcore.data import layout
from dashboard import loaders


def test_shapefile_stamp_follows_the_shapefile(tmp_path: Path) -> None:
    shapefile = layout.shapefile_path(tmp_path, "frh04")
    shapefile.parent.mkdir(parents=True)
    assert loaders.shapefile_stamp(str(tmp_path), "frh04") == "missing;missing"

    shapefile.write_bytes(b"outlines")
    shapefile.with_suffix(".dbf").write_bytes(b"attributes")
    written = loaders.shapefile_stamp(str(tmp_path), "frh04")
    assert "missing" not in written
    assert loaders.shapefile_stamp(str(tmp_path), "frh04") == written

    stat = shapefile.stat()
    os.utime(shapefile, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert loaders.shapefile_stamp(str(tmp_path), "frh04") != written
