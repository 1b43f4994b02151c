"""Downloading the DOCCI release from a local Range-capable HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from pancap_retrieval.data import load_dataset, open_image
from pancap_retrieval.data.download import DOCCI_BASE_URL, DOCCI_FILES, download_docci
from pancap_retrieval.errors import DatasetError


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_official_defaults() -> None:
    assert DOCCI_BASE_URL == "https://storage.googleapis.com/docci/data/"
    assert DOCCI_FILES == ("docci_descriptions.jsonlines", "docci_metadata.jsonlines", "docci_images.tar.gz")


def test_full_download_then_load(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    served = serve(release_files)
    to = download_docci(tmp_path / "docci", base_url=served.url, progress=False)
    assert to == tmp_path / "docci"
    for name in DOCCI_FILES:
        assert (to / name).read_bytes() == (release_files / name).read_bytes()
    assert not list(to.glob("*.part"))
    assert sorted(p.name for p in (to / "images").iterdir()) == [
        "test_00001.jpg",
        "test_00002.jpg",
        "train_00000.jpg",
    ]
    checksums = json.loads((to / "checksums.json").read_text())
    assert {name: entry["sha256"] for name, entry in checksums.items()} == {
        name: sha(release_files / name) for name in DOCCI_FILES
    }
    assert checksums["docci_images.tar.gz"]["size"] == (release_files / "docci_images.tar.gz").stat().st_size
    assert [r for r in served.requests if r[2] is not None] == []  # nothing to resume: no Range asked

    ds = load_dataset(f"docci:{to}", split="test")
    assert ds["example_id"] == ["test_00001", "test_00002"]
    assert list(zip(ds["width"], ds["height"])) == [(60, 40), (90, 60)]
    assert open_image(ds[0]).size == (60, 40)


def test_resume_from_a_partial_file(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    served = serve(release_files)
    to = tmp_path / "docci"
    to.mkdir()
    archive = (release_files / "docci_images.tar.gz").read_bytes()
    (to / "docci_images.tar.gz.part").write_bytes(archive[:1000])
    download_docci(to, base_url=served.url, files=["docci_images.tar.gz"], progress=False)
    assert ("GET", "docci_images.tar.gz", "bytes=1000-") in served.requests
    assert (to / "docci_images.tar.gz").read_bytes() == archive
    assert len(list((to / "images").iterdir())) == 3


def test_cut_transfer_is_kept_and_resumed(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    served = serve(release_files)
    served.truncate_after["docci_images.tar.gz"] = 700
    to = tmp_path / "docci"
    with pytest.raises(DatasetError, match=r"incomplete download, 700 of \d+ bytes .*run again to resume"):
        download_docci(to, base_url=served.url, progress=False)
    assert (to / "docci_images.tar.gz.part").stat().st_size == 700
    assert (to / "docci_descriptions.jsonlines").is_file()  # the files before it are done and recorded
    served.truncate_after.clear()
    download_docci(to, base_url=served.url, progress=False)
    assert ("GET", "docci_images.tar.gz", "bytes=700-") in served.requests
    assert sha(to / "docci_images.tar.gz") == sha(release_files / "docci_images.tar.gz")


def test_part_file_already_complete(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    served = serve(release_files)
    to = tmp_path / "docci"
    to.mkdir()
    text = (release_files / "docci_descriptions.jsonlines").read_bytes()
    (to / "docci_descriptions.jsonlines.part").write_bytes(text)
    download_docci(to, base_url=served.url, files=["docci_descriptions.jsonlines"], progress=False)
    assert (to / "docci_descriptions.jsonlines").read_bytes() == text


def test_size_mismatch_is_an_error(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    served = serve(release_files)
    real = (release_files / "docci_descriptions.jsonlines").stat().st_size
    with pytest.raises(DatasetError, match=f"size mismatch, the server reports {real} bytes, expected 12345"):
        download_docci(
            tmp_path / "docci",
            base_url=served.url,
            files=["docci_descriptions.jsonlines"],
            expected={"docci_descriptions.jsonlines": {"size": 12345}},
            progress=False,
        )
    assert not (tmp_path / "docci" / "docci_descriptions.jsonlines").exists()


def test_larger_part_file_than_the_server_has(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    served = serve(release_files)
    to = tmp_path / "docci"
    to.mkdir()
    (to / "docci_metadata.jsonlines.part").write_bytes(b"x" * 100_000)
    with pytest.raises(DatasetError, match=r"size mismatch, .* has 100000 bytes but the server has"):
        download_docci(to, base_url=served.url, files=["docci_metadata.jsonlines"], progress=False)
    assert not (to / "docci_metadata.jsonlines.part").exists()


def test_known_sha256_mismatch(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    served = serve(release_files)
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        download_docci(
            tmp_path / "docci",
            base_url=served.url,
            files=["docci_metadata.jsonlines"],
            expected={"docci_metadata.jsonlines": {"sha256": "0" * 64}},
            progress=False,
        )
    assert list((tmp_path / "docci").iterdir()) == []


def test_rerun_verifies_recorded_checksums_without_the_network(
    tmp_path: Path, release_files: Path, serve: Callable
) -> None:
    served = serve(release_files)
    to = download_docci(tmp_path / "docci", base_url=served.url, progress=False)
    served.stop()
    assert download_docci(to, base_url=served.url, progress=False) == to  # server gone: nothing fetched
    described = to / "docci_descriptions.jsonlines"
    described.write_bytes(described.read_bytes().replace(b"tabby", b"tibby"))
    with pytest.raises(
        DatasetError, match=r"docci_descriptions\.jsonlines: sha256 .* does not match the recorded"
    ):
        download_docci(to, base_url=served.url, progress=False)


def test_missing_remote_file(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    served = serve(release_files)
    with pytest.raises(DatasetError, match=r"cannot download .*/nothing\.bin: HTTP 404"):
        download_docci(tmp_path / "docci", base_url=served.url, files=["nothing.bin"], progress=False)


def test_unreachable_server(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    served = serve(release_files)
    served.stop()
    with pytest.raises(DatasetError, match=re.escape("cannot download http://127.0.0.1:")):
        download_docci(tmp_path / "docci", base_url=served.url, progress=False, timeout=5)


def test_unsafe_archive_member_is_refused(tmp_path: Path, serve: Callable) -> None:
    served_dir = tmp_path / "served"
    served_dir.mkdir()
    with tarfile.open(served_dir / "docci_images.tar.gz", "w:gz") as tar:
        member = tarfile.TarInfo("../escaped.jpg")
        member.size = 3
        tar.addfile(member, io.BytesIO(b"abc"))
    served = serve(served_dir)
    with pytest.raises(DatasetError, match=r"cannot unpack .*docci_images\.tar\.gz"):
        download_docci(tmp_path / "docci", base_url=served.url, files=["docci_images.tar.gz"], progress=False)
    assert not (tmp_path / "escaped.jpg").exists()
    assert not (tmp_path / "docci" / "escaped.jpg").exists()
    assert not (tmp_path / "docci" / "images").exists()


def test_cli_download_then_show(tmp_path: Path, release_files: Path, serve: Callable) -> None:
    from click.testing import CliRunner

    from pancap_retrieval.cli import cli

    served = serve(release_files)
    to = tmp_path / "docci"
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "download", "docci", "--to", str(to), "--base-url", served.url])
    assert result.exit_code == 0, result.output
    assert f"docci:{to}" in result.output
    shown = runner.invoke(cli, ["data", "show", f"docci:{to}", "--split", "test"])
    rows = [json.loads(line) for line in shown.output.splitlines() if line.startswith("{")]
    assert [row["example_id"] for row in rows] == ["test_00001", "test_00002"]
