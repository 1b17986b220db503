"""How much the test-time draw of 45 dates changes the scores, and what averaging K draws does.

The reference re-draws each test parcel's 45 observation dates at random whenever it evaluates, so its
scores move from one evaluation to the next. cropcore draws them with a seed, and ``--test-draws K`` averages
the class probabilities of K seeded draws (draw k uses seed + k). This script trains each network once
(``evaluation1``: FRH01-03 train, FRH04 test, the paper's epochs and hyperparameters unless ``--epochs``),
scores FRH04 with ``--draws`` single draws (seeds 0, 1, ...), and reports, per network:

- K = 1: the spread of the paper's four scores over the single draws (what re-drawing does), and the share
  of parcels whose predicted class differs from the first draw's;
- K > 1: the scores of disjoint groups of K consecutive draws, averaged as ``--test-draws K`` averages them.

    python benchmarks/bench_test_draws.py                                  # default demo, four networks
    python benchmarks/bench_test_draws.py --models TempCNN --draws 10 --root DIR
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cropcore.constants import CLASSES  # noqa: E402
from cropcore.evaluation.inference import open_checkpoint, predict, run_root  # noqa: E402
from cropcore.evaluation.metrics import confusion_matrix, summarize  # noqa: E402
from cropcore.training.loop import resolve_config, train  # noqa: E402

SCORES = ("overall_accuracy", "average_accuracy", "weighted_f1", "kappa")
LABELS = {"overall_accuracy": "OA", "average_accuracy": "AA", "weighted_f1": "wF1", "kappa": "κ"}


def draw_probabilities(run_dir: Path, draws: int, region: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """True classes and the class probabilities of each single draw (seeds 0 .. draws - 1) of a region."""
    network, datasets = open_checkpoint(run_dir / "checkpoint.pt", [region], root=run_root(run_dir))
    singles = [predict(network, datasets, seed=seed) for seed in range(draws)]
    return singles[0].true, [single.probabilities.astype(np.float64) for single in singles]


def scores_of(true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    return summarize(confusion_matrix(true, probabilities.argmax(axis=1), len(CLASSES)))


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return (f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} "
            f"({min(values):.3f}–{max(values):.3f})")


def table(name: str, true: np.ndarray, singles: list[np.ndarray], group_sizes: list[int]) -> list[str]:
    """Markdown rows: one per K, the four scores as mean ± std (min–max) over disjoint groups of K draws."""
    rows = []
    first = singles[0].argmax(axis=1)
    changed = [float((single.argmax(axis=1) != first).mean()) for single in singles[1:]]
    for size in group_sizes:
        groups = [singles[start:start + size] for start in range(0, len(singles) - size + 1, size)]
        results = [scores_of(true, np.mean(group, axis=0)) for group in groups]
        cells = [spread([result[key] for result in results]) for key in SCORES]
        share = f"{statistics.mean(changed):.1%}" if size == 1 and changed else ""
        rows.append(f"| {name} | {size} | {len(groups)} | " + " | ".join(cells) + f" | {share} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["TempCNN", "MSResNet", "StarRNN", "Transformer"])
    parser.add_argument("--root", help="dataset root (default: the simulated demo)")
    parser.add_argument("--draws", type=int, default=20, help="single draws per network (seeds 0 .. draws - 1)")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 5, 10, 20], help="K values to report")
    parser.add_argument("--epochs", type=int, help="override the paper's epochs (all networks)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--region", default="frh04", help="test region of evaluation1")
    parser.add_argument("--out", type=Path, help="runs folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.draws < 1 or min(args.groups) < 1:
        parser.error("--draws and --groups must be at least 1")
    sizes = [size for size in args.groups if size <= args.draws]
    out = args.out or Path(tempfile.mkdtemp(prefix="test-draws-"))
    header = ["network", "K", "groups", *(LABELS[key] for key in SCORES), "parcels changed vs draw 0"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in args.models:
        start = time.perf_counter()
        config = resolve_config(name, root=args.root, mode="evaluation1", out=str(out), epochs=args.epochs,
                                batch_size=args.batch_size, progress=False, run_name=f"{name}-draws")
        result = train(config)
        if result.state != "done":
            print(f"{name}: run {result.state}; skipped", file=sys.stderr)
            continue
        true, singles = draw_probabilities(result.run_dir, args.draws, args.region)
        lines += table(name, true, singles, sizes)
        print(f"{name}: {config.epochs} epochs, {len(true)} test parcels, {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
