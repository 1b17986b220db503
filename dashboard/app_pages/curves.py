"""Spectral curves page: one parcel's bands over 2017 with clouds marked, and class envelopes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from cropcore.constants import BANDS, CLASSES, CLOUD_MASK, REGIONS
from dashboard import charts, loaders, sidebar

#: Parcel ids offered in the list (a full-size class holds tens of thousands).
PARCEL_OPTIONS = 2000
ENVELOPE_DEFAULT = ("wheat", "barley", "corn", "permanent meadows", "temporary meadows")


def pick_random(ids: list[int]) -> None:
    """Button callback: a reproducible random parcel (the seed lives in session state)."""
    rng = np.random.default_rng(st.session_state["curves_seed"])
    st.session_state["curves_seed"] += 1
    st.session_state["curves_parcel"] = int(rng.choice(ids))


root, level = sidebar.require_root()
st.title("Spectral curves")
sidebar.page_caption()

region = st.selectbox("Region", REGIONS, format_func=charts.region_label, key="curves_region")
with sidebar.data_errors(root, region, level):
    index = loaders.region_index(str(root), region, level)
if index.empty:
    st.warning(f"{charts.region_label(region)} {level} has no parcels of the nine classes.")
    st.stop()
classes = [name for name in CLASSES if name in set(index["classname"])]
class_column, parcel_column, random_column = st.columns([2, 2, 1], vertical_alignment="bottom")
classname = class_column.selectbox("Class", classes, key="curves_class")
ids = index.loc[index["classname"] == classname, "id"].astype(int).tolist()
random_column.button("Random parcel", icon=":material/casino:", on_click=pick_random, args=(ids,), width="stretch")
sidebar.keep_valid("curves_parcel", ids, ids[0])
options = sorted({*ids[:PARCEL_OPTIONS], st.session_state["curves_parcel"]})
parcel_id = parcel_column.selectbox("Parcel id", options, key="curves_parcel",
                                    help=f"{len(ids):,} parcels of this class; the list shows up to {PARCEL_OPTIONS:,}, "
                                         "the random button draws from all.")
position = int(np.flatnonzero(index["id"].to_numpy() == parcel_id)[0])

hide_column, grid_column, input_column = st.columns(3)
hide_cloudy = hide_column.toggle("Hide cloudy dates", key="curves_hide_cloudy")
show_grid = grid_column.toggle("Show the 5-day interpolated series", key="curves_show_grid")
show_input = input_column.toggle("Show the 45-step model input", key="curves_show_input")
with sidebar.data_errors(root, region, level):
    series = loaders.parcel_series(str(root), region, level, position)
    grid = loaders.parcel_grid(str(root), region, level, position) if show_grid else None
    model_input = (loaders.parcel_model_input(str(root), region, level, position, st.session_state["curves_seed"])
                   if show_input else None)
st.plotly_chart(charts.spectral_figure(
    series.dates, series.reflectance, series.bands, series.cloudy, hide_cloudy=hide_cloudy, grid=grid,
    model_input=model_input, title=f"Parcel {parcel_id} · {classname} · {charts.region_label(region)} {level}",
), width="stretch")
st.caption(f"{len(series.dates)} observations, {int(series.cloudy.sum())} flagged cloudy by {CLOUD_MASK[level]} > 0 "
           f"({'hidden' if hide_cloudy else 'hollow grey circles'}). The interpolation skips flagged dates.")
with st.expander("What do the mask columns (QA10/QA20/QA60, CLD/EDG/SAT) mean?"):
    st.markdown((Path(__file__).parents[1] / "masks.md").read_text(encoding="utf-8"))

st.subheader("Class envelopes")
quantities = [charts.NDVI, *BANDS[level]]
sidebar.keep_valid("curves_env_band", quantities, charts.NDVI)
stored_classes = st.session_state.get("curves_env_classes", ENVELOPE_DEFAULT)
st.session_state["curves_env_classes"] = [name for name in stored_classes if name in classes]
band_column, classes_column = st.columns([1, 3])
quantity = band_column.selectbox("Band or index", quantities, key="curves_env_band",
                                 format_func=lambda name: name if name == charts.NDVI else charts.band_label(name))
chosen = classes_column.multiselect("Classes", classes, key="curves_env_classes")
with sidebar.data_errors(root, region, level):
    envelope = loaders.class_envelope(str(root), region, level, quantity)
st.plotly_chart(charts.envelope_figure(envelope, chosen, quantity), width="stretch")
st.caption(f"Median and 10–90 percentiles per class over the 5-day grid (cloudy observations dropped, "
           f"linear interpolation), from up to {loaders.ENVELOPE_PARCELS_PER_CLASS} parcels per class of "
           f"{charts.region_label(region)}.")
