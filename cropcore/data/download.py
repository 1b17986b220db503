"""Fetching the official BreizhCrops files: resumable, verified, atomic and path-safe.

The real release is several gigabytes per region, served from a public bucket. A download may
be interrupted, a mirror may ignore byte ranges, and an archive is foreign input. The rules this
module keeps:

* a file only ever appears at its final path complete (streamed to ``<name>.part``, checked,
  then ``os.replace``), so "the file exists" means "the file is complete" and re-running a
  download skips what is done and resumes what is not (HTTP ``Range``);
* sizes are checked against what the server announces and against the published table;
* no archive member may land outside the destination, and nothing half-extracted remains;
* when the network is unreachable, the error says so and points to the offline demo.

Everything is standard library (``urllib``, ``tarfile``) plus tqdm for the progress bar, so
``fetch_file`` also serves other parts of cropcore (the official checkpoints).

The base URL can be changed (argument, then ``$CROPCORE_BASE_URL``, then the official bucket),
which is how tests serve fixture archives from a local HTTP server.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import os
import posixpath
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from tqdm import tqdm

from cropcore import __version__
from cropcore.constants import (
    BASE_URL,
    BASE_URL_ENV,
    H5_SIZES,
    REGIONS,
    YEAR,
    check_level,
    check_region,
)
from cropcore.data import layout
from cropcore.data.errors import DataFormatError

__all__ = [
    "UnsafeArchiveError",
    "configure",
    "download",
    "fetch_file",
    "official_urls",
    "partial_path",
    "resolve_base_url",
    "run",
    "safe_extract",
]

#: Bytes read from the network per write; large enough to keep Python overhead negligible.
CHUNK_SIZE = 1 << 20
#: How many times a transfer that stopped early is resumed before giving up.
RESUME_ATTEMPTS = 3
#: Appended to every "cannot reach the server" error: the project is fully usable offline.
OFFLINE_HINT = (
    "cropcore works offline on simulated data: `cropcore demo` writes a simulated Brittany in the "
    "official layout, and the dashboard and the loaders use that simulated data by default. "
    f"To use a mirror, pass --base-url or set ${BASE_URL_ENV}."
)
#: Files that make up a usable shapefile (.prj is welcome but optional).
SHAPEFILE_PARTS: tuple[str, ...] = (".shp", ".shx", ".dbf")


class UnsafeArchiveError(DataFormatError):
    """An archive member would land outside the destination, or is not a plain file, folder or link."""


# --------------------------------------------------------------------------- URLs


def resolve_base_url(base_url: str | None = None) -> str:
    """The base URL to download from, without a trailing slash.

    Precedence: the argument, then ``$CROPCORE_BASE_URL`` (mirrors, local test servers), then the
    official bucket. Kept in one function so datasets and checkpoints agree on it.

    Args:
        base_url: Explicit base URL, or None to consult the environment.

    Returns:
        The base URL, e.g. ``"https://breizhcrops.s3.eu-central-1.amazonaws.com"``.
    """
    chosen = base_url or os.environ.get(BASE_URL_ENV) or BASE_URL
    return chosen.rstrip("/")


def official_urls(region: str, level: str, base_url: str | None = None) -> dict[str, str]:
    """URLs of the five files of one region and level, keyed by role.

    Args:
        region: Region name (``frh01`` .. ``frh04``, ``belle-ile``, ``kermaux``).
        level: ``L1C`` or ``L2A``.
        base_url: Base URL override (see :func:`resolve_base_url`).

    Returns:
        A dict with keys ``classmapping``, ``codes``, ``index``, ``h5_archive``, ``shapefile_archive``.
    """
    base = resolve_base_url(base_url)
    return {
        "classmapping": f"{base}/classmapping.csv",
        "codes": f"{base}/codes.csv",
        "index": f"{base}/{YEAR}/{level}/{region}.csv",
        "h5_archive": f"{base}/{YEAR}/{level}/{region}.h5.tar.gz",
        "shapefile_archive": f"{base}/{YEAR}/shp/{region}.tar.gz",
    }


# --------------------------------------------------------------------------- fetching one file


def partial_path(dest: Path) -> Path:
    """Where an unfinished download of ``dest`` accumulates (``<name>.part`` beside it)."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def fetch_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download ``url`` to ``dest`` once, resuming an interrupted attempt, and place it atomically.

    Bytes stream into ``dest.part``; an existing ``.part`` is continued with an HTTP ``Range``
    request (a server that answers 200 instead of 206 ignored the range, so the file restarts
    from zero; 416 means the ``.part`` is already whole). A transfer that stops early is resumed
    up to :data:`RESUME_ATTEMPTS` times. The size is checked against what the server announces
    and against ``expected_size`` before ``os.replace`` moves the file into place, so ``dest``
    never exists half-written. Not safe for two processes fetching the same ``dest`` at once
    (:func:`download` serialises its callers with a lock).

    Args:
        url: What to fetch (``http``/``https``; percent-encoding is kept as given).
        dest: Final path of the file; parent folders are created.
        expected_size: Size in bytes the file must have, when known in advance.
        progress: Show a tqdm progress bar on stderr.
        timeout: Seconds to wait for the server to connect or send more data.

    Returns:
        ``dest`` as a Path. An existing ``dest`` (of ``expected_size``, when given) is returned
        without any network access.

    Raises:
        ConnectionError: The server cannot be reached (the message names the URL and the offline
            demo), answers with an HTTP error, or keeps stopping before the end of the file.
        FileNotFoundError: The server has no such file (HTTP 404).
        DataFormatError: The size differs from ``expected_size`` or from what the server announced.
    """
    dest = Path(dest)
    if _is_complete(dest, expected_size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    for attempt in range(RESUME_ATTEMPTS + 1):
        total = _transfer(url, part, expected_size=expected_size, progress=progress, timeout=timeout)
        if _part_is_whole(url, part, total if total is not None else expected_size):
            break
        if attempt == RESUME_ATTEMPTS:
            raise ConnectionError(
                f"download of {url} keeps stopping early ({_size(part):,} of "
                f"{total if total is not None else expected_size:,} bytes after "
                f"{RESUME_ATTEMPTS} resumes); the partial file {part} is kept: run the same command "
                "again to resume it"
            )
    _check_size(url, _size(part), expected_size, part)
    os.replace(part, dest)
    return dest


def _is_complete(dest: Path, expected_size: int | None) -> bool:
    """A finished file exists (files only appear complete, so existence is enough without a size)."""
    return dest.is_file() and (expected_size is None or dest.stat().st_size == expected_size)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _part_is_whole(url: str, part: Path, total: int | None) -> bool:
    """True when ``part`` has reached ``total`` bytes (or the length is unknown and the stream ended)."""
    received = _size(part)
    if total is None or received == total:
        return True
    if received > total:
        part.unlink()
        raise DataFormatError(
            f"download of {url} produced {received:,} bytes, more than the {total:,} bytes expected; "
            "the partial file was removed, run the command again to start afresh"
        )
    return False


def _check_size(url: str, found: int, expected: int | None, path: Path) -> None:
    """Refuse a finished download whose size is not the one expected."""
    if expected is not None and found != expected:
        path.unlink(missing_ok=True)
        raise DataFormatError(f"download of {url} has {found:,} bytes, expected {expected:,}; the file was removed")


def _transfer(url: str, part: Path, *, expected_size: int | None, progress: bool, timeout: float) -> int | None:
    """One HTTP request that appends to ``part`` from its current size.

    Returns:
        The total size of the remote file when the server told it, else None. A stream that
        breaks off is not an error here: the caller compares the size and resumes.
    """
    offset = _size(part)
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        with error:
            return _handle_http_error(url, part, offset, error)
    with response:
        offset, total = _start_position(url, part, offset, response)
        _check_announced(url, total, expected_size)
        with open(part, "ab" if offset else "wb") as out:
            _stream(response, out, total=total, initial=offset, label=part.name[: -len(".part")], progress=progress)
    return total


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """Send the GET (with a Range header when resuming) and turn network failures into ConnectionError."""
    headers = {"User-Agent": f"cropcore/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https by design)
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        kept = f" The partial download ({offset:,} bytes) is kept and resumes next time." if offset else ""
        raise ConnectionError(f"cannot reach {url} ({reason}).{kept} {OFFLINE_HINT}") from error


def _handle_http_error(url: str, part: Path, offset: int, error: urllib.error.HTTPError) -> int | None:
    """416 on a resume: the part is whole (or bigger than the file: start over); other codes raise."""
    if error.code == 416 and offset:
        total = _parse_total(error.headers.get("Content-Range"))
        if total is None or total == offset:
            return offset
        part.unlink()
        return total
    if error.code == 404:
        raise FileNotFoundError(f"{url} does not exist on the server (HTTP 404); check the region, level and base URL")
    raise ConnectionError(f"the server answered HTTP {error.code} {error.reason} for {url}. {OFFLINE_HINT}") from error


def _start_position(url: str, part: Path, offset: int, response: http.client.HTTPResponse) -> tuple[int, int | None]:
    """Where the body of ``response`` starts in the file, and the file's total size if announced.

    A 206 continues the file where its Content-Range starts; a 200 means the server ignored the
    range, so the file restarts from zero, which is always correct.
    """
    if response.status == 206:
        start, total = _parse_content_range(url, response.headers.get("Content-Range"))
        if start > offset:
            raise ConnectionError(
                f"{url} answered a resume from byte {offset:,} with bytes from {start:,}; "
                f"delete {part} and run the command again"
            )
        if start < offset:
            os.truncate(part, start)  # the server repeats bytes we have: drop ours after `start`
        return start, total
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _parse_content_range(url: str, header: str | None) -> tuple[int, int | None]:
    """``"bytes 100-199/200"`` -> (100, 200); ``"/*"`` (unknown total) gives None."""
    try:
        unit, _, spec = (header or "").partition(" ")
        span, _, total = spec.partition("/")
        if unit != "bytes":
            raise ValueError(unit)
        return int(span.split("-")[0]), None if total == "*" else int(total)
    except ValueError as error:
        raise ConnectionError(f"{url} answered 206 with an unreadable Content-Range {header!r}") from error


def _parse_total(header: str | None) -> int | None:
    """The total of a 416 answer's ``"bytes */200"``, or None when absent."""
    total = (header or "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _check_announced(url: str, total: int | None, expected_size: int | None) -> None:
    """Stop before downloading when the server's file is not the one we expect."""
    if total is not None and expected_size is not None and total != expected_size:
        raise DataFormatError(f"{url} is {total:,} bytes on the server, expected {expected_size:,}")


def _stream(
    response: http.client.HTTPResponse, out: BinaryIO, *, total: int | None, initial: int, label: str, progress: bool
) -> None:
    """Copy the body into ``out`` with a progress bar; a broken connection just ends the copy.

    Only reading is forgiven (what arrived is kept and fetch_file resumes with Range); a failing
    write, such as a full disk, propagates as the OSError it is.
    """
    with tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
        desc=label, disable=not progress, file=sys.stderr, leave=False,
    ) as bar:
        try:
            while chunk := _read_or_stop(response):
                out.write(chunk)
                bar.update(len(chunk))
        finally:
            out.flush()
            os.fsync(out.fileno())


