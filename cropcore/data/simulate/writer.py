"""Writing the official BreizhCrops layout: mapping, codes, index CSVs, HDF5 series, shapefiles.

Formats follow ../shared/docs/breizhcrops-format.md byte for byte where the loader depends on it:
``classmapping.csv`` with an unnamed index column, ``codes.csv`` separated by ``;``, the index in
its original variant (``idx,id,CODE_CULTU,path,meanQA60,sequencelength``; the reference package
names the mean cloud column ``meanQA60`` at both levels, computed from CLD for L2A), one float64
``(T, C)`` HDF5 dataset per parcel at the key in ``path``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cropcore.constants import CLASS_CODES, CLASSES, YEAR
from cropcore.data import layout

#: French label and RPG group of every code the simulation writes (codes.csv).
CODE_LABELS: dict[str, tuple[str, str]] = {
    "ORH": ("Orge d'hiver", "Orge"), "ORP": ("Orge de printemps", "Orge"),
    "BTH": ("Blé tendre d'hiver", "Blé tendre"), "BTP": ("Blé tendre de printemps", "Blé tendre"),
    "CZH": ("Colza d'hiver", "Colza"), "CZP": ("Colza de printemps", "Colza"),
    "MIS": ("Maïs", "Maïs grain et ensilage"), "MIE": ("Maïs ensilage", "Maïs grain et ensilage"),
    "MID": ("Maïs doux", "Maïs grain et ensilage"), "TRN": ("Tournesol", "Tournesol"),
    "VRG": ("Verger", "Vergers"), "PFR": ("Petits fruits rouges", "Vergers"), "PRU": ("Prune", "Vergers"),
    "AGR": ("Agrume", "Vergers"), "ANA": ("Ananas", "Vergers"), "AVO": ("Avocat", "Vergers"),
    "BCA": ("Banane créole (fruit et légume) - autre", "Vergers"), "BER": ("Bleuet (myrtille)", "Vergers"),
    "CAC": ("Café / Cacao", "Vergers"), "CBT": ("Cerise bigarreau pour transformation", "Vergers"),
    "PVT": ("Pêche Pavie pour transformation", "Vergers"), "PWT": ("Poire Williams pour transformation", "Vergers"),
    "VGD": ("Verger (DOM)", "Vergers"),
    "CAB": ("Caroube", "Fruits à coque"), "CTG": ("Châtaigne", "Fruits à coque"),
    "NOS": ("Noisette", "Fruits à coque"), "NOX": ("Noix", "Fruits à coque"), "PIS": ("Pistache", "Fruits à coque"),
    "PPH": ("Prairie permanente - herbe prédominante", "Prairies permanentes"),
    "PRL": ("Prairie en rotation longue (6 ans ou plus)", "Prairies permanentes"),
    "PTR": ("Autre prairie temporaire de 5 ans ou moins", "Prairies temporaires"),
    "RGA": ("Ray-grass de 5 ans ou moins", "Prairies temporaires"),
    "SOG": ("Sorgho", "Autres céréales"), "TTH": ("Triticale d'hiver", "Autres céréales"),
    "J6S": ("Jachère de 6 ans ou plus", "Gel (surfaces gelées sans production)"),
    "MLG": ("Mélange de légumineuses prépondérantes", "Légumineuses à grains"),
    "BOP": ("Bois pâturé", "Estives et landes"), "SNE": ("Surface agricole temporairement non exploitée", "Divers"),
}


def write_classmapping(root: Path) -> None:
    """classmapping.csv: unnamed index, then id,classname,code for every mapped code."""
    rows = [(CLASSES.index(name), name, code) for name in CLASSES for code in CLASS_CODES[name]]
    lines = [",id,classname,code"] + [f"{i},{cid},{name},{code}" for i, (cid, name, code) in enumerate(rows)]
    layout.classmapping_path(root).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_codes(root: Path) -> None:
    """codes.csv: ';'-separated, the RPG code as index, then its French label and group."""
    lines = ["CODE_CULTU;LIBELLE_CULTURE;LIBELLE_GROUPE_CULTURE"]
    lines += [f"{code};{label};{group}" for code, (label, group) in sorted(CODE_LABELS.items())]
    layout.codes_path(root).write_text("\n".join(lines) + "\n", encoding="utf-8")


def h5_key(level: str, region: str, parcel_id: int, year: int = YEAR) -> str:
    """The dataset key of a parcel, as the published index's `path` column gives it."""
    return f"/data/BreizhCrops/{level}_img/data/{year}/{level}/{region}/csv/{parcel_id}.csv"


class RegionWriter:
    """Streams one region's parcels of one level into its .h5 and collects its index rows."""

    def __init__(self, root: Path, region: str, level: str) -> None:
        self.root, self.region, self.level = Path(root), region, level
        folder = layout.level_dir(self.root, level)
        folder.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(folder / f"{region}.h5", "w")
        self._group = self._file.require_group(h5_key(level, region, 0).rsplit("/", 1)[0])
        self._rows: list[tuple[int, str, str, float, int]] = []

    def add(self, parcel_id: int, code: str, series: np.ndarray, mean_cloud: float) -> None:
        """Write one parcel's `(T, C)` float64 series and remember its index row.

        The low-level h5py calls cost a third of `create_dataset`: at full scale that is minutes.
        """
        series = np.ascontiguousarray(series, dtype=np.float64)
        dataset = h5py.h5d.create(self._group.id, f"{parcel_id}.csv".encode(), h5py.h5t.IEEE_F64LE,
                                  h5py.h5s.create_simple(series.shape))
        if series.size:
            dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, series)
        self._rows.append((parcel_id, code, h5_key(self.level, self.region, parcel_id), mean_cloud, len(series)))

    def close(self) -> dict[str, int]:
        """Finish the .h5 and write the index CSV (original variant); returns a few counts."""
        self._file.close()
        index = pd.DataFrame(self._rows, columns=["id", "CODE_CULTU", "path", "meanQA60", "sequencelength"])
        index.insert(0, "idx", np.arange(1, len(index) + 1))
        index.to_csv(layout.index_path(self.root, self.region, self.level), index=False, float_format="%.6g")
        return {"parcels": len(index), "empty_series": int((index["sequencelength"] == 0).sum())}


def write_shapefile(root: Path, region: str, ids: np.ndarray, codes: np.ndarray, polygons: np.ndarray) -> None:
    """root/2017/<region>.shp with fields ID and CODE_CULTU, in Lambert-93."""
    import geopandas as gpd  # heavy: only when writing

    from cropcore.data.simulate.geometry import CRS_LAMBERT93

    frame = gpd.GeoDataFrame({"ID": ids.astype(np.int64), "CODE_CULTU": codes.astype(str)},
                             geometry=polygons, crs=CRS_LAMBERT93)
    path = layout.shapefile_path(root, region)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_file(path, driver="ESRI Shapefile", engine="pyogrio")


def write_marker(root: Path, payload: dict) -> None:
    """SIMULATED.json: how this root was generated (scale, seed, version, counts)."""
    (Path(root) / layout.SIMULATED_MARKER).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n",
                                                     encoding="utf-8")
