"""Time the simulated-Brittany generator and measure its difficulty (issue 2, section 4).

Writes the section "## Demo generation (issue 2)" of benchmarks/RESULTS.md (only that section).

    python benchmarks/bench_demo.py                 # default scale x3, scale 0.1, RF difficulty
    python benchmarks/bench_demo.py --full          # also --scale 1 (608 000 parcels per level)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cropcore.constants import PARCEL_COUNTS
from cropcore.data.simulate import DEFAULT_SCALE, VERSION, generate
from cropcore.data.simulate.difficulty import rf_difficulty

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Demo generation (issue 2)"


def _time_generation(scale: float, repeats: int, workdir: Path) -> tuple[float, float, Path]:
    """Median wall and CPU seconds of `repeats` generations; the last root is kept."""
    walls, cpus, root = [], [], workdir / f"scale{scale:g}"
    for i in range(repeats):
        shutil.rmtree(root, ignore_errors=True)
        wall, cpu = time.perf_counter(), time.process_time()
        generate(root, scale=scale, seed=0, progress=scale >= 0.1)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        print(f"scale {scale:g} run {i + 1}: {walls[-1]:.1f} s wall, {cpus[-1]:.1f} s CPU", flush=True)
    size = sum(path.stat().st_size for path in root.rglob("*") if path.is_file())
    print(f"scale {scale:g}: {size / 1e6:.0f} MB on disk", flush=True)
    return statistics.median(walls), statistics.median(cpus), root


def _write_section(lines: list[str]) -> None:
    """Replace (or append) our section of RESULTS.md, leaving the others untouched."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    body = "\n".join([SECTION, "", *lines]).rstrip() + "\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip() + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + ("\n" + text[end + 1:] if end >= 0 else "")
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, RESULTS)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def _report(timings: dict[float, tuple[float, float, int]], scores: dict[str, dict[str, float]]) -> list[str]:
    """Markdown lines of our RESULTS.md section."""
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.0f} when written): wall times are upper bounds, the CPU time "
        f"of the (single-process) generator is the steadier figure. Python {platform.python_version()}, "
        f"generator version {VERSION}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "| scale | parcels per level | wall time | CPU time | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    targets = {DEFAULT_SCALE: "< 30 s", 1.0: "< 20 min"}
    for scale, (wall, cpu, repeats) in timings.items():
        parcels = round(sum(PARCEL_COUNTS["L1C"].values()) * scale)
        median = f" (median of {repeats})" if repeats > 1 else ""
        lines.append(f"| {scale:g} | ~{parcels:,} | {_duration(wall)}{median} | {_duration(cpu)} | "
                     f"{targets.get(scale, '')} |")
    if scores:
        lines += ["", "Difficulty, the paper's RF protocol (5-day grid features of cloud-filtered series, "
                  "RandomForestClassifier(500 trees, max_depth 25, max_features sqrt)), trained on FRH01-03 "
                  "and tested on FRH04 of the default demo (scale 0.01, seed 0):", "",
                  "| level | overall acc. | average acc. | weighted F1 | kappa | paper's RF (OA/AA/F1/kappa) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        paper = {"L1C": ".77/.53/.75/.69", "L2A": ".78/.54/.77/.71"}
        for level, score in scores.items():
            lines.append(f"| {level} | {score['overall_accuracy']:.3f} | {score['average_accuracy']:.3f} | "
                         f"{score['weighted_f1']:.3f} | {score['kappa']:.3f} | {paper[level]} |")
    lines += ["", "Reproduce: `python benchmarks/bench_demo.py [--full]`."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time --scale 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-rf", action="store_true", help="skip the Random Forest difficulty check")
    args = parser.parse_args()
    timings: dict[float, tuple[float, float, int]] = {}
    scores: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as folder:
        workdir = Path(folder)
        wall, cpu, root = _time_generation(DEFAULT_SCALE, args.repeats, workdir)
        timings[DEFAULT_SCALE] = (wall, cpu, args.repeats)
        _write_section(_report(timings, scores))
        if not args.no_rf:
            for level in ("L1C", "L2A"):
                scores[level] = rf_difficulty(root, level)
                print(level, scores[level], flush=True)
                _write_section(_report(timings, scores))
        for scale in (0.1, 1.0) if args.full else (0.1,):
            wall, cpu, root = _time_generation(scale, 1, workdir)
            shutil.rmtree(root, ignore_errors=True)
            timings[scale] = (wall, cpu, 1)
            _write_section(_report(timings, scores))
    print("\n".join(_report(timings, scores)))


if __name__ == "__main__":
    main()
