"""Download of the official files, against a local HTTP server serving tiny fixture archives.

No test touches the internet: every URL points at 127.0.0.1 (tests/http_fixture.py).
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from http_fixture import FileServer, closed_port_url

from cropcore import cli
from cropcore.constants import BASE_URL, BASE_URL_ENV, CLASS_CODES, CLASSES, COLUMNS, H5_SIZES, MASKS, REGIONS
from cropcore.data import layout
from cropcore.data.download import (
    UnsafeArchiveError,
    download,
    fetch_file,
    partial_path,
    resolve_base_url,
    safe_extract,
)
from cropcore.data.errors import DataFormatError

PARCELS = {101: "BTH", 102: "ORH", 103: "PPH"}
NESTED_PREFIX = "data/BreizhCrops/{level}_img/data/2017/{level}/"
WEEKS = 51  # time steps per fixture parcel (weekly dates of 2017)


# --------------------------------------------------------------------------- fixture files


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A tar.gz (in memory) holding regular files named as given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def special_tar(path: Path, info: tarfile.TarInfo, content: bytes = b"") -> Path:
    """A tar.gz with one harmless file and then ``info`` (the member under test)."""
    with tarfile.open(path, "w:gz") as tar:
        harmless = tarfile.TarInfo("ok.txt")
        harmless.size = 2
        tar.addfile(harmless, io.BytesIO(b"ok"))
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content) if content else None)
    return path


def h5_bytes(folder: Path, region: str, level: str) -> bytes:
    """A tiny region .h5 in the official structure: one (T, C) float64 dataset per parcel.

    Reflectances are integers x1e4, masks zero and ``doa`` weekly 2017 dates in ns, so the
    loader can read the downloaded files as it would read the real ones.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{region}-{level}.h5"
    rng = np.random.default_rng(0)
    dates = (np.datetime64("2017-01-02") + 7 * np.arange(WEEKS)).astype("datetime64[ns]")
    columns = COLUMNS[level]
    with h5py.File(path, "w") as h5:
        for parcel in PARCELS:
            values = rng.integers(100, 5000, size=(len(dates), len(columns))).astype("float64")
            values[:, [columns.index(mask) for mask in MASKS[level]]] = 0.0
            values[:, columns.index("doa")] = dates.astype("int64").astype("float64")
            h5.create_dataset(parcel_key(region, level, parcel), data=values)
    return path.read_bytes()


def parcel_key(region: str, level: str, parcel: int) -> str:
    return f"/data/BreizhCrops/{level}_img/data/2017/{level}/{region}/csv/{parcel}.csv"


def index_csv(region: str, level: str) -> bytes:
    rows = ["idx,id,CODE_CULTU,path,meanQA60,sequencelength"]
    rows += [f"{i},{parcel},{code},{parcel_key(region, level, parcel)},0.0,{WEEKS}"
             for i, (parcel, code) in enumerate(PARCELS.items(), start=1)]
    return ("\n".join(rows) + "\n").encode()


def classmapping_csv() -> bytes:
    """The official class mapping's form: unnamed index, then id, classname, code; one row per code."""
    rows = [(CLASSES.index(name), name, code) for name in CLASSES for code in CLASS_CODES[name]]
    lines = [",id,classname,code"] + [f"{row},{cid},{name},{code}" for row, (cid, name, code) in enumerate(rows)]
    return ("\n".join(lines) + "\n").encode()


CLASSMAPPING = classmapping_csv()
CODES = "CODE;LIBELLE_CULTURE;LIBELLE_GROUPE\nORH;Orge d'hiver;Orge\nBTH;Blé tendre d'hiver;Blé tendre\n".encode()


def shapefile_archive(folder: Path, region: str) -> bytes:
    """A shapefile (EPSG:2154, one square per parcel) packed as the release does: parts at the top."""
    import geopandas as gpd
    from shapely.geometry import box

    folder.mkdir(parents=True, exist_ok=True)
    frame = gpd.GeoDataFrame(
        {"ID": list(PARCELS), "CODE_CULTU": list(PARCELS.values())},
        geometry=[box(250000 + 100 * i, 6760000, 250050 + 100 * i, 6760050) for i in range(len(PARCELS))],
        crs="EPSG:2154",
    )
    frame.to_file(folder / f"{region}.shp")
    return tar_gz({part.name: part.read_bytes() for part in sorted(folder.iterdir())})


