"""Official BreizhCrops weights and cropcore checkpoints: equivalence with the reference, caching, errors.

The reference package (``breizhcrops==0.0.4.1``, installed ``--no-deps``) supplies the official
architectures; its state_dicts are saved in the official file format and loaded with ``pretrained``.
"""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from cropcore import models
from cropcore.constants import BANDS, REFERENCE_BAND_ORDER
from cropcore.models.pretrained import OFFICIAL_FILES, CheckpointError, official_cache_path

PUBLISHED = ("TempCNN", "MSResNet", "OmniScaleCNN", "LSTM", "StarRNN", "Transformer")


def _reference_builders() -> dict[str, Callable[[], nn.Module]]:
    ref = pytest.importorskip(
        "breizhcrops.models",
        reason="the reference package breizhcrops==0.0.4.1 (pip install --no-deps) is needed to compare against",
    )
    warnings.filterwarnings("ignore", message="enable_nested_tensor")
    return {
        "TempCNN": lambda: ref.TempCNN(13, 9, 45),
        "MSResNet": lambda: ref.MSResNet(13, num_classes=9, hidden_dims=32),
        "OmniScaleCNN": lambda: ref.OmniScaleCNN(13, 9, 45),
        "LSTM": lambda: ref.LSTM(13, 9),
        "StarRNN": lambda: ref.StarRNN(13, 9, bidirectional=False, use_batchnorm=False, use_layernorm=True),
        "Transformer": lambda: ref.TransformerModel(13, 9),
    }


def _to_reference_order(x: torch.Tensor) -> torch.Tensor:
    """Our wavelength-order input, reordered the way the reference transform feeds its models."""
    ours = BANDS["L1C"]
    return x[..., [ours.index(band) for band in REFERENCE_BAND_ORDER["L1C"]]]


def _official_file(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"model_state": state, "epoch": 3}, path)
    return path


@pytest.mark.parametrize("name", PUBLISHED)
def test_official_weights_reproduce_the_reference(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = _reference_builders()[name]()
    reference.train()
    with torch.no_grad():  # move batch-norm statistics away from their initial values
        reference(torch.rand(16, 45, 13))
    file = _official_file(tmp_path / f"{name}.pth", reference.state_dict())

    model = models.pretrained(name, file)

    assert not model.training
    x = torch.rand(5, 45, 13)
    with torch.no_grad():
        expected = reference.eval()(_to_reference_order(x))
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
        assert (model(x) - expected).abs().max() <= 1e-5


def test_official_starrnn_shared_layers_load_into_independent_layers(tmp_path: Path) -> None:
    reference = _reference_builders()["StarRNN"]()
    state = reference.state_dict()
    assert state["block.1.cell.h_K.weight"].data_ptr() == state["block.2.cell.h_K.weight"].data_ptr()
    distinct = {value.data_ptr(): value.numel() for key, value in state.items() if "bn_layer.running" not in key
                and "num_batches" not in key}
    assert sum(distinct.values()) == 71_587  # the reference's (and Table 1's) count
    model = models.pretrained("StarRNN", _official_file(tmp_path / "star.pth", state))
    first, second = model.block[1].cell.h_K.weight, model.block[2].cell.h_K.weight
    assert torch.equal(first, second) and first.data_ptr() != second.data_ptr()


def test_official_l2a_weights_get_no_band_reordering(tmp_path: Path) -> None:
    source = models.build("LSTM", input_dim=10, num_classes=7, sequence_length=45, hidden_dims=16, num_layers=2)
    model = models.pretrained("lstm", _official_file(tmp_path / "l2a.pth", source.state_dict()))
    assert (model.input_dim, model.num_classes, model.band_permutation) == (10, 7, None)
    assert model.lstm.hidden_size == 16 and model.lstm.num_layers == 2


def test_cropcore_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = models.build("StarRNN", input_dim=13, num_classes=9, sequence_length=45, hidden_dims=16, num_layers=2)
    optimizer = torch.optim.Adam(source.parameters())
    source(torch.rand(4, 45, 13)).sum().backward()
    optimizer.step()
    path = models.save_checkpoint(tmp_path / "run" / "checkpoint.pt", source, "starrnn",
                                  {"hidden_dims": 16, "num_layers": 2}, level="L1C", optimizer=optimizer,
                                  epoch=4, extra={"note": "test"})
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary file left
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "cropcore-checkpoint" and raw["model"] == "StarRNN" and raw["epoch"] == 4
    assert raw["hparams"] == {"hidden_dims": 16, "num_layers": 2, "dropout": 0.5, "use_layernorm": True}
    assert raw["band_order"] == list(BANDS["L1C"]) and raw["note"] == "test"
    assert models.load_checkpoint(path)["optimizer_state"]["state"]

    loaded = models.pretrained("StarRNN", path)
    x = torch.rand(3, 45, 13)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source.eval()(x))

    # A network trained on another band order is reordered on load: callers keep our order.
    reordered = models.save_checkpoint(tmp_path / "ref-order.pt", source, "StarRNN",
                                       {"hidden_dims": 16, "num_layers": 2},
                                       band_order=REFERENCE_BAND_ORDER["L1C"])
    with torch.no_grad():
        torch.testing.assert_close(models.pretrained("StarRNN", reordered)(x), source(_to_reference_order(x)))


