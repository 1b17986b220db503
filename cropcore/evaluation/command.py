"""`cropcore evaluate`: the paper's four scores, macro F1, per-class table and confusion, per region.

    cropcore evaluate --run runs/20260101-120000-TempCNN-L1C-evaluation1          # from its predictions
    cropcore evaluate --checkpoint runs/.../checkpoint.pt --region frh04 --json scores.json
    cropcore evaluate --run runs/... --region frh01 --region frh02                   # re-score on other regions
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from cropcore.evaluation.metrics import format_report, region_report


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run folder (its predictions, or its checkpoint with --region)")
    source.add_argument("--checkpoint", type=Path, help="a cropcore checkpoint.pt (needs --region)")
    parser.add_argument("--region", action="append", default=[], help="region to score (repeatable), e.g. frh04")
    parser.add_argument("--level", help="L1C or L2A (default: the checkpoint's)")
    parser.add_argument("--root", help="dataset root (default: the simulated demo)")
    parser.add_argument("--test-draws", type=int, default=1, help="average probabilities over K seeded draws")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 45-step draws")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the scores as JSON")


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """{"source", "simulated", "test_draws", "seed", "regions": {region: report}} for the requested run or
    checkpoint."""
    from cropcore.constants import check_region
    from cropcore.data import layout
    from cropcore.evaluation.inference import Predictions, checkpoint_of_run, data_root, score_checkpoint
    from cropcore.training import runs

    regions = [check_region(region) for region in args.region]
    if args.run is not None and not regions:
        path = args.run / runs.PREDICTIONS
        if not path.is_file():
            raise FileNotFoundError(f"run {args.run} has no {runs.PREDICTIONS} (not finished?)")
        predictions = Predictions.from_frame(pd.read_parquet(path))
        stored = runs.read_json(args.run / runs.METRICS) if (args.run / runs.METRICS).is_file() else {}
        source, draws, seed = str(args.run), stored.get("test_draws"), stored.get("test_seed")
        simulated = bool(run_config(args.run).get("simulated"))
    else:
        if not regions:
            raise ValueError("--checkpoint needs at least one --region (e.g. --region frh04)")
        path = checkpoint_of_run(args.run) if args.run is not None else args.checkpoint
        root = data_root(args.root or (run_root(args.run) if args.run is not None else None))
        predictions = score_checkpoint(path, regions, root=root, level=args.level, seed=args.seed,
                                       draws=args.test_draws, device=args.device)
        source, draws, seed = str(path), args.test_draws, args.seed
        simulated = layout.is_simulated(root)
    reports = {
        region: region_report(predictions.region(region).true, predictions.region(region).predicted)
        for region in dict.fromkeys(predictions.regions.tolist())
    }
    return {"source": source, "simulated": simulated, "test_draws": draws, "seed": seed, "regions": reports}


def run_config(run_dir: Path) -> dict[str, Any]:
    """A run's config.json ({} when it has none)."""
    from cropcore.training import runs

    config = run_dir / runs.CONFIG
    return runs.read_json(config) if config.is_file() else {}


def run_root(run_dir: Path) -> str | None:
    """The dataset root a run was trained on (its config.json), so re-scoring reads the same data."""
    return run_config(run_dir).get("root")


def run(args: argparse.Namespace) -> int:
    from cropcore.data.layout import data_label
    from cropcore.training import runs

    result = evaluate(args)
    print(f"scores of {result['source']} on {data_label(result['simulated'])}")
    for region, report in result["regions"].items():
        print(format_report(region, report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        runs.write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
