"""The command line, end to end through click: one-line errors on bad input, JSON out on good input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pancap_retrieval.cli import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_and_lists_import_no_torch():
    code = (
        "import sys; from click.testing import CliRunner; from pancap_retrieval.cli import cli;"
        "r = CliRunner().invoke(cli, ['list', 'captioners']); assert r.exit_code == 0, r.output;"
        "r = CliRunner().invoke(cli, ['list', 'datasets']); assert r.exit_code == 0, r.output;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    result = invoke("--help")
    assert result.exit_code == 0 and "pancap run eval_suites/sample.yaml" in result.output


def _commands(group, path=()):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_and_option_has_help_text():
    import click

    missing = []
    for path, command in _commands(cli):
        if not (command.help or "").strip():
            missing.append(" ".join(path))
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help" and not (param.help or "").strip():
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert not missing, f"no help text: {missing}"
    assert "test for docci" in invoke("caption", "--help").output


def test_list_datasets_and_captioners():
    datasets = invoke("list", "datasets").output
    for name in ("sample", "docci", "imagefolder", "sapancap"):
        assert name in datasets
    captioners = invoke("list", "captioners").output
    for name in ("reference", "detector", "pancapchain", "qwen2.5-vl", "llava-1.5", "sharegpt4v", "blip2"):
        assert name in captioners


def test_data_show_prints_rows():
    result = invoke("data", "show", "sample", "--limit", "2")
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(rows) == 2 and all(row["split"] == "test" and row["description"] for row in rows)


def test_missing_dataset_path():
    one_line_error(invoke("data", "show", "imagefolder:/no/such/folder"), "/no/such/folder")


def test_unknown_split():
    one_line_error(invoke("data", "show", "sample", "--split", "validation"), "validation", "test")


def test_unknown_dataset_lists_known_ones():
    one_line_error(invoke("data", "show", "coco"), "unknown dataset 'coco'", "sample")


def test_corrupt_image_is_a_recorded_failure_and_the_run_goes_on(tmp_path):
    from PIL import Image
    from skimage import data as skdata

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skdata.coffee()).save(folder / "coffee.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "coffee.jpg", "description": "a cup of coffee"})
        + "\n"
        + json.dumps({"file_name": "broken.jpg", "description": "nothing"})
        + "\n"
    )
    out = tmp_path / "run"
    result = invoke(
        "caption", "--captioner", "detector", "--dataset", f"imagefolder:{folder}", "--out", str(out)
    )
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["ok"] == 1 and report["failed"] == 1
    assert "broken" in report["failures"] and "cannot decode" in report["failures"]["broken"]


def test_unreadable_captions_file(tmp_path):
    bad = tmp_path / "captions.json"
    bad.write_bytes(b"\x00\xff\xfe not text")
    one_line_error(invoke("captions", "parse", str(bad)), "captions.json")
    one_line_error(invoke("captions", "parse", str(tmp_path / "missing.jsonl")), "missing.jsonl")


def test_captions_parse_prints_entities(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(
        json.dumps({"question_id": "x1", "text": "A dog <box>[[100, 200, 300, 400]]</box> sleeps."}) + "\n"
    )
    result = invoke("captions", "parse", str(path), "--width", "500", "--height", "500")
    parsed = json.loads(result.output.splitlines()[0])
    assert parsed["example_id"] == "x1"
    assert parsed["entities"] == [{"phrase": "A dog", "boxes": [[0.1, 0.2, 0.3, 0.4]]}]
    assert parsed["plain_text"] == "A dog sleeps."
    wide = json.loads(invoke("captions", "parse", str(path), "--width", "1000", "--height", "500").output.splitlines()[0])
    assert wide["entities"][0]["boxes"] == [[0.1, 0.0, 0.3, 0.3]]  # de-padded: the image is 250..750 of the square
    one_line_error(invoke("captions", "parse", str(path)), "--width and --height")


def test_captions_import_counts_what_it_cannot_use(tmp_path):
    from pancap_retrieval.data import load_dataset

    ids = load_dataset("sample")["example_id"]
    path = tmp_path / "answers.jsonl"
    lines = [{"question_id": ids[0], "text": "one"}, {"question_id": ids[0], "text": "again"}]
    lines += [{"question_id": "not-an-image", "text": "x"}, {"question_id": ids[1], "text": "  "}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = invoke(
        "captions", "import", str(path), "--captioner", "mine", "--dataset", "sample", "--out", str(tmp_path)
    )
    report = json.loads(result.output)
    assert (report["imported"], report["duplicates"], report["not_in_dataset"], report["empty"]) == (
        1,
        1,
        1,
        1,
    )


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PANCAP_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.slow
def test_half_right_half_constant_captions_score_about_half(tmp_path, cache):
    """Half the captions are their image's description, half one identical unrelated sentence: R@1 in [0.5, 0.55]."""
    from pancap_retrieval.data import load_dataset

    dataset = load_dataset("sample")
    path = tmp_path / "half.jsonl"
    with path.open("w") as handle:
        for i, (example_id, description) in enumerate(zip(dataset["example_id"], dataset["description"])):
            text = description if i % 2 == 0 else "A spreadsheet of quarterly tax figures."
            handle.write(json.dumps({"example_id": example_id, "caption": text}) + "\n")
    out = tmp_path / "run"
    result = invoke("retrieve", "--dataset", "sample", "--captions", str(path), "--out", str(out))
    assert result.exit_code == 0, result.output
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert row["system"] == "half" and row["n"] == len(dataset)
    assert 0.5 <= row["caption->description"]["R@1"] <= 0.55
    assert (out / "leaderboard.md").read_text().count("| half |") == 1


def test_empty_captions_file_is_a_clear_error(tmp_path, cache):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    result = invoke("retrieve", "--dataset", "sample", "--captions", str(path), "--out", str(tmp_path / "r"))
    one_line_error(result, "empty")


def test_captions_for_unknown_ids_only_is_a_clear_error(tmp_path, cache):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"question_id": "elsewhere", "text": "a cat"}) + "\n")
    result = invoke("retrieve", "--dataset", "sample", "--captions", str(path), "--out", str(tmp_path / "r"))
    one_line_error(result, "none of its 1 captions belongs to sample")


def test_bad_suite_key_is_an_error(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndataset: {name: sample}\ncaptioners: [{name: reference}]\nembeders: []\n")
    one_line_error(invoke("run", str(suite)), "embeders", "Extra inputs")
