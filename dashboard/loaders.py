"""The dashboard's one caching module: every file read of the app goes through here.

``st.cache_data`` for frames and arrays (copied per caller), ``st.cache_resource`` for opened datasets
(shared, never mutated). Widget values come in as arguments; roots are passed as strings so they hash.
Data errors (missing files, unreadable .h5) are raised unchanged for the page to show as messages.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import streamlit as st

from cropcore.constants import BANDS, CLASSES, CLOUD_MASK, LEVELS, MASKS, REFLECTANCE_SCALE, REGION_NAMES, REGIONS
from cropcore.data import layout
from cropcore.data.errors import DataFormatError, DatasetNotFoundError
from dashboard import charts

if TYPE_CHECKING:
    from cropcore.data import BreizhCrops, ParcelSeries

#: Errors a page shows as a message (with the download command) instead of a traceback.
DATA_ERRORS: tuple[type[Exception], ...] = (DatasetNotFoundError, DataFormatError, OSError)
#: Parcels per class drawn for the class envelopes (all of them at demo scale).
ENVELOPE_PARCELS_PER_CLASS = 1000


def download_command(root: str | Path, region: str, level: str) -> str:
    """The CLI call that fetches a region's files into ``root``."""
    return f"cropcore download --region {region} --level {level} --root {root}"


def file_inventory(root: str | Path) -> pd.DataFrame:
    """Which official files are present under ``root``, per region and level (cheap, not cached)."""
    rows = []
    for region in REGIONS:
        for level in LEVELS:
            present = {
                "index csv": layout.index_path(Path(root), region, level).exists(),
                "h5": layout.h5_path(Path(root), region, level) is not None,
                "shapefile": layout.shapefile_path(Path(root), region).exists(),
            }
            rows.append({"region": region.upper(), "department": REGION_NAMES[region], "level": level,
                         **present, "missing": "" if all(present.values()) else download_command(root, region, level)})
    return pd.DataFrame(rows)


@st.cache_resource(show_spinner="Generating the simulated Brittany (first use only)…")
def demo_data_root(data_folder: str, scale: str | None) -> str:
    """Root of the simulated demo inside ``data_folder`` at ``scale`` (keys the cache), generated if missing."""
    from cropcore.data import demo_root

    return str(demo_root())


@st.cache_resource(show_spinner="Opening the region (the first open packs it once)…")
def open_dataset(root: str, region: str, level: str) -> BreizhCrops:
    """One opened region, shared by every page and session; treat it as read-only."""
    from cropcore.data import BreizhCrops

    return BreizhCrops(region, root=root, level=level)


@st.cache_data(show_spinner=False)
def region_index(root: str, region: str, level: str) -> pd.DataFrame:
    """Kept parcels of a region: id, classid, classname, region, sequencelength (row i = ds[i])."""
    index = open_dataset(root, region, level).index
    return index[["id", "classid", "classname", "region", "sequencelength"]].reset_index(drop=True)


def _cloud_column(level: str) -> int:
    return MASKS[level].index(CLOUD_MASK[level])


@st.cache_data(show_spinner=False)
def region_cloudiness(root: str, region: str, level: str) -> dict[str, float]:
    """Share of observations flagged cloudy, mean cloud-mask value and observation count of a region."""
    store = open_dataset(root, region, level).store
    cloud = np.asarray(store.masks[:, _cloud_column(level)], dtype=np.float64)
    return {"cloudy_share": float((cloud > 0).mean()) if cloud.size else float("nan"),
            "mean_mask": float(cloud.mean()) if cloud.size else float("nan"), "observations": int(cloud.size)}


class LevelOverview(NamedTuple):
    """What the Dataset page shows for one level."""

    parcels: pd.DataFrame  # index rows of every readable region
    cloudiness: pd.DataFrame  # region, cloudy_share, mean_mask, observations
    problems: dict[str, str]  # region -> error message


