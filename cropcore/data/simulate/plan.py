"""Who is where: parcel counts, crop codes, ids and file quirks of one simulated department.

Class shares are rounded Brittany figures (meadows and corn about three quarters, cereals next,
rapeseed a few percent, orchards under one percent, sunflower and nuts a few hundred parcels per
department at full size), with the regional character of sentinel2-brittany.md: Finistère most
grassland, Ille-et-Vilaine most cereals and corn. A handful of parcels carry the quirks of the real
files (codes outside the class mapping, empty series, rows of NaN) so that the loader's drop logic
runs on the demo too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cropcore.constants import CLASS_CODES, CLASSES, LEVELS, PARCEL_COUNTS, REGIONS

#: Share of each class among mapped parcels, per department (CLASSES order).
CLASS_SHARES: dict[str, tuple[float, ...]] = {
    #         barley wheat rapeseed corn sunflower orchards nuts  perm.  temp.
    "frh01": (0.075, 0.16, 0.025, 0.27, 0.0016, 0.006, 0.0016, 0.19, 0.27),
    "frh02": (0.050, 0.11, 0.015, 0.26, 0.0012, 0.006, 0.0015, 0.27, 0.285),
    "frh03": (0.085, 0.20, 0.035, 0.30, 0.0020, 0.007, 0.0016, 0.155, 0.215),
    "frh04": (0.070, 0.15, 0.025, 0.28, 0.0016, 0.008, 0.0020, 0.22, 0.24),
}
#: Relative frequency of the RPG codes inside each class (winter crops dominate in Brittany).
CODE_WEIGHTS: dict[str, dict[str, float]] = {
    "barley": {"ORH": 0.8, "ORP": 0.2},
    "wheat": {"BTH": 0.93, "BTP": 0.07},
    "rapeseed": {"CZH": 0.95, "CZP": 0.05},
    "corn": {"MIE": 0.6, "MIS": 0.38, "MID": 0.02},
    "sunflower": {"TRN": 1.0},
    "orchards": {code: (0.7 if code == "VRG" else 0.3 / (len(CLASS_CODES["orchards"]) - 1))
                 for code in CLASS_CODES["orchards"]},
    "nuts": {"NOX": 0.35, "NOS": 0.35, "CTG": 0.2, "CAB": 0.05, "PIS": 0.05},
    "permanent meadows": {"PPH": 0.85, "PRL": 0.15},
    "temporary meadows": {"PTR": 0.8, "RGA": 0.2},
}
#: RPG codes of the real files that are outside the 9-class mapping (dropped by loaders).
UNMAPPED_CODES: tuple[str, ...] = ("SOG", "TTH", "J6S", "MLG", "BOP", "SNE")
#: Quirk shares (of a department's parcels) and their minimum counts.
UNMAPPED_SHARE, UNMAPPED_MIN = 0.004, 2
EMPTY_SHARE, EMPTY_MIN = 0.0008, 1
NAN_SHARE, NAN_MIN = 0.002, 2
#: Parcel ids are drawn without replacement from this range (real ids are 6-7 digit integers).
ID_RANGE = (100_000, 9_999_999)
#: Classes that absorb rounding (the big ones) and may carry empty series.
_BIG = ("corn", "permanent meadows", "temporary meadows", "wheat")


@dataclass(frozen=True)
class RegionPlan:
    """Everything about a department's parcels except their time series."""

    region: str
    ids: np.ndarray          # int64 [M]
    codes: np.ndarray        # str [M]
    classids: np.ndarray     # int64 [M], -1 outside the mapping
    empty: np.ndarray        # bool [M]: series of length 0
    nan_rows: np.ndarray     # bool [M]: a few NaN rows
    in_level: dict[str, np.ndarray]  # level -> bool [M]


def level_counts(region: str, scale: float, min_per_class: int) -> dict[str, int]:
    """Parcels per level: the real count times scale, never fewer than every class needs."""
    floor = min_per_class * len(CLASSES) + UNMAPPED_MIN + EMPTY_MIN
    return {level: max(int(round(PARCEL_COUNTS[level][region] * scale)), floor) for level in LEVELS}


def class_counts(region: str, n_mapped: int, min_per_class: int) -> np.ndarray:
    """Parcels per class: shares of the region, at least `min_per_class`, summing to `n_mapped`."""
    shares = np.array(CLASS_SHARES[region])
    counts = np.maximum(np.round(shares / shares.sum() * n_mapped).astype(np.int64), min_per_class)
    big = [CLASSES.index(name) for name in _BIG]
    excess = int(counts.sum() - n_mapped)
    order = sorted(big, key=lambda i: -counts[i])
    i = 0
    while excess != 0:  # take from (or give to) the big classes, largest first
        step = 1 if excess > 0 else -1
        if counts[order[i % len(order)]] - step >= min_per_class:
            counts[order[i % len(order)]] -= step
            excess -= step
        i += 1
    return counts


def all_ids(counts: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Unique parcel ids across departments."""
    total = sum(counts.values())
    ids = ID_RANGE[0] + rng.choice(ID_RANGE[1] - ID_RANGE[0], size=total, replace=False).astype(np.int64)
    out, start = {}, 0
    for region in REGIONS:
        if region in counts:
            out[region] = ids[start:start + counts[region]]
            start += counts[region]
    return out


def plan_region(region: str, ids: np.ndarray, scale: float, min_per_class: int,
                rng: np.random.Generator) -> RegionPlan:
    """Codes, quirks and level membership of a department's `len(ids)` parcels."""
    per_level = level_counts(region, scale, min_per_class)
    total = len(ids)
    n_unmapped = max(UNMAPPED_MIN, int(round(UNMAPPED_SHARE * total)))
    counts = class_counts(region, total - n_unmapped, min_per_class)
    classids = np.concatenate([np.repeat(np.arange(len(CLASSES)), counts), np.full(n_unmapped, -1)])
    codes = np.empty(total, dtype=object)
    for classid, name in enumerate(CLASSES):
        rows = np.flatnonzero(classids == classid)
        names, weights = zip(*CODE_WEIGHTS[name].items())
        codes[rows] = rng.choice(np.array(names), size=len(rows), p=np.array(weights) / sum(weights))
    codes[classids == -1] = rng.choice(np.array(UNMAPPED_CODES), size=n_unmapped)
    order = rng.permutation(total)  # crops mixed over the patches
    classids, codes = classids[order], codes[order].astype(str)

    big_rows = np.flatnonzero(np.isin(classids, [CLASSES.index(name) for name in _BIG]))
    n_empty = max(EMPTY_MIN, int(round(EMPTY_SHARE * total)))
    n_nan = max(NAN_MIN, int(round(NAN_SHARE * total)))
    picked = rng.choice(big_rows, size=n_empty + n_nan, replace=False)
    empty = np.zeros(total, dtype=bool)
    nan_rows = np.zeros(total, dtype=bool)
    empty[picked[:n_empty]] = True
    nan_rows[picked[n_empty:]] = True

    in_level = {}
    for level, n in per_level.items():  # the levels' parcel sets differ by a few big-class parcels
        member = np.ones(total, dtype=bool)
        spare = np.setdiff1d(big_rows, picked)
        member[rng.choice(spare, size=total - n, replace=False)] = False
        in_level[level] = member
    return RegionPlan(region, ids, codes, classids, empty, nan_rows, in_level)


def universe_size(region: str, scale: float, min_per_class: int) -> int:
    """Parcels of a department over both levels (its shapefile's length)."""
    return max(level_counts(region, scale, min_per_class).values())
