"""Download the official DOCCI release into the local layout that ``docci:DIR`` reads.

Each file is fetched into ``NAME.part`` and renamed when complete. An interrupted download resumes where it
stopped (HTTP Range); the size is checked against the server's Content-Length and against a known size when one is
given; the SHA-256 is checked against a known digest when one is given. Google publishes no digests for DOCCI, so
the first complete download records the SHA-256 of each file in ``checksums.json`` next to the files, and later runs
verify the files against it (without touching the network when everything is already there). Finally
``docci_images.tar.gz`` is unpacked into ``images/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pancap_retrieval.errors import DatasetError

log = logging.getLogger(__name__)

DOCCI_BASE_URL = "https://storage.googleapis.com/docci/data/"
DOCCI_FILES = ("docci_descriptions.jsonlines", "docci_metadata.jsonlines", "docci_images.tar.gz")
IMAGES_ARCHIVE = "docci_images.tar.gz"
IMAGES_DIR = "images"
CHECKSUMS_FILE = "checksums.json"
# Known {"size": bytes, "sha256": hex} per file. None are published upstream; checksums.json records them locally.
KNOWN_FILES: dict[str, dict[str, Any]] = {}

_CHUNK = 1 << 20


def download_docci(
    to: Path | str,
    base_url: str = DOCCI_BASE_URL,
    files: Iterable[str] = DOCCI_FILES,
    expected: Mapping[str, Mapping[str, Any]] | None = None,
    extract: bool = True,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch the DOCCI release files from ``base_url`` into ``to``, verify them, unpack the images; returns ``to``.

    ``expected`` maps a file name to its known ``size`` and/or ``sha256`` (defaults to :data:`KNOWN_FILES`).
    Rerunning resumes an interrupted download and skips files that are complete and verified.
    """
    to = Path(to).expanduser()
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create {to}: {exc}") from None
    expected = KNOWN_FILES if expected is None else expected
    files = tuple(files)
    recorded = _read_checksums(to)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    for name in files:
        known = dict(expected.get(name, {}))
        if "sha256" not in known and name in recorded:
            known["sha256"] = recorded[name]["sha256"]
        digest, size = fetch_file(base_url + name, to / name, known, progress=progress, timeout=timeout)
        recorded[name] = {"sha256": digest, "size": size, "url": base_url + name}
        _write_checksums(to, recorded)
    if extract and IMAGES_ARCHIVE in files:
        extract_images(to / IMAGES_ARCHIVE, to, recorded.get(IMAGES_ARCHIVE, {}).get("sha256", ""), progress)
    return to


def fetch_file(
    url: str, dest: Path, known: Mapping[str, Any], progress: bool = True, timeout: float = 60.0
) -> tuple[str, int]:
    """Download ``url`` to ``dest`` through ``dest.part`` with resume; returns (sha256, size) of the file.

    An existing ``dest`` is not fetched again: it is verified against ``known["sha256"]`` when that is known.
    """
    if dest.is_file():
        if known.get("size") is not None and dest.stat().st_size != int(known["size"]):
            raise DatasetError(
                f"{dest}: {dest.stat().st_size} bytes, expected {int(known['size'])}; delete it and run again"
            )
        digest = sha256_of(dest)
        if known.get("sha256") and digest != known["sha256"]:
            raise DatasetError(
                f"{dest}: sha256 {digest} does not match the recorded {known['sha256']}; delete it and run again"
            )
        return digest, dest.stat().st_size
    part = dest.with_name(dest.name + ".part")
    known_size = int(known["size"]) if known.get("size") is not None else None
    total = _download(url, part, known_size, progress, timeout)
    size = part.stat().st_size if part.is_file() else 0
    if total is not None and size != total:
        raise DatasetError(
            f"{url}: incomplete download, {size} of {total} bytes in {part}; run again to resume"
        )
    digest = sha256_of(part)
    if known.get("sha256") and digest != known["sha256"]:
        part.unlink()
        raise DatasetError(f"{url}: sha256 mismatch, got {digest}, expected {known['sha256']}")
    os.replace(part, dest)
    return digest, size


def _download(url: str, part: Path, known_size: int | None, progress: bool, timeout: float) -> int | None:
    """Append the missing bytes of ``url`` to ``part``; returns the full size the server reported (None if unknown).

    The size the server reports must equal ``known_size`` when that is given; nothing is fetched otherwise.
    """
    import requests

    offset = part.stat().st_size if part.is_file() else 0
    # identity: the bytes on disk are the bytes Content-Length counts, and a Range means the same offsets.
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise DatasetError(f"cannot download {url}: {type(exc).__name__}: {exc}") from None
    with response:
        if response.status_code == 416 and offset:
            return _already_whole(response, url, part, offset)
        mode, offset, total = _resumed(response, url, offset)
        if known_size is not None and total != known_size:
            raise DatasetError(
                f"{url}: size mismatch, the server reports {total} bytes, expected {known_size}"
            )
        _write_body(response, url, part, (mode, offset, total), progress)
    return total


