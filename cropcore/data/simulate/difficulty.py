"""How hard is the simulated Brittany? The paper's Random Forest protocol, on the raw files.

Reads the official layout directly (index + HDF5, the loader's drop rules: codes outside the
mapping, empty series, NaN rows), builds 5-day grid features from cloud-filtered series and trains
a Random Forest on FRH01-03, testing on FRH04 (paper, section 4). Used to calibrate the simulation
and by the test that keeps it from becoming trivial or broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cropcore.constants import BANDS, CLASS_CODES, CLASSES, CLOUD_MASK, COLUMNS, REFLECTANCE_SCALE, REGIONS
from cropcore.data import layout
from cropcore.data.features import grid_features

#: The paper's Random Forest (section 4): 500 trees, depth 25, sqrt features.
PAPER_FOREST = {"n_estimators": 500, "max_depth": 25, "max_features": "sqrt"}


@dataclass(frozen=True)
class LevelArrays:
    """One region's kept parcels as flat arrays (reflectance 0-1, BANDS order)."""

    ids: np.ndarray
    classids: np.ndarray
    dates: np.ndarray        # datetime64[ns] [N_obs]
    reflectance: np.ndarray  # float32 [N_obs, D]
    cloud: np.ndarray        # float [N_obs], raw cloud-mask value
    offsets: np.ndarray      # int64 [N + 1]


def read_level(root: Path, region: str, level: str) -> LevelArrays:
    """Read a region straight from its index CSV and .h5 (loader-independent)."""
    codes = {code: CLASSES.index(name) for name in CLASSES for code in CLASS_CODES[name]}
    index = pd.read_csv(layout.index_path(root, region, level))
    index = index[index["CODE_CULTU"].isin(codes) & (index["sequencelength"] > 0)]
    columns = COLUMNS[level]
    bands = [columns.index(band) for band in BANDS[level]]
    cloud_column, doa_column = columns.index(CLOUD_MASK[level]), columns.index("doa")
    series = []
    with h5py.File(layout.h5_path(root, region, level), "r") as file:
        for key in index["path"]:
            values = file[key][()]
            series.append(values[~np.isnan(values).any(axis=1)])
    lengths = np.array([len(values) for values in series])
    stacked = np.concatenate(series)
    return LevelArrays(
        ids=index["id"].to_numpy(np.int64), classids=index["CODE_CULTU"].map(codes).to_numpy(np.int64),
        dates=stacked[:, doa_column].astype(np.int64).astype("datetime64[ns]"),
        reflectance=(stacked[:, bands] * REFLECTANCE_SCALE).astype(np.float32),
        cloud=stacked[:, cloud_column], offsets=np.concatenate([[0], np.cumsum(lengths)]))


def features(arrays: LevelArrays) -> np.ndarray:
    """[N, 71 * D] grid features of cloud-filtered series (cloudy = mask > 0)."""
    grid, _ = grid_features(arrays.dates, arrays.reflectance, arrays.offsets, arrays.cloud > 0)
    return grid.reshape(len(grid), -1)


def rf_difficulty(root: Path, level: str = "L1C", *, n_jobs: int = -1, seed: int = 0,
                  **forest: object) -> dict[str, float]:
    """Train the paper's RF on FRH01-03 and score it on FRH04.

    Returns:
        overall_accuracy, average_accuracy (mean per-class recall), weighted_f1, kappa.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score

    data = {region: read_level(Path(root), region, level) for region in REGIONS}
    train_x = np.concatenate([features(data[region]) for region in REGIONS[:3]])
    train_y = np.concatenate([data[region].classids for region in REGIONS[:3]])
    test_x, test_y = features(data[REGIONS[3]]), data[REGIONS[3]].classids
    params = {**PAPER_FOREST, **forest}
    model = RandomForestClassifier(n_jobs=n_jobs, random_state=seed, **params).fit(train_x, train_y)
    predicted = model.predict(test_x)
    return {"overall_accuracy": float(accuracy_score(test_y, predicted)),
            "average_accuracy": float(balanced_accuracy_score(test_y, predicted)),
            "weighted_f1": float(f1_score(test_y, predicted, average="weighted")),
            "kappa": float(cohen_kappa_score(test_y, predicted))}
