"""Pure Map page builders: colours, legend, simplification, layer tables, decks, exports."""

from __future__ import annotations

import base64
import io
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
    assert maps.choose_shape(maps.POINT_LIMIT) == "points"
    assert maps.choose_shape(maps.POINT_LIMIT + 1) == "overview"  # a whole department: one image
    assert maps.choose_shape(10, "points") == "points"
    assert maps.choose_shape(10, "overview") == "overview"
    with pytest.raises(ValueError):
        maps.choose_shape(10, "hexagons")


def test_describe_says_what_is_drawn() -> None:
    assert "no tooltips" in maps.describe("overview", 49.2) and "49 m per pixel" in maps.describe("overview", 49.2)
    assert maps.describe("points") == "points (centroids)"
    assert maps.describe("polygons") == "outlines"


def test_mercator_rows() -> None:
    assert maps.mercator_y(np.array([0.0]))[0] == pytest.approx(0.0)
    # 1 degree of latitude spans more Mercator units in the north of a region than in its south
    assert np.diff(maps.mercator_y(np.array([48.0, 49.0])))[0] > np.diff(maps.mercator_y(np.array([47.0, 48.0])))[0]


def test_overview_paints_each_parcel_at_its_centroid() -> None:
    bounds = (0.0, 0.0, 60.0, 60.0)  # a large extent, where Mercator rows differ visibly from degrees
    lon, lat = np.array([0.0, 30.0, 60.0, np.nan]), np.array([60.0, 30.0, 0.0, 30.0])
    rgba = np.array([[255, 0, 0, 200], [0, 255, 0, 200], [0, 0, 255, 200], [9, 9, 9, 200]], dtype=np.uint8)
    overview = maps.overview_image(lon, lat, np.zeros(4), rgba, bounds, size=100)
    height, width, _ = overview.image.shape
    step = maps.mercator_y(np.array([60.0]))[0] / 100  # latitudes are the long side
    assert height == 100 and width == int(np.ceil(np.radians(60.0) / step)) < 100
    assert tuple(overview.image[0, 0]) == (255, 0, 0, 200)  # north-west corner
    assert tuple(overview.image[-1, -1]) == (0, 0, 255, 200)  # south-east corner
    row = int((maps.mercator_y(np.array([60.0, 30.0])) @ [1, -1]) / step)
    assert row > 55  # rows follow Mercator (30 N lies in the lower part), not degrees (row 50)
    assert tuple(overview.image[row, int(np.radians(30.0) / step)]) == (0, 255, 0, 200)
    disk = sum(np.hypot(dx, dy) <= maps.OVERVIEW_MIN_RADIUS for dx in range(-3, 4) for dy in range(-3, 4))
    counts = [(overview.image[..., :3] == colour[:3]).all(axis=2).sum() for colour in rgba]
    assert counts[1] == disk == 9 and 0 < counts[0] < disk and 0 < counts[2] < disk  # tiny: 3 x 3, clipped
    assert counts[3] == 0 and (overview.image[..., 3] > 0).sum() == sum(counts)  # NaN centroid left out
    assert overview.bounds == bounds
    assert overview.pixel_m == pytest.approx(step * maps.EARTH_RADIUS_M * np.cos(np.radians(30.0)))


def test_overview_disks_keep_small_parcels_visible() -> None:
    bounds = (0.0, 0.0, 0.01, 0.01)
    step = maps.mercator_y(np.array([0.01]))[0] / 100  # radians per pixel (latitudes: the long side)
    pixel_m = step * maps.EARTH_RADIUS_M
    rgba = np.array([[200, 0, 0, 255], [0, 0, 200, 255]], dtype=np.uint8)
    # a big parcel (4 pixels radius) and a tiny neighbour 2 pixels east, inside its disk, listed after it
    lon, lat = np.array([0.005, 0.005 + np.degrees(2 * step)]), np.array([0.005, 0.005])
    image = maps.overview_image(lon, lat, np.array([4 * pixel_m, 0.0]), rgba, bounds, size=100).image
    assert 40 < (image[..., 3] > 0).sum() < 60  # about pi * 4^2
    row, column = int((maps.mercator_y(np.array([0.01, 0.005])) @ [1, -1]) / step), int(np.radians(lon[1]) / step)
    assert tuple(image[row, column, :3]) == (0, 0, 200)  # the tiny parcel keeps its centre pixel
    big = maps.overview_image(lon[:1], lat[:1], np.array([1e6]), rgba[:1], bounds, size=100).image
    assert (big[..., 3] > 0).sum() <= np.pi * (maps.OVERVIEW_MAX_RADIUS + 1) ** 2  # radius capped


def test_overview_deck_is_one_bitmap(joined: gpd.GeoDataFrame) -> None:
    overview = maps.overview_of(joined, "correct", tuple(joined.total_bounds), size=64)
    assert max(overview.image.shape[:2]) == 64 and (overview.image[..., 3] == maps.OVERVIEW_ALPHA).any()
    deck = maps.build_overview_deck(overview, maps.view_state(tuple(joined.total_bounds)), map_style=None)
    spec = json.loads(deck.to_json())
    layer, = spec["layers"]
    assert layer["@@type"] == "BitmapLayer" and not layer.get("pickable")
    assert layer["image"].startswith("data:image/png;base64,")  # a literal, not an accessor ("@@=")
    assert layer["bounds"] == pytest.approx(list(joined.total_bounds))
    assert layer["textureParameters"] == maps.OVERVIEW_SAMPLING  # class colours are never averaged together
    assert spec["mapStyle"] == maps.NO_BASEMAP
    from PIL import Image

    png = Image.open(io.BytesIO(base64.b64decode(layer["image"].split(",", 1)[1])))
    assert png.mode == "RGBA" and np.array_equal(np.asarray(png), overview.image)


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
    assert table["r"].dtype.kind == "i"  # whole metres: shorter JSON
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
