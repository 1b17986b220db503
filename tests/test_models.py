"""Every registered network: build, forward and backward, lookup by name; parameter counts; the Random Forest."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from cropcore import models
from cropcore.models.lstm_layer import Workspace, lstm_layer

INPUT_DIM, NUM_CLASSES, SEQUENCE_LENGTH = 13, 9, 45
#: Nets whose layers accept another length than the one they were built for (no length-sized weights).
ANY_LENGTH = {"LSTM", "StarRNN", "Transformer"}


def _graph_leaves(output: torch.Tensor) -> set[int]:
    """ids of the leaf tensors the autograd graph of ``output`` accumulates gradients into."""
    leaves, seen, stack = set(), set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):
            leaves.add(id(node.variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


@pytest.mark.parametrize("name", models.NAMES)
def test_every_network_builds_runs_and_trains(name: str) -> None:
    torch.manual_seed(0)
    model = models.build(name, input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=SEQUENCE_LENGTH)
    parameters = dict(model.named_parameters())
    assert parameters, f"{name} has no parameters"
    for training in (True, False):
        model.train(training)
        for batch in (1, 7):
            model.zero_grad(set_to_none=True)
            x = torch.rand(batch, SEQUENCE_LENGTH, INPUT_DIM)
            log_probs = model(x)
            assert log_probs.shape == (batch, NUM_CLASSES)
            assert torch.isfinite(log_probs).all()
            torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(batch), atol=1e-5, rtol=0)
            if training:
                # Every weight in the graph is registered (catches modules kept in Python lists) ...
                registered = {id(p) for p in parameters.values()}
                stray = _graph_leaves(log_probs) - registered
                assert not stray, f"{name}: {len(stray)} tensors get gradients but are not registered parameters"
                # ... and every registered weight gets a finite gradient.
                torch.nn.functional.nll_loss(log_probs, torch.arange(batch) % NUM_CLASSES).backward()
                missing = [key for key, p in parameters.items() if p.grad is None]
                assert not missing, f"{name}: no gradient reaches {missing}"
                assert all(torch.isfinite(p.grad).all() for p in parameters.values())
    # Another sequence length: built for it, and (for the nets that allow it) fed without rebuilding.
    other = models.build(name, input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=24).eval()
    with torch.no_grad():
        assert other(torch.rand(3, 24, INPUT_DIM)).shape == (3, NUM_CLASSES)
        if name in ANY_LENGTH:
            assert model.eval()(torch.rand(2, 70, INPUT_DIM)).shape == (2, NUM_CLASSES)
    with pytest.raises(ValueError, match="expects input"):
        model(torch.rand(2, SEQUENCE_LENGTH, INPUT_DIM + 1))
    # A corrupt parcel stays visible in every inference path (NaN out, as in the reference), the others intact.
    x = torch.rand(7, SEQUENCE_LENGTH, INPUT_DIM)
    x[2, 5, 3] = float("nan")
    with torch.no_grad():
        log_probs = model.eval()(x)
    assert torch.isnan(log_probs[2]).all() and torch.isfinite(log_probs[[0, 1, 3, 4, 5, 6]]).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", models.NAMES)
def test_every_network_runs_on_cuda_like_on_cpu(name: str) -> None:
    """Same weights, same input: CUDA fp32 matches the CPU, and a bf16-autocast training step stays finite."""
    torch.manual_seed(0)
    cpu = models.build(name, input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=SEQUENCE_LENGTH).eval()
    cuda = models.build(name, input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=SEQUENCE_LENGTH)
    cuda.load_state_dict(cpu.state_dict())
    cuda = cuda.cuda().eval()
    for batch in (1, 7):
        x = torch.rand(batch, SEQUENCE_LENGTH, INPUT_DIM)
        with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            torch.testing.assert_close(cuda(x.cuda()).cpu(), cpu(x), atol=1e-4, rtol=1e-4)
    cuda.train()
    optimizer = torch.optim.Adam(cuda.parameters(), lr=1e-3)
    for batch in (1, 7):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            log_probs = cuda(torch.rand(batch, SEQUENCE_LENGTH, INPUT_DIM, device="cuda"))
        assert log_probs.shape == (batch, NUM_CLASSES)
        torch.nn.functional.nll_loss(log_probs.float(), torch.arange(batch, device="cuda") % NUM_CLASSES).backward()
        optimizer.step()
        assert all(torch.isfinite(p).all() for p in cuda.parameters())


def test_names_are_case_insensitive_with_aliases() -> None:
    assert models.find_spec("lstm").name == "LSTM"
    assert models.find_spec("TRANSFORMER").name == "Transformer"
    assert models.find_spec("TransformerEncoder").name == "Transformer"
    assert models.find_spec("transformerencoder").name == "Transformer"
    assert models.NAMES == ("TempCNN", "MSResNet", "InceptionTime", "OmniScaleCNN", "LSTM", "StarRNN", "Transformer")


def test_unknown_names_and_hyperparameters_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown model 'ResNet50'.*TempCNN.*InceptionTime.*Transformer"):
        models.find_spec("ResNet50")
    with pytest.raises(TypeError, match="hidden_size"):
        models.build("LSTM", input_dim=13, num_classes=9, sequence_length=45, hidden_size=3)
    with pytest.raises(ValueError, match="n_head"):
        models.build("Transformer", input_dim=13, num_classes=9, sequence_length=45, n_head=3)


def test_specs_hold_the_published_training_settings() -> None:
    for spec in models.SPECS:
        assert spec.learning_rate > 0 and spec.weight_decay >= 0 and spec.epochs > 0
    assert models.find_spec("LSTM").learning_rate == pytest.approx(0.009880117756170353)
    assert models.find_spec("Transformer").weight_decay == pytest.approx(3.5156458637523697e-06)
    # Epochs of the reference's per-model selection (the paper's Table 1).
    epochs = {spec.name: spec.epochs for spec in models.SPECS}
    assert epochs == {"TempCNN": 11, "MSResNet": 23, "InceptionTime": 23, "OmniScaleCNN": 19, "LSTM": 17,
                      "StarRNN": 17, "Transformer": 30}
    assert models.find_spec("InceptionTime").learning_rate == pytest.approx(0.0005930998594456241)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parameter_counts_match_table_1() -> None:
    def build(name: str, **hparams: object) -> nn.Module:
        return models.build(name, input_dim=13, num_classes=9, sequence_length=45, **hparams)

    # LSTM: the reference measures 1 335 331 (Table 1: 1.3 M).
    assert _count(build("LSTM")) == pytest.approx(1_335_331, rel=0.01)
    # StarRNN: the reference's 71 587 (Table 1: 0.07 M) counts its shared layers 2..3 once, i.e. the
    # distinct weights of the published checkpoint, which are those of two independent layers here.
    assert _count(build("StarRNN", num_layers=2)) == pytest.approx(71_587, rel=0.01)
    # With its own weights per layer, the published 3-layer configuration has 49 792 more.
    assert _count(build("StarRNN")) == 121_379
    # Transformer: 168 969 in the published configuration (Table 1 states 0.19 M for an unstated one).
    assert _count(build("Transformer")) == 168_969
    # InceptionTime, 4 modules of 64 filters (the reference's checkpoint name): Table 1's 0.08 M.
    assert _count(build("InceptionTime")) == 83_369


@pytest.mark.parametrize("name", ["TempCNN", "MSResNet", "InceptionTime"])
def test_inference_mode_leaves_later_training_working(name: str) -> None:
    """Constant tables cached during a torch.inference_mode() call must not be inference tensors: a network
    trained later in the process saves them for backward. Sequence lengths unused elsewhere in the suite make
    the tables new here."""
    for steps, train_mode in ((33, False), (35, True)):
        network = models.build(name, input_dim=13, num_classes=9, sequence_length=steps).train(train_mode)
        with torch.inference_mode():
            network(torch.rand(2, steps, 13))
        fresh = models.build(name, input_dim=13, num_classes=9, sequence_length=steps).train()
        fresh(torch.rand(2, steps, 13)).sum().backward()


def test_random_forest_follows_sklearn_conventions() -> None:
    from sklearn.base import clone

    forest = models.RandomForest(n_estimators=8, max_depth=5, random_state=0, n_jobs=1)
    assert forest.get_params()["max_features"] == "sqrt"
    assert models.RandomForest().get_params() == {
        "n_estimators": 500, "max_depth": 25, "max_features": "sqrt", "n_jobs": -1, "random_state": None,
        "class_weight": None,
    }
    twin = clone(forest)
    assert twin.get_params() == forest.get_params() and not hasattr(twin, "pipeline_")
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    features = rng.random((60, 71, 13), dtype=np.float32) + labels[:, None, None] * 0.5
    forest.fit(features, labels)
    predicted = forest.predict(features)
    assert predicted.shape == (60,) and (predicted == labels).mean() > 0.9
    proba = forest.predict_proba(features[:4])
    assert proba.shape == (4, 3) and np.allclose(proba.sum(1), 1)
    assert np.array_equal(clone(forest).fit(features, labels).predict(features), predicted)  # seeded
    with pytest.raises(ValueError, match="fitted on 923"):
        forest.predict(features[:, :, :5])
    with pytest.raises(NotFittedError):
        models.RandomForest().predict(features)


def test_saved_forest_loads_as_data(tmp_path: Path) -> None:
    """save_forest/load_forest round trip; a file holding anything else is refused without running it."""
    import os

    import skops.io
    from sklearn.linear_model import LogisticRegression

    from cropcore.models.forest import load_forest, save_forest

    labels = np.arange(40) % 2
    features = np.random.default_rng(1).random((40, 71, 13), dtype=np.float32) + labels[:, None, None]
    forest = models.RandomForest(n_estimators=4, random_state=0, n_jobs=1).fit(features, labels)
    save_forest(forest, tmp_path / "forest.skops")
    assert np.array_equal(load_forest(tmp_path / "forest.skops").predict_proba(features), forest.predict_proba(features))

    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    skops.io.dump(Planted(), tmp_path / "planted.skops")
    with pytest.raises(ValueError, match="never holds"):
        load_forest(tmp_path / "planted.skops")
    assert not marker.exists()
    skops.io.dump(LogisticRegression(), tmp_path / "other.skops")
    with pytest.raises(ValueError, match="not a cropcore RandomForest"):
        load_forest(tmp_path / "other.skops")
    (tmp_path / "text.skops").write_text("not a forest")
    with pytest.raises(ValueError, match="not a forest saved by cropcore"):
        load_forest(tmp_path / "text.skops")


def test_model_benchmark_runs_side_by_side(capsys: pytest.CaptureFixture[str], benchmark_script) -> None:
    """benchmarks/bench_models.py stays runnable: ours and the reference timed in one loop (tiny batch)."""
    pytest.importorskip("breizhcrops")
    bench = benchmark_script("bench_models")
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--models", "InceptionTime", "--repeats", "1", "--batch-size", "4", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| InceptionTime"))
    assert "| 245,321 | 1,161 |" in row  # ours built like the reference's 3 x 128, whose lists hold the rest
    assert "| –; – |" in row  # one round: no quartiles of the rounds' ratios
    assert bench._quartiles([1.0, 5.0, 2.0, 4.0, 3.0]) == "2.00–4.00"


def test_model_benchmark_keeps_freed_memory_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], benchmark_script
) -> None:
    """--keep-freed-memory applies the commands' allocator settings before timing and says so; where they
    cannot be applied it stops rather than time the default allocator under that name. (The settings are
    recorded here, not applied: they would hold for the rest of the test process.)"""
    pytest.importorskip("breizhcrops")
    bench = benchmark_script("bench_models")
    calls: list[bool] = []
    monkeypatch.setattr(bench.memory, "keep_freed_memory", lambda: calls.append(applied) or applied)
    threads = torch.get_num_threads()
    arguments = ["--models", "InceptionTime", "--repeats", "1", "--batch-size", "4", "--threads", "1"]
    try:
        applied = False
        with pytest.raises(SystemExit):
            bench.main([*arguments, "--keep-freed-memory"])
        assert "not applied" in capsys.readouterr().err
        applied = True
        assert bench.main([*arguments, "--keep-freed-memory"]) == 0
        assert "allocator: glibc keeping freed memory" in capsys.readouterr().err
        assert bench.main(arguments) == 0
        assert "allocator: the C library's default allocator" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)
    assert calls == [False, True]


def _move_off_identity(bn: nn.BatchNorm1d, scales: tuple[float, float] = (-1.5, 1.5)) -> None:
    """Random running statistics, scales in ``scales`` and shifts for an eval-mode batch norm, so that folding
    it into the layer before it is exercised."""
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.3, 3.0)
        bn.weight.uniform_(*scales)
        bn.bias.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("use_layernorm", [True, False])
@pytest.mark.parametrize("batch", [1, 7])
def test_starrnn_inference_wavefront_equals_autograd_path(use_layernorm: bool, batch: int) -> None:
    """Without autograd StarRNN runs its folded step-by-step recurrence; with it, the layer-by-layer one."""
    torch.manual_seed(0)
    model = models.build("StarRNN", input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=SEQUENCE_LENGTH,
                         hidden_dims=24, num_layers=3, use_layernorm=use_layernorm)
    for layer in model.block:
        _move_off_identity(layer.bn_layer, scales=(0.5, 1.5))
    model.eval()
    x = torch.rand(batch, 30, INPUT_DIM)
    with_autograd = model(x)
    assert with_autograd.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(model(x), with_autograd.detach(), atol=1e-5, rtol=0)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), with_autograd.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("steps", [45, 12, 85, 86])
@pytest.mark.parametrize("batch", [1, 7, 70])  # 70: a full block of 64 and a partial one
def test_msresnet_inference_stem_equals_the_stretched_convolution(steps: int, batch: int) -> None:
    """Without autograd the CPU stem runs at the original steps (a table of two-step windows, then the
    pooling); with it, the reference's convolution over the 512-step stretch. From 86 steps on a window
    reads three steps, and both take the second."""
    from cropcore.models.msresnet_stem import pool_rows

    assert (pool_rows(steps) is None) == (steps == 86)
    torch.manual_seed(0)
    model = models.build("MSResNet", input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=steps)
    # Negative scales included: applied after the max pooling instead of before it, they would turn its maxima
    # into minima.
    _move_off_identity(model.bn1)
    model.eval()
    x = torch.rand(batch, steps, INPUT_DIM)
    stem_with_autograd, output_with_autograd = model._stem(x), model(x)
    assert stem_with_autograd.requires_grad and output_with_autograd.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(model._stem(x), stem_with_autograd.detach(), atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x), output_with_autograd.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [1, 7])
def test_msresnet_blocked_inference_equals_the_dense_path(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU float32 inference without autograd keeps the branches in oneDNN's blocked layout, where the
    shortcuts of the 5- and 7-tap branches are shortened by a dilated zero tap instead of cut: same output
    as the (batch, channels, time) path, with every batch norm away from the identity."""
    torch.manual_seed(0)
    model = models.build("MSResNet", input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=SEQUENCE_LENGTH)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            _move_off_identity(module)
    model.eval()
    x = torch.rand(batch, SEQUENCE_LENGTH, INPUT_DIM)
    blocked_calls: list[int] = []
    branch_blocked = model._branch_blocked
    monkeypatch.setattr(model, "_branch_blocked", lambda h, k: blocked_calls.append(k) or branch_blocked(h, k))
    dense = model(x).detach()  # autograd on: the dense path
    assert not blocked_calls
    with torch.no_grad():
        blocked = model(x)
        assert blocked_calls == [3, 5, 7]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
        with monkeypatch.context() as switched_off:
            switched_off.setattr(torch.backends.mkldnn, "enabled", False)
            model(x)
        model.double()(x.double())
    assert blocked_calls == [3, 5, 7]  # neither under autocast, nor with oneDNN switched off, nor in float64
    torch.testing.assert_close(blocked, dense, atol=1e-5, rtol=0)


