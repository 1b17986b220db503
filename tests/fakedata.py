"""Seeded generator of tiny fake BreizhCrops files in the exact published layout.

Independent of the simulator on purpose: the loader tests must not share assumptions with the
code that writes the demo. Every quirk of the real release the loader must survive can be
switched on: both index variants, flat or nested .h5, NaN rows, length-0 series, codes outside the
class mapping, an index key missing from the .h5, a truncated .h5, a corrupt parcel dataset.

The values are random but plausible (integers x1e4 stored as float64, ``doa`` as ns floats), and
every parcel's written array is returned so tests can compare what the loader reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cropcore.constants import CLASS_CODES, CLASSES, CLOUD_MASK, COLUMNS, MASKS, YEAR

#: Codes outside the class mapping (real RPG codes: soy, sorghum, fallow).
FOREIGN_CODES: tuple[str, ...] = ("SOJ", "SOG", "J6S")
MAPPED_CODES: tuple[str, ...] = tuple(code for name in CLASSES for code in CLASS_CODES[name])
YEAR_START_NS = np.datetime64(f"{YEAR}-01-01", "ns").astype(np.int64)
DAY_NS = 86_400 * 10**9


@dataclass
class FakeParcel:
    """One index row and what was written for it (``data`` None when its key is absent)."""

    id: int
    code: str
    key: str
    data: np.ndarray | None
    sequencelength: int

    @property
    def mapped(self) -> bool:
        return self.code in MAPPED_CODES


@dataclass
class FakeRegion:
    """Files of one region and level, and their content."""

    root: Path
    region: str
    level: str
    index_path: Path
    h5_path: Path
    parcels: list[FakeParcel] = field(default_factory=list)

    def parcel(self, parcel_id: int) -> FakeParcel:
        return next(p for p in self.parcels if p.id == parcel_id)

    def expected(self, codes: dict[str, int] | None = None) -> dict[int, np.ndarray]:
        """Parcel id -> rows the loader must keep (NaN rows dropped), in index order."""
        codes = codes if codes is not None else {c: 0 for c in MAPPED_CODES}
        out: dict[int, np.ndarray] = {}
        for parcel in self.parcels:
            if parcel.code not in codes or parcel.sequencelength == 0 or parcel.data is None:
                continue
            rows = parcel.data[~np.isnan(parcel.data).any(axis=1)]
            if len(rows):
                out[parcel.id] = rows
        return out


def parcel_key(region: str, level: str, parcel_id: int) -> str:
    """The HDF5 key the official index gives a parcel (ends in .csv, an HDF5 key nevertheless)."""
    return f"/data/BreizhCrops/{level}_img/data/{YEAR}/{level}/{region}/csv/{parcel_id}.csv"


def series(rng: np.random.Generator, level: str, length: int) -> np.ndarray:
    """A (T, C) float64 array in the level's column order: integer bands, masks, sorted doa."""
    columns = COLUMNS[level]
    data = np.zeros((length, len(columns)))
    for i, name in enumerate(columns):
        if name == "doa":
            days = np.sort(rng.choice(365, size=length, replace=length > 365))
            data[:, i] = (YEAR_START_NS + days.astype(np.int64) * DAY_NS).astype(np.float64)
        elif name in MASKS[level]:
            cloudy = rng.random(length) < 0.4
            data[:, i] = np.where(cloudy, rng.choice([1024.0, 2048.0, 341.3], size=length), 0.0)
        else:
            data[:, i] = rng.integers(1, 9000, size=length).astype(np.float64)
    return data


def _lengths(rng: np.random.Generator, level: str, n: int) -> np.ndarray:
    """Plausible series lengths: L1C mostly 51 or 102, L2A shorter; some below 45."""
    if level == "L1C":
        return rng.choice([51, 102, 30, 51], size=n)
    return rng.choice([38, 44, 60, 12], size=n)


