"""Loading official BreizhCrops weights and cropcore checkpoints; writing cropcore checkpoints.

Two kinds of files load through :func:`pretrained`:

* official BreizhCrops ``.pth`` files: a dict whose ``model_state`` is a state_dict with the reference
  implementation's parameter names (or a bare state_dict). The architecture is read off the tensor
  shapes where it can be (input bands, classes, widths, depths), else the published-checkpoint defaults
  of the registry. These weights expect L1C bands in the reference's string order; the loaded model
  reorders cropcore's wavelength-order input itself, so callers always pass ``constants.BANDS`` order.
* cropcore checkpoints (``{"format": "cropcore-checkpoint", ...}``, see :func:`save_checkpoint`), which
  record the model, hyperparameters, dimensions and band order.

Without a path, the official file is downloaded once into ``data_dir()/models/<Model>/`` and reused (the
reference package downloads it again on every call). Every file is read with ``weights_only=True``: a
checkpoint is data, never code.
"""

from __future__ import annotations

import os
import pickle
import re
import urllib.parse
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cropcore.atomic import atomic_path
from cropcore.constants import BANDS, REFERENCE_BAND_ORDER, SEQUENCE_LENGTH, check_level
from cropcore.models.registry import ModelSpec, build, find_spec

#: Marks a cropcore checkpoint (the run-folder contract).
CHECKPOINT_FORMAT = "cropcore-checkpoint"
CHECKPOINT_VERSION = 1

#: URL paths (under the base URL) of the published weights, trained on FRH01-03, L1C, 13 bands, 9 classes,
#: 45 time steps. InceptionTime has none.
OFFICIAL_FILES: dict[str, str] = {
    "LSTM": "models/eval/LSTM/LSTM_input-dim%3D13_num-classes%3D9_hidden-dims%3D128_num-layers%3D4_"
    "bidirectional%3DTrue_use-layernorm%3DTrue_dropout%3D0.5713020228087161_learning-rate%3D0.009880117756170353_"
    "weight-decay%3D5.256755602421856e-07.pth",
    "MSResNet": "models/eval/MSResNet/MSResNet_input-dim%3D13_num-classes%3D9_hidden-dims%3D32_"
    "learning-rate%3D0.0006271686393146093_weight-decay%3D4.750234747127917e-06.pth",
    "OmniScaleCNN": "models/eval/OmniScaleCNN/OmniScaleCNN_learning-rate%3D0.001057192239267413_"
    "weight-decay%3D2.2522895556530792e-07.pth",
    "StarRNN": "models/eval/StarRNN/StarRNN_input-dim%3D13_num-classes%3D9_hidden-dims%3D128_num-layers%3D3_"
    "dropout%3D0.5_learning-rate%3D0.008960989762612663_weight-decay%3D2.2171861339535254e-06.pth",
    "TempCNN": "models/eval/TempCNN/TempCNN_input-dim%3D13_num-classes%3D9_sequencelenght%3D45_kernelsize%3D7_"
    "hidden-dims%3D128_dropout%3D0.18203942949809093_learning-rate%3D0.00023892874563871753_"
    "weight-decay%3D5.181869707846283e-05.pth",
    "Transformer": "models/eval/TransformerEncoder/TransformerEncoder_input-dim%3D13_num-classes%3D9_d-model%3D64_"
    "d-inner%3D128_n-layers%3D5_n-head%3D2_dropout%3D0.017998950510888446_"
    "learning-rate%3D0.00017369201853408445_weight-decay%3D3.5156458637523697e-06.pth",
}
#: Data the official weights were trained on.
OFFICIAL_LEVEL = "L1C"
OFFICIAL_INPUT_DIM = 13
OFFICIAL_NUM_CLASSES = 9


class CheckpointError(ValueError):
    """A file that is not a loadable checkpoint for the requested model (message names the file)."""


# --------------------------------------------------------------------------- public API