@pytest.mark.parametrize("steps", [45, 12, 85, 86])
@pytest.mark.parametrize("batch", [1, 7, 70])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_msresnet_training_stem_equals_the_stretched_convolution(
    steps: int, batch: int, momentum: float | None
) -> None:
    """CPU training computes the stem at the original steps too, with the batch statistics taken from the
    windows' Gram matrices and a hand-written backward pass: same output, same gradients for the convolution
    and batch norm, same running statistics as the stretched convolution (float64, so that float32 rounding
    cannot hide a wrong term). A parcel constant in time makes many windows tie for the maximum."""
    torch.manual_seed(0)
    model = models.build("MSResNet", input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=steps)
    model = model.double().train()
    model.bn1.momentum = momentum
    with torch.no_grad():
        model.bn1.weight.uniform_(-1.5, 1.5)
        model.bn1.bias.uniform_(-0.5, 0.5)
    twin = copy.deepcopy(model)
    x = torch.rand(batch, steps, INPUT_DIM, dtype=torch.float64)
    x[0] = x[0, :1]
    for _ in range(2):  # the second step also checks the running statistics' update of a non-empty history
        table = model._stem_time_major(x)
        stretched = twin._stem(x).transpose(1, 2)
        torch.testing.assert_close(table, stretched, atol=1e-10, rtol=0)
        grad = torch.randn_like(table)
        (table * grad).sum().backward()
        (stretched * grad).sum().backward()
    for name in ("conv1.weight", "bn1.weight", "bn1.bias"):
        ours, theirs = model.get_parameter(name).grad, twin.get_parameter(name).grad
        torch.testing.assert_close(ours, theirs, atol=1e-9, rtol=1e-9)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(model.bn1, name), getattr(twin.bn1, name), atol=1e-12, rtol=0)


