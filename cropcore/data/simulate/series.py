"""One department's time series, simulated in chunks of parcels and streamed to the writers.

Per chunk everything is a numpy array [n, T, bands] over the department's union of acquisition
dates (two orbits, 102 days); each parcel then keeps the dates of the orbits that see it (L1C) and,
for L2A, only those whose tile was below 80 % cloud cover. Surface, sky and both levels come from
the same draw, so a parcel's L1C and L2A series agree like real products of one scene do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cropcore.constants import COLUMNS, LEVELS, REGIONS, REFLECTANCE_SCALE
from cropcore.data.simulate import clouds, spectra
from cropcore.data.simulate.calendar import doy_to_datetime, orbit_membership, region_orbits
from cropcore.data.simulate.geometry import Parcels
from cropcore.data.simulate.phenology import cover_fractions
from cropcore.data.simulate.plan import RegionPlan
from cropcore.data.simulate.writer import RegionWriter

#: Parcels simulated at once: bounds memory (~60 MB per chunk) at any scale.
CHUNK_SIZE = 2048
#: How many rows of a NaN-quirk parcel are blanked.
NAN_ROWS = (1, 3)
#: B9 of a cloudy scene: cloud tops sit above most of the water vapour.
CLOUD_B9_RATIO = 0.85
#: B10 of an opaque but low cloud.
LOW_CLOUD_B10 = 0.005


def _doa_ns(doy: np.ndarray) -> np.ndarray:
    """Date of acquisition as float nanoseconds since 1970-01-01 (the published `doa`)."""
    return doy_to_datetime(doy).astype("datetime64[ns]").astype(np.int64).astype(np.float64)


def _chunk_levels(plan: RegionPlan, parcels: Parcels, rows: slice, doy: np.ndarray,
                  weather: clouds.Weather, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Full-calendar series [n, T, C] of both levels for the parcels in `rows` (columns in file order)."""
    green, dry, yellow = cover_fractions(plan.codes[rows], doy, rng)
    surface = spectra.surface_reflectance(green, dry, yellow, doy, rng)
    sky = clouds.parcel_sky(weather, parcels.x[rows], parcels.y[rows])
    area = parcels.area_ha[rows] * 1e4
    n, n_dates = green.shape

    # L1C: top of atmosphere, 13 bands
    toa, b1 = spectra.to_toa(surface, spectra.coastal_band(surface), weather.aerosol, weather.b1_path)
    cloud_toa = clouds.cloud_spectrum(weather, len(spectra.SURFACE_BANDS))
    toa = clouds.apply_sky(toa, sky, weather, cloud_toa)
    b1 = clouds.apply_sky(b1[..., None], sky, weather, (weather.brightness + 0.06)[:, None])[..., 0]
    b9_ratio = weather.water_vapour[None] + (CLOUD_B9_RATIO - weather.water_vapour[None]) * sky.opacity
    b9 = b9_ratio * toa[..., spectra.SURFACE_BANDS.index("B8A")]
    high_b10 = np.where(weather.high, weather.high_b10, LOW_CLOUD_B10)
    b10 = weather.b10_clear[None] + sky.opacity * high_b10[None] + sky.cirrus * weather.high_b10[None]
    l1c_bands = {band: toa[..., i] for i, band in enumerate(spectra.SURFACE_BANDS)}
    l1c_bands.update(B1=b1, B9=b9, B10=b10)

    # L2A: bottom of atmosphere, 10 bands (a small residual of the atmospheric correction per date)
    residual = rng.normal(0, 0.003, (1, n_dates, 1)) * spectra.PATH_RADIANCE / spectra.PATH_RADIANCE[0]
    cloud_boa = (cloud_toa - spectra.PATH_RADIANCE * weather.aerosol[:, None]) / spectra.TRANSMITTANCE
    boa = clouds.apply_sky(surface + residual, sky, weather, cloud_boa)
    l2a_bands = {band: boa[..., i] for i, band in enumerate(spectra.SURFACE_BANDS)}

    doa = np.broadcast_to(_doa_ns(doy)[None], (n, n_dates))
    zeros = np.zeros((n, n_dates))
    masks = {"QA10": zeros, "QA20": zeros, "QA60": clouds.qa60(sky, area),
             "CLD": clouds.maja_cld(sky, area), "EDG": zeros, "SAT": zeros, "doa": doa}
    out = {}
    for level, bands in (("L1C", l1c_bands), ("L2A", l2a_bands)):
        columns = []
        for name in COLUMNS[level]:
            if name in bands:
                columns.append(np.round(np.clip(bands[name], 0, None) / REFLECTANCE_SCALE))
            else:
                columns.append(masks[name])
        out[level] = np.stack(columns, axis=-1)
    return out