def test_saving_records_the_network_as_it_is(tmp_path: Path) -> None:
    import numpy as np

    torch.manual_seed(2)
    x = torch.rand(3, 45, 13)
    # the hyperparameters it was built with, without being told them again
    network = models.build("Transformer", input_dim=13, num_classes=9, sequence_length=45, n_head=4).eval()
    path = models.save_checkpoint(tmp_path / "heads.pt", network, "Transformer")
    assert torch.load(path, weights_only=True)["hparams"]["n_head"] == 4
    with torch.no_grad():
        torch.testing.assert_close(models.pretrained("Transformer", path)(x), network(x))
    with pytest.raises(ValueError, match=r"n_head=2 differ from those the network was built with \(n_head=4\)"):
        models.save_checkpoint(tmp_path / "x.pt", network, "Transformer", {"n_head": 2})
    with pytest.raises(ValueError, match="the network is a Transformer, not a LSTM"):
        models.save_checkpoint(tmp_path / "x.pt", network, "LSTM")
    with pytest.raises(ValueError, match=r"extra\['score'\] is a float64"):
        models.save_checkpoint(tmp_path / "x.pt", network, "Transformer", extra={"score": np.float64(0.5)})
    with pytest.raises(ValueError, match="takes 13 bands but level L2A has 10"):
        models.save_checkpoint(tmp_path / "x.pt", network, "Transformer", level="L2A")
    assert not (tmp_path / "x.pt").exists()
    # official weights saved again (after fine-tuning, say) keep the reference's band order with them
    official = models.pretrained("Transformer", _official_file(tmp_path / "official.pth", network.state_dict()))
    again = models.pretrained("Transformer", models.save_checkpoint(tmp_path / "again.pt", official, "Transformer"))
    with torch.no_grad():
        torch.testing.assert_close(again(x), official(x))
        assert not torch.allclose(again(x), network(x))  # the reordering is really there


