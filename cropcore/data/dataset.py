"""`BreizhCrops`: one region and level of the official files, read through the packed store.

Same sample API as the reference package (``x, y, field_id = ds[i]``) but every parcel comes
from memory-mapped flat arrays (`cropcore.data.store`) instead of one HDF5 lookup per sample.
The dataset verifies, then loads: missing files raise a `DatasetNotFoundError` that names them
and gives the command that fetches them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cropcore.constants import (BANDS, CLOUD_MASK, EXTRA_REGIONS, MASKS, REFLECTANCE_SCALE, REGIONS, SEQUENCE_LENGTH,
                                YEAR, check_level, check_region)
from cropcore.data import layout
from cropcore.data.classmapping import ClassMapping, load_classmapping
from cropcore.data.errors import DataFormatError, DatasetNotFoundError
from cropcore.data.store import PackedStore, open_store

if TYPE_CHECKING:
    import geopandas as gpd

#: Shapefile attribute names that carry the parcel id (2017 release: ID; 2018: ID_PARCEL).
SHAPE_ID_FIELDS: tuple[str, ...] = ("ID", "id", "ID_PARCEL")
#: CRS of the published shapefiles (Lambert-93), assumed when a .prj is missing.
SHAPE_CRS = "EPSG:2154"
Transform = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class ParcelSeries:
    """The whole series of one parcel, for plots and inspection.

    Attributes:
        dates: datetime64[s] [T].
        reflectance: float32 [T, D], reflectance 0-1, bands in ``bands`` (wavelength) order.
        cloudy: bool [T], the paper's cloud flag (QA60 > 0 for L1C, CLD > 0 for L2A).
        masks: raw mask columns (QA10, QA20, QA60 or CLD, EDG, SAT), float32 [T] each.
    """

    field_id: int
    classid: int
    classname: str
    region: str
    level: str
    dates: np.ndarray
    reflectance: np.ndarray
    bands: tuple[str, ...]
    cloudy: np.ndarray
    masks: dict[str, np.ndarray]


def subsample_indices(length: int, sequence_length: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted random time indices: without replacement when the series is long enough, else with."""
    if length >= sequence_length:
        picked = rng.choice(length, size=sequence_length, replace=False)
    else:
        picked = rng.integers(0, length, size=sequence_length)
    return np.sort(picked)


