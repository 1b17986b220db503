"""Pure figure and table builders for the dashboard: frames and arrays in, plotly figures out.

Nothing here touches Streamlit or the file system, so every builder is tested directly.
Reflectances are 0-1; series are laid out ``(time, bands)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cropcore.constants import CLASS_COLORS, CLASSES, LEVELS, REGION_NAMES, WAVELENGTH_NM, hex_to_rgb

#: What each Sentinel-2 band measures, for labels such as "B8 · 842 nm NIR".
BAND_ROLES: dict[str, str] = {
    "B1": "coastal aerosol", "B2": "blue", "B3": "green", "B4": "red", "B5": "red edge 1",
    "B6": "red edge 2", "B7": "red edge 3", "B8": "NIR", "B8A": "narrow NIR", "B9": "water vapour",
    "B10": "cirrus", "B11": "SWIR 1", "B12": "SWIR 2",
}
#: One colour per band, roughly following the spectrum (blue to red, then dark tones for NIR/SWIR).
BAND_COLORS: dict[str, str] = {
    "B1": "#6a3d9a", "B2": "#1f77b4", "B3": "#2ca02c", "B4": "#d62728", "B5": "#ff7f0e",
    "B6": "#bcbd22", "B7": "#8c564b", "B8": "#7f0000", "B8A": "#e377c2", "B9": "#17becf",
    "B10": "#9edae5", "B11": "#7f7f7f", "B12": "#252525",
}
NDVI = "NDVI"
CLOUD_MARKER_COLOR = "#9e9e9e"
QUANTILES = (0.1, 0.5, 0.9)
#: Up to this many distinct series lengths are shown as categories rather than a histogram.
CATEGORICAL_LENGTHS = 30


def band_label(band: str) -> str:
    """'B8' -> 'B8 · 842 nm NIR'; raises ValueError for anything that is not a spectral band."""
    if band not in WAVELENGTH_NM:
        raise ValueError(f"{band!r} is not a Sentinel-2 band; expected one of {', '.join(WAVELENGTH_NM)}")
    return f"{band} · {WAVELENGTH_NM[band]} nm {BAND_ROLES[band]}"


def region_label(region: str) -> str:
    """'frh04' -> 'FRH04 Morbihan'."""
    return f"{region.upper()} {REGION_NAMES.get(region, '')}".strip()


def _rgba(color: str, alpha: float) -> str:
    red, green, blue = hex_to_rgb(color)
    return f"rgba({red},{green},{blue},{alpha})"


# --- Dataset page -------------------------------------------------------------------------------

def parcel_count_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Parcels per region and level (the paper's Figure 2a) from rows ``region, level, parcels``.

    Returns one row per region (index "FRH04", ...), the department name, one column per level and
    a total row; a region/level without data stays empty.
    """
    table = counts.pivot_table(index="region", columns="level", values="parcels", aggfunc="sum")
    table = table.reindex(columns=[level for level in LEVELS]).astype("Int64")
    table.insert(0, "department", [REGION_NAMES.get(region, "") for region in table.index])
    table.index = [region.upper() for region in table.index]
    total = pd.DataFrame({"department": ["total"], **{level: [table[level].sum(min_count=1)] for level in LEVELS}},
                         index=["Σ"]).astype({level: "Int64" for level in LEVELS})
    return pd.concat([table, total])


def class_frequency_figure(frequencies: pd.DataFrame) -> go.Figure:
    """Class frequencies per region on a log scale (the paper's Figure 2b), one trace per class.

    Args:
        frequencies: rows ``region, classname, parcels``.
    """
    figure = go.Figure()
    regions = sorted(frequencies["region"].unique())
    for classname in CLASSES:
        rows = frequencies[(frequencies["classname"] == classname) & (frequencies["parcels"] > 0)]
        if rows.empty:
            continue
        figure.add_bar(x=[region_label(region) for region in rows["region"]], y=rows["parcels"],
                       name=classname, marker_color=CLASS_COLORS[classname],
                       hovertemplate="%{x}<br>" + classname + ": %{y:,} parcels<extra></extra>")
    ticks = [mantissa * 10**power for power in range(7) for mantissa in (1, 2, 5)]
    figure.update_yaxes(type="log", tickvals=ticks, ticktext=[f"{tick:,}" for tick in ticks],
                        title_text="parcels (log scale)")
    figure.update_layout(barmode="group",
                         xaxis={"categoryorder": "array", "categoryarray": [region_label(r) for r in regions]},
                         legend_title="class", margin={"t": 30})
    return figure


