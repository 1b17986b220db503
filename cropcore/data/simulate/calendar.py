"""The 2017 Sentinel-2 acquisition calendar over Brittany.

Sentinel-2A images each relative orbit every 10 days from January; Sentinel-2B joined in July 2017,
flying half a cycle (5 days) behind, so the revisit per orbit drops to 5 days. A few early-2017
acquisitions are missing from the archive, which leaves 51 dates per orbit: the paper's L1C length.
Each department is crossed by two relative orbits whose swaths overlap in a north-south band;
parcels in that band are seen by both (102 dates), the others by one (51 dates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cropcore.constants import YEAR

#: Days between two acquisitions of one orbit by one satellite.
CYCLE_DAYS = 10
#: Day of year from which Sentinel-2B acquisitions are in the archive (operational July 2017).
S2B_START_DOY = 182
#: Acquisitions per orbit kept in the archive (the paper's L1C series length).
DATES_PER_ORBIT = 51
DAYS_IN_YEAR = 365

#: Two relative orbits per department: (name, phase in days of the first S2A pass in January).
#: Phases differ by 3 days so the two orbits' dates never coincide, before or after S2B.
ORBITS: dict[str, tuple[tuple[str, int], tuple[str, int]]] = {
    "frh01": (("R094", 2), ("R051", 5)),
    "frh02": (("R137", 4), ("R094", 7)),
    "frh03": (("R051", 1), ("R008", 4)),
    "frh04": (("R094", 3), ("R051", 6)),
}
#: Share of a department's east-west extent inside the swath overlap (seen twice).
OVERLAP_BAND = (0.35, 0.72)


@dataclass(frozen=True)
class Orbit:
    """One relative orbit over a department and its 51 acquisition days (day of year, 1-based)."""

    name: str
    doy: np.ndarray  # int [51], sorted


def orbit_days(name: str, phase: int) -> np.ndarray:
    """The 51 archived acquisition days of one orbit (a fixed fact, independent of the user seed)."""
    s2a = np.arange(phase, DAYS_IN_YEAR + 1, CYCLE_DAYS)
    s2b = np.arange(phase + CYCLE_DAYS // 2, DAYS_IN_YEAR + 1, CYCLE_DAYS)
    s2b = s2b[s2b >= S2B_START_DOY]
    days = np.sort(np.concatenate([s2a, s2b]))
    missing = len(days) - DATES_PER_ORBIT
    rng = np.random.default_rng(sum(map(ord, name)))  # archive gaps: fixed per orbit
    early = np.flatnonzero(days < S2B_START_DOY)
    drop = rng.choice(early, size=missing, replace=False)
    return np.delete(days, drop)


def region_orbits(region: str) -> tuple[Orbit, Orbit]:
    """The two orbits crossing a department."""
    return tuple(Orbit(name, orbit_days(name, phase)) for name, phase in ORBITS[region])  # type: ignore[return-value]


def orbit_membership(x: np.ndarray, xmin: float, xmax: float) -> np.ndarray:
    """bool [N, 2]: which of the two orbits sees each parcel (west orbit, east orbit) from its easting."""
    position = (x - xmin) / max(xmax - xmin, 1.0)
    west = position < OVERLAP_BAND[1]
    east = position >= OVERLAP_BAND[0]
    return np.column_stack([west, east])


def doy_to_datetime(doy: np.ndarray) -> np.ndarray:
    """Day of year (1-based) -> datetime64[D] in 2017."""
    return np.datetime64(f"{YEAR}-01-01", "D") + (np.asarray(doy) - 1).astype("timedelta64[D]")
