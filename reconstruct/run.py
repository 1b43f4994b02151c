"""The reconstruction stage of a run: captions -> layouts -> redraws -> fidelity scores, all on disk, all keyed.

Files under the run folder::

    originals/{file_name(id)}.png           the original, long side at most 512 (for galleries and scores)
    originals/index.jsonl                   one line per original: its key (with the image's sha256), bytes, size
    images/{captioner}/{file_name(id)}.png  the redraw
    images/{captioner}/layouts.jsonl        one line per redraw: the layout, its seed, the redrawer, its key, bytes
    reconstruction.json                     the scores returned by :func:`reconstruct_run`, and their keys

Three stages: :func:`plan` turns captions into layouts and decides what is reused (a redraw is reused only when its
key — redrawer and options, seed, and the layout made from the caption — matches and its PNG has the size it was
written with), :func:`redraw` draws the rest (each PNG written atomically before its layouts line), :func:`score`
computes the fidelity scores of each captioner unless the same redraws of the same original bytes were scored
before with the same scorers. A rerun of a finished stage loads no model; an original, redraw or layouts line it
finds cut or missing is made again, named in a warning and counted as repaired.
Captions that cannot be redrawn (failed generation, no image in the dataset, unreadable image, empty caption) are
counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.artifacts import (
    JsonlStore,
    check_distinct_names,
    file_name,
    key,
    path_fingerprint,
    read_json,
    save_image,
    write_json,
)
from pancap_retrieval.errors import DatasetError, ModelLoadError, PancapError
from pancap_retrieval.ranks import Ranks
from pancap_retrieval.runs import RunSummary
from reconstruct.layout import CANVAS_MODES, COUNT_KEYS, Layout, LayoutError, layout_from_record
from reconstruct.redrawers import REDRAWERS, example_seed, get_redrawer

if TYPE_CHECKING:
    from PIL import Image

    from pancap_retrieval.captions.store import CaptionRecord
    from reconstruct.redrawers.base import Redrawer

log = logging.getLogger(__name__)

ORIGINAL_MAX_SIDE = 512
RESULTS_FILE = "reconstruction.json"
# Bumped when the fidelity scores change meaning, so a rerun scores again rather than reusing old scores.
SCORES_VERSION = 2
safe_name = file_name  # the one file-name rule, under the name the gallery uses
# Options of a suite's reconstruction that belong to the run, not to the redrawer.
RUN_OPTIONS = frozenset({"canvas_mode", "batch_size", "kid_subset_size", "device"})


def read_layouts(path: Path) -> dict[str, dict[str, Any]]:
    """The last line per example_id of a layouts file; a torn last line is dropped."""
    return JsonlStore(path).latest()


_read_jsonl = read_layouts


def check_redrawer(spec: Any) -> None:
    """Validate a :class:`~pancap_retrieval.suite.ReconstructionSpec` before any work: the redrawer's name and
    options, and the canvas mode. Each problem is one line."""
    from pancap_retrieval.registry import check_options

    options = {k: v for k, v in spec.options.items() if k not in RUN_OPTIONS}
    options.update({"model": spec.model} if spec.model else {})
    options.update({"steps": spec.steps} if spec.steps else {})
    check_options(REDRAWERS.get(spec.redrawer), options, f"redrawer {spec.redrawer!r}")
    mode = spec.options.get("canvas_mode", "letterbox")
    if mode not in CANVAS_MODES:
        raise PancapError(f"canvas_mode must be one of {', '.join(CANVAS_MODES)}, not {mode!r}")


# ---------------------------------------------------------------- originals


def _image_source(dataset: Any) -> dict[str, Any]:
    """example_id -> what :func:`~pancap_retrieval.data.open_image` decodes (a row dict with ``image``)."""
    if isinstance(dataset, str):
        from pancap_retrieval.data import load_dataset

        dataset = load_dataset(dataset)
    if isinstance(dataset, Mapping):
        return {str(k): {"example_id": str(k), "image": v} for k, v in dataset.items()}
    if hasattr(dataset, "column_names") and "image" in dataset.column_names:
        from pancap_retrieval.data.records import RowsById

        return RowsById(dataset)
    if isinstance(dataset, Iterable):
        rows = {}
        for row in dataset:
            if not isinstance(row, Mapping) or "example_id" not in row or "image" not in row:
                raise DatasetError("dataset rows must have example_id and image")
            rows[str(row["example_id"])] = row
        return rows
    raise DatasetError(f"cannot read images from a {type(dataset).__name__}")


class Originals:
    """The originals of a run: opened on demand, a small copy written once (atomically), sizes kept in an index.

    ``size(id)`` needs no decoding when the index has the image; ``image(id)`` decodes it. A small copy that is
    missing or not the size the index recorded (torn, emptied) is written again. An unreadable image is
    remembered with its reason.
    """

    def __init__(
        self, run_dir: Path, sources: Mapping[str, Any], digests: Mapping[str, str], rank: int | None = None
    ) -> None:
        self.folder = run_dir / "originals"
        self.sources = sources
        self.digests = digests  # id -> sha256 of the image's bytes: a small copy is reused only for the same bytes
        # under a launcher each rank appends to its own index file; all of them are read
        self.index = JsonlStore(self.folder / ("index.jsonl" if rank is None else f"index.jsonl.rank{rank}"))
        entries = [e for path in sorted(self.folder.glob("index.jsonl*")) for e in JsonlStore(path).read()]
        self.known = {e["example_id"]: e for e in entries if e.get("key") == self._key(e.get("example_id", ""))}
        self.bad: dict[str, str] = {}
        self.repaired = 0

    def _key(self, example_id: str) -> str:
        return key(example_id, ORIGINAL_MAX_SIDE, self.digests.get(example_id))

    def path(self, example_id: str) -> Path:
        return self.folder / f"{file_name(example_id)}.png"

    def have(self, example_id: str) -> bool:
        """Whether the small copy of ``example_id`` is on disk with the size its index line recorded."""
        entry = self.known.get(example_id)
        path = self.path(example_id)
        return entry is not None and path.is_file() and path.stat().st_size == entry.get("bytes")

    def size(self, example_id: str) -> tuple[int, int] | None:
        """The full image's (width, height), or None when it cannot be read."""
        if self.have(example_id):
            return tuple(self.known[example_id]["size"])  # type: ignore[return-value]
        image = self.image(example_id)
        return None if image is None else image.size

    def image(self, example_id: str) -> Image.Image | None:
        """The full image, decoded now (never kept: memory stays bounded), writing its small copy when missing."""
        if example_id in self.bad:
            return None
        from pancap_retrieval.data import open_image

        try:
            image = open_image(dict(self.sources[example_id]))
        except DatasetError as exc:
            self.bad[example_id] = str(exc)
            return None
        if not self.have(example_id):
            if example_id in self.known:  # indexed, but the file is gone or cut: a killed run, a damaged disk
                log.warning("%s: missing or cut; written again from its source", self.path(example_id))
                self.repaired += 1
            self._write(example_id, image)
        return image

    def _write(self, example_id: str, image: Image.Image) -> None:
        small = image.copy()
        small.thumbnail((ORIGINAL_MAX_SIDE, ORIGINAL_MAX_SIDE))
        path = save_image(small, self.path(example_id))
        entry = {"example_id": example_id, "key": self._key(example_id), "size": list(image.size)}
        entry["bytes"] = path.stat().st_size
        self.index.append(entry)
        self.known[example_id] = entry


