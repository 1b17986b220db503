"""A simulated Brittany in the official BreizhCrops layout: the embedded default dataset.

`generate` writes class mapping, codes, index CSVs, per-parcel HDF5 series of both levels and a
shapefile per department, exactly as the published release lays them out, so everything
downstream reads the demo through the code that reads the real data. The simulation follows
../shared/docs/sentinel2-brittany.md (calendar, clouds, crop phenology, class shares); it is
deterministic for a given seed and scale. `demo_root` is the lazily generated default copy and
`cropcore demo` its command line.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cropcore.constants import CLASSES, LEVELS, REGIONS, check_level, check_region
from cropcore.data import layout
from cropcore.data.simulate import plan as planning

__all__ = ["DEFAULT_SCALE", "VERSION", "configure", "demo_root", "generate", "run"]

#: Bump whenever the simulation changes its output: cached demos with another version regenerate.
VERSION = "1.1.0"
#: About 1 % of the real parcel counts: ~6 000 parcels per level.
DEFAULT_SCALE = 0.01
#: Environment variable giving the scale of `demo_root()` (tests use a tiny demo).
DEMO_SCALE_ENV = "CROPCORE_DEMO_SCALE"


def _region_seed(seed: int, region: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, REGIONS.index(region), stream])


def _write(root: Path, scale: float, seed: int, regions: tuple[str, ...], levels: tuple[str, ...],
           min_per_class: int, progress: bool) -> dict:
    """Write everything into `root` (an empty folder); returns the marker payload."""
    from tqdm import tqdm

    # Imported here: finding an existing demo (demo_root, on every dashboard start) needs none of the
    # simulation, whose imports (scipy, h5py, pyproj) take about half a second.
    from cropcore.data.simulate.geometry import make_parcels
    from cropcore.data.simulate.series import simulate_region
    from cropcore.data.simulate.writer import RegionWriter, write_classmapping, write_codes, write_shapefile

    universe = {region: planning.universe_size(region, scale, min_per_class) for region in REGIONS}
    ids = planning.all_ids(universe, np.random.default_rng([seed, 99]))
    write_classmapping(root)
    write_codes(root)
    summary: dict[str, dict] = {}
    total = sum(universe[region] for region in regions)
    with tqdm(total=total, unit="parcel", desc="simulating Brittany", disable=not progress) as bar:
        for region in regions:
            plan = planning.plan_region(region, ids[region], scale, min_per_class, _region_seed(seed, region, 2))
            parcels = make_parcels(region, len(plan.ids), _region_seed(seed, region, 3))
            write_shapefile(root, region, plan.ids, plan.codes, parcels.polygons)
            writers = {level: RegionWriter(root, region, level) for level in levels}
            try:
                stats = simulate_region(plan, parcels, writers, seed, on_chunk=bar.update)
            finally:
                counts = {level: writer.close() for level, writer in writers.items()}
            summary[region] = {
                level: {**counts[level], **stats[level],
                        "classes": {name: int(((plan.classids == i) & plan.in_level[level]).sum())
                                    for i, name in enumerate(CLASSES)},
                        "unmapped": int(((plan.classids < 0) & plan.in_level[level]).sum())}
                for level in levels}
    return {"generator": "cropcore.data.simulate", "version": VERSION, "scale": scale, "seed": seed,
            "min_per_class": min_per_class, "regions": list(regions), "levels": list(levels),
            "counts": summary,
            "note": "Simulated Sentinel-2 parcel series of Brittany 2017 (not real data)."}


def _matches(root: Path, scale: float, seed: int) -> bool:
    """True when `root` holds a complete demo of this scale, seed and generator version."""
    marker = layout.simulation_marker(root)
    return bool(marker) and marker.get("version") == VERSION and marker.get("scale") == scale \
        and marker.get("seed") == seed and marker.get("regions") == list(REGIONS) \
        and marker.get("levels") == list(LEVELS)


def _install(tmp: Path, root: Path) -> None:
    """Move a finished folder into place; only an empty folder or an older simulation is replaced."""
    if root.exists():
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        elif layout.is_simulated(root):
            trash = root.with_name(f".{root.name}.old-{secrets.token_hex(4)}")
            os.replace(root, trash)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            raise ValueError(f"{root} exists and is not a simulated dataset; choose another --root")
    os.replace(tmp, root)


def generate(root: str | os.PathLike, *, scale: float = DEFAULT_SCALE, seed: int = 0,
             regions: Iterable[str] = REGIONS, levels: Iterable[str] = LEVELS, min_per_class: int = 20,
             progress: bool = False) -> Path:
    """Write a simulated Brittany in the official layout under `root` (atomically).

    Args:
        root: target folder; an existing simulated dataset there is replaced, real data never.
        scale: share of the real parcel counts (1.0 = 608 000 parcels per level).
        seed: same seed and scale give identical files.
        regions, levels: subsets to write (a region's parcels do not depend on the others).
        min_per_class: minimum parcels of every class in every region.
        progress: show a progress bar.

    Returns:
        The root.

    Raises:
        ValueError: bad scale, region, level or an occupied root.
    """
    from cropcore.data.simulate.writer import write_marker

    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if min_per_class < 0:
        raise ValueError(f"min_per_class must be >= 0, got {min_per_class}")
    regions = tuple(check_region(region) for region in regions)
    unknown = [region for region in regions if region not in REGIONS]
    if unknown:
        raise ValueError(f"the simulation covers {', '.join(REGIONS)} only, not {', '.join(unknown)}")
    levels = tuple(check_level(level) for level in levels)
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        payload = _write(tmp, float(scale), int(seed), regions, levels, int(min_per_class), progress)
        write_marker(tmp, payload)
        if _matches(root, float(scale), int(seed)) and regions == REGIONS and levels == LEVELS:
            return root  # another process finished the same demo meanwhile
        _install(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def demo_path(scale: float = DEFAULT_SCALE, seed: int = 0) -> Path:
    """Where the demo of a scale and seed lives under the data folder."""
    if scale == DEFAULT_SCALE and seed == 0:
        return layout.data_dir() / "demo"
    return layout.data_dir() / f"demo-scale{scale:g}-seed{seed}"


def demo_root(scale: float | None = None, seed: int = 0) -> Path:
    """The simulated dataset's root, generated on first use (scale: $CROPCORE_DEMO_SCALE or 0.01)."""
    if scale is None:
        scale = float(os.environ.get(DEMO_SCALE_ENV) or DEFAULT_SCALE)
    root = demo_path(scale, seed)
    if not _matches(root, float(scale), int(seed)):
        generate(root, scale=scale, seed=seed)
    return root


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `cropcore demo`."""
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help="share of the real parcel counts (default 0.01, ~6 000 parcels per level; "
                             "1 = 608 000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed and scale, same files)")
    parser.add_argument("--root", type=Path, default=None,
                        help="output folder (default: the demo folder under $CROPCORE_DATA or data/)")
    parser.add_argument("--force", action="store_true", help="regenerate even if an identical demo exists")


def run(args: argparse.Namespace) -> int:
    """`cropcore demo`: generate (or find) the simulated dataset and print where it is."""
    root = args.root if args.root is not None else demo_path(args.scale, args.seed)
    if not args.force and _matches(root, float(args.scale), int(args.seed)):
        print(f"simulated dataset already at {root} (scale {args.scale:g}, seed {args.seed})")
        return 0
    started = time.perf_counter()
    generate(root, scale=args.scale, seed=args.seed, progress=True)
    counts = (layout.simulation_marker(root) or {}).get("counts", {})
    for level in LEVELS:
        per_region = ", ".join(f"{region} {counts[region][level]['parcels']}" for region in counts)
        print(f"{level}: {per_region}")
    print(f"wrote a simulated Brittany to {root} in {time.perf_counter() - started:.1f} s")
    return 0
