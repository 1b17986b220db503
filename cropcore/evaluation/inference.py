"""Class probabilities for every parcel of some regions, deterministic by construction.

The reference re-draws the random 45-step sub-sample each time it scores a region, so its numbers move
from run to run. Here draw ``k`` uses ``Batches(seed=seed + k)``: the same seed always gives the same
scores, and ``draws > 1`` averages the class probabilities over several sub-samples.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cropcore.constants import CLASSES, SEQUENCE_LENGTH, check_level
from cropcore.training import distributed
from cropcore.training.distributed import Distributed

#: Parcels per inference batch. Fixed, because the seeded 45-step draws of ``Batches`` follow its batch
#: boundaries: a constant batch size keeps a run's scores and ``cropcore evaluate``'s identical.
INFERENCE_BATCH_SIZE = 1024
#: Column of the predictions table holding the probability of each class.
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"prob_{name}" for name in CLASSES)


@dataclass(frozen=True)
class Predictions:
    """Per-parcel results: ids, region, true class id, probabilities [N, num_classes] (float32)."""

    ids: np.ndarray
    regions: np.ndarray
    true: np.ndarray
    probabilities: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1).astype(np.int64)

    def nll(self) -> float:
        """Mean negative log-likelihood of the true class (the test loss)."""
        if not len(self.true):
            return float("nan")
        picked = self.probabilities[np.arange(len(self.true)), self.true].astype(np.float64)
        return float(-np.log(np.clip(picked, 1e-12, None)).mean())

    def region(self, region: str) -> Predictions:
        """The rows of one region."""
        keep = self.regions == region
        return Predictions(self.ids[keep], self.regions[keep], self.true[keep], self.probabilities[keep])

    def frame(self) -> pd.DataFrame:
        """The run folder's predictions table: id, region, true, predicted, prob_<class> x9."""
        table = pd.DataFrame({
            "id": self.ids.astype(np.int64), "region": self.regions.astype(str),
            "true": self.true.astype(np.int64), "predicted": self.predicted,
        })
        for column, values in zip(PROBABILITY_COLUMNS, self.probabilities.T.astype(np.float32), strict=True):
            table[column] = values
        return table

    @classmethod
    def from_frame(cls, table: pd.DataFrame) -> Predictions:
        """Back from a predictions table (probabilities; one-hot of ``predicted`` if they are absent).

        Raises:
            ValueError: a column it needs is missing.
        """
        with_probabilities = all(column in table.columns for column in PROBABILITY_COLUMNS)
        needed = ["id", "region", "true"] + ([] if with_probabilities else ["predicted"])
        missing = [column for column in needed if column not in table.columns]
        if missing:
            raise ValueError(f"predictions table lacks column(s) {', '.join(missing)}; expected id, region, true, "
                             f"predicted and {PROBABILITY_COLUMNS[0]}..{PROBABILITY_COLUMNS[-1]}")
        if with_probabilities:
            probabilities = table[list(PROBABILITY_COLUMNS)].to_numpy(np.float32)
        else:
            probabilities = np.eye(len(CLASSES), dtype=np.float32)[table["predicted"].to_numpy(np.int64)]
        return cls(table["id"].to_numpy(np.int64), table["region"].astype(str).to_numpy(),
                   table["true"].to_numpy(np.int64), probabilities)

    @classmethod
    def concatenate(cls, parts: Sequence[Predictions]) -> Predictions:
        return cls(*(np.concatenate([getattr(part, name) for part in parts])
                     for name in ("ids", "regions", "true", "probabilities")))


def autocast(device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (tensor cores), nothing on CPU (bf16 matmuls are slow on most CPUs)."""
    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def _one_draw(model: nn.Module, dataset, *, seed: int, device: str,
              context: Distributed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids, true, probabilities of one seeded sub-sample of one region (this rank's shard)."""
    from cropcore.data import Batches

    batches = Batches(dataset, batch_size=INFERENCE_BATCH_SIZE, sequence_length=SEQUENCE_LENGTH, shuffle=False,
                      seed=seed, device=device, drop_last=False, rank=context.rank, world_size=context.world_size)
    ids, true, probabilities = [], [], []
    for x, y, field_id in batches:
        with autocast(device):
            log_probabilities = model(x)
        probabilities.append(log_probabilities.float().exp().cpu().numpy())
        true.append(y.cpu().numpy())
        ids.append(field_id.cpu().numpy())
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, len(CLASSES)), np.float32)
    return np.concatenate(ids).astype(np.int64), np.concatenate(true).astype(np.int64), np.concatenate(probabilities)