# ---------------------------------------------------------------- plan


@dataclass
class Plan:
    """What one captioner's reconstruction will do: layouts kept, redraws to make, skips with reasons."""

    captioner: str
    folder: Path
    kept: list[tuple[str, Layout, str]] = field(default_factory=list)  # (id, layout, redraw key)
    todo: list[tuple[Layout, int, str]] = field(default_factory=list)  # (layout, seed, redraw key)
    skipped: dict[str, int] = field(
        default_factory=lambda: {"failed_caption": 0, "no_image": 0, "unreadable_image": 0, "empty_caption": 0}
    )
    skipped_ids: dict[str, str] = field(default_factory=dict)
    records: int = 0
    repaired: int = 0  # redraws on record whose file was missing or cut, drawn again

    def skip(self, example_id: str, reason: str, detail: str | None = None) -> None:
        self.skipped[reason] += 1
        self.skipped_ids[example_id] = detail or reason


def plan(
    captioner: str,
    records: Sequence[CaptionRecord],
    run_dir: Path,
    originals: Originals,
    layout_options: Mapping[str, Any],
    signature: str,
    seed: int,
    canvas_mode: str,
    progress: bool = False,
    *,
    dialect: str = "auto",
    recorded: Mapping[str, str] | None = None,
) -> Plan:
    """Layouts of one captioner's captions (boxes read in ``dialect`` on each original's size), and which redraws
    on disk are still valid for them. With ``progress`` a bar counts the records when this takes over 2 s (the
    first captioner reads every original). ``recorded``: id -> redraw key of the redraws the last results showed;
    one of them whose file or layouts line is missing or cut is drawn again and counted in ``repaired``."""
    from tqdm.auto import tqdm

    result = Plan(captioner, run_dir / "images" / file_name(captioner))
    done = read_layouts(result.folder / "layouts.jsonl")
    seen: set[str] = set()
    bar = tqdm(records, desc=f"layouts {captioner}", unit="img", delay=2, disable=not progress)
    for record in bar:
        example_id = record.example_id
        if example_id in seen:
            continue
        seen.add(example_id)
        if record.status != "ok" or not isinstance(record.caption, str):
            result.skip(example_id, "failed_caption")
            continue
        if example_id not in originals.sources:
            result.skip(example_id, "no_image")
            continue
        size = originals.size(example_id)
        if size is None:
            result.skip(example_id, "unreadable_image")
            continue
        try:
            layout = layout_from_record(
                record, image_size=size, dialect=dialect, mode=canvas_mode, **layout_options
            )
        except LayoutError as exc:
            result.skip(example_id, "empty_caption", str(exc))
            continue
        image_seed = example_seed(seed, example_id)
        redraw_key = key(signature, image_seed, layout.to_dict())
        previous = done.get(example_id)
        if previous is not None and previous.get("key") == redraw_key and redraw_intact(result.folder, previous):
            result.kept.append((example_id, layout, redraw_key))
            continue
        if (recorded or {}).get(example_id) == redraw_key:
            log.warning("%s: the redraw of %s is missing or cut; drawn again", result.folder, example_id)
            result.repaired += 1
        result.todo.append((layout, image_seed, redraw_key))
        result.kept.append((example_id, layout, redraw_key))
    result.records = len(seen)
    return result


