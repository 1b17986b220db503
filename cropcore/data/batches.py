"""`Batches`: epochs of (x, y, field_id) batches drawn straight from packed stores.

The reference pipeline builds each batch from 1024 `__getitem__` calls (one HDF5 open and one
numpy draw per parcel). Here a whole batch is one vectorised step: the ordered 45-step
sub-sample of every parcel is drawn at once (random keys masked beyond each series' length,
then the 45 smallest, sorted), turned into row numbers of the flat values array with the
offsets, gathered in one indexing call and scaled to reflectance in torch, on the target device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cropcore.constants import REFLECTANCE_SCALE, SEQUENCE_LENGTH
from cropcore.data.dataset import BreizhCrops

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class _Source:
    """One dataset's packed values and the first row of each of its parcels.

    ``resident`` holds a copy of the values on the device (int16 view of uint16, or float32)
    when the gather runs there; otherwise rows are gathered from the memory map with numpy.
    """

    values: np.ndarray
    starts: np.ndarray
    resident: torch.Tensor | None = None
    resident_starts: torch.Tensor | None = None


#: float32 scale factor, so every path (numpy, torch, any device) rounds identically.
_SCALE = np.float32(REFLECTANCE_SCALE)


def _as_int16(values: np.ndarray) -> np.ndarray:
    """uint16 viewed as int16: every torch backend handles int16 (the sign is undone on the device)."""
    return values.view(np.int16) if values.dtype == np.uint16 else values


def _to_reflectance(raw: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Gathered raw values on the device (int16 view of uint16, or float32) -> float32 reflectance 0-1."""
    if raw.dtype == torch.int16:
        raw = raw.to(torch.int32).bitwise_and_(0xFFFF)
    return raw.to(torch.float32) * scale