def write_region(root: Path | str, region: str = "frh01", level: str = "L1C", *, seed: int = 0,
                 n_parcels: int = 12, lengths: np.ndarray | None = None, index_variant: str = "original",
                 nested: bool = False, quirks: bool = True, missing_key: bool = False,
                 compressed: bool = False, progress: bool = False) -> FakeRegion:
    """Write ``2017/<level>/<region>.csv`` and its .h5 under ``root``.

    Args:
        n_parcels: regular parcels (all with mapped codes); quirks add a few more.
        lengths: series length per regular parcel; None draws plausible ones.
        index_variant: "original" (idx,id,CODE_CULTU,path,meanQA60,sequencelength) or "reference"
            (what the reference package rewrites: only kept rows, meanCLD, classid, classname, region).
        nested: put the .h5 where the archive unpacks it instead of beside the csv.
        quirks: add NaN rows, an all-NaN parcel, two length-0 series and foreign codes.
        missing_key: list one parcel in the index whose key is not in the .h5.
        compressed: store datasets chunked + gzip (lets tests corrupt one parcel's bytes).
    """
    rng = np.random.default_rng([seed, sum(map(ord, region)), sum(map(ord, level))])
    root = Path(root)
    level_dir = root / str(YEAR) / level
    h5_path = (level_dir / "data" / "BreizhCrops" / f"{level}_img" / "data" / str(YEAR) / level / f"{region}.h5"
               if nested else level_dir / f"{region}.h5")
    h5_path.parent.mkdir(parents=True, exist_ok=True)
    parcels = _make_parcels(rng, region, level, n_parcels, lengths, quirks, missing_key)
    _write_h5(h5_path, parcels, compressed, progress)
    fake = FakeRegion(root, region, level, level_dir / f"{region}.csv", h5_path, parcels)
    _write_index(fake, index_variant)
    return fake


def _make_parcels(rng: np.random.Generator, region: str, level: str, n: int, lengths: np.ndarray | None,
                  quirks: bool, missing_key: bool) -> list[FakeParcel]:
    lengths = _lengths(rng, level, n) if lengths is None else np.asarray(lengths)
    ids = rng.choice(np.arange(100_000, 999_999), size=n + 8, replace=False)
    codes = [MAPPED_CODES[i % len(MAPPED_CODES)] for i in rng.permutation(max(n, len(MAPPED_CODES)))[:n]]
    parcels = [FakeParcel(int(ids[i]), codes[i], parcel_key(region, level, int(ids[i])),
                          series(rng, level, int(lengths[i])), int(lengths[i])) for i in range(n)]
    extra = iter(int(i) for i in ids[n:])
    if quirks:
        parcels += _quirky_parcels(rng, region, level, extra)
    if missing_key:
        pid = next(extra)
        parcels.append(FakeParcel(pid, "BTH", parcel_key(region, level, pid), None, 51))
    return parcels


def _quirky_parcels(rng: np.random.Generator, region: str, level: str, ids) -> list[FakeParcel]:
    """NaN rows, an all-NaN series, length-0 series (with and without a key), foreign codes."""
    out = []
    pid = next(ids)
    data = series(rng, level, 51)
    data[[3, 17], 4] = np.nan
    out.append(FakeParcel(pid, "MIS", parcel_key(region, level, pid), data, 51))
    pid = next(ids)
    data = series(rng, level, 20)
    data[:, 2] = np.nan
    out.append(FakeParcel(pid, "PPH", parcel_key(region, level, pid), data, 20))
    pid = next(ids)
    out.append(FakeParcel(pid, "PTR", parcel_key(region, level, pid), series(rng, level, 0), 0))
    pid = next(ids)
    out.append(FakeParcel(pid, "ORH", parcel_key(region, level, pid), None, 0))
    for code in FOREIGN_CODES[:2]:
        pid = next(ids)
        out.append(FakeParcel(pid, code, parcel_key(region, level, pid), series(rng, level, 51), 51))
    return out


def _write_h5(path: Path, parcels: list[FakeParcel], compressed: bool, progress: bool) -> None:
    options = {"chunks": True, "compression": "gzip"} if compressed else {}
    items = parcels
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(parcels, desc=f"writing {path.name}", unit="parcel")
    with h5py.File(path, "w") as h5:
        for parcel in items:
            if parcel.data is not None:
                h5.create_dataset(parcel.key, data=parcel.data,
                                  **(options if len(parcel.data) else {}))


