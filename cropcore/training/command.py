"""`cropcore train`: one run of the paper's protocol into a run folder.

Examples::

    cropcore train --model TempCNN --level L1C --mode evaluation1 --epochs 20
    cropcore train --model RandomForest --mode validation
    cropcore train --resume runs/20260101-120000-TempCNN-L1C-evaluation1
    torchrun --nproc_per_node=2 -m cropcore train --model Transformer --device cuda
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cropcore.training import protocol, runs


def parse_hparam(text: str) -> tuple[str, Any]:
    """``name=value`` with the value read as JSON when it parses (numbers, booleans), else as text."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `cropcore train`; None means "the paper's value for this model" (or, with --resume, the
    run's own)."""
    parser.add_argument("--model", help="TempCNN, MSResNet, InceptionTime, OmniScaleCNN, LSTM, StarRNN, "
                                        "Transformer or RandomForest (required unless --resume)")
    parser.add_argument("--level", help="L1C (top of atmosphere) or L2A (default L1C)")
    parser.add_argument("--mode", type=str.lower, choices=[*protocol.MODES, "evaluation"],
                        help="split by department (validation: train FRH01-02, test FRH03; evaluation1 (default): "
                             "train FRH01-03, test FRH04; evaluation2/3/4: test FRH03/FRH02/FRH01)")
    parser.add_argument("--root", help="dataset root (default: the simulated demo)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the paper's for the model)")
    parser.add_argument("--batch-size", type=int, help="parcels per training batch (default 1024)")
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate (default: the paper's)")
    parser.add_argument("--weight-decay", type=float, help="Adam weight decay (default: the paper's)")
    parser.add_argument("--seed", type=int, help="seed of the weights, batches and test draws (default 0)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--out", help="folder that receives the run folder (default runs/)")
    parser.add_argument("--run-name", help="name of the run folder (default: time-model-level-mode)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue a run from its checkpoint, with its own settings (--epochs, --device, "
                             "--test-draws and --threads may change)")
    parser.add_argument("--test-draws", type=int,
                        help="average class probabilities over K seeded 45-step draws of each test parcel (default 1)")
    parser.add_argument("--hparam", action="append", type=parse_hparam, metavar="NAME=VALUE",
                        help="override a model hyperparameter (repeatable), e.g. hidden_dims=64 or n_estimators=100")
    parser.add_argument("--save-forest", action="store_true", default=None,
                        help="RandomForest: also save the fitted forest (forest.skops, read back as data) for "
                             "`cropcore predict --run`")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines only)")
    parser.add_argument("--no-cuda-graphs", action="store_true",
                        help="on CUDA, run every training step eagerly instead of replaying captured graphs")


#: What a resumed run keeps from its config.json: these options (None when not given) are refused with --resume.
_FIXED_ON_RESUME: tuple[str, ...] = (
    "model", "level", "mode", "root", "batch_size", "learning_rate", "weight_decay", "seed", "out", "run_name",
    "hparam", "save_forest",
)


def run(args: argparse.Namespace) -> int:
    """Resolve the configuration, train, and print where the run is; 1 if it was cancelled."""
    from cropcore.training.loop import config_from_record, resolve_config, stop_on_sigterm, train

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    if args.resume is not None:
        fixed = [f"--{name.replace('_', '-')}" for name in _FIXED_ON_RESUME if getattr(args, name) is not None]
        if fixed:
            raise ValueError(f"--resume continues {args.resume} with the settings in its {runs.CONFIG}; "
                             f"{', '.join(fixed)} cannot change them (start a new run instead)")
        if not args.resume.is_dir():
            raise FileNotFoundError(f"cannot resume {args.resume}: no run folder there")
        record = runs.read_json(args.resume / runs.CONFIG) if (args.resume / runs.CONFIG).is_file() else None
        if not isinstance(record, dict):
            raise FileNotFoundError(f"cannot resume {args.resume}: no readable {runs.CONFIG}")
        config = config_from_record(record, epochs=args.epochs, device=args.device, test_draws=args.test_draws,
                                    progress=not args.no_progress, cuda_graphs=False if args.no_cuda_graphs else None)
    else:
        if not args.model:
            raise ValueError("--model is required (or --resume RUN_DIR)")
        config = resolve_config(
            args.model, level=args.level, mode=args.mode, root=args.root, out=args.out, epochs=args.epochs,
            batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
            seed=args.seed, device=args.device, hparams=dict(args.hparam or []), test_draws=args.test_draws,
            run_name=args.run_name, progress=not args.no_progress, save_forest=args.save_forest,
            cuda_graphs=not args.no_cuda_graphs,
        )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    stop_on_sigterm()
    result = train(config, resume=args.resume)
    if result.metrics is not None:
        from cropcore.data.layout import data_label

        print(f"scores on {data_label(result.metrics['simulated'])}")
        for region, report in result.metrics["regions"].items():
            print(f"{region}: OA {report['overall_accuracy']:.4f}  AA {report['average_accuracy']:.4f}  "
                  f"wF1 {report['weighted_f1']:.4f}  kappa {report['kappa']:.4f}  (epoch {result.metrics['epoch']})")
    if result.metrics is not None or result.state != "done":
        print(f"run {result.state}: {result.run_dir}")
    return 0 if result.state == "done" else 1
