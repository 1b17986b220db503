"""The packed store: one region's per-parcel HDF5 datasets converted once into flat arrays.

The official .h5 holds one small dataset per parcel; opening the file and one dataset per
sample is what makes the reference loader slow. The first open of a region reads every kept
parcel once and writes, under ``layout.cache_dir(root, region, level)``::

    values.npy   [N_obs, D]  bands in BANDS[level] (wavelength) order, raw x1e4 units,
                             uint16 when every value is an integer in 0..65535, else float32
    masks.npy    [N_obs, M]  MASKS[level] columns, float32 (raw parcel means)
    dates.npy    [N_obs]     datetime64[s], from ``doa`` (ns since epoch)
    offsets.npy  [N+1]       int64, parcel i is rows offsets[i]:offsets[i+1]
    index.parquet            one row per kept parcel, same order
    meta.json                format version, source sizes/mtimes, class-mapping hash, counts

Later opens memory-map the arrays (well under a second). The cache is written to a temporary
folder beside it and renamed into place, so a crash never leaves half a cache and concurrent
builders cannot corrupt each other; it is rebuilt when the sources or the mapping change.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from cropcore.constants import BANDS, CLOUD_MASK, COLUMNS, MASKS, YEAR
from cropcore.data import layout
from cropcore.data.classmapping import ClassMapping, load_classmapping
from cropcore.data.errors import DataFormatError, DatasetNotFoundError

#: Bump when the cache layout or its content rules change: older caches are rebuilt.
FORMAT_VERSION = 1
FORMAT_NAME = "cropcore-packed-store"
#: Columns the index csv must have (the other official columns are optional).
REQUIRED_INDEX_COLUMNS: tuple[str, ...] = ("id", "CODE_CULTU", "path", "sequencelength")
#: Both published variants: the original, and the one the reference package rewrites.
INDEX_VARIANTS: dict[str, tuple[str, ...]] = {
    "original": ("idx", "id", "CODE_CULTU", "path", "meanQA60", "sequencelength"),
    "reference-rewritten": ("idx", "id", "CODE_CULTU", "path", "meanCLD", "sequencelength",
                            "classid", "classname", "region"),
}
#: Parcels read per chunk during conversion (bounds the float64 buffer to a few MB).
CHUNK_PARCELS = 2048
#: Regions with more parcels than this show a progress bar while converting (progress=None).
PROGRESS_THRESHOLD = 5000
#: Temporary folders older than this (seconds) are left-overs of killed builders.
STALE_TMP_SECONDS = 3600.0
ARRAY_NAMES: tuple[str, ...] = ("values", "masks", "dates", "offsets")


@dataclass
class PackedStore:
    """Memory-mapped arrays of one region (see the module docstring for the layout).

    Attributes:
        values: [N_obs, D] band values, raw x1e4 units (uint16 or float32).
        masks: [N_obs, M] float32 mask columns ``mask_names``.
        dates: [N_obs] datetime64[s].
        offsets: [N+1] int64 row offsets per parcel.
        index: one row per parcel (id, idx, CODE_CULTU, path, sequencelength, classid, classname,
            region, cloudy_fraction and meanCLD when the index has it).
        meta: the content of meta.json.
        path: the cache folder.
    """

    values: np.ndarray
    masks: np.ndarray
    dates: np.ndarray
    offsets: np.ndarray
    index: pd.DataFrame
    meta: dict[str, Any]
    path: Path
    bands: tuple[str, ...] = field(default=())
    mask_names: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Observations per parcel (int64 [N])."""
        return np.diff(self.offsets)

    def rows(self, i: int) -> slice:
        """Rows of parcel ``i`` in values/masks/dates."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def cloudy(self, level: str) -> np.ndarray:
        """bool [N_obs]: the paper's cloud flag (QA60 > 0 for L1C, CLD > 0 for L2A)."""
        return self.masks[:, self.mask_names.index(CLOUD_MASK[level])] > 0


def source_files(root: Path, region: str, level: str, year: int = YEAR) -> tuple[Path, Path | None]:
    """(index csv, existing .h5 or None) of a region."""
    return layout.index_path(root, region, level, year), layout.h5_path(root, region, level, year)


