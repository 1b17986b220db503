"""Where each file of the official BreizhCrops layout lives under a data root.

The same paths serve downloaded data and the simulated demo: both are the official layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cropcore.constants import YEAR

#: Written at the top of a simulated dataset so that every view can label it as simulated.
SIMULATED_MARKER = "SIMULATED.json"
#: Environment variable overriding where cropcore keeps data (demo, downloads).
DATA_DIR_ENV = "CROPCORE_DATA"


def data_dir() -> Path:
    """Folder holding the demo and downloads: $CROPCORE_DATA, else the checkout's ``data/``."""
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "data"


def default_root() -> Path:
    """Default root for downloaded (real) data."""
    return data_dir() / "breizhcrops"


def classmapping_path(root: Path) -> Path:
    return Path(root) / "classmapping.csv"


def codes_path(root: Path) -> Path:
    return Path(root) / "codes.csv"


def level_dir(root: Path, level: str, year: int = YEAR) -> Path:
    return Path(root) / str(year) / level


def index_path(root: Path, region: str, level: str, year: int = YEAR) -> Path:
    return level_dir(root, level, year) / f"{region}.csv"


def h5_candidates(root: Path, region: str, level: str, year: int = YEAR) -> tuple[Path, Path]:
    """The two places an extracted .h5 may be: flat, or nested as the archive unpacks it."""
    base = level_dir(root, level, year)
    nested = base / "data" / "BreizhCrops" / f"{level}_img" / "data" / str(year) / level / f"{region}.h5"
    return base / f"{region}.h5", nested


def h5_path(root: Path, region: str, level: str, year: int = YEAR) -> Path | None:
    """The existing .h5 of a region, or None."""
    return next((path for path in h5_candidates(root, region, level, year) if path.exists()), None)


def shapefile_path(root: Path, region: str, year: int = YEAR) -> Path:
    return Path(root) / str(year) / f"{region}.shp"


def cache_dir(root: Path, region: str, level: str, year: int = YEAR) -> Path:
    """Packed-store cache of one region, beside the data."""
    return level_dir(root, level, year) / ".cache" / region


def is_simulated(root: Path) -> bool:
    """True when the root was written by the simulator."""
    return (Path(root) / SIMULATED_MARKER).exists()


def data_label(simulated: bool) -> str:
    """How the commands name the data beside their scores, so simulated numbers are never read as real ones."""
    return "SIMULATED data, not the real BreizhCrops" if simulated else "real data"


def simulation_marker(root: Path) -> dict | None:
    """The simulator's record of a root (scale, seed, version, counts); None when absent or unreadable."""
    try:
        return json.loads((Path(root) / SIMULATED_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
