"""Pure Map page builders: colours, legend, simplification, layer tables, decks, exports."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from cropcore.constants import CLASS_COLORS, CLASSES, hex_to_rgb
from dashboard import maps


def parcel_grid(count: int = 12) -> gpd.GeoDataFrame:
    """Small squares with a wobbly edge (so simplification has vertices to drop), EPSG:4326."""
    polygons = []
    for k in range(count):
        x0, y0 = -3.0 + (k % 4) * 0.01, 47.8 + (k // 4) * 0.01
        edge = [(x0 + t * 0.004, y0 + 1e-6 * (t % 2)) for t in np.linspace(0, 1, 20)]
        polygons.append(shapely.Polygon([*edge, (x0 + 0.004, y0 + 0.004), (x0, y0 + 0.004)]))
    return gpd.GeoDataFrame({"id": np.arange(100, 100 + count), "classid": np.arange(count) % 9},
                            geometry=polygons, crs="EPSG:4326")


def predictions_for(parcels: gpd.GeoDataFrame) -> pd.DataFrame:
    count = len(parcels)
    return pd.DataFrame({"id": parcels["id"], "region": "frh04", "true": np.arange(count) % 9,
                         "predicted": (np.arange(count) + (np.arange(count) % 3 == 0)) % 9,
                         "confidence": np.linspace(0.2, 1.0, count)})


@pytest.fixture()
def joined() -> gpd.GeoDataFrame:
    parcels = parcel_grid()
    return maps.join_predictions(maps.add_points(parcels), predictions_for(parcels))


def test_join_adds_names_and_correctness() -> None:
    parcels = parcel_grid()
    predictions = predictions_for(parcels).iloc[:-2]  # two parcels without prediction are left out
    joined = maps.join_predictions(parcels, predictions)
    assert len(joined) == len(parcels) - 2
    assert list(joined["true_class"][:3]) == list(CLASSES[:3])
    assert joined["correct"].tolist() == (joined["true"] == joined["predicted"]).tolist()


def test_simplify_keeps_every_parcel_and_drops_vertices() -> None:
    original = parcel_grid()
    simplified = maps.simplify(original)
    assert len(simplified) == len(original) and list(simplified["id"]) == list(original["id"])
    assert (shapely.get_num_coordinates(simplified.geometry.values).sum()
            < shapely.get_num_coordinates(original.geometry.values).sum())
    coords = shapely.get_coordinates(simplified.geometry.values)
    assert np.allclose(coords, np.round(coords, maps.DECIMALS))


def test_points_are_centroids_with_equal_area_radius() -> None:
    points = maps.add_points(parcel_grid())
    assert points[["lon", "lat", "radius"]].notna().all().all()
    first = parcel_grid().geometry.iloc[0]
    assert points["lon"].iloc[0] == pytest.approx(first.centroid.x, abs=1e-5)
    side_m = 0.004 * maps.METRES_PER_DEGREE * np.sqrt(np.cos(np.radians(47.8)))
    assert points["radius"].iloc[0] == pytest.approx(side_m / np.sqrt(np.pi), rel=0.05)


def test_simplify_keeps_tiny_parcels() -> None:
    tiny = gpd.GeoDataFrame({"id": [1]}, geometry=[shapely.box(-3.0, 48.0, -3.0 + 2e-6, 48.0 + 2e-6)], crs="EPSG:4326")
    simplified = maps.simplify(tiny)
    assert len(simplified) == 1 and not simplified.geometry.is_empty.any()


@pytest.mark.parametrize("view", list(maps.VIEWS))
def test_colors_per_view(joined: gpd.GeoDataFrame, view: str) -> None:
    rgba = maps.colors(joined, view)
    assert rgba.shape == (len(joined), 4) and rgba.dtype == np.uint8
    if view in ("predicted", "true"):
        expected = [hex_to_rgb(CLASS_COLORS[CLASSES[k]]) for k in joined[view]]
        assert [tuple(row) for row in rgba[:, :3]] == expected
    if view == "correct":
        wrong = ~joined["correct"].to_numpy()
        assert (rgba[wrong, :3] == hex_to_rgb(maps.WRONG_COLOR)).all()
    if view == "confidence":
        assert tuple(rgba[0, :3]) != tuple(rgba[-1, :3])


def test_legend_uses_class_palette() -> None:
    assert maps.legend("predicted") == [(name, CLASS_COLORS[name]) for name in CLASSES]
    assert [label for label, _ in maps.legend("correct")] == ["correct", "wrong"]
    html = maps.legend_html(maps.legend("true"))
    assert all(color in html for color in CLASS_COLORS.values())
    with pytest.raises(ValueError, match="unknown view"):
        maps.legend("nope")


def test_filter_classes(joined: gpd.GeoDataFrame) -> None:
    assert len(maps.filter_classes(joined, None)) == len(joined)
    wheat = maps.filter_classes(joined, ["wheat"], by="true")
    assert set(wheat["true_class"]) == {"wheat"}
    with pytest.raises(ValueError):
        maps.filter_classes(joined, ["wheat"], by="color")


def test_choose_shape() -> None:
    assert maps.choose_shape(10) == "polygons"
    assert maps.choose_shape(maps.POLYGON_LIMIT + 1) == "points"
    assert maps.choose_shape(10, "points") == "points"
    with pytest.raises(ValueError):
        maps.choose_shape(10, "hexagons")


def test_polygon_layer_table_and_deck(joined: gpd.GeoDataFrame) -> None:
    table = maps.layer_table(maps.simplify(joined), "predicted", "polygons")
    assert len(table) == len(joined)
    assert {"id", "true", "pred", "conf", "rgb", "ring", "line"} <= set(table.columns)
    assert table["rgb"].iloc[0] == list(hex_to_rgb(CLASS_COLORS[joined["predicted_class"].iloc[0]]))
    ring = table["ring"].iloc[0]
    assert ring[0] == ring[-1] and len(ring[0]) == 2
    deck = maps.build_deck(table, maps.view_state(tuple(joined.total_bounds)))
    spec = json.loads(deck.to_json())
    layer = spec["layers"][0]
    assert layer["@@type"] == "PolygonLayer" and layer["pickable"]
    assert len(layer["data"]) == len(joined)
    for field in ("id", "true", "pred", "conf"):
        assert "{" + field + "}" in deck._tooltip["html"] and field in layer["data"][0]
    assert spec["mapStyle"] == maps.CARTO_POSITRON
    assert layer["lineWidthMaxPixels"] == maps.LINE_MAX_PIXELS  # bounded outlines (software WebGL draws the max)
    assert "\n" not in deck.to_json()  # compact: no indentation in the payload
    assert maps.PrebuiltDeck(deck.to_json()).to_json() == deck.to_json()


def test_point_layer_and_plain_background(joined: gpd.GeoDataFrame) -> None:
    table = maps.layer_table(joined, "confidence", "points")
    assert "xy" in table and "ring" not in table
    deck = maps.build_deck(table, maps.view_state(tuple(joined.total_bounds)), map_style=None)
    spec = json.loads(deck.to_json())
    assert spec["layers"][0]["@@type"] == "ScatterplotLayer"
    assert spec["layers"][0]["radiusMaxPixels"] == maps.POINT_MAX_PIXELS
    # Streamlit swaps an empty/missing style for CARTO's (a network fetch); its marker means "none".
    assert spec["mapStyle"] == maps.NO_BASEMAP


def test_view_state_is_centred_on_bounds(joined: gpd.GeoDataFrame) -> None:
    minx, miny, maxx, maxy = joined.total_bounds
    view = maps.view_state((minx, miny, maxx, maxy))
    assert view.longitude == pytest.approx((minx + maxx) / 2)
    assert view.latitude == pytest.approx((miny + maxy) / 2)
    assert 3 <= view.zoom <= 16
    assert maps.view_state((np.nan,) * 4).zoom == 7


def test_exports_round_trip(joined: gpd.GeoDataFrame) -> None:
    csv = pd.read_csv(pd.io.common.BytesIO(maps.to_csv_bytes(joined)))
    assert len(csv) == len(joined) and {"id", "true_class", "predicted_class", "confidence"} <= set(csv.columns)
    package = maps.read_geopackage(maps.to_geopackage_bytes(joined))
    assert len(package) == len(joined) and package.crs.to_epsg() == 4326
    assert sorted(package["id"]) == sorted(joined["id"])
