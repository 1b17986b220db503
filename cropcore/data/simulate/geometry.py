"""Parcel polygons in Lambert-93, packed in farmland patches inside hand-made department outlines.

The outlines are coarse (about 20 vertices per department, lon/lat read off a road map) but adjacent
departments share their border vertices, so parcels of one region never fall in another. A patch is
a rotated block of field rows (hedgerow country: rows of 120-320 m, fields side by side along a row);
patch centres sit on a shuffled grid inside the outline shrunk by the patch radius, so every parcel
lies strictly inside its department.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon

#: Coordinate reference system of the published shapefiles (Lambert-93).
CRS_LAMBERT93 = "EPSG:2154"
CRS_WGS84 = "EPSG:4326"

# Shared border points (lon, lat) so that neighbouring outlines never overlap.
_FIN_CDA = [(-3.62, 48.69), (-3.60, 48.50), (-3.55, 48.35), (-3.45, 48.17)]   # north -> south
_FIN_MOR = [(-3.45, 48.17), (-3.50, 47.90), (-3.53, 47.77)]                   # north -> south
_CDA_MOR = [(-3.45, 48.17), (-3.20, 48.10), (-2.90, 48.15), (-2.65, 48.12), (-2.30, 48.15)]  # west -> east
_CDA_IEV = [(-2.30, 48.15), (-2.12, 48.30), (-1.97, 48.45), (-2.15, 48.60)]   # south -> north
_MOR_IEV = [(-2.30, 48.15), (-2.20, 47.95), (-2.12, 47.70), (-2.20, 47.58), (-2.45, 47.48)]  # north -> south

#: Coarse department outlines (lon, lat), counter-clockwise or clockwise, closed implicitly.
OUTLINES_LONLAT: dict[str, list[tuple[float, float]]] = {
    # Côtes-d'Armor: north coast from the Rance to Locquirec, then the inland borders.
    "frh01": [(-2.15, 48.60), (-2.25, 48.64), (-2.32, 48.68), (-2.55, 48.60), (-2.70, 48.53),
              (-2.85, 48.62), (-3.05, 48.78), (-3.25, 48.83), (-3.45, 48.82), (-3.53, 48.73)]
             + _FIN_CDA + _CDA_MOR[1:] + _CDA_IEV[1:-1],
    # Finistère: south coast from the Laïta, Pointe du Raz, Crozon, Brest, the Abers, Roscoff.
    "frh02": [(-3.53, 47.77), (-3.92, 47.87), (-4.10, 47.87), (-4.37, 47.80), (-4.55, 48.00),
              (-4.73, 48.04), (-4.33, 48.10), (-4.58, 48.23), (-4.35, 48.32), (-4.77, 48.34),
              (-4.77, 48.52), (-4.55, 48.62), (-4.32, 48.67), (-3.98, 48.72), (-3.85, 48.66)]
             + _FIN_CDA + _FIN_MOR[1:-1],
    # Ille-et-Vilaine: Saint-Malo, the Mont-Saint-Michel bay, the eastern and southern borders.
    "frh03": [(-2.15, 48.60), (-2.00, 48.65), (-1.85, 48.68), (-1.51, 48.62), (-1.07, 48.52),
              (-1.05, 48.30), (-0.98, 48.15), (-1.10, 47.90), (-1.40, 47.80), (-1.70, 47.70),
              (-2.00, 47.65)] + _MOR_IEV[2::-1] + _CDA_IEV[1:-1],
    # Morbihan: south coast from the Laïta to the Vilaine estuary, then the inland borders.
    "frh04": [(-3.53, 47.77), (-3.37, 47.73), (-3.15, 47.60), (-2.95, 47.55), (-2.75, 47.52),
              (-2.60, 47.50)] + _MOR_IEV[::-1] + _CDA_MOR[-2::-1][:-1] + _FIN_MOR[:-1],
}

#: Field area distribution (ha): lognormal, median ~2 ha, clipped to the 0.5-10 ha of the release.
AREA_MEDIAN_HA = 2.0
AREA_LOG_SIGMA = 0.65
AREA_MIN_HA, AREA_MAX_HA = 0.5, 10.0
#: Row depth of a field block (m) and hedge/track gap between fields (m).
ROW_DEPTH_M = (120.0, 320.0)
HEDGE_GAP_M = 10.0
#: Fields per farmland patch and the row length of a patch (m).
PARCELS_PER_PATCH = 40
PATCH_ROW_LENGTH_M = (700.0, 1400.0)
#: Spacing of candidate patch centres (m); patches may touch this grid's neighbours at full scale.
PATCH_GRID_M = 2_500.0
PATCH_MARGIN_M = 2_000.0


@dataclass(frozen=True)
class Parcels:
    """Polygons and centroids of one region's parcels (Lambert-93 metres)."""

    polygons: np.ndarray      # shapely Polygons [N]
    x: np.ndarray             # centroid easting [N]
    y: np.ndarray             # centroid northing [N]
    area_ha: np.ndarray       # [N]


