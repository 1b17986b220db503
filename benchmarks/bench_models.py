"""Side-by-side speed of cropcore's networks and the reference package's, same configuration.

CPU (default): batch 1024 of 45 x 13 random reflectances, ``torch.set_num_threads(2)``. For every model,
one training step (forward, NLL loss, backward, Adam step) and one inference pass (eval mode, no grad)
are timed for ours and for ``breizhcrops.models`` (0.0.4.1, installed ``--no-deps``) alternately in the
same loop, so that load from other processes hits both sides alike; the median over ``--repeats``
rounds gives parcels per second. ``--bf16`` adds our models under CPU bf16 autocast (a different
numerical precision: reported separately, never as the fp32 ratio). ``--keep-freed-memory`` times both
sides with glibc keeping freed memory, as the ``cropcore`` commands run (``cropcore.memory``): without the page
faults of freshly mapped buffers, which weigh on some networks far more than on others.

GPU (``--gpu``, skipped without CUDA): training batches of 1024 per second end to end, data included,
with ``cropcore train``'s CUDA step (see ``bench_gpu``).

Usage::

    python benchmarks/bench_models.py                     # all seven models, print a Markdown table
    python benchmarks/bench_models.py --models LSTM StarRNN --repeats 3
    python benchmarks/bench_models.py --write             # also update benchmarks/RESULTS.md
    python benchmarks/bench_models.py --keep-freed-memory # both sides without page-fault churn
    python benchmarks/bench_models.py --gpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cropcore import memory, models  # noqa: E402
from cropcore.constants import BANDS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## Models (issue 3)"
KEPT_SECTION = "## Models, freed memory kept (issue 3)"
GPU_SECTION = "## Models on a GPU (issue 3)"
INPUT_DIM, NUM_CLASSES, SEQUENCE_LENGTH = 13, 9, 45
#: Speed-up targets of issue 3 (training, inference).
TARGETS: dict[str, tuple[float, float]] = {
    "StarRNN": (2.0, 2.0),
    "OmniScaleCNN": (5.0, 5.0),
}
DEFAULT_TARGET = (1.3, 1.5)
#: Reference figures measured on this project's 2-core machine (issue 3), train / infer parcels/s.
ISSUE_REFERENCE: dict[str, tuple[int, int]] = {
    "TempCNN": (1241, 6688), "MSResNet": (1182, 5336), "InceptionTime": (817, 3498), "OmniScaleCNN": (72, 265),
    "LSTM": (239, 1133), "StarRNN": (481, 2698), "Transformer": (688, 3407),
}


#: Where the issue's reference configuration differs from our default (InceptionTime defaults to 4 x 64, the
#: reference's checkpoint; the issue timed 3 modules of 128), ours is built like the reference.
LIKE_REFERENCE: dict[str, dict[str, int]] = {"InceptionTime": {"num_layers": 3, "hidden_dims": 128}}


def our_model(name: str) -> nn.Module:
    """Our network in the same configuration as ``reference_model(name)``."""
    return models.build(name, input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=SEQUENCE_LENGTH,
                        **LIKE_REFERENCE.get(name, {}))


def reference_model(name: str) -> nn.Module:
    """The reference package's model in the published (or issue-stated) configuration."""
    warnings.filterwarnings("ignore", module="torch.nn.modules.transformer")
    import breizhcrops.models as ref

    builders: dict[str, Callable[[], nn.Module]] = {
        "TempCNN": lambda: ref.TempCNN(INPUT_DIM, NUM_CLASSES, SEQUENCE_LENGTH),
        "MSResNet": lambda: ref.MSResNet(INPUT_DIM, num_classes=NUM_CLASSES, hidden_dims=32),
        "InceptionTime": lambda: ref.InceptionTime(num_classes=NUM_CLASSES, input_dim=INPUT_DIM, num_layers=3,
                                                   hidden_dims=128),
        "OmniScaleCNN": lambda: ref.OmniScaleCNN(INPUT_DIM, NUM_CLASSES, SEQUENCE_LENGTH),
        "LSTM": lambda: ref.LSTM(INPUT_DIM, NUM_CLASSES),
        "StarRNN": lambda: ref.StarRNN(INPUT_DIM, NUM_CLASSES, bidirectional=False, use_batchnorm=False,
                                       use_layernorm=True),
        "Transformer": lambda: ref.TransformerModel(INPUT_DIM, NUM_CLASSES),
    }
    return builders[name]()


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class Runner:
    """One model with its optimizer: a timed training step and a timed inference pass."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool = False) -> None:
        self.model, self.x, self.y, self.bf16 = model, x, y, bf16
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3) if count(model) else None
        self.train_times: list[float] = []
        self.infer_times: list[float] = []
        self.train_cpu: list[float] = []
        self.infer_cpu: list[float] = []

    def _autocast(self) -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def train_step(self) -> float:
        self.model.train()
        start, cpu = time.perf_counter(), time.process_time()
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = F.nll_loss(self.model(self.x).float(), self.y)
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
        self.train_cpu.append(time.process_time() - cpu)
        return time.perf_counter() - start

    def infer(self) -> float:
        self.model.eval()
        start, cpu = time.perf_counter(), time.process_time()
        with torch.no_grad(), self._autocast():
            self.model(self.x)
        self.infer_cpu.append(time.process_time() - cpu)
        return time.perf_counter() - start


def bench_cpu(names: list[str], repeats: int, batch: int, bf16: bool) -> list[dict[str, object]]:
    torch.manual_seed(0)
    x = torch.rand(batch, SEQUENCE_LENGTH, INPUT_DIM)
    y = torch.randint(0, NUM_CLASSES, (batch,))
    rows = []
    for name in names:
        try:
            rows.append(bench_one(name, x, y, repeats, batch, bf16))
        except Exception as error:  # one broken model must not lose the others' figures
            print(f"{name}: failed ({type(error).__name__}: {error}); skipped", file=sys.stderr, flush=True)
            continue
        print(_line(rows[-1]), file=sys.stderr, flush=True)
    return rows


def bench_one(name: str, x: torch.Tensor, y: torch.Tensor, repeats: int, batch: int,
              bf16: bool) -> dict[str, object]:
    """Interleaved timings of ours (fp32, optionally bf16) and the reference for one model."""
    ours = our_model(name)
    runners = {"ours": Runner(ours, x, y), "reference": Runner(reference_model(name), x, y)}
    if bf16:
        runners["ours bf16"] = Runner(our_model(name), x, y, bf16=True)
    for runner in runners.values():  # warm-up: allocator, oneDNN primitive caches
        runner.train_step()
        runner.infer()
        runner.train_cpu.clear()
        runner.infer_cpu.clear()
    order = list(runners.values())
    for round_ in range(repeats):
        sequence = order if round_ % 2 == 0 else order[::-1]
        for runner in sequence:
            runner.train_times.append(runner.train_step())
        for runner in sequence:
            runner.infer_times.append(runner.infer())
    row: dict[str, object] = {"model": name, "params_ours": count(ours),
                              "params_reference": count(runners["reference"].model)}
    for kind in ("train", "infer"):  # each round's ratio, from timings taken side by side in that round
        ratios = [theirs / mine for mine, theirs in zip(getattr(runners["ours"], f"{kind}_times"),
                                                          getattr(runners["reference"], f"{kind}_times"))]
        row[f"{kind}_quartiles"] = _quartiles(ratios)
    for key, runner in runners.items():
        row[f"train_{key}"] = batch / statistics.median(runner.train_times)
        row[f"infer_{key}"] = batch / statistics.median(runner.infer_times)
        row[f"train_cpu_{key}"] = statistics.median(runner.train_cpu)
        row[f"infer_cpu_{key}"] = statistics.median(runner.infer_cpu)
    return row


def _line(row: dict[str, object]) -> str:
    return (f"{row['model']}: train {row['train_ours']:.0f} vs {row['train_reference']:.0f} "
            f"({row['train_ours'] / row['train_reference']:.2f}x), infer {row['infer_ours']:.0f} vs "
            f"{row['infer_reference']:.0f} ({row['infer_ours'] / row['infer_reference']:.2f}x)")


def markdown(rows: list[dict[str, object]], repeats: int, batch: int, bf16: bool) -> str:
    header = ["model", "params ours", "params ref", "train ours", "train ref", "train ×", "infer ours",
              "infer ref", "infer ×", "CPU-time × (train/infer)", "rounds' × quartiles (train; infer)",
              "target (train/infer)", "met"]
    if bf16:
        header[11:11] = ["train ours bf16", "infer ours bf16"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = str(row["model"])
        train_ratio = float(row["train_ours"]) / float(row["train_reference"])
        infer_ratio = float(row["infer_ours"]) / float(row["infer_reference"])
        target = TARGETS.get(name, DEFAULT_TARGET)
        met = "yes" if train_ratio >= target[0] and infer_ratio >= target[1] else "no"
        cells = [name, f"{row['params_ours']:,}", f"{row['params_reference']:,}", f"{row['train_ours']:.0f}",
                 f"{row['train_reference']:.0f}", f"{train_ratio:.2f}", f"{row['infer_ours']:.0f}",
                 f"{row['infer_reference']:.0f}", f"{infer_ratio:.2f}",
                 f"{float(row['train_cpu_reference']) / float(row['train_cpu_ours']):.2f} / "
                 f"{float(row['infer_cpu_reference']) / float(row['infer_cpu_ours']):.2f}",
                 f"{row['train_quartiles']}; {row['infer_quartiles']}",
                 f"{target[0]}× / {target[1]}×", met]
        if bf16:
            cells[11:11] = [f"{row['train_ours bf16']:.0f}", f"{row['infer_ours bf16']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _quartiles(ratios: list[float]) -> str:
    """First and third quartiles of the rounds' ratios: how far the same code moves between rounds."""
    if len(ratios) < 2:
        return "–"
    first, _, third = statistics.quantiles(ratios, n=4, method="inclusive")
    return f"{first:.2f}–{third:.2f}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