def open_store(root: Path | str, region: str, level: str, year: int = YEAR, *,
               mapping: ClassMapping | None = None, progress: bool | None = None) -> PackedStore:
    """Open a region's packed store, converting the official files first when needed.

    Args:
        root: data root in the official layout.
        region, level, year: which files.
        mapping: class mapping; None reads it from ``root`` (built-in when absent).
        progress: show a progress bar while converting; None shows one for big regions.

    Raises:
        DatasetNotFoundError: the index csv or the .h5 is missing.
        DataFormatError: a file is malformed (names the file and, when known, the parcel).
    """
    root = Path(root)
    mapping = load_classmapping(root) if mapping is None else mapping
    index_file, h5_file = source_files(root, region, level, year)
    missing = [str(path) for path in (index_file,) if not path.exists()]
    if h5_file is None:
        missing.append(" or ".join(str(path) for path in layout.h5_candidates(root, region, level, year)))
    if missing:
        raise DatasetNotFoundError(f"missing {'; '.join(missing)}")
    target = cache_location(root, region, level, year)
    signature = _signature(index_file, h5_file, level, mapping)
    for _ in range(3):
        if not _is_current(target, signature):
            _build(target, signature, index_file, h5_file, region, level, mapping, progress)
        try:
            return _load(target)
        except FileNotFoundError:
            continue  # another builder swapped the folder between our check and our load
    raise OSError(f"{target}: the packed store keeps being replaced by concurrent builders")


def cache_location(root: Path, region: str, level: str, year: int = YEAR) -> Path:
    """Where the packed store lives: beside the data, or under the data folder when the root is read-only."""
    beside = layout.cache_dir(root, region, level, year)
    level_dir = layout.level_dir(root, level, year)
    if beside.exists() or os.access(beside.parent if beside.parent.exists() else level_dir, os.W_OK):
        return beside
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return layout.data_dir() / "cache" / digest / str(year) / level / region


# ----------------------------------------------------------------------------- cache validity

def _file_stamp(path: Path, relative_to: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.relative_to(relative_to)), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _signature(index_file: Path, h5_file: Path, level: str, mapping: ClassMapping) -> dict[str, Any]:
    """What the cache was built from: any change makes it stale."""
    base = index_file.parent
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "level": level,
            "index": _file_stamp(index_file, base), "h5": _file_stamp(h5_file, base),
            "classmapping": mapping.digest()}


