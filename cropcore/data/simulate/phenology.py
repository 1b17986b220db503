"""Crop calendars of Brittany as cover fractions over the year.

Every parcel is a linear mixture of four covers: green vegetation `g`, dry material `s` (ripe
crop, stubble, cut grass, wood), yellow flowers `y` and bare soil `1 - g - s - y`. The fractions
follow double-logistic green-up / senescence curves in day of year with harvest, mowing and
catch-crop events (dates from ../shared/docs/sentinel2-brittany.md, Brittany 2017; each parcel
jitters them by a week or two). Everything is vectorised over parcels: arrays are [n, T].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Fractions = tuple[np.ndarray, np.ndarray, np.ndarray]
Rng = np.random.Generator


def _sig(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # logistic, overflow-free


def _u(rng: Rng, n: int, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, (n, 1))


def _n(rng: Rng, n: int, mean: float, sd: float) -> np.ndarray:
    return rng.normal(mean, sd, (n, 1))


def _after_harvest(t: np.ndarray, harvest: np.ndarray, rng: Rng, n: int, catch_share: float) -> Fractions:
    """Stubble ploughed in after a few weeks, a catch crop greening in autumn on some parcels,
    and the next winter crop emerging in November on others."""
    stubble = _u(rng, n, 0.35, 0.55) * (1 - _sig((t - harvest - _u(rng, n, 10, 60)) / 3))
    catch = (rng.random((n, 1)) < catch_share) * _u(rng, n, 0.25, 0.6) * _sig((t - harvest - _u(rng, n, 35, 75)) / 9)
    sown = (rng.random((n, 1)) < 0.4) * _u(rng, n, 0.05, 0.2) * _sig((t - _u(rng, n, 305, 335)) / 7)
    return np.maximum(catch, sown), stubble, np.zeros_like(stubble)


def _annual(t: np.ndarray, rng: Rng, n: int, *, start_green: tuple[float, float], green_up: tuple[float, float],
            peak: tuple[float, float], senescence: tuple[float, float], harvest_delay: tuple[float, float],
            catch_share: float, ripe_dry: float = 0.9, before: Fractions | None = None,
            sowing: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Double logistic crop: green-up, senescence to ripe dry matter, harvest, then stubble/catch crop.

    Returns g, s, y and the harvest day [n, 1].
    """
    g0 = _u(rng, n, *start_green)
    up = _n(rng, n, green_up[0], green_up[1])
    gmax = _u(rng, n, *peak)
    sen = _n(rng, n, senescence[0], senescence[1])
    harvest = sen + _u(rng, n, *harvest_delay)
    season = g0 + (gmax - g0) * _sig((t - up) / _u(rng, n, 6, 11))
    if sowing is not None:  # spring crop: nothing of it before sowing
        season = season * _sig((t - sowing) / 4)
    remaining = 1 - _sig((t - sen) / _u(rng, n, 5, 9))
    crop_on = 1 - _sig((t - harvest) / 1.5)
    g = season * remaining * crop_on
    s = season * (1 - remaining) * ripe_dry * crop_on
    post_g, post_s, _ = _after_harvest(t, harvest, rng, n, catch_share)
    g = g + post_g * (1 - crop_on)
    s = s + post_s * (1 - crop_on)
    if before is not None and sowing is not None:  # cover crop or residue before a spring sowing
        pre = 1 - _sig((t - sowing + 8) / 4)
        g, s = g + before[0] * pre, s + before[1] * pre
    return g, s, np.zeros_like(g), harvest


def _winter_cover(t: np.ndarray, rng: Rng, n: int, share: float) -> Fractions:
    """A cover crop or weedy stubble over winter, destroyed in spring before a spring sowing."""
    on = rng.random((n, 1)) < share
    g = on * _u(rng, n, 0.2, 0.55) * (1 - _sig((t - _u(rng, n, 85, 115)) / 4))
    s = (~on) * _u(rng, n, 0.05, 0.25) * np.ones_like(t)
    return g, s, np.zeros_like(g)