def _order_by_id(ids: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    order = np.argsort(ids, kind="stable")
    return (ids[order], *(array[order] for array in arrays))


def predict(
    model: nn.Module,
    datasets: Sequence,
    *,
    seed: int = 0,
    draws: int = 1,
    device: str = "cpu",
    context: Distributed | None = None,
) -> Predictions:
    """Average class probabilities over ``draws`` seeded sub-samples, region by region.

    Args:
        model: a network returning log-probabilities; put in eval mode here (and left so).
        datasets: BreizhCrops regions; each parcel keeps its dataset's region name.
        seed: draw ``k`` uses ``seed + k``.
        context: under torchrun each rank scores its shard and every rank gets the gathered result.

    Returns:
        Predictions sorted by region order then parcel id.
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    context = context or Distributed()
    model.eval()
    parts = []
    for dataset in datasets:
        ids = true = None
        total = None
        for draw in range(draws):
            draw_ids, draw_true, probabilities = _order_by_id(
                *_one_draw(model, dataset, seed=seed + draw, device=device, context=context))
            if ids is None:
                ids, true, total = draw_ids, draw_true, probabilities.astype(np.float64)
            elif not np.array_equal(ids, draw_ids):
                raise RuntimeError("Batches returned different parcels for two draws of the same region")
            else:
                total += probabilities
        region = np.full(len(ids), str(dataset.region), dtype=object)
        parts.append(Predictions(ids, region, true, (total / draws).astype(np.float32)))
    local = Predictions.concatenate(parts)
    if not context.enabled:
        return local
    return _merge_ranks(distributed.gather_objects(local, context))


def _merge_ranks(parts: Sequence[Predictions]) -> Predictions:
    """One row per (region, parcel) from every rank's shard (padding duplicates dropped)."""
    merged = Predictions.concatenate(parts)
    keys = pd.DataFrame({"region": merged.regions, "id": merged.ids})
    keep = ~keys.duplicated().to_numpy()
    merged = Predictions(merged.ids[keep], merged.regions[keep], merged.true[keep], merged.probabilities[keep])
    order = np.lexsort((merged.ids, merged.regions.astype(str)))
    return Predictions(merged.ids[order], merged.regions[order], merged.true[order], merged.probabilities[order])


# ------------------------------------------------------------------------ scoring saved models


def run_config(run_dir: Path) -> dict[str, Any]:
    """A run's config.json ({} when it has none).

    Raises:
        FileNotFoundError: if ``run_dir`` is not a folder.
    """
    from cropcore.training import runs

    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"no run folder at {run_dir}")
    config = Path(run_dir) / runs.CONFIG
    return runs.read_json(config) if config.is_file() else {}


def run_root(run_dir: Path) -> str | None:
    """The dataset root a run was trained on (its config.json), so re-scoring reads the same data."""
    return run_config(run_dir).get("root")