def read_meta(folder: Path) -> dict[str, Any] | None:
    """meta.json of a cache folder, None when absent or unreadable."""
    try:
        return json.loads((Path(folder) / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _is_current(folder: Path, signature: dict[str, Any]) -> bool:
    meta = read_meta(folder)
    return meta is not None and meta.get("signature") == signature


def _load(folder: Path) -> PackedStore:
    """Memory-map a finished cache folder."""
    meta = read_meta(folder)
    if meta is None:
        raise DataFormatError(f"{folder}: packed store has no readable meta.json")
    arrays = {name: _load_array(folder / f"{name}.npy") for name in ARRAY_NAMES}
    index = pd.read_parquet(folder / "index.parquet")
    return PackedStore(**arrays, index=index, meta=meta, path=folder,
                       bands=tuple(meta["bands"]), mask_names=tuple(meta["masks"]))


def _load_array(path: Path) -> np.ndarray:
    """np.load with memory mapping, so opening costs nothing until rows are touched."""
    return np.load(path, mmap_mode="r")


# ----------------------------------------------------------------------------- index csv

def read_index(path: Path) -> pd.DataFrame:
    """Read a region index csv in either published variant.

    Unnamed columns (a written pandas index) are dropped, ``meanQA60`` is renamed ``meanCLD``
    (what the reference does), and the class columns of the rewritten variant are dropped:
    they are recomputed from the class mapping in use.

    Raises:
        DataFormatError: unreadable csv or a required column missing (names the expected ones).
    """
    try:
        table = pd.read_csv(path, dtype={"CODE_CULTU": str, "path": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFormatError(f"{path}: cannot read the index csv ({error})") from error
    table = table.loc[:, [not str(column).startswith("Unnamed") for column in table.columns]]
    missing = [column for column in REQUIRED_INDEX_COLUMNS if column not in table.columns]
    if missing:
        variants = "; ".join(f"{name}: {', '.join(columns)}" for name, columns in INDEX_VARIANTS.items())
        raise DataFormatError(f"{path}: index lacks column(s) {', '.join(missing)}; expected the columns "
                              f"of a published variant ({variants}), found {', '.join(map(str, table.columns))}")
    table = table.drop(columns=[c for c in ("classid", "classname", "region") if c in table.columns])
    table = table.rename(columns={"meanQA60": "meanCLD"})
    for column in ("id", "sequencelength"):
        numbers = pd.to_numeric(table[column], errors="coerce")
        if numbers.isna().any():
            row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
            raise DataFormatError(f"{path}: column {column!r} must hold integers (data row {row + 1})")
        table[column] = numbers.astype("int64")
    if "idx" not in table.columns:
        table.insert(0, "idx", np.arange(1, len(table) + 1, dtype=np.int64))
    table["CODE_CULTU"] = table["CODE_CULTU"].astype(str).str.strip().str.upper()
    return table.reset_index(drop=True)


def select_parcels(table: pd.DataFrame, mapping: ClassMapping, region: str) -> pd.DataFrame:
    """Parcels worth reading: code inside the mapping and a non-empty series; adds class columns."""
    classid = table["CODE_CULTU"].map(mapping.codes)
    kept = table.loc[classid.notna().to_numpy() & (table["sequencelength"] > 0).to_numpy()].copy()
    kept["classid"] = classid.loc[kept.index].astype("int64")
    kept["classname"] = [mapping.classnames[i] for i in kept["classid"]]
    kept["region"] = region
    return kept.reset_index(drop=True)


# ----------------------------------------------------------------------------- conversion

@dataclass
class _Chunk:
    """Converted rows of a run of parcels."""

    values: np.ndarray
    masks: np.ndarray
    dates: np.ndarray
    counts: np.ndarray  # kept rows per parcel of the run
    cloudy: np.ndarray  # cloudy kept rows per parcel of the run
    dropped: int  # rows dropped because they hold a NaN


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DataFormatError(f"{path}: cannot open the HDF5 file, it is truncated or corrupt ({error}); "
                              f"delete it and download it again") from error


class _ParcelReader:
    """Reads parcel datasets through h5py's low-level API.

    The high-level ``h5[key]`` costs several times more per parcel than opening the dataset id
    under its (cached) parent group and reading straight into a slice of a preallocated buffer;
    with ~150 000 parcels per region that is the difference between seconds and minutes.
    """

    def __init__(self, h5: h5py.File, h5_path: Path, level: str) -> None:
        self.h5 = h5
        self.h5_path = h5_path
        self.level = level
        self.width = len(COLUMNS[level])
        self._groups: dict[str, h5py.h5g.GroupID] = {}

    def open(self, key: str, parcel_id: int) -> h5py.h5d.DatasetID:
        """The dataset of one parcel, checked for existence and column count."""
        parent, name = posixpath.split(key)
        try:
            group = self._groups.get(parent)
            if group is None:
                group = self._groups[parent] = h5py.h5g.open(self.h5.id, (parent or "/").encode())
            dataset = h5py.h5d.open(group, name.encode())
        except (KeyError, ValueError, TypeError) as error:
            raise DataFormatError(f"{self.h5_path}: parcel id={parcel_id}: key {key!r} from the index is missing "
                                  f"from the HDF5 file (or is not a dataset)") from error
        except OSError as error:
            raise DataFormatError(f"{self.h5_path}: parcel id={parcel_id}: cannot open key {key!r}, the file "
                                  f"is corrupt ({error})") from error
        if len(dataset.shape) != 2 or dataset.shape[1] != self.width:
            raise DataFormatError(f"{self.h5_path}: parcel id={parcel_id} (key {key!r}) has shape "
                                  f"{dataset.shape}; expected (T, {self.width}) with the {self.level} columns "
                                  f"{', '.join(COLUMNS[self.level])}")
        return dataset

    def read_into(self, dataset: h5py.h5d.DatasetID, out: np.ndarray, key: str, parcel_id: int) -> None:
        try:
            dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
        except (OSError, TypeError, ValueError) as error:
            raise DataFormatError(f"{self.h5_path}: parcel id={parcel_id} (key {key!r}): cannot read its values, "
                                  f"the file is truncated or corrupt ({error})") from error

    def read_run(self, parcels: pd.DataFrame) -> _Chunk:
        """Read a run of parcels into one float64 buffer, then convert it vectorised."""
        ids = parcels["id"].to_numpy()
        keys = parcels["path"].to_list()
        datasets = [self.open(key, int(pid)) for key, pid in zip(keys, ids)]
        lengths = np.fromiter((d.shape[0] for d in datasets), dtype=np.int64, count=len(datasets))
        starts = np.concatenate([[0], np.cumsum(lengths)])
        buffer = np.empty((int(starts[-1]), self.width), dtype=np.float64)
        for i, dataset in enumerate(datasets):
            if lengths[i]:
                self.read_into(dataset, buffer[starts[i]:starts[i + 1]], keys[i], int(ids[i]))
        return _convert(buffer, lengths, self.level)


def _convert(buffer: np.ndarray, lengths: np.ndarray, level: str) -> _Chunk:
    """Drop rows with any NaN, reorder bands, keep the compact dtype when lossless."""
    columns = COLUMNS[level]
    parcel_of_row = np.repeat(np.arange(len(lengths)), lengths)
    keep = ~np.isnan(buffer).any(axis=1)
    rows = buffer[keep]
    bands = rows[:, [columns.index(b) for b in BANDS[level]]]
    masks = rows[:, [columns.index(m) for m in MASKS[level]]].astype(np.float32)
    dates = np.round(rows[:, columns.index("doa")] / 1e9).astype(np.int64).astype("datetime64[s]")
    counts = np.bincount(parcel_of_row[keep], minlength=len(lengths))
    cloud = masks[:, MASKS[level].index(CLOUD_MASK[level])] > 0
    cloudy = np.bincount(parcel_of_row[keep], weights=cloud, minlength=len(lengths))
    return _Chunk(_compact(bands), masks, dates, counts, cloudy, int((~keep).sum()))


def _compact(bands: np.ndarray) -> np.ndarray:
    """uint16 when lossless (integers in 0..65535, the published scaling), else float32."""
    if bands.size == 0 or (bands.min() >= 0 and bands.max() <= 65535 and np.array_equal(bands, np.rint(bands))):
        return bands.astype(np.uint16)
    return bands.astype(np.float32)


def _iter_runs(parcels: pd.DataFrame, progress: bool, region: str, level: str) -> Iterator[pd.DataFrame]:
    """Runs of CHUNK_PARCELS parcels, with a tqdm bar when asked."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(parcels), desc=f"packing {region} {level}", unit="parcel")
    try:
        for start in range(0, len(parcels), CHUNK_PARCELS):
            run = parcels.iloc[start:start + CHUNK_PARCELS]
            yield run
            if bar is not None:
                bar.update(len(run))
    finally:
        if bar is not None:
            bar.close()


def convert(index_file: Path, h5_file: Path, region: str, level: str, mapping: ClassMapping,
            progress: bool | None = None) -> tuple[list[_Chunk], pd.DataFrame, dict[str, int]]:
    """Read every kept parcel of a region: converted chunks, kept index rows and drop counts."""
    table = read_index(index_file)
    parcels = select_parcels(table, mapping, region)
    show = len(parcels) > PROGRESS_THRESHOLD if progress is None else progress
    with _open_h5(h5_file) as h5:
        reader = _ParcelReader(h5, h5_file, level)
        chunks = [reader.read_run(run) for run in _iter_runs(parcels, show, region, level)]
    counts = np.concatenate([c.counts for c in chunks]) if chunks else np.zeros(0, np.int64)
    cloudy = np.concatenate([c.cloudy for c in chunks]) if chunks else np.zeros(0)
    non_empty = counts > 0
    outside = int((~table["CODE_CULTU"].isin(list(mapping.codes))).sum())
    stats = {"index_rows": len(table), "dropped_outside_mapping": outside,
             "dropped_empty": len(table) - outside - int(non_empty.sum()),
             "dropped_nan_rows": sum(c.dropped for c in chunks)}
    kept = parcels.loc[non_empty].copy()
    kept["sequencelength"] = counts[non_empty].astype(np.int64)
    kept["cloudy_fraction"] = (cloudy[non_empty] / counts[non_empty]).astype(np.float32)
    return chunks, kept.reset_index(drop=True), stats


# ----------------------------------------------------------------------------- writing

def _build(target: Path, signature: dict[str, Any], index_file: Path, h5_file: Path, region: str,
           level: str, mapping: ClassMapping, progress: bool | None) -> None:
    """Convert the sources into a temporary folder beside ``target`` and publish it atomically."""
    started = time.perf_counter()
    chunks, kept, stats = convert(index_file, h5_file, region, level, mapping, progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_arrays(tmp, chunks, level)
        _write_index_table(tmp, kept)
        meta = {"signature": signature, "region": region, "level": level, "bands": list(BANDS[level]),
                "masks": list(MASKS[level]), "values_dtype": _values_dtype(chunks).name,
                "parcels": len(kept), "observations": int(kept["sequencelength"].sum()), **stats,
                "classmapping_source": str(mapping.source) if mapping.source else "built-in",
                "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "build_seconds": round(time.perf_counter() - started, 3)}
        _write_meta(tmp, meta)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like the data beside it
        _publish(tmp, target, signature)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _values_dtype(chunks: list[_Chunk]) -> np.dtype:
    floats = any(c.values.dtype == np.float32 for c in chunks)
    return np.dtype(np.float32 if floats else np.uint16)


def _concat_into(path: Path, parts: list[np.ndarray], shape_tail: tuple[int, ...], dtype: np.dtype) -> None:
    """Write the concatenation of ``parts`` to a .npy without holding a second full copy."""
    total = sum(len(p) for p in parts)
    if total == 0:
        np.save(path, np.zeros((0, *shape_tail), dtype=dtype))
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(total, *shape_tail))
    start = 0
    for part in parts:
        out[start:start + len(part)] = part
        start += len(part)
    out.flush()
    del out


def _write_arrays(folder: Path, chunks: list[_Chunk], level: str) -> None:
    dtype = _values_dtype(chunks)
    _concat_into(folder / "values.npy", [c.values for c in chunks], (len(BANDS[level]),), dtype)
    _concat_into(folder / "masks.npy", [c.masks for c in chunks], (len(MASKS[level]),), np.dtype(np.float32))
    _concat_into(folder / "dates.npy", [c.dates for c in chunks], (), np.dtype("datetime64[s]"))
    counts = np.concatenate([c.counts for c in chunks]) if chunks else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts[counts > 0])]).astype(np.int64)
    np.save(folder / "offsets.npy", offsets)


def _write_index_table(folder: Path, kept: pd.DataFrame) -> None:
    kept.to_parquet(folder / "index.parquet", index=False)


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """meta.json is written last: its presence marks a complete folder."""
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))


def _publish(tmp: Path, target: Path, signature: dict[str, Any]) -> None:
    """Rename ``tmp`` to ``target``; a current cache of another builder wins, a stale one is replaced."""
    for _ in range(5):
        try:
            os.replace(tmp, target)
            return
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if _is_current(target, signature):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(target, aside)
        except FileNotFoundError:
            continue
        shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"{target}: could not publish the packed store (concurrent writers keep replacing it)")


def _remove_stale_tmp(target: Path) -> None:
    """Remove temporary folders of builders that were killed long ago."""
    now = time.time()
    for leftover in target.parent.glob(f".{target.name}.*-*"):
        try:
            if now - leftover.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except FileNotFoundError:
            continue
