"""The packed store and the class mapping: content, compactness, caching, atomicity, bad input."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fakedata
from cropcore.constants import BANDS, CLASS_CODES, CLASSES, COLUMNS, MASKS
from cropcore.data import layout, store
from cropcore.data.classmapping import builtin_classmapping, load_classmapping, read_classmapping
from cropcore.data.errors import DataFormatError, DatasetNotFoundError
from cropcore.data.store import open_store, read_meta


def _band_columns(level: str) -> list[int]:
    return [COLUMNS[level].index(b) for b in BANDS[level]]


def _check_content(packed: store.PackedStore, fake: fakedata.FakeRegion) -> None:
    """The store holds exactly the kept rows of the h5, bands reordered, masks and dates converted."""
    expected = fake.expected()
    assert list(packed.index["id"]) == list(expected)
    columns = COLUMNS[fake.level]
    for i, parcel_id in enumerate(packed.index["id"]):
        rows = expected[parcel_id]
        np.testing.assert_array_equal(packed.values[packed.rows(i)], rows[:, _band_columns(fake.level)])
        np.testing.assert_array_equal(packed.masks[packed.rows(i)],
                                      rows[:, [columns.index(m) for m in MASKS[fake.level]]].astype(np.float32))
        doa = rows[:, columns.index("doa")].astype(np.int64).astype("datetime64[ns]").astype("datetime64[s]")
        np.testing.assert_array_equal(packed.dates[packed.rows(i)], doa)
    assert list(packed.index["sequencelength"]) == [len(expected[i]) for i in packed.index["id"]]


@pytest.mark.parametrize("level", ["L1C", "L2A"])
@pytest.mark.parametrize("variant", ["original", "reference"])
@pytest.mark.parametrize("nested", [False, True])
def test_store_reads_the_published_layout(tmp_path: Path, level: str, variant: str, nested: bool) -> None:
    fake = fakedata.write_region(tmp_path, "frh02", level, index_variant=variant, nested=nested)
    packed = open_store(tmp_path, "frh02", level)
    _check_content(packed, fake)
    assert packed.values.dtype == np.uint16 and packed.masks.dtype == np.float32
    assert packed.dates.dtype == np.dtype("datetime64[s]") and packed.offsets.dtype == np.int64
    assert set(packed.index["region"]) == {"frh02"}
    assert packed.bands == BANDS[level] and packed.mask_names == MASKS[level]


def test_drops_foreign_codes_empty_series_and_nan_rows(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=6)
    packed = open_store(tmp_path, "frh01", "L1C")
    kept = set(packed.index["id"])
    codes = {p.id: p.code for p in fake.parcels}
    assert not {pid for pid, code in codes.items() if code in fakedata.FOREIGN_CODES} & kept
    assert not {p.id for p in fake.parcels if p.sequencelength == 0} & kept
    all_nan = next(p for p in fake.parcels if p.data is not None and len(p.data) and np.isnan(p.data).all(0).any())
    assert all_nan.id not in kept
    with_nan = next(p for p in fake.parcels if p.code == "MIS" and p.data is not None and np.isnan(p.data).any()
                    and not np.isnan(p.data).all(0).any())
    row = packed.index.index[packed.index["id"] == with_nan.id][0]
    assert packed.index.loc[row, "sequencelength"] == 49
    assert packed.meta["dropped_outside_mapping"] == 2 and packed.meta["dropped_empty"] == 3
    assert packed.meta["dropped_nan_rows"] == 2 + 20
    assert not np.isnan(np.asarray(packed.values, dtype=np.float64)).any()


def test_non_integer_values_are_kept_as_float32(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L2A", quirks=False, n_parcels=4)
    import h5py

    with h5py.File(fake.h5_path, "r+") as h5:
        key = fake.parcels[0].key
        data = h5[key][()]
        data[0, 1] = 1234.5
        h5[key][...] = data
    packed = open_store(tmp_path, "frh01", "L2A")
    assert packed.values.dtype == np.float32
    assert packed.values[0, 0] == np.float32(1234.5)


def test_cache_is_reused_without_rebuilding(tmp_path: Path) -> None:
    fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=40)
    start = time.perf_counter()
    first = open_store(tmp_path, "frh01", "L1C")
    build_seconds = time.perf_counter() - start
    meta_file = first.path / "meta.json"
    stamp = meta_file.stat().st_mtime_ns
    start = time.perf_counter()
    second = open_store(tmp_path, "frh01", "L1C")
    open_seconds = time.perf_counter() - start
    assert meta_file.stat().st_mtime_ns == stamp and second.meta["built"] == first.meta["built"]
    assert open_seconds < 0.5 and open_seconds < build_seconds
    assert isinstance(second.values, np.memmap)
    assert second.path == layout.cache_dir(tmp_path, "frh01", "L1C")


def test_cache_is_rebuilt_when_the_source_changes(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=8, seed=1)
    first = open_store(tmp_path, "frh01", "L1C")
    changed = fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=5, seed=2)
    os.utime(fake.h5_path, ns=(time.time_ns(), first.meta["signature"]["h5"]["mtime_ns"] + 10**9))
    second = open_store(tmp_path, "frh01", "L1C")
    assert list(second.index["id"]) != list(first.index["id"])
    assert second.meta["signature"] != first.meta["signature"]
    _check_content(second, changed)


def test_cache_is_rebuilt_on_version_or_mapping_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=4)
    first = open_store(tmp_path, "frh01", "L1C")
    monkeypatch.setattr(store, "FORMAT_VERSION", store.FORMAT_VERSION + 1)
    second = open_store(tmp_path, "frh01", "L1C")
    assert second.meta["signature"]["version"] == first.meta["signature"]["version"] + 1
    fakedata.write_classmapping(tmp_path, {**builtin_classmapping().codes, "SOJ": 4})
    third = open_store(tmp_path, "frh01", "L1C")
    assert len(third) == len(second) + 1
    assert third.index.set_index("CODE_CULTU").loc["SOJ", "classname"] == "sunflower"


def test_failure_mid_write_leaves_no_partial_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=4)

    def crash(folder: Path, kept: pd.DataFrame) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_write_index_table", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        open_store(tmp_path, "frh01", "L1C")
    cache_parent = layout.cache_dir(tmp_path, "frh01", "L1C").parent
    assert list(cache_parent.iterdir()) == []
    monkeypatch.undo()
    assert len(open_store(tmp_path, "frh01", "L1C")) > 0


def test_failure_during_rebuild_keeps_the_old_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=4)
    first = open_store(tmp_path, "frh01", "L1C")
    os.utime(fake.h5_path, ns=(time.time_ns(), first.meta["signature"]["h5"]["mtime_ns"] + 10**9))
    monkeypatch.setattr(store, "_write_meta", lambda folder, meta: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        open_store(tmp_path, "frh01", "L1C")
    assert read_meta(first.path) == first.meta
    assert [p.name for p in first.path.parent.iterdir()] == ["frh01"]


def test_concurrent_builders_do_not_corrupt_each_other(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh03", "L1C", n_parcels=30)
    results: list[store.PackedStore] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(open_store(tmp_path, "frh03", "L1C"))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 3
    _check_content(open_store(tmp_path, "frh03", "L1C"), fake)
    assert [p.name for p in layout.cache_dir(tmp_path, "frh03", "L1C").parent.iterdir()] == ["frh03"]


def test_publish_replaces_a_stale_cache_and_keeps_a_current_one(tmp_path: Path) -> None:
    target = tmp_path / "cache"
    target.mkdir()
    (target / "meta.json").write_text('{"signature": {"version": 0}}')
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "meta.json").write_text('{"signature": {"version": 1}}')
    store._publish(fresh, target, {"version": 1})
    assert read_meta(target) == {"signature": {"version": 1}} and not fresh.exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "marker").write_text("x")
    store._publish(other, target, {"version": 1})
    assert not other.exists() and not (target / "marker").exists()


def test_missing_key_names_file_and_parcel(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C", missing_key=True)
    absent = next(p for p in fake.parcels if p.data is None and p.sequencelength)
    with pytest.raises(DataFormatError) as caught:
        open_store(tmp_path, "frh01", "L1C")
    message = str(caught.value)
    assert str(fake.h5_path) in message and str(absent.id) in message and absent.key in message
    assert not layout.cache_dir(tmp_path, "frh01", "L1C").exists()


def test_truncated_h5_names_the_file(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C")
    fakedata.truncate(fake.h5_path)
    with pytest.raises(DataFormatError, match="truncated or corrupt") as caught:
        open_store(tmp_path, "frh01", "L1C")
    assert str(fake.h5_path) in str(caught.value)


def test_corrupt_parcel_names_file_and_parcel(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L2A", compressed=True, quirks=False)
    victim = fake.parcels[2]
    fakedata.corrupt_parcel(fake, victim.id)
    with pytest.raises(DataFormatError) as caught:
        open_store(tmp_path, "frh01", "L2A")
    message = str(caught.value)
    assert str(fake.h5_path) in message and f"id={victim.id}" in message and victim.key in message


def test_wrong_column_count_names_the_expected_columns(tmp_path: Path) -> None:
    import h5py

    fake = fakedata.write_region(tmp_path, "frh01", "L1C", quirks=False, n_parcels=3)
    with h5py.File(fake.h5_path, "r+") as h5:
        key = fake.parcels[1].key
        data = h5[key][()]
        del h5[key]
        h5.create_dataset(key, data=data[:, :14])
    with pytest.raises(DataFormatError, match="QA60, doa") as caught:
        open_store(tmp_path, "frh01", "L1C")
    assert f"id={fake.parcels[1].id}" in str(caught.value) and ", 14)" in str(caught.value)


def test_index_without_required_columns_lists_the_expected_ones(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=3)
    pd.read_csv(fake.index_path).drop(columns=["path"]).to_csv(fake.index_path, index=False)
    with pytest.raises(DataFormatError, match="lacks column.*path.*idx, id, CODE_CULTU, path, meanQA60"):
        open_store(tmp_path, "frh01", "L1C")


def test_index_with_a_pandas_index_column_is_accepted(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=5)
    pd.read_csv(fake.index_path).to_csv(fake.index_path)  # adds an unnamed leading column
    _check_content(open_store(tmp_path, "frh01", "L1C"), fake)


def test_missing_sources_raise_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="frh01.csv"):
        open_store(tmp_path, "frh01", "L1C")


def test_empty_region_gives_an_empty_store(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=0, quirks=False)
    packed = open_store(tmp_path, "frh01", "L1C")
    assert len(packed) == 0 and packed.values.shape == (0, 13) and len(fake.expected()) == 0


# ----------------------------------------------------------------------------- class mapping

def test_builtin_mapping_follows_the_class_order() -> None:
    mapping = builtin_classmapping()
    assert mapping.classnames == CLASSES and mapping.source is None
    for classid, name in enumerate(CLASSES):
        assert all(mapping.classid(code) == classid for code in CLASS_CODES[name])
    assert mapping.classid("soj") is None and mapping.classid(" bth ") == 1


def test_downloaded_mapping_wins(tmp_path: Path) -> None:
    assert load_classmapping(tmp_path).source is None
    path = fakedata.write_classmapping(tmp_path, {"BTH": 0, "ORH": 1})
    mapping = load_classmapping(tmp_path)
    assert mapping.source == path and mapping.codes == {"BTH": 0, "ORH": 1}
    assert mapping.classnames == ("barley", "wheat")


@pytest.mark.parametrize(("content", "match"), [
    (",id,name,code\n0,0,barley,ORH\n", "lacks column.*classname.*expected an index column then columns id, classname, code"),
    (",id,classname,code\n0,x,barley,ORH\n", "'id' must hold integers"),
    (",id,classname,code\n0,1,barley,ORH\n", "0..K-1"),
    (",id,classname,code\n0,0,barley,ORH\n1,0,wheat,BTH\n", "several class names"),
    (",id,classname,code\n0,0,barley,ORH\n1,1,wheat,ORH\n", "ORH map to several classes"),
    ("", "cannot read"),
])
def test_malformed_mapping_names_file_and_expectation(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "classmapping.csv"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=match) as caught:
        read_classmapping(path)
    assert str(path) in str(caught.value)


def test_official_mapping_file_round_trips(tmp_path: Path) -> None:
    fakedata.write_classmapping(tmp_path)
    mapping = load_classmapping(tmp_path)
    assert mapping.codes == builtin_classmapping().codes and mapping.classnames == CLASSES
    assert mapping.digest() == builtin_classmapping().digest()


def test_read_only_root_caches_under_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C", n_parcels=3)
    real_access = os.access
    monkeypatch.setattr(store.os, "access", lambda path, mode: False if mode == os.W_OK else real_access(path, mode))
    packed = open_store(tmp_path, "frh01", "L1C")
    assert packed.path.is_relative_to(layout.data_dir()) and not layout.cache_dir(tmp_path, "frh01", "L1C").exists()
    _check_content(packed, fake)
