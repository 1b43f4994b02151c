"""The reconstruction stage of a run: captions -> layouts -> redraws -> fidelity scores, all on disk.

Files under the run folder::

    originals/{example_id}.png              the original, long side at most 512 (for galleries)
    images/{captioner}/{example_id}.png     the redraw
    images/{captioner}/layouts.jsonl        one line per redraw: the layout, its seed, the redrawer
    reconstruction.json                     the scores returned by :func:`reconstruct_run`

A rerun redraws only what is missing (a PNG with its layout line, same seed and redrawer, is kept). Captions that
cannot be redrawn (failed generation, no image in the dataset, unreadable image, empty caption) are counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.errors import DatasetError, ModelLoadError
from reconstruct.layout import COUNT_KEYS, Layout, LayoutError, layout_from_record
from reconstruct.redrawers import example_seed, get_redrawer

if TYPE_CHECKING:
    from PIL import Image

    from pancap_retrieval.captions.store import CaptionRecord
    from reconstruct.redrawers.base import Redrawer

log = logging.getLogger(__name__)

ORIGINAL_MAX_SIDE = 512
RESULTS_FILE = "reconstruction.json"


def safe_name(text: str) -> str:
    """A file name for an id: kept when already safe, else cleaned with a short hash to stay unique.

    >>> safe_name("sa_507752"), safe_name("a/b c")
    ('sa_507752', 'a-b-c-0af99a60')
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80]
    if slug != text or not slug:
        slug = (slug + "-" if slug else "") + hashlib.sha256(text.encode()).hexdigest()[:8]
    return slug


def _image_source(dataset: Any) -> dict[str, Any]:
    """example_id -> what :func:`~pancap_retrieval.data.open_image` decodes (a row dict with ``image``)."""
    if isinstance(dataset, str):
        from pancap_retrieval.data import load_dataset

        dataset = load_dataset(dataset)
    if isinstance(dataset, Mapping):
        return {str(k): {"example_id": str(k), "image": v} for k, v in dataset.items()}
    if hasattr(dataset, "column_names") and "image" in dataset.column_names:
        from pancap_retrieval.data import undecoded

        return {str(row["example_id"]): row for row in undecoded(dataset)}
    if isinstance(dataset, Iterable):
        rows = {}
        for row in dataset:
            if not isinstance(row, Mapping) or "example_id" not in row or "image" not in row:
                raise DatasetError("dataset rows must have example_id and image")
            rows[str(row["example_id"])] = row
        return rows
    raise DatasetError(f"cannot read images from a {type(dataset).__name__}")


def _open(row: Mapping[str, Any]) -> Image.Image:
    from pancap_retrieval.data import open_image

    return open_image(dict(row))


def _read_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    """The last line per example_id of a layouts file; a torn last line is ignored."""
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "example_id" in data:
            done[str(data["example_id"])] = data
    return done


