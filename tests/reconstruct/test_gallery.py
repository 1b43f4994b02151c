from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pancap_retrieval.captions.store import CaptionRecord
from reconstruct.gallery import GalleryError, write_gallery
from reconstruct.run import reconstruct_run

GOOD = {
    "astronaut": "A woman [[0.02, 0.02, 0.72, 1.0]] in a white spacesuit poses before a flag [[0.75, 0.1, 1.0, 0.5]].",
    "coffee": "A cup [[0.27, 0.03, 0.69, 0.78]] of coffee on a saucer.",
    "chelsea": "A cat [[0.01, 0.0, 0.93, 0.98]] lies on a rug.",
    "rocket": "A rocket on a launch pad under a clear sky.",
}
WRONG = {
    "astronaut": "A man [[0.7, 0.7, 0.95, 0.95]] stands in a room.",
    "coffee": "A dog [[0.0, 0.0, 0.3, 0.3]] sits by a cup [[0.7, 0.5, 1.0, 1.0]].",
    "chelsea": "A cat [[0.6, 0.6, 0.7, 0.7]] near a window.",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, photos) -> Path:
    run = tmp_path_factory.mktemp("run")
    captions = {
        "good": [CaptionRecord(k, v) for k, v in GOOD.items()],
        "wrong": [
            *(CaptionRecord(k, v) for k, v in WRONG.items()),
            CaptionRecord.failed("rocket", "generation timed out"),
            CaptionRecord("not_in_dataset", "A tree [[0, 0, 1, 1]]."),
        ],
    }
    reconstruct_run(run, captions, dict(photos), redrawer="sketch", seed=0, progress=False)
    return run


