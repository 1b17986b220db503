"""`cropcore evaluate`: the paper's four scores, macro F1, per-class table and confusion, per region.

    cropcore evaluate --run runs/20260101-120000-TempCNN-L1C-evaluation1          # from its predictions
    cropcore evaluate --checkpoint runs/.../checkpoint.pt --region frh04 --json scores.json
    cropcore evaluate --run runs/... --region frh01 --region frh02                   # re-score on other regions
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from cropcore.evaluation.metrics import format_report, region_report


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run folder (its predictions, or its model with --region)")
    source.add_argument("--checkpoint", type=Path, help="a cropcore checkpoint.pt (needs --region)")
    parser.add_argument("--region", action="append", default=[], help="region to score (repeatable), e.g. frh04")
    parser.add_argument("--level", help="L1C or L2A (default: the checkpoint's)")
    parser.add_argument("--root", help="dataset root (default: the run's, else the simulated demo)")
    parser.add_argument("--test-draws", type=int,
                        help="average probabilities over K seeded draws (default: the run's, else 1)")
    parser.add_argument("--seed", type=int, help="seed of the 45-step draws (default: the run's, else 0)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the scores as JSON")


#: Options that only apply when a model is scored again (--checkpoint, or --run with --region).
_SCORING_OPTIONS: tuple[str, ...] = ("level", "root", "test_draws", "seed")


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """{"source", "epoch", "simulated", "test_draws", "seed", "regions": {region: report}} for the requested
    run or checkpoint."""
    from cropcore.constants import check_device, check_region
    from cropcore.data import layout
    from cropcore.evaluation.inference import (
        Predictions, checkpoint_of_run, data_root, draw_settings, run_config, score_checkpoint, score_run,
    )
    from cropcore.training import checkpoint, runs
    from cropcore.training.loop import FOREST

    regions = list(dict.fromkeys(check_region(region) for region in args.region))
    args.device = check_device(args.device)
    config = run_config(args.run) if args.run is not None else {}
    if args.run is not None and not regions:
        given = [f"--{name.replace('_', '-')}" for name in _SCORING_OPTIONS if getattr(args, name) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only when scoring "
                             f"again: add --region")
        path = args.run / runs.PREDICTIONS
        if not path.is_file():  # not finished (a resumed run drops the results of its earlier end)
            state = runs.read_status(args.run)["state"]
            raise FileNotFoundError(f"run {args.run} ({state}) has no final {runs.PREDICTIONS}; add --region to "
                                    f"score the model it saved last")
        try:
            predictions = Predictions.from_frame(pd.read_parquet(path))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        stored = runs.read_json(args.run / runs.METRICS) if (args.run / runs.METRICS).is_file() else {}
        source, epoch, draws, seed = str(args.run), stored.get("epoch"), stored.get("test_draws"), stored.get("test_seed")
        simulated = bool(config.get("simulated"))
    elif args.run is not None:
        seen = [region for region in regions if region in config.get("train_regions", [])]
        if seen:
            print(f"warning: the run trained on {', '.join(seen)}: scores there are not a test", file=sys.stderr)
        seed, draws = draw_settings(args.seed, args.test_draws, config)
        root = data_root(args.root or config.get("root"))
        predictions = score_run(args.run, regions, root=root, level=args.level, seed=seed, draws=draws,
                                device=args.device)
        epoch = 1 if config.get("model") == FOREST else checkpoint.load_checkpoint(checkpoint_of_run(args.run))["epoch"]
        source, simulated = str(args.run), layout.is_simulated(root)
    else:
        if not regions:
            raise ValueError("--checkpoint needs at least one --region (e.g. --region frh04)")
        (seed, draws), root = draw_settings(args.seed, args.test_draws), data_root(args.root)
        predictions = score_checkpoint(args.checkpoint, regions, root=root, level=args.level, seed=seed,
                                       draws=draws, device=args.device)
        source, epoch = str(args.checkpoint), checkpoint.load_checkpoint(args.checkpoint).get("epoch")
        simulated = layout.is_simulated(root)
    reports = {
        region: region_report(predictions.region(region).true, predictions.region(region).predicted)
        for region in dict.fromkeys(predictions.regions.tolist())
    }
    return {"source": source, "epoch": epoch, "simulated": simulated, "test_draws": draws, "seed": seed,
            "regions": reports}


def run(args: argparse.Namespace) -> int:
    from cropcore.data.layout import data_label
    from cropcore.training import runs

    result = evaluate(args)
    epoch = f" (epoch {result['epoch']})" if result["epoch"] is not None else ""
    print(f"scores of {result['source']}{epoch} on {data_label(result['simulated'])}")
    for region, report in result["regions"].items():
        print(format_report(region, report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        runs.write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
