"""5-day grid features against a plain per-parcel `np.interp` reference."""

from __future__ import annotations

import numpy as np
import pytest

from cropcore.data.features import GRID_DATES, grid_features


def _reference(dates, values, offsets, cloudy):
    """Per-parcel loop with np.interp: slow and obviously right."""
    grid = (GRID_DATES - GRID_DATES[0]).astype(np.float64)
    days = (dates.astype("datetime64[s]") - GRID_DATES[0].astype("datetime64[s]")).astype(np.float64) / 86400
    features = np.full((len(offsets) - 1, len(grid), values.shape[1]), np.nan)
    fallback = np.zeros(len(offsets) - 1, dtype=bool)
    for i, (start, end) in enumerate(zip(offsets[:-1], offsets[1:])):
        clear = ~cloudy[start:end]
        if not clear.any():
            fallback[i] = True
            clear[:] = True
        t, v = days[start:end][clear], values[start:end][clear]
        if len(t) == 0:
            continue
        order = np.argsort(t, kind="stable")
        for band in range(values.shape[1]):
            features[i, :, band] = np.interp(grid, t[order], v[order, band])
    return features, fallback


def _random_parcels(rng: np.random.Generator, n: int, bands: int = 4):
    lengths = rng.integers(1, 30, n)
    lengths[:5] = 1                      # single-observation parcels
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    dates = np.concatenate([np.sort(rng.choice(np.arange(-20, 385), size=k, replace=False)) for k in lengths])
    dates = np.datetime64("2017-01-01", "D") + dates
    values = rng.random((offsets[-1], bands))
    cloudy = rng.random(offsets[-1]) < 0.6
    cloudy[offsets[5]:offsets[8]] = True  # fallback parcels
    return dates, values, offsets, cloudy


def test_grid_dates() -> None:
    assert len(GRID_DATES) == 71
    assert GRID_DATES[0] == np.datetime64("2017-01-01") and GRID_DATES[-1] == np.datetime64("2017-12-17")
    assert set(np.diff(GRID_DATES).astype(int)) == {5}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_np_interp(seed: int) -> None:
    dates, values, offsets, cloudy = _random_parcels(np.random.default_rng(seed), 300)
    features, fallback = grid_features(dates, values, offsets, cloudy)
    expected, expected_fallback = _reference(dates, values, offsets, cloudy)
    assert features.shape == (300, 71, 4) and features.dtype == np.float32
    np.testing.assert_array_equal(fallback, expected_fallback)
    assert fallback[5:8].all()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_unsorted_and_datetime_seconds() -> None:
    rng = np.random.default_rng(3)
    dates, values, offsets, cloudy = _random_parcels(rng, 50)
    permuted = dates.astype("datetime64[s]").copy()
    for start, end in zip(offsets[:-1], offsets[1:]):  # shuffle inside each parcel
        order = rng.permutation(end - start) + start
        permuted[start:end], values[start:end], cloudy[start:end] = (
            permuted[order], values[order], cloudy[order])
    features, _ = grid_features(permuted, values, offsets, cloudy)
    expected, _ = _reference(permuted, values, offsets, cloudy)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_constant_extrapolation_and_empty_parcel() -> None:
    dates = np.array(["2017-03-01", "2017-06-01"], dtype="datetime64[D]")
    values = np.array([[0.1], [0.3]])
    features, fallback = grid_features(dates, values, np.array([0, 2, 2]), np.array([False, False]))
    assert features[0, 0, 0] == pytest.approx(0.1) and features[0, -1, 0] == pytest.approx(0.3)
    assert fallback.tolist() == [False, True] and np.isnan(features[1]).all()


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="offsets"):
        grid_features(np.array(["2017-01-01"], dtype="datetime64[D]"), np.zeros((1, 2)), np.array([0, 2]),
                      np.zeros(1, bool))