def region_files(folder: Path, region: str, level: str, *, nested: bool = True) -> dict[str, bytes]:
    """URL path -> bytes for every file of one region, as the official bucket lays them out."""
    h5 = h5_bytes(folder, region, level)
    member = (NESTED_PREFIX.format(level=level) if nested else "") + f"{region}.h5"
    return {
        "/classmapping.csv": CLASSMAPPING,
        "/codes.csv": CODES,
        f"/2017/{level}/{region}.csv": index_csv(region, level),
        f"/2017/{level}/{region}.h5.tar.gz": tar_gz({member: h5}),
        f"/2017/shp/{region}.tar.gz": shapefile_archive(folder / f"shp-{region}", region),
    }


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of frh04 L1C, with the .h5 nested as the real archive unpacks it."""
    return region_files(tmp_path_factory.mktemp("official"), "frh04", "L1C")


@pytest.fixture(scope="module")
def h5_size(tmp_path_factory: pytest.TempPathFactory) -> int:
    return len(h5_bytes(tmp_path_factory.mktemp("size"), "frh04", "L1C"))


@pytest.fixture(autouse=True)
def local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy or mirror configured on the machine must not redirect requests meant for 127.0.0.1."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(BASE_URL_ENV, raising=False)


def tree(folder: Path) -> set[str]:
    """Every path below ``folder`` (relative), to prove nothing else was written."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


# --------------------------------------------------------------------------- whole region


@pytest.mark.parametrize("nested", [True, False], ids=["nested-h5", "flat-h5"])
def test_download_writes_the_official_layout(tmp_path: Path, nested: bool) -> None:
    files = region_files(tmp_path / "fixture", "frh04", "L1C", nested=nested)
    h5_size = len(h5_bytes(tmp_path / "fixture", "frh04", "L1C"))
    root = tmp_path / "root"
    with FileServer(files) as server:
        returned = download("FRH04", "l1c", root, base_url=server.url, progress=False,
                            sizes={"L1C": {"frh04": h5_size}})
        first_requests = len(server.requests)
        download("frh04", "L1C", root, base_url=server.url, progress=False, sizes={"L1C": {"frh04": h5_size}})
        assert len(server.requests) == first_requests, "complete files must not be fetched again"

    assert returned == root
    assert layout.classmapping_path(root).read_bytes() == CLASSMAPPING
    assert layout.codes_path(root).read_bytes() == CODES
    assert layout.index_path(root, "frh04", "L1C").read_bytes() == files["/2017/L1C/frh04.csv"]
    h5 = layout.h5_path(root, "frh04", "L1C")
    assert h5 == layout.h5_candidates(root, "frh04", "L1C")[1 if nested else 0]
    with h5py.File(h5, "r") as opened:
        assert opened[parcel_key("frh04", "L1C", 102)].shape == (WEEKS, len(COLUMNS["L1C"]))

    import geopandas as gpd

    parcels = gpd.read_file(layout.shapefile_path(root, "frh04"))
    assert parcels.crs.to_epsg() == 2154 and sorted(parcels["ID"]) == sorted(PARCELS)
    leftovers = [name for name in tree(root) if name.endswith((".part", ".tar.gz")) or ".extract-" in name]
    assert leftovers == []


def test_loader_with_download_true_reads_what_was_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, official: dict[str, bytes], h5_size: int
) -> None:
    """The loader's ``download=True`` goes through download() and can read the result."""
    dataset = pytest.importorskip("cropcore.data.dataset")
    monkeypatch.setitem(H5_SIZES["L1C"], "frh04", h5_size)
    with FileServer(official) as server:
        monkeypatch.setenv(BASE_URL_ENV, server.url)
        parcels = dataset.BreizhCrops("frh04", root=tmp_path, level="L1C", download=True)
    assert sorted(parcels.index["id"]) == sorted(PARCELS)
    x, _, _ = parcels[0]
    assert tuple(x.shape) == (45, 13)


def test_download_without_shapefile_skips_it(tmp_path: Path, official: dict[str, bytes], h5_size: int) -> None:
    with FileServer(official) as server:
        download("frh04", "L1C", tmp_path, base_url=server.url, include_shapefile=False, progress=False,
                 sizes={"L1C": {"frh04": h5_size}})
        assert all("/shp/" not in served.path for served in server.requests)
    assert not layout.shapefile_path(tmp_path, "frh04").exists()


