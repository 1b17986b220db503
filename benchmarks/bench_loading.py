"""Data-loading speed, side by side: the reference `breizhcrops` dataset against cropcore.

Writes official-layout files for one region (default 20 000 parcels, L1C, 17 columns, series of
51 or 102 dates as in the release) with the test suite's fake-data writer, then times one epoch
of 45-step batches of 1024:

(a) reference: `breizhcrops.BreizhCrops` (0.0.4.1) in `DataLoader(batch_size=1024, num_workers=0)`
    (its published-size check is patched in memory for the fixture; site-packages is untouched);
(b) cropcore: `BreizhCrops` + `Batches(batch_size=1024)` on the packed store;

plus the one-time conversion into the packed store, a cached open, and cropcore's per-sample
API in the same DataLoader for reference. Prints a Markdown table and writes it to the
"## Data loading (issue 2)" section of benchmarks/RESULTS.md.

    python benchmarks/bench_loading.py [--parcels N] [--runs 5] [--reference-runs 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import fakedata  # noqa: E402  (tests/fakedata.py: the official-layout writer)
import torch  # noqa: E402

from cropcore.data import Batches, BreizhCrops, layout  # noqa: E402

SECTION = "## Data loading (issue 2)"
REGION = "frh04"


def write_fixture(root: Path, parcels: int, level: str, seed: int) -> fakedata.FakeRegion:
    """Official layout with realistic series lengths (L1C: 51 or 102 dates; L2A: shorter)."""
    rng = np.random.default_rng(seed)
    choices = [51, 102] if level == "L1C" else [30, 45, 60]
    lengths = rng.choice(choices, size=parcels, p=[0.7, 0.3] if level == "L1C" else None)
    fakedata.write_classmapping(root)
    fakedata.write_codes(root)
    return fakedata.write_region(root, REGION, level, seed=seed, n_parcels=parcels, lengths=lengths,
                                 progress=True)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def drain(loader) -> int:
    """Iterate one epoch; returns the parcels seen."""
    return sum(len(batch[1]) for batch in loader)


def reference_epochs(root: Path, fake: fakedata.FakeRegion, level: str, runs: int) -> tuple[list[float], int]:
    """(epoch seconds, parcels) of the reference dataset; its rewrite of the index csv is undone."""
    from breizhcrops.datasets import breizhcrops as reference

    saved = fake.index_path.with_suffix(".csv.orig")
    shutil.copy2(fake.index_path, saved)
    reference.FILESIZES[2017][level][REGION] = fake.h5_path.stat().st_size  # in memory only
    dataset = reference.BreizhCrops(REGION, root=str(root), level=level)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1024, shuffle=True, num_workers=0)
    seconds = [timed(lambda: drain(loader)) for _ in range(runs)]
    os.replace(saved, fake.index_path)  # copy2 kept size and mtime: our cache stays valid
    return seconds, len(dataset)


def ours(root: Path, level: str, runs: int) -> dict[str, object]:
    """Conversion, cached open, Batches epochs and the per-sample API of cropcore."""
    shutil.rmtree(layout.cache_dir(root, REGION, level), ignore_errors=True)
    conversion = timed(lambda: BreizhCrops(REGION, root=root, level=level))
    opens = [timed(lambda: BreizhCrops(REGION, root=root, level=level)) for _ in range(3)]
    dataset = BreizhCrops(REGION, root=root, level=level, seed=0)
    batches = Batches(dataset, batch_size=1024, sequence_length=45, shuffle=True, seed=0)
    drain(batches)  # warm-up: page cache and allocator, as the reference's epoch had its own
    epochs = [timed(lambda: drain(batches)) for _ in range(runs)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=1024, shuffle=True, num_workers=0)
    per_sample = timed(lambda: drain(loader))
    return {"parcels": len(dataset), "conversion": conversion, "open": statistics.median(opens),
            "epochs": epochs, "per_sample": per_sample, "dtype": dataset.store.values.dtype.name}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, torch {torch.__version__}"


def table(written: int, level: str, ref: list[float], mine: dict[str, object], ref_parcels: int) -> str:
    ref_epoch = statistics.median(ref)
    epoch = statistics.median(mine["epochs"])
    n = mine["parcels"]
    runs = len(mine["epochs"])
    lines = [
        f"{written} parcels written in the official layout ({level}, "
        f"{'17 columns, 51 or 102' if level == 'L1C' else '14 columns, 30 to 60'} dates, with the release's "
        f"quirks: NaN rows, empty series, codes outside the mapping); kept: {n} by cropcore, {ref_parcels} by "
        f"the reference (it keeps NaN rows, so also an all-NaN series). "
        f"One epoch of 45-step batches of 1024, shuffled.",
        "",
        "| pipeline | epoch (s) | parcels/s | speed-up |",
        "| --- | ---: | ---: | ---: |",
        f"| reference `breizhcrops.BreizhCrops` + `DataLoader(1024, num_workers=0)` "
        f"({len(ref)} run{'s' if len(ref) > 1 else ''}) | {ref_epoch:.2f} | {ref_parcels / ref_epoch:,.0f} | 1x |",
        f"| cropcore `BreizhCrops[i]` + same `DataLoader` (per-sample API, 1 run) | {mine['per_sample']:.2f} | "
        f"{n / mine['per_sample']:,.0f} | {ref_epoch / mine['per_sample']:.1f}x |",
        f"| cropcore `Batches(batch_size=1024)` (median of {runs}, min {min(mine['epochs']):.3f}, "
        f"max {max(mine['epochs']):.3f}) | {epoch:.3f} | {n / epoch:,.0f} | **{ref_epoch / epoch:,.0f}x** |",
        "",
        "| one-time cost | seconds | target |",
        "| --- | ---: | --- |",
        f"| conversion to the packed store (first open, values {mine['dtype']}) | {mine['conversion']:.2f} | "
        f"<= one reference epoch ({ref_epoch:.2f} s): {'met' if mine['conversion'] <= ref_epoch else 'NOT met'} |",
        f"| later open (memory-mapped cache, median of 3) | {mine['open']:.3f} | well under 1 s |",
        "",
        f"Target ours >= 100x faster per epoch: {'met' if ref_epoch / epoch >= 100 else 'NOT met'} "
        f"({ref_epoch / epoch:,.0f}x).",
    ]
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{body}\n"
    else:
        end = text.find("\n## ", start + len(SECTION))
        end = len(text) if end < 0 else end + 1
        text = text[:start] + f"{SECTION}\n\n{body}\n" + ("\n" + text[end:] if end < len(text) else "")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=20_000, help="parcels to write (default 20000)")
    parser.add_argument("--level", default="L1C", choices=("L1C", "L2A"))
    parser.add_argument("--runs", type=int, default=5, help="cropcore epochs timed (median reported)")
    parser.add_argument("--reference-runs", type=int, default=1, help="reference epochs timed")
    parser.add_argument("--root", type=Path, help="where to write the fixture (default: a temp folder)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="cropcore-bench-"))
    try:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        fake = write_fixture(root, args.parcels, args.level, args.seed)
        print(f"fixture written in {time.perf_counter() - started:.1f} s under {root}", file=sys.stderr)
        mine = ours(root, args.level, args.runs)
        ref, ref_parcels = reference_epochs(root, fake, args.level, args.reference_runs)
        body = table(len(fake.parcels), args.level, ref, mine, ref_parcels)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        body += (f"\n\nMachine: {machine()}; 1-minute load average {load:.1f} when the run started (the "
                 f"machine may be shared: compare ratios from one run). Run {stamp}: `python benchmarks/bench_loading.py "
                 f"--parcels {args.parcels} --runs {args.runs} --reference-runs {args.reference_runs}`.")
        print(body)
        if not args.no_write:
            write_section(args.results, body)
            print(f"\nwritten to {args.results}", file=sys.stderr)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