def _already_whole(response: Any, url: str, part: Path, offset: int) -> int:
    """A 416 answer to a range request: the part file already holds every byte (or more). Its size is checked
    against the size the server reports; a part file that does not match is removed."""
    total = _content_range_total(response.headers.get("Content-Range", ""))
    if total is not None and total == offset:
        return total
    part.unlink()
    raise DatasetError(
        f"{url}: size mismatch, {part} has {offset} bytes but the server has {total}; removed, run again"
    )


def _resumed(response: Any, url: str, offset: int) -> tuple[str, int, int | None]:
    """(file mode, the offset writing starts at, the full size) of an answer: a 206 resumes at ``offset``, a 200
    (a server that ignored the range) starts again from the start."""
    if response.status_code not in (200, 206):
        raise DatasetError(f"cannot download {url}: HTTP {response.status_code} {response.reason}")
    if response.status_code == 206:
        start, total = _content_range(response.headers.get("Content-Range", ""))
        if start != offset:
            raise DatasetError(f"{url}: server resumed at byte {start}, asked for {offset}")
        return "ab", offset, total
    if offset:
        log.warning("%s: server ignored the range request; downloading from the start", url)
    length = response.headers.get("Content-Length")
    return "wb", 0, int(length) if length is not None else None


def _write_body(
    response: Any, url: str, part: Path, where: tuple[str, int, int | None], progress: bool
) -> None:
    """Write the body to ``part`` (``where``: file mode, offset, full size) with a progress bar; a transfer that
    stops half-way keeps what arrived, for the next run to resume."""
    import requests
    import urllib3
    from tqdm.auto import tqdm

    mode, offset, total = where
    bar = tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
        desc=part.name.removesuffix(".part"), disable=not progress,
    )  # fmt: skip
    try:
        with part.open(mode) as handle:
            for chunk in _chunks(response):
                handle.write(chunk)
                bar.update(len(chunk))
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        log.warning("%s: transfer stopped (%s: %s)", url, type(exc).__name__, exc)
    finally:
        bar.close()


def _chunks(response: Any) -> Iterator[bytes]:
    """The body as it arrives: ``read1`` hands over every byte received before a connection drops."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(_CHUNK)
        return
    while chunk := read1(_CHUNK, decode_content=False):
        yield chunk


def _content_range(value: str) -> tuple[int, int | None]:
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", value.strip())
    if not match:
        raise DatasetError(f"unreadable Content-Range {value!r}")
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _content_range_total(value: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", value.strip())
    return int(match.group(1)) if match else None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract_images(archive: Path, to: Path, digest: str = "", progress: bool = True) -> Path:
    """Unpack the images archive into ``to/images`` (atomically, unsafe members refused); returns that folder.

    A marker file records the archive's digest, so a rerun with the same archive does not unpack it again.
    """
    from tqdm.auto import tqdm

    target = to / IMAGES_DIR
    marker = to / f".{archive.name}.extracted"
    if target.is_dir() and marker.is_file() and marker.read_text().strip() == digest:
        return target
    if not archive.is_file():
        raise DatasetError(f"images archive not found: {archive}")
    staging = to / f".{IMAGES_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in tqdm(members, desc=f"unpack {archive.name}", unit="file", disable=not progress):
                tar.extract(member, staging, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"cannot unpack {archive}: {type(exc).__name__}: {exc}") from None
    # The release archive holds images/<file>; an archive of bare files is accepted as the images themselves.
    unpacked = staging / IMAGES_DIR if (staging / IMAGES_DIR).is_dir() else staging
    if target.exists():
        shutil.rmtree(target)
    os.replace(unpacked, target)
    shutil.rmtree(staging, ignore_errors=True)
    marker.write_text(digest + "\n")
    return target


def _read_checksums(to: Path) -> dict[str, dict[str, Any]]:
    path = to / CHECKSUMS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "sha256" in v for v in data.values()):
        raise DatasetError(f"{path}: expected an object of {{file: {{sha256, size, url}}}}")
    return data


def _write_checksums(to: Path, recorded: Mapping[str, Any]) -> None:
    path = to / CHECKSUMS_FILE
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(dict(sorted(recorded.items())), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