def test_size_mismatch_names_file_sizes_and_keeps_the_archive(
    tmp_path: Path, official: dict[str, bytes], h5_size: int
) -> None:
    with FileServer(official) as server, pytest.raises(DataFormatError) as caught:
        download("frh04", "L1C", tmp_path, base_url=server.url, progress=False, sizes={"L1C": {"frh04": 123456}})
    message = str(caught.value)
    assert "frh04.h5" in message and "123,456" in message and f"{h5_size:,}" in message
    assert (layout.level_dir(tmp_path, "L1C") / "frh04.h5.tar.gz").is_file()
    assert layout.h5_path(tmp_path, "frh04", "L1C") is None, "a wrong-size .h5 must not be left for the loader"


def test_unsafe_h5_archive_is_refused_and_nothing_lands_outside_root(tmp_path: Path) -> None:
    files = {"/classmapping.csv": CLASSMAPPING, "/codes.csv": CODES, "/2017/L1C/frh04.csv": b"idx\n",
             "/2017/L1C/frh04.h5.tar.gz": tar_gz({"frh04.h5": b"x", "../../../escaped.txt": b"gotcha"})}
    root = tmp_path / "root"
    with FileServer(files) as server, pytest.raises(UnsafeArchiveError, match=r"\.\./\.\./\.\./escaped\.txt"):
        download("frh04", "L1C", root, base_url=server.url, progress=False)
    assert tree(tmp_path) == {"root"} | {f"root/{name}" for name in tree(root)}
    assert not any("escaped" in name or name.endswith(".h5") for name in tree(tmp_path))


def test_unknown_region_level_and_missing_release_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frh01"):
        download("frh09", root=tmp_path)
    with pytest.raises(ValueError, match="L2A"):
        download("frh04", "L3", root=tmp_path)
    with pytest.raises(ValueError, match="kermaux"):
        download("kermaux", "L2A", root=tmp_path)


def test_simulated_root_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / layout.SIMULATED_MARKER).write_text("{}")
    with pytest.raises(ValueError, match="simulated"):
        download("frh04", root=tmp_path, base_url=closed_port_url())


# --------------------------------------------------------------------------- fetch_file


def payload(size: int = 300_000) -> bytes:
    return np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()


def test_truncated_download_resumes_with_range(tmp_path: Path) -> None:
    content = payload()
    with FileServer({"/big.bin": content}, truncations={"/big.bin": 1}) as server:
        dest = fetch_file(f"{server.url}/big.bin", tmp_path / "big.bin", progress=False)
        ranges = server.ranges("/big.bin")
    assert ranges[0] is None and ranges[1] == f"bytes={len(content) // 2}-"
    assert dest.read_bytes() == content
    assert not partial_path(dest).exists()


def test_download_that_keeps_breaking_gives_up_and_keeps_the_part(tmp_path: Path) -> None:
    content = payload()
    dest = tmp_path / "big.bin"
    with FileServer({"/big.bin": content}, truncations={"/big.bin": 99}) as server:
        with pytest.raises(ConnectionError, match="keeps stopping early") as caught:
            fetch_file(f"{server.url}/big.bin", dest, progress=False)
        assert len(server.requests) == 4 and all(r.startswith("bytes=") for r in server.ranges("/big.bin")[1:])
        assert str(partial_path(dest)) in str(caught.value) and not dest.exists()
        server.truncations.clear()
        fetch_file(f"{server.url}/big.bin", dest, progress=False)
    assert dest.read_bytes() == content


def test_existing_file_of_the_wrong_size_is_fetched_again(tmp_path: Path) -> None:
    content = payload(5000)
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with FileServer({"/file.bin": content}) as server:
        fetch_file(f"{server.url}/file.bin", dest, expected_size=len(content), progress=False)
        fetch_file(f"{server.url}/file.bin", dest, expected_size=len(content), progress=False)
        assert len(server.requests) == 1
    assert dest.read_bytes() == content


