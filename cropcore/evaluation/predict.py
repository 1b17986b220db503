"""`cropcore predict`: class and probabilities for every parcel of a region, as Parquet or GeoPackage.

    cropcore predict --checkpoint runs/.../checkpoint.pt --region frh04 --out frh04.parquet
    cropcore predict --run runs/... --region frh01 --out frh01.gpkg        # with parcel geometries
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

SUFFIXES: tuple[str, ...] = (".parquet", ".gpkg")


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a cropcore checkpoint.pt")
    source.add_argument("--run", type=Path, help="a run folder (its reported checkpoint, or its saved forest)")
    parser.add_argument("--region", required=True, help="region to predict, e.g. frh04")
    parser.add_argument("--out", type=Path, required=True, help="output file: .parquet, or .gpkg with geometries")
    parser.add_argument("--level", help="L1C or L2A (default: the checkpoint's)")
    parser.add_argument("--root", help="dataset root (default: the run's, else the simulated demo)")
    parser.add_argument("--test-draws", type=int,
                        help="average probabilities over K seeded draws (default: the run's, else 1)")
    parser.add_argument("--seed", type=int, help="seed of the 45-step draws (default: the run's, else 0)")
    parser.add_argument("--device", default="cpu")


def write(table: pd.DataFrame, out: Path, *, root: str | None, level: str | None, region: str) -> int:
    """Parquet as is; GeoPackage joined to the parcels' geometries (EPSG:4326), a parcel without one kept with
    an empty geometry. Written atomically. Returns how many parcels have no geometry."""
    from cropcore.training import runs

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        runs.write_with(out, lambda temporary: table.to_parquet(temporary, index=False))
        return 0
    import geopandas as gpd

    from cropcore.evaluation.inference import open_regions

    (dataset,) = open_regions([region], root=root, level=level or "L1C")
    parcels = dataset.geodataframe()[["id", "geometry"]]
    layer = gpd.GeoDataFrame(table.merge(parcels, on="id", how="left"), geometry="geometry", crs=parcels.crs)
    runs.write_with(out, lambda temporary: layer.to_file(temporary, driver="GPKG", layer="predictions"))
    return int(layer.geometry.isna().sum())


def run(args: argparse.Namespace) -> int:
    from cropcore.constants import check_device, check_region
    from cropcore.data.layout import data_label, is_simulated
    from cropcore.evaluation.inference import data_root, draw_settings, run_config, score_checkpoint, score_run

    suffix = args.out.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"--out must end in {' or '.join(SUFFIXES)}, got {args.out.name!r}")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a file name ending in {' or '.join(SUFFIXES)}")
    region = check_region(args.region)
    args.device = check_device(args.device)
    if args.run is not None:
        config = run_config(args.run)
        seed, draws = draw_settings(args.seed, args.test_draws, config)
        args.root = args.root or config.get("root")
        level = args.level or config.get("level", "L1C")
        table = score_run(args.run, [region], root=args.root, level=args.level, seed=seed, draws=draws,
                          device=args.device).frame()
    else:
        seed, draws = draw_settings(args.seed, args.test_draws)
        table = score_checkpoint(args.checkpoint, [region], root=args.root, level=args.level, seed=seed,
                                 draws=draws, device=args.device).frame()
        level = args.level or (_checkpoint_level(args.checkpoint) if suffix == ".gpkg" else None)
    without_geometry = write(table, args.out, root=args.root, level=level, region=region)
    simulated = is_simulated(data_root(args.root))
    print(f"wrote {len(table)} parcels of {region} ({data_label(simulated)}) to {args.out}")
    if without_geometry:
        print(f"warning: {without_geometry} of them have no geometry in the region's parcel file", file=sys.stderr)
    return 0


def _checkpoint_level(path: Path) -> str:
    """The level a checkpoint was trained on (the index and bands differ between levels)."""
    from cropcore.training import checkpoint

    return checkpoint.load_checkpoint(path).get("level") or "L1C"