def draw_steps(lengths: np.ndarray, sequence_length: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted time indices [B, sequence_length] for series of the given lengths, in one go.

    Series at least ``sequence_length`` long: without replacement, the positions of the
    ``sequence_length`` smallest random keys among the first ``length`` ones. Shorter series: with
    replacement, floor(u * length). Drawn on the CPU with numpy (small; identical on every device).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    steps = np.empty((len(lengths), sequence_length), dtype=np.int64)
    long = lengths >= sequence_length
    if long.any():
        long_lengths = lengths[long]
        width = int(long_lengths.max())
        keys = rng.random((len(long_lengths), width), dtype=np.float32)
        keys[np.arange(width) >= long_lengths[:, None]] = 2.0
        picked = np.argpartition(keys, sequence_length - 1, axis=1)[:, :sequence_length]
        steps[long] = np.sort(picked, axis=1)
    if not long.all():
        short_lengths = lengths[~long]
        draws = rng.random((len(short_lengths), sequence_length)) * short_lengths[:, None]
        steps[~long] = np.sort(draws.astype(np.int64), axis=1)
    return steps


class Batches:
    """Iterable over one epoch of batches of one or more datasets (all of the same level).

    Args:
        datasets: a `BreizhCrops` or a list of them (concatenated in order).
        batch_size: parcels per batch.
        sequence_length: time steps drawn per parcel (ordered; with replacement when shorter).
        shuffle: visit parcels in a random order each epoch.
        seed: seeds order and draws: the same seed gives the same batches.
        device: where the tensors are yielded ("cpu", "cuda", ...).
        drop_last: drop the last incomplete batch.
        rank, world_size: this process's shard for distributed training. Shards are disjoint; when
            the parcels do not split evenly, the shards are padded by repeating parcels from the
            start of the epoch's order (as `DistributedSampler` does), or, with ``drop_last``,
            the surplus parcels are dropped; either way every rank yields the same number of batches.
        resident: keep the packed values on ``device`` and gather there (default: on CUDA when
            they take less than a quarter of the free GPU memory; never on CPU, where the memory
            map is read directly).

    Each iteration is one epoch and yields ``(x, y, field_id)``: x float32 [B, T, D] reflectance
    0-1 (batch, time, bands) in ``BANDS[level]`` order, y int64 [B] class ids, field_id int64 [B].
    The epoch number advances after each full iteration; `set_epoch` pins it (call it before
    each epoch in distributed training, like `DistributedSampler.set_epoch`).
    """

    def __init__(self, datasets: BreizhCrops | Sequence[BreizhCrops], batch_size: int = 1024,
                 sequence_length: int = SEQUENCE_LENGTH, shuffle: bool = False, seed: int = 0,
                 device: str | torch.device = "cpu", drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, *, resident: bool | None = None) -> None:
        self.datasets = [datasets] if isinstance(datasets, BreizhCrops) else list(datasets)
        _check_arguments(self.datasets, batch_size, sequence_length, rank, world_size)
        self.batch_size = int(batch_size)
        self.sequence_length = int(sequence_length)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.drop_last = bool(drop_last)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.level = self.datasets[0].level
        self._labels = np.concatenate([d.index["classid"].to_numpy(np.int64) for d in self.datasets])
        self._ids = np.concatenate([d.index["id"].to_numpy(np.int64) for d in self.datasets])
        self._lengths = np.concatenate([d.store.lengths for d in self.datasets]).astype(np.int64)
        self._source = np.concatenate([np.full(len(d), k, dtype=np.int64) for k, d in enumerate(self.datasets)])
        self._first = np.cumsum([0] + [len(d) for d in self.datasets])
        self._resident = self._want_resident(resident)
        self._scale = torch.tensor(_SCALE, device=self.device)  # float32 x float32, as on the numpy path
        self._sources = [self._make_source(d) for d in self.datasets]

    # ------------------------------------------------------------------ set-up

    def _want_resident(self, resident: bool | None) -> bool:
        if resident is not None:
            return bool(resident)
        if self.device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(self.device)
        return sum(d.store.values.nbytes for d in self.datasets) < free / 4

    def _make_source(self, dataset: BreizhCrops) -> _Source:
        source = _Source(dataset.store.values, np.array(dataset.store.offsets[:-1], dtype=np.int64))
        if self._resident:
            values = np.array(_as_int16(dataset.store.values))  # a writable in-memory copy
            source.resident = torch.from_numpy(values).to(self.device)
            source.resident_starts = torch.from_numpy(source.starts).to(self.device)
        return source

    # ------------------------------------------------------------------ epoch plan

    def __len__(self) -> int:
        per_rank = self._per_rank()
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def _per_rank(self) -> int:
        total = len(self._labels)
        return total // self.world_size if self.drop_last else -(-total // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Pin the epoch whose order and draws the next iteration uses."""
        self.epoch = int(epoch)

    def _rng(self, *salt: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, *salt]))

    def _order(self) -> np.ndarray:
        """This rank's parcels for the current epoch (same global order on every rank)."""
        total = len(self._labels)
        order = self._rng(0).permutation(total) if self.shuffle else np.arange(total)
        needed = self._per_rank() * self.world_size
        if needed > total:
            order = np.resize(order, needed)  # pads by repeating from the start of the order
        return order[:needed][self.rank::self.world_size]

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        rng = self._rng(1, self.rank)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._batch(order[start:start + self.batch_size], rng)
        self.epoch += 1

    def _batch(self, parcels: np.ndarray, rng: np.random.Generator) -> Batch:
        steps = draw_steps(self._lengths[parcels], self.sequence_length, rng)
        x = self._gather(parcels, steps)
        y = torch.from_numpy(self._labels[parcels])
        field_id = torch.from_numpy(self._ids[parcels])
        if self.device.type != "cpu":
            y, field_id = (t.pin_memory().to(self.device, non_blocking=True) for t in (y, field_id))
        return x, y, field_id

    def _gather(self, parcels: np.ndarray, steps: np.ndarray) -> torch.Tensor:
        """x [B, T, D] float32 on the device: one indexing call per dataset present in the batch."""
        if self.device.type == "cpu" and not self._resident:
            return torch.from_numpy(self._gather_numpy(parcels, steps))
        if len(self._sources) == 1:
            return self._gather_on_device(self._sources[0], parcels, steps)
        width = self.datasets[0].store.values.shape[1]
        x = torch.empty((len(parcels), self.sequence_length, width), dtype=torch.float32, device=self.device)
        for k, chosen in self._by_source(parcels):
            rows = self._gather_on_device(self._sources[k], parcels[chosen] - self._first[k], steps[chosen])
            x[torch.from_numpy(chosen).to(self.device)] = rows
        return x

    def _by_source(self, parcels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(dataset number, positions in the batch) of every dataset present in the batch."""
        sources = self._source[parcels]
        for k in range(len(self._sources)):
            chosen = np.flatnonzero(sources == k)
            if len(chosen):
                yield k, chosen

    def _gather_numpy(self, parcels: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """CPU path: fancy indexing straight from the memory maps, scaled in float32."""
        if len(self._sources) == 1:
            source = self._sources[0]
            return np.multiply(source.values[source.starts[parcels][:, None] + steps], _SCALE, dtype=np.float32)
        width = self.datasets[0].store.values.shape[1]
        x = np.empty((len(parcels), self.sequence_length, width), dtype=np.float32)
        for k, chosen in self._by_source(parcels):
            source = self._sources[k]
            rows = source.starts[parcels[chosen] - self._first[k]][:, None] + steps[chosen]
            x[chosen] = np.multiply(source.values[rows], _SCALE, dtype=np.float32)
        return x

    def _gather_on_device(self, source: _Source, local: np.ndarray, steps: np.ndarray) -> torch.Tensor:
        """Rows of one dataset on the device: gathered there when resident, else on the host and sent."""
        if source.resident is not None:
            starts = source.resident_starts[torch.from_numpy(local).to(self.device)]
            rows = starts[:, None] + torch.from_numpy(steps).to(self.device)
            return _to_reflectance(source.resident[rows], self._scale)
        raw = torch.from_numpy(_as_int16(source.values[source.starts[local][:, None] + steps])).pin_memory()
        return _to_reflectance(raw.to(self.device, non_blocking=True), self._scale)


def _check_arguments(datasets: list[BreizhCrops], batch_size: int, sequence_length: int, rank: int,
                     world_size: int) -> None:
    """ValueErrors that say what was expected."""
    if not datasets:
        raise ValueError("Batches needs at least one dataset")
    if not all(isinstance(d, BreizhCrops) for d in datasets):
        raise TypeError("Batches takes BreizhCrops datasets (one or a list)")
    levels = sorted({d.level for d in datasets})
    if len(levels) > 1:
        raise ValueError(f"all datasets must share one level (same bands), got {', '.join(levels)}")
    if int(batch_size) < 1 or int(sequence_length) < 1:
        raise ValueError(f"batch_size and sequence_length must be positive, got {batch_size}, {sequence_length}")
    if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
        raise ValueError(f"rank must be in 0..world_size-1 with world_size >= 1, got rank={rank}, "
                         f"world_size={world_size}")