def test_existing_part_file_resumes_from_its_size(tmp_path: Path) -> None:
    content = payload()
    dest = tmp_path / "big.bin"
    partial_path(dest).write_bytes(content[:1000])
    with FileServer({"/big.bin": content}) as server:
        fetch_file(f"{server.url}/big.bin", dest, expected_size=len(content), progress=False)
        assert server.ranges("/big.bin") == ["bytes=1000-"]
    assert dest.read_bytes() == content


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path) -> None:
    content = payload()
    dest = tmp_path / "big.bin"
    partial_path(dest).write_bytes(b"stale bytes from another version")
    with FileServer({"/big.bin": content}, ignore_range=True) as server:
        fetch_file(f"{server.url}/big.bin", dest, progress=False)
        assert [served.status for served in server.requests] == [200]
    assert dest.read_bytes() == content


def test_whole_part_file_is_finished_on_416(tmp_path: Path) -> None:
    content = payload(5000)
    dest = tmp_path / "big.bin"
    partial_path(dest).write_bytes(content)
    with FileServer({"/big.bin": content}) as server:
        fetch_file(f"{server.url}/big.bin", dest, progress=False)
        assert [served.status for served in server.requests] == [416]
    assert dest.read_bytes() == content and not partial_path(dest).exists()


def test_expected_size_differing_from_server_is_refused(tmp_path: Path) -> None:
    with FileServer({"/small.bin": b"12345"}) as server, pytest.raises(DataFormatError) as caught:
        fetch_file(f"{server.url}/small.bin", tmp_path / "small.bin", expected_size=9, progress=False)
    assert "/small.bin" in str(caught.value) and "expected 9" in str(caught.value)
    assert not (tmp_path / "small.bin").exists()


def test_missing_file_is_file_not_found_naming_the_url(tmp_path: Path) -> None:
    with FileServer({}) as server, pytest.raises(FileNotFoundError, match="/nothing.csv"):
        fetch_file(f"{server.url}/nothing.csv", tmp_path / "nothing.csv", progress=False)


def test_offline_error_names_url_and_points_to_the_demo(tmp_path: Path) -> None:
    base = closed_port_url()
    with pytest.raises(ConnectionError) as caught:
        download("frh04", "L1C", tmp_path, base_url=base, progress=False, timeout=5)
    message = str(caught.value)
    assert f"{base}/classmapping.csv" in message
    assert "cropcore demo" in message and "simulated" in message


def test_silent_server_times_out_with_the_offline_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections in the backlog, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/slow.csv"
        with pytest.raises(ConnectionError, match="cannot reach .*/slow.csv.*cropcore demo"):
            fetch_file(url, tmp_path / "slow.csv", progress=False, timeout=0.3)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- base URL


def test_base_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    assert resolve_base_url() == BASE_URL
    monkeypatch.setenv(BASE_URL_ENV, "http://mirror.example/")
    assert resolve_base_url() == "http://mirror.example"
    assert resolve_base_url("http://argument.example") == "http://argument.example"


def test_environment_variable_redirects_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, official: dict[str, bytes], h5_size: int
) -> None:
    with FileServer(official) as server:
        monkeypatch.setenv(BASE_URL_ENV, server.url)
        download("frh04", "L1C", tmp_path / "env", include_shapefile=False, progress=False,
                 sizes={"L1C": {"frh04": h5_size}})
        assert server.requests, "the server named by the environment variable was not used"
        monkeypatch.setenv(BASE_URL_ENV, closed_port_url())
        download("frh04", "L1C", tmp_path / "arg", base_url=server.url, include_shapefile=False,
                 progress=False, sizes={"L1C": {"frh04": h5_size}})
    assert layout.h5_path(tmp_path / "env", "frh04", "L1C") and layout.h5_path(tmp_path / "arg", "frh04", "L1C")


# --------------------------------------------------------------------------- safe_extract


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


UNSAFE = {
    "parent": (tarfile.TarInfo("../escaped.txt"), b"gotcha"),
    "deep-parent": (tarfile.TarInfo("inner/../../escaped.txt"), b"gotcha"),
    "absolute": (tarfile.TarInfo("/tmp/cropcore-escaped.txt"), b"gotcha"),
    "symlink-absolute": (_symlink("link", "/etc"), b""),
    "symlink-relative": (_symlink("inner/link", "../../outside"), b""),
    "hardlink": (_hardlink("hard", "../outside.txt"), b""),
    "device": (_device("null"), b""),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_safe_extract_refuses_unsafe_members(tmp_path: Path, case: str) -> None:
    info, content = UNSAFE[case]
    archive = special_tar(tmp_path / "evil.tar.gz", info, content)
    root = tmp_path / "root"
    dest = root / "2017"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, dest)
    assert info.name in str(caught.value) and "evil.tar.gz" in str(caught.value)
    assert tree(tmp_path) == {"evil.tar.gz", "root", "root/2017"}, "nothing may be written, inside or out"
    assert not Path("/tmp/cropcore-escaped.txt").exists()