def test_msresnet_training_with_input_gradients_takes_the_stretched_stem() -> None:
    """The table's backward pass gives no input gradient, so an input that needs one (saliency maps) takes the
    stretched stem: same output, and the gradient reaches the input."""
    torch.manual_seed(0)
    model = models.build("MSResNet", input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=SEQUENCE_LENGTH)
    model = model.double().train()
    twin = copy.deepcopy(model)
    x = torch.rand(5, SEQUENCE_LENGTH, INPUT_DIM, dtype=torch.float64)
    expected = model(x)
    leaf = x.clone().requires_grad_()
    out = twin(leaf)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    out.sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_cpu_inference_blocks_give_the_whole_batch_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """``inference_block`` splits only no-grad eval passes, and the blocks give what the whole batch gives."""
    torch.manual_seed(0)
    model = models.build("Transformer", input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=12).eval()
    x = torch.rand(10, 12, INPUT_DIM)
    calls: list[int] = []
    classify = model.classify
    monkeypatch.setattr(model, "classify", lambda part: calls.append(len(part)) or classify(part))
    model.inference_block = None
    with torch.no_grad():
        whole = model(x)
    model.inference_block = 4
    with torch.no_grad():
        blocked = model(x)
    assert calls == [10, 4, 4, 2]
    torch.testing.assert_close(blocked, whole, atol=1e-6, rtol=0)
    calls.clear()
    model(x)  # autograd on: one pass, so that gradients see one graph
    model.train()(x)
    assert calls == [10, 10]


