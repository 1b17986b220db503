"""The dashboard's cache keys: entries kept on disk must never outlive the files they were built from."""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path

from cropcore.data import layout
from dashboard import loaders, maps


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


def test_disk_caches_follow_the_map_builders_code() -> None:
    """Streamlit keys a cache by the cached function's own code: the builders' digest is part of the key."""
    assert loaders.builders_stamp() == hashlib.sha1(Path(maps.__file__).read_bytes()).hexdigest()[:12]
    for cached in (loaders._map_layer, loaders._parcel_shapes):
        assert "code" in inspect.signature(cached).parameters
