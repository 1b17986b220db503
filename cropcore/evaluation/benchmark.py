"""`cropcore benchmark`: the protocol of the paper's section 4.2 for every model, as Table 2.

For each model (the Random Forest and the seven networks) three runs: trained on FRH01-03 and tested on
FRH04 (Table 2, top), then the cross-evaluation folds tested on FRH01 and FRH02; the bottom block is the
mean ± std over the FRH01, FRH02 and FRH04 tests. FRH04 runs go first for every model, so an interrupted
benchmark still has the top of the table. The tables are rewritten after each run.

    cropcore benchmark --level L1C --models all                  # the paper's epochs: long
    cropcore benchmark --level L1C --quick                       # demo preset, minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cropcore.evaluation import table2
from cropcore.evaluation.metrics import PAPER_METRICS

FOREST = "RandomForest"


@dataclass(frozen=True)
class Preset:
    """Settings shared by every run of a benchmark (None: each model's paper value)."""

    name: str
    epochs: int | None
    batch_size: int
    trees: int
    test_draws: int
    description: str
    epoch_caps: Mapping[str, int] = field(default_factory=dict)

    def epochs_of(self, model: str) -> int | None:
        """Epochs for one network (None: the paper's), at most its cap."""
        if self.epochs is None:
            return None
        return min(self.epochs, self.epoch_caps.get(model, self.epochs))


FULL = Preset("full", None, 1024, 500, 1, "paper settings: each model's epochs, batch 1024, 500 trees, 1 test draw")
#: Sized for the default demo (about 1 500 parcels per region) on 2 CPU cores in under 15 minutes:
#: OmniScaleCNN and the LSTM cost 5-10x more per parcel on CPU than the others, so they get fewer epochs.
QUICK = Preset("quick", 3, 256, 100, 1,
               "quick: 3 epochs per network (OmniScaleCNN 1, LSTM 2), batch 256, the paper's learning rates "
               "and weight decays, 100 trees (depth 25), 1 seeded test draw",
               epoch_caps={"OmniScaleCNN": 1, "LSTM": 2})


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--level", default="L1C", help="L1C or L2A")
    parser.add_argument("--models", default="all", help="'all' or a comma-separated list (RandomForest included)")
    parser.add_argument("--epochs", type=int, help="epochs of every network (default: preset / paper)")
    parser.add_argument("--batch-size", type=int, help="default: preset (1024, quick 256)")
    parser.add_argument("--trees", type=int, help="Random Forest trees (default: preset, 500 / quick 100)")
    parser.add_argument("--test-draws", type=int, help="seeded draws averaged per test parcel (default 1)")
    parser.add_argument("--root", help="dataset root (default: the simulated demo)")
    parser.add_argument("--quick", action="store_true", help=QUICK.description)
    parser.add_argument("--folds", choices=("all", "top"), default="all",
                        help="'top': only the FRH04 test (Table 2 top), 'all': also the cross-evaluation folds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/table2"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def model_names(text: str) -> list[str]:
    """'all' -> RF and the seven networks; otherwise canonical names, each once (unknown names listed as errors)."""
    from cropcore.models import NAMES, find_spec

    if text.strip().lower() == "all":
        return [FOREST, *NAMES]
    names = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if name.lower() in ("randomforest", "rf"):
            names.append(FOREST)
            continue
        try:
            names.append(find_spec(name).name)
        except ValueError as error:
            raise ValueError(f"--models: {error}, {FOREST} (or rf), or all") from None
    if not names:
        raise ValueError(f"--models names no model: give 'all' or a comma-separated list, got {text!r}")
    return list(dict.fromkeys(names))


def preset_of(args: argparse.Namespace) -> Preset:
    base = QUICK if args.quick else FULL
    changes = {key: value for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                             ("trees", args.trees), ("test_draws", args.test_draws))
               if value is not None}
    given = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in changes.items())
    if "epochs" in changes:
        changes["epoch_caps"] = {}
    return replace(base, **changes, description=base.description + (f"; given: {given}" if given else ""))


def _configs(args: argparse.Namespace, preset: Preset, models: list[str], root: Path) -> list[tuple[str, Any]]:
    """(test region, resolved run configuration) of every run, FRH04 first: all checked before the first run."""
    from cropcore.training import protocol
    from cropcore.training.loop import resolve_config

    regions = [table2.TOP_REGION] if args.folds == "top" else [table2.TOP_REGION, "frh01", "frh02"]
    configs = []
    for region in regions:
        mode = protocol.CROSS_EVALUATION[region]
        for model in models:
            configs.append((region, resolve_config(
                model, level=args.level, mode=mode, root=str(root), out=str(args.out / "runs"),
                epochs=preset.epochs_of(model) if model != FOREST else None, batch_size=preset.batch_size,
                seed=args.seed, device=args.device, progress=False,
                test_draws=preset.test_draws if model != FOREST else None,
                hparams={"n_estimators": preset.trees} if model == FOREST else {},
                run_name=f"{model}-{args.level}-{mode}",
            )))
    return configs


