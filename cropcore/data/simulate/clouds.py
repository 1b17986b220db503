"""Brittany's clouds, cloud shadows and the imperfect masks that flag them.

Per acquisition and orbit a tile cloud cover is drawn from a seasonal, regional climatology
(about two thirds of acquisitions contaminated, fewer in summer, Finistère cloudiest). The cloud
itself is a smooth random field over the department (a sum of random plane waves, wavelengths of
10-60 km) thresholded at that cover: parcels deep inside a cloud are opaque, parcels at its edge
are partly covered, neighbours share their sky. Shadows are the same field shifted south (the sun
is south at 11:00 UTC); cirrus is a second, thinner field. Masks are parcel means of pixel flags:
QA60 (60 m, misses thin clouds and every shadow) for L1C, MAJA CLD (20 m, catches thin clouds and
shadows) for L2A.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaincinv, ndtri

#: Mean tile cloud cover in winter and summer (climatology of Brittany, sentinel2-brittany.md).
COVER_WINTER, COVER_SUMMER = 0.72, 0.45
#: Regional offsets of the mean cover: Finistère cloudiest, Ille-et-Vilaine driest.
REGION_CLOUDINESS = {"frh01": 0.02, "frh02": 0.07, "frh03": -0.04, "frh04": 0.0}
#: Concentration of the Beta distribution of cover: low = many fully clear or overcast days.
COVER_CONCENTRATION = 1.0
#: L2A products exist only below this tile cloud cover.
L2A_MAX_COVER = 0.8
#: Plane waves per cloud field and their wavelength range (m).
FIELD_WAVES = 12
FIELD_WAVELENGTH_M = (10_000.0, 60_000.0)
#: Width of the partly cloudy edge in field units.
EDGE_WIDTH = 0.35
#: Opaque cloud reflectance (visible/NIR) and SWIR range.
CLOUD_BRIGHTNESS = (0.3, 0.8)
CLOUD_SWIR = (0.3, 0.5)
#: Cirrus: mean cover, B10 reflectance of a thick cirrus, and its additive haze on the other bands.
CIRRUS_COVER = 0.12
CIRRUS_B10 = (0.02, 0.2)
CIRRUS_HAZE = 0.06
#: Shadow: displacement (m) and remaining fraction of the clear signal (0.3-0.7).
SHADOW_SHIFT_M = (800.0, 3_000.0)
SHADOW_DARKENING = (0.3, 0.7)
#: Share of opaque clouds that are high enough to show in B10.
HIGH_CLOUD_SHARE = 0.35
#: QA60 bits (ESA L1C cloud mask) and detection thresholds on the parcel's cloud opacity.
QA60_OPAQUE, QA60_CIRRUS = 1024.0, 2048.0
QA60_MIN_OPACITY = 0.25
QA60_MIN_CIRRUS = 0.45
#: MAJA CLD byte per pixel: opaque cloud (bits 0, 1, 5), thin cirrus (bits 1, 6), shadow (bits 0, 2).
CLD_OPAQUE, CLD_CIRRUS, CLD_SHADOW = 35.0, 66.0, 5.0
CLD_MIN_OPACITY = 0.04
CLD_MIN_CIRRUS = 0.15
CLD_MIN_SHADOW = 0.15
#: Pixel areas of the two masks (m2): QA60 at 60 m, MAJA at 20 m.
QA60_PIXEL_M2, CLD_PIXEL_M2 = 3_600.0, 400.0


@dataclass(frozen=True)
class Weather:
    """Sky of every acquisition of a department ([T] or [T, K] arrays)."""

    cover: np.ndarray
    threshold: np.ndarray
    waves: np.ndarray       # [T, K, 2] wave vectors (rad/m)
    phases: np.ndarray      # [T, K]
    cirrus_threshold: np.ndarray
    cirrus_waves: np.ndarray
    cirrus_phases: np.ndarray
    cirrus_thickness: np.ndarray
    brightness: np.ndarray  # opaque cloud reflectance
    swir: np.ndarray
    high: np.ndarray        # bool: cloud tops high enough for B10
    high_b10: np.ndarray
    shadow_shift: np.ndarray   # [T, 2] metres from a shaded parcel to the cloud shading it (south)
    darkening: np.ndarray
    aerosol: np.ndarray     # path-radiance factor
    b1_path: np.ndarray
    water_vapour: np.ndarray  # B9 / B8A ratio
    b10_clear: np.ndarray


def _waves(rng: np.random.Generator, n_dates: int) -> tuple[np.ndarray, np.ndarray]:
    wavelength = rng.uniform(*FIELD_WAVELENGTH_M, (n_dates, FIELD_WAVES))
    angle = rng.uniform(0, 2 * np.pi, (n_dates, FIELD_WAVES))
    k = 2 * np.pi / wavelength
    return np.stack([k * np.cos(angle), k * np.sin(angle)], -1), rng.uniform(0, 2 * np.pi, (n_dates, FIELD_WAVES))


def draw_weather(region: str, doy: np.ndarray, rng: np.random.Generator) -> Weather:
    """The sky over a department on each acquisition day `doy` [T]."""
    n = len(doy)
    season = 0.5 * (1 + np.cos(2 * np.pi * (np.asarray(doy, float) - 15) / 365))  # 1 in January
    mean = COVER_SUMMER + (COVER_WINTER - COVER_SUMMER) * season + REGION_CLOUDINESS.get(region, 0.0)
    # stratified quantiles: the year's realised cloudiness follows the climatology closely
    quantile = (rng.permutation(n) + rng.random(n)) / n
    cover = betaincinv(mean * COVER_CONCENTRATION, (1 - mean) * COVER_CONCENTRATION, quantile)
    cover = np.clip(cover, 1e-4, 1 - 1e-4)
    waves, phases = _waves(rng, n)
    cirrus_cover = np.clip(rng.beta(CIRRUS_COVER * 1.5, (1 - CIRRUS_COVER) * 1.5, n), 1e-4, 1 - 1e-4)
    cirrus_waves, cirrus_phases = _waves(rng, n)
    shift = rng.uniform(*SHADOW_SHIFT_M, n)
    azimuth = rng.normal(0, 0.3, n)  # the sun is south, a little east or west
    return Weather(
        cover=cover, threshold=ndtri(1 - cover), waves=waves, phases=phases,
        cirrus_threshold=ndtri(1 - cirrus_cover), cirrus_waves=cirrus_waves, cirrus_phases=cirrus_phases,
        cirrus_thickness=rng.uniform(0.3, 1.0, n),
        brightness=rng.uniform(*CLOUD_BRIGHTNESS, n), swir=rng.uniform(*CLOUD_SWIR, n),
        high=rng.random(n) < HIGH_CLOUD_SHARE, high_b10=rng.uniform(*CIRRUS_B10, n),
        shadow_shift=np.column_stack([shift * np.sin(azimuth), -shift * np.cos(azimuth)]),
        darkening=rng.uniform(*SHADOW_DARKENING, n),
        aerosol=np.exp(rng.normal(0, 0.25, n)), b1_path=rng.uniform(0.08, 0.10, n),
        water_vapour=rng.uniform(0.25, 0.35, n), b10_clear=rng.uniform(0.001, 0.01, n),
    )


def _field(waves: np.ndarray, phases: np.ndarray, x: np.ndarray, y: np.ndarray,
           shift: np.ndarray | None = None) -> np.ndarray:
    """Unit-variance smooth random field [n, T] at points (x, y) [n], or at (x, y) + `shift` [T, 2]."""
    dx = x[:, None, None] + (0.0 if shift is None else shift[None, :, 0, None])
    dy = y[:, None, None] + (0.0 if shift is None else shift[None, :, 1, None])
    arg = dx * waves[None, :, :, 0] + dy * waves[None, :, :, 1] + phases[None]
    return np.sqrt(2.0 / waves.shape[1]) * np.cos(arg).sum(-1)


@dataclass(frozen=True)
class Sky:
    """What each parcel sees on each date ([n, T] in 0-1)."""

    opacity: np.ndarray
    cirrus: np.ndarray
    shadow: np.ndarray


def _edge(field: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Cover of a parcel from the field value: 0 outside, 1 deep inside, partial along the edge."""
    return np.clip((field - threshold[None]) / EDGE_WIDTH + 0.5, 0.0, 1.0)