def redraw_intact(folder: Path, entry: Mapping[str, Any]) -> bool:
    """Whether the redraw a layouts line names is there, whole: the size it was written with (a line of an older
    run without one: the file decodes)."""
    from pancap_retrieval.artifacts import image_is_whole

    png = folder / str(entry.get("image"))
    try:
        size = png.stat().st_size
    except OSError:
        return False
    if "bytes" in entry:
        return size == entry["bytes"]
    return size > 0 and image_is_whole(png)


# ---------------------------------------------------------------- redraw


def redraw(planned: Plan, drawer: Redrawer, batch: int, progress: bool = True, ranks: Ranks | None = None) -> float:
    """Draw the planned redraws in batches; each PNG is written atomically, then its layouts line. Seconds.

    Under a launcher each rank draws its share into its own ``layouts.jsonl.rankR``, merged by rank 0 afterwards.
    """
    from tqdm.auto import tqdm

    ranks = ranks or Ranks()
    name = "layouts.jsonl" if ranks.world == 1 else f"layouts.jsonl.rank{ranks.rank}"
    layouts = JsonlStore(planned.folder / name)
    manifest = drawer.manifest()
    started = time.perf_counter()
    todo = ranks.share(planned.todo)
    progress = progress and ranks.main
    bar = tqdm(total=len(todo), desc=f"redraw {planned.captioner}", unit="img", disable=not progress or not todo)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        images = drawer.redraw([layout for layout, _, _ in chunk], [s for _, s, _ in chunk])
        for (layout, image_seed, redraw_key), image in zip(chunk, images):
            name = file_name(layout.example_id)
            png = save_image(image, planned.folder / f"{name}.png")
            layouts.append(
                {
                    "example_id": layout.example_id,
                    "image": f"{name}.png",
                    "bytes": png.stat().st_size,
                    "seed": image_seed,
                    "redrawer": manifest.get("name"),
                    "key": redraw_key,
                    "layout": layout.to_dict(),
                }
            )
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - started
    ranks.barrier()
    if ranks.main:
        merge_rank_layouts(planned.folder)
    ranks.barrier()
    return seconds


