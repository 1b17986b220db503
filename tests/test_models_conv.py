"""The four convolutional networks against the reference implementation (breizhcrops 0.0.4.1).

Same weights in, same log-probabilities out (eval and train mode), same parameter names and counts as the
published checkpoints, batch size 1, other sequence lengths and the constructor checks.
"""

from __future__ import annotations

import pytest
import torch

from cropcore.models.inceptiontime import InceptionTime
from cropcore.models.msresnet import MSResNet
from cropcore.models.omniscalecnn import OmniScaleCNN, kernel_sizes
from cropcore.models.tempcnn import TempCNN

BANDS, CLASSES, STEPS = 13, 9, 45
OURS = {"TempCNN": TempCNN, "MSResNet": MSResNet, "InceptionTime": InceptionTime, "OmniScaleCNN": OmniScaleCNN}
INCEPTION = {"num_layers": 3, "hidden_dims": 128}  # the configuration of the speed table
SMALL_OMNISCALE = {"parameters_per_layer": (1024, 16384)}
SMALL = {  # quick configurations of the same structure, for the gradient comparisons
    "TempCNN": {"hidden_dims": 32, "dropout": 0.0},
    "MSResNet": {"hidden_dims": 8},
    "InceptionTime": {"num_layers": 3, "hidden_dims": 32},
    "OmniScaleCNN": SMALL_OMNISCALE,
}


def reference_model(name: str, steps: int = STEPS, **hparams: object) -> torch.nn.Module:
    """The reference package's network of the same configuration (skips when it is not installed)."""
    reference = pytest.importorskip("breizhcrops.models", reason="reference package breizhcrops==0.0.4.1 not installed")
    if name == "TempCNN":
        return reference.TempCNN(BANDS, CLASSES, steps, **hparams)
    if name == "MSResNet":
        return reference.MSResNet(BANDS, num_classes=CLASSES, **hparams)
    if name == "InceptionTime":
        return reference.InceptionTime(CLASSES, BANDS, **hparams)
    budgets = hparams.pop("parameters_per_layer", None)
    if budgets is not None:
        hparams["paramenter_number_of_layer_list"] = list(budgets)
    return reference.OmniScaleCNN(BANDS, CLASSES, steps, **hparams)


def reference_tensor(model: torch.nn.Module, name: str) -> torch.Tensor:
    """Follow a state_dict key through attributes and list indices (the reference's plain lists too)."""
    target: object = model
    for part in name.split("."):
        target = target[int(part)] if part.isdigit() else getattr(target, part)
    assert isinstance(target, torch.Tensor)
    return target


def set_mode(model: torch.nn.Module, training: bool) -> None:
    """``model.train(training)``, also reaching the reference InceptionTime's unregistered list-held modules."""
    model.train(training)
    for held in (*getattr(model, "inception_modules_list", ()), *getattr(model, "shortcut_layer_list", ())):
        held.train(training)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial batch-norm statistics and affine parameters, so that folding them is really tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)


def pair(name: str, steps: int = STEPS, **hparams: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, reference) with identical weights: the reference's loaded into ours (InceptionTime by hand)."""
    torch.manual_seed(0)
    reference = reference_model(name, steps, **dict(hparams))
    randomize(reference)
    ours = OURS[name](BANDS, CLASSES, steps, **hparams)
    if name == "InceptionTime":
        # The reference's list-held modules are missing from its state_dict: copy them by name.
        randomize(ours)
        with torch.no_grad():
            for key, tensor in ours.state_dict().items():
                reference_tensor(reference, key).copy_(tensor)
    else:
        ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


def parcels(batch: int, steps: int = STEPS, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, steps, BANDS, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("TempCNN", 3_197_449), ("MSResNet", 535_785), ("OmniScaleCNN", 2_738_053)],
)
def test_parameter_count_of_published_configuration(name: str, expected: int) -> None:
    count = sum(p.numel() for p in OURS[name](BANDS, CLASSES, STEPS).parameters() if p.requires_grad)
    assert abs(count - expected) <= 0.01 * expected
    assert count == expected


def test_inceptiontime_parameters_are_registered() -> None:
    model = InceptionTime(BANDS, CLASSES, STEPS, **INCEPTION)
    assert sum(p.numel() for p in model.parameters()) == 245_321
    assert sum(p.numel() for p in InceptionTime(BANDS, CLASSES, STEPS, num_layers=1).parameters()) == 77_001
    assert len(model.shortcut_layer_list) == 1


@pytest.mark.parametrize("name", ["TempCNN", "MSResNet", "OmniScaleCNN"])
def test_state_dict_keys_equal_reference(name: str) -> None:
    ours = OURS[name](BANDS, CLASSES, STEPS)
    reference = reference_model(name)
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert all(ours.state_dict()[k].shape == v.shape for k, v in reference.state_dict().items())


def test_inceptiontime_keys_follow_reference_attributes() -> None:
    ours = InceptionTime(BANDS, CLASSES, STEPS, **INCEPTION)
    reference = reference_model("InceptionTime", **INCEPTION)
    for key, tensor in ours.state_dict().items():
        assert reference_tensor(reference, key).shape == tensor.shape, key
    assert set(reference.state_dict()) < set(ours.state_dict())  # the reference saves only outlinear.*


