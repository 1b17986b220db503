"""Training with the paper's protocol, writing a run folder another process can watch.

One function, ``train(config)``, serves the seven networks and the Random Forest, one process or many
(``torchrun``). The networks: Adam, NLL loss on log-probabilities, seeded batches and dropout (the seed
of epoch ``e`` is derived from the run seed, so a resumed run reproduces an uninterrupted one), per-epoch
train loss and test scores. Validation mode keeps the epoch with the lowest FRH03 loss; evaluation modes
report the last epoch, so nothing is ever chosen on an evaluation test region.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import cropcore
from cropcore.constants import BANDS, CLASSES, SEQUENCE_LENGTH, check_device, check_level
from cropcore.data import layout
from cropcore.evaluation.inference import Predictions, data_root, open_regions, predict
from cropcore.evaluation.metrics import region_report
from cropcore.training import checkpoint, distributed, protocol, runs
from cropcore.training.cuda_graphs import TrainingForward
from cropcore.training.distributed import Distributed

#: Name of the Random Forest in ``--model`` (it is not a network of the registry).
FOREST = "RandomForest"
#: When set to a folder, every rank appends the parcel ids of each training batch to rank<r>.txt there
#: (a diagnostic used by the DDP test to prove the shards are disjoint).
SHARD_LOG_ENV = "CROPCORE_SHARD_LOG"
_STATUS_EVERY_SECONDS = 2.0
_TERMINATED = threading.Event()  # set by SIGTERM (see stop_on_sigterm)


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite: training cannot recover, so the run stops and is marked failed."""

    def __init__(self, epoch: int, batch: int | None, value: float, what: str = "training loss") -> None:
        where = f"epoch {epoch}, batch {batch}" if batch is not None else f"epoch {epoch}"
        super().__init__(f"non-finite {what} ({value}) at {where}")
        self.epoch, self.batch = epoch, batch


class Cancelled(Exception):
    """Someone created the run's ``cancel`` file."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run; written as config.json (with the split and data facts).

    ``learning_rate``, ``weight_decay`` and ``epochs`` hold the resolved values (the paper's per model
    unless overridden); ``hparams`` holds only the overrides of the published-checkpoint settings.
    """

    model: str
    level: str = "L1C"
    mode: str = "evaluation1"
    root: str = ""
    out: str = "runs"
    epochs: int = 1
    batch_size: int = 1024
    learning_rate: float | None = None
    weight_decay: float | None = None
    seed: int = 0
    device: str = "cpu"
    hparams: Mapping[str, Any] = field(default_factory=dict)
    test_draws: int = 1
    sequence_length: int = SEQUENCE_LENGTH
    run_name: str | None = None
    progress: bool = True
    save_forest: bool = False
    cuda_graphs: bool = True

    @property
    def is_forest(self) -> bool:
        return self.model.lower() == FOREST.lower()


@dataclass
class Hooks:
    """Optional callbacks for tests and tools (never needed for a normal run).

    ``on_batch(epoch, batch, model)`` runs before each training step (epoch and batch 1-based);
    ``on_epoch_end(epoch, run_dir)`` after each epoch's files are written.
    """

    on_batch: Callable[[int, int, nn.Module], None] | None = None
    on_epoch_end: Callable[[int, Path], None] | None = None


@dataclass(frozen=True)
class TrainResult:
    """Where the run lives and how it ended (metrics are those written to metrics.json)."""

    run_dir: Path
    state: str
    metrics: dict[str, Any] | None