def merge_rank_layouts(folder: Path) -> None:
    """Append the lines of every ``layouts.jsonl.rankR`` (a distributed run's, perhaps killed) to ``layouts.jsonl``."""
    store = JsonlStore(folder / "layouts.jsonl")
    for rank_file in sorted(folder.glob("layouts.jsonl.rank*")):
        store.append_many(list(JsonlStore(rank_file).read()))
        rank_file.unlink()


def _entry(planned: Plan, seconds: float) -> dict[str, Any]:
    layouts = [layout for _, layout, _ in planned.kept]
    return {
        "records": planned.records,
        "redrawn": len(planned.todo),
        "reused": len(planned.kept) - len(planned.todo),
        "redraw_keys": {example_id: redraw_key for example_id, _, redraw_key in planned.kept},
        "skipped": planned.skipped,
        "skipped_ids": dict(list(planned.skipped_ids.items())[:50]),
        "text_only": sum(layout.is_text_only for layout in layouts),
        "boxes": sum(len(layout.boxes) for layout in layouts),
        "layout_changes": {k: sum(layout.counts.get(k, 0) for layout in layouts) for k in COUNT_KEYS},
        "redraw_seconds": round(seconds, 3),
        "images_per_second": round(len(planned.todo) / seconds, 3) if planned.todo and seconds > 0 else None,
    }


# ---------------------------------------------------------------- the stage