class BreizhCrops(Dataset):
    """Parcels of one region and processing level of the BreizhCrops 2017 release.

    Args:
        region: frh01..frh04 (or belle-ile, kermaux).
        root: data root in the official layout; None uses `layout.default_root()`.
        level: "L1C" (top of atmosphere) or "L2A" (bottom of atmosphere).
        year: only 2017 is published.
        download: fetch missing files with `cropcore.data.download.download`.
        transform: replaces the default sub-sampling: called with the parcel's full series as a
            float32 numpy array (T, D), reflectance 0-1 in ``BANDS[level]`` order; its return value is
            the sample's x.
        sequence_length: time steps of the default sub-sample (45 in the paper).
        seed: seed of the sub-sampling draws; None draws fresh entropy.

    Raises:
        ValueError: unknown region, level or year, or a non-positive sequence length.
        DatasetNotFoundError: files missing (the message names them and the download command).
        DataFormatError: a file does not hold what the published layout promises.
    """

    def __init__(self, region: str, root: Path | str | None = None, level: str = "L1C", year: int = YEAR,
                 download: bool = False, transform: Transform | None = None,
                 sequence_length: int = SEQUENCE_LENGTH, seed: int | None = None) -> None:
        self.region = check_region(region)
        self.level = check_level(level)
        _check_region_level(self.region, self.level)
        if int(year) != YEAR:
            raise ValueError(f"unknown year {year!r}; the published release covers {YEAR} only")
        if int(sequence_length) < 1:
            raise ValueError(f"sequence_length must be a positive integer, got {sequence_length!r}")
        self.year = int(year)
        self.root = Path(root) if root is not None else layout.default_root()
        self.transform = transform
        self.sequence_length = int(sequence_length)
        self.seed = seed
        self.bands: tuple[str, ...] = BANDS[self.level]
        self._verify(download)
        self.mapping: ClassMapping = load_classmapping(self.root)
        self.store: PackedStore = open_store(self.root, self.region, self.level, self.year, mapping=self.mapping)
        self.index: pd.DataFrame = self.store.index
        self._labels = self.index["classid"].to_numpy(np.int64)
        self._ids = self.index["id"].to_numpy(np.int64)
        self._rng: np.random.Generator | None = None
        self._rng_worker: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the memory maps (spawned DataLoader workers re-open the cache instead)."""
        state = self.__dict__.copy()
        state.update(store=None, _rng=None, _rng_worker=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.store = open_store(self.root, self.region, self.level, self.year, mapping=self.mapping)

    # ------------------------------------------------------------------ verify

    def _missing(self) -> list[str]:
        missing = []
        index_file = layout.index_path(self.root, self.region, self.level, self.year)
        if not index_file.exists():
            missing.append(str(index_file))
        if layout.h5_path(self.root, self.region, self.level, self.year) is None:
            flat, nested = layout.h5_candidates(self.root, self.region, self.level, self.year)
            missing.append(f"{flat} (or {nested})")
        return missing

    def _verify(self, download: bool) -> None:
        """Return when the files are there; download them when asked; else say how to get them."""
        if not self._missing():
            return
        if download:
            fetch = importlib.import_module("cropcore.data.download").download
            fetch(self.region, self.level, self.root)
        missing = self._missing()
        if missing:
            raise DatasetNotFoundError(
                f"BreizhCrops {self.region} {self.level} not found under {self.root}: missing "
                f"{'; '.join(missing)}. Fetch it with `cropcore download --region {self.region} --level "
                f"{self.level} --root {self.root}` (or pass download=True); to work offline, "
                f"`cropcore demo` writes a simulated dataset in the same layout (cropcore.data.demo_root()).")

    # ------------------------------------------------------------------ samples

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        source = "simulated" if self.is_simulated else "official"
        return (f"BreizhCrops(region={self.region!r}, level={self.level!r}, parcels={len(self)}, {source}, "
                f"root={self.root})")

    @property
    def is_simulated(self) -> bool:
        """True when the root was written by the simulator (`cropcore demo`)."""
        return layout.is_simulated(self.root)

    @property
    def rng(self) -> np.random.Generator:
        """Sub-sampling generator; re-seeded per DataLoader worker so workers draw differently."""
        worker = torch.utils.data.get_worker_info()
        worker_id = None if worker is None else worker.id
        if self._rng is None or worker_id != self._rng_worker:
            entropy = self.seed if worker is None else [worker.seed, self.seed or 0]
            self._rng = np.random.default_rng(entropy)
            self._rng_worker = worker_id
        return self._rng

    def _position(self, i: int) -> int:
        n = len(self)
        position = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= position < n:
            raise IndexError(f"parcel index {i} out of range for {n} parcels")
        return position

    def reflectance(self, i: int) -> np.ndarray:
        """float32 [T, D] reflectance 0-1 of parcel ``i``, bands in ``BANDS[level]`` order."""
        rows = self.store.rows(self._position(i))
        return (np.asarray(self.store.values[rows], dtype=np.float32) * np.float32(REFLECTANCE_SCALE))

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor, int]:
        """(x, y, field_id): x float32 [sequence_length, D] ordered sub-sample (or transform's output)."""
        position = self._position(i)
        series = self.reflectance(position)
        if self.transform is not None:
            x = self.transform(series)
        else:
            picked = subsample_indices(len(series), self.sequence_length, self.rng)
            x = torch.from_numpy(np.ascontiguousarray(series[picked]))
        return x, torch.tensor(self._labels[position], dtype=torch.int64), int(self._ids[position])

    def raw(self, i: int) -> ParcelSeries:
        """The whole series of parcel ``i`` (dates, reflectance, cloud flag, mask columns)."""
        position = self._position(i)
        rows = self.store.rows(position)
        masks = np.asarray(self.store.masks[rows], dtype=np.float32)
        row = self.index.iloc[position]
        return ParcelSeries(
            field_id=int(row["id"]), classid=int(row["classid"]), classname=str(row["classname"]),
            region=self.region, level=self.level, dates=np.asarray(self.store.dates[rows]),
            reflectance=self.reflectance(position), bands=self.bands,
            cloudy=masks[:, MASKS[self.level].index(CLOUD_MASK[self.level])] > 0,
            masks={name: masks[:, k].copy() for k, name in enumerate(MASKS[self.level])})

    # ------------------------------------------------------------------ derived views

    def grid_features(self) -> tuple[np.ndarray, np.ndarray]:
        """Random Forest features of every parcel: (float32 [N, 71, D] reflectance, fallback bool [N]).

        Cloudy observations (QA60 > 0 / CLD > 0) are dropped before the 5-day interpolation;
        ``fallback`` marks parcels without any clear observation (all observations used).
        """
        from cropcore.data.features import grid_features

        values = np.asarray(self.store.values, dtype=np.float32) * np.float32(REFLECTANCE_SCALE)
        return grid_features(np.asarray(self.store.dates), values, np.asarray(self.store.offsets),
                             self.store.cloudy(self.level))

    def geodataframe(self) -> gpd.GeoDataFrame:
        """Kept parcels with their polygons in EPSG:4326: id, classid, classname, region, geometry.

        Raises:
            DatasetNotFoundError: the region's shapefile is missing.
            DataFormatError: the shapefile has no parcel id field.
        """
        import geopandas as gpd

        path = layout.shapefile_path(self.root, self.region, self.year)
        if not path.exists():
            raise DatasetNotFoundError(
                f"no parcel geometries for {self.region}: {path} is missing. Fetch them with `cropcore "
                f"download --region {self.region} --level {self.level} --root {self.root}`.")
        shapes = gpd.read_file(path, engine="pyogrio")
        id_field = next((name for name in SHAPE_ID_FIELDS if name in shapes.columns), None)
        if id_field is None:
            raise DataFormatError(f"{path}: no parcel id field; expected one of {', '.join(SHAPE_ID_FIELDS)}, "
                                  f"found {', '.join(map(str, shapes.columns))}")
        if shapes.crs is None:
            shapes = shapes.set_crs(SHAPE_CRS)
        shapes = shapes[[id_field, "geometry"]].rename(columns={id_field: "id"})
        shapes["id"] = pd.to_numeric(shapes["id"], errors="coerce").astype("Int64")
        shapes = shapes.dropna(subset=["id"]).drop_duplicates("id").astype({"id": "int64"})
        parcels = self.index[["id", "classid", "classname", "region"]]
        joined = parcels.merge(shapes, on="id", how="inner", validate="one_to_one")
        return gpd.GeoDataFrame(joined, geometry="geometry", crs=shapes.crs).to_crs("EPSG:4326")


def _check_region_level(region: str, level: str) -> None:
    """Extra regions exist only for some levels (kermaux: L1C only)."""
    valid = REGIONS + EXTRA_REGIONS[level]
    if region not in valid:
        raise ValueError(f"region {region!r} is not published for {level}; expected one of {', '.join(valid)}")