@st.cache_data(show_spinner="Reading the regions…")
def level_overview(root: str, level: str) -> LevelOverview:
    """Index rows and cloudiness of every benchmark region at one level; unreadable regions in ``problems``."""
    frames, clouds, problems = [], [], {}
    for region in REGIONS:
        try:
            frames.append(region_index(root, region, level))
            clouds.append({"region": region, **region_cloudiness(root, region, level)})
        except DATA_ERRORS as error:
            problems[region] = str(error)
    parcels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["id", "classid", "classname", "region", "sequencelength"])
    cloudiness = pd.DataFrame(clouds, columns=["region", "cloudy_share", "mean_mask", "observations"])
    return LevelOverview(parcels, cloudiness, problems)


def parcel_counts(root: str) -> pd.DataFrame:
    """Rows ``region, level, parcels`` for both levels (the regions that could be read)."""
    rows = [{"region": region, "level": level, "parcels": count}
            for level in LEVELS
            for region, count in level_overview(root, level).parcels.groupby("region").size().items()]
    return pd.DataFrame(rows, columns=["region", "level", "parcels"])


@st.cache_data(show_spinner=False, max_entries=64)
def parcel_series(root: str, region: str, level: str, position: int) -> ParcelSeries:
    """The whole series of parcel ``position`` (dates, reflectance, cloud flag, raw masks)."""
    return open_dataset(root, region, level).raw(position)


@st.cache_data(show_spinner=False, max_entries=64)
def parcel_grid(root: str, region: str, level: str, position: int) -> tuple[np.ndarray, np.ndarray]:
    """The parcel's 5-day interpolated series: (GRID_DATES (71,), reflectance (71, bands))."""
    from cropcore.data import GRID_DATES, grid_features

    series = parcel_series(root, region, level, position)
    offsets = np.array([0, len(series.dates)], dtype=np.int64)
    features, _ = grid_features(series.dates, series.reflectance, offsets, series.cloudy)
    return np.asarray(GRID_DATES), features[0]


@st.cache_data(show_spinner=False, max_entries=64)
def parcel_model_input(root: str, region: str, level: str, position: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The 45-step model input of the parcel as the dataset draws it with ``seed``: (dates (45,), x (45, bands)).

    The dataset returns only values, so each drawn row is matched back to its acquisition date.
    """
    from cropcore.data import BreizhCrops

    sample = BreizhCrops(region, root=root, level=level, seed=seed)[position][0].numpy()
    series = parcel_series(root, region, level, position)
    distance = np.abs(sample[:, None, :] - series.reflectance[None, :, :]).sum(axis=2)
    return series.dates[distance.argmin(axis=1)], sample


@st.cache_data(show_spinner="Interpolating the region's parcels on the 5-day grid…", max_entries=8)
def region_grid_sample(root: str, region: str, level: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """5-day grid features of up to ENVELOPE_PARCELS_PER_CLASS parcels per class: (features (N, 71, D), classnames (N,))."""
    from cropcore.data import grid_features

    dataset = open_dataset(root, region, level)
    classnames = dataset.index["classname"].to_numpy()
    rng = np.random.default_rng(seed)
    chosen = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(classnames == name))[:ENVELOPE_PARCELS_PER_CLASS] for name in CLASSES]))
    store = dataset.store
    offsets = np.asarray(store.offsets)
    lengths = offsets[chosen + 1] - offsets[chosen]
    starts = np.repeat(offsets[chosen] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    observations = starts + np.arange(lengths.sum())
    values = np.asarray(store.values[observations], dtype=np.float32) * np.float32(REFLECTANCE_SCALE)
    cloudy = np.asarray(store.masks[observations, _cloud_column(level)]) > 0
    features, _ = grid_features(np.asarray(store.dates[observations]), values,
                                np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), cloudy)
    return features, classnames[chosen]


@st.cache_data(show_spinner=False, max_entries=64)
def class_envelope(root: str, region: str, level: str, quantity: str) -> pd.DataFrame:
    """Median and 10-90 percentiles per class over the 5-day grid of a band or NDVI (see charts.class_envelope)."""
    from cropcore.data import GRID_DATES

    features, classnames = region_grid_sample(root, region, level)
    return charts.class_envelope(features, classnames, np.asarray(GRID_DATES), BANDS[level], quantity)


def clear_caches() -> None:
    """Forget every cached frame and dataset (after files changed on disk)."""
    st.cache_data.clear()
    st.cache_resource.clear()


# --- runs, predictions, maps (Train/Map/Errors pages) ---

#: Environment variable overriding where the dashboard keeps and looks for run folders.
RUNS_ENV = "CROPCORE_RUNS"
#: Predictions come from a run folder or from a checkpoint file scored on a region.
RUN_SOURCE, CHECKPOINT_SOURCE = "run", "checkpoint"


def runs_root() -> Path:
    """Folder of the dashboard's run folders: $CROPCORE_RUNS, else ``<data folder>/runs``."""
    import os

    configured = os.environ.get(RUNS_ENV)
    return Path(configured) if configured else layout.data_dir() / "runs"


def inside_data_folder(text: str | Path, advice: str = "only files inside it can be opened.") -> Path:
    """A typed path resolved inside the data folder; ValueError (ending with ``advice``) when it points elsewhere."""
    folder = layout.data_dir().resolve()
    candidate = Path(str(text).strip()).expanduser()
    resolved = (candidate if candidate.is_absolute() else folder / candidate).resolve()
    if not resolved.is_relative_to(folder):
        raise ValueError(f"{resolved} is outside the data folder {folder}; {advice}")
    return resolved


def file_stamp(path: str | Path) -> float:
    """Modification time (0 when missing): passed to cached loaders so a rewritten file is re-read."""
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=32)
def run_predictions(run_dir: str, stamp: float) -> pd.DataFrame:
    """predictions.parquet of a run with a ``confidence`` column; ValueError when unreadable."""
    from dashboard import runs_view

    return runs_view.read_predictions(Path(run_dir))


