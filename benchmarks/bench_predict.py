"""End-to-end prediction of a full-size region on CPU: `cropcore predict` with the Transformer.

The issue's target: every parcel of the full-size simulated FRH04 (about 122 000 parcels,
`cropcore demo --scale 1`) predicted with the Transformer on 2 CPU cores in under 60 s, end to end
(process start, opening the packed store, batching, the network, writing the Parquet table).

    python benchmarks/bench_predict.py --root DIR [--runs 3] [--threads 2]

DIR must hold the full-size FRH04 L1C in the official layout, e.g. from
``cropcore.data.simulate.generate(DIR, scale=1, regions=("frh04",), levels=("L1C",))``. The weights are
a freshly initialised Transformer: prediction time does not depend on training.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from cropcore import models
from cropcore.data import BreizhCrops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--region", default="frh04")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    parcels = len(BreizhCrops(args.region, root=args.root, level="L1C"))  # also builds the packed store once
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "transformer.pt"
        torch.manual_seed(0)
        network = models.build("Transformer", input_dim=13, num_classes=9, sequence_length=45)
        models.save_checkpoint(checkpoint, network, "Transformer", level="L1C")
        out = Path(folder) / "predictions.parquet"
        command = [sys.executable, "-m", "cropcore", "predict", "--checkpoint", str(checkpoint),
                   "--region", args.region, "--root", str(args.root), "--out", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        seconds = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            seconds.append(time.perf_counter() - start)
        rows = len(pd.read_parquet(out))
    median = statistics.median(seconds)
    print(f"| Transformer, `cropcore predict`, {args.region.upper()} ({rows:,} of {parcels:,} parcels) "
          f"| {median:.1f} s (median of {args.runs}; {', '.join(f'{s:.1f}' for s in seconds)}) "
          f"| {rows / median:,.0f} parcels/s | target < 60 s: {'met' if median < 60 else 'NOT met'} |")


if __name__ == "__main__":
    main()
