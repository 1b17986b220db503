"""Shared fixtures. Tests never touch the network and never write into the checkout's data/.

The whole session points CROPCORE_DATA at a temporary folder and asks for a tiny demo
(CROPCORE_DEMO_SCALE), so `cropcore.data.demo_root()` and the dashboard generate small data there.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

TEST_DEMO_SCALE = "0.002"


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test sees an empty data folder of its own session, with a tiny default demo scale."""
    folder = tmp_path_factory.mktemp("cropcore-data")
    saved = {key: os.environ.get(key) for key in ("CROPCORE_DATA", "CROPCORE_DEMO_SCALE")}
    os.environ["CROPCORE_DATA"] = str(folder)
    os.environ["CROPCORE_DEMO_SCALE"] = TEST_DEMO_SCALE
    yield folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def sim_root(isolated_data_dir: Path) -> Path:
    """The tiny simulated Brittany (both levels, four regions), generated once per session."""
    from cropcore.data import demo_root

    return demo_root()


@pytest.fixture(scope="module")
def one_torch_thread() -> None:
    """Tiny batches train faster on one torch thread than on two, and far faster on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[[str], ModuleType]:
    """Loads a script of benchmarks/ by name (``"bench_models"``) as a module: the folder is not a package."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
