"""5-day grid features: the Random Forest input of the BreizhCrops paper (section 4).

Cloudy observations are dropped, then every band is linearly interpolated on a regular grid of
71 dates (2017-01-01 + 5 k days) so that every parcel gets the same fixed-length feature vector
whatever its acquisition calendar. The whole region is processed at once: observations of all
parcels are sorted by one global key (parcel, time) and each grid date of each parcel finds its
two neighbours with a single `np.searchsorted`, so there is no Python loop per parcel.
"""

from __future__ import annotations

import numpy as np

from cropcore.constants import YEAR

#: Spacing of the regular grid, in days (paper: 5-day interpolation).
GRID_STEP_DAYS = 5
#: Number of grid dates covering the year (2017-01-01 .. 2017-12-17).
GRID_SIZE = 71
#: The 71 grid dates, datetime64[D].
GRID_DATES: np.ndarray = np.datetime64(f"{YEAR}-01-01", "D") + GRID_STEP_DAYS * np.arange(GRID_SIZE)

_SECONDS_PER_DAY = 86_400.0


def _days(dates: np.ndarray) -> np.ndarray:
    """Float days since the first grid date (any datetime64 unit)."""
    seconds = (np.asarray(dates).astype("datetime64[s]") - GRID_DATES[0].astype("datetime64[s]"))
    return seconds.astype(np.int64).astype(np.float64) / _SECONDS_PER_DAY


def grid_features(dates: np.ndarray, values: np.ndarray, offsets: np.ndarray,
                  cloudy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate every parcel's clear observations on the 71-date 5-day grid of 2017.

    Args:
        dates: acquisition dates, datetime64 `[N_obs]`, parcels stored one after the other.
        values: reflectance `[N_obs, D]` (0-1), same order as `dates`.
        offsets: `[N + 1]` int, parcel `i` owns observations `offsets[i]:offsets[i + 1]`.
        cloudy: bool `[N_obs]`, True where the cloud mask flags the observation.

    Returns:
        `(features, fallback)`: features float32 `[N, 71, D]` (linear interpolation per band,
        constant extrapolation before the first and after the last observation), and a bool
        `[N]` that is True for parcels without any clear observation, which are interpolated
        from all their observations instead (NaN when a parcel has no observation at all).

    Raises:
        ValueError: shapes that do not fit together.
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
    offsets = np.asarray(offsets, dtype=np.int64)
    cloudy = np.asarray(cloudy, dtype=bool)
    times = _days(dates)
    if values.ndim != 2 or len(values) != len(times) or len(cloudy) != len(times):
        raise ValueError(f"expected dates [N_obs], values [N_obs, D] and cloudy [N_obs] of one length, got "
                         f"{times.shape}, {values.shape}, {cloudy.shape}")
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(times) \
            or np.any(np.diff(offsets) < 0):
        raise ValueError(f"offsets must be non-decreasing from 0 to N_obs={len(times)}, got {offsets[:3]}..."
                         f"{offsets[-3:]}")
    n_parcels, n_bands = len(offsets) - 1, values.shape[1]
    parcel = np.repeat(np.arange(n_parcels), np.diff(offsets))

    clear_count = np.bincount(parcel[~cloudy], minlength=n_parcels)
    fallback = clear_count == 0
    keep = ~cloudy | fallback[parcel]
    parcel, times, kept_values = parcel[keep], times[keep], values[keep]

    # One global sort key: parcel id times a span larger than any time range, plus the time.
    shift = times.min() if len(times) else 0.0
    grid = _days(GRID_DATES) - shift
    times = times - shift
    span = max(float(times.max()) if len(times) else 0.0, float(grid[-1])) + 1.0
    key = parcel * span + times
    order = np.argsort(key, kind="stable")
    key, parcel, times, kept_values = key[order], parcel[order], times[order], kept_values[order]

    counts = np.bincount(parcel, minlength=n_parcels)
    ends = np.cumsum(counts)
    starts = ends - counts
    has_obs = counts > 0
    rows = np.flatnonzero(has_obs)

    query = (rows[:, None] * span + grid[None, :]).ravel()
    after = np.searchsorted(key, query, side="right")
    lo = np.repeat(starts[rows], GRID_SIZE)
    hi = np.repeat(ends[rows], GRID_SIZE) - 1
    left = np.clip(after - 1, lo, hi)
    right = np.clip(after, lo, hi)
    gap = times[right] - times[left]
    grid_times = np.tile(grid, len(rows))
    weight = np.where(gap > 0, (grid_times - times[left]) / np.where(gap > 0, gap, 1.0), 0.0)
    weight = np.clip(weight, 0.0, 1.0)[:, None]
    interpolated = kept_values[left] + weight * (kept_values[right] - kept_values[left])

    features = np.full((n_parcels, GRID_SIZE, n_bands), np.nan, dtype=np.float32)
    features[rows] = interpolated.reshape(len(rows), GRID_SIZE, n_bands)
    return features, fallback | ~has_obs
