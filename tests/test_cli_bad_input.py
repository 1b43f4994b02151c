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


CASES = [
    case_scores_of_captions_with_no_common_image,
    case_non_utf8_suite,
    case_batch_size_zero,
    case_threshold_not_a_number,
    case_bogus_text_prep,
    case_gallery_of_an_empty_folder,
    case_out_under_a_file,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, case):
    args, message = case(tmp_path)
    code, stderr = invoke(*args)
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert "Traceback" not in stderr


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
