"""Errors page: scores per department, confusion matrices, confused pairs down to parcels, run comparison."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from cropcore.constants import BANDS
from dashboard import charts, loaders, maps, model_charts, run_widgets, runs_view, sidebar
from dashboard.charts import region_label

SCORE_FORMAT = {key: st.column_config.NumberColumn(label, format="%.3f")
                for key, label in {**model_charts.TABLE2_ROWS, "macro_f1": "macro F1"}.items()}
MAX_COMPARED = 8


def department_scores(predictions: pd.DataFrame) -> None:
    """The paper's four scores (and macro F1) for every department the run predicted."""
    scores = model_charts.region_scores(predictions)
    scores["region"] = scores["region"].map(region_label)
    st.dataframe(scores, hide_index=True, column_config=SCORE_FORMAT)


def confusion_section(predictions: pd.DataFrame, region: str) -> None:
    """Counts and row-normalised heatmaps, per-class scores, most confused pairs."""
    confusion = model_charts.region_confusions(predictions)[region]
    left, right = st.columns(2)
    left.plotly_chart(model_charts.confusion_heatmap(confusion), key="errors_cm_counts")
    right.plotly_chart(model_charts.confusion_heatmap(confusion, normalised=True), key="errors_cm_norm")
    per_class = model_charts.per_class_table(confusion)
    left, right = st.columns([2, 3])
    left.dataframe(per_class, hide_index=True, column_config={
        column: st.column_config.NumberColumn(format="%.3f") for column in ("precision", "recall", "f1")})
    right.plotly_chart(model_charts.per_class_bars(per_class), key="errors_per_class")


def pair_section(predictions: pd.DataFrame, region: str, root: Path, level: str) -> None:
    """Most confused pairs; one pair's parcels as a list, on a map, and one parcel's spectral curve."""
    pairs = model_charts.confused_pairs(model_charts.region_confusions(predictions)[region])
    st.subheader("Most confused class pairs")
    if pairs.empty:
        st.success("No confusion in this department.")
        return
    st.dataframe(pairs, hide_index=True, column_config={
        "share of true class": st.column_config.ProgressColumn(format="%.2f", min_value=0, max_value=1)})
    labels = [f"{row.true} → predicted {row.predicted} ({row.parcels})" for row in pairs.itertuples()]
    chosen = st.selectbox("Look at the parcels of a pair", range(len(labels)), format_func=labels.__getitem__,
                          key="errors_pair")
    pair = pairs.iloc[int(chosen)]
    parcels = model_charts.pair_parcels(predictions, region, pair["true"], pair["predicted"])
    left, right = st.columns([2, 3])
    left.dataframe(parcels, hide_index=True, height=300,
                   column_config={"confidence": st.column_config.NumberColumn(format="%.2f")})
    parcel_id = left.selectbox("Parcel", parcels["id"].tolist(), key="errors_parcel")
    with right:
        try:
            pair_map(parcels, root, region, level)
            parcel_curve(root, region, level, int(parcel_id))
        except loaders.DATA_ERRORS as error:
            sidebar.show_data_error(error, root, region, level)


def pair_map(parcels: pd.DataFrame, root: Path, region: str, level: str) -> None:
    """The pair's parcels drawn on the map (coloured by confidence)."""
    shapes = loaders.parcel_shapes(str(root), region, level)
    joined = maps.join_predictions(shapes, parcels)
    if joined.empty:
        st.caption("These parcels have no outline in the shapefile.")
        return
    table = maps.layer_table(maps.simplify(joined), "confidence", "polygons")
    deck = maps.build_deck(table, maps.view_state(tuple(joined.total_bounds)),
                           maps.CARTO_POSITRON if loaders.basemap_reachable() else None)
    st.pydeck_chart(deck, height=300, key="errors_pair_map")


def parcel_curve(root: Path, region: str, level: str, parcel_id: int) -> None:
    """The chosen parcel's spectral series (every band, cloudy dates marked)."""
    index = loaders.region_index(str(root), region, level)
    positions = index.index[index["id"] == parcel_id]
    if positions.empty:
        st.caption(f"Parcel {parcel_id} is not in {region.upper()} {level}.")
        return
    series = loaders.parcel_series(str(root), region, level, int(positions[0]))
    figure = charts.spectral_figure(series.dates, series.reflectance, BANDS[level], series.cloudy,
                                    title=f"parcel {parcel_id} · true {series.classname}")
    st.plotly_chart(figure, key="errors_curve")


def compare_section(runs: list[runs_view.RunInfo]) -> None:
    """The paper's Table 2 layout for chosen runs (scores averaged over their test regions) and bars per metric."""
    st.subheader("Compare runs")
    labels = {run.label: run for run in runs}
    chosen = st.multiselect("Runs", list(labels), default=list(labels)[:MAX_COMPARED], key="errors_compare")
    if not chosen:
        return
    scores = {}
    for label in chosen:
        run = labels[label]
        chosen_run = run_widgets.read_run_predictions(run)
        if chosen_run is None:
            continue
        regions = model_charts.region_scores(chosen_run[1])
        scores[run.run_id] = regions[list(model_charts.TABLE2_ROWS)].mean().to_dict()
    if not scores:
        return
    table = model_charts.table2(scores)
    st.dataframe(table.style.format("{:.3f}"))
    st.plotly_chart(model_charts.comparison_bars(table), key="errors_compare_bars")


st.title("Errors")
sidebar.page_caption()
active_root, active_level = sidebar.require_root()
finished = run_widgets.finished_runs()
if not finished:
    run_widgets.quick_demo_panel("errors")
run = run_widgets.pick_run(finished, key="errors_run")
chosen_run = run_widgets.read_run_predictions(run)
if chosen_run is None:
    st.stop()
run_source, run_predictions = chosen_run
data_root, data_level = run_widgets.source_data(run_source, active_root, active_level)
st.subheader("Scores per department")
department_scores(run_predictions)
chosen_region = st.selectbox("Department", sorted(run_predictions["region"].unique()), key="errors_region",
                             format_func=region_label)
confusion_section(run_predictions, chosen_region)
pair_section(run_predictions, chosen_region, data_root, data_level)
compare_section(finished)
