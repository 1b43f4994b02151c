"""hf: datasets in every local format the datasets library writes, end to end through `pancap run`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from pancap_retrieval.cli import cli
from pancap_retrieval.data import load_dataset
from pancap_retrieval.errors import DatasetError
from pancap_retrieval.suite import DatasetSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def photos() -> list[dict]:
    """Six sample photos: id, JPEG/PNG bytes, file suffix, size and five descriptions (the description, then its
    sentences)."""
    rows = []
    for row in load_dataset("sample", limit=6):
        path = Path(row["image"]["path"])
        sentences = [s for s in re.split(r"(?<=\.)\s+", row["description"]) if s.strip()]
        descriptions = [row["description"], *((sentences * 5)[:4])]
        with Image.open(path) as image:
            size = image.size
        rows.append(
            {"id": row["example_id"], "bytes": path.read_bytes(), "suffix": path.suffix, "size": size,
             "descriptions": descriptions}
        )
    return rows


def image_dataset(photos: list[dict], text: str = "caption", several: bool = False) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "key": [p["id"] for p in reversed(photos)],  # not in id order
            "jpg": [{"bytes": p["bytes"], "path": None} for p in reversed(photos)],
            text: [p["descriptions"] if several else p["descriptions"][0] for p in reversed(photos)],
        }
    ).cast_column("jpg", datasets.Image())


def check_rows(loaded: datasets.Dataset, photos: list[dict], several: bool = False) -> None:
    expected = sorted(photos, key=lambda p: p["id"])
    assert loaded["example_id"] == [p["id"] for p in expected]
    assert loaded["description"] == [p["descriptions"][0] for p in expected]
    assert [(w, h) for w, h in zip(loaded["width"], loaded["height"])] == [p["size"] for p in expected]
    assert set(loaded["split"]) == {"test"}
    if several:
        assert loaded["descriptions"] == [p["descriptions"] for p in expected]
    else:
        assert "descriptions" not in loaded.column_names


def test_save_to_disk_folder(photos, tmp_path) -> None:
    image_dataset(photos).save_to_disk(str(tmp_path / "set"))
    loaded = load_dataset(DatasetSpec(name=f"hf:{tmp_path / 'set'}", columns={"image": "jpg", "id": "key"}))
    check_rows(loaded, photos)
    assert load_dataset(f"hf:{tmp_path / 'set'}", limit=2)["example_id"] == sorted(p["id"] for p in photos)[:2]


def test_parquet_folder_with_image_features_and_a_list_column(photos, tmp_path) -> None:
    (tmp_path / "set" / "data").mkdir(parents=True)
    image_dataset(photos, "captions", several=True).to_parquet(str(tmp_path / "set/data/test-00000-of-00001.parquet"))
    spec = DatasetSpec(name=f"hf:{tmp_path / 'set'}", split="test", columns={"image": "jpg", "id": "key"})
    check_rows(load_dataset(spec), photos, several=True)
    assert load_dataset(spec, limit=3)["example_id"] == sorted(p["id"] for p in photos)[:3]


def write_jsonl_set(photos: list[dict], folder: Path, rows_per_image: bool = False) -> None:
    (folder / "images").mkdir(parents=True)
    lines = []
    for p in photos:
        (folder / "images" / f"{p['id']}{p['suffix']}").write_bytes(p["bytes"])
        texts = p["descriptions"] if rows_per_image else [p["descriptions"][0]]
        lines += [{"image_id": p["id"], "file": f"images/{p['id']}{p['suffix']}", "text": t} for t in texts]
    (folder / "test.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_jsonl_and_image_folder_with_several_rows_per_image(photos, tmp_path) -> None:
    write_jsonl_set(photos, tmp_path / "set", rows_per_image=True)
    loaded = load_dataset(DatasetSpec(name=f"hf:{tmp_path / 'set'}", columns={"image": "file"}))
    check_rows(loaded, photos, several=True)


def test_descriptions_only_with_a_separate_image_folder(photos, tmp_path) -> None:
    write_jsonl_set(photos, tmp_path / "imgs")
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "test.jsonl").write_text(
        "".join(json.dumps({"id": p["id"], "description": p["descriptions"][0]}) + "\n" for p in photos)
    )
    loaded = load_dataset(DatasetSpec(name=f"hf:{texts}", images=str(tmp_path / "imgs" / "images")))
    check_rows(loaded, photos)


def test_bad_specs_are_one_line_errors(photos, tmp_path) -> None:
    image_dataset(photos).save_to_disk(str(tmp_path / "set"))
    with pytest.raises(DatasetError, match=r"no column 'caption_text' \(columns.text\); the set has columns: key, jpg"):
        load_dataset(DatasetSpec(name=f"hf:{tmp_path / 'set'}", columns={"text": "caption_text"}))
    with pytest.raises(DatasetError, match="a save_to_disk folder has no configs"):
        load_dataset(DatasetSpec(name=f"hf:{tmp_path / 'set'}", config="DOCCI_Test"))
    with pytest.raises(DatasetError, match="must be pinned: hf:owner/set@REVISION"):
        load_dataset("hf:owner/set")
    datasets.DatasetDict({"test": image_dataset(photos), "train": image_dataset(photos)}).save_to_disk(
        str(tmp_path / "dict")
    )
    with pytest.raises(DatasetError, match="no split 'val'; known splits: test, train"):
        load_dataset(f"hf:{tmp_path / 'dict'}", split="val")
    assert set(load_dataset(f"hf:{tmp_path / 'dict'}", limit=1)["split"]) == {"test"}
    with pytest.raises(Exception, match="takes no config"):
        DatasetSpec(name="sample", config="x")


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "pancap_retrieval.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_errors_from_the_command_line_leave_no_run_folder(photos, tmp_path) -> None:
    image_dataset(photos).save_to_disk(str(tmp_path / "set"))
    readme = tmp_path / "cfg" / "README.md"
    (tmp_path / "cfg" / "a").mkdir(parents=True)
    image_dataset(photos).to_parquet(str(tmp_path / "cfg/a/test.parquet"))
    readme.write_text("---\nconfigs:\n- config_name: A\n  data_files:\n  - split: test\n    path: a/*.parquet\n---\n")
    cases = {
        "missing column": (f"hf:{tmp_path / 'set'}", {"columns": {"image": "png"}}, "no column 'png'"),
        "wrong config": (f"hf:{tmp_path / 'cfg'}", {"config": "B"}, "check config 'B'"),
        "unknown revision": ("hf:someone/a-set@v9", {}, "revision 'v9' must exist on the Hub"),
    }
    for what, (name, options, message) in cases.items():
        suite = {"name": "x", "dataset": {"name": name, **options}, "captioners": [{"name": "reference"}]}
        (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
        done = run_cli(["run", str(tmp_path / "suite.yaml"), "--out", str(tmp_path / "run")], tmp_path)
        assert done.returncode != 0, what
        lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1 and message in lines[0], (what, done.stderr)
        assert not (tmp_path / "run").exists(), what


def any_hit_metrics(captions: dict[str, str], descriptions: dict[str, list[str]]) -> dict[str, float]:
    """c2d and d2c R@1 and R@5 by the any-hit rule, from MiniLM vectors and a full score matrix."""
    from pancap_retrieval.retrieval.embedder import Embedder
    from pancap_retrieval.retrieval.textprep import prepare_texts

    model = Embedder("minilm")
    ids = list(captions)
    owners = np.array([ids.index(i) for i in ids for _ in descriptions[i]])
    desc = model.embed_passages([t for i in ids for t in descriptions[i]])
    caps = model.embed_queries(prepare_texts([captions[i] for i in ids], "strip").texts)
    scores = caps.astype(np.float64) @ desc.astype(np.float64).T
    c2d = [1 + int(((scores[q] >= scores[q, owners == q].max()) & (owners != q)).sum()) for q in range(len(ids))]
    d2c = [1 + int((scores[:, j] >= scores[o, j]).sum() - 1) for j, o in enumerate(owners)]
    return {f"{d}@{k}": float(np.mean(np.array(r) <= k)) for d, r in (("c2d", c2d), ("d2c", d2c)) for k in (1, 5)}


@pytest.mark.slow
def test_pancap_run_on_every_format_equals_the_any_hit_rule(photos, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))
    image_dataset(photos).save_to_disk(str(tmp_path / "disk"))
    (tmp_path / "pq").mkdir()
    image_dataset(photos).to_parquet(str(tmp_path / "pq" / "test.parquet"))
    write_jsonl_set(photos, tmp_path / "jsonl")
    image_dataset(photos, "captions", several=True).save_to_disk(str(tmp_path / "five"))
    sets = {
        "disk": {"columns": {"image": "jpg", "id": "key"}},
        "pq": {"columns": {"image": "jpg", "id": "key"}},
        "jsonl": {"columns": {"image": "file"}},
        "five": {"columns": {"image": "jpg", "id": "key", "text": "captions"}},
    }
    detector_captions = {}
    for name, options in sets.items():
        suite = {
            "name": name,
            "dataset": {"name": f"hf:{tmp_path / name}", "split": "test", **options},
            "captioners": [{"name": "detector"}],
            "retrieval": {"bootstrap_samples": 0},
        }
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(suite))
        result = CliRunner().invoke(cli, ["run", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path / f"run-{name}")])
        assert result.exit_code == 0, result.output
        run = json.loads((tmp_path / f"run-{name}" / "results.json").read_text())
        row = run["rows"][0]
        store = tmp_path / f"run-{name}" / "captions"
        captions = {
            r["example_id"]: r["caption"]
            for path in store.glob("*.jsonl")
            for r in map(json.loads, path.read_text().splitlines())
        }
        several = name == "five"
        descriptions = {p["id"]: p["descriptions"] if several else p["descriptions"][:1] for p in photos}
        expected = any_hit_metrics(captions, descriptions)
        got = {f"{d}@{k}": row[name][f"R@{k}"] for d, name in (("c2d", "caption->description"), ("d2c", "description->caption")) for k in (1, 5)}
        assert got == pytest.approx(expected), name
        assert row["description->caption"]["n"] == (30 if several else 6) and row["n"] == 6
        manifest = json.loads((tmp_path / f"run-{name}" / "manifest.json").read_text())
        assert manifest["retrieval_rule"].startswith("an image may have several descriptions")
        detector_captions[name] = captions
    # one-description formats hold the same data: the same captions
    assert detector_captions["disk"] == detector_captions["pq"] == detector_captions["jsonl"]


def test_rows_digest_covers_every_description_of_an_image(tmp_path):
    """Two sets that differ only in an image's second description have different row digests."""
    import datasets

    from pancap_retrieval.data import dataset_info, load_dataset

    digests = []
    for second in ("a red kite", "a blue kite"):
        folder = tmp_path / second.replace(" ", "-")
        image = Image.new("RGB", (8, 8), (200, 10, 10))
        datasets.Dataset.from_dict(
            {"image": [image], "text": [["a kite in the sky", second]], "example_id": ["k1"]},
            features=datasets.Features({
                "image": datasets.Image(), "text": datasets.Sequence(datasets.Value("string")),
                "example_id": datasets.Value("string"),
            }),
        ).save_to_disk(str(folder))
        data = load_dataset(f"hf:{folder}")
        assert data["description"] == ["a kite in the sky"]
        digests.append(dataset_info(f"hf:{folder}", data)["rows_sha256"])
    assert digests[0] != digests[1]