def resolve_config(model: str, **settings: Any) -> TrainConfig:
    """A TrainConfig with the paper's values for whatever is None or absent.

    Raises:
        ValueError: unknown model (listing the valid names), mode or level; impossible numbers.
    """
    settings = {key: value for key, value in settings.items() if value is not None}
    settings["level"] = check_level(settings.get("level", "L1C"))
    settings["mode"] = protocol.fold(settings.get("mode", "evaluation1")).mode
    settings["root"] = str(data_root(settings.get("root")).absolute())  # re-scoring works from any folder
    settings["device"] = check_device(settings.get("device", "cpu"))
    settings["hparams"] = dict(settings.get("hparams") or {})
    if model.lower() == FOREST.lower():
        _check_forest_settings(settings)
        config = TrainConfig(model=FOREST, **{"epochs": 1, **settings})
    else:
        spec = _find_spec(model)
        unknown = set(settings["hparams"]) - set(spec.hparams)
        if unknown:
            raise ValueError(f"{spec.name} has no hyperparameter(s) {sorted(unknown)}; valid: {sorted(spec.hparams)}")
        if settings.get("save_forest"):
            raise ValueError(f"save_forest applies to {FOREST} only; {spec.name} saves its checkpoint anyway")
        defaults = {"epochs": spec.epochs, "learning_rate": spec.learning_rate, "weight_decay": spec.weight_decay}
        config = TrainConfig(model=spec.name, **{**defaults, **settings})
    _validate(config)
    return config


def _check_forest_settings(settings: Mapping[str, Any]) -> None:
    """The forest has no epochs or optimizer; its hyperparameters are those of ``models.RandomForest``."""
    ignored = [name for name in ("learning_rate", "weight_decay") if name in settings]
    if settings.get("epochs", 1) != 1:
        ignored.append("epochs")
    if ignored:
        raise ValueError(f"{FOREST} takes no {', '.join(ignored)} (it is not trained by gradient descent)")
    if settings.get("test_draws", 1) != 1:
        raise ValueError(f"{FOREST} takes no test_draws: it scores the 5-day grid features of every date, "
                         f"not a random draw of 45")
    from cropcore.models.forest import RandomForest

    valid = set(RandomForest().get_params()) - {"random_state"}  # the run's seed sets it
    unknown = set(settings["hparams"]) - valid
    if unknown:
        raise ValueError(f"{FOREST} has no hyperparameter(s) {sorted(unknown)}; valid: {sorted(valid)}")
    # scikit-learn checks the values only when fitting: check them now, before a run folder exists
    RandomForest(**settings["hparams"]).make_pipeline().named_steps["forest"]._validate_params()


def _find_spec(model: str):
    from cropcore.models import find_spec

    try:
        return find_spec(model)
    except ValueError as error:
        raise ValueError(f"{error}, or {FOREST}") from None