def parcel_sky(weather: Weather, x: np.ndarray, y: np.ndarray) -> Sky:
    """Cloud opacity, cirrus thickness and shadow over each parcel (centroids x, y in metres)."""
    opacity = _edge(_field(weather.waves, weather.phases, x, y), weather.threshold)
    # the cloud casting a shadow on the parcel sits south of it: sample the field there
    shifted = _field(weather.waves, weather.phases, x, y, weather.shadow_shift)
    shadow = _edge(shifted, weather.threshold) * (1 - opacity)
    cirrus = _edge(_field(weather.cirrus_waves, weather.cirrus_phases, x, y), weather.cirrus_threshold)
    cirrus = cirrus * weather.cirrus_thickness[None] * (1 - opacity)
    return Sky(opacity=opacity, cirrus=cirrus, shadow=shadow)


def _pixel_share(share: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Share of a parcel's mask pixels that are flagged: coarse pixels give coarse steps."""
    return np.round(share * pixels[:, None]) / pixels[:, None]


def qa60(sky: Sky, area_m2: np.ndarray) -> np.ndarray:
    """Parcel mean of the L1C QA60 bitmask (0 clear, 1024 opaque, 2048 cirrus) [n, T]."""
    pixels = np.maximum(1.0, np.round(area_m2 / QA60_PIXEL_M2))
    opaque = _pixel_share(np.clip((sky.opacity - QA60_MIN_OPACITY) / 0.5, 0, 1), pixels)
    cirrus = _pixel_share(np.clip((sky.cirrus - QA60_MIN_CIRRUS) / 0.3, 0, 1), pixels) * (1 - opaque)
    return QA60_OPAQUE * opaque + QA60_CIRRUS * cirrus


def maja_cld(sky: Sky, area_m2: np.ndarray) -> np.ndarray:
    """Parcel mean of the MAJA CLD byte (clouds, thin cirrus and shadows) [n, T]."""
    pixels = np.maximum(1.0, np.round(area_m2 / CLD_PIXEL_M2))
    opaque = _pixel_share(np.clip((sky.opacity - CLD_MIN_OPACITY) / 0.3, 0, 1), pixels)
    cirrus = _pixel_share(np.clip((sky.cirrus - CLD_MIN_CIRRUS) / 0.3, 0, 1), pixels) * (1 - opaque)
    shadow = _pixel_share(np.clip((sky.shadow - CLD_MIN_SHADOW) / 0.3, 0, 1), pixels) * (1 - opaque)
    return CLD_OPAQUE * opaque + CLD_CIRRUS * cirrus + CLD_SHADOW * shadow


def cloud_spectrum(weather: Weather, n_bands: int) -> np.ndarray:
    """Opaque cloud reflectance [T, n_bands] for the 10 surface bands (VNIR bright, SWIR lower)."""
    spectrum = np.repeat(weather.brightness[:, None], n_bands, axis=1)
    spectrum[:, 0] += 0.03                      # blue: a little brighter (scattering)
    spectrum[:, -2] = weather.swir
    spectrum[:, -1] = 0.75 * weather.swir
    return spectrum


def apply_sky(clear: np.ndarray, sky: Sky, weather: Weather, cloud: np.ndarray) -> np.ndarray:
    """Mix the clear signal [n, T, B] with shadow darkening, opaque cloud [T, B] and cirrus haze."""
    darkened = clear * (1 - sky.shadow[..., None] * (1 - weather.darkening[None, :, None]))
    mixed = (1 - sky.opacity[..., None]) * darkened + sky.opacity[..., None] * cloud[None]
    return mixed + CIRRUS_HAZE * sky.cirrus[..., None]