def outline(region: str, crs: str = CRS_LAMBERT93) -> Polygon:
    """The coarse department outline of a region, in `crs`."""
    lon, lat = np.array(OUTLINES_LONLAT[region]).T
    if crs == CRS_WGS84:
        return Polygon(zip(lon, lat))
    x, y = Transformer.from_crs(CRS_WGS84, crs, always_xy=True).transform(lon, lat)
    return Polygon(zip(x, y))


def _patch_centres(shape: Polygon, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` patch centres on a shuffled grid inside the shrunk outline (cycled if too few)."""
    inner = shape.buffer(-PATCH_MARGIN_M)
    minx, miny, maxx, maxy = inner.bounds
    gx, gy = np.meshgrid(np.arange(minx, maxx, PATCH_GRID_M), np.arange(miny, maxy, PATCH_GRID_M))
    gx, gy = gx.ravel(), gy.ravel()
    inside = shapely.contains_xy(inner, gx, gy)
    cells = np.column_stack([gx[inside], gy[inside]])
    cells = cells[rng.permutation(len(cells))]
    picks = cells[np.arange(count) % len(cells)]
    jitter = rng.uniform(-0.1, 0.1, picks.shape) * PATCH_GRID_M
    return picks + jitter


def _layout_patch(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fields of one patch in patch coordinates: centre (u, v), length along row, depth across."""
    area_m2 = np.clip(AREA_MEDIAN_HA * np.exp(rng.normal(0, AREA_LOG_SIGMA, n)), AREA_MIN_HA, AREA_MAX_HA) * 1e4
    row_length = rng.uniform(*PATCH_ROW_LENGTH_M)
    depth_choice = rng.uniform(*ROW_DEPTH_M, size=n)           # one depth per potential row
    # Fields run along the row; a field's width along the row follows from its area and the row depth.
    widths = np.empty(n)
    rows = np.empty(n, dtype=np.int64)
    starts = np.empty(n)
    row, position = 0, 0.0
    for i in range(n):                                        # n <= PARCELS_PER_PATCH: cheap
        widths[i] = area_m2[i] / depth_choice[row]
        if position > 0 and position + widths[i] > row_length:
            row, position = row + 1, 0.0
            widths[i] = area_m2[i] / depth_choice[row]
        rows[i], starts[i] = row, position
        position += widths[i] + HEDGE_GAP_M
    depths = depth_choice[rows]
    row_offsets = np.concatenate([[0.0], np.cumsum(depth_choice[: rows.max() + 1] + HEDGE_GAP_M)])
    u = starts + widths / 2
    v = row_offsets[rows] + depths / 2
    return u - u.mean(), v - v.mean(), widths, depths


def _rectangles(cx: np.ndarray, cy: np.ndarray, length: np.ndarray, depth: np.ndarray,
                angle: np.ndarray) -> np.ndarray:
    """Rotated rectangles as a [N, 5, 2] ring array."""
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])
    du = corners[None, :, 0] * length[:, None]
    dv = corners[None, :, 1] * depth[:, None]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.stack([cx[:, None] + cos * du - sin * dv, cy[:, None] + sin * du + cos * dv], axis=-1)


def make_parcels(region: str, count: int, rng: np.random.Generator) -> Parcels:
    """`count` non-overlapping field polygons (within a patch) strictly inside the region's outline."""
    shape = outline(region)
    n_patches = max(1, -(-count // PARCELS_PER_PATCH))
    centres = _patch_centres(shape, n_patches, rng)
    sizes = np.full(n_patches, PARCELS_PER_PATCH)
    sizes[-1] = count - PARCELS_PER_PATCH * (n_patches - 1)
    cx, cy, length, depth, angle = [], [], [], [], []
    for (px, py), n in zip(centres, sizes):
        u, v, w, d = _layout_patch(int(n), rng)
        theta = rng.uniform(0, np.pi)
        field_angle = theta + rng.normal(0, 0.01, n)           # fields follow the patch, not exactly
        cx.append(px + np.cos(theta) * u - np.sin(theta) * v)
        cy.append(py + np.sin(theta) * u + np.cos(theta) * v)
        length.append(w), depth.append(d), angle.append(field_angle)
    cx, cy, length, depth, angle = map(np.concatenate, (cx, cy, length, depth, angle))
    rings = _rectangles(cx, cy, length, depth, angle)
    polygons = shapely.polygons(rings)
    inside = shapely.contains(shape, polygons)
    if not inside.all():  # cannot happen with the margin above; never write a parcel outside
        raise RuntimeError(f"{region}: {int((~inside).sum())} simulated parcels outside the outline")
    return Parcels(polygons=polygons, x=cx, y=cy, area_ha=length * depth / 1e4)
