"""The dashboard's pure figure builders, on small hand-made frames and arrays (no Streamlit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cropcore.constants import BANDS, CLASS_COLORS, CLASSES, MASKS
from dashboard import charts

DATES = np.array(["2017-01-05", "2017-02-14", "2017-04-01", "2017-06-10", "2017-09-03"], dtype="datetime64[s]")
CLOUDY = np.array([False, True, False, True, False])


def reflectance(level: str = "L2A") -> np.ndarray:
    """(5 dates, bands) reflectance: band j at date t = 0.01 * (t + 1) + 0.1 * j."""
    return (0.01 * (np.arange(5)[:, None] + 1) + 0.1 * np.arange(len(BANDS[level]))[None, :]).astype(np.float32)


def names(figure) -> list[str]:
    return [trace.name for trace in figure.data]


def test_band_labels_carry_wavelengths_and_reject_masks() -> None:
    assert charts.band_label("B8") == "B8 · 842 nm NIR"
    assert charts.band_label("B11") == "B11 · 1610 nm SWIR 1"
    for mask in MASKS["L1C"] + MASKS["L2A"]:
        with pytest.raises(ValueError, match="not a Sentinel-2 band"):
            charts.band_label(mask)


def test_class_frequencies_one_trace_per_class_in_palette_on_log_axis() -> None:
    frequencies = pd.DataFrame({
        "region": ["frh01", "frh01", "frh02", "frh02", "frh02"],
        "classname": ["wheat", "nuts", "wheat", "corn", "nuts"],
        "parcels": [500, 3, 400, 9000, 0],
    })
    figure = charts.class_frequency_figure(frequencies)
    assert names(figure) == ["wheat", "corn", "nuts"]  # class-id order
    assert [trace.marker.color for trace in figure.data] == [CLASS_COLORS[n] for n in ("wheat", "corn", "nuts")]
    assert figure.layout.yaxis.type == "log" and "1,000" in figure.layout.yaxis.ticktext
    nuts = figure.data[2]
    assert list(nuts.x) == ["FRH01 Côtes-d'Armor"] and list(nuts.y) == [3]  # zero counts dropped (log axis)


def test_parcel_count_table_rows_regions_columns_levels() -> None:
    counts = pd.DataFrame({"region": ["frh01", "frh01", "frh04"], "level": ["L1C", "L2A", "L1C"],
                           "parcels": [10, 11, 7]})
    table = charts.parcel_count_table(counts)
    assert list(table.columns) == ["department", "L1C", "L2A"]
    assert table.loc["FRH04", "department"] == "Morbihan"
    assert table.loc["FRH01", "L2A"] == 11 and pd.isna(table.loc["FRH04", "L2A"])
    assert table.loc["Σ", "L1C"] == 17


def test_sequence_length_and_cloudiness_figures() -> None:
    lengths = pd.DataFrame({"region": ["frh01"] * 3 + ["frh02"] * 2, "sequencelength": [51, 51, 102, 40, 44]})
    figure = charts.sequence_length_figure(lengths)
    assert len(figure.data) == 2 and figure.layout.xaxis.type == "category"
    assert list(figure.data[0].x) == ["51", "102"] and list(figure.data[0].y) == [2, 1]
    spread = pd.DataFrame({"region": "frh03", "sequencelength": range(10, 60)})
    assert charts.sequence_length_figure(spread).data[0].type == "histogram"
    cloudiness = pd.DataFrame({"region": ["frh01", "frh02"], "cloudy_share": [0.6, 0.7], "mean_mask": [600.0, 700.0]})
    figure = charts.cloudiness_figure(cloudiness, "QA60")
    assert len(figure.data) == 2
    assert list(figure.data[0].y) == pytest.approx([60.0, 70.0])
    assert "QA60" in figure.layout.yaxis.title.text


def test_spectral_figure_labels_every_band_and_marks_clouds() -> None:
    bands = BANDS["L1C"]
    figure = charts.spectral_figure(DATES, reflectance("L1C"), bands, CLOUDY)
    assert names(figure)[:13] == [charts.band_label(band) for band in bands]
    assert not any(mask in name for name in names(figure) for mask in MASKS["L1C"])
    cloud = figure.data[-1]
    assert cloud.name == "cloudy (mask)" and cloud.marker.symbol == "circle-open"
    assert len(cloud.x) == 2 * len(bands)  # two cloudy dates, every band
    assert list(figure.data[0].y) == pytest.approx(reflectance("L1C")[~CLOUDY, 0])  # lines join clear dates
    assert list(cloud.y[:2]) == pytest.approx(reflectance("L1C")[CLOUDY, 0])  # clouds at their raw values


def test_spectral_figure_hides_cloudy_dates_with_the_toggle() -> None:
    figure = charts.spectral_figure(DATES, reflectance(), BANDS["L2A"], CLOUDY, hide_cloudy=True)
    assert "cloudy (mask)" not in names(figure)
    assert len(figure.data) == len(BANDS["L2A"])
    assert not any(np.isin(figure.data[0].x, DATES[CLOUDY]))


def test_spectral_figure_overlays_grid_and_model_input() -> None:
    bands = BANDS["L2A"]
    grid_dates = np.arange("2017-01-01", "2017-12-31", 5, dtype="datetime64[D]")[:71]
    grid = (grid_dates, np.zeros((71, len(bands))))
    model_input = (DATES[[0, 0, 2]], reflectance()[[0, 0, 2]])
    figure = charts.spectral_figure(DATES, reflectance(), bands, CLOUDY, grid=grid, model_input=model_input)
    grid_traces = [trace for trace in figure.data if trace.legendgroup == "grid"]
    input_traces = [trace for trace in figure.data if trace.legendgroup == "input"]
    assert len(grid_traces) == len(input_traces) == len(bands)
    assert sum(trace.showlegend for trace in grid_traces) == 1
    assert grid_traces[0].line.dash == "dash" and input_traces[0].marker.symbol == "diamond"


def test_spectral_figure_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="expected reflectance"):
        charts.spectral_figure(DATES, reflectance()[:, :3], BANDS["L2A"], CLOUDY)


def test_class_envelope_quantiles_on_hand_made_values() -> None:
    bands = ("B4", "B8")
    # 11 wheat parcels with B8 = 0.0 .. 1.0 at every date, B4 = 0.1; 1 corn parcel.
    features = np.zeros((12, 3, 2))
    features[:11, :, 1] = np.linspace(0, 1, 11)[:, None]
    features[:11, :, 0] = 0.1
    features[11] = [[0.1, 0.3], [0.1, 0.3], [0.1, 0.3]]
    classnames = ["wheat"] * 11 + ["corn"]
    dates = DATES[:3]
    envelope = charts.class_envelope(features, classnames, dates, bands, "B8")
    assert list(envelope["classname"].unique()) == ["wheat", "corn"]
    wheat = envelope[envelope["classname"] == "wheat"]
    assert wheat["q10"].tolist() == pytest.approx([0.1] * 3)
    assert wheat["median"].tolist() == pytest.approx([0.5] * 3)
    assert wheat["q90"].tolist() == pytest.approx([0.9] * 3)
    assert wheat["parcels"].iloc[0] == 11
    ndvi = charts.class_envelope(features, classnames, dates, bands, charts.NDVI)
    assert ndvi.loc[ndvi["classname"] == "corn", "median"].tolist() == pytest.approx([0.5] * 3)  # (.3-.1)/(.3+.1)
    with pytest.raises(ValueError, match="unknown quantity"):
        charts.class_envelope(features, classnames, dates, bands, "QA60")


def test_envelope_figure_draws_band_and_median_per_chosen_class() -> None:
    envelope = pd.DataFrame({"classname": ["wheat"] * 2 + ["corn"] * 2 + ["nuts"] * 2, "date": list(DATES[:2]) * 3,
                             "q10": 0.1, "median": 0.5, "q90": 0.9, "parcels": 4})
    figure = charts.envelope_figure(envelope, ["corn", "wheat"], "B8")
    assert len(figure.data) == 6  # upper, lower (filled), median for each chosen class
    medians = [trace for trace in figure.data if trace.showlegend is not False]
    assert [trace.line.color for trace in medians] == [CLASS_COLORS["wheat"], CLASS_COLORS["corn"]]
    assert figure.data[1].fill == "tonexty"
    assert "842 nm" in figure.layout.yaxis.title.text
    assert charts.envelope_figure(envelope, [], charts.NDVI).data == ()
    assert set(CLASSES) >= set(envelope["classname"])
