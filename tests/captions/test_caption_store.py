from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pancap_retrieval.captions.readers import read_captions
from pancap_retrieval.captions.store import CaptionRecord, CaptionStore, store_path
from pancap_retrieval.errors import CaptionFileError

WRITER = textwrap.dedent(
    """
    import sys, time
    import datasets
    from pancap_retrieval.captioners.base import caption_dataset
    from pancap_retrieval.captioners.reference import ReferenceCaptioner
    from pancap_retrieval.captions.store import CaptionStore

    class SlowReference(ReferenceCaptioner):
        def caption_batch(self, examples):
            time.sleep(0.02)
            return super().caption_batch(examples)

    ids = [f"img-{i:03d}" for i in range(200)]
    data = datasets.Dataset.from_dict({"example_id": ids, "description": [f"text of {i}" for i in ids],
                                       "width": [1] * 200, "height": [1] * 200, "split": ["test"] * 200})
    stats = caption_dataset(SlowReference(), data, CaptionStore(sys.argv[1]), batch_size=1, progress=False)
    print(stats.ok, stats.skipped_done)
    """
)


@pytest.mark.slow
def test_killed_writer_resumes_without_loss_or_duplicates(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "captions.jsonl"
    process = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or path.read_text().count("\n") < 20):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    first_run = path.read_text().count("\n")
    assert 20 <= first_run < 200, "the writer must be killed mid-run"

    resumed = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, check=True
    )
    ok, skipped = map(int, resumed.stdout.split())
    assert skipped == first_run and ok == 200 - first_run

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    ids = [line["example_id"] for line in lines]
    assert sorted(ids) == [f"img-{i:03d}" for i in range(200)]  # none lost, none twice
    assert all(line["caption"] == f"text of {line['example_id']}" for line in lines)


def test_torn_last_line_is_dropped_with_a_warning_and_repaired(tmp_path):
    store = CaptionStore(tmp_path / "c.jsonl")
    store.append(CaptionRecord("a", "a caption"))
    with store.path.open("a") as handle:
        handle.write('{"example_id": "b", "capt')
    with pytest.warns(UserWarning, match="torn last line"):
        assert store.done_ids() == {"a"}
    store.append(CaptionRecord("b", "b caption"))
    assert [r.example_id for r in store.records()] == ["a", "b"]


def test_a_torn_line_before_the_last_is_dropped_and_cut_away(tmp_path):
    store = CaptionStore(tmp_path / "c.jsonl")
    store.append(CaptionRecord("a", "x"))
    with store.path.open("a") as handle:
        handle.write('{"example_id": "b", "capt\n{"example_id": "c", "caption": "z"}\n')
    with pytest.warns(UserWarning, match="torn line"):
        assert store.done_ids() == {"a", "c"}  # b is captioned again
    assert store.torn_lines == 1 and len(store.path.read_text().splitlines()) == 2
    assert [r.example_id for r in CaptionStore(store.path).records()] == ["a", "c"]


def test_failed_generation_is_stored_as_failed_not_empty(tmp_path):
    store = CaptionStore(tmp_path / "c.jsonl")
    store.append(CaptionRecord.failed("x", "OutOfMemoryError: CUDA"))
    store.append(CaptionRecord("y", "fine"))
    record = {r.example_id: r for r in store.records()}["x"]
    assert record.status == "failed" and record.caption is None and "OutOfMemory" in record.error
    assert store.done_ids() == {"y"}
    assert store.done_ids(include_failed=True) == {"x", "y"}


def test_store_path_is_per_captioner_dataset_split():
    path = store_path("run", "detector", "imagefolder:/data/my photos", "train")
    assert path.parent.name == "captions"
    assert path.name.startswith("detector__imagefolder-data-my-photos~") and path.name.endswith(
        "__train.jsonl"
    )


def test_readers_take_every_format(tmp_path):
    ours = tmp_path / "ours.jsonl"
    CaptionStore(ours).append(CaptionRecord("sa_1", "a dog [[0.1, 0.1, 0.5, 0.5]]"))
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": "sa_2", "prompt": "p", "text": "a cat"}) + "\n")
    model_list = tmp_path / "model.json"
    model_list.write_text(json.dumps([{"image_path": "sam/sa_000001/sa_3.jpg", "model_response": "a cow"}]))
    gt_list = tmp_path / "gt.json"
    gt_list.write_text(json.dumps([{"image_path": "sam/sa_000001/sa_4.jpg", "gt_response": "a hen"}]))
    plain = tmp_path / "sa_5.txt"
    plain.write_text("a fox\n")
    got = [
        (r.example_id, r.caption)
        for f in (ours, answers, model_list, gt_list, plain)
        for r in read_captions(f)
    ]
    assert got == [
        ("sa_1", "a dog [[0.1, 0.1, 0.5, 0.5]]"),
        ("sa_2", "a cat"),
        ("sa_3", "a cow"),
        ("sa_4", "a hen"),
        ("sa_5", "a fox"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"[{'not': json}]", "not valid JSON"),
        (b'[{"image_path": "a.jpg"}]', "no caption field"),
        (b"\xff\xfe\x00garbage", "cannot read"),
        (b'{"question_id": 1, "text": "x"}\nnot json\n', ":2: not a JSON line"),
    ],
)
def test_unreadable_captions_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(CaptionFileError, match=message) as info:
        read_captions(path)
    assert "\n" not in str(info.value)


def test_missing_captions_file():
    with pytest.raises(CaptionFileError, match=r"not found: /nope/c\.jsonl"):
        read_captions("/nope/c.jsonl")


def test_pancapchain_answer_folder_takes_ids_from_image_paths(tmp_path):
    # the paper's inference script writes one answer file per image, question_id being a running index
    folder = tmp_path / "answers"
    folder.mkdir()
    for index, image in enumerate(["sam/sa_000045/sa_507752.jpg", "sam/sa_000009/sa_103444.jpg"]):
        line = {
            "question_id": index,
            "image": image,
            "text": f"caption {index}",
            "answer_id": "x",
            "metadata": {},
        }
        (folder / ("_".join(image[:-4].split("/")) + ".json")).write_text(json.dumps(line) + "\n")
    got = sorted((r.example_id, r.caption) for r in read_captions(folder))
    assert got == [("sa_103444", "caption 1"), ("sa_507752", "caption 0")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CaptionFileError, match=r"no \.json or \.jsonl captions files in"):
        read_captions(empty)
