"""Map page: parcel predictions of one department on a map, by class, correctness or confidence.

A whole department opens as an overview image (maps.choose_shape): the browser draws it at once, where
122 000 pickable points take seconds. The page says so and how to get tooltips (fewer classes, points).
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from cropcore.constants import CLASSES, REGIONS
from cropcore.data import layout
from dashboard import loaders, maps, run_widgets, sidebar
from dashboard.charts import region_label

FINISHED_RUN, CHECKPOINT = "Finished run", "Checkpoint file"
UPLOADS = "uploads"
MAX_LISTED_CHECKPOINTS = 200


def checkpoint_files() -> list[str]:
    """Checkpoint files (*.pt, *.pth) inside the data folder, as paths relative to it."""
    folder = layout.data_dir()
    found = sorted(str(path.relative_to(folder)) for pattern in ("*.pt", "*.pth") for path in folder.rglob(pattern)
                   if not any(part.startswith(".") for part in path.relative_to(folder).parts))
    return found[:MAX_LISTED_CHECKPOINTS]


def save_upload(name: str, data: bytes) -> Path:
    """Store an uploaded checkpoint under <data folder>/uploads with a sanitised file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name).lstrip(".") or "checkpoint.pt"
    target = loaders.inside_data_folder(Path(UPLOADS) / safe)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def choose_source() -> tuple[loaders.PredictionSource, list[str]] | None:
    """(prediction source, regions available) chosen on the page, or None with a message shown."""
    runs = run_widgets.finished_runs()
    kind = st.radio("Predictions from", (FINISHED_RUN, CHECKPOINT), key="map_source", horizontal=True)
    if kind == FINISHED_RUN:
        if not runs:
            run_widgets.quick_demo_panel("map")
        run = run_widgets.pick_run(runs, key="map_run")
        chosen = run_widgets.read_run_predictions(run)
        if chosen is None:
            return None
        source, predictions = chosen
        return source, sorted(predictions["region"].unique())
    listed = checkpoint_files()
    typed = st.selectbox("Checkpoint (inside the data folder)", ["", *listed], key="map_checkpoint",
                         accept_new_options=True, help=f"A path relative to {layout.data_dir()}")
    upload = st.file_uploader("…or upload one", type=["pt", "pth"], key="map_upload")
    if upload is not None:
        typed = str(save_upload(upload.name, upload.getvalue()))
    if not typed:
        st.info("Choose or upload a cropcore checkpoint (checkpoint.pt of a run).")
        return None
    try:
        path = loaders.inside_data_folder(typed)
    except ValueError as error:
        st.error(str(error))
        return None
    if not path.is_file():
        st.error(f"No file at {path}.")
        return None
    from cropcore import models  # imports torch (seconds): only for checkpoints, never before the first map

    official = st.selectbox("Model of an official BreizhCrops .pth", ["", *models.NAMES], key="map_official",
                            format_func=lambda name: name or "— (a cropcore checkpoint names its model)")
    source = loaders.PredictionSource(loaders.CHECKPOINT_SOURCE, str(path), loaders.file_stamp(path), official)
    return source, list(REGIONS)


def map_controls(regions: list[str]) -> dict[str, object]:
    """Region, view, class filter, shape and basemap widgets."""
    left, middle, right = st.columns(3)
    region = left.selectbox("Region", regions, key="map_region", format_func=region_label)
    view = middle.radio("Colour by", list(maps.VIEWS), key="map_view", format_func=maps.VIEWS.get, horizontal=True)
    names = list(maps.BASEMAPS)
    if "map_basemap_default" not in st.session_state:  # decided once per session: a stable widget default
        st.session_state["map_basemap_default"] = 0 if loaders.basemap_reachable() else names.index("None (offline)")
    basemap = right.radio("Basemap", names, key="map_basemap", horizontal=True,
                          index=st.session_state["map_basemap_default"],
                          help="CARTO's free style needs internet; without it the parcels draw on a plain "
                               "background (the default when the basemap's server cannot be reached).")
    left, middle, right = st.columns([3, 1, 1])
    classes = left.multiselect("Show only classes", CLASSES, key="map_classes")
    filter_by = middle.radio("Filter on", ("predicted", "true"), key="map_filter_by", horizontal=True)
    shape = right.radio("Draw", maps.SHAPES, key="map_shape", horizontal=True,
                        help=f"auto: outlines up to {maps.POLYGON_LIMIT:,} parcels, centroid points up to "
                             f"{maps.POINT_LIMIT:,}, an overview image above (a whole department: drawn at "
                             "once, but without tooltips).")
    return {"region": region, "view": view, "classes": tuple(classes), "filter_by": filter_by, "shape": shape,
            "map_style": maps.BASEMAPS[basemap]}


def show_map(source: loaders.PredictionSource, root: Path, level: str, controls: dict[str, object]) -> None:
    """The deck, its legend and the export buttons."""
    region = str(controls["region"])
    args = (source, str(root), region, level)
    try:
        layer = loaders.map_layer(*args, str(controls["view"]), controls["classes"], str(controls["filter_by"]),
                                  str(controls["shape"]), controls["map_style"])
    except ValueError as error:
        st.error(f"Cannot map these predictions: {error}")
        return
    except loaders.DATA_ERRORS as error:
        sidebar.show_data_error(error, root, region, level)
        return
    st.markdown(maps.legend_html(maps.legend(str(controls["view"]))), unsafe_allow_html=True)
    st.caption(f"{layer.parcels:,} parcels drawn as {layer.drawn_as} · {region_label(region)}")
    if layer.shape == "overview":
        st.caption(f"Tooltips (parcel, true and predicted class, confidence) need points or outlines: show "
                   f"only some classes (at most {maps.POINT_LIMIT:,} parcels are drawn as points) or choose "
                   "Draw: points (all parcels, slower to draw).")
    st.pydeck_chart(maps.PrebuiltDeck(layer.spec), height=620, key="map_deck")
    export_buttons(args, controls)


def export_buttons(args: tuple, controls: dict[str, object]) -> None:
    """Download the shown predictions as CSV and GeoPackage, prepared on request.

    Joining predictions to outlines takes seconds for a full-size region: done only when asked, so it
    never delays drawing the map.
    """
    if not st.toggle("Prepare downloads (CSV, GeoPackage)", key="map_export_ready"):
        return
    parcels = maps.filter_classes(loaders.map_parcels(*args), list(controls["classes"]), str(controls["filter_by"]))
    name = f"predictions-{args[2]}"
    left, right = st.columns(2)
    left.download_button("Download CSV", maps.to_csv_bytes(parcels), f"{name}.csv", "text/csv", key="map_csv")
    right.download_button("Download GeoPackage", maps.to_geopackage_bytes(parcels), f"{name}.gpkg",
                          "application/geopackage+sqlite3", key="map_gpkg")


st.title("Map")
sidebar.page_caption()
active_root, active_level = sidebar.require_root()
chosen = choose_source()
if chosen is not None:
    prediction_source, source_regions = chosen
    data_root, data_level = run_widgets.source_data(prediction_source, active_root, active_level)
    show_map(prediction_source, data_root, data_level, map_controls(source_regions))