def simulate_region(plan: RegionPlan, parcels: Parcels, writers: dict[str, RegionWriter], seed: int,
                    on_chunk: Callable[[int], None] | None = None) -> dict[str, dict[str, float]]:
    """Simulate and write every parcel of a department; returns per-level cloudiness statistics."""
    region_index = REGIONS.index(plan.region)
    west, east = region_orbits(plan.region)
    doy = np.concatenate([west.doy, east.doy])
    orbit_of_date = np.concatenate([np.zeros(len(west.doy), int), np.ones(len(east.doy), int)])
    order = np.argsort(doy, kind="stable")
    doy, orbit_of_date = doy[order], orbit_of_date[order]
    weather = clouds.draw_weather(plan.region, doy, np.random.default_rng([seed, region_index, 0]))
    l2a_date = weather.cover < clouds.L2A_MAX_COVER
    shape_x = parcels.x
    seen_by = orbit_membership(shape_x, shape_x.min(), shape_x.max())       # [M, 2]
    cloud_column = {level: COLUMNS[level].index("QA60" if level == "L1C" else "CLD") for level in LEVELS}
    band_columns = {level: [i for i, name in enumerate(COLUMNS[level]) if name.startswith("B")] for level in LEVELS}
    stats = {level: {"observations": 0, "cloudy": 0} for level in writers}

    for chunk, start in enumerate(range(0, len(plan.ids), CHUNK_SIZE)):
        rows = slice(start, min(start + CHUNK_SIZE, len(plan.ids)))
        rng = np.random.default_rng([seed, region_index, 1, chunk])
        series = _chunk_levels(plan, parcels, rows, doy, weather, rng)
        visible = seen_by[rows][:, orbit_of_date]                                  # [n, T]
        nan_pick = rng.random((rows.stop - rows.start, len(doy)))
        for level, writer in writers.items():
            keep = visible & l2a_date[None] if level == "L2A" else visible
            cloud = series[level][..., cloud_column[level]]
            flagged = (cloud > 0) & keep
            seen = keep.sum(1)
            mean_cloud = np.where(seen > 0, (cloud * keep).sum(1) / np.maximum(seen, 1), np.nan)
            members = plan.in_level[level][rows]
            for offset in np.flatnonzero(members):
                parcel = rows.start + offset
                if plan.empty[parcel]:
                    writer.add(int(plan.ids[parcel]), str(plan.codes[parcel]),
                               np.empty((0, len(COLUMNS[level]))), float("nan"))
                    continue
                values = series[level][offset, keep[offset]]
                if plan.nan_rows[parcel]:
                    count = 1 + int(nan_pick[offset, 0] * NAN_ROWS[1]) % NAN_ROWS[1]
                    blank = np.argsort(nan_pick[offset, : len(values)])[:count]
                    values[np.ix_(blank, band_columns[level])] = np.nan
                writer.add(int(plan.ids[parcel]), str(plan.codes[parcel]), values, float(mean_cloud[offset]))
            kept = members & ~plan.empty[rows]
            stats[level]["observations"] += int(seen[kept].sum())
            stats[level]["cloudy"] += int(flagged[kept].sum())
        if on_chunk is not None:
            on_chunk(rows.stop - rows.start)
    return stats