def _validate(config: TrainConfig) -> None:
    check_device(config.device)
    for name in ("epochs", "batch_size", "test_draws", "sequence_length"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**63:
        raise ValueError(f"seed must be an integer from 0 to 2**63 - 1, got {config.seed!r}")
    if not config.is_forest:
        if not (config.learning_rate and 0 < config.learning_rate < math.inf):
            raise ValueError(f"learning_rate must be positive and finite, got {config.learning_rate!r}")
        if config.weight_decay is None or not 0 <= config.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be zero or positive and finite, got {config.weight_decay!r}")


def config_record(config: TrainConfig, simulated: bool) -> dict[str, Any]:
    """config.json: the configuration plus the split, the data's nature and the code version."""
    split = protocol.fold(config.mode)
    return {
        **asdict(config),
        "hparams": dict(config.hparams),
        "train_regions": list(split.train),
        "test_regions": [split.test],
        "reported_epoch": "best by test loss" if split.selects_best_epoch else "last",
        "bands": list(BANDS[config.level]),
        "classes": list(CLASSES),
        "simulated": simulated,
        "cropcore_version": cropcore.__version__,
        "world_size": distributed.from_environment().world_size,
    }


def config_from_record(record: Mapping[str, Any], **changes: Any) -> TrainConfig:
    """Rebuild a TrainConfig from config.json (extra keys ignored), with ``changes`` applied."""
    if not isinstance(record, Mapping):
        raise ValueError(f"a run's {runs.CONFIG} must hold an object, got {type(record).__name__}")
    names = {item.name for item in fields(TrainConfig)}
    changes = {key: value for key, value in changes.items() if value is not None}
    if "device" in changes:
        changes["device"] = check_device(changes["device"])
    config = replace(TrainConfig(**{key: value for key, value in record.items() if key in names}), **changes)
    _validate(config)
    return config


def _datasets(config: TrainConfig) -> tuple[list, list]:
    """The training and test regions of the run's fold (``open_regions``' errors)."""
    split = protocol.fold(config.mode)
    opened = open_regions([*split.train, split.test], root=config.root, level=config.level,
                          sequence_length=config.sequence_length)
    return opened[:-1], opened[-1:]


# --------------------------------------------------------------------------------------------- the run


def train(config: TrainConfig, *, resume: Path | None = None, hooks: Hooks | None = None) -> TrainResult:
    """Train (or resume) one run and write its folder.

    Args:
        config: the resolved configuration (``resolve_config``).
        resume: an existing run folder to continue from its checkpoint.pt (its own config is used).
        hooks: optional callbacks.

    Returns:
        The run folder, its final state and its metrics.

    Raises:
        NonFiniteLossError: after marking the run failed.
        Exception: anything unexpected, after marking the run failed with the error.
    """
    context = distributed.from_environment()
    device = distributed.setup(context, config.device)
    try:
        if config.is_forest and context.enabled:
            raise ValueError(f"{FOREST} runs in one process (it uses every core itself); do not start it with torchrun")
        # what a user can get wrong (data, hyperparameters, the run to resume) fails before a run folder is made
        datasets = _datasets(config)
        network = None if config.is_forest else _build_network(config, device)
        run_dir, start = _open_run_dir(config, resume, context, network)
        status = runs.StatusWriter(run_dir, config.epochs, start_epoch=start) if context.is_main else None
        try:
            if config.is_forest:
                metrics = _fit_forest(config, datasets, run_dir, status)
            else:
                metrics = _fit_network(config, datasets, network, run_dir, status, device, context, resume is not None,
                                       hooks or Hooks())
        except Cancelled:
            if status:
                status.finish("cancelled")
            return TrainResult(run_dir, "cancelled", None)
        except KeyboardInterrupt:
            if status:
                status.finish("cancelled", "interrupted")
            raise
        except BaseException as error:
            if status:
                message = str(error) if isinstance(error, NonFiniteLossError) else f"{type(error).__name__}: {error}"
                status.finish("failed", message)
            raise
        if status:
            status.finish("done")
        return TrainResult(run_dir, "done", metrics)
    finally:
        distributed.teardown(context)


def _open_run_dir(config: TrainConfig, resume: Path | None, context: Distributed,
                  network: nn.Module | None) -> tuple[Path, int]:
    """Rank 0 creates (or reopens) the folder and writes config.json; every rank learns its path and the
    epochs already completed."""
    if resume is not None:
        run_dir = Path(resume)
        start = _resumable_epoch(run_dir, config, network)
        if context.is_main:
            # the final results of the run so far no longer describe the model once it trains on
            for name in (runs.CANCEL, runs.METRICS, runs.PREDICTIONS):
                (run_dir / name).unlink(missing_ok=True)
            runs.write_json(run_dir / runs.CONFIG, config_record(config, layout.is_simulated(config.root)))
        return run_dir, start
    path = None
    if context.is_main:
        path = runs.create_run_dir(Path(config.out), config.model, config.level, config.mode, config.run_name)
        runs.write_json(path / runs.CONFIG, config_record(config, layout.is_simulated(config.root)))
    return Path(distributed.broadcast_object(str(path) if path else None, context)), 0


def _resumable_epoch(run_dir: Path, config: TrainConfig, network: nn.Module | None) -> int:
    """The epochs a run has completed, once it is sure it can go on to ``config.epochs`` (nothing is changed
    before: a refused resume leaves the run as it was).

    Raises:
        ValueError: the run is still training, its checkpoint is unreadable or does not fit the run's network,
            or it has already trained as many epochs as asked for (or more).
        FileNotFoundError: it never completed an epoch (no checkpoint to go on from).
    """
    status = runs.read_status(run_dir)
    if status["state"] == "running":
        raise ValueError(f"cannot resume {run_dir}: it is still training (pid {status.get('pid')}); cancel it first")
    if config.is_forest:
        raise ValueError(f"cannot resume {run_dir}: a {FOREST} is fitted in one go; start it again")
    if not (run_dir / runs.CHECKPOINT).is_file():
        raise FileNotFoundError(f"cannot resume {run_dir}: it has no {runs.CHECKPOINT} (it stopped before its first "
                                f"epoch ended); start it again")
    payload = checkpoint.load_checkpoint(run_dir / runs.CHECKPOINT)
    if payload["model"] != config.model:
        raise ValueError(f"cannot resume {run_dir}: its {runs.CHECKPOINT} holds a {payload['model']}, its "
                         f"{runs.CONFIG} says {config.model}")
    checkpoint.check_compatible(payload, input_dim=len(BANDS[config.level]), num_classes=len(CLASSES),
                                source=f"the run's level {config.level}")
    try:
        checkpoint.load_state(network, payload)  # _restore loads it again, with the optimizer's state
    except RuntimeError as error:
        detail = "; ".join(line.strip() for line in str(error).splitlines()[1:4])
        raise ValueError(f"cannot resume {run_dir}: its {runs.CHECKPOINT} does not fit the network its "
                         f"{runs.CONFIG} describes ({detail})") from None
    completed = int(payload["epoch"])
    if completed > config.epochs or (completed == config.epochs and status["state"] == "done"):
        raise ValueError(f"cannot resume {run_dir}: it has already trained {completed} epochs (asked for "
                         f"{config.epochs}); pass --epochs above {completed} to train on")
    return completed


def _epoch_seed(config: TrainConfig, epoch: int, rank: int) -> int:
    """Seed of the dropout/initialisation stream for one epoch: resuming never depends on history."""
    return (config.seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**63 - 1)


def _build_network(config: TrainConfig, device: str) -> nn.Module:
    """The run's network, its initial weights drawn from the run's seed (hyperparameter errors name the value)."""
    from cropcore import models

    torch.manual_seed(config.seed)
    try:
        network = models.build(config.model, input_dim=len(BANDS[config.level]), num_classes=len(CLASSES),
                               sequence_length=config.sequence_length, **dict(config.hparams))
    except TypeError as error:  # a hyperparameter of the wrong type
        raise ValueError(f"{config.model}: {error}") from None
    return network.to(device)


def _fit_network(config: TrainConfig, datasets: tuple[list, list], network: nn.Module, run_dir: Path,
                 status: runs.StatusWriter | None, device: str, context: Distributed, resuming: bool,
                 hooks: Hooks) -> dict[str, Any] | None:
    """Epoch loop of a network; returns metrics.json content (rank 0) after writing the final files."""
    from cropcore.data import Batches

    train_sets, test_sets = datasets
    on_cuda = device.startswith("cuda")
    if on_cuda:
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest convolution once
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                 fused=on_cuda or None)
    start, best, log_rows = 0, {"epoch": None, "test_loss": math.inf}, []
    if resuming:
        start, best, log_rows = _restore(run_dir, network, optimizer, config)
    model: nn.Module = network
    if context.enabled:
        model = nn.parallel.DistributedDataParallel(
            network, device_ids=[torch.device(device)] if device.startswith("cuda") else None)
    batches = Batches(train_sets, batch_size=config.batch_size, sequence_length=config.sequence_length, shuffle=True,
                      seed=config.seed, device=device, drop_last=False, rank=context.rank,
                      world_size=context.world_size)
    forward = TrainingForward(model, device, use_graphs=config.cuda_graphs)
    selects_best = protocol.fold(config.mode).selects_best_epoch
    epoch_seconds: list[float] = []
    best_state, scored = None, None
    for epoch in range(start + 1, config.epochs + 1):
        began = time.perf_counter()
        torch.manual_seed(_epoch_seed(config, epoch, context.rank))
        batches.set_epoch(epoch - 1)
        train_loss = _train_epoch(model, forward, optimizer, batches, epoch, config, run_dir, status, context, device,
                                  hooks, epoch_seconds)
        scored = predict(network, test_sets, seed=config.seed, draws=1, device=device, context=context)
        row = _log_row(epoch, train_loss, scored, time.perf_counter() - began)
        if not math.isfinite(row["test_loss"]):  # the epoch's last update (its loss was finite) broke the weights
            raise NonFiniteLossError(epoch, None, row["test_loss"], "test loss (the network's outputs)")
        log_rows.append(row)
        epoch_seconds.append(row["seconds"])
        if selects_best and row["test_loss"] < best["test_loss"]:
            best = {"epoch": epoch, "test_loss": row["test_loss"]}
            best_state = {key: value.detach().cpu().clone() for key, value in network.state_dict().items()}
            if context.is_main:
                _save(run_dir / runs.BEST, network, optimizer, config, epoch, best)
        if context.is_main:
            _save(run_dir / runs.CHECKPOINT, network, optimizer, config, epoch, best)
            runs.write_log(run_dir / runs.LOG, log_rows)
            status.write(epoch=epoch, batch=0, eta_seconds=float(np.mean(epoch_seconds)) * (config.epochs - epoch))
            _print_epoch(row, config.epochs)
        if hooks.on_epoch_end:
            hooks.on_epoch_end(epoch, run_dir)
    final, reported_epoch = _final_predictions(network, test_sets, config, device, context, best, best_state, scored,
                                               run_dir)
    if not context.is_main:
        return None
    return write_results(run_dir, final, epoch=reported_epoch, mode=config.mode, test_draws=config.test_draws,
                         seed=config.seed, simulated=layout.is_simulated(config.root))