def _fused_lstm_classify(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The LSTM classifier through one ``nn.LSTM`` call (oneDNN)."""
    _, (_, cell) = model.lstm(model.inlayernorm(x))
    states = cell.transpose(0, 1).reshape(x.shape[0], -1)
    return torch.log_softmax(model.linear_class(model.clayernorm(states)), dim=-1)


@pytest.mark.parametrize("memory_kept", [False, True])
def test_lstm_training_layer_by_layer_equals_nn_lstm(monkeypatch: pytest.MonkeyPatch, memory_kept: bool) -> None:
    """CPU training runs the LSTM one layer at a time and draws its own dropout: with the dropout taken out,
    outputs and gradients equal ``nn.LSTM``'s single call; with it, the draws differ from call to call. The
    layers are the hand-written ones, whose buffers wait in a workspace until eval mode, unless the process
    keeps freed memory (then the fused kernel)."""
    import cropcore.models.lstm as lstm_module

    monkeypatch.setattr(lstm_module, "freed_memory_kept", lambda: memory_kept)
    torch.manual_seed(0)
    model = models.build("LSTM", input_dim=INPUT_DIM, num_classes=NUM_CLASSES, sequence_length=20, hidden_dims=16,
                         num_layers=3).train()
    x, y = torch.rand(5, 20, INPUT_DIM), torch.arange(5) % NUM_CLASSES
    first, second = model(x), model(x)
    assert not torch.allclose(first, second)  # dropout between the layers is drawn
    monkeypatch.setattr(lstm_module, "dense_dropout", lambda x, p: x)
    layered = model(x)
    torch.nn.functional.nll_loss(layered, y).backward()
    assert (len(model._workspace) > 0) != memory_kept  # hand-written layers keep buffers for the next step
    layered_grads = {key: p.grad.clone() for key, p in model.named_parameters()}
    model.zero_grad()
    monkeypatch.setattr(model.lstm, "dropout", 0.0)
    fused = _fused_lstm_classify(model, x)
    torch.nn.functional.nll_loss(fused, y).backward()
    torch.testing.assert_close(layered, fused, atol=1e-6, rtol=0)
    for key, p in model.named_parameters():
        torch.testing.assert_close(layered_grads[key], p.grad, atol=1e-6, rtol=1e-5, msg=key)
    model.eval()
    assert len(model._workspace) == 0


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize(("steps", "batch"), [(1, 1), (2, 7), (9, 1), (9, 7)])
def test_lstm_layer_equals_torch_lstm(bidirectional: bool, steps: int, batch: int) -> None:
    """The hand-written layer against ``torch.lstm`` in float64: outputs, final cells and every gradient, with
    and without a gradient on the outputs (the last layer's are unused), twice on one workspace (the second
    call reuses the first call's buffers)."""
    torch.manual_seed(steps * 10 + batch)
    lstm = nn.LSTM(5, 4, bias=False, bidirectional=bidirectional).double()
    weights = list(lstm.parameters())
    zeros = torch.zeros(2 if bidirectional else 1, batch, 4, dtype=torch.float64)
    workspace = Workspace()
    for with_outputs in (False, True, True):
        x = torch.randn(steps, batch, 5, dtype=torch.float64, requires_grad=True)
        expected_out, _, expected_cells = torch.lstm(x, (zeros, zeros), weights, False, 1, 0.0, True, bidirectional,
                                                     False)
        out, cells = lstm_layer(x, weights, workspace)
        torch.testing.assert_close(out, expected_out, atol=1e-12, rtol=0)
        torch.testing.assert_close(cells, expected_cells, atol=1e-12, rtol=0)
        grad_out, grad_cells = torch.randn_like(out), torch.randn_like(cells)
        expected_loss = (expected_cells * grad_cells).sum() + with_outputs * (expected_out * grad_out).sum()
        loss = (cells * grad_cells).sum() + ((out * grad_out).sum() if with_outputs else 0)
        expected = torch.autograd.grad(expected_loss, [x, *weights])
        names = ["x", "ih", "hh", "ih_r", "hh_r"]
        for got, want, what in zip(torch.autograd.grad(loss, [x, *weights]), expected, names):
            torch.testing.assert_close(got, want, atol=1e-12, rtol=0, msg=what)
        assert len(workspace) == 5  # gates, cells, tanh(cells), outputs, gate gradients: handed back, reused


def test_lstm_layer_workspace_keeps_one_shape_per_buffer() -> None:
    """Batches of other lengths or sizes replace the kept buffers instead of adding to them."""
    lstm, workspace = nn.LSTM(3, 2, bias=False, bidirectional=True), Workspace()
    for steps, batch in ((5, 4), (9, 4), (9, 3), (9, 3)):
        _, cells = lstm_layer(torch.rand(steps, batch, 3), list(lstm.parameters()), workspace)
        cells.sum().backward()
        assert len(workspace) == 5


def test_lstm_layer_refuses_a_second_backward_pass() -> None:
    """Its buffers go to the next step after the backward pass, so a retained graph cannot be replayed."""
    lstm = nn.LSTM(3, 2, bias=False)
    _, cells = lstm_layer(torch.rand(4, 2, 3), list(lstm.parameters()), Workspace())
    cells.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass per forward pass"):
        cells.sum().backward()