def winter_barley(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    g, s, y, _ = _annual(t, rng, n, start_green=(0.2, 0.45), green_up=(75, 10), peak=(0.75, 0.95),
                         senescence=(150, 7), harvest_delay=(22, 35), catch_share=0.5)
    return g, s, y


def spring_barley(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    sowing = _u(rng, n, 65, 95)
    g, s, y, _ = _annual(t, rng, n, start_green=(0.0, 0.02), green_up=(125, 8), peak=(0.7, 0.9),
                         senescence=(172, 7), harvest_delay=(18, 30), catch_share=0.4,
                         before=_winter_cover(t, rng, n, 0.4), sowing=sowing)
    return g, s, y


def winter_wheat(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    g, s, y, _ = _annual(t, rng, n, start_green=(0.15, 0.4), green_up=(88, 10), peak=(0.78, 0.95),
                         senescence=(168, 7), harvest_delay=(22, 35), catch_share=0.5)
    return g, s, y


def spring_wheat(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    sowing = _u(rng, n, 60, 90)
    g, s, y, _ = _annual(t, rng, n, start_green=(0.0, 0.02), green_up=(128, 8), peak=(0.7, 0.9),
                         senescence=(182, 7), harvest_delay=(18, 28), catch_share=0.4,
                         before=_winter_cover(t, rng, n, 0.4), sowing=sowing)
    return g, s, y


def _rapeseed(t: np.ndarray, rng: Rng, n: int, *, spring: bool) -> Fractions:
    if spring:
        sowing = _u(rng, n, 75, 95)
        g, s, _, _ = _annual(t, rng, n, start_green=(0.0, 0.02), green_up=(125, 8), peak=(0.8, 0.95),
                             senescence=(200, 7), harvest_delay=(15, 25), catch_share=0.5,
                             before=_winter_cover(t, rng, n, 0.3), sowing=sowing)
        bloom_start, bloom_end = _n(rng, n, 150, 6), _n(rng, n, 175, 6)
    else:
        g, s, _, _ = _annual(t, rng, n, start_green=(0.55, 0.8), green_up=(65, 8), peak=(0.85, 0.97),
                             senescence=(165, 6), harvest_delay=(18, 28), catch_share=0.6, ripe_dry=0.85)
        bloom_start, bloom_end = _n(rng, n, 95, 5), _n(rng, n, 125, 5)
    bloom = _u(rng, n, 0.45, 0.7) * _sig((t - bloom_start) / 3.5) * (1 - _sig((t - bloom_end) / 3.5))
    y = np.minimum(bloom, g)
    return g - y, s, y


def winter_rapeseed(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    return _rapeseed(t, rng, n, spring=False)


def spring_rapeseed(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    return _rapeseed(t, rng, n, spring=True)


def _corn(t: np.ndarray, rng: Rng, n: int, *, senescence: float, delay: tuple[float, float]) -> Fractions:
    """Bare soil or a winter cover until sowing in May, canopy closing in July, harvest in autumn."""
    sowing = _u(rng, n, 118, 142)
    season = _u(rng, n, 0.8, 0.95) * _sig((t - sowing - _u(rng, n, 42, 58)) / _u(rng, n, 7, 10))
    sen = _n(rng, n, senescence, 8)
    harvest = sen + _u(rng, n, *delay)
    remaining = 1 - _sig((t - sen) / _u(rng, n, 6, 10))
    crop_on = 1 - _sig((t - harvest) / 1.5)
    pre_g, pre_s, _ = _winter_cover(t, rng, n, 0.45)
    pre = 1 - _sig((t - sowing + 8) / 4)
    post_g, post_s, _ = _after_harvest(t, harvest, rng, n, 0.35)
    g = season * remaining * crop_on + pre_g * pre + post_g * (1 - crop_on)
    s = season * (1 - remaining) * 0.8 * crop_on + pre_s * pre + post_s * (1 - crop_on)
    return g, s, np.zeros_like(g)


def silage_corn(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    return _corn(t, rng, n, senescence=245, delay=(8, 22))


def grain_corn(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    return _corn(t, rng, n, senescence=258, delay=(25, 45))


def sunflower(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    sowing = _u(rng, n, 100, 120)
    g, s, _, _ = _annual(t, rng, n, start_green=(0.0, 0.02), green_up=(152, 8), peak=(0.7, 0.88),
                         senescence=(222, 8), harvest_delay=(22, 35), catch_share=0.3, ripe_dry=0.95,
                         before=_winter_cover(t, rng, n, 0.3), sowing=sowing)
    bloom = _u(rng, n, 0.2, 0.4) * _sig((t - _n(rng, n, 185, 5)) / 3) * (1 - _sig((t - _n(rng, n, 205, 5)) / 3))
    y = np.minimum(bloom, g)
    return g - y, s, y


def _trees(t: np.ndarray, rng: Rng, n: int, *, leaf_on: float, leaf_off: float,
           canopy: tuple[float, float]) -> Fractions:
    """Trees over a mown grass strip: modest amplitude, leaves on between leaf_on and leaf_off."""
    grass = _u(rng, n, 0.3, 0.5) * (1 - 0.3 * _sig((t - 200) / 10) * (1 - _sig((t - 250) / 10)))
    cover = _u(rng, n, *canopy)
    leaves = cover * _sig((t - _n(rng, n, leaf_on, 6)) / 6) * (1 - _sig((t - _n(rng, n, leaf_off, 8)) / 8))
    wood = 0.6 * cover * np.ones_like(t)
    g = grass * (1 - cover) + leaves
    s = wood * (1 - leaves / np.maximum(cover, 1e-6)) + 0.1
    return g, np.minimum(s, 1 - g), np.zeros_like(g)


def orchard(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    return _trees(t, rng, n, leaf_on=112, leaf_off=300, canopy=(0.25, 0.45))


def nut_orchard(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    return _trees(t, rng, n, leaf_on=127, leaf_off=288, canopy=(0.3, 0.5))


def _meadow(t: np.ndarray, rng: Rng, n: int, *, cuts: tuple[int, ...], cut_probs: tuple[float, ...],
            first_cut: tuple[float, float], spacing: tuple[float, float], depth: tuple[float, float],
            resown: float) -> Fractions:
    """Grass green all year; cuts or grazing drop green cover, regrowth over two to four weeks."""
    winter = _u(rng, n, 0.5, 0.72)
    summer = _u(rng, n, 0.78, 0.93)
    g = winter + (summer - winter) * _sig((t - _n(rng, n, 75, 10)) / 10) * (1 - 0.5 * _sig((t - 300) / 15))
    drought = _u(rng, n, 0.0, 0.35) * _sig((t - _n(rng, n, 195, 8)) / 6) * (1 - _sig((t - _n(rng, n, 245, 8)) / 8))
    s = np.zeros_like(g)
    n_cuts = rng.choice(np.array(cuts), size=(n, 1), p=np.array(cut_probs))
    day = _n(rng, n, first_cut[0], first_cut[1])
    for k in range(max(cuts)):
        active = n_cuts > k
        after = t - day
        drop = active * _u(rng, n, *depth) * np.where(after >= 0, np.exp(-np.maximum(after, 0) / _u(rng, n, 8, 16)), 0.0)
        g = g * (1 - drop)
        s = s + drop * 0.5 * np.where(after >= 0, np.exp(-np.maximum(after, 0) / 6), 0.0)
        day = day + _u(rng, n, *spacing)
    g = g * (1 - drought)
    s = s + drought * 0.8
    if resown:  # ploughed and re-sown in spring on some parcels
        sow = rng.random((n, 1)) < resown
        ploughed = sow * (1 - _sig((t - _u(rng, n, 75, 110)) / 8)) * _sig((t - _u(rng, n, 20, 60)) / 3)
        g, s = g * (1 - ploughed), s * (1 - ploughed)
    return np.clip(g, 0, 1), np.clip(s, 0, 1 - np.clip(g, 0, 1)), np.zeros_like(g)


def permanent_meadow(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    return _meadow(t, rng, n, cuts=(1, 2, 3), cut_probs=(0.3, 0.45, 0.25), first_cut=(150, 14),
                   spacing=(35, 60), depth=(0.25, 0.6), resown=0.0)


def temporary_meadow(t: np.ndarray, rng: Rng, n: int) -> Fractions:
    return _meadow(t, rng, n, cuts=(2, 3, 4, 5), cut_probs=(0.15, 0.4, 0.3, 0.15), first_cut=(132, 12),
                   spacing=(30, 48), depth=(0.35, 0.7), resown=0.12)


#: Phenology of each RPG code (codes outside the class mapping included: they look like crops too).
PHENOLOGY: dict[str, Callable[[np.ndarray, Rng, int], Fractions]] = {
    "ORH": winter_barley, "ORP": spring_barley, "BTH": winter_wheat, "BTP": spring_wheat,
    "CZH": winter_rapeseed, "CZP": spring_rapeseed, "MIE": silage_corn, "MIS": grain_corn,
    "MID": grain_corn, "TRN": sunflower, "PPH": permanent_meadow, "PRL": permanent_meadow,
    "PTR": temporary_meadow, "RGA": temporary_meadow,
    "NOX": nut_orchard, "NOS": nut_orchard, "CTG": nut_orchard, "CAB": nut_orchard, "PIS": nut_orchard,
    # outside the mapping (dropped by the loader): sorghum, triticale, fallow, legume mix, wood pasture
    "SOG": grain_corn, "TTH": winter_wheat, "J6S": permanent_meadow, "MLG": temporary_meadow,
    "BOP": orchard, "SNE": permanent_meadow,
}


def phenology_for(code: str) -> Callable[[np.ndarray, Rng, int], Fractions]:
    """Cover-fraction model of an RPG code (every orchard code shares the orchard model)."""
    return PHENOLOGY.get(code, orchard)


def cover_fractions(codes: np.ndarray, doy: np.ndarray, rng: Rng) -> Fractions:
    """(green, dry, yellow) fractions [n, T] for parcels with RPG `codes` [n] on days `doy` [T]."""
    n = len(codes)
    t = np.asarray(doy, dtype=np.float64)[None, :]
    g = np.zeros((n, t.shape[1]))
    s, y = np.zeros_like(g), np.zeros_like(g)
    for code in sorted(set(codes.tolist())):
        rows = np.flatnonzero(codes == code)
        cg, cs, cy = phenology_for(code)(t, rng, len(rows))
        g[rows], s[rows], y[rows] = cg, cs, cy
    g = np.clip(g, 0, 1)
    y = np.clip(y, 0, 1 - g)
    s = np.clip(s, 0, 1 - g - y)
    return g, s, y