@st.cache_resource(show_spinner="Loading the checkpoint (weights only)…", max_entries=4)
def checkpoint_model(path: str, stamp: float, official_model: str = "") -> tuple[object, dict]:
    """(network in eval mode, metadata) of a checkpoint file, read with weights_only=True.

    A cropcore checkpoint names its model; an official BreizhCrops ``.pth`` needs ``official_model``
    (its weights are L1C). Raises ValueError with a readable reason for anything else.
    """
    from cropcore import models

    try:
        payload = models.load_checkpoint(path)
        name, level = str(payload["model"]), payload.get("level")
    except models.CheckpointError as error:
        if not official_model:
            raise ValueError(f"{error}. For an official BreizhCrops .pth file, choose its model.") from error
        name, level = official_model, "L1C"
    network = models.pretrained(name, path=path, progress=False)
    return network.eval(), {"model": name, "level": level, "input_dim": int(network.input_dim),
                            "num_classes": int(network.num_classes)}


@st.cache_data(show_spinner="Scoring the region with the checkpoint…", max_entries=8)
def checkpoint_predictions(path: str, stamp: float, root: str, region: str, level: str,
                           official_model: str = "") -> pd.DataFrame:
    """Predictions of a checkpoint for every parcel of a region (same table as a run's predictions.parquet)."""
    from cropcore.evaluation.inference import predict
    from cropcore.training.checkpoint import check_compatible

    from dashboard import runs_view

    network, info = checkpoint_model(path, stamp, official_model)
    dataset = open_dataset(root, region, level)
    check_compatible(info, input_dim=dataset[0][0].shape[-1], num_classes=len(CLASSES),
                     source=f"{region.upper()} {level}")
    return runs_view.check_predictions(predict(network, [dataset], seed=0).frame())


class PredictionSource(NamedTuple):
    """Where predictions come from: a run folder or a checkpoint file (``stamp`` = file mtime, keys caches)."""

    kind: str
    path: str
    stamp: float
    official_model: str = ""


def source_predictions(source: PredictionSource, root: str, region: str, level: str) -> pd.DataFrame:
    """Predictions of one region from a run folder or a checkpoint (cached underneath)."""
    if source.kind == RUN_SOURCE:
        predictions = run_predictions(source.path, source.stamp)
        return predictions[predictions["region"] == region]
    return checkpoint_predictions(source.path, source.stamp, root, region, level, source.official_model)


def shapefile_stamp(root: str, region: str) -> str:
    """Size and modification time of a region's shapefile parts.

    Part of the key of the caches kept on disk across server restarts, so a changed file is never
    served from a stale entry.
    """
    shapefile = layout.shapefile_path(Path(root), region)
    parts = (shapefile, shapefile.with_suffix(".dbf"))
    return ";".join(f"{part.stat().st_size}:{part.stat().st_mtime_ns}" if part.exists() else "missing" for part in parts)