def test_link_chain_escaping_through_another_link_is_caught_by_the_data_filter(tmp_path: Path) -> None:
    """Each link looks inside on its own ('a' -> '.', 'b' -> 'a/..'), yet 'b' leads out: the second guard."""
    archive = tmp_path / "chain.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(_symlink("a", "."))
        tar.addfile(_symlink("b", "a/.."))
    dest = tmp_path / "root" / "dest"
    with pytest.raises(UnsafeArchiveError, match="'b'"):
        safe_extract(archive, dest)
    assert tree(tmp_path) == {"chain.tar.gz", "root", "root/dest"}


def test_safe_extract_merges_and_keeps_inside_links(tmp_path: Path) -> None:
    archive = special_tar(tmp_path / "fine.tar.gz", _symlink("sub/alias.txt", "../ok.txt"))
    dest = tmp_path / "dest"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "existing.txt").write_text("kept")
    placed = safe_extract(archive, dest)
    assert placed == [dest / "ok.txt", dest / "sub" / "alias.txt"]
    assert (dest / "sub" / "alias.txt").read_text() == "ok"
    assert (dest / "sub" / "existing.txt").read_text() == "kept"
    assert tree(tmp_path) == {"fine.tar.gz", "dest", "dest/ok.txt", "dest/sub", "dest/sub/alias.txt",
                              "dest/sub/existing.txt"}


def test_corrupt_archive_is_a_format_error(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(tar_gz({"a.txt": payload(50_000)})[:2000])
    with pytest.raises(DataFormatError, match="broken.tar.gz"):
        safe_extract(archive, tmp_path / "dest")
    assert not any(".extract-" in name for name in tree(tmp_path))


# --------------------------------------------------------------------------- command line


def test_cli_downloads_all_regions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files: dict[str, bytes] = {}
    for region in REGIONS:
        region_dict = region_files(tmp_path / "fixture", region, "L2A")
        files.update({path: content for path, content in region_dict.items() if "/shp/" not in path})
        h5 = h5_bytes(tmp_path / "fixture", region, "L2A")
        monkeypatch.setitem(H5_SIZES["L2A"], region, len(h5))
    root = tmp_path / "root"
    with FileServer(files) as server:
        status = cli.main(["download", "--region", "all", "--level", "L2A", "--root", str(root),
                           "--base-url", server.url, "--no-shapefile", "--no-progress"])
    assert status == 0
    output = capsys.readouterr().out
    assert all(f"{region} L2A: ready" in output for region in REGIONS)
    assert all(layout.h5_path(root, region, "L2A") for region in REGIONS)


def test_cli_reports_offline_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["download", "--region", "frh04", "--root", str(tmp_path), "--base-url", closed_port_url(),
                       "--no-progress"])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("cropcore download: error: cannot reach") and "cropcore demo" in error
    assert error.count("\n") == 1


def test_cli_rejects_unknown_region(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["download", "--region", "frh99", "--root", str(tmp_path)])
    assert status == 2 and "frh01" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------- package export, progress, concurrency


def test_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FileServer({"/bar.bin": payload(10_000)}) as server:
        fetch_file(f"{server.url}/bar.bin", tmp_path / "bar.bin", progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "bar.bin" in captured.err


def test_concurrent_downloads_fetch_each_file_once(tmp_path: Path, official: dict[str, bytes], h5_size: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with FileServer(official) as server:
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(download, "frh04", "L1C", tmp_path, base_url=server.url, progress=False,
                                sizes={"L1C": {"frh04": h5_size}}) for _ in range(2)]
            assert [job.result() for job in jobs] == [tmp_path, tmp_path]
        paths = [served.path for served in server.requests]
    assert sorted(paths) == sorted(set(paths)) == sorted(official)