def test_bad_checkpoints_say_what_is_wrong(tmp_path: Path) -> None:
    lstm = models.build("LSTM", input_dim=10, num_classes=9, sequence_length=45, hidden_dims=8, num_layers=1)
    file = _official_file(tmp_path / "lstm10.pth", lstm.state_dict())
    with pytest.raises(CheckpointError, match="is for 10 input bands, expected 13"):
        models.pretrained("LSTM", file, input_dim=13)
    with pytest.raises(CheckpointError, match="is for 9 classes, expected 5"):
        models.pretrained("LSTM", file, num_classes=5)

    state = lstm.state_dict()
    state.pop("linear_class.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys \[linear_class.bias\].*unexpected keys \[extra.weight\]"):
        models.pretrained("LSTM", _official_file(tmp_path / "keys.pth", state))
    with pytest.raises(CheckpointError, match=r"keys.pth does not fit Transformer: missing keys"):
        models.pretrained("Transformer", tmp_path / "keys.pth")

    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pth is not a readable PyTorch checkpoint: it is not a file torch.save writes"):
        models.pretrained("LSTM", text)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(file.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated.pth is not a readable .*damaged or cut short"):
        models.pretrained("LSTM", truncated)
    torch.save({"model_state": lstm.state_dict(), "note": _Planted()}, tmp_path / "planted.pth")
    with pytest.raises(CheckpointError, match="holds Python objects besides tensors") as refused:
        models.pretrained("LSTM", tmp_path / "planted.pth")
    assert "weights_only` set to `False" not in str(refused.value)  # never advise loading it as code
    with pytest.raises(CheckpointError, match=r"an official BreizhCrops file loads with models.pretrained"):
        models.load_checkpoint(file)
    torch.save({"format": "cropcore-checkpoint", "model": "LSTM"}, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="edited.pt is a cropcore checkpoint without hparams, input_dim"):
        models.load_checkpoint(tmp_path / "edited.pt")
    torch.save({"model_state": {"a": 1}}, tmp_path / "nostate.pth")
    with pytest.raises(CheckpointError, match="nostate.pth holds no state_dict"):
        models.pretrained("LSTM", tmp_path / "nostate.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        models.pretrained("LSTM", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="unknown model 'VGG'; expected one of TempCNN, MSResNet"):
        models.pretrained("VGG", file)

    star = models.build("StarRNN", input_dim=13, num_classes=9, sequence_length=45, hidden_dims=8)
    ours = models.save_checkpoint(tmp_path / "star.pt", star, "StarRNN", {"hidden_dims": 8})
    with pytest.raises(CheckpointError, match="holds a StarRNN checkpoint, not a LSTM one"):
        models.pretrained("LSTM", ours)


class _Planted:
    """Pickles as a call: a data-only load must refuse it."""

    def __reduce__(self):
        return print, ("unpickled",)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_download_says_how_to_proceed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROPCORE_DATA", str(tmp_path))
    monkeypatch.setenv("CROPCORE_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(ConnectionError, match="cannot download the official LSTM weights.*path="):
        models.pretrained("LSTM", progress=False)
    with pytest.raises(ValueError, match="no official weights were published for InceptionTime"):
        models.pretrained("InceptionTime")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A local HTTP server over a folder, recording the paths it is asked for."""
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_official_file_is_downloaded_once_and_cached(server: tuple[str, Path, list[str]], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url, folder, requests = server
    monkeypatch.setenv("CROPCORE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CROPCORE_BASE_URL", url)
    source = models.build("Transformer", input_dim=13, num_classes=9, sequence_length=45)
    served = folder / urllib.parse.unquote(OFFICIAL_FILES["Transformer"])
    served.parent.mkdir(parents=True)
    _official_file(served, source.state_dict())

    first = models.pretrained("TransformerEncoder", progress=False)
    assert len(requests) == 1
    assert official_cache_path("Transformer").is_file()
    second = models.pretrained("transformer", progress=False)
    assert len(requests) == 1  # served from the cache
    x = torch.rand(2, 45, 13)
    with torch.no_grad():
        torch.testing.assert_close(first(x), second(x))
        torch.testing.assert_close(first(x), source.eval()(_to_reference_order(x)))

    # a bad download (an error page served with status 200) is not kept: the next call fetches it again
    good = served.read_bytes()
    official_cache_path("Transformer").unlink()
    served.write_bytes(b"<html>portal login</html>")
    with pytest.raises(CheckpointError, match="the downloaded copy was removed"):
        models.pretrained("Transformer", progress=False)
    assert not official_cache_path("Transformer").exists()
    served.write_bytes(good)
    models.pretrained("Transformer", progress=False)
    assert len(requests) == 3
