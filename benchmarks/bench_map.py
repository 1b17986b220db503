"""Map page at full size: time from opening the page in headless Chromium to the parcels being drawn.

Data: the simulated FRH04 at scale 1 (about 122 000 parcels, L1C only), generated once into
``<data>/bench-frh04-scale1``. Predictions: seeded random class probabilities for every parcel (the
benchmark measures the page, not a model), written as a finished run folder following the contract.

Measure (median of ``--repeats``): t0 = ``page.goto(<url>/map)``; the map counts as drawn when
  1. the deck.gl canvas of the page's map (``[data-testid=stDeckGlJsonChart] canvas``) is visible,
  2. the caption "... parcels drawn as ..." is shown (the layer data reached the page), and
  3. a screenshot of the canvas has at least 1 % of pixels in the class palette (deck.gl painted them).
"cold": a fresh server each time (Python imports; the layer kept on disk by an earlier visit is read back;
only the very first visit after generating the data or changing dashboard/maps.py reads the shapefile and
builds it); "warm": a new browser session on a server whose caches are filled (what every later visitor gets).
What is drawn is the page's default for a whole department: the overview image (see dashboard/maps.py).
Chromium runs with the issue's flags (tests/test_browser.py CHROMIUM_ARGS); offline, the page's default basemap
is "None" (no style request), online it is CARTO's style, so the figure depends on the network.

Usage: python benchmarks/bench_map.py [--data DIR] [--repeats 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from cropcore.constants import CLASS_COLORS, CLASSES, hex_to_rgb  # noqa: E402

ROOT_NAME = "bench-frh04-scale1"
RUN_NAME = "bench-random-frh04"


def ensure_data(data: Path) -> Path:
    """Generate the full-size simulated FRH04 (L1C) once; return its root."""
    from cropcore.data import generate
    from cropcore.data.layout import SIMULATED_MARKER

    root = data / ROOT_NAME
    if not (root / SIMULATED_MARKER).exists():
        started = time.perf_counter()
        generate(root, scale=1, regions=("frh04",), levels=("L1C",), progress=True)
        print(f"generated {root} in {time.perf_counter() - started:.0f} s", flush=True)
    return root


def ensure_run(data: Path, root: Path) -> Path:
    """A finished run folder with seeded random predictions for every FRH04 parcel."""
    import pandas as pd

    from cropcore.data import BreizhCrops

    run = data / "runs" / RUN_NAME
    if (run / "predictions.parquet").exists():
        return run
    run.mkdir(parents=True, exist_ok=True)
    index = BreizhCrops("frh04", root=root, level="L1C").index
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.full(len(CLASSES), 0.5), size=len(index)).astype(np.float32)
    table = pd.DataFrame({"id": index["id"].to_numpy(np.int64), "region": "frh04",
                          "true": index["classid"].to_numpy(np.int64), "predicted": probabilities.argmax(1)})
    for k, name in enumerate(CLASSES):
        table[f"prob_{name}"] = probabilities[:, k]
    table.to_parquet(run / "predictions.parquet")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (run / "config.json").write_text(json.dumps({
        "model": "random", "level": "L1C", "mode": "evaluation1", "train_regions": [], "test_regions": ["frh04"],
        "root": str(root), "simulated": True, "epochs": 0}))
    (run / "status.json").write_text(json.dumps({
        "state": "done", "pid": None, "started": now, "updated": now, "epoch": 0, "epochs": 0, "error": None,
        "eta_seconds": 0.0}))
    return run


def palette_share(png: bytes) -> float:
    """Share of pixels whose colour is within a small distance of a class colour."""
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16).reshape(-1, 3)
    palette = np.array([hex_to_rgb(color) for color in CLASS_COLORS.values()], dtype=np.int16)
    distance = np.abs(pixels[:, None, :] - palette[None, :, :]).sum(axis=2).min(axis=1)
    return float((distance < 60).mean())


def time_map_page(url: str, timeout_s: float = 120) -> float:
    """Seconds from page.goto(<url>/map) until the map is drawn (see module docstring)."""
    from playwright.sync_api import sync_playwright

    from test_browser import DECK_CANVAS, launch_browser

    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            started = time.perf_counter()
            page.goto(f"{url}/map")
            page.wait_for_selector(DECK_CANVAS, state="visible", timeout=timeout_s * 1000)
            page.get_by_text("parcels drawn as").wait_for(timeout=timeout_s * 1000)
            canvas = page.locator(DECK_CANVAS).first
            while palette_share(canvas.screenshot()) < 0.01:
                if time.perf_counter() - started > timeout_s:
                    raise TimeoutError("the map never showed parcel colours")
                page.wait_for_timeout(100)
            return time.perf_counter() - started
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data", help="data folder (CROPCORE_DATA)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = args.data.resolve()
    os.environ["CROPCORE_DATA"] = str(data)
    os.environ["CROPCORE_DEMO_SCALE"] = "0.002"
    root = ensure_data(data)
    ensure_run(data, root)
    subprocess.run([sys.executable, "-c", "from cropcore.data import demo_root; demo_root()"], check=True)

    from test_browser import start_dashboard, stop

    cold, warm = [], []
    log = data / "bench-map-streamlit.log"
    for repeat in range(args.repeats):
        process, url = start_dashboard(data, log)
        try:
            cold.append(time_map_page(url))
            warm.append(time_map_page(url))
        finally:
            stop(process)
        print(f"repeat {repeat + 1}: cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s", flush=True)
    import pandas as pd

    parcels = len(pd.read_parquet(data / "runs" / RUN_NAME / "predictions.parquet", columns=["id"]))
    print(f"\nMap page, simulated FRH04 scale 1 ({parcels:,} parcels, random predictions), "
          f"{platform.node()} {os.cpu_count()} CPUs, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"cold (fresh server): median {statistics.median(cold):.2f} s  {['%.2f' % value for value in cold]}")
    print(f"warm (cached layer): median {statistics.median(warm):.2f} s  {['%.2f' % value for value in warm]}")


if __name__ == "__main__":
    main()
