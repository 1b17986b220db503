"""Pure builders for the Map page: parcels + predictions in, compact layer tables and pydeck.Deck out.

Nothing here touches Streamlit or the file system. Geometry is EPSG:4326 (lon, lat). To keep the
full-size department (about 122 000 parcels) fast in the browser, the page sends only what the view
needs: parcel outlines simplified and rounded when few parcels are shown, one point per parcel (its
centroid, with short attribute values) for a medium selection, and above that an overview image painted
here (one disk of the parcel's own area per parcel), which the browser draws as a single bitmap instead
of 122 000 instances (seconds in a software WebGL, see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import base64
import io
import json
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import pydeck as pdk
from pydeck.bindings.json_tools import default_serialize

from cropcore.constants import CLASS_COLORS, CLASSES, hex_to_rgb

if TYPE_CHECKING:  # geopandas and shapely are imported where used: a page drawing a cached map needs neither
    import geopandas as gpd

#: View name -> label shown on the page.
VIEWS: dict[str, str] = {
    "predicted": "Predicted class",
    "true": "True class",
    "correct": "Correct vs wrong",
    "confidence": "Confidence",
}
SHAPES: tuple[str, ...] = ("auto", "polygons", "points", "overview")
#: Above this many shown parcels, "auto" draws points instead of outlines.
POLYGON_LIMIT = 20_000
#: Above this many, "auto" draws the overview image: every instance costs the browser's draw time, and
#: a software WebGL needs about 3 s for 30 000 points but 7-12 s for a whole department.
POINT_LIMIT = 30_000
#: Long side of the overview image in pixels: about 1.5 times the department's width at the opening zoom,
#: so the first zoom step stays sharp.
OVERVIEW_SIZE = 1536
#: Nearest-pixel sampling, no mipmaps: deck.gl's default (linear, mipmapped) averages neighbouring parcels
#: of different classes into one muddy colour when the image is drawn smaller than its size.
OVERVIEW_SAMPLING = {"minFilter": "nearest", "magFilter": "nearest", "mipmapFilter": "none"}
#: Disk radius bounds in image pixels: every parcel is at least 3 x 3 pixels (about one screen pixel of
#: radius at the opening zoom, like the points' minimum), and a huge one does not hide its neighbours.
OVERVIEW_MIN_RADIUS, OVERVIEW_MAX_RADIUS = 1.5, 6.0
#: Opacity of the overview's parcels (the image's alpha), so a basemap shows through.
OVERVIEW_ALPHA = 220
EARTH_RADIUS_M = 6_378_137.0
CORRECT_COLOR = "#2e7d32"
WRONG_COLOR = "#d32f2f"
#: Confidence ramp: (probability, colour) stops, low = pale yellow, high = dark blue.
CONFIDENCE_STOPS: tuple[tuple[float, str], ...] = (
    (0.0, "#fff7bc"), (0.4, "#fdae61"), (0.6, "#abd9e9"), (0.8, "#4575b4"), (1.0, "#08306b"),
)
#: Free basemap style that needs no token (used when online).
CARTO_POSITRON = "https://basemaps.cartocdn.com/gl/positron-gl-style/style.json"
BASEMAPS: dict[str, str | None] = {"CARTO light (online)": CARTO_POSITRON, "None (offline)": None}
#: Streamlit's deck.gl chart replaces a missing or empty ``mapStyle`` with CARTO's style (fetched from the
#: internet; offline the page then waits for that request to fail before it draws). This marker value is
#: the one Streamlit's frontend reads as "no basemap at all" (checked on streamlit 1.67).
NO_BASEMAP = "__MAP_STYLE__"
#: Pixel clamps of points and outlines. Besides keeping dots readable, they bound what a software WebGL
#: (headless Chromium's SwiftShader) draws: there deck.gl's point radius and line width come out at their
#: maximum pixel size whatever the data says (measured, see benchmarks/RESULTS.md), so an unbounded
#: maximum covers the whole canvas and costs seconds per frame.
POINT_MIN_PIXELS, POINT_MAX_PIXELS = 1.5, 3
LINE_MIN_PIXELS, LINE_MAX_PIXELS = 0.5, 1
#: Coordinates sent to the browser: 5 decimals = about 1 m.
DECIMALS = 5
METRES_PER_DEGREE = 111_320.0
TOOLTIP = {
    "html": "<b>parcel {id}</b><br/>true: {true}<br/>predicted: {pred}<br/>confidence: {conf}",
    "style": {"fontSize": "12px"},
}
EXPORT_COLUMNS: tuple[str, ...] = ("id", "region", "true", "true_class", "predicted", "predicted_class",
                                   "confidence", "correct")


def join_predictions(parcels: gpd.GeoDataFrame, predictions: pd.DataFrame) -> gpd.GeoDataFrame:
    """Parcels that have a prediction, with true/predicted class ids and names, confidence and correctness.

    Args:
        parcels: GeoDataFrame with ``id`` and ``geometry`` (EPSG:4326), optionally the point columns
            added by ``add_points``.
        predictions: ``id, true, predicted, confidence`` (one region).
    """
    import geopandas as gpd

    columns = ["id", "true", "predicted", "confidence"] + (["region"] if "region" in predictions else [])
    kept = ["id", "geometry", *(column for column in ("lon", "lat", "radius") if column in parcels)]
    joined = parcels[kept].merge(predictions[columns], on="id", how="inner")
    joined = gpd.GeoDataFrame(joined, geometry="geometry", crs=parcels.crs)
    names = np.asarray(CLASSES, dtype=object)
    joined["true_class"] = names[joined["true"].to_numpy()]
    joined["predicted_class"] = names[joined["predicted"].to_numpy()]
    joined["correct"] = joined["true"].to_numpy() == joined["predicted"].to_numpy()
    return joined


def add_points(parcels: gpd.GeoDataFrame, decimals: int = DECIMALS) -> gpd.GeoDataFrame:
    """Same parcels plus ``lon``/``lat`` of each centroid and ``radius`` (metres, same area as the parcel).

    Cheap and vectorised: the point view of a whole department needs nothing else.
    """
    import shapely

    geometry = np.asarray(parcels.geometry.values, dtype=object)
    centroids = shapely.centroid(geometry)
    result = parcels.copy()
    result["lon"] = np.round(shapely.get_x(centroids), decimals)
    result["lat"] = np.round(shapely.get_y(centroids), decimals)
    scale = METRES_PER_DEGREE**2 * np.cos(np.radians(np.nan_to_num(result["lat"].to_numpy(), nan=48.0)))
    result["radius"] = np.round(np.sqrt(shapely.area(geometry) * scale / np.pi))
    return result


def simplify(parcels: gpd.GeoDataFrame, tolerance_m: float = 5.0, decimals: int = DECIMALS) -> gpd.GeoDataFrame:
    """Same parcels with outlines simplified (Douglas-Peucker, topology kept) and rounded coordinates.

    A parcel whose outline would vanish keeps its original outline, so the count never changes.
    """
    import shapely

    geometry = np.asarray(parcels.geometry.values, dtype=object)
    simplified = shapely.simplify(geometry, tolerance_m / METRES_PER_DEGREE, preserve_topology=True)
    rounded = shapely.set_precision(simplified, 10.0 ** -decimals)
    lost = shapely.is_empty(rounded) | shapely.is_missing(rounded)
    rounded[lost] = geometry[lost]
    result = parcels.copy()
    result["geometry"] = rounded
    return result


def filter_classes(parcels: pd.DataFrame, classes: list[str] | None, by: str = "predicted") -> pd.DataFrame:
    """Keep parcels whose predicted (or true) class is one of ``classes``; all when None or empty."""
    if by not in ("predicted", "true"):
        raise ValueError(f"filter by 'predicted' or 'true', not {by!r}")
    if not classes:
        return parcels
    return parcels[parcels[f"{by}_class"].isin(classes)]


def _ramp(values: np.ndarray, stops: tuple[tuple[float, str], ...]) -> np.ndarray:
    positions = np.array([position for position, _ in stops])
    colors = np.array([hex_to_rgb(color) for _, color in stops], dtype=float)
    values = np.nan_to_num(np.clip(values, 0.0, 1.0), nan=0.0)
    return np.stack([np.interp(values, positions, colors[:, k]) for k in range(3)], axis=1)


def colors(parcels: pd.DataFrame, view: str, alpha: int = 200) -> np.ndarray:
    """RGBA colours (uint8 [N, 4]) of the parcels for a view (see VIEWS)."""
    if view in ("predicted", "true"):
        palette = np.array([hex_to_rgb(CLASS_COLORS[name]) for name in CLASSES], dtype=float)
        rgb = palette[parcels[view].to_numpy(dtype=np.int64)]
    elif view == "correct":
        rgb = np.where(parcels["correct"].to_numpy()[:, None], hex_to_rgb(CORRECT_COLOR), hex_to_rgb(WRONG_COLOR))
    elif view == "confidence":
        rgb = _ramp(parcels["confidence"].to_numpy(dtype=float), CONFIDENCE_STOPS)
    else:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    rgba = np.empty((len(parcels), 4), dtype=np.uint8)
    rgba[:, :3] = np.round(rgb).astype(np.uint8)
    rgba[:, 3] = alpha
    return rgba


def darker(rgb: np.ndarray, factor: float = 0.6) -> np.ndarray:
    """The same colours darkened, for outlines: a parcel smaller than a pixel at low zoom still shows
    as its outline's minimum width, in its own hue."""
    return np.round(np.asarray(rgb, dtype=float) * factor).astype(np.uint8)