def draw_settings(seed: int | None, draws: int | None, config: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """The seed and number of test draws to score with: those given (``--seed``, ``--test-draws``), else a
    run's own (so re-scoring a run reproduces its scores), else 0 and 1.

    Raises:
        ValueError: naming the option that is out of range.
    """
    config = config or {}
    seed = int(config.get("seed", 0)) if seed is None else seed
    draws = int(config.get("test_draws", 1)) if draws is None else draws
    if seed < 0:
        raise ValueError(f"--seed must be zero or positive, got {seed}")
    if draws < 1:
        raise ValueError(f"--test-draws must be at least 1, got {draws}")
    return seed, draws


def checkpoint_of_run(run_dir: Path) -> Path:
    """The checkpoint a run reports: best.pt (validation mode) if present, else checkpoint.pt.

    Raises:
        FileNotFoundError: if the run has neither (a Random Forest run, or a run that never finished an epoch).
    """
    from cropcore.training import runs

    for name in (runs.BEST, runs.CHECKPOINT):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    raise FileNotFoundError(f"run {run_dir} has no {runs.BEST} or {runs.CHECKPOINT}")


def data_root(root: str | Path | None) -> Path:
    """The dataset root the commands read: the one given, else the simulated demo."""
    from cropcore.data import demo_root

    return Path(root) if root else demo_root()


def open_regions(regions: Sequence[str], *, root: str | Path | None, level: str, **options: Any) -> list:
    """BreizhCrops datasets of some regions (root default: the demo), checked to have the benchmark's classes.

    Raises:
        ValueError: the root's classmapping.csv has another number of classes (the networks' outputs and the
            metrics are the nine of the benchmark).
    """
    from cropcore.data import BreizhCrops

    datasets = [BreizhCrops(region, root=data_root(root), level=level, **options) for region in regions]
    for dataset in datasets:
        names = dataset.mapping.classnames
        if len(names) != len(CLASSES):
            raise ValueError(f"{dataset.mapping.source or 'the class mapping'} has {len(names)} classes; cropcore "
                             f"trains and scores the benchmark's {len(CLASSES)} ({', '.join(CLASSES)})")
    return datasets


def open_checkpoint(path: Path, regions: Sequence[str], *, root: str | Path | None = None, level: str | None = None,
                    device: str = "cpu") -> tuple[nn.Module, list]:
    """A cropcore checkpoint's network (eval mode) and the regions to score it on, checked to fit each other.

    Raises:
        ValueError: the checkpoint's input dimension or class count does not fit the data (says which).
    """
    from cropcore.training import checkpoint

    payload = checkpoint.load_checkpoint(path)
    level = level or payload.get("level") or "L1C"
    datasets = open_regions(regions, root=root, level=level)
    checkpoint.check_compatible(payload, input_dim=len(datasets[0].bands), num_classes=len(CLASSES),
                                source=f"level {level}")
    return checkpoint.model_from_checkpoint(path, payload, device=device), datasets


def score_checkpoint(path: Path, regions: Sequence[str], *, root: str | Path | None = None, level: str | None = None,
                     seed: int = 0, draws: int = 1, device: str = "cpu") -> Predictions:
    """Predictions of a cropcore checkpoint for every parcel of some regions (``open_checkpoint``'s errors)."""
    network, datasets = open_checkpoint(path, regions, root=root, level=level, device=device)
    return predict(network, datasets, seed=seed, draws=draws, device=device)


def score_run(run_dir: Path, regions: Sequence[str], *, root: str | Path | None = None, level: str | None = None,
              seed: int = 0, draws: int = 1, device: str = "cpu") -> Predictions:
    """Predictions of a run's model (its reported checkpoint, or its saved forest) for some regions.

    ``root`` defaults to the run's own dataset root. A forest scores every parcel once from its 5-day grid
    features (``seed`` and ``draws`` do not apply), on the level it was fitted on.

    Raises:
        FileNotFoundError: no such run folder, or it has no checkpoint.
        ValueError: a forest run that did not keep its forest or is asked for another level, or a checkpoint
            that does not fit the data.
    """
    from cropcore.training import loop, runs

    config = run_config(run_dir)
    root = root or config.get("root")
    if config.get("model") != loop.FOREST:
        return score_checkpoint(checkpoint_of_run(run_dir), regions, root=root, level=level, seed=seed,
                                draws=draws, device=device)
    from cropcore.models.forest import load_forest

    if not (Path(run_dir) / runs.FOREST).is_file():
        raise ValueError(f"{run_dir} did not keep its forest; train it again with --save-forest")
    trained_on = config.get("level", "L1C")
    if level is not None and check_level(level) != trained_on:
        raise ValueError(f"{run_dir}'s forest was fitted on level {trained_on}, it cannot score level {level}")
    forest = load_forest(Path(run_dir) / runs.FOREST)
    datasets = open_regions(regions, root=root, level=trained_on)
    return Predictions.concatenate([loop.forest_predictions(forest, dataset) for dataset in datasets])
