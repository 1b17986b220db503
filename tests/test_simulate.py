"""The simulated Brittany: official layout, determinism, realism and calibrated difficulty."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from cropcore.constants import BANDS, CLASS_CODES, CLASSES, COLUMNS, LEVELS, PARCEL_COUNTS, REGIONS
from cropcore.data import layout
from cropcore.data.simulate import VERSION, demo_path, generate, plan
from cropcore.data.simulate.difficulty import read_level, rf_difficulty
from cropcore.data.simulate.geometry import CRS_WGS84, outline

INDEX_COLUMNS = ["idx", "id", "CODE_CULTU", "path", "meanQA60", "sequencelength"]


def _digest(root: Path, region: str, level: str) -> str:
    """Hash of a region's index CSV and every dataset's bytes, in index order."""
    digest = hashlib.sha256(layout.index_path(root, region, level).read_bytes())
    index = pd.read_csv(layout.index_path(root, region, level))
    with h5py.File(layout.h5_path(root, region, level), "r") as file:
        for key in index["path"]:
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(file[key][()]).tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def arrays(sim_root: Path) -> dict[tuple[str, str], object]:
    return {(region, level): read_level(sim_root, region, level) for region in REGIONS for level in LEVELS}


def test_official_layout(sim_root: Path) -> None:
    mapping = pd.read_csv(layout.classmapping_path(sim_root), index_col=0)
    assert list(mapping.columns) == ["id", "classname", "code"]
    assert set(mapping["code"]) == {code for codes in CLASS_CODES.values() for code in codes}
    assert all(CLASSES[row.id] == row.classname for row in mapping.itertuples())
    codes = pd.read_csv(layout.codes_path(sim_root), sep=";", index_col=0)
    assert {"ORH", "PPH", "SOG"} <= set(codes.index) and codes.shape[1] == 2
    marker = json.loads((sim_root / layout.SIMULATED_MARKER).read_text())
    assert marker["version"] == VERSION and marker["seed"] == 0 and marker["scale"] == 0.002
    for level in LEVELS:
        for region in REGIONS:
            index = pd.read_csv(layout.index_path(sim_root, region, level))
            assert list(index.columns) == INDEX_COLUMNS
            assert index["idx"].tolist() == list(range(1, len(index) + 1))
            assert index["id"].is_unique and marker["counts"][region][level]["parcels"] == len(index)
            assert len(index) == max(round(PARCEL_COUNTS[level][region] * 0.002), 9 * 20 + 3)
            row = index[index["sequencelength"] > 0].iloc[0]
            assert row["path"] == f"/data/BreizhCrops/{level}_img/data/2017/{level}/{region}/csv/{row['id']}.csv"
            with h5py.File(layout.h5_candidates(sim_root, region, level)[0], "r") as file:
                values = file[row["path"]][()]
            assert values.dtype == np.float64 and values.shape == (row["sequencelength"], len(COLUMNS[level]))
            doa = values[:, COLUMNS[level].index("doa")].astype(np.int64).astype("datetime64[ns]")
            assert (doa >= np.datetime64("2017-01-01")).all() and (doa < np.datetime64("2018-01-01")).all()
            assert (np.diff(doa.astype(np.int64)) > 0).all()
            bands = values[:, [COLUMNS[level].index(band) for band in BANDS[level]]]
            assert np.array_equal(bands, np.round(bands)) and 0 <= bands.min() and bands.max() < 20000
            assert np.isclose(row["meanQA60"], values[:, COLUMNS[level].index("QA60" if level == "L1C" else "CLD")].mean(),
                              rtol=1e-5)


def test_quirks_of_the_real_files(sim_root: Path) -> None:
    index = pd.read_csv(layout.index_path(sim_root, "frh01", "L1C"))
    mapped = {code for codes in CLASS_CODES.values() for code in codes}
    assert (~index["CODE_CULTU"].isin(mapped)).sum() >= 2
    assert (index["sequencelength"] == 0).sum() >= 1
    with h5py.File(layout.h5_path(sim_root, "frh01", "L1C"), "r") as file:
        nan_parcels = sum(np.isnan(file[key][()]).any() for key in index["path"])
    assert nan_parcels >= 2


def test_loader_reads_the_demo(sim_root: Path) -> None:
    dataset_module = pytest.importorskip("cropcore.data.dataset")
    index = pd.read_csv(layout.index_path(sim_root, "frh04", "L2A"))
    dataset = dataset_module.BreizhCrops("frh04", root=sim_root, level="L2A")
    mapped = {code for codes in CLASS_CODES.values() for code in codes}
    assert len(dataset) == (index["CODE_CULTU"].isin(mapped) & (index["sequencelength"] > 0)).sum()
    assert dataset.is_simulated and set(dataset.index["classid"]) == set(range(len(CLASSES)))


def test_deterministic_and_region_independent(sim_root: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", scale=0.002, seed=0, regions=["frh04"], levels=["L1C"])
    assert _digest(again, "frh04", "L1C") == _digest(sim_root, "frh04", "L1C")
    other = generate(tmp_path / "other", scale=0.002, seed=1, regions=["frh04"], levels=["L1C"])
    assert _digest(other, "frh04", "L1C") != _digest(sim_root, "frh04", "L1C")
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())  # no temp folder left


def test_generate_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "frh01.h5").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="not a simulated dataset"):
        generate(tmp_path / "real", scale=0.002, regions=["frh04"], levels=["L1C"])
    assert (tmp_path / "real" / "frh01.h5").read_bytes() == b"not ours"
    with pytest.raises(ValueError, match="frh01"):
        generate(tmp_path / "x", regions=["frh09"])


def test_demo_root_and_cli(sim_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cropcore.cli import main

    assert sim_root == demo_path(0.002, 0) and demo_path(0.01, 0).name == "demo"
    assert main(["demo", "--scale", "0.002", "--root", str(sim_root)]) == 0
    assert "already" in capsys.readouterr().out
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main(["demo", "--scale", "0.002", "--root", str(tmp_path / "busy")]) == 2


def test_sequence_lengths(arrays: dict) -> None:
    l1c = np.concatenate([np.diff(arrays[region, "L1C"].offsets) for region in REGIONS])
    l2a = np.concatenate([np.diff(arrays[region, "L2A"].offsets) for region in REGIONS])
    assert np.isin(l1c, [51, 102]).mean() > 0.97
    assert 0.2 < (l1c == 102).mean() < 0.6
    assert l2a.max() <= 102 and l2a.mean() < 0.8 * l1c.mean() and 20 < l2a.mean() < 60


def test_cloud_shares(arrays: dict) -> None:
    l1c = {region: (arrays[region, "L1C"].cloud > 0).mean() for region in REGIONS}
    l2a = np.mean([(arrays[region, "L2A"].cloud > 0).mean() for region in REGIONS])
    assert all(0.5 <= share <= 0.8 for share in l1c.values()), l1c
    assert l2a < np.mean(list(l1c.values())) - 0.05
    assert l1c["frh02"] == max(l1c.values())  # Finistère is the cloudiest


def _clear_ndvi(arrays: dict, level: str) -> pd.DataFrame:
    frames = []
    for region in REGIONS:
        data = arrays[region, level]
        bands = BANDS[level]
        nir, red = data.reflectance[:, bands.index("B8")], data.reflectance[:, bands.index("B4")]
        frames.append(pd.DataFrame({
            "classname": np.repeat(np.array(CLASSES)[data.classids], np.diff(data.offsets)),
            "month": data.dates.astype("datetime64[M]").astype(int) % 12 + 1,
            "ndvi": (nir - red) / (nir + red), "clear": data.cloud == 0}))
    frame = pd.concat(frames)
    return frame[frame["clear"]].pivot_table(index="classname", columns="month", values="ndvi", aggfunc="median")


@pytest.mark.parametrize("level", LEVELS)
def test_ndvi_by_class_and_season(arrays: dict, level: str) -> None:
    ndvi = _clear_ndvi(arrays, level)
    assert ndvi.loc["corn", 4] < 0.4 and ndvi.loc["corn", 8] > 0.6            # bare until May, peak in summer
    for cereal in ("barley", "wheat"):
        assert ndvi.loc[cereal, 4] > 0.6 and ndvi.loc[cereal, 8] < 0.45       # winter crops, harvested in July
    assert ndvi.loc["rapeseed", [1, 2]].min() > 0.6                           # green all winter
    for meadow in ("permanent meadows", "temporary meadows"):
        assert ndvi.loc[meadow, [1, 2, 12]].min() > 0.55                      # grass is green in winter
    assert ndvi.loc["orchards", [6, 7]].mean() > ndvi.loc["orchards", [1, 2]].mean() + 0.08


def test_toa_versus_boa(arrays: dict) -> None:
    l1c, l2a = arrays["frh04", "L1C"], arrays["frh04", "L2A"]
    clear1, clear2 = l1c.reflectance[l1c.cloud == 0], l2a.reflectance[l2a.cloud == 0]
    b = BANDS["L1C"]
    assert np.median(clear1[:, b.index("B1")]) > 0.1                          # path radiance in the blue
    assert np.median(clear1[:, b.index("B2")]) > np.median(clear2[:, BANDS["L2A"].index("B2")]) + 0.03
    assert np.median(clear1[:, b.index("B10")]) < 0.015
    ratio = np.median(clear1[:, b.index("B9")] / clear1[:, b.index("B8A")])
    assert 0.25 <= ratio <= 0.35
    cloudy = l1c.reflectance[l1c.cloud >= 1024]
    assert np.median(cloudy[:, b.index("B3")]) > 0.25                         # clouds are bright outliers


def test_class_shares_and_imbalance(sim_root: Path) -> None:
    marker = json.loads((sim_root / layout.SIMULATED_MARKER).read_text())
    for region in REGIONS:
        for level in LEVELS:
            assert min(marker["counts"][region][level]["classes"].values()) >= 20
    full = {region: plan.class_counts(region, 100_000, 20) for region in REGIONS}
    for region, counts in full.items():
        shares = dict(zip(CLASSES, counts / counts.sum()))
        dominant = shares["corn"] + shares["permanent meadows"] + shares["temporary meadows"]
        assert 0.6 < dominant < 0.85
        assert shares["wheat"] > shares["barley"] > shares["rapeseed"] > shares["orchards"]
        assert max(shares["sunflower"], shares["nuts"]) < 0.003
    at_scale_one = {region: plan.class_counts(region, PARCEL_COUNTS["L1C"][region], 20) for region in REGIONS}
    for counts in at_scale_one.values():
        assert 100 <= counts[CLASSES.index("sunflower")] < 1000 and 100 <= counts[CLASSES.index("nuts")] < 1000
    grass = {region: full[region][7:].sum() for region in REGIONS}
    cereals = {region: full[region][[0, 1, 3]].sum() for region in REGIONS}
    assert max(grass, key=grass.get) == "frh02" and max(cereals, key=cereals.get) == "frh03"


def test_parcel_geometry(sim_root: Path) -> None:
    gpd = pytest.importorskip("geopandas")
    outlines = {region: outline(region) for region in REGIONS}
    for region in REGIONS:
        parcels = gpd.read_file(layout.shapefile_path(sim_root, region))
        assert parcels.crs.to_epsg() == 2154 and {"ID", "CODE_CULTU"} <= set(parcels.columns)
        ids = set(pd.read_csv(layout.index_path(sim_root, region, "L1C"))["id"])
        assert ids <= set(parcels["ID"])
        area = parcels.area / 1e4
        assert area.min() >= 0.49 and area.max() <= 10.01 and 1.4 < area.median() < 2.6
        sides = np.array([np.diff(np.asarray(ring.exterior.coords)[:3], axis=0) for ring in
                          parcels.minimum_rotated_rectangle()])
        lengths = np.sort(np.hypot(sides[..., 0], sides[..., 1]), axis=1)
        assert np.median(lengths[:, 1] / lengths[:, 0]) > 1.5                    # elongated fields
        assert len(set(np.round(np.degrees(np.arctan2(sides[:, 0, 1], sides[:, 0, 0])) % 180))) > 10  # rotated
        assert parcels.within(outlines[region]).all()
        for other in set(REGIONS) - {region}:
            assert not parcels.intersects(outlines[other].buffer(-1)).any()
        centroids = parcels.centroid.to_crs(CRS_WGS84)
        lon, lat = centroids.x, centroids.y
        assert -4.9 < lon.min() and lon.max() < -0.9 and 47.2 < lat.min() and lat.max() < 48.95


def test_difficulty_small(sim_root: Path) -> None:
    """A small forest on the tiny demo: fails if the demo becomes trivial or broken."""
    scores = rf_difficulty(sim_root, "L1C", n_estimators=60, n_jobs=2)
    assert 0.5 < scores["overall_accuracy"] < 0.97, scores


@pytest.mark.slow
@pytest.mark.parametrize("level", LEVELS)
def test_difficulty_paper_protocol(level: str) -> None:
    """The paper's RF (500 trees) on the default demo: OA in 0.70-0.90, average accuracy below."""
    from cropcore.data import demo_root

    scores = rf_difficulty(demo_root(0.01, 0), level)
    assert 0.70 <= scores["overall_accuracy"] <= 0.90, scores
    assert scores["average_accuracy"] < scores["overall_accuracy"] - 0.03, scores
