"""The dashboard in a real browser: `streamlit run` on a free port, driven with Debian's headless Chromium.

Opt-in (``pytest -m browser``). Opens every page, checks that none shows an exception box, that the Map
page draws its deck.gl canvas (after the one-click first-launch training), and saves one screenshot per
page to ``test-artifacts/``. With CROPCORE_README_SCREENSHOTS=1 the Train, Map and Errors screenshots
also go to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
README_SHOTS = REPO / "docs" / "screenshots"
README_PAGES = ("train", "map", "errors")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: (url path, title shown on the page)
PAGES: tuple[tuple[str, str], ...] = (
    ("dataset", "Dataset"), ("curves", "Spectral curves"), ("train", "Train"), ("map", "Map"), ("errors", "Errors"),
)
EXCEPTION = '[data-testid="stException"]'
DECK_CANVAS = '[data-testid="stDeckGlJsonChart"] canvas'
STARTUP_TIMEOUT = 120
PAGE_TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout} s")


def start_dashboard(data_folder: Path, log: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`streamlit run dashboard/app.py` on 127.0.0.1 and a free port; returns (process, base url)."""
    port = free_port()
    env = {**os.environ, "CROPCORE_DATA": str(data_folder), "CROPCORE_DEMO_SCALE": "0.002",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **(extra_env or {})}
    env.pop("CROPCORE_RUNS", None)
    command = [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard" / "app.py"),
               "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port)]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
    except Exception:
        stop(process)
        raise
    return process, url


def stop(process: subprocess.Popen) -> None:
    """Stop a server we started (its whole process group)."""
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def launch_browser(playwright):  # noqa: ANN001, ANN201 - playwright types are optional
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_until_idle(page, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:  # noqa: ANN001
    """Wait until the app has rendered and finished its script run (status widget gone)."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=timeout_ms)
    page.wait_for_function(
        """() => {
            const main = document.querySelector('[data-testid="stMain"]');
            if (!main || main.querySelectorAll('h1').length === 0) return false;
            if (document.querySelector('[data-testid="stStatusWidget"] [data-testid^="stStatusWidgetRunning"]'))
                return false;
            if (main.querySelector('[data-testid="stSkeleton"]')) return false;
            const charts = main.querySelectorAll('[data-testid="stPlotlyChart"]');
            return [...charts].every(chart => chart.querySelector('.main-svg'));
        }""",
        timeout=timeout_ms, polling=250)
    page.wait_for_timeout(1000)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running dashboard on a fresh data folder (tiny demo generated before the server starts)."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} missing (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":  # CI installs it: a missing browser there is a failure
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("playwright.sync_api")
    folder = tmp_path_factory.mktemp("browser-data")
    subprocess.run([sys.executable, "-c", "from cropcore.data import demo_root; demo_root()"], check=True,
                   env={**os.environ, "CROPCORE_DATA": str(folder), "CROPCORE_DEMO_SCALE": "0.002"})
    ARTIFACTS.mkdir(exist_ok=True)
    process, url = start_dashboard(folder, ARTIFACTS / "streamlit-browser-test.log")
    try:
        yield url
    finally:
        stop(process)


def screenshot(page, name: str) -> None:  # noqa: ANN001
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if os.environ.get("CROPCORE_README_SCREENSHOTS") == "1" and name in README_PAGES:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_SHOTS / f"{name}.png"), full_page=False)


def test_every_page_renders_and_the_map_draws(dashboard: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # First launch: no model yet; one click on the Map page trains one and shows its map.
            page.goto(f"{dashboard}/map")
            wait_until_idle(page)
            page.get_by_role("button", name="Train a quick demo model").click()
            page.wait_for_selector(DECK_CANVAS, timeout=PAGE_TIMEOUT_MS)
            for path, title in PAGES:
                page.goto(f"{dashboard}/{path}")
                wait_until_idle(page)
                assert page.locator("h1", has_text=title).count() >= 1, path
                if path == "map":
                    page.wait_for_selector(DECK_CANVAS, state="visible", timeout=PAGE_TIMEOUT_MS)
                    page.wait_for_timeout(1500)  # let deck.gl draw the parcels before the screenshot
                screenshot(page, path)
                assert page.locator(EXCEPTION).count() == 0, f"exception box on {path}"
        finally:
            browser.close()