@pytest.mark.slow
def test_run_writes_images_layouts_and_scores(run_dir):
    results = json.loads((run_dir / "reconstruction.json").read_text())
    assert results["redrawer"]["name"] == "sketch"
    good, wrong = results["captioners"]["good"], results["captioners"]["wrong"]
    assert good["redrawn"] == 4 and good["text_only"] == 1 and good["boxes"] == 4
    assert (
        wrong["redrawn"] == 3
        and wrong["skipped"]["failed_caption"] == 1
        and wrong["skipped"]["no_image"] == 1
    )
    assert sorted(p.name for p in (run_dir / "images" / "good").glob("*.png")) == [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.png",
    ]
    lines = (run_dir / "images" / "good" / "layouts.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["layout"]["canvas"] == [512, 512]
    # the caption's boxes are right for the good captioner (3 COCO-named boxes found on the original), not for
    # the wrong one (man, dog, cup, cat all misplaced)
    assert good["scores"]["adherence"]["original"]["matched"] == 3
    assert wrong["scores"]["adherence"]["original"]["instances"] == 4
    assert wrong["scores"]["adherence"]["original"]["matched"] == 0
    assert good["scores"]["fid"]["n"] == 4 and good["scores"]["kid"]["subset_size"] == 4


def test_rerun_reuses_what_is_on_disk(run_dir, photos, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    run_dir = tmp_path / "run"
    captions = {"good": [CaptionRecord(k, v) for k, v in GOOD.items()]}
    results = reconstruct_run(
        run_dir, captions, dict(photos), redrawer="sketch", seed=0, scores=False, progress=False
    )
    assert results["captioners"]["good"]["redrawn"] == 0 and results["captioners"]["good"]["reused"] == 4
    on_disk = json.loads((run_dir / "reconstruction.json").read_text())
    assert sorted(on_disk["captioners"]) == ["good", "wrong"]  # same redrawer and seed: "wrong" is kept
    changed = reconstruct_run(
        run_dir, captions, dict(photos), redrawer="sketch", seed=1, scores=False, progress=False
    )
    assert changed["captioners"]["good"]["redrawn"] == 4
    # the captioner not redrawn this time keeps its entry while redrawer and seed are those it was drawn with
    kept = json.loads((run_dir / "reconstruction.json").read_text())
    assert list(kept["captioners"]) == ["good"] and kept["seed"] == 1


@pytest.mark.slow
def test_gligen_run_end_to_end(tmp_path, photos, tiny_gligen_dir):
    captions = {"good": [CaptionRecord(k, v) for k, v in GOOD.items()]}
    # keyword options as a suite passes them: steps, then the rest for the redrawer
    results = reconstruct_run(
        tmp_path, captions, dict(photos), "gligen", str(tiny_gligen_dir), 0,
        steps=2, device="cpu", detector=None, progress=False, canvas_size=32, guidance_scale=3.0,
    )  # fmt: skip
    entry = results["captioners"]["good"]
    assert entry["redrawn"] == 4 and entry["text_only"] == 1
    assert results["redrawer"]["steps"] == 2 and results["redrawer"]["model"] == str(tiny_gligen_dir)
    assert results["redrawer"]["guidance_scale"] == 3.0
    assert entry["scores"]["adherence"] == {"skipped": "no detector"}
    line = json.loads((tmp_path / "images" / "good" / "layouts.jsonl").read_text().splitlines()[0])
    assert line["layout"]["token_counter"] == "tokenizer" and line["layout"]["canvas"] == [32, 32]


# ---------------------------------------------------------------- the gallery (the browser tests are in
# test_gallery_browser.py)


class _Page(HTMLParser):
    """The links, images, layout boxes and caption marks of a gallery page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.boxes: list[tuple[str, str]] = []
        self.marks: list[tuple[str, str]] = []
        self._open: list[str] = []  # the colour of the box label or mark whose text comes next

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(attrs)
        elif tag in ("a", "link") and "href" in attrs:
            self.links.append(attrs["href"])
        elif tag == "span" and attrs.get("class") == "box":
            self._open.append("box " + re.search(r"--c:(#[0-9a-f]{6})", attrs["style"]).group(1))
        elif tag == "mark":
            self._open.append("mark " + re.search(r"--c:(#[0-9a-f]{6})", attrs["style"]).group(1))

    def handle_data(self, data):
        if self._open and data.strip():
            kind, colour = self._open.pop().split()
            (self.boxes if kind == "box" else self.marks).append((data, colour))


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _files(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture()
def run_copy(run_dir, tmp_path) -> Path:
    """The module's run folder copied, so that each test writes its own gallery."""
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"


def test_gallery_is_a_folder_of_pages_that_works_on_its_own(run_copy):
    from PIL import Image

    index = write_gallery(run_copy, page_size=3, progress=False)
    gallery = run_copy / "gallery"
    assert index == gallery / "index.html"
    assert {"index.html", "page-1.html", "page-2.html", "grid.png", "media.json"} <= {p.name for p in gallery.iterdir()}
    for name in ("index.html", "page-1.html", "page-2.html"):
        page = _parse(gallery / name)
        for target in page.links + [image["src"] for image in page.images]:
            path = target.split("#")[0]
            assert path and "://" not in path and not path.startswith("/") and ".." not in path, target
            assert (gallery / path).is_file(), f"{name} links to {target}, missing from gallery/"
        for image in page.images:
            assert image["loading"] == "lazy" and int(image["width"]) > 0 and int(image["height"]) > 0
    pages = [_parse(gallery / f"page-{n}.html") for n in (1, 2)]
    shown = [image["src"] for page in pages for image in page.images]
    # 4 originals; "good": 3 layouts (rocket has no box: no layout panel) + 4 redraws; "wrong": 3 + 3
    assert len(shown) == 4 + (3 + 4) + (3 + 3)
    redraws = [src for src in shown if src.startswith("thumbs/redraws/")]
    assert len(redraws) == 7
    for src in redraws:
        with Image.open(gallery / src) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) == 256  # from the 512 px sketches
    full = next(link for link in pages[0].links if link.startswith("full/redraws/good/"))
    name = full.split("/")[-1].split(".")[0]
    assert (gallery / full).read_bytes() == (run_copy / "images" / "good" / f"{name}.png").read_bytes()
    text = (gallery / "page-1.html").read_text() + (gallery / "page-2.html").read_text()
    assert "1 box<" in text and "1 boxes" not in text and "2 boxes" in text
    assert "no box in the caption: no layout panel" in text and "not redrawn" in text
    # each box is drawn in the colour that marks its phrase in the caption text; two boxes, two colours
    assert sum(len(page.boxes) for page in pages) == 4 + 4  # the boxes of "good" and of "wrong"
    for page in pages:
        assert set(page.boxes) <= set(page.marks)
    astronaut = dict(next(page for page in pages if "A woman" in dict(page.boxes)).boxes)
    assert len(set(astronaut.values())) == 2
    with Image.open(gallery / "grid.png") as grid:
        assert grid.size[1] > 4 * 190 and grid.format == "PNG"


def test_index_shows_the_leaderboard_words_and_the_numbers_of_each_image(run_copy):
    ranks = {"c2d": {"astronaut": 3, "coffee": 1}, "d2c": {"astronaut": 2}}
    (run_copy / "retrieval").mkdir()
    (run_copy / "retrieval" / "good.ranks.json").write_text(json.dumps(ranks))
    write_gallery(run_copy, progress=False)
    index = (run_copy / "gallery" / "index.html").read_text()
    for words in ("redraw cosine", "boxes re-found in redraw", "boxes found in original", "c2d rank", "d2c rank"):
        assert words in index
    assert "boxes found (redraw" not in index and "success rate" not in index
    per_image = json.loads((run_copy / "reconstruction.json").read_text())["captioners"]["good"]["per_image"]
    cosine = f"{per_image['astronaut']['cosine']:.3f}"
    row = re.search(r"<tr><th scope=\"row\"><a href=\"page-1.html#img-astronaut\">astronaut</a></th>(.*?)</tr>", index)
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    # page, then per captioner: c2d rank, d2c rank, redraw cosine, boxes re-found in redraw
    assert cells[:5] == ["1", "3", "2", cosine, f"{100 * per_image['astronaut']['boxes_refound']:.1f}%"]
    assert cells[5:7] == ["–", "–"]  # no ranks for "wrong"


def test_rerun_makes_nothing_again_and_a_changed_redraw_gets_a_new_thumbnail(run_copy):
    from PIL import Image

    write_gallery(run_copy, progress=False)
    gallery = run_copy / "gallery"
    before = _files(gallery)
    write_gallery(run_copy, progress=False)
    assert _files(gallery) == before  # no file rewritten: same names, same modification times
    Image.new("RGB", (512, 512), (10, 200, 30)).save(run_copy / "images" / "good" / "coffee.png")
    write_gallery(run_copy, progress=False)
    after = _files(gallery)
    changed = sorted(set(after) ^ set(before))
    assert len(changed) == 4 and all("redraws/good/coffee." in name for name in changed), changed
    kept = [name for name in before if name in after and name.startswith(("thumbs/", "full/"))]
    assert kept and all(after[name] == before[name] for name in kept)


def test_broken_files_are_shown_as_missing_not_a_traceback(run_copy):
    original = run_copy / "originals" / "coffee.png"
    original.write_bytes(original.read_bytes()[:200])  # cut off, as after a crash
    (run_copy / "reconstruction.json").write_text('{"captioners": {"good": ')
    with pytest.warns(UserWarning, match="unreadable"):
        write_gallery(run_copy, progress=False)
    index = (run_copy / "gallery" / "index.html").read_text()
    assert "1 image files could not be read" in index and "coffee.png" in index
    assert "missing or unreadable" in (run_copy / "gallery" / "page-1.html").read_text()


def test_a_folder_without_redraws_is_a_one_line_error(tmp_path):
    from click.testing import CliRunner

    from pancap_retrieval.cli import cli

    with pytest.raises(GalleryError, match="run `pancap reconstruct`"):
        write_gallery(tmp_path, progress=False)
    result = CliRunner().invoke(cli, ["gallery", str(tmp_path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "run `pancap reconstruct`" in result.output