def run(args: argparse.Namespace) -> int:
    from cropcore.cli import CommandError
    from cropcore.constants import REGIONS, check_level
    from cropcore.data.layout import data_label, is_simulated
    from cropcore.evaluation.inference import data_root, open_regions
    from cropcore.training.loop import NonFiniteLossError, train

    args.level = check_level(args.level)
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    preset = preset_of(args)
    models = model_names(args.models)
    root = data_root(args.root)
    configs = _configs(args, preset, models, root)
    # every fold reads all four regions: missing data or another class mapping fails now, not after hours
    open_regions(REGIONS, root=root, level=args.level)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    simulated = is_simulated(root)
    args.out.mkdir(parents=True, exist_ok=True)
    scores: dict[str, dict[str, dict[str, float]]] = {model: {} for model in models}
    timings: list[dict[str, Any]] = []
    began = time.perf_counter()
    print(f"benchmark {args.level} on {root} ({data_label(simulated)}); {preset.description}",
          flush=True)
    for region, config in configs:
        model, mode = config.model, config.mode
        started = time.perf_counter()
        print(f"[{time.perf_counter() - began:6.0f} s] {model} {mode} (test {region})", flush=True)
        try:
            result = train(config)
        except NonFiniteLossError as error:  # one diverged run leaves its cell empty, not the whole table
            print(f"  {model} {mode} diverged: {error}; its cell stays empty", flush=True)
            timings.append({"model": model, "mode": mode, "test": region,
                            "seconds": time.perf_counter() - started, "failed": str(error)})
            _write(args, scores, timings, preset, root, simulated, time.perf_counter() - began)
            continue
        if result.metrics is None:
            raise CommandError(f"{model} {mode} was {result.state} ({result.run_dir}); the tables in {args.out} "
                               f"hold the runs before it")
        report = result.metrics["regions"][region]
        scores[model][region] = {metric: report[metric] for metric in PAPER_METRICS}
        timings.append({"model": model, "mode": mode, "test": region, "seconds": time.perf_counter() - started,
                        "run": str(result.run_dir), **scores[model][region]})
        _write(args, scores, timings, preset, root, simulated, time.perf_counter() - began)
    print()
    print(table2.render_text(scores, args.level))
    print(f"total {time.perf_counter() - began:.0f} s; wrote {args.out / f'table2-{args.level}.md'} and .csv")
    return 0


def _simulation(root: Path) -> str:
    """'scale 0.01, seed 0': how a simulated root was generated, from its marker file."""
    from cropcore.data.layout import simulation_marker

    marker = simulation_marker(root) or {}
    if "scale" in marker and "seed" in marker:
        return f"scale {marker['scale']}, seed {marker['seed']}"
    return "generation settings unknown"


def _write(args: argparse.Namespace, scores: dict, timings: list, preset: Preset, root: Path, simulated: bool,
           seconds: float) -> None:
    """Markdown, CSV and a JSON record of the runs so far (atomically: readers never see half a table)."""
    from cropcore.data import demo_root
    from cropcore.training import runs

    where = "the default `cropcore demo`" if root == demo_root() else str(root)
    notes = [
        f"data: SIMULATED (not the real BreizhCrops): {where}, {_simulation(root)}" if simulated
        else f"data: BreizhCrops: {where}",
        f"preset: {preset.description}",
        f"seed {args.seed}, device {args.device}, {seconds:.0f} s in total",
        "the paper block shows the published numbers on the real data, for comparison",
    ]
    notes += [f"{t['model']} {t['mode']} (test {t['test']}) diverged, cell left empty: {t['failed']}"
              for t in timings if "failed" in t]
    stem = args.out / f"table2-{args.level}"
    runs.write_bytes(stem.with_suffix(".md"), table2.render_markdown(scores, args.level, notes=notes).encode())
    table = table2.long_table(scores, args.level)
    runs.write_with(stem.with_suffix(".csv"), lambda temporary: table.to_csv(temporary, index=False))
    runs.write_bytes(stem.with_suffix(".json"), json.dumps(
        {"level": args.level, "preset": asdict(preset), "simulated": simulated, "root": str(root),
         "seconds": seconds, "runs": timings}, indent=2, default=dict).encode())