def sequence_length_figure(lengths: pd.DataFrame) -> go.Figure:
    """Observations per parcel, one bar trace per region (rows ``region, sequencelength``).

    Lengths cluster on a few values (51 or 102 for L1C), so up to CATEGORICAL_LENGTHS distinct values are
    drawn as categories side by side; more spread-out lengths become a histogram.
    """
    figure = go.Figure()
    categorical = lengths["sequencelength"].nunique() <= CATEGORICAL_LENGTHS
    for region in sorted(lengths["region"].unique()):
        values = lengths.loc[lengths["region"] == region, "sequencelength"]
        if categorical:
            counts = values.value_counts().sort_index()
            figure.add_bar(x=counts.index.astype(str), y=counts.to_numpy(), name=region.upper(),
                           hovertemplate=f"{region_label(region)}<br>%{{x}} observations: %{{y:,}} parcels<extra></extra>")
        else:
            figure.add_histogram(x=values, name=region.upper(), nbinsx=40)
    figure.update_layout(barmode="group", xaxis_title="observations per parcel (2017)", yaxis_title="parcels",
                         legend_title="region", margin={"t": 30})
    if categorical:
        figure.update_xaxes(type="category", categoryorder="array",
                            categoryarray=[str(v) for v in sorted(lengths["sequencelength"].unique())])
    return figure


def cloudiness_figure(cloudiness: pd.DataFrame, mask: str) -> go.Figure:
    """Share of cloudy observations and mean cloud-mask value per region.

    Args:
        cloudiness: rows ``region, cloudy_share`` (0-1), ``mean_mask`` (mean raw mask value).
        mask: the cloud mask column these come from (QA60 or CLD), for the axis titles.
    """
    figure = make_subplots(rows=1, cols=2, subplot_titles=("cloudy observations", f"mean {mask} value"),
                           horizontal_spacing=0.15)
    labels = [region.upper() for region in cloudiness["region"]]
    figure.add_bar(x=labels, y=cloudiness["cloudy_share"] * 100, name="cloudy %", marker_color="#78909c",
                   text=[f"{share:.0%}" for share in cloudiness["cloudy_share"]], row=1, col=1)
    figure.add_bar(x=labels, y=cloudiness["mean_mask"], name=f"mean {mask}", marker_color="#b0bec5",
                   row=1, col=2)
    figure.update_yaxes(title_text=f"% of observations with {mask} > 0", range=[0, 100], row=1, col=1)
    figure.update_layout(showlegend=False, margin={"t": 40})
    return figure


# --- Spectral curves page -----------------------------------------------------------------------

def spectral_figure(
    dates: np.ndarray,
    reflectance: np.ndarray,
    bands: Sequence[str],
    cloudy: np.ndarray,
    *,
    hide_cloudy: bool = False,
    grid: tuple[np.ndarray, np.ndarray] | None = None,
    model_input: tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "",
) -> go.Figure:
    """Every band of one parcel over the year: lines through the clear observations, cloudy ones as hollow grey circles.

    Cloudy observations are not joined to the lines (their outliers would hide the crop's curve); they are
    marked per band at their raw value, or left out with ``hide_cloudy``.

    Args:
        dates: acquisition dates ``(time,)``.
        reflectance: ``(time, bands)`` reflectance 0-1, columns in ``bands`` order (spectral bands only).
        bands: band names; a mask column here raises ValueError.
        cloudy: ``(time,)`` cloud flag from the mask.
        hide_cloudy: leave the flagged observations out instead of marking them.
        grid: ``(dates (71,), values (71, bands))`` 5-day interpolated series, drawn dashed.
        model_input: ``(dates (45,), values (45, bands))`` the model's sub-sample, drawn as diamonds.
    """
    labels = [band_label(band) for band in bands]
    reflectance = np.asarray(reflectance)
    cloudy = np.asarray(cloudy, dtype=bool)
    if reflectance.shape != (len(dates), len(bands)) or cloudy.shape != (len(dates),):
        raise ValueError(f"expected reflectance ({len(dates)}, {len(bands)}) and cloudy ({len(dates)},), "
                         f"got {reflectance.shape} and {cloudy.shape}")
    figure = go.Figure()
    clear = ~cloudy
    for column, (band, label) in enumerate(zip(bands, labels)):
        figure.add_scatter(x=dates[clear], y=reflectance[clear, column], name=label, mode="lines+markers",
                           legendgroup=band, line={"color": BAND_COLORS[band], "width": 1.5},
                           marker={"size": 4})
    if not hide_cloudy and cloudy.any():
        figure.add_scatter(x=np.tile(dates[cloudy], len(bands)), y=reflectance[cloudy].T.ravel(),
                           name="cloudy (mask)", mode="markers", legendgroup="cloudy",
                           hovertext=np.repeat(labels, int(cloudy.sum())),
                           marker={"symbol": "circle-open", "size": 9, "color": CLOUD_MARKER_COLOR,
                                   "line": {"width": 1.5}})
    if grid is not None:
        _add_overlay(figure, grid, bands, "5-day interpolated", "grid",
                     lambda color: {"mode": "lines", "line": {"color": color, "dash": "dash", "width": 1}})
    if model_input is not None:
        _add_overlay(figure, model_input, bands, "model input (45 steps)", "input",
                     lambda color: {"mode": "markers", "marker": {"color": color, "symbol": "diamond", "size": 7}})
    figure.update_layout(title=title, xaxis_title="date (2017)", yaxis_title="reflectance", hovermode="closest",
                         legend={"groupclick": "toggleitem", "tracegroupgap": 2}, height=560, margin={"t": 40})
    return figure


