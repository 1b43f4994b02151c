"""The urban1k, iiw and sharegpt4v-1k presets, each on a tiny local copy in the format its source ships."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from pancap_retrieval.data import load_dataset
from pancap_retrieval.errors import DatasetError
from pancap_retrieval.suite import DatasetSpec


def jpeg(path: Path, size: tuple[int, int], shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 90, 200 - shade)).save(path, format="JPEG")
    return path


def test_urban1k_from_its_zip(tmp_path) -> None:
    # Urban1k.zip holds Urban1k/image/N.jpg and Urban1k/caption/N.txt, paired by name
    source = tmp_path / "files"
    for n in (3, 1, 2):
        jpeg(source / "Urban1k" / "image" / f"{n}.jpg", (40 + n, 30), n * 40)
        (source / "Urban1k" / "caption").mkdir(parents=True, exist_ok=True)
        (source / "Urban1k" / "caption" / f"{n}.txt").write_text(f"A long caption of street {n}.\n")
    (tmp_path / "hub").mkdir()
    with zipfile.ZipFile(tmp_path / "hub" / "Urban1k.zip", "w") as archive:
        for path in sorted(source.rglob("*")):
            archive.write(path, path.relative_to(source).as_posix())
    rows = load_dataset(f"urban1k:{tmp_path / 'hub'}")
    assert rows["example_id"] == ["1", "2", "3"] and rows["width"] == [41, 42, 43]
    assert rows["description"] == [f"A long caption of street {n}." for n in (1, 2, 3)]
    assert rows.info.license == "CC BY-NC 4.0" and set(rows["split"]) == {"test"}
    assert load_dataset(f"urban1k:{source}", limit=2)["example_id"] == ["1", "2"]  # the unpacked folder
    with pytest.raises(DatasetError, match="must be pinned"):
        load_dataset("urban1k:BeichenZhang/Urban1k")


def test_iiw_descriptions_over_docci_images(tmp_path) -> None:
    # github.com/google/imageinwords datasets/DOCCI_Test/data.jsonl: IIW (and DOCCI) descriptions, image names
    docci = tmp_path / "docci" / "images"
    for n in range(3):
        jpeg(docci / f"test_0000{n}.jpg", (20 + n, 10), n * 50)
    lines = [
        {"image": f"test_0000{n}.jpg", "IIW": f"An IIW description {n}.", "DOCCI": f"A DOCCI description {n}."}
        for n in (2, 0, 1)
    ]
    (tmp_path / "iiw" / "DOCCI_Test").mkdir(parents=True)
    (tmp_path / "iiw" / "DOCCI_Test" / "data.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    spec = DatasetSpec(name=f"iiw:{tmp_path / 'iiw'}", config="DOCCI_Test", images=str(docci))
    rows = load_dataset(spec)
    assert rows["example_id"] == ["test_00000", "test_00001", "test_00002"]
    assert rows["description"] == [f"An IIW description {n}." for n in range(3)]
    assert rows["width"] == [20, 21, 22] and rows.info.license == "CC BY 4.0"
    with pytest.raises(DatasetError, match=r"no config 'DCI_Test'.*found: DOCCI_Test"):
        load_dataset(DatasetSpec(name=f"iiw:{tmp_path / 'iiw'}", config="DCI_Test", images=str(docci)))
    with pytest.raises(DatasetError, match="iiw needs a config"):
        load_dataset(DatasetSpec(name=f"iiw:{tmp_path / 'iiw'}", images=str(docci)))


def sharegpt4v_entry(image: str, caption: str) -> dict:
    return {
        "id": Path(image).stem,
        "image": image,
        "conversations": [
            {"from": "human", "value": "<image>\nWhat do you see happening in this image?"},
            {"from": "gpt", "value": caption},
        ],
    }


def test_sharegpt4v_1k_needs_a_definition_and_reads_each(tmp_path, monkeypatch) -> None:
    import pancap_retrieval.data.presets as presets

    images = tmp_path / "data"
    coco = [f"coco/train2017/00000000000{n}.jpg" for n in range(4)]
    sam = [f"sam/images/sa_{n}.jpg" for n in range(3)]
    for n, name in enumerate(coco + sam):
        jpeg(images / name, (16 + n, 12), n * 20)
    full = [sharegpt4v_entry(name, f"A detailed caption of {Path(name).stem}.") for name in coco + sam]
    (tmp_path / "captions").mkdir()
    (tmp_path / "captions" / "share-captioner_coco_lcs_sam_1246k_1107.json").write_text(json.dumps(full))
    (tmp_path / "captions" / "share4v_sam_10k.json").write_text(json.dumps(full[4:]))
    name = f"sharegpt4v-1k:{tmp_path / 'captions'}"
    with pytest.raises(DatasetError, match="two incompatible definitions: definition=first-1k"):
        load_dataset(DatasetSpec(name=name, images=str(images)))
    # first-1k is the first N entries of the big file (N = 1,000; 5 here)
    monkeypatch.setitem(presets.SHAREGPT4V_FILES, "first-1k", ("share-captioner_coco_lcs_sam_1246k_1107.json", 5))
    first = load_dataset(DatasetSpec(name=name, images=str(images), definition="first-1k"))
    assert first["example_id"] == sorted(Path(n).stem for n in (coco + sam)[:5])
    assert first["width"] == [16, 17, 18, 19, 20]
    assert first["description"][0] == "A detailed caption of 000000000000."
    sam10k = load_dataset(DatasetSpec(name=name, images=str(images), definition="sam-10k"))
    assert sam10k["example_id"] == ["sa_0", "sa_1", "sa_2"] and sam10k["width"] == [20, 21, 22]