def write_section(section: str, body: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving other sections alone."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == section), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join(lines[:start] + body.rstrip("\n").splitlines() + [""] + lines[end:]).rstrip("\n") + "\n"
    RESULTS.write_text(new)


def bench_gpu(names: list[str], batches: int, repeats: int, graphs: bool) -> list[tuple[str, float, list[float]]]:
    """Training batches/s on CUDA, end to end: the epochs of ``cropcore train`` itself.

    Each epoch is the training loop's own (``cropcore.training.loop._train_epoch``): ``Batches`` drawing and
    padding on the GPU, bf16 autocast, fused Adam, cuDNN autotuning, CUDA graphs unless ``graphs`` is false,
    the finite-loss and cancel checks, the loss bookkeeping. Data: the demo's FRH01-03 (L1C), evaluation1's
    training regions, reshuffled every epoch. Each model runs ``repeats`` windows of at least ``batches``
    training steps after a warm-up epoch (graph capture included there); the median window gives the rate.
    The per-epoch test-region scoring and checkpoint of a real run are not included.
    """
    import tempfile

    from cropcore.data import Batches, demo_root
    from cropcore.training import loop
    from cropcore.training.cuda_graphs import TrainingForward
    from cropcore.training.distributed import Distributed

    torch.backends.cudnn.benchmark = True
    results = []
    run_dir = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    for name in names:
        config = loop.resolve_config(name, root=str(demo_root()), device="cuda", progress=False, cuda_graphs=graphs,
                                     hparams=LIKE_REFERENCE.get(name))
        train_sets, _ = loop._datasets(config)
        loader = Batches(train_sets, batch_size=config.batch_size, sequence_length=SEQUENCE_LENGTH, shuffle=True,
                         seed=0, device="cuda", drop_last=False)
        model = models.build(name, input_dim=len(BANDS[config.level]), num_classes=NUM_CLASSES,
                             sequence_length=SEQUENCE_LENGTH, **config.hparams).cuda()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, fused=True)
        forward = TrainingForward(model, "cuda", use_graphs=graphs)
        epoch = 0

        def epochs(limit: int) -> int:
            nonlocal epoch
            done = 0
            while done < limit:
                epoch += 1
                loader.set_epoch(epoch)
                loop._train_epoch(model, forward, optimizer, loader, epoch, config, run_dir, None, Distributed(),
                                  "cuda", loop.Hooks(), [])
                done += len(loader)
            return done

        epochs(1)
        windows = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            done = epochs(batches)
            torch.cuda.synchronize()
            windows.append(done / (time.perf_counter() - start))
        results.append((name, statistics.median(windows), windows))
        print(f"{name}: {results[-1][1]:.1f} batches/s (windows {', '.join(f'{w:.1f}' for w in windows)})",
              file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(models.NAMES), help="model names (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per model (median)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="also time ours under CPU bf16 autocast")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="both sides with glibc keeping freed memory, as the cropcore commands run")
    parser.add_argument("--write", action="store_true", help=f"update the '{SECTION}' section of {RESULTS.name} "
                        f"('{KEPT_SECTION}' with --keep-freed-memory)")
    parser.add_argument("--gpu", action="store_true", help="time training batches/s on CUDA instead")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="--gpu: eager steps (as without graphs)")
    parser.add_argument("--gpu-batches", type=int, default=200, help="training steps per timed GPU window")
    args = parser.parse_args(argv)
    names = [models.find_spec(name).name for name in args.models]
    if args.gpu:
        if not torch.cuda.is_available():
            print("--gpu: no CUDA device; skipped", file=sys.stderr)
            return 0
        graphed = bench_gpu(names, args.gpu_batches, args.repeats, graphs=True)
        eager = bench_gpu(names, args.gpu_batches, args.repeats, graphs=False)
        lines = ["| model | batches/s, CUDA graphs (default) | windows | batches/s, eager (`--no-cuda-graphs`) | "
                 "target 50 / s |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {rate:.1f} | {', '.join(f'{w:.1f}' for w in windows)} | {plain:.1f} | "
                  f"{'met' if rate >= 50 else 'not met'} |"
                  for (name, rate, windows), (_, plain, _) in zip(graphed, eager)]
        table = "\n".join(lines)
        print(table)
        if args.write:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            write_section(GPU_SECTION, (
                f"{GPU_SECTION}\n\nTraining batches of 1024 per second on one {torch.cuda.get_device_name()}, end to "
                "end: the training loop's own epochs (`Batches` over the demo's FRH01-03, L1C, drawn on the GPU; bf16 "
                "autocast, fused Adam, cuDNN autotuning, finite-loss and cancel checks), median of "
                f"{args.repeats} windows of at least {args.gpu_batches} steps after a warm-up epoch "
                "(`python benchmarks/bench_models.py --gpu --write`). "
                f"torch {torch.__version__}, Python {platform.python_version()}; {stamp}.\n\n{table}\n"))
        return 0
    torch.set_num_threads(args.threads)
    allocator = "the C library's default allocator"
    if args.keep_freed_memory:
        if not memory.keep_freed_memory():
            parser.error("--keep-freed-memory: not applied (a C library other than glibc, or "
                         f"{memory.ENVIRONMENT_SWITCH}=0)")
        allocator = "glibc keeping freed memory (`--keep-freed-memory`, as the cropcore commands run)"
    print(f"allocator: {allocator}", file=sys.stderr, flush=True)
    rows = bench_cpu(names, args.repeats, args.batch_size, args.bf16)
    table = markdown(rows, args.repeats, args.batch_size, args.bf16)
    print(table)
    if args.write:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        section = KEPT_SECTION if args.keep_freed_memory else SECTION
        body = (f"{section}\n\nParcels per second, batch {args.batch_size} of 45 × 13, CPU, "
                f"`torch.set_num_threads({args.threads})`, median of {args.repeats} interleaved rounds "
                f"(`python benchmarks/bench_models.py --write`), {allocator}. Machine: {machine()}; {stamp}. "
                "Reference: `breizhcrops==0.0.4.1` models in the same configuration, timed in the same loop. "
                "The quartiles are those of each round's own ratio (ours and the reference timed in the same "
                "round): how far the same code moves from round to round.\n\n"
                f"{table}\n")
        write_section(section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
