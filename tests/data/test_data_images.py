"""Images are decoded one at a time by open_image, within a pixel limit: a huge, empty or broken image is a failed
item with its reason, never a dataset that cannot load."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from pancap_retrieval.captioners import get_captioner
from pancap_retrieval.captioners.base import caption_dataset
from pancap_retrieval.captions.store import CaptionStore
from pancap_retrieval.data import (
    MAX_PIXELS_ENV,
    RowsById,
    load_dataset,
    max_image_pixels,
    open_image,
    undecoded,
    unreadable_ids,
)
from pancap_retrieval.data.records import DEFAULT_MAX_IMAGE_PIXELS
from pancap_retrieval.errors import DatasetError


@pytest.fixture
def mixed(tmp_path: Path, photos: dict[str, bytes], make_huge_png: Callable[[Path, int, int], Path]) -> Path:
    """An imagefolder with two good photos, a 20000x20000 PNG, a truncated PNG and a zero-byte PNG."""
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "cat.jpg").write_bytes(photos["chelsea"])
    png = io.BytesIO()
    Image.open(io.BytesIO(photos["coffee"])).save(png, format="PNG")
    (root / "cup.png").write_bytes(png.getvalue())
    make_huge_png(root / "huge.png", 20000, 20000)
    (root / "torn.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (root / "empty.png").write_bytes(b"")
    lines = [{"file_name": name, "description": f"A photo called {name}."} for name in ("cat.jpg", "cup.png")]
    (root / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def _reason(row: dict) -> str:
    with pytest.raises(DatasetError) as caught:
        open_image(row)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_huge_png_is_a_real_20000_square_png(
    tmp_path: Path, make_huge_png: Callable[[Path, int, int], Path]
) -> None:
    path = make_huge_png(tmp_path / "h.png", 20000, 20000)
    assert path.stat().st_size < 200_000
    with pytest.raises(Image.DecompressionBombError):  # what PIL itself does with it
        Image.open(path)


def test_a_huge_image_loads_with_its_size_and_fails_alone_on_open(mixed: Path) -> None:
    ds = load_dataset(f"imagefolder:{mixed}")
    assert ds["example_id"] == ["cat", "cup", "empty", "huge", "torn"]
    sizes = dict(zip(ds["example_id"], zip(ds["width"], ds["height"])))
    assert sizes["huge"] == (20000, 20000) and sizes["torn"] == (60, 40) and sizes["empty"] == (0, 0)
    assert unreadable_ids(ds) == ["empty"]
    rows = {row["example_id"]: row for row in ds}
    assert open_image(rows["cat"]).size == (90, 60)
    assert _reason(rows["huge"]) == (
        "huge: image too large to decode: 20000x20000 = 400,000,000 pixels, over the limit of 178,956,970; "
        f"shrink it or raise {MAX_PIXELS_ENV} (0 = no limit)"
    )
    assert _reason(rows["torn"]).startswith("torn: cannot decode image (OSError: image file is truncated")
    assert _reason(rows["empty"]) == f"empty: cannot decode image (empty file, 0 bytes: {mixed / 'empty.png'})"
    assert _reason({"example_id": "b", "image": {"bytes": b"", "path": None}}).startswith("b: cannot decode image (")


def test_captioning_records_bad_images_as_failed_and_goes_on(mixed: Path, tmp_path: Path) -> None:
    store = CaptionStore(tmp_path / "captions.jsonl")
    stats = caption_dataset(get_captioner("detector"), load_dataset(f"imagefolder:{mixed}"), store, progress=False)
    assert (stats.total, stats.ok, stats.failed) == (5, 2, 3)
    assert "too large to decode: 20000x20000" in stats.failures["huge"]
    assert "image file is truncated" in stats.failures["torn"]
    assert "empty file, 0 bytes" in stats.failures["empty"]
    records = {record.example_id: record for record in store.records()}
    assert records["huge"].status == "failed" and "over the limit of 178,956,970" in (records["huge"].error or "")
    assert records["cat"].status == "ok" and records["cat"].caption


def test_the_limit_comes_from_the_environment(
    mixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = {row["example_id"]: row for row in load_dataset(f"imagefolder:{mixed}")}
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 178_956_970
    monkeypatch.setenv(MAX_PIXELS_ENV, "3000")  # cup is 60x40 = 2400, cat 90x60 = 5400
    assert max_image_pixels() == 3000
    assert open_image(rows["cup"]).size == (60, 40)
    assert "cat: image too large to decode: 90x60 = 5,400 pixels, over the limit of 3,000" in _reason(rows["cat"])
    assert open_image(rows["cat"], max_pixels=6000).size == (90, 60)  # an explicit limit wins
    monkeypatch.setenv(MAX_PIXELS_ENV, "0")
    assert max_image_pixels() is None
    assert open_image(rows["cat"]).size == (90, 60)


def test_pancap_limit_governs_not_pil_own(mixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = {row["example_id"]: row for row in load_dataset(f"imagefolder:{mixed}")}
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL alone would refuse 5,400 pixels (over 2 x 1000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(mixed / "cat.jpg")
    assert open_image(rows["cat"]).size == (90, 60)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored after each open


@pytest.mark.parametrize("bad", ["lots", "-5", "1.5e8"])
def test_a_bad_limit_is_one_line_before_any_work(mixed: Path, monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, bad)
    with pytest.raises(DatasetError) as caught:
        load_dataset(f"imagefolder:{mixed}")
    assert str(caught.value) == (
        f"{MAX_PIXELS_ENV} must be a whole number of pixels (0 for no limit), got {bad!r}; "
        "unset it for the default of 178956970"
    )


def test_ids_that_are_not_file_names_are_fine_as_ids(tmp_path: Path, photos: dict[str, bytes]) -> None:
    root = tmp_path / "odd"
    (root / "sub dir").mkdir(parents=True)
    names = ["a b&c.jpg", "a-b-c-25f45274.jpg", "sub dir/é ü?.jpg", "100%#x.jpg"]
    for name in names:
        (root / name).write_bytes(photos["coffee"])
    ds = load_dataset(f"imagefolder:{root}")
    assert ds["example_id"] == sorted(name.removesuffix(".jpg") for name in names)
    by_id = RowsById(ds)
    assert open_image(by_id["a b&c"]).size == open_image(by_id["sub dir/é ü?"]).size == (60, 40)


def test_five_thousand_images_load_as_paths_and_stream(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    png = io.BytesIO()
    Image.effect_noise((32, 32), 60).convert("RGB").save(png, format="PNG")
    for number in range(5000):
        (root / f"{number:05d}.png").write_bytes(png.getvalue())
    ds = load_dataset(f"imagefolder:{root}")
    assert len(ds) == 5000 and not ds.features["image"].decode
    assert ds.data.nbytes < 5000 * len(png.getvalue()) / 4  # the table holds paths, not the images
    rows = RowsById(ds)
    assert len(rows) == 5000 and rows["04999"]["image"] == {"bytes": None, "path": str(root / "04999.png")}
    seen = decoded = 0
    for number, row in enumerate(undecoded(ds)):
        assert row["image"]["bytes"] is None
        seen += 1
        if number % 50 == 0:
            decoded += open_image(row).size == (32, 32)
    assert (seen, decoded) == (5000, 100)


def test_iterating_and_decoding_holds_one_image_at_a_time(tmp_path: Path) -> None:
    """16 PNGs of 2000x2000 decode to 192 MB in all; reading them all must grow the process by far less."""
    root = tmp_path / "large"
    root.mkdir()
    png = io.BytesIO()
    Image.new("RGB", (2000, 2000), (30, 90, 160)).save(png, format="PNG", compress_level=1)
    for number in range(16):
        (root / f"{number:02d}.png").write_bytes(png.getvalue())
    code = f"""
import resource, sys
from pancap_retrieval.data import load_dataset, open_image
ds = load_dataset({str("imagefolder:" + str(root))!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sizes = [open_image(row).size for row in ds]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(sizes), (after - before) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    count, grown_mb = map(int, out.split())
    assert count == 16
    assert grown_mb < 100, f"peak memory grew by {grown_mb} MB decoding 16 x 12 MB images"