@pytest.mark.parametrize(
    ("name", "hparams", "steps"),
    [
        ("TempCNN", {}, STEPS),
        ("TempCNN", {"kernel_size": 5, "hidden_dims": 16}, 30),
        ("MSResNet", {}, STEPS),
        ("MSResNet", {"hidden_dims": 8}, 70),
        ("InceptionTime", INCEPTION, STEPS),
        ("InceptionTime", {"num_layers": 4, "hidden_dims": 16}, 24),
        ("OmniScaleCNN", {}, STEPS),
        ("OmniScaleCNN", SMALL_OMNISCALE, 80),
        ("OmniScaleCNN", SMALL_OMNISCALE, 10),
    ],
)
def test_same_log_probabilities_as_reference(name: str, hparams: dict, steps: int) -> None:
    ours, reference = pair(name, steps, **hparams)
    x = parcels(6, steps)
    ours.eval()
    set_mode(reference, False)
    with torch.no_grad():
        expected = reference(x)
        assert torch.allclose(ours(x), expected, atol=1e-5, rtol=0)
        with torch.inference_mode():
            assert torch.allclose(ours(x), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(OURS))
def test_training_step_matches_reference(name: str) -> None:
    """Train mode (batch statistics, no dropout): outputs, gradients and updated running statistics."""
    ours, reference = pair(name, **SMALL[name])
    x = parcels(5)
    y = torch.arange(5) % CLASSES
    ours.train()
    set_mode(reference, True)
    out, expected = ours(x), reference(x)
    assert torch.allclose(out, expected, atol=1e-5, rtol=0)
    torch.nn.functional.nll_loss(out, y).backward()
    torch.nn.functional.nll_loss(expected, y).backward()
    for key, parameter in ours.named_parameters():
        theirs = reference_tensor(reference, key)
        assert theirs.grad is not None, key
        assert torch.allclose(parameter.grad, theirs.grad, atol=1e-5, rtol=1e-4), key
    for key, buffer in ours.named_buffers():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.allclose(buffer.double(), reference_tensor(reference, key).double(), atol=1e-6), key


@pytest.mark.parametrize("name", list(OURS))
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("training", [True, False])
def test_batch_sizes_forward_backward(name: str, batch: int, training: bool) -> None:
    model = OURS[name](BANDS, CLASSES, STEPS, **SMALL[name]).train(training)
    out = model(parcels(batch))
    assert out.shape == (batch, CLASSES)
    assert torch.allclose(out.exp().sum(-1), torch.ones(batch), atol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_tempcnn_batch_of_one_keeps_dense_statistics() -> None:
    model = TempCNN(BANDS, CLASSES, STEPS).train()
    dense_bn = model.dense.block[1]
    before = dense_bn.running_mean.clone()
    model(parcels(1))
    assert torch.equal(dense_bn.running_mean, before)


def test_msresnet_batch_of_one_equals_reference_row() -> None:
    ours, reference = pair("MSResNet")
    ours.eval()
    reference.eval()
    x = parcels(3)
    with torch.no_grad():
        assert torch.allclose(ours(x[:1]), reference(x)[:1], atol=1e-5)


@pytest.mark.parametrize("steps", [4, 20, 91])
def test_omniscale_sequence_lengths(steps: int) -> None:
    model = OmniScaleCNN(BANDS, CLASSES, steps, **SMALL_OMNISCALE).eval()
    assert model(parcels(2, steps)).shape == (2, CLASSES)
    assert model(parcels(2, steps + 7)).shape == (2, CLASSES)  # any length once built


def test_omniscale_kernel_sizes_follow_reference() -> None:
    assert kernel_sizes(11) == [1, 2, 3, 5, 7, 11]
    model = OmniScaleCNN(BANDS, CLASSES, STEPS)
    assert [unit.conv1d.kernel_size[0] for unit in model.net[1].conv_list] == [1, 2, 3, 5, 7, 11]
    assert [unit.conv1d.kernel_size[0] for unit in model.net[-1].conv_list] == [1, 2]


def test_tempcnn_rejects_other_sequence_length() -> None:
    with pytest.raises(ValueError, match="45 time steps"):
        TempCNN(BANDS, CLASSES, STEPS)(parcels(2, 30))


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (TempCNN, {"kernel_size": 6}, "odd"),
        (TempCNN, {"dropout": 1.0}, "dropout"),
        (MSResNet, {"hidden_dims": 0}, "hidden_dims"),
        (InceptionTime, {"hidden_dims": 30}, "multiple of 4"),
        (InceptionTime, {"kernel_size": 12}, "multiple of 8"),
        (OmniScaleCNN, {"parameters_per_layer": ()}, "parameters_per_layer"),
    ],
)
def test_invalid_hyperparameters(cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(BANDS, CLASSES, STEPS, **kwargs)


@pytest.mark.parametrize("steps", [3, 200])
def test_omniscale_rejects_unusable_sequence_length(steps: int) -> None:
    with pytest.raises(ValueError, match="sequence_length"):
        OmniScaleCNN(BANDS, CLASSES, steps)


@pytest.mark.parametrize("name", list(OURS))
def test_wrong_band_count_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="expects input"):
        OURS[name](BANDS, CLASSES, STEPS)(torch.rand(2, STEPS, BANDS + 1))
