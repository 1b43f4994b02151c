"""Bad input at the command line: exit code != 0, one line on stderr that names the problem, no traceback."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pancap_retrieval.captions.store import CaptionRecord, CaptionStore, store_path
from pancap_retrieval.cli import cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stderr


def store_with_line(out: Path, line: str) -> None:
    path = store_path(out, "mine", "sample", "test")
    CaptionStore(path).append(CaptionRecord("skimage-astronaut", "an astronaut"))
    with path.open("a") as handle:
        handle.write(line + "\n")


def case_non_utf8_suite(tmp: Path) -> tuple[list[str], str]:
    suite = tmp / "suite.yaml"
    suite.write_bytes(b"name: caf\xe9\ndataset: {name: sample}\ncaptioners: [{name: reference}]\n")
    return ["run", str(suite), "--out", str(tmp / "run")], "not UTF-8"


def case_batch_size_zero(tmp: Path) -> tuple[list[str], str]:
    args = ["caption", "--captioner", "detector", "--dataset", "sample", "--out", str(tmp / "run")]
    return [*args, "-o", "batch_size=0"], "batch_size=0 must be at least 1"


def case_threshold_not_a_number(tmp: Path) -> tuple[list[str], str]:
    args = ["caption", "--captioner", "detector", "--dataset", "sample", "--out", str(tmp / "run")]
    return [*args, "-o", "score_threshold=abc"], "score_threshold='abc'"


def case_bogus_text_prep(tmp: Path) -> tuple[list[str], str]:
    captions = tmp / "c.jsonl"
    captions.write_text(json.dumps({"example_id": "skimage-astronaut", "caption": "x"}) + "\n")
    args = ["retrieve", "--dataset", "sample", "--captions", str(captions), "--out", str(tmp / "run")]
    return [*args, "--text-prep", "bogus"], "text_prep must be strip, keep or rewrite:hf:MODEL"


def case_gallery_of_an_empty_folder(tmp: Path) -> tuple[list[str], str]:
    (tmp / "empty").mkdir()
    return ["gallery", str(tmp / "empty")], "has no reconstruction.json"


def case_out_under_a_file(tmp: Path) -> tuple[list[str], str]:
    (tmp / "a_file").write_text("x")
    args = ["caption", "--captioner", "reference", "--dataset", "sample", "--limit", "1"]
    return [*args, "--out", str(tmp / "a_file" / "run")], "cannot write"


@pytest.mark.parametrize(("line", "what"), [("123", "a int"), ("[1, 2]", "a list"), ("NaN", "a float")])
def test_a_store_line_that_is_not_a_record_is_named(tmp_path, line, what):
    out = tmp_path / "run"
    store_with_line(out, line)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))
        code, stderr = invoke("retrieve", "--dataset", "sample", "--captions", "mine", "--out", str(out))
    assert code != 0 and len(stderr.strip().splitlines()) == 1, stderr
    assert f":2: {what}, not a JSON object" in stderr and "Traceback" not in stderr


def case_scores_of_captions_with_no_common_image(tmp: Path) -> tuple[list[str], str]:
    pred, ref = tmp / "pred.jsonl", tmp / "ref.jsonl"
    pred.write_text(json.dumps({"example_id": "a", "caption": "a dog [[0.1, 0.1, 0.5, 0.5]]"}) + "\n")
    ref.write_text(json.dumps({"example_id": "b", "caption": "a cat [[0.1, 0.1, 0.5, 0.5]]"}) + "\n")
    return ["score", "pancapscore", "--pred", str(pred), "--ref", str(ref)], "no example id is in both"


def case_option_text_that_is_not_yaml(tmp: Path) -> tuple[list[str], str]:
    args = ["caption", "--captioner", "detector", "--dataset", "sample", "--out", str(tmp / "run")]
    return [*args, "-o", "score_threshold=[1,"], "the value of score_threshold is not valid YAML"


def case_threshold_out_of_range(tmp: Path) -> tuple[list[str], str]:
    args = ["caption", "--captioner", "detector", "--dataset", "sample", "--out", str(tmp / "run")]
    return [*args, "-o", "score_threshold=-5"], "score_threshold=-5: Input should be greater than or equal to 0"


def case_unknown_dialect(tmp: Path) -> tuple[list[str], str]:
    args = ["caption", "--captioner", "detector", "--dataset", "sample", "--out", str(tmp / "run")]
    return [*args, "-o", 'dialect="[1,"'], "dialect='[1,': Input should be 'norm', 'asmv2' or 'pixel'"


def _import(tmp: Path, record: dict) -> list[str]:
    captions = tmp / "c.jsonl"
    captions.write_text(json.dumps(record) + "\n")
    return ["captions", "import", str(captions), "--captioner", "mine", "--dataset", "sample", "--out", str(tmp / "run")]


def case_import_meta_not_an_object(tmp: Path) -> tuple[list[str], str]:
    record = {"example_id": "skimage-astronaut", "caption": "x", "meta": [1]}
    return _import(tmp, record), "meta must be an object (or left out), not list"


def case_import_stages_not_an_object(tmp: Path) -> tuple[list[str], str]:
    record = {"example_id": "skimage-astronaut", "caption": "x", "stages": "abc"}
    return _import(tmp, record), "stages must be an object (or left out), not str"


def case_import_of_no_image_of_the_dataset(tmp: Path) -> tuple[list[str], str]:
    return _import(tmp, {"example_id": "not-in-sample", "caption": "x"}), "none of its 1 captions belongs to sample"


def case_import_line_that_is_not_a_record(tmp: Path) -> tuple[list[str], str]:
    args = _import(tmp, {"example_id": "skimage-astronaut", "caption": "x"})
    with Path(args[2]).open("a") as handle:
        handle.write("123\n")
    return args, ":2: a int, not a JSON object; fix or delete that line"


def case_retrieve_with_a_bad_captions_file(tmp: Path) -> tuple[list[str], str]:
    captions = tmp / "c.jsonl"
    captions.write_text(json.dumps({"example_id": "skimage-astronaut", "caption": "x", "meta": "m"}) + "\n")
    args = ["retrieve", "--dataset", "sample", "--captions", str(captions), "--out", str(tmp / "run")]
    return args, "meta must be an object"


def case_reconstruct_with_a_bad_captions_file(tmp: Path) -> tuple[list[str], str]:
    captions = tmp / "c.jsonl"
    captions.write_text(json.dumps({"example_id": "skimage-astronaut", "caption": "x", "stages": [1]}) + "\n")
    args = ["reconstruct", "--dataset", "sample", "--captions", str(captions), "--out", str(tmp / "run")]
    return args, "stages must be an object"


def case_text_limit_that_is_not_a_number(tmp: Path) -> tuple[list[str], str]:
    os.environ["PANCAP_MAX_TEXT_BYTES"] = "lots"  # restored by the test
    args = ["caption", "--captioner", "reference", "--dataset", "sample", "--out", str(tmp / "run")]
    return args, "PANCAP_MAX_TEXT_BYTES must be a whole number of bytes"


CASES = [
    case_option_text_that_is_not_yaml,
    case_threshold_out_of_range,
    case_unknown_dialect,
    case_import_meta_not_an_object,
    case_import_stages_not_an_object,
    case_import_of_no_image_of_the_dataset,
    case_import_line_that_is_not_a_record,
    case_retrieve_with_a_bad_captions_file,
    case_reconstruct_with_a_bad_captions_file,
    case_text_limit_that_is_not_a_number,
    case_scores_of_captions_with_no_common_image,
    case_non_utf8_suite,
    case_batch_size_zero,
    case_threshold_not_a_number,
    case_bogus_text_prep,
    case_gallery_of_an_empty_folder,
    case_out_under_a_file,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_is_one_line_and_a_non_zero_exit_and_leaves_no_folder(tmp_path, monkeypatch, case):
    monkeypatch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PANCAP_MAX_TEXT_BYTES", os.environ.get("PANCAP_MAX_TEXT_BYTES", ""))
    args, message = case(tmp_path)
    code, stderr = invoke(*args)
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert "Traceback" not in stderr and "--overwrite" not in stderr
    assert not (tmp_path / "run").exists()


def test_a_full_disk_is_one_line(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code, stderr = invoke(
        "caption", "--captioner", "reference", "--dataset", "sample", "--limit", "1", "--out", str(tmp_path / "r")
    )
    assert code != 0 and len(stderr.strip().splitlines()) == 1
    assert "no space left on the device" in stderr and "Traceback" not in stderr


def test_a_corrupt_embedding_cache_is_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))
    captions = tmp_path / "c.jsonl"
    captions.write_text(json.dumps({"example_id": "skimage-astronaut", "caption": "an astronaut"}) + "\n")
    args = ["retrieve", "--dataset", "sample", "--limit", "3", "--captions", str(captions)]
    assert invoke(*args, "--out", str(tmp_path / "one"))[0] == 0
    for cache in (tmp_path / "cache" / "embeddings").glob("*.sqlite"):
        cache.write_bytes(b"this is not a database" * 100)
    code, stderr = invoke(*args, "--out", str(tmp_path / "two"))
    assert code != 0 and len(stderr.strip().splitlines()) == 1, stderr
    assert "delete it and rerun to rebuild it" in stderr and ".sqlite" in stderr


def test_a_caption_or_description_over_the_text_limit_is_cut_and_counted(tmp_path, monkeypatch, caplog):
    from pancap_retrieval.data import load_dataset

    monkeypatch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PANCAP_MAX_TEXT_BYTES", "1000")
    captions = tmp_path / "c.jsonl"
    lines = [{"example_id": "skimage-astronaut", "caption": "an astronaut " * 1000},
             {"example_id": "skimage-camera", "caption": "a camera"}]  # fmt: skip
    captions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["captions", "import", str(captions), "--captioner", "mine", "--dataset",
                                      "sample", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cut"] == 1
    assert "1 text(s) over 1,000 bytes cut" in caplog.text and "skimage-astronaut" in caplog.text
    stored = {r.example_id: r.caption for r in CaptionStore(store_path(out, "mine", "sample", "test")).records()}
    assert len(stored["skimage-astronaut"].encode()) == 1000 and stored["skimage-camera"] == "a camera"
    folder = tmp_path / "photos"
    folder.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "description": "é" * 2000}) + "\n")
    assert len(load_dataset(f"imagefolder:{folder}")["description"][0].encode()) == 1000
    assert "imagefolder" in caplog.text and "descriptions: 1 text(s) over 1,000 bytes cut" in caplog.text
