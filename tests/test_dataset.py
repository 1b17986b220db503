"""`BreizhCrops` on fake files in the published layout: samples, raw series, views, bad input."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import fakedata
from cropcore.constants import BANDS, CLASSES, COLUMNS, MASKS, REFERENCE_BAND_ORDER
from cropcore.data import BreizhCrops, DataFormatError, DatasetNotFoundError, layout
from cropcore.data.dataset import ParcelSeries


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("fake-root")
    fakes = fakedata.write_root(root, regions=("frh01",), levels=("L1C", "L2A"), n_parcels=16, shapefile=True)
    return root, fakes


def _rows_of(sample: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Time index in ``series`` of every row of ``sample`` (rows of random data are unique)."""
    matches = (sample[:, None, :] == series[None, :, :]).all(axis=2)
    assert matches.any(axis=1).all(), "a sampled row is not a row of the series"
    return matches.argmax(axis=1)


@pytest.mark.parametrize("level", ["L1C", "L2A"])
def test_raw_equals_the_h5_values(fake_root: tuple[Path, dict], level: str) -> None:
    root, fakes = fake_root
    fake = fakes[("frh01", level)]
    ds = BreizhCrops("frh01", root=root, level=level)
    expected = fake.expected()
    assert list(ds.index["id"]) == list(expected) and len(ds) == len(expected)
    columns = COLUMNS[level]
    for i in range(len(ds)):
        series = ds.raw(i)
        rows = expected[series.field_id]
        assert isinstance(series, ParcelSeries) and series.level == level and series.bands == BANDS[level]
        bands = rows[:, [columns.index(b) for b in BANDS[level]]]
        np.testing.assert_allclose(series.reflectance, bands * 1e-4, rtol=1e-6)
        assert series.reflectance.dtype == np.float32 and series.dates.dtype == np.dtype("datetime64[s]")
        cloud = "QA60" if level == "L1C" else "CLD"
        np.testing.assert_array_equal(series.cloudy, rows[:, columns.index(cloud)] > 0)
        assert list(series.masks) == list(MASKS[level])
        np.testing.assert_array_equal(series.masks["EDG" if level == "L2A" else "QA10"],
                                      rows[:, columns.index("EDG" if level == "L2A" else "QA10")].astype(np.float32))
        assert series.dates[0] == np.datetime64(int(rows[0, columns.index("doa")]), "ns").astype("datetime64[s]")
        assert series.classname == CLASSES[series.classid]


def test_index_has_the_contract_columns(fake_root: tuple[Path, dict]) -> None:
    root, _ = fake_root
    ds = BreizhCrops("FRH01", root=root, level="l1c")
    assert ds.region == "frh01" and ds.level == "L1C" and ds.root == root
    for column in ("id", "classid", "classname", "region", "sequencelength", "CODE_CULTU", "path"):
        assert column in ds.index.columns
    assert ds.index["id"].dtype == np.int64 and ds.index["classid"].dtype == np.int64
    assert (ds.index["sequencelength"] == ds.store.lengths).all()
    assert not ds.is_simulated