def legend(view: str) -> list[tuple[str, str]]:
    """(label, hex colour) entries explaining a view's colours."""
    if view in ("predicted", "true"):
        return [(name, CLASS_COLORS[name]) for name in CLASSES]
    if view == "correct":
        return [("correct", CORRECT_COLOR), ("wrong", WRONG_COLOR)]
    if view == "confidence":
        return [(f"{position:.0%}", color) for position, color in CONFIDENCE_STOPS]
    raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")


def legend_html(items: list[tuple[str, str]]) -> str:
    """A one-line HTML legend of colour chips (for st.markdown with unsafe_allow_html)."""
    chips = "".join(
        f'<span style="display:inline-block;margin-right:14px;white-space:nowrap">'
        f'<span style="display:inline-block;width:12px;height:12px;background:{color};'
        f'border:1px solid #555;margin-right:4px;vertical-align:middle"></span>{label}</span>'
        for label, color in items
    )
    return f'<div style="font-size:0.85rem;line-height:1.8">{chips}</div>'


def choose_shape(count: int, shape: str = "auto") -> str:
    """'polygons', 'points' or 'overview' for ``count`` shown parcels."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    if shape != "auto":
        return shape
    if count <= POLYGON_LIMIT:
        return "polygons"
    return "points" if count <= POINT_LIMIT else "overview"


def describe(shape: str, pixel_m: float = 0.0) -> str:
    """What the page says is drawn, after "N parcels drawn as"."""
    if shape == "overview":
        return (f"an overview image (about {pixel_m:.0f} m per pixel; each parcel a dot of its own area, at "
                "least 3 pixels across, at its centroid; no tooltips)")
    return {"polygons": "outlines", "points": "points (centroids)"}.get(shape, shape)


def _outer_rings(geometry: np.ndarray, decimals: int) -> list[list[list[float]]]:
    """Exterior ring of each (multi)polygon as [[lon, lat], ...]; the largest part of a multipolygon."""
    import shapely

    parts, owner = shapely.get_parts(geometry, return_index=True)
    areas = shapely.area(parts)
    order = np.lexsort((-areas, owner))
    first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
    largest = np.empty(len(geometry), dtype=object)
    largest[owner[first]] = parts[first]
    coords, ring_owner = shapely.get_coordinates(shapely.get_exterior_ring(largest), return_index=True)
    coords = np.round(coords, decimals)
    splits = np.cumsum(np.bincount(ring_owner, minlength=len(geometry)))[:-1]
    return [ring.tolist() for ring in np.split(coords, splits)]


def layer_table(parcels: gpd.GeoDataFrame, view: str, shape: str, decimals: int = DECIMALS) -> pd.DataFrame:
    """The compact table the browser receives: tooltip fields, colour, and outline or point.

    Columns: ``id``, ``true``, ``pred`` (class names), ``conf`` (2 decimals), ``rgb``, then ``ring`` and
    ``line`` (outline and its colour) for polygons or ``xy`` and ``r`` (whole metres) for points.

    Args:
        parcels: output of ``join_predictions(add_points(...))`` (optionally filtered; simplified for
            polygons).
        view: key of VIEWS; shape: "polygons" or "points".
    """
    rgb = colors(parcels, view)[:, :3]
    table = pd.DataFrame({
        "id": parcels["id"].to_numpy(dtype=np.int64),
        "true": parcels["true_class"].to_numpy(),
        "pred": parcels["predicted_class"].to_numpy(),
        "conf": np.round(parcels["confidence"].to_numpy(dtype=float), 2),
        "rgb": rgb.tolist(),
    })
    if shape == "polygons":
        table["ring"] = _outer_rings(np.asarray(parcels.geometry.values, dtype=object), decimals)
        table["line"] = darker(rgb).tolist()
    elif shape == "points":
        table["xy"] = np.round(parcels[["lon", "lat"]].to_numpy(dtype=float), decimals).tolist()
        table["r"] = np.nan_to_num(parcels["radius"].to_numpy(dtype=float)).round().astype(np.int32)  # whole metres
    else:
        raise ValueError(f"shape must be 'polygons' or 'points', not {shape!r}")
    return table


def mercator_y(lat: np.ndarray) -> np.ndarray:
    """Web Mercator northing of latitudes (radians of the sphere), the axis the map draws linearly."""
    return np.log(np.tan(np.pi / 4 + np.radians(np.asarray(lat, dtype=float)) / 2))


class Overview(NamedTuple):
    """An RGBA image of the parcels and where it lies: (west, south, east, north) in degrees."""

    image: np.ndarray  # (height, width, 4) uint8, row 0 = north
    bounds: tuple[float, float, float, float]
    pixel_m: float  # ground size of one pixel at the centre


def overview_image(lon: np.ndarray, lat: np.ndarray, radius_m: np.ndarray, rgba: np.ndarray,
                   bounds: tuple[float, float, float, float], size: int = OVERVIEW_SIZE) -> Overview:
    """Paint each parcel as a disk of its equal-area radius at its centroid, on a transparent image.

    Rows are spaced in Web Mercator (as the map stretches a bitmap between its corners), so dots sit
    where the points would. Rings are painted from the outside in, so every parcel keeps at least its
    centre pixel (unless two centroids share a pixel); on a ring, smaller parcels are painted last.

    Args:
        lon, lat: centroids (degrees); NaN ones are left out. radius_m: equal-area radius (metres).
        rgba: (N, 4) uint8 colours. bounds: (minx, miny, maxx, maxy) of the region, degrees.
        size: pixels of the image's long side.
    """
    west, south, east, north = (float(value) for value in bounds)
    x0, x1 = math.radians(west), math.radians(east)
    y0, y1 = (float(value) for value in mercator_y(np.array([south, north])))
    step = max(x1 - x0, y1 - y0, 1e-9) / size
    width, height = max(int(math.ceil((x1 - x0) / step)), 1), max(int(math.ceil((y1 - y0) / step)), 1)
    pixel_m = step * EARTH_RADIUS_M * math.cos(math.radians((south + north) / 2))
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    keep = np.isfinite(lon) & np.isfinite(lat)
    radius = np.clip(np.nan_to_num(np.asarray(radius_m, dtype=float)[keep]) / pixel_m,
                     OVERVIEW_MIN_RADIUS, OVERVIEW_MAX_RADIUS)
    column = np.clip(((np.radians(lon[keep]) - x0) / step).astype(np.int64), 0, width - 1)
    row = np.clip(((y1 - mercator_y(lat[keep])) / step).astype(np.int64), 0, height - 1)
    colours = np.asarray(rgba, dtype=np.uint8)[keep]
    order = np.argsort(-radius, kind="stable")
    column, row, radius, colours = column[order], row[order], radius[order], colours[order]
    image = np.zeros((height, width, 4), dtype=np.uint8)
    reach = int(math.ceil(OVERVIEW_MAX_RADIUS))
    offsets = [(dx, dy) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
    distance = np.hypot(*np.array(offsets, dtype=float).T)
    for (dx, dy), away in sorted(zip(offsets, distance), key=lambda item: -item[1]):
        inside = np.flatnonzero(radius >= away) if away > 0 else np.arange(len(radius))
        x, y = column[inside] + dx, row[inside] + dy
        fits = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        image[y[fits], x[fits]] = colours[inside[fits]]
    return Overview(image, (west, south, east, north), pixel_m)


def overview_of(parcels: pd.DataFrame, view: str, bounds: tuple[float, float, float, float],
                size: int = OVERVIEW_SIZE) -> Overview:
    """The overview image of joined parcels (with ``lon``, ``lat``, ``radius``) coloured for a view."""
    return overview_image(parcels["lon"].to_numpy(dtype=float), parcels["lat"].to_numpy(dtype=float),
                          parcels["radius"].to_numpy(dtype=float), colors(parcels, view, alpha=OVERVIEW_ALPHA),
                          bounds, size)


def png_data_url(image: np.ndarray) -> str:
    """An RGBA image as a PNG data URL: deck.gl loads it without any request to the server."""
    from PIL import Image  # Pillow comes with Streamlit

    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGBA").save(buffer, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def view_state(bounds: tuple[float, float, float, float], width_px: int = 900) -> pdk.ViewState:
    """A view centred on (minx, miny, maxx, maxy) with a zoom that fits the extent."""
    minx, miny, maxx, maxy = (float(value) for value in bounds)
    if not all(math.isfinite(value) for value in (minx, miny, maxx, maxy)):
        return pdk.ViewState(longitude=-2.9, latitude=48.1, zoom=7)
    span = max(maxx - minx, (maxy - miny) * 1.5, 1e-4)
    zoom = math.log2(360.0 * width_px / (512.0 * span))
    return pdk.ViewState(longitude=(minx + maxx) / 2, latitude=(miny + maxy) / 2,
                         zoom=round(min(max(zoom, 3.0), 16.0), 2))


class CompactDeck(pdk.Deck):
    """A Deck serialised without indentation: pydeck indents its JSON, which triples big payloads."""

    def to_json(self) -> str:
        return json.dumps(self, default=default_serialize, separators=(",", ":"))


class PrebuiltDeck(pdk.Deck):
    """A Deck whose JSON was computed (and cached) earlier: st.pydeck_chart only calls to_json()."""

    def __init__(self, spec: str, tooltip: dict | None = TOOLTIP) -> None:
        super().__init__(layers=[], tooltip=tooltip)
        self.spec = spec

    def to_json(self) -> str:
        return self.spec


def build_deck(table: pd.DataFrame, view: pdk.ViewState, map_style: str | None = CARTO_POSITRON) -> pdk.Deck:
    """A pydeck map of a layer table: filled outlines (``ring``) or points sized like parcels (``xy``).

    ``map_style=None`` draws no basemap (plain background, ``mapStyle`` = NO_BASEMAP so that Streamlit
    does not fetch its default style): parcels show even offline, without waiting for the network.
    """
    if "ring" in table:
        layer = pdk.Layer(
            "PolygonLayer", data=table.to_dict(orient="records"), id="parcels", get_polygon="ring", get_fill_color="rgb",
            get_line_color="line", get_line_width=1, line_width_units="pixels", stroked=True, filled=True,
            line_width_min_pixels=LINE_MIN_PIXELS, line_width_max_pixels=LINE_MAX_PIXELS, opacity=0.85,
            pickable=True, auto_highlight=True,
        )
    elif "xy" in table:
        layer = pdk.Layer(
            "ScatterplotLayer", data=table.to_dict(orient="records"), id="parcels", get_position="xy",
            get_fill_color="rgb", get_radius="r", radius_units="meters", radius_min_pixels=POINT_MIN_PIXELS,
            radius_max_pixels=POINT_MAX_PIXELS, stroked=False, opacity=0.85, pickable=True, auto_highlight=True,
        )
    else:
        raise ValueError("layer table needs a 'ring' or an 'xy' column")
    return _deck([layer], view, map_style, TOOLTIP)


def build_overview_deck(overview: Overview, view: pdk.ViewState, map_style: str | None = CARTO_POSITRON) -> pdk.Deck:
    """A pydeck map of an overview image: one BitmapLayer, nothing to pick (the page says so)."""
    west, south, east, north = overview.bounds
    # Quoted: pydeck would otherwise send a plain string as an accessor expression ("@@=...").
    layer = pdk.Layer("BitmapLayer", id="overview", image=f'"{png_data_url(overview.image)}"',
                      bounds=[west, south, east, north], texture_parameters=OVERVIEW_SAMPLING, opacity=1.0,
                      pickable=False)
    return _deck([layer], view, map_style, None)


def _deck(layers: list[pdk.Layer], view: pdk.ViewState, map_style: str | None, tooltip: dict | None) -> pdk.Deck:
    """The deck around ``layers``; no basemap at all when ``map_style`` is None (see build_deck)."""
    if map_style:
        return CompactDeck(layers=layers, initial_view_state=view, map_provider="carto", map_style=map_style,
                           tooltip=tooltip)
    return CompactDeck(layers=layers, initial_view_state=view, map_provider=None, map_style=NO_BASEMAP,
                       tooltip=tooltip)


def export_frame(parcels: pd.DataFrame) -> pd.DataFrame:
    """The shown predictions as a flat table (no geometry)."""
    columns = [column for column in EXPORT_COLUMNS if column in parcels.columns]
    return pd.DataFrame(parcels[columns]).reset_index(drop=True)


def to_csv_bytes(parcels: pd.DataFrame) -> bytes:
    """CSV of the shown predictions."""
    return export_frame(parcels).to_csv(index=False).encode("utf-8")


def to_geopackage_bytes(parcels: gpd.GeoDataFrame, layer: str = "predictions") -> bytes:
    """GeoPackage (EPSG:4326) of the shown predictions with their outlines, as bytes."""
    import geopandas as gpd

    frame = gpd.GeoDataFrame(export_frame(parcels), geometry=np.asarray(parcels.geometry.values),
                             crs=parcels.crs or "EPSG:4326")
    if "correct" in frame:
        frame["correct"] = frame["correct"].astype("int8")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "predictions.gpkg"
        frame.to_file(path, layer=layer, driver="GPKG")
        return path.read_bytes()


def read_geopackage(data: bytes) -> gpd.GeoDataFrame:
    """Parse GeoPackage bytes (used by tests to check exports)."""
    import geopandas as gpd

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.gpkg"
        path.write_bytes(data)
        return gpd.read_file(path)