@functools.cache
def builders_stamp() -> str:
    """Digest of the map builders' source (maps.py).

    Part of the key of the caches kept on disk: Streamlit keys them by the cached function's own code
    only, so without it an upgraded builder would keep serving layers built by the old one.
    """
    return hashlib.sha1(Path(__file__).with_name("maps.py").read_bytes()).hexdigest()[:12]


def parcel_shapes(root: str, region: str, level: str) -> pd.DataFrame:
    """Parcel outlines of a region (EPSG:4326) with centroid and equal-area radius (see maps.add_points)."""
    return _parcel_shapes(root, region, level, shapefile_stamp(root, region), builders_stamp())


@st.cache_data(show_spinner="Reading parcel outlines…", max_entries=8, persist="disk")
def _parcel_shapes(root: str, region: str, level: str, stamp: str, code: str) -> pd.DataFrame:
    from dashboard import maps

    return maps.add_points(open_dataset(root, region, level).geodataframe())


@st.cache_data(show_spinner="Joining predictions to parcels…", max_entries=8)
def map_parcels(source: PredictionSource, root: str, region: str, level: str) -> pd.DataFrame:
    """Parcels of a region with true/predicted class, confidence and simplified outline."""
    from dashboard import maps

    return maps.join_predictions(parcel_shapes(root, region, level), source_predictions(source, root, region, level))


class MapLayer(NamedTuple):
    """What the Map page draws: the deck's JSON (layer data included) and what it shows."""

    spec: str
    shape: str
    parcels: int
    drawn_as: str  # maps.describe: what the page says is drawn


def map_layer(source: PredictionSource, root: str, region: str, level: str, view: str,
              classes: tuple[str, ...], filter_by: str, shape: str, map_style: str | None) -> MapLayer:
    """The deck of one (prediction source, region, view, class filter, shape, basemap), serialised once.

    An overview image for a whole department, points for a medium selection, simplified outlines for
    the others (maps.choose_shape); the view is centred on the whole region. Kept on disk, so a
    restarted server draws a known map at once.
    """
    return _map_layer(source, root, region, level, view, classes, filter_by, shape, map_style,
                      shapefile_stamp(root, region), builders_stamp())


@st.cache_data(show_spinner="Building the map layer…", max_entries=16, persist="disk")
def _map_layer(source: PredictionSource, root: str, region: str, level: str, view: str, classes: tuple[str, ...],
               filter_by: str, shape: str, map_style: str | None, stamp: str, code: str) -> MapLayer:
    from dashboard import maps

    parcels = maps.filter_classes(map_parcels(source, root, region, level), list(classes), filter_by)
    chosen = maps.choose_shape(len(parcels), shape)
    bounds = tuple(float(value) for value in parcel_shapes(root, region, level).total_bounds)
    view_state = maps.view_state(bounds)
    if chosen == "overview":
        overview = maps.overview_of(parcels, view, bounds)
        deck = maps.build_overview_deck(overview, view_state, map_style)
        return MapLayer(deck.to_json(), chosen, len(parcels), maps.describe(chosen, overview.pixel_m))
    if chosen == "polygons":
        parcels = maps.simplify(parcels)
    deck = maps.build_deck(maps.layer_table(parcels, view, chosen), view_state, map_style)
    return MapLayer(deck.to_json(), chosen, len(parcels), maps.describe(chosen))


@st.cache_data(ttl=300, show_spinner=False)
def basemap_reachable(url: str | None = None, timeout_s: float = 1.5) -> bool:
    """Whether the online basemap's host answers a TCP connection within ``timeout_s`` (checked every 5 min).

    Offline, the browser would otherwise wait for the style request to fail before drawing the parcels.
    Runs in a thread so that a slow resolver cannot hold the page longer than ``timeout_s``.
    """
    from dashboard import maps

    host = urlparse(url or maps.CARTO_POSITRON).hostname or ""
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout_s):
                answer.append(True)
        except OSError:
            answer.append(False)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(answer and answer[0])
