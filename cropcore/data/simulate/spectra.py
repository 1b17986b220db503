"""Cover fractions -> surface (L2A, BOA) and top-of-atmosphere (L1C) reflectance.

Endmember spectra are the typical Brittany values of ../shared/docs/sentinel2-brittany.md
("Surface reflectance" table); TOA adds the band-wise path radiance and transmittance of a clear
maritime atmosphere ("Top of atmosphere" section), with B1, B9 and B10 derived as described there.
"""

from __future__ import annotations

import numpy as np

#: Surface bands simulated directly (the 10 L2A bands, wavelength order).
SURFACE_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")

# Endmember reflectances (0-1) in SURFACE_BANDS order; source: sentinel2-brittany.md table.
SOIL = np.array([0.06, 0.08, 0.10, 0.12, 0.14, 0.15, 0.17, 0.17, 0.24, 0.19])
GREEN = np.array([0.02, 0.05, 0.02, 0.08, 0.25, 0.35, 0.45, 0.46, 0.20, 0.09])
DRY = np.array([0.05, 0.08, 0.11, 0.15, 0.20, 0.23, 0.25, 0.26, 0.33, 0.26])
FLOWER = np.array([0.04, 0.12, 0.10, 0.16, 0.28, 0.34, 0.40, 0.40, 0.22, 0.12])
#: Bands whose green-canopy reflectance scales with leaf structure (red edge, NIR).
_NIR_LIKE = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0], dtype=bool)

#: Per-parcel variation: soil brightness (moist/dry, texture), canopy NIR, overall brightness.
SOIL_BRIGHTNESS = (0.7, 1.4)
CANOPY_NIR_SD = 0.08
BRIGHTNESS_SD = 0.05
#: Soil dries and brightens in summer (relative increase at mid-summer).
SOIL_SUMMER_BRIGHTENING = 0.2
#: Sensor/processing noise: absolute (reflectance) plus relative part, per band and observation.
NOISE_ABS = np.array([0.003, 0.003, 0.003, 0.004, 0.005, 0.006, 0.007, 0.007, 0.006, 0.005])
NOISE_REL = 0.025

# Clear-sky maritime atmosphere (sentinel2-brittany.md, "Top of atmosphere").
#: Path radiance added at TOA (reflectance units), SURFACE_BANDS order.
PATH_RADIANCE = np.array([0.05, 0.03, 0.01, 0.008, 0.006, 0.005, 0.004, 0.004, 0.001, 0.0005])
#: Two-way transmittance applied to the surface signal.
TRANSMITTANCE = np.array([0.88, 0.91, 0.93, 0.94, 0.95, 0.95, 0.96, 0.96, 0.97, 0.96])
#: Coastal aerosol band B1: surface like a darker blue, path radiance +0.08 to +0.10.
B1_SURFACE_RATIO = 0.85
B1_PATH = (0.08, 0.10)
B1_TRANSMITTANCE = 0.85
#: Water-vapour band B9 reads about 0.3 x B8A.
B9_RATIO = (0.25, 0.35)
#: Cirrus band B10 in clear sky.
B10_CLEAR = (0.001, 0.01)


def surface_reflectance(green: np.ndarray, dry: np.ndarray, yellow: np.ndarray, doy: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """Linear mixture of the four covers, with per-parcel variation and noise.

    Args:
        green, dry, yellow: cover fractions [n, T] (soil is the rest).
        doy: day of year [T].

    Returns:
        Surface reflectance [n, T, 10] (0-1, SURFACE_BANDS order).
    """
    n, n_dates = green.shape
    soil_fraction = np.clip(1 - green - dry - yellow, 0, 1)
    summer = np.exp(-0.5 * ((np.asarray(doy, float) - 200) / 45) ** 2)
    soil_scale = rng.uniform(*SOIL_BRIGHTNESS, (n, 1)) * (1 + SOIL_SUMMER_BRIGHTENING * summer)[None, :]
    canopy = np.where(_NIR_LIKE, 1 + rng.normal(0, CANOPY_NIR_SD, (n, 1)), 1.0)      # [n, 10]
    chlorophyll = 1 + rng.normal(0, 0.12, (n, 1)) * np.array([0.5, 0.3, 1, 0.5, 0, 0, 0, 0, 0, 0])
    green_spectrum = GREEN * canopy * chlorophyll
    dry_spectrum = DRY * rng.uniform(0.85, 1.15, (n, 1))
    reflectance = (green[..., None] * green_spectrum[:, None, :]
                   + dry[..., None] * dry_spectrum[:, None, :]
                   + yellow[..., None] * FLOWER
                   + (soil_fraction * soil_scale)[..., None] * SOIL)
    reflectance *= (1 + rng.normal(0, BRIGHTNESS_SD, (n, 1, 1)))
    noise = rng.standard_normal((n, n_dates, len(SURFACE_BANDS)))
    reflectance += noise * (NOISE_ABS + NOISE_REL * reflectance)
    return np.clip(reflectance, 0.001, None)


def coastal_band(surface: np.ndarray) -> np.ndarray:
    """B1 surface reflectance [n, T] from the blue band."""
    return B1_SURFACE_RATIO * surface[..., 0] + 0.005


def to_toa(surface: np.ndarray, b1_surface: np.ndarray, aerosol: np.ndarray, b1_path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clear-sky TOA reflectance of the 10 surface bands and of B1.

    Args:
        surface: [n, T, 10]; b1_surface: [n, T]; aerosol: [T] path-radiance factor of each date;
        b1_path: [T] B1 path radiance of each date.
    """
    toa = surface * TRANSMITTANCE + PATH_RADIANCE * aerosol[None, :, None]
    b1 = B1_TRANSMITTANCE * b1_surface + b1_path[None, :]
    return toa, b1