def pretrained(
    name: str,
    path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    input_dim: int | None = None,
    num_classes: int | None = None,
    progress: bool = True,
) -> nn.Module:
    """Load a network with official BreizhCrops weights or from a cropcore checkpoint, in eval mode.

    Args:
        name: Model name or alias (case-insensitive), e.g. ``"Transformer"``.
        path: An official ``.pth`` or a cropcore checkpoint; None downloads the official weights once
            into ``data_dir()/models`` (base URL: ``$CROPCORE_BASE_URL`` or the official bucket).
        device: Where to put the model.
        input_dim: Number of bands the caller will feed; the checkpoint must match (None: any).
        num_classes: Number of classes the caller expects; the checkpoint must match (None: any).
        progress: Show a download progress bar.

    Returns:
        The model, taking ``(batch, time, bands)`` input in cropcore's band order.

    Raises:
        ValueError: Unknown model name (the message lists the valid ones).
        CheckpointError: Not a checkpoint, a corrupt file, another model, other dimensions than asked
            for, missing/unexpected parameter names or mismatching shapes (all listed).
        FileNotFoundError: ``path`` does not exist.
        ConnectionError: ``path`` is None and the official file cannot be downloaded.
    """
    spec = find_spec(name)
    file = Path(path).expanduser() if path is not None else _official_file(spec, progress=progress)
    try:
        checkpoint = _read(file)
    except CheckpointError as error:
        if path is not None:
            raise
        file.unlink(missing_ok=True)  # a bad download (a proxy's error page, say) must not stay cached
        raise CheckpointError(f"{error}; the downloaded copy was removed, so the next call fetches it again") from None
    if isinstance(checkpoint, Mapping) and checkpoint.get("format") == CHECKPOINT_FORMAT:
        model = _from_cropcore(spec, checkpoint, file)
    else:
        model = _from_official(spec, checkpoint, file)
    _check_dims(file, model, input_dim, num_classes)
    return model.to(device).eval()


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    name: str,
    hparams: Mapping[str, Any] | None = None,
    *,
    level: str = OFFICIAL_LEVEL,
    band_order: Sequence[str] | None = None,
    optimizer: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    epoch: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a cropcore checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    A crash or kill never leaves a half-written checkpoint: readers see the old file or the new one.

    Args:
        path: Destination file (parents are created).
        model: The network (a DistributedDataParallel wrapper is unwrapped); its ``input_dim``,
            ``num_classes`` and ``sequence_length`` are recorded.
        name: Model name or alias (of the network's own architecture); stored under its canonical name.
        hparams: Hyperparameters the model was built with. None: those ``models.build`` recorded on it (else
            the registry defaults); given ones must agree with them. All are stored, so the file is
            self-describing.
        level: Processing level of the training data (``L1C``/``L2A``).
        band_order: Band names in the order the network takes them (default: the level's bands, reordered
            as the network's band permutation reorders them, e.g. an official checkpoint's).
        optimizer: An optimizer or its ``state_dict()``, for resuming training.
        epoch: Last completed epoch.
        extra: More plain-data entries (numbers, strings, lists, dicts, tensors); may not reuse the keys
            above.

    Returns:
        The path written.

    Raises:
        ValueError: another architecture than ``name``, hyperparameters or bands that do not describe the
            network, or ``extra`` entries a data-only load could not read back.
    """
    spec = find_spec(name)
    network = getattr(model, "module", model)
    if not all(hasattr(network, key) for key in ("input_dim", "num_classes", "sequence_length")):
        raise TypeError(f"save_checkpoint needs a cropcore network, got {type(network).__name__}")
    if type(network).__name__ != spec.class_name:
        raise ValueError(f"the network is a {type(network).__name__}, not a {spec.name}")
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": spec.name,
        "hparams": _hparams_to_save(spec, network, hparams),
        "input_dim": int(network.input_dim),
        "num_classes": int(network.num_classes),
        "sequence_length": int(network.sequence_length),
        "level": check_level(level),
        "band_order": _band_order_to_save(network, check_level(level), band_order),
        "model_state": {key: value.detach().cpu() for key, value in network.state_dict().items()},
        "optimizer_state": optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer,
        "epoch": epoch,
    }
    clash = set(extra or {}) & set(payload)
    if clash:
        raise ValueError(f"extra entries may not replace the checkpoint's own keys {sorted(clash)}")
    for key, value in (extra or {}).items():
        _check_plain_data(value, f"extra[{key!r}]")
    payload.update(extra or {})
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(destination) as temporary:
        with open(temporary, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
    return destination


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a cropcore checkpoint as a dict (for resuming: optimizer state, epoch, extra entries)."""
    file = Path(path)
    checkpoint = _read(file)
    if not isinstance(checkpoint, Mapping) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        official = " (an official BreizhCrops file loads with models.pretrained(name, path))" if isinstance(
            checkpoint, Mapping) and "model_state" in checkpoint else ""
        raise CheckpointError(
            f"{file} is not a cropcore checkpoint (no 'format': '{CHECKPOINT_FORMAT}' entry){official}")
    _check_entries(checkpoint, file)
    return dict(checkpoint)


def _hparams_to_save(spec: ModelSpec, network: nn.Module, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every hyperparameter, so the file rebuilds the same network: those ``models.build`` recorded on it,
    checked against any given."""
    unknown = set(given or {}) - set(spec.hparams)
    if unknown:
        raise ValueError(f"{spec.name} has no hyperparameter(s) {sorted(unknown)}; valid: {sorted(spec.hparams)}")
    built = getattr(network, "hparams", None)
    resolved = {**spec.hparams, **dict(given or {})}
    if built is None or given is None:
        return dict(built or resolved)
    differ = sorted(key for key in resolved if resolved[key] != built.get(key))
    if differ:
        raise ValueError(f"hparams {', '.join(f'{key}={resolved[key]!r}' for key in differ)} differ from those the "
                         f"network was built with ({', '.join(f'{key}={built.get(key)!r}' for key in differ)})")
    return dict(built)


def _band_order_to_save(network: nn.Module, level: str, band_order: Sequence[str] | None) -> list[str]:
    """The bands in the order the network takes them: given, else the level's order as the network's band
    permutation rearranges it (an official checkpoint's reference order stays with its weights)."""
    ours = BANDS[level]
    if band_order is None:
        permutation = getattr(network, "band_permutation", None)
        if len(ours) != network.input_dim:
            raise ValueError(f"the network takes {network.input_dim} bands but level {level} has {len(ours)}; "
                             f"pass band_order")
        return [ours[index] for index in permutation.tolist()] if permutation is not None else list(ours)
    order = list(band_order)
    if len(order) != network.input_dim or len(set(order)) != len(order):
        raise ValueError(f"band_order must name {network.input_dim} different bands, got {order}")
    return order


def _check_plain_data(value: Any, where: str) -> None:
    """Raise unless ``value`` is what ``torch.load(weights_only=True)`` reads back (no numpy, no objects)."""
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return  # exact types: numpy's float64 is a float, but the data-only loader refuses it
    if isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            _check_plain_data(item, f"{where}[{position}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain_data(key, f"{where} key")
            _check_plain_data(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"{where} is a {type(value).__name__}: a checkpoint holds only tensors and plain data "
                     f"(None, bool, int, float, str, lists, tuples, dicts), so it could not be loaded back")


def official_url(name: str, base_url: str | None = None) -> str:
    """URL of the published weights of a model (ValueError for InceptionTime, which has none)."""
    spec = find_spec(name)
    if spec.name not in OFFICIAL_FILES:
        raise ValueError(
            f"no official weights were published for {spec.name}; official ones exist for "
            f"{', '.join(sorted(OFFICIAL_FILES))}"
        )
    from cropcore.data.download import resolve_base_url

    return f"{resolve_base_url(base_url)}/{OFFICIAL_FILES[spec.name]}"


def official_cache_path(name: str) -> Path:
    """Where the downloaded official weights of a model are kept."""
    from cropcore.data.layout import data_dir

    spec = find_spec(name)
    relative = urllib.parse.unquote(OFFICIAL_FILES[spec.name])
    return data_dir() / "models" / Path(relative).parent.name / Path(relative).name


# --------------------------------------------------------------------------- reading


def _official_file(spec: ModelSpec, *, progress: bool) -> Path:
    """The cached official file, downloading it the first time."""
    url = official_url(spec.name)
    destination = official_cache_path(spec.name)
    if destination.is_file():
        return destination
    from cropcore.data.download import fetch_file

    try:
        return Path(fetch_file(url, destination, expected_size=None, progress=progress))
    except ConnectionError as error:
        raise ConnectionError(
            f"cannot download the official {spec.name} weights ({error}). Without internet, pass "
            f"path= to a copy of the file, or point $CROPCORE_BASE_URL at a mirror"
        ) from error


def _read(file: Path) -> Any:
    if file.is_dir():
        raise CheckpointError(f"{file} is a folder, not a checkpoint file")
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {file} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip, runtime and EOF errors for bad files
        raise CheckpointError(f"{file} is not a readable PyTorch checkpoint: {_unreadable(file, error)}") from None


def _unreadable(file: Path, error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in words (torch's own messages advise turning
    ``weights_only`` off, which a data-only loader never does)."""
    text = str(error).strip()
    if isinstance(error, EOFError) or file.stat().st_size == 0:
        return "the file is empty or cut short"
    if "central directory" in text:
        return "the archive is damaged or cut short"
    archive = zipfile.is_zipfile(file)
    with open(file, "rb") as stream:
        pickled = stream.read(1) == b"\x80"  # torch's legacy format: a pickle (protocol 2+) stream
    if not archive and not pickled:
        return "it is not a file torch.save writes (a zip archive)"
    if isinstance(error, pickle.UnpicklingError) and "weights only" in text.lower():
        return ("it holds Python objects besides tensors and plain data (numbers, strings, lists, dicts), "
                "and checkpoints are only ever loaded as data")
    if "inline_container" in text:
        return "a zip archive, but not one torch.save wrote"
    return text.splitlines()[0] if text else type(error).__name__


def _state_of(checkpoint: Any, file: Path) -> dict[str, torch.Tensor]:
    """The state_dict of an official file: ``checkpoint["model_state"]`` or the dict itself."""
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise CheckpointError(f"{file} holds no state_dict (expected a dict with 'model_state' of named tensors)")
    return dict(state)


# --------------------------------------------------------------------------- building


def _from_official(spec: ModelSpec, checkpoint: Any, file: Path) -> nn.Module:
    state = _state_of(checkpoint, file)
    hparams = {**spec.hparams, **_infer_hparams(spec, state)}
    input_dim, num_classes = _infer_dims(spec, state, hparams)
    model = _build(spec, file, input_dim, num_classes, SEQUENCE_LENGTH, hparams)
    _load_state(model, state, file, spec)
    reference = REFERENCE_BAND_ORDER[OFFICIAL_LEVEL]
    if input_dim == len(reference):
        # The network's band j is the reference's j-th band; take it from its place in our order.
        ours = BANDS[OFFICIAL_LEVEL]
        model.set_band_permutation([ours.index(band) for band in reference])
    return model


def _check_entries(checkpoint: Mapping[str, Any], file: Path) -> None:
    """The entries every cropcore checkpoint has (a file edited by hand may lack some)."""
    missing = [key for key in ("model", "hparams", "input_dim", "num_classes", "sequence_length", "model_state")
               if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{file} is a cropcore checkpoint without {', '.join(missing)}")
    for key in ("input_dim", "num_classes", "sequence_length"):
        if isinstance(checkpoint[key], bool) or not isinstance(checkpoint[key], int) or checkpoint[key] < 1:
            raise CheckpointError(f"{file}: '{key}' must be a positive integer, got {checkpoint[key]!r}")


def _from_cropcore(spec: ModelSpec, checkpoint: Mapping[str, Any], file: Path) -> nn.Module:
    _check_entries(checkpoint, file)
    stored = find_spec(str(checkpoint["model"]))
    if stored.name != spec.name:
        raise CheckpointError(f"{file} holds a {stored.name} checkpoint, not a {spec.name} one")
    model = _build(spec, file, int(checkpoint["input_dim"]), int(checkpoint["num_classes"]),
                   int(checkpoint["sequence_length"]), dict(checkpoint["hparams"]))
    _load_state(model, _state_of({"model_state": checkpoint["model_state"]}, file), file, spec)
    level = checkpoint.get("level")
    band_order = checkpoint.get("band_order")
    if band_order and level in BANDS and list(band_order) != list(BANDS[level]):
        if sorted(band_order) != sorted(BANDS[level]):
            raise CheckpointError(f"{file}: band_order {list(band_order)} is not an order of the {level} bands")
        model.set_band_permutation([BANDS[level].index(band) for band in band_order])
    return model


def _build(spec: ModelSpec, file: Path, input_dim: int, num_classes: int, sequence_length: int,
           hparams: dict[str, Any]) -> nn.Module:
    unknown = set(hparams) - set(spec.hparams)
    if unknown:
        raise CheckpointError(f"{file}: {spec.name} has no hyperparameter(s) {sorted(unknown)}")
    return build(spec.name, input_dim=input_dim, num_classes=num_classes, sequence_length=sequence_length,
                 **hparams)


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], file: Path, spec: ModelSpec) -> None:
    """Strict load with errors that list missing/unexpected names and shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listing(unexpected)}")
    mismatched = [f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(value.shape)}"
                  for key, value in expected.items() if key in state and state[key].shape != value.shape]
    if mismatched:
        problems.append(f"shape mismatches {_listing(mismatched)}")
    if problems:
        raise CheckpointError(f"{file} does not fit {spec.name}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items) - limit} more)' if len(items) > limit else ''}]"


def _check_dims(file: Path, model: nn.Module, input_dim: int | None, num_classes: int | None) -> None:
    for label, wanted, found in (("input bands", input_dim, model.input_dim),
                                 ("classes", num_classes, model.num_classes)):
        if wanted is not None and wanted != found:
            raise CheckpointError(f"{file} is for {found} {label}, expected {wanted}")


# --------------------------------------------------------------------------- reading shapes


def _layer_indices(state: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(match.group(1)) for key in state if (match := regex.fullmatch(key))})


def _lstm_hparams(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    layers = _layer_indices(state, r"lstm\.weight_ih_l(\d+)")
    return {
        "hidden_dims": int(state["lstm.weight_hh_l0"].shape[1]),
        "num_layers": len(layers),
        "bidirectional": "lstm.weight_ih_l0_reverse" in state,
        "use_layernorm": "inlayernorm.weight" in state,
    }


def _starrnn_hparams(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    # Official StarRNN files list every layer (block.1.* and block.2.* hold the same shared tensors).
    layers = _layer_indices(state, r"block\.(\d+)\.cell\.h_K\.weight")
    return {
        "hidden_dims": int(state["block.0.cell.h_K.weight"].shape[0]),
        "num_layers": len(layers),
        "use_layernorm": "inlayernorm.weight" in state,
    }


def _transformer_hparams(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    # n_head cannot be read off shapes: it stays the published value unless the checkpoint says otherwise.
    return {
        "d_model": int(state["inlinear.weight"].shape[0]),
        "n_layers": len(_layer_indices(state, r"transformerencoder\.layers\.(\d+)\.linear1\.weight")),
        "d_inner": int(state["transformerencoder.layers.0.linear1.weight"].shape[0]),
    }


def _tempcnn_hparams(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    hidden_dims, _, kernel_size = state["conv_bn_relu1.block.0.weight"].shape
    return {"hidden_dims": int(hidden_dims), "kernel_size": int(kernel_size)}


def _msresnet_hparams(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {"hidden_dims": int(state["conv1.weight"].shape[0])}


_HPARAM_READERS: dict[str, Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]] = {
    "LSTM": _lstm_hparams,
    "StarRNN": _starrnn_hparams,
    "Transformer": _transformer_hparams,
    "TempCNN": _tempcnn_hparams,
    "MSResNet": _msresnet_hparams,
}


def _infer_hparams(spec: ModelSpec, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture hyperparameters visible in the tensor shapes (only those the model takes)."""
    reader = _HPARAM_READERS.get(spec.name)
    if reader is None:
        return {}
    try:
        found = reader(state)
    except (KeyError, IndexError, ValueError):
        return {}  # names differ: the strict load below lists them
    return {key: value for key, value in found.items() if key in spec.hparams}


def _infer_dims(spec: ModelSpec, state: Mapping[str, torch.Tensor], hparams: dict[str, Any]) -> tuple[int, int]:
    """Input bands and classes of a state_dict, found by which shapes move with each dimension.

    Two probe models (one more band, one more class) show which tensor axes grow with ``input_dim`` and
    ``num_classes``; the checkpoint's size on such an axis gives the value. Falls back to the official
    13 bands and 9 classes when nothing fits (the strict load then reports the mismatch).
    """
    base_in, base_cls = OFFICIAL_INPUT_DIM, OFFICIAL_NUM_CLASSES

    def shapes(input_dim: int, num_classes: int) -> dict[str, torch.Size]:
        model = build(spec.name, input_dim=input_dim, num_classes=num_classes, sequence_length=SEQUENCE_LENGTH,
                      **hparams)
        return {key: value.shape for key, value in model.state_dict().items()}

    try:
        base = shapes(base_in, base_cls)
        probes = {"input_dim": shapes(base_in + 1, base_cls), "num_classes": shapes(base_in, base_cls + 1)}
    except (TypeError, ValueError):
        return base_in, base_cls
    found = {"input_dim": base_in, "num_classes": base_cls}
    for dim, probe in probes.items():
        for key, shape in base.items():
            if key not in state or key not in probe or len(probe[key]) != len(shape):
                continue
            axes = [axis for axis in range(len(shape)) if probe[key][axis] != shape[axis]]
            if len(axes) != 1 or len(state[key].shape) != len(shape):
                continue
            axis = axes[0]
            step = probe[key][axis] - shape[axis]
            offset = state[key].shape[axis] - shape[axis]
            if offset % step == 0 and found[dim] + offset // step >= 1:
                found[dim] = found[dim] + offset // step
                break
    return found["input_dim"], found["num_classes"]