def _add_overlay(figure: go.Figure, overlay: tuple[np.ndarray, np.ndarray], bands: Sequence[str], name: str,
                 group: str, style: Callable[[str], dict]) -> None:
    """One trace per band of an extra series (dates, values (time, bands)), one legend entry for them all."""
    overlay_dates, values = overlay
    for column, band in enumerate(bands):
        figure.add_scatter(x=overlay_dates, y=np.asarray(values)[:, column], name=name, legendgroup=group,
                           showlegend=column == 0, hovertext=band_label(band), **style(BAND_COLORS[band]))


def quantity_values(features: np.ndarray, bands: Sequence[str], quantity: str) -> np.ndarray:
    """One band, or NDVI = (B8 - B4) / (B8 + B4), from ``(parcels, dates, bands)`` features -> ``(parcels, dates)``."""
    bands = list(bands)
    if quantity == NDVI:
        red, nir = features[..., bands.index("B4")], features[..., bands.index("B8")]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(nir + red > 0, (nir - red) / (nir + red), np.nan)
    if quantity not in bands:
        raise ValueError(f"unknown quantity {quantity!r}; expected {NDVI} or one of {', '.join(bands)}")
    return features[..., bands.index(quantity)]


def class_envelope(
    features: np.ndarray, classnames: Sequence[str], dates: np.ndarray, bands: Sequence[str], quantity: str
) -> pd.DataFrame:
    """Median and 10-90 percentiles per class and date of a band or NDVI.

    Args:
        features: ``(parcels, dates, bands)`` reflectance on a common date grid.
        classnames: class of each parcel.
        dates: the grid ``(dates,)``.
        quantity: a band name or "NDVI".

    Returns:
        Rows ``classname, date, q10, median, q90, parcels``, classes in class-id order.
    """
    values = quantity_values(np.asarray(features, dtype=np.float64), bands, quantity)
    classnames = np.asarray(classnames)
    frames = []
    for classname in [name for name in CLASSES if name in set(classnames)]:
        low, median, high = np.nanquantile(values[classnames == classname], QUANTILES, axis=0)
        frames.append(pd.DataFrame({"classname": classname, "date": dates, "q10": low, "median": median,
                                    "q90": high, "parcels": int((classnames == classname).sum())}))
    columns = ["classname", "date", "q10", "median", "q90", "parcels"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def envelope_figure(envelope: pd.DataFrame, classes: Sequence[str], quantity: str) -> go.Figure:
    """Per chosen class, a shaded 10-90 percentile band and the median line, in the class colour."""
    figure = go.Figure()
    for classname in [name for name in CLASSES if name in set(classes)]:
        rows = envelope[envelope["classname"] == classname]
        if rows.empty:
            continue
        color = CLASS_COLORS[classname]
        figure.add_scatter(x=rows["date"], y=rows["q90"], mode="lines", line={"width": 0, "color": color},
                           legendgroup=classname, showlegend=False, hoverinfo="skip")
        figure.add_scatter(x=rows["date"], y=rows["q10"], mode="lines", line={"width": 0, "color": color},
                           fill="tonexty", fillcolor=_rgba(color, 0.2), legendgroup=classname,
                           showlegend=False, hoverinfo="skip")
        figure.add_scatter(x=rows["date"], y=rows["median"], mode="lines", line={"width": 2.5, "color": color},
                           legendgroup=classname, name=f"{classname} (n={int(rows['parcels'].iloc[0])})")
    axis_title = "NDVI" if quantity == NDVI else f"{band_label(quantity)} reflectance"
    figure.update_layout(xaxis_title="date (2017, 5-day grid)", yaxis_title=axis_title,
                         legend_title="median, 10–90 % band", margin={"t": 30})
    return figure
