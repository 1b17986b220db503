"""Dataset page: parcels per region and level, class imbalance, sequence lengths and cloudiness."""

from __future__ import annotations

import streamlit as st

from cropcore.constants import CLOUD_MASK, PARCEL_COUNTS
from dashboard import charts, loaders, sidebar

root, level = sidebar.require_root()
st.title("Dataset")
sidebar.page_caption()

counts = loaders.parcel_counts(str(root))
overview = loaders.level_overview(str(root), level)
for region, message in overview.problems.items():
    st.warning(f"{charts.region_label(region)} {level}: no data shown. {message}")
    st.code(loaders.download_command(root, region, level), language="bash")
if overview.parcels.empty:
    st.stop()

table_column, frequency_column = st.columns([2, 3])
with table_column:
    st.subheader("Parcels per region and level")
    st.dataframe(charts.parcel_count_table(counts), width="stretch")
    real = sum(PARCEL_COUNTS[level].values())
    st.caption(f"Kept parcels (codes of the nine classes, non-empty series), as in the paper's Figure 2a. "
               f"The real {level} release has {real:,} parcels in the four departments.")
with frequency_column:
    st.subheader("Class frequencies (log scale)")
    frequencies = overview.parcels.groupby(["region", "classname"]).size().rename("parcels").reset_index()
    st.plotly_chart(charts.class_frequency_figure(frequencies), width="stretch")

lengths_column, clouds_column = st.columns(2)
with lengths_column:
    st.subheader("Observations per parcel")
    st.plotly_chart(charts.sequence_length_figure(overview.parcels), width="stretch")
    st.caption("L1C series hold every 2017 acquisition (parcels in an orbit overlap are seen twice as often); "
               "L2A only images below 80 % cloud cover.")
with clouds_column:
    st.subheader("Cloudiness")
    mask = CLOUD_MASK[level]
    st.plotly_chart(charts.cloudiness_figure(overview.cloudiness, mask), width="stretch")
    st.caption(f"An observation counts as cloudy when its parcel-mean {mask} is above 0. "
               "See the Spectral curves page for what the masks mean.")