@pytest.mark.parametrize("level", ["L1C", "L2A"])
def test_samples_are_ordered_subsamples(fake_root: tuple[Path, dict], level: str) -> None:
    root, _ = fake_root
    ds = BreizhCrops("frh01", root=root, level=level, seed=3)
    seen_short = seen_long = False
    for i in range(len(ds)):
        x, y, field_id = ds[i]
        series = ds.raw(i)
        assert x.dtype == torch.float32 and x.shape == (45, len(BANDS[level]))
        assert y.dtype == torch.int64 and y.ndim == 0 and int(y) == series.classid
        assert isinstance(field_id, int) and field_id == series.field_id
        steps = _rows_of(x.numpy(), series.reflectance)
        if len(series.reflectance) >= 45:
            seen_long = True
            assert (np.diff(steps) > 0).all()
        else:
            seen_short = True
            assert (np.diff(steps) >= 0).all() and len(np.unique(steps)) < 45
    assert seen_short and seen_long
    assert ds[-1][2] == ds[len(ds) - 1][2]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_same_seed_same_samples(fake_root: tuple[Path, dict]) -> None:
    root, _ = fake_root
    first, second, other = (BreizhCrops("frh01", root=root, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(first[i][0], second[i][0]) for i in range(len(first)))
    assert not all(torch.equal(first[i][0], other[i][0]) for i in range(len(first)))


def test_transform_replaces_the_default(fake_root: tuple[Path, dict]) -> None:
    root, _ = fake_root
    received = []

    def mean_spectrum(series: np.ndarray) -> np.ndarray:
        received.append(series)
        return series.mean(axis=0)

    ds = BreizhCrops("frh01", root=root, level="L2A", transform=mean_spectrum)
    x, y, _ = ds[2]
    assert received[0].dtype == np.float32 and received[0].shape == ds.raw(2).reflectance.shape
    np.testing.assert_allclose(x, ds.raw(2).reflectance.mean(axis=0))


def test_works_in_a_dataloader(fake_root: tuple[Path, dict]) -> None:
    root, _ = fake_root
    loader = torch.utils.data.DataLoader(BreizhCrops("frh01", root=root, seed=0), batch_size=5)
    x, y, field_id = next(iter(loader))
    assert x.shape == (5, 45, 13) and y.shape == (5,) and field_id.dtype == torch.int64


def test_pickles_without_copying_the_arrays(fake_root: tuple[Path, dict]) -> None:
    import pickle

    root, _ = fake_root
    ds = BreizhCrops("frh01", root=root, level="L2A", seed=4)
    payload = pickle.dumps(ds)
    assert len(payload) < ds.store.values.nbytes
    copy = pickle.loads(payload)
    assert isinstance(copy.store.values, np.memmap) and len(copy) == len(ds)
    np.testing.assert_array_equal(copy.raw(3).reflectance, ds.raw(3).reflectance)


def test_band_selection_matches_the_reference(fake_root: tuple[Path, dict]) -> None:
    """Our wavelength-ordered bands, put in REFERENCE_BAND_ORDER, are what the reference transform feeds."""
    reference = pytest.importorskip("breizhcrops.datasets.breizhcrops")
    root, fakes = fake_root
    for level in ("L1C", "L2A"):
        ds = BreizhCrops("frh01", root=root, level=level)
        raw = fakes[("frh01", level)].expected()[ds.raw(0).field_id]
        np.random.seed(0)
        theirs = reference.get_default_transform(level)(raw).numpy()
        np.random.seed(0)
        steps = np.sort(np.random.choice(len(raw), 45, replace=len(raw) < 45))
        order = [BANDS[level].index(b) for b in REFERENCE_BAND_ORDER[level]]
        np.testing.assert_allclose(ds.raw(0).reflectance[steps][:, order], theirs, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_agrees_with_the_reference_dataset_and_reads_its_rewritten_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = pytest.importorskip("breizhcrops.datasets.breizhcrops")
    fake = fakedata.write_root(tmp_path, regions=("frh04",), levels=("L1C",), n_parcels=10)[("frh04", "L1C")]
    ours_before = BreizhCrops("frh04", root=tmp_path)
    monkeypatch.setitem(reference.FILESIZES[2017]["L1C"], "frh04", fake.h5_path.stat().st_size)
    theirs = reference.BreizhCrops("frh04", root=str(tmp_path), level="L1C")
    rewritten = pd.read_csv(fake.index_path)
    assert "meanCLD" in rewritten.columns and "classid" in rewritten.columns
    ours = BreizhCrops("frh04", root=tmp_path)
    assert ours.store.meta["built"] != "" and ours.store.meta["signature"] != ours_before.store.meta["signature"]
    pd.testing.assert_frame_equal(ours.index.drop(columns=["idx"]), ours_before.index.drop(columns=["idx"]))
    # the reference keeps the all-NaN series (it does not drop NaN rows from the .h5); we skip it
    assert set(ours.index["id"]) <= set(theirs.index["id"])
    their_labels = dict(zip(theirs.index["id"], theirs.index["classid"]))
    assert all(their_labels[i] == c for i, c in zip(ours.index["id"], ours.index["classid"]))
    _, their_y, their_id = theirs[0]
    position = int(np.flatnonzero(ours.index["id"] == their_id)[0])
    assert int(ours[position][1]) == int(their_y)


def test_downloaded_class_mapping_wins(tmp_path: Path) -> None:
    fakedata.write_root(tmp_path, regions=("frh02",), levels=("L1C",), n_parcels=4)
    before = BreizhCrops("frh02", root=tmp_path)
    codes = {code: classid for code, classid in before.mapping.codes.items()}
    fakedata.write_classmapping(tmp_path, {**codes, "SOJ": 2})
    after = BreizhCrops("frh02", root=tmp_path)
    assert len(after) == len(before) + 1
    assert after.index.set_index("CODE_CULTU").loc["SOJ", "classname"] == "rapeseed"


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("kwargs", "match"), [
    ({"region": "frh05"}, "frh01, frh02, frh03, frh04"),
    ({"region": "frh01", "level": "L3"}, "L1C, L2A"),
    ({"region": "kermaux", "level": "L2A"}, "not published for L2A"),
    ({"region": "frh01", "year": 2018}, "2017"),
    ({"region": "frh01", "sequence_length": 0}, "positive"),
])
def test_bad_arguments_list_the_valid_values(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BreizhCrops(root=tmp_path, **kwargs)


def test_missing_files_name_them_and_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as caught:
        BreizhCrops("frh03", root=tmp_path, level="L2A")
    message = str(caught.value)
    assert str(layout.index_path(tmp_path, "frh03", "L2A")) in message
    assert str(layout.h5_candidates(tmp_path, "frh03", "L2A")[0]) in message
    assert f"cropcore download --region frh03 --level L2A --root {tmp_path}" in message
    assert "cropcore demo" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_default_root_is_the_data_folder() -> None:
    with pytest.raises(DatasetNotFoundError, match=str(layout.default_root())):
        BreizhCrops("frh01")


def test_download_true_fetches_then_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def download(region: str, level: str = "L1C", root: Path | None = None, **options) -> Path:
        calls.append((region, level, Path(root)))
        fakedata.write_root(root, regions=(region,), levels=(level,), n_parcels=3)
        return Path(root)

    monkeypatch.setitem(sys.modules, "cropcore.data.download", types.SimpleNamespace(download=download))
    ds = BreizhCrops("frh02", root=tmp_path, level="L2A", download=True)
    assert calls == [("frh02", "L2A", tmp_path)] and len(ds) > 0
    BreizhCrops("frh02", root=tmp_path, level="L2A", download=True)
    assert len(calls) == 1


def test_download_that_fetches_nothing_still_reports_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cropcore.data.download",
                        types.SimpleNamespace(download=lambda *args, **kwargs: tmp_path))
    with pytest.raises(DatasetNotFoundError, match="frh01.csv"):
        BreizhCrops("frh01", root=tmp_path, download=True)


def test_missing_key_and_truncated_file_name_file_and_parcel(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh01", "L1C", missing_key=True)
    absent = next(p for p in fake.parcels if p.data is None and p.sequencelength)
    with pytest.raises(DataFormatError, match=f"{fake.h5_path}.*id={absent.id}"):
        BreizhCrops("frh01", root=tmp_path)
    other = fakedata.write_region(tmp_path, "frh02", "L1C")
    fakedata.truncate(other.h5_path, keep=0.8)
    with pytest.raises(DataFormatError, match=f"{other.h5_path}.*truncated or corrupt"):
        BreizhCrops("frh02", root=tmp_path)


def test_nested_h5_and_rewritten_index_are_found(tmp_path: Path) -> None:
    fake = fakedata.write_region(tmp_path, "frh04", "L2A", nested=True, index_variant="reference")
    ds = BreizhCrops("frh04", root=tmp_path, level="L2A")
    assert list(ds.index["id"]) == list(fake.expected())


# ----------------------------------------------------------------------------- derived views

def test_geodataframe_is_wgs84_with_only_kept_parcels(fake_root: tuple[Path, dict]) -> None:
    root, _ = fake_root
    ds = BreizhCrops("frh01", root=root)
    frame = ds.geodataframe()
    assert frame.crs.to_epsg() == 4326
    assert list(frame["id"]) == list(ds.index["id"])
    assert {"id", "classid", "classname", "region", "geometry"} <= set(frame.columns)
    bounds = frame.total_bounds
    assert -6 < bounds[0] < bounds[2] < 0 and 46 < bounds[1] < bounds[3] < 50  # Brittany


def test_geodataframe_accepts_a_lowercase_id_and_reports_a_missing_shapefile(tmp_path: Path) -> None:
    fake = fakedata.write_root(tmp_path, regions=("frh02",), levels=("L2A",), n_parcels=5)[("frh02", "L2A")]
    ds = BreizhCrops("frh02", root=tmp_path, level="L2A")
    with pytest.raises(DatasetNotFoundError, match="frh02.shp.*cropcore download --region frh02"):
        ds.geodataframe()
    fakedata.write_shapefile(fake, id_field="id")
    assert len(ds.geodataframe()) == len(ds)


def test_is_simulated_reads_the_marker(tmp_path: Path) -> None:
    fakedata.write_root(tmp_path, regions=("frh03",), levels=("L1C",), n_parcels=2)
    assert layout.simulation_marker(tmp_path) is None
    (tmp_path / layout.SIMULATED_MARKER).write_text(json.dumps({"scale": 0.01}))
    assert BreizhCrops("frh03", root=tmp_path).is_simulated
    assert layout.simulation_marker(tmp_path) == {"scale": 0.01}
    (tmp_path / layout.SIMULATED_MARKER).write_text("{not json")
    assert layout.simulation_marker(tmp_path) is None


def test_grid_features_gets_the_cloud_flag(fake_root: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    features = pytest.importorskip("cropcore.data.features")
    root, _ = fake_root
    ds = BreizhCrops("frh01", root=root, level="L2A")
    received = {}

    def spy(dates, values, offsets, cloudy):
        received.update(dates=dates, values=values, offsets=offsets, cloudy=cloudy)
        return np.zeros((len(offsets) - 1, 71, values.shape[1]), np.float32), np.zeros(len(offsets) - 1, bool)

    monkeypatch.setattr(features, "grid_features", spy)
    ds.grid_features()
    series = ds.raw(1)
    rows = ds.store.rows(1)
    np.testing.assert_array_equal(received["cloudy"][rows], series.cloudy)
    np.testing.assert_allclose(received["values"][rows], series.reflectance)
    np.testing.assert_array_equal(received["offsets"], ds.store.offsets)
    monkeypatch.undo()
    grid, fallback = ds.grid_features()
    assert grid.shape == (len(ds), 71, 10) and grid.dtype == np.float32 and fallback.shape == (len(ds),)


def test_reads_the_simulated_demo(sim_root: Path) -> None:
    """The demo is the official layout: the same reader opens it, labelled as simulated."""
    for level in ("L1C", "L2A"):
        ds = BreizhCrops("frh04", root=sim_root, level=level, seed=0)
        assert ds.is_simulated and len(ds) > 0 and set(ds.index["classname"]) == set(CLASSES)
        x, y, field_id = ds[0]
        assert x.shape == (45, len(BANDS[level])) and 0 <= float(x.min()) and float(x.max()) < 2
    frame = ds.geodataframe()
    assert len(frame) == len(ds) and frame.crs.to_epsg() == 4326