def _append(path: Path, data: Mapping[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(data, ensure_ascii=False) + "\n")
        handle.flush()


def _build_redrawer(
    redrawer: str | Redrawer,
    model: str | None,
    steps: int | None,
    device: str | None,
    options: Mapping[str, Any],
) -> Redrawer:
    if not isinstance(redrawer, str):
        return redrawer
    kwargs = dict(options)
    if model is not None:
        kwargs["model"] = model
    if steps is not None:
        kwargs["steps"] = steps
    if device is not None and redrawer != "sketch":
        kwargs.setdefault("device", device)
    return get_redrawer(redrawer, **kwargs)


def _default_detector() -> tuple[Any, str | None]:
    try:
        from pancap_retrieval.detection import Detector

        return Detector(score_threshold=0.3), None
    except (ImportError, ModelLoadError) as exc:
        return None, f"detector unavailable: {exc}"


def _signature(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:12]


def reconstruct_run(
    run_dir: str | Path,
    captions: Mapping[str, Sequence[CaptionRecord]],
    dataset: Any,
    redrawer: str | Redrawer = "sketch",
    model: str | None = None,
    seed: int = 0,
    *,
    steps: int | None = None,
    redrawer_options: Mapping[str, Any] | None = None,
    canvas_mode: str = "letterbox",
    batch_size: int | None = None,
    scores: bool = True,
    detector: Any = "auto",
    device: str | None = None,
    kid_subset_size: int = 1000,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Redraw every caption of every captioner and score the redraws against the originals.

    ``captions``: captioner name -> its caption records. ``dataset``: a pancap ``datasets.Dataset``, a dataset
    spec (``"sample"``), rows with ``example_id`` and ``image``, or a mapping id -> image. ``redrawer``: a
    registered name (``sketch``, ``gligen``, ``text2image``) built with ``model``, ``steps`` (diffusion
    redrawers; the sketch has none) and ``redrawer_options`` plus any other keyword (``guidance_scale=``,
    ``canvas_size=``, ``dtype=``, ...), or a redrawer object. ``detector``: ``"auto"`` (the packaged CenterNet), None (no adherence scores) or an object
    with ``detect``. Writes the files listed in the module docstring; returns what ``reconstruction.json`` holds.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    drawer = _build_redrawer(redrawer, model, steps, device, {**(redrawer_options or {}), **options})
    manifest = drawer.manifest()
    signature = _signature({**manifest, "canvas_mode": canvas_mode})
    batch = batch_size or drawer.default_batch_size
    if batch < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch}")
    sources = _image_source(dataset)
    originals_dir = run_dir / "originals"
    originals_dir.mkdir(parents=True, exist_ok=True)
    opened: dict[str, Image.Image | None] = {}
    bad_images: dict[str, str] = {}

    def original(example_id: str) -> Image.Image | None:
        if example_id not in opened:
            try:
                image = _open(sources[example_id])
            except DatasetError as exc:
                bad_images[example_id] = str(exc)
                opened[example_id] = None
                return None
            opened[example_id] = image
            path = originals_dir / f"{safe_name(example_id)}.png"
            if not path.is_file():
                small = image.copy()
                small.thumbnail((ORIGINAL_MAX_SIDE, ORIGINAL_MAX_SIDE))
                small.save(path)
        return opened[example_id]

    results: dict[str, Any] = {
        "redrawer": manifest,
        "redrawer_signature": signature,
        "seed": seed,
        "canvas_mode": canvas_mode,
        "captioners": {},
    }
    pairs: dict[str, list[tuple[str, Layout]]] = {}
    for captioner, records in captions.items():
        out_dir = run_dir / "images" / safe_name(captioner)
        out_dir.mkdir(parents=True, exist_ok=True)
        layouts_path = out_dir / "layouts.jsonl"
        done = _read_jsonl(layouts_path)
        skipped = {"failed_caption": 0, "no_image": 0, "unreadable_image": 0, "empty_caption": 0}
        skipped_ids: dict[str, str] = {}
        todo: list[tuple[Layout, int]] = []
        kept: list[tuple[str, Layout]] = []
        reused = 0
        seen: set[str] = set()
        for record in records:
            example_id = record.example_id
            if example_id in seen:
                continue
            seen.add(example_id)
            if record.status != "ok" or not isinstance(record.caption, str):
                skipped["failed_caption"] += 1
                skipped_ids[example_id] = "failed_caption"
                continue
            if example_id not in sources:
                skipped["no_image"] += 1
                skipped_ids[example_id] = "no_image"
                continue
            image = original(example_id)
            if image is None:
                skipped["unreadable_image"] += 1
                skipped_ids[example_id] = "unreadable_image"
                continue
            try:
                layout = layout_from_record(
                    record, image_size=image.size, mode=canvas_mode, **drawer.layout_options()
                )
            except LayoutError as exc:
                skipped["empty_caption"] += 1
                skipped_ids[example_id] = str(exc)
                continue
            image_seed = example_seed(seed, example_id)
            png = out_dir / f"{safe_name(example_id)}.png"
            previous = done.get(example_id)
            if (
                previous is not None
                and png.is_file()
                and previous.get("seed") == image_seed
                and previous.get("redrawer_signature") == signature
            ):
                kept.append((example_id, Layout.from_dict(previous["layout"])))
                reused += 1
                continue
            todo.append((layout, image_seed))
            kept.append((example_id, layout))
        started = time.perf_counter()
        bar = tqdm(total=len(todo), desc=f"redraw {captioner}", unit="img", disable=not progress or not todo)
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            images = drawer.redraw([layout for layout, _ in chunk], [s for _, s in chunk])
            for (layout, image_seed), image in zip(chunk, images):
                name = safe_name(layout.example_id)
                image.save(out_dir / f"{name}.png")
                _append(
                    layouts_path,
                    {
                        "example_id": layout.example_id,
                        "image": f"{name}.png",
                        "seed": image_seed,
                        "redrawer": manifest.get("name"),
                        "redrawer_signature": signature,
                        "layout": layout.to_dict(),
                    },
                )
            bar.update(len(chunk))
        bar.close()
        elapsed = time.perf_counter() - started
        layouts = [layout for _, layout in kept]
        counts = {key: sum(layout.counts.get(key, 0) for layout in layouts) for key in COUNT_KEYS}
        results["captioners"][captioner] = {
            "records": len(seen),
            "redrawn": len(todo),
            "reused": reused,
            "skipped": skipped,
            "skipped_ids": dict(list(skipped_ids.items())[:50]),
            "text_only": sum(layout.is_text_only for layout in layouts),
            "boxes": sum(len(layout.boxes) for layout in layouts),
            "layout_changes": counts,
            "redraw_seconds": round(elapsed, 3),
            "images_per_second": round(len(todo) / elapsed, 3) if todo and elapsed > 0 else None,
        }
        pairs[captioner] = kept

    if scores:
        _score(run_dir, results, pairs, opened, detector, device, kid_subset_size, seed)
    if bad_images:
        results["unreadable_images"] = dict(list(bad_images.items())[:50])
    _write_results(run_dir / RESULTS_FILE, results)
    return results


def _write_results(path: Path, results: dict[str, Any]) -> None:
    """Write the results; captioners of an earlier run with the same redrawer and seed that this run did not
    touch are kept, so captioners can be added one at a time."""
    merged = dict(results)
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            previous = {}
        same = previous.get("redrawer_signature") == results["redrawer_signature"]
        if same and previous.get("seed") == results["seed"]:
            kept = {k: v for k, v in previous.get("captioners", {}).items() if k not in results["captioners"]}
            merged["captioners"] = {**kept, **results["captioners"]}
    path.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")


def _score(
    run_dir: Path,
    results: dict[str, Any],
    pairs: Mapping[str, list[tuple[str, Layout]]],
    opened: Mapping[str, Any],
    detector: Any,
    device: str | None,
    kid_subset_size: int,
    seed: int,
) -> None:
    """Fidelity scores per captioner; the Inception network, the detector and the originals' detections shared."""
    import numpy as np
    from PIL import Image

    from reconstruct.fidelity import InceptionFeatures, fidelity_scores

    features = InceptionFeatures(device=device)
    reason = None
    if isinstance(detector, str) and detector == "auto":
        detector, reason = _default_detector()
    original_dets: dict[str, Any] = {}
    original_feats: dict[str, Any] = {}
    for captioner, kept in pairs.items():
        entry = results["captioners"][captioner]
        if not kept:
            entry["scores"] = {"n_pairs": 0, "note": "no redraw to score"}
            continue
        out_dir = run_dir / "images" / safe_name(captioner)
        ids = [example_id for example_id, _ in kept]
        originals = [opened[example_id] for example_id in ids]
        redraws = []
        for example_id in ids:
            with Image.open(out_dir / f"{safe_name(example_id)}.png") as image:
                redraws.append(image.convert("RGB"))
        missing = [i for i in ids if i not in original_feats]
        if missing:
            original_feats.update(zip(missing, features([opened[i] for i in missing])))
        dets = None
        if detector is not None:
            missing = [i for i in ids if i not in original_dets]
            for example_id, found in zip(missing, detector.detect([opened[i] for i in missing])):
                original_dets[example_id] = found
            dets = [original_dets[i] for i in ids]
        entry["scores"] = fidelity_scores(
            originals,
            redraws,
            [layout for _, layout in kept],
            features=features,
            detector=detector,
            original_detections=dets,
            original_features=np.stack([original_feats[i] for i in ids]),
            kid_subset_size=kid_subset_size,
            seed=seed,
        )
        if reason:
            entry["scores"]["adherence"] = {"skipped": reason}