def _read_or_stop(response: http.client.HTTPResponse) -> bytes:
    """The next chunk, or ``b""`` when the connection broke or timed out."""
    try:
        return response.read(CHUNK_SIZE)
    except (OSError, http.client.HTTPException):
        return b""


# --------------------------------------------------------------------------- extracting


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Extract a tar(.gz) archive into ``dest``, refusing any member that could escape it.

    Archives are foreign input: a member named ``../x`` or ``/etc/x``, a link pointing outside,
    or a device node could write anywhere. Every member is checked first (so a bad archive
    writes nothing), then extracted with tarfile's ``"data"`` filter as a second guard into a
    staging folder beside ``dest``, and only then moved into ``dest`` entry by entry (renames on
    the same file system), so an interruption never leaves half-extracted files in ``dest``.

    Args:
        archive: The ``.tar.gz`` (any compression tarfile reads) to extract.
        dest: Folder the members are relative to; created if missing, merged into if present.

    Returns:
        The paths under ``dest`` of the files and links placed, sorted.

    Raises:
        UnsafeArchiveError: A member is absolute, has a ``..`` component, is a link leading
            outside ``dest``, or is a device/pipe (the message names the member and archive).
        DataFormatError: The archive cannot be read (truncated or not a tar file).
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        _extract_checked(archive, staging)
        return sorted(_merge_into(staging, dest))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_checked(archive: Path, staging: Path) -> None:
    """Check every member, then extract them all into ``staging`` with the data filter."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            tar.extractall(staging, members=members, filter="data")
    except tarfile.FilterError as error:
        name = getattr(getattr(error, "tarinfo", None), "name", "?")
        raise UnsafeArchiveError(f"refusing to extract {archive}: member {name!r} is unsafe ({error})") from error
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataFormatError(
            f"{archive} is not a readable tar archive ({error}); delete it and download again"
        ) from error


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse a member that is not a plain file, folder or inside-pointing link, naming it."""
    problem = _member_problem(member)
    if problem:
        raise UnsafeArchiveError(f"refusing to extract {archive}: member {member.name!r} {problem}")


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` is unsafe, or None. Checks are lexical; the data filter checks the disk."""
    name = member.name
    if _is_absolute(name):
        return "has an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "has a '..' component that leads outside the destination"
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device or pipe"
    if member.issym():
        target = member.linkname
        inside = posixpath.join(posixpath.dirname(name), target)
        if _is_absolute(target) or _escapes(inside):
            return f"is a symbolic link to {target!r}, outside the destination"
    elif member.islnk() and (_is_absolute(member.linkname) or _escapes(member.linkname)):
        return f"is a hard link to {member.linkname!r}, outside the destination"
    elif not (member.isfile() or member.isdir() or member.islnk()):
        return "is neither a file, a folder nor a link"
    return None


def _is_absolute(name: str) -> bool:
    """POSIX absolute, or a Windows drive / UNC path (archives can come from anywhere)."""
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":")


def _escapes(relative: str) -> bool:
    """True when a relative POSIX path, normalised, climbs above its starting folder."""
    normal = posixpath.normpath(relative.replace("\\", "/"))
    return normal == ".." or normal.startswith("../")


def _merge_into(source: Path, target: Path) -> list[Path]:
    """Move the entries of ``source`` into ``target``, descending into folders both have."""
    placed: list[Path] = []
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and destination.is_dir():
            placed += _merge_into(entry, destination)
            continue
        if destination.is_dir() and not destination.is_symlink():
            raise DataFormatError(f"cannot replace the folder {destination} with the archive's file {entry.name!r}")
        os.replace(entry, destination)
        placed += _files_under(destination)
    return placed


def _files_under(path: Path) -> list[Path]:
    """``path`` itself for a file or link, else every file and link below the folder."""
    if path.is_symlink() or not path.is_dir():
        return [path]
    return [item for item in path.rglob("*") if item.is_symlink() or not item.is_dir()]


# --------------------------------------------------------------------------- one region


def download(
    region: str,
    level: str = "L1C",
    root: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    include_shapefile: bool = True,
    progress: bool = True,
    sizes: Mapping[str, Mapping[str, int]] = H5_SIZES,
    timeout: float = 30,
) -> Path:
    """Fetch one region and level of the official release into the official layout under ``root``.

    Downloads ``classmapping.csv``, ``codes.csv``, the region index, the ``.h5.tar.gz`` (extracted,
    flat or in the nested folder it unpacks to, then size-checked and removed) and, unless
    disabled, the shapefile archive (extracted to ``root/2017/<region>.shp``). Files already
    complete are skipped, so re-running after an interruption only fetches what is missing.

    Args:
        region: ``frh01`` .. ``frh04``, ``belle-ile`` or ``kermaux`` (case-insensitive).
        level: ``L1C`` or ``L2A``.
        root: Data root; None means :func:`cropcore.data.layout.default_root`.
        base_url: Base URL override (precedence: argument, ``$CROPCORE_BASE_URL``, official).
        include_shapefile: Also fetch the parcel geometries (needed for maps only).
        progress: Show progress bars.
        sizes: Published sizes of the extracted .h5 files per level and region (the integrity
            check); a region absent from it is not size-checked. Tests pass their own.
        timeout: Seconds to wait on the network before giving up.

    Returns:
        ``root``, ready for ``BreizhCrops(region, root=root, level=level)``.

    Raises:
        ValueError: Unknown region or level, a region not released at this level, or a root
            holding the simulated demo.
        ConnectionError: The server is unreachable (see :func:`fetch_file`).
        DataFormatError: An archive is unsafe or unreadable, or the .h5 has the wrong size.
    """
    region, level = check_region(region), check_level(level)
    _check_released(region, level)
    root = Path(root) if root is not None else layout.default_root()
    if layout.is_simulated(root):
        raise ValueError(
            f"{root} holds the simulated demo ({layout.SIMULATED_MARKER}); download real data into another root"
        )
    urls = official_urls(region, level, base_url)
    options: dict[str, Any] = {"progress": progress, "timeout": timeout}
    root.mkdir(parents=True, exist_ok=True)
    with _download_lock(root):
        fetch_file(urls["classmapping"], layout.classmapping_path(root), **options)
        fetch_file(urls["codes"], layout.codes_path(root), **options)
        fetch_file(urls["index"], layout.index_path(root, region, level), **options)
        _fetch_h5(urls["h5_archive"], root, region, level, sizes.get(level, {}).get(region), options)
        if include_shapefile:
            _fetch_shapefile(urls["shapefile_archive"], root, region, options)
    return root


def _check_released(region: str, level: str) -> None:
    """``kermaux`` exists for L1C only; say so instead of failing with an HTTP error."""
    if region not in H5_SIZES[level]:
        released = ", ".join(H5_SIZES[level])
        raise ValueError(f"region {region!r} is not part of the {level} release; {level} has {released}")


@contextlib.contextmanager
def _download_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``root`` so concurrent callers (e.g. training ranks) take turns.

    The second caller then finds the files complete and skips them. ``flock`` on the folder
    itself leaves no lock file behind and is released by the OS if the process dies; where it
    is unavailable (Windows) no lock is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    handle = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _fetch_h5(url: str, root: Path, region: str, level: str, expected: int | None, options: dict[str, Any]) -> Path:
    """Make sure the region's .h5 is present and of the published size; fetch and extract if not."""
    existing = layout.h5_path(root, region, level)
    if existing is not None and (expected is None or existing.stat().st_size == expected):
        return existing
    for stale in layout.h5_candidates(root, region, level):
        stale.unlink(missing_ok=True)  # a file of the wrong size must not shadow the fresh one
    folder = layout.level_dir(root, level)
    archive = fetch_file(url, folder / f"{region}.h5.tar.gz", **options)
    placed = safe_extract(archive, folder)
    h5 = _locate_h5(placed, root, region, level, archive)
    _check_h5_size(h5, expected, region, level, archive)
    archive.unlink()
    return h5


def _locate_h5(placed: Sequence[Path], root: Path, region: str, level: str, archive: Path) -> Path:
    """The extracted .h5: left in place when flat or nested as the loader expects, else moved flat."""
    accepted = layout.h5_candidates(root, region, level)
    found = [path for path in placed if path.name == f"{region}.h5" and not path.is_symlink()]
    if not found:
        raise DataFormatError(f"{archive} holds no file named {region}.h5; delete it and download again")
    chosen = next((path for path in found if path in accepted), found[0])
    if chosen not in accepted:
        os.replace(chosen, accepted[0])
        chosen = accepted[0]
    return chosen


def _check_h5_size(h5: Path, expected: int | None, region: str, level: str, archive: Path) -> None:
    """Compare with the published size; on a mismatch remove the .h5 (so no loader reads it), keep the archive."""
    found = h5.stat().st_size
    if expected is None or found == expected:
        return
    h5.unlink()
    raise DataFormatError(
        f"{h5} is {found:,} bytes but the published size of {region} {level} is {expected:,} bytes; "
        f"the extracted file was removed and the archive {archive} kept: run the command again to "
        "re-extract it, or delete the archive to download a fresh copy"
    )


def _fetch_shapefile(url: str, root: Path, region: str, options: dict[str, Any]) -> Path:
    """Make sure ``root/2017/<region>.shp`` and its sidecar files exist; fetch and extract if not."""
    shapefile = layout.shapefile_path(root, region)
    if all(shapefile.with_suffix(suffix).is_file() for suffix in SHAPEFILE_PARTS):
        return shapefile
    archive = fetch_file(url, shapefile.parent / f"{region}.tar.gz", **options)
    placed = safe_extract(archive, shapefile.parent)
    _gather_shapefile(placed, shapefile, archive)
    archive.unlink()
    return shapefile


def _gather_shapefile(placed: Sequence[Path], shapefile: Path, archive: Path) -> None:
    """Move the extracted shapefile's parts beside ``shapefile`` under its name, if they are elsewhere."""
    candidates = [path for path in placed if path.suffix.lower() == ".shp"]
    chosen = next((path for path in candidates if path.name == shapefile.name), None)
    if chosen is None and len(candidates) == 1:
        chosen = candidates[0]
    if chosen is None:
        raise DataFormatError(f"{archive} holds no shapefile {shapefile.name!r}; delete it and download again")
    if chosen != shapefile:
        for part in placed:
            if part.parent == chosen.parent and part.stem == chosen.stem:
                os.replace(part, shapefile.with_suffix(part.suffix))
    missing = [suffix for suffix in SHAPEFILE_PARTS if not shapefile.with_suffix(suffix).is_file()]
    if missing:
        raise DataFormatError(f"{archive} lacks the {', '.join(missing)} part of {shapefile.name}")


# --------------------------------------------------------------------------- command line


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cropcore download``."""
    parser.add_argument("--region", required=True,
                        help="frh01..frh04, belle-ile, kermaux, or 'all' for the four benchmark regions")
    parser.add_argument("--level", default="L1C", help="L1C (top of atmosphere, default) or L2A (bottom of atmosphere)")
    parser.add_argument("--root", type=Path, default=None,
                        help="data root (default: $CROPCORE_DATA/breizhcrops, else data/breizhcrops in the checkout)")
    parser.add_argument("--base-url", default=None,
                        help=f"download from this mirror (default: ${BASE_URL_ENV}, else {BASE_URL})")
    parser.add_argument("--no-shapefile", action="store_true", help="skip the parcel geometries (maps only need them)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Download each requested region; all names are validated before anything is fetched."""
    level = check_level(args.level)
    regions = REGIONS if str(args.region).lower() == "all" else (check_region(args.region),)
    for region in regions:
        _check_released(region, level)
    root = Path(args.root) if args.root is not None else layout.default_root()
    for region in regions:
        download(region, level, root, base_url=args.base_url, include_shapefile=not args.no_shapefile,
                 progress=not args.no_progress)
        print(f"{region} {level}: ready in {root}")
    print(f"open with: BreizhCrops({regions[0]!r}, root={str(root)!r}, level={level!r})")
    return 0