def _write_index(fake: FakeRegion, variant: str) -> None:
    cloud_col = COLUMNS[fake.level].index(CLOUD_MASK[fake.level])
    rows = [{"idx": i + 1, "id": p.id, "CODE_CULTU": p.code, "path": p.key,
             "meanQA60": float(np.nanmean(p.data[:, cloud_col])) if p.data is not None and len(p.data) else 0.0,
             "sequencelength": p.sequencelength} for i, p in enumerate(fake.parcels)]
    table = pd.DataFrame(rows, columns=["idx", "id", "CODE_CULTU", "path", "meanQA60", "sequencelength"])
    if variant == "reference":
        classid = {code: i for i, name in enumerate(CLASSES) for code in CLASS_CODES[name]}
        table = table.loc[table["CODE_CULTU"].isin(list(classid)) & (table["sequencelength"] > 0)]
        table = table.rename(columns={"meanQA60": "meanCLD"})
        table["classid"] = table["CODE_CULTU"].map(classid)
        table["classname"] = [CLASSES[i] for i in table["classid"]]
        table["region"] = fake.region
        table = table.set_index("idx")
        table.to_csv(fake.index_path)
    elif variant == "original":
        table.to_csv(fake.index_path, index=False)
    else:
        raise ValueError(f"unknown index variant {variant!r}; expected 'original' or 'reference'")


def write_classmapping(root: Path | str, codes: dict[str, int] | None = None) -> Path:
    """The official classmapping.csv (unnamed index column, id, classname, code)."""
    codes = codes if codes is not None else {c: i for i, n in enumerate(CLASSES) for c in CLASS_CODES[n]}
    table = pd.DataFrame({"id": list(codes.values()), "classname": [CLASSES[i] for i in codes.values()],
                          "code": list(codes)})
    path = Path(root) / "classmapping.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path)
    return path


def write_codes(root: Path | str) -> Path:
    """A small ';'-separated codes.csv (code as first column, like the release)."""
    codes = list(MAPPED_CODES) + list(FOREIGN_CODES)
    table = pd.DataFrame({"CODE": codes, "LIBELLE_CULTURE": [f"culture {c}" for c in codes],
                          "LIBELLE_GROUPE_CULTURE": ["groupe"] * len(codes)})
    path = Path(root) / "codes.csv"
    table.to_csv(path, sep=";", index=False)
    return path


def write_shapefile(fake: FakeRegion, id_field: str = "ID") -> Path:
    """``2017/<region>.shp`` in EPSG:2154: a 100 m square per parcel of the index."""
    import geopandas as gpd
    from shapely.geometry import box

    xs = 250_000 + 150.0 * np.arange(len(fake.parcels))
    frame = gpd.GeoDataFrame({id_field: [p.id for p in fake.parcels],
                              "CODE_CULTU": [p.code for p in fake.parcels]},
                             geometry=[box(x, 6_780_000, x + 100, 6_780_100) for x in xs], crs="EPSG:2154")
    path = fake.root / str(YEAR) / f"{fake.region}.shp"
    frame.to_file(path, engine="pyogrio")
    return path


def write_root(root: Path | str, *, regions: tuple[str, ...] = ("frh01",), levels: tuple[str, ...] = ("L1C", "L2A"),
               classmapping: bool = True, shapefile: bool = False, seed: int = 0,
               **options) -> dict[tuple[str, str], FakeRegion]:
    """A whole fake root: class mapping, codes and every (region, level) asked for."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if classmapping:
        write_classmapping(root)
    write_codes(root)
    fakes = {(r, lv): write_region(root, r, lv, seed=seed, **options) for r in regions for lv in levels}
    if shapefile:
        for region in regions:
            write_shapefile(fakes[(region, levels[0])])
    return fakes


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its size, like an interrupted copy."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(int(size * keep))


def corrupt_parcel(fake: FakeRegion, parcel_id: int) -> None:
    """Overwrite the compressed bytes of one parcel's first chunk (needs compressed=True)."""
    with h5py.File(fake.h5_path, "r") as h5:
        info = h5[fake.parcel(parcel_id).key].id.get_chunk_info(0)
    with open(fake.h5_path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\x13\x37" * (info.size // 2))
