"""`Batches`: shapes, sub-sampling, determinism, epochs, sharding, several datasets, devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fakedata
from cropcore.data import Batches, BreizhCrops
from cropcore.data.batches import draw_steps


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("batches-root")
    fakedata.write_root(folder, regions=("frh01", "frh02"), levels=("L1C", "L2A"), n_parcels=37)
    return folder


@pytest.fixture(scope="module")
def datasets(root: Path) -> list[BreizhCrops]:
    return [BreizhCrops(region, root=root) for region in ("frh01", "frh02")]


def _collect(batches: Batches) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, ids = zip(*batches)
    return torch.cat(xs), torch.cat(ys), torch.cat(ids)


def _series_by_id(datasets: list[BreizhCrops]) -> dict[int, tuple[np.ndarray, int]]:
    return {ds.raw(i).field_id: (ds.raw(i).reflectance, ds.raw(i).classid) for ds in datasets for i in range(len(ds))}


def test_yields_every_parcel_once_with_the_right_shapes(datasets: list[BreizhCrops]) -> None:
    batches = Batches(datasets, batch_size=16)
    total = sum(len(d) for d in datasets)
    assert len(batches) == -(-total // 16) == len(list(batches))
    x, y, ids = _collect(batches)
    assert x.shape == (total, 45, 13) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and ids.dtype == torch.int64
    expected = np.concatenate([d.index["id"].to_numpy() for d in datasets])
    np.testing.assert_array_equal(ids.numpy(), expected)
    labels = np.concatenate([d.index["classid"].to_numpy() for d in datasets])
    np.testing.assert_array_equal(y.numpy(), labels)


def test_samples_are_ordered_rows_of_each_series(datasets: list[BreizhCrops]) -> None:
    series = _series_by_id(datasets)
    x, y, ids = _collect(Batches(datasets, batch_size=10, shuffle=True, seed=5))
    short = long = 0
    for sample, label, parcel_id in zip(x.numpy(), y.tolist(), ids.tolist()):
        reflectance, classid = series[parcel_id]
        assert label == classid
        matches = (np.abs(sample[:, None, :] - reflectance[None]) < 1e-7).all(axis=2)
        assert matches.any(axis=1).all()
        steps = matches.argmax(axis=1)
        if len(reflectance) >= 45:
            long += 1
            assert (np.diff(steps) > 0).all()
        else:
            short += 1
            assert (np.diff(steps) >= 0).all()
    assert short and long


def test_draw_steps_without_and_with_replacement() -> None:
    rng = np.random.default_rng(0)
    lengths = np.array([45, 102, 3, 44, 51])
    steps = draw_steps(lengths, 45, rng)
    assert steps.shape == (5, 45) and steps.dtype == np.int64
    assert (steps < lengths[:, None]).all() and (steps >= 0).all()
    np.testing.assert_array_equal(steps[0], np.arange(45))
    assert all(len(np.unique(steps[i])) == 45 for i in (0, 1, 4))
    assert (np.diff(steps, axis=1) >= 0).all()
    assert set(steps[2].tolist()) == {0, 1, 2} and len(np.unique(steps[3])) < 45
    counts = np.bincount(draw_steps(np.full(4000, 102), 45, rng).ravel(), minlength=102)
    assert counts.min() > 0.8 * counts.mean()  # every position is drawn about as often
    short = np.bincount(draw_steps(np.full(4000, 10), 45, rng).ravel(), minlength=10)
    assert short.min() > 0.8 * short.mean()


def test_same_seed_same_output_and_epochs_differ(datasets: list[BreizhCrops]) -> None:
    first = _collect(Batches(datasets, batch_size=16, shuffle=True, seed=3))
    again = _collect(Batches(datasets, batch_size=16, shuffle=True, seed=3))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other_seed = _collect(Batches(datasets, batch_size=16, shuffle=True, seed=4))
    assert not torch.equal(first[2], other_seed[2])
    batches = Batches(datasets, batch_size=16, shuffle=True, seed=3)
    epoch0 = _collect(batches)
    epoch1 = _collect(batches)
    assert not torch.equal(epoch0[2], epoch1[2]) and sorted(epoch0[2].tolist()) == sorted(epoch1[2].tolist())
    batches.set_epoch(0)
    assert torch.equal(_collect(batches)[0], epoch0[0])
    batches.set_epoch(1)
    assert torch.equal(_collect(batches)[0], epoch1[0])


def test_without_shuffle_the_order_is_fixed_but_draws_change_per_epoch(datasets: list[BreizhCrops]) -> None:
    batches = Batches(datasets[0], batch_size=64)
    x0, _, ids0 = _collect(batches)
    x1, _, ids1 = _collect(batches)
    assert torch.equal(ids0, ids1) and not torch.equal(x0, x1)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_equal_shards(datasets: list[BreizhCrops], world_size: int, drop_last: bool) -> None:
    total = sum(len(d) for d in datasets)
    shards = [Batches(datasets, batch_size=8, shuffle=True, seed=1, rank=r, world_size=world_size,
                      drop_last=drop_last) for r in range(world_size)]
    assert len({len(s) for s in shards}) == 1
    ids = [_collect(s)[2].tolist() for s in shards]
    assert all(len(i) == len(s) * 8 or not drop_last for i, s in zip(ids, shards))
    if drop_last:
        flat = [p for shard in ids for p in shard]
        assert len(flat) == len(set(flat)) and all(len(i) % 8 == 0 for i in ids)
    else:
        assert len({len(i) for i in ids}) == 1
        unique = {p for shard in ids for p in shard}
        assert len(unique) == total  # every parcel is seen; padding repeats a few
        per_rank = -(-total // world_size)
        assert sum(len(i) for i in ids) == per_rank * world_size
        assert len(set(ids[0]) & set(ids[1])) <= per_rank * world_size - total


def test_drop_last_drops_the_incomplete_batch(datasets: list[BreizhCrops]) -> None:
    batches = Batches(datasets[0], batch_size=10, drop_last=True)
    sizes = [len(y) for _, y, _ in batches]
    assert sizes == [10] * (len(datasets[0]) // 10) and len(batches) == len(sizes)


def test_resident_gather_equals_the_memory_mapped_one(datasets: list[BreizhCrops]) -> None:
    mapped = _collect(Batches(datasets, batch_size=16, shuffle=True, seed=9))
    resident = _collect(Batches(datasets, batch_size=16, shuffle=True, seed=9, resident=True))
    assert all(torch.equal(a, b) for a, b in zip(mapped, resident))


def test_float32_stores_are_gathered_too(tmp_path: Path) -> None:
    import h5py

    fake = fakedata.write_region(tmp_path, "frh03", "L2A", quirks=False, n_parcels=6)
    with h5py.File(fake.h5_path, "r+") as h5:
        h5[fake.parcels[0].key][0, 1] = 100.5
    ds = BreizhCrops("frh03", root=tmp_path, level="L2A")
    assert ds.store.values.dtype == np.float32
    x, _, _ = next(iter(Batches(ds, batch_size=6, sequence_length=200)))
    first = ds.raw(0).reflectance
    assert x.shape == (6, 200, 10) and np.isclose(x[0, 0, 0].item(), 100.5e-4) and x[0, 0, 0] == first[0, 0]


def test_bad_arguments(root: Path, datasets: list[BreizhCrops]) -> None:
    l2a = BreizhCrops("frh01", root=root, level="L2A")
    with pytest.raises(ValueError, match="one level"):
        Batches([datasets[0], l2a])
    with pytest.raises(ValueError, match="rank"):
        Batches(datasets, rank=2, world_size=2)
    with pytest.raises(ValueError, match="positive"):
        Batches(datasets, batch_size=0)
    with pytest.raises(ValueError, match="at least one"):
        Batches([])
    with pytest.raises(TypeError):
        Batches([object()])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("resident", [False, True])
def test_cuda_batches_equal_cpu_batches(datasets: list[BreizhCrops], resident: bool) -> None:
    cpu = _collect(Batches(datasets, batch_size=16, shuffle=True, seed=2))
    gpu = list(Batches(datasets, batch_size=16, shuffle=True, seed=2, device="cuda", resident=resident))
    assert all(t.device.type == "cuda" for batch in gpu for t in batch)
    gathered = [torch.cat(parts).cpu() for parts in zip(*gpu)]
    assert all(torch.equal(a, b) for a, b in zip(cpu, gathered))


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_loading_benchmark_runs_on_a_tiny_fixture(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  benchmark_script) -> None:
    """benchmarks/bench_loading.py stays runnable (reference vs ours on 40 parcels, nothing written)."""
    pytest.importorskip("breizhcrops")
    bench = benchmark_script("bench_loading")
    assert bench.main(["--parcels", "40", "--runs", "1", "--no-write", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| cropcore `Batches(batch_size=1024)`" in out and "reference `breizhcrops.BreizhCrops`" in out
