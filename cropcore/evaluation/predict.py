"""`cropcore predict`: class and probabilities for every parcel of a region, as Parquet or GeoPackage.

    cropcore predict --checkpoint runs/.../checkpoint.pt --region frh04 --out frh04.parquet
    cropcore predict --run runs/... --region frh01 --out frh01.gpkg        # with parcel geometries
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SUFFIXES: tuple[str, ...] = (".parquet", ".gpkg")


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a cropcore checkpoint.pt")
    source.add_argument("--run", type=Path, help="a run folder (its reported checkpoint, or forest.joblib)")
    parser.add_argument("--region", required=True, help="region to predict, e.g. frh04")
    parser.add_argument("--out", type=Path, required=True, help="output file: .parquet, or .gpkg with geometries")
    parser.add_argument("--level", help="L1C or L2A (default: the checkpoint's)")
    parser.add_argument("--root", help="dataset root (default: the simulated demo)")
    parser.add_argument("--test-draws", type=int, default=1, help="average probabilities over K seeded draws")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")


def predictions_table(args: argparse.Namespace) -> pd.DataFrame:
    """The predictions table (run-folder columns) for the requested region."""
    from cropcore.constants import check_region
    from cropcore.evaluation.command import run_config
    from cropcore.evaluation.inference import checkpoint_of_run, score_checkpoint
    from cropcore.training import runs

    region = check_region(args.region)
    if args.run is not None and (args.run / runs.FOREST).is_file():
        return _forest_table(args.run, region, args.root)
    if args.run is not None and not any((args.run / name).is_file() for name in (runs.BEST, runs.CHECKPOINT)):
        if run_config(args.run).get("model") == "RandomForest":
            raise ValueError(f"{args.run} did not keep its forest; train it again with --save-forest")
    path = checkpoint_of_run(args.run) if args.run is not None else args.checkpoint
    return score_checkpoint(path, [region], root=args.root, level=args.level, seed=args.seed,
                                       draws=args.test_draws, device=args.device).frame()


def _forest_table(run_dir: Path, region: str, root: str | None) -> pd.DataFrame:
    """Predictions of a saved forest. forest.joblib is a pickle: only load runs you made yourself."""
    import joblib

    from cropcore.evaluation.inference import open_regions
    from cropcore.training import loop, runs

    config = runs.read_json(run_dir / runs.CONFIG)
    (dataset,) = open_regions([region], root=root or config.get("root"), level=config.get("level", "L1C"))
    return loop.forest_predictions(joblib.load(run_dir / runs.FOREST), dataset).frame()


def write(table: pd.DataFrame, out: Path, *, root: str | None, level: str | None, region: str) -> None:
    """Parquet as is; GeoPackage joined to the parcels' geometries (EPSG:4326). Written atomically."""
    from cropcore.training import runs

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        runs.write_with(out, lambda temporary: table.to_parquet(temporary, index=False))
        return
    from cropcore.evaluation.inference import open_regions

    (dataset,) = open_regions([region], root=root, level=level or "L1C")
    parcels = dataset.geodataframe()[["id", "geometry"]]
    layer = parcels.merge(table, on="id", how="inner")
    runs.write_with(out, lambda temporary: layer.to_file(temporary, driver="GPKG", layer="predictions"))


def run(args: argparse.Namespace) -> int:
    from cropcore.data.layout import data_label, is_simulated
    from cropcore.evaluation.command import run_root
    from cropcore.evaluation.inference import data_root

    if args.out.suffix.lower() not in SUFFIXES:
        raise ValueError(f"--out must end in {' or '.join(SUFFIXES)}, got {args.out.name!r}")
    if args.run is not None and args.root is None:
        args.root = run_root(args.run)
    table = predictions_table(args)
    level = args.level
    if level is None and args.out.suffix == ".gpkg":
        level = _level_of(args)
    write(table, args.out, root=args.root, level=level, region=args.region.lower())
    simulated = is_simulated(data_root(args.root))
    print(f"wrote {len(table)} parcels of {args.region.lower()} ({data_label(simulated)}) to {args.out}")
    return 0


def _level_of(args: argparse.Namespace) -> str:
    """The level a checkpoint or run was trained on (geometries are the same, but the index differs)."""
    from cropcore.evaluation.command import run_config
    from cropcore.evaluation.inference import checkpoint_of_run
    from cropcore.training import checkpoint

    config = run_config(args.run) if args.run is not None else {}
    if config:
        return config.get("level", "L1C")
    path = args.checkpoint or checkpoint_of_run(args.run)
    return checkpoint.load_checkpoint(path).get("level", "L1C")