def _build_redrawer(
    redrawer: str | Redrawer, model: str | None, steps: int | None, device: str | None, options: Mapping[str, Any]
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
    summary: RunSummary | None = None,
    dialects: Mapping[str, str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Redraw every caption of every captioner and score the redraws against the originals.

    ``captions``: captioner name -> its caption records. ``dataset``: a pancap ``datasets.Dataset``, a dataset
    spec (``"sample"``), rows with ``example_id`` and ``image``, or a mapping id -> image. ``redrawer``: a
    registered name (``sketch``, ``gligen``, ``text2image``) built with ``model``, ``steps`` (diffusion
    redrawers; the sketch has none) and ``redrawer_options`` plus any other keyword (``guidance_scale=``,
    ``canvas_size=``, ``dtype=``, ...), or a redrawer object. ``detector``: ``"auto"`` (the packaged CenterNet),
    None (no adherence scores) or an object with ``detect``. ``summary``: a
    :class:`~pancap_retrieval.pipeline.RunSummary` that gets one entry per stage. ``dialects``: captioner name ->
    the box dialect of its captions (:func:`~pancap_retrieval.captions.store.store_dialect`; ``auto`` for a
    captioner not named). Writes the files listed in the
    module docstring; returns what ``reconstruction.json`` holds.
    """
    run_dir = Path(run_dir)
    sources = _image_source(dataset)
    check_distinct_names(list(sources))
    check_distinct_names(list(captions))
    if canvas_mode not in CANVAS_MODES:
        raise PancapError(f"canvas_mode must be one of {', '.join(CANVAS_MODES)}, not {canvas_mode!r}")
    all_options = {**(redrawer_options or {}), **options}
    dialects = {name: (dialects or {}).get(name, "auto") for name in captions}
    digests = _image_digests(dataset, sources)
    wanted = _stage_key(redrawer, model, steps, all_options, seed, canvas_mode, captions, digests, scores, detector)
    wanted = key(wanted, dialects) if wanted is not None else None  # the same captions read in another dialect
    ranks = Ranks.current()
    previous = _previous(run_dir, ranks)
    originals = Originals(run_dir, sources, digests, None if ranks.world == 1 else ranks.rank)
    if wanted and previous.get("stage_key") == wanted and _files_present(run_dir, previous, originals):
        with _stage(summary, "reconstruct (all reused)") as entry:
            entry["reused"] = sum(c.get("redrawn", 0) + c.get("reused", 0) for c in previous["captioners"].values())
        return previous
    drawer = _build_redrawer(redrawer, model, steps, device, all_options)
    manifest = drawer.manifest()
    signature = key(manifest, canvas_mode)
    batch = batch_size or drawer.default_batch_size
    if batch < 1:
        raise PancapError(f"batch_size must be >= 1, got {batch}")
    results: dict[str, Any] = {
        "redrawer": manifest,
        "redrawer_signature": signature,
        "seed": seed,
        "canvas_mode": canvas_mode,
        "captioners": {},
    }
    plans = {}
    for captioner, records in captions.items():
        with _stage(summary, f"redraw {captioner}") as entry:
            repaired = originals.repaired
            recorded = (previous.get("captioners", {}).get(captioner) or {}).get("redraw_keys")
            plans[captioner] = planned = plan(
                captioner, records, run_dir, originals, drawer.layout_options(), signature, seed, canvas_mode,
                progress and ranks.main, dialect=dialects[captioner], recorded=recorded,
            )  # fmt: skip
            results["captioners"][captioner] = _entry(planned, redraw(planned, drawer, batch, progress, ranks))
            entry.update(done=len(planned.todo), reused=results["captioners"][captioner]["reused"])
            entry.update(skipped=sum(planned.skipped.values()), repaired=planned.repaired + originals.repaired - repaired)
    if scores:
        score(
            run_dir, results, plans, originals, detector, device, kid_subset_size, seed, previous, summary, ranks, progress
        )
    if originals.bad:
        results["unreadable_images"] = dict(list(originals.bad.items())[:50])
    results["stage_key"] = wanted
    if ranks.main:
        _write_results(run_dir / RESULTS_FILE, results, previous)
    return results


def _previous(run_dir: Path, ranks: Ranks) -> dict[str, Any]:
    """What an earlier run left: its results (``{}`` when missing or broken), with the layout lines that ranks of a
    killed distributed run drew merged in first."""
    if ranks.main:
        for folder in (run_dir / "images").glob("*"):
            merge_rank_layouts(folder)
    ranks.barrier()
    return read_json(run_dir / RESULTS_FILE) or {}


def reconstruct_spec(
    run_dir: str | Path,
    captions: Mapping[str, Sequence[CaptionRecord]],
    dataset: Any,
    spec: Any,
    seed: int = 0,
    summary: RunSummary | None = None,
    dialects: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """:func:`reconstruct_run` of a :class:`~pancap_retrieval.suite.ReconstructionSpec`."""
    return reconstruct_run(
        run_dir, captions, dataset, spec.redrawer, spec.model, seed,
        steps=spec.steps, scores=spec.scores, summary=summary, dialects=dialects, **spec.options,
    )  # fmt: skip


def _image_digests(dataset: Any, sources: Mapping[str, Any]) -> dict[str, str]:
    """example_id -> sha256 of its image's bytes (of a dataset's files through the hash cache: an unchanged file is
    not read again)."""
    from pancap_retrieval.data import image_digests, row_digests

    if hasattr(dataset, "column_names") and "image" in dataset.column_names:
        return {example_id: image for example_id, (image, _) in row_digests(dataset).items()}
    ids = list(sources)
    return dict(zip(ids, image_digests([sources[i].get("image") for i in ids])))


def _stage_key(redrawer, model, steps, options, seed, canvas_mode, captions, digests, scores, detector) -> str | None:
    """The key of the whole stage, or None when it cannot be known (a redrawer or detector object). The image
    bytes are in it, and the pixel limit: an image that could not be read is tried again once either changes."""
    from pancap_retrieval.data import max_image_pixels

    if not isinstance(redrawer, str) or not (detector is None or detector == "auto"):
        return None
    caption_keys = {
        name: key([(r.example_id, r.status, r.caption, r.stages) for r in records])
        for name, records in captions.items()
    }
    return key(
        SCORES_VERSION, redrawer, model, path_fingerprint(model), steps, options, seed, canvas_mode,
        caption_keys, sorted(digests.items()), scores, detector, max_image_pixels(),
    )  # fmt: skip


def _files_present(run_dir: Path, results: Mapping[str, Any], originals: Originals) -> bool:
    """Whether every redraw and original that ``results`` show is on disk, whole, with its layouts line: checked
    against the sizes they were written with, so a cut file or line sends the stage through its plan again
    (which makes just what is broken)."""
    for captioner, entry in results.get("captioners", {}).items():
        folder = run_dir / "images" / file_name(captioner)
        layouts = read_layouts(folder / "layouts.jsonl")
        kept = entry.get("redraw_keys")
        if not isinstance(kept, dict):
            return False  # written before redraws were recorded: plan again
        for example_id, redraw_key in kept.items():
            line = layouts.get(example_id)
            if line is None or line.get("key") != redraw_key or not redraw_intact(folder, line):
                log.warning("%s: a redraw of %s is missing or cut; it is drawn again", folder, example_id)
                return False
            if not originals.have(example_id):
                log.warning("%s: missing or cut; it is made again", originals.path(example_id))
                return False
    return True


def _stage(summary: RunSummary | None, name: str) -> AbstractContextManager[dict[str, Any]]:
    return nullcontext({}) if summary is None else summary.stage(name)


def _write_results(path: Path, results: dict[str, Any], previous: Mapping[str, Any]) -> None:
    """Write the results; captioners of an earlier run with the same redrawer and seed that this run did not
    touch are kept, so captioners can be added one at a time."""
    merged = dict(results)
    same = previous.get("redrawer_signature") == results["redrawer_signature"]
    if same and previous.get("seed") == results["seed"]:
        kept = {k: v for k, v in previous.get("captioners", {}).items() if k not in results["captioners"]}
        merged["captioners"] = {**kept, **results["captioners"]}
    write_json(path, merged)


# ---------------------------------------------------------------- score


def _default_detector() -> tuple[Any, str | None]:
    try:
        from pancap_retrieval.detection import Detector

        return Detector(score_threshold=0.3), None
    except (ImportError, ModelLoadError) as exc:
        return None, f"detector unavailable: {exc}"


class _Scorers:
    """The Inception network and the detector, loaded on first use and shared by every captioner."""

    def __init__(self, detector: Any, device: str | None) -> None:
        self._detector, self.device = detector, device
        self._features: Any = None
        self.reason: str | None = None
        self.original_dets: dict[str, Any] = {}
        self.original_feats: dict[str, Any] = {}

    @property
    def features(self) -> Any:
        if self._features is None:
            from reconstruct.fidelity import InceptionFeatures

            log.info("loading the FID Inception network (fidelity scores)")
            self._features = InceptionFeatures(device=self.device)
        return self._features

    @property
    def detector(self) -> Any:
        if isinstance(self._detector, str) and self._detector == "auto":
            self._detector, self.reason = _default_detector()
        return self._detector

    def add_originals(self, ids: list[str], originals: Originals) -> None:
        """Features (and detections) of the full originals not seen yet, computed once for every captioner."""
        missing = [i for i in ids if i not in self.original_feats]
        if not missing:
            return
        images = [originals.image(i) for i in missing]
        self.original_feats.update(zip(missing, self.features(images)))
        if self.detector is not None:
            self.original_dets.update(zip(missing, self.detector.detect(images)))

    def original(self, example_id: str) -> tuple[Any, Any]:
        """(features, detections or None) of an original added before."""
        return self.original_feats[example_id], self.original_dets.get(example_id)


def score(
    run_dir: Path,
    results: dict[str, Any],
    plans: Mapping[str, Plan],
    originals: Originals,
    detector: Any,
    device: str | None,
    kid_subset_size: int,
    seed: int,
    previous: Mapping[str, Any],
    summary: RunSummary | None = None,
    ranks: Ranks | None = None,
    progress: bool = False,
) -> None:
    """Fidelity scores per captioner, reused when the same redraws were scored before with the same scorers."""
    ranks = ranks or Ranks()
    scorers = _Scorers(detector, device)
    detector_name = "auto" if isinstance(detector, str) else (None if detector is None else type(detector).__name__)
    for captioner, planned in plans.items():
        entry = results["captioners"][captioner]
        kept = [(i, k, originals.digests.get(i)) for i, _, k in planned.kept]
        score_key = key(SCORES_VERSION, kept, detector_name, kid_subset_size, seed)
        old = previous.get("captioners", {}).get(captioner, {})
        with _stage(summary, f"score {captioner}") as stage:
            if old.get("score_key") == score_key and "scores" in old:
                entry.update(scores=old["scores"], per_image=old.get("per_image", {}), score_key=score_key)
                stage["reused"] = len(planned.kept)
                continue
            _score_one(entry, planned, originals, scorers, kid_subset_size, seed, ranks, progress)
            entry["score_key"] = score_key
            stage["done"] = len(planned.kept)


SCORE_CHUNK = 64  # images decoded at a time while scoring: memory stays bounded at any dataset size


def _score_one(
    entry: dict[str, Any],
    planned: Plan,
    originals: Originals,
    scorers: _Scorers,
    kid_subset_size: int,
    seed: int,
    ranks: Ranks,
    progress: bool = False,
) -> None:
    """Features and detections of originals and redraws, each rank its share in chunks of :data:`SCORE_CHUNK`,
    gathered on every rank; then the scores. With ``progress`` rank 0 shows a bar of its share."""
    import numpy as np
    from tqdm.auto import tqdm

    from reconstruct.fidelity import scores_from_features

    if not planned.kept:
        entry["scores"] = {"n_pairs": 0, "note": "no redraw to score"}
        return
    ids = [example_id for example_id, _, _ in planned.kept]
    layouts = [layout for _, layout, _ in planned.kept]
    detector = scorers.detector
    mine: dict[str, tuple[Any, Any]] = {}  # id -> (redraw features, redraw detections)
    share = ranks.share(list(zip(ids, layouts)))
    bar = tqdm(total=len(share), desc=f"score {planned.captioner}", unit="img", disable=not (progress and ranks.main))
    for start in range(0, len(share), SCORE_CHUNK):
        chunk = share[start : start + SCORE_CHUNK]
        scorers.add_originals([i for i, _ in chunk], originals)
        crops = [_redraw_crop(planned.folder, example_id, layout) for example_id, layout in chunk]
        dets = detector.detect(crops) if detector is not None else [None] * len(crops)
        mine.update({i: (f, d) for (i, _), f, d in zip(chunk, scorers.features(crops), dets)})
        bar.update(len(chunk))
    bar.close()
    found: dict[str, tuple[Any, ...]] = {}
    for part in ranks.gather({i: (*mine[i], *scorers.original(i)) for i in mine}):
        found.update(part)
    scores = scores_from_features(
        np.stack([found[i][2] for i in ids]),
        np.stack([found[i][0] for i in ids]),
        layouts,
        feature_manifest=scorers.features.manifest(),
        redraw_detections=[found[i][1] for i in ids] if detector is not None else None,
        original_detections=[found[i][3] for i in ids] if detector is not None else None,
        detector_manifest=detector.manifest() if hasattr(detector, "manifest") else None,
        kid_subset_size=kid_subset_size,
        seed=seed,
    )
    entry["per_image"] = _per_image(ids, planned, scores)
    entry["scores"] = scores
    if scorers.reason:
        entry["scores"]["adherence"] = {"skipped": scorers.reason}


def _redraw_crop(folder: Path, example_id: str, layout: Layout) -> Image.Image:
    from PIL import Image

    from reconstruct.fidelity import content_crop

    with Image.open(folder / f"{file_name(example_id)}.png") as image:
        return content_crop(image.convert("RGB"), layout)


def _per_image(ids: list[str], planned: Plan, scores: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """example_id -> cosine, boxes and the share of boxes re-found on the redraw; the lists leave ``scores``."""
    cosines = scores.pop("per_image", {}).get("cosine", [None] * len(ids))
    adherence = scores.get("adherence", {})
    refound = adherence.get("redraw", {}).pop("per_image", [None] * len(ids)) if "redraw" in adherence else None
    if "original" in adherence:
        adherence["original"].pop("per_image", None)
    refound = refound or [None] * len(ids)
    return {
        example_id: {"cosine": cosine, "boxes": len(layout.boxes), "boxes_refound": found}
        for example_id, cosine, found, (_, layout, _) in zip(ids, cosines, refound, planned.kept)
    }