def _final_predictions(network: nn.Module, test_sets: list, config: TrainConfig, device: str, context: Distributed,
                       best: Mapping[str, Any], best_state: Mapping[str, torch.Tensor] | None,
                       last_scored: Predictions | None, run_dir: Path) -> tuple[Predictions, int]:
    """Predictions of the reported model: the best epoch (validation) or the last, with ``test_draws`` draws.

    The best weights come from memory (every rank holds them), or from best.pt when they were found before a
    resume. The last epoch's single-draw scores are reused when nothing else is asked for.
    """
    reported_epoch = config.epochs
    if protocol.fold(config.mode).selects_best_epoch and best["epoch"] is not None:
        reported_epoch = int(best["epoch"])
        if best_state is not None:
            network.load_state_dict(best_state)
        else:
            checkpoint.load_state(network, checkpoint.load_checkpoint(run_dir / runs.BEST))
    elif config.test_draws == 1 and last_scored is not None:
        return last_scored, reported_epoch
    return predict(network, test_sets, seed=config.seed, draws=config.test_draws, device=device,
                   context=context), reported_epoch


def _restore(run_dir: Path, network: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig):
    """Weights, optimizer, completed epochs, best-so-far and log rows from the run's checkpoint."""
    payload = checkpoint.load_checkpoint(run_dir / runs.CHECKPOINT)
    checkpoint.check_compatible(payload, input_dim=len(BANDS[config.level]), num_classes=len(CLASSES),
                                source=f"level {config.level}")
    checkpoint.load_state(network, payload)
    optimizer.load_state_dict(payload["optimizer_state"])
    best_epoch = payload.get("best_epoch")
    best = {"epoch": None if best_epoch in (None, -1) else int(best_epoch),
            "test_loss": float(payload.get("best_test_loss", math.inf))}
    completed = int(payload["epoch"])
    return completed, best, runs.read_log(run_dir / runs.LOG)[:completed]


def _save(path: Path, network: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, epoch: int,
          best: Mapping[str, Any]) -> None:
    """checkpoint.pt / best.pt in the models package's format, plus what resuming needs."""
    from cropcore import models

    models.save_checkpoint(
        path, network, config.model, dict(config.hparams), level=config.level, optimizer=optimizer, epoch=epoch,
        extra={"best_epoch": -1 if best["epoch"] is None else int(best["epoch"]),
               "best_test_loss": float(best["test_loss"]), "seed": config.seed},
    )


def _train_epoch(model: nn.Module, forward: TrainingForward, optimizer: torch.optim.Optimizer, batches, epoch: int,
                 config: TrainConfig, run_dir: Path, status: runs.StatusWriter | None, context: Distributed, device: str,
                 hooks: Hooks, epoch_seconds: list[float]) -> float:
    """One pass over this rank's shard; returns the mean training loss over all ranks.

    Every step all ranks agree (one small all-reduce) on whether to stop, so a cancel seen by rank 0 or a
    NaN on any rank stops every rank at the same batch instead of leaving the others waiting. The check of
    a step's flags waits until the next step has been queued: the GPU is never left idle while the host
    reads a loss, and a failed run still names the batch whose loss was not finite.
    """
    from tqdm import tqdm

    model.train()
    steps = distributed.all_min_int(len(batches), context, device)
    shard_log = _shard_log(context)
    shard = -(-sum(len(dataset) for dataset in batches.datasets) // context.world_size)
    progress = tqdm(total=min(steps * config.batch_size, shard), unit="parcel", unit_scale=True, leave=False,
                    desc=f"epoch {epoch}/{config.epochs}", dynamic_ncols=True,
                    disable=not (config.progress and context.is_main))
    total_loss, parcels, began, last_status = 0.0, 0, time.perf_counter(), 0.0
    pending: tuple[int, torch.Tensor, torch.Tensor, int] | None = None  # step, loss, flags, batch size

    def settle(step: int, loss: torch.Tensor, flags: torch.Tensor, size: int) -> None:
        nonlocal total_loss, parcels, last_status
        flags = distributed.all_max(flags, context)
        if flags[0] > 0:
            raise NonFiniteLossError(epoch, step, float(loss.cpu()))
        if flags[1] > 0:
            raise Cancelled()
        value = float(loss)
        total_loss += value * size
        parcels += size
        elapsed = time.perf_counter() - began
        progress.update(size)
        progress.set_postfix(loss=f"{value:.3f}")
        if status and elapsed - last_status >= _STATUS_EVERY_SECONDS:
            last_status = elapsed
            per_epoch = float(np.mean(epoch_seconds)) if epoch_seconds else elapsed / step * steps
            status.write(batch=step, batches=steps, eta_seconds=elapsed / step * (steps - step)
                         + per_epoch * (config.epochs - epoch))

    for step, (x, y, field_ids) in enumerate(batches, start=1):
        if step > steps:
            break
        if hooks.on_batch:
            hooks.on_batch(epoch, step, model)
        if shard_log:
            shard_log.write(" ".join(map(str, field_ids.tolist())) + "\n")
        optimizer.zero_grad(set_to_none=True)
        loss = F.nll_loss(forward(x).float(), y)
        not_finite = (~torch.isfinite(loss)).float().view(1)
        flags = torch.cat([not_finite, not_finite.new_full((1,), float(context.is_main and _stop_wanted(run_dir)))])
        loss.backward()
        optimizer.step()
        if pending is not None:
            settle(*pending)
        pending = (step, loss.detach(), flags, len(y))
    if pending is not None:
        settle(*pending)
    progress.close()
    if shard_log:
        shard_log.close()
    return distributed.all_mean(total_loss / max(parcels, 1), context, device)


def _stop_wanted(run_dir: Path) -> bool:
    """A cancel file, or SIGTERM (how process managers stop a run) since the run started."""
    return _TERMINATED.is_set() or runs.cancel_requested(run_dir)


def _on_sigterm(signum: int, frame: object) -> None:
    _TERMINATED.set()


def stop_on_sigterm() -> None:
    """Turn SIGTERM into a cancel at the next batch, so a terminated run ends "cancelled", not "running"."""
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def _raise_cancelled(signum: int, frame: object) -> None:
    raise Cancelled()


@contextlib.contextmanager
def _stoppable(run_dir: Path) -> Iterator[None]:
    """Let SIGTERM or the cancel file stop a long call that never returns to the training loop (a forest's
    fit): SIGTERM raises ``Cancelled`` in the main thread, and a watcher thread turns the cancel file into a
    SIGTERM. Outside the main thread (no signal handlers there) the call runs to its end."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.5):
            if _stop_wanted(run_dir):
                os.kill(os.getpid(), signal.SIGTERM)
                return

    previous = signal.signal(signal.SIGTERM, _raise_cancelled)
    watcher = threading.Thread(target=watch, name="cancel-watcher", daemon=True)
    watcher.start()
    try:
        if _TERMINATED.is_set():
            raise Cancelled()
        yield
    finally:
        finished.set()
        watcher.join()
        signal.signal(signal.SIGTERM, previous)


def _shard_log(context: Distributed):
    folder = os.environ.get(SHARD_LOG_ENV)
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return open(Path(folder) / f"rank{context.rank}.txt", "a", encoding="utf-8")  # noqa: SIM115 - closed by caller


def _log_row(epoch: int, train_loss: float, scored: Predictions, seconds: float) -> dict[str, float]:
    scores = region_report(scored.true, scored.predicted)
    return {"epoch": epoch, "train_loss": train_loss, "test_loss": scored.nll(),
            **{key: scores[key] for key in ("overall_accuracy", "average_accuracy", "weighted_f1", "kappa")},
            "seconds": seconds}


def _print_epoch(row: Mapping[str, float], epochs: int) -> None:
    print(f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f}, test loss {row['test_loss']:.4f}, "
          f"OA {row['overall_accuracy']:.3f}, AA {row['average_accuracy']:.3f}, "
          f"wF1 {row['weighted_f1']:.3f}, kappa {row['kappa']:.3f} ({row['seconds']:.1f} s)", flush=True)


def write_results(run_dir: Path, predictions: Predictions, *, epoch: int, mode: str, test_draws: int,
                  seed: int, simulated: bool) -> dict[str, Any]:
    """predictions.parquet and metrics.json (one report per test region), both atomically."""
    table = predictions.frame()
    runs.write_with(run_dir / runs.PREDICTIONS, lambda temporary: table.to_parquet(temporary, index=False))
    metrics = {
        "mode": mode, "epoch": epoch, "test_draws": test_draws, "test_seed": seed, "simulated": simulated,
        "regions": {region: region_report(predictions.region(region).true, predictions.region(region).predicted)
                    for region in dict.fromkeys(predictions.regions.tolist())},
    }
    runs.write_json(run_dir / runs.METRICS, metrics)
    return metrics


# ------------------------------------------------------------------------------------------- the forest


def _fit_forest(config: TrainConfig, datasets: tuple[list, list], run_dir: Path,
                status: runs.StatusWriter | None) -> dict[str, Any]:
    """Grid features -> forest fit on the training regions -> probabilities on the test region."""
    began = time.perf_counter()
    train_sets, test_sets = datasets
    train_features, train_labels = _forest_inputs(train_sets)
    estimator = _forest(config)
    with _stoppable(run_dir):
        estimator.fit(train_features, train_labels)
    scored = Predictions.concatenate([forest_predictions(estimator, dataset) for dataset in test_sets])
    if config.save_forest:
        from cropcore.models.forest import save_forest

        save_forest(estimator, run_dir / runs.FOREST)
    runs.write_log(run_dir / runs.LOG, [_log_row(1, float("nan"), scored, time.perf_counter() - began)])
    if status:
        status.write(epoch=1, eta_seconds=0.0)
    return write_results(run_dir, scored, epoch=1, mode=config.mode, test_draws=1, seed=config.seed,
                         simulated=layout.is_simulated(config.root))


def forest_predictions(estimator, dataset) -> Predictions:
    """A fitted forest's class probabilities for every parcel of one region (all nine class columns)."""
    features, labels = _forest_inputs([dataset])
    probabilities = np.zeros((len(labels), len(CLASSES)), np.float32)
    # a class absent from training has no column
    probabilities[:, np.asarray(estimator.classes_, dtype=np.int64)] = estimator.predict_proba(features)
    ids = dataset.index["id"].to_numpy(np.int64)
    return Predictions(ids, np.full(len(ids), dataset.region, dtype=object), labels, probabilities)


def _forest_inputs(datasets) -> tuple[np.ndarray, np.ndarray]:
    """Flattened 5-day grid features [N, 71 * D] and class ids of some regions."""
    features, labels = [], []
    for dataset in datasets:
        grid, _fallback = dataset.grid_features()
        features.append(np.asarray(grid, dtype=np.float32).reshape(len(grid), -1))
        labels.append(dataset.index["classid"].to_numpy(np.int64))
    return np.concatenate(features), np.concatenate(labels)


def _forest(config: TrainConfig):
    """The models package's forest (the paper's settings), with the run's ``hparams`` and seed."""
    from cropcore.models.forest import RandomForest

    return RandomForest(**dict(config.hparams), random_state=config.seed)

