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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.artifacts import (
    check_distinct_names,
    file_name,
    key,
    path_fingerprint,
    read_json,
    write_json,
)
from pancap_retrieval.errors import PancapError
from pancap_retrieval.ranks import Ranks
from pancap_retrieval.runs import RunSummary
from reconstruct.layout import CANVAS_MODES
from reconstruct.originals import ORIGINAL_MAX_SIDE, Originals, image_digests, image_source
from reconstruct.plan import Plan, plan, read_layouts, redraw_intact
from reconstruct.redraw import build_redrawer, merge_rank_layouts, redraw, redraw_entry
from reconstruct.redrawers import REDRAWERS
from reconstruct.score import SCORES_VERSION, ScoreInputs, score, summary_stage

if TYPE_CHECKING:
    from pancap_retrieval.captions.store import CaptionRecord
    from reconstruct.redrawers.base import Redrawer

__all__ = [
    "ORIGINAL_MAX_SIDE",
    "RESULTS_FILE",
    "RUN_OPTIONS",
    "SCORES_VERSION",
    "Originals",
    "Plan",
    "RedrawJob",
    "StageKey",
    "check_redrawer",
    "plan",
    "read_layouts",
    "reconstruct_run",
    "reconstruct_spec",
    "redraw",
    "safe_name",
    "score",
]

log = logging.getLogger(__name__)

RESULTS_FILE = "reconstruction.json"
safe_name = file_name  # the one file-name rule, under the name the gallery uses
# Options of a suite's reconstruction that belong to the run, not to the redrawer.
RUN_OPTIONS = frozenset({"canvas_mode", "batch_size", "kid_subset_size", "device"})


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


@dataclass(frozen=True)
class StageKey:
    """What the whole stage's key is made of: a rerun with the same key and every file in place loads no model."""

    redrawer: str | Redrawer
    model: str | None
    steps: int | None
    options: Mapping[str, Any]  # the redrawer's options
    seed: int
    canvas_mode: str
    captions: Mapping[str, Sequence[CaptionRecord]]
    digests: Mapping[str, str]  # example_id -> sha256 of its image's bytes
    scores: bool
    detector: Any

    def key(self, dialects: Mapping[str, str] | None = None) -> str | None:
        """The key, or None when it cannot be known (a redrawer or detector object). The image bytes are in it, and
        the pixel limit: an image that could not be read is tried again once either changes. With ``dialects``
        (captioner -> box dialect) the same captions read in another dialect have another key."""
        from pancap_retrieval.data import max_image_pixels

        detector = self.detector
        if not isinstance(self.redrawer, str) or not (detector is None or detector == "auto"):
            return None
        caption_keys = {
            name: key([(r.example_id, r.status, r.caption, r.stages) for r in records])
            for name, records in self.captions.items()
        }
        stage = key(
            SCORES_VERSION, self.redrawer, self.model, path_fingerprint(self.model), self.steps, self.options,
            self.seed, self.canvas_mode, caption_keys, sorted(self.digests.items()), self.scores, detector,
            max_image_pixels(),
        )  # fmt: skip
        return stage if dialects is None else key(stage, dialects)


@dataclass(frozen=True)
class RedrawJob:
    """The settings every captioner's plan and redraw share."""

    run_dir: Path
    originals: Originals
    drawer: Redrawer
    seed: int
    canvas_mode: str
    batch_size: int | None
    previous: Mapping[str, Any]  # what the last run's reconstruction.json held
    summary: RunSummary | None
    ranks: Ranks
    progress: bool


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
    sources = image_source(dataset)
    _check_inputs(sources, captions, canvas_mode)
    all_options = {**(redrawer_options or {}), **options}
    dialects = {name: (dialects or {}).get(name, "auto") for name in captions}
    digests = image_digests(dataset, sources)
    stage = StageKey(redrawer, model, steps, all_options, seed, canvas_mode, captions, digests, scores, detector)
    wanted = stage.key(dialects)
    ranks = Ranks.current()
    previous = _previous(run_dir, ranks)
    originals = Originals(run_dir, sources, digests, None if ranks.world == 1 else ranks.rank)
    if wanted and previous.get("stage_key") == wanted and _files_present(run_dir, previous, originals):
        return _all_reused(previous, summary)
    drawer = build_redrawer(redrawer, model, steps, device, all_options)
    job = RedrawJob(run_dir, originals, drawer, seed, canvas_mode, batch_size, previous, summary, ranks, progress)
    results, plans = _redraw_all(job, captions, dialects)
    if scores:
        inputs = ScoreInputs(plans, originals, detector, device, kid_subset_size, seed, previous, summary, ranks, progress)
        for captioner, added in score(inputs).items():
            results["captioners"][captioner].update(added)
    if originals.bad:
        results["unreadable_images"] = dict(list(originals.bad.items())[:50])
    results["stage_key"] = wanted
    if ranks.main:
        _write_results(run_dir / RESULTS_FILE, results, previous)
    return results


def _check_inputs(sources: Mapping[str, Any], captions: Mapping[str, Any], canvas_mode: str) -> None:
    check_distinct_names(list(sources))
    check_distinct_names(list(captions))
    if canvas_mode not in CANVAS_MODES:
        raise PancapError(f"canvas_mode must be one of {', '.join(CANVAS_MODES)}, not {canvas_mode!r}")


def _all_reused(previous: dict[str, Any], summary: RunSummary | None) -> dict[str, Any]:
    with summary_stage(summary, "reconstruct (all reused)") as entry:
        entry["reused"] = sum(c.get("redrawn", 0) + c.get("reused", 0) for c in previous["captioners"].values())
    return previous


def _redraw_all(
    job: RedrawJob, captions: Mapping[str, Sequence[CaptionRecord]], dialects: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Plan]]:
    """Plan and draw every captioner's redraws: the results so far (no scores yet) and the plans."""
    manifest = job.drawer.manifest()
    signature = key(manifest, job.canvas_mode)
    batch = job.batch_size or job.drawer.default_batch_size
    if batch < 1:
        raise PancapError(f"batch_size must be >= 1, got {batch}")
    results: dict[str, Any] = {
        "redrawer": manifest,
        "redrawer_signature": signature,
        "seed": job.seed,
        "canvas_mode": job.canvas_mode,
        "captioners": {},
    }
    plans = {}
    originals = job.originals
    for captioner, records in captions.items():
        with summary_stage(job.summary, f"redraw {captioner}") as entry:
            repaired = originals.repaired
            recorded = (job.previous.get("captioners", {}).get(captioner) or {}).get("redraw_keys")
            plans[captioner] = planned = plan(
                captioner, records, run_dir=job.run_dir, originals=originals, layout_options=job.drawer.layout_options(),
                signature=signature, seed=job.seed, canvas_mode=job.canvas_mode, progress=job.progress and job.ranks.main,
                dialect=dialects[captioner], recorded=recorded,
            )  # fmt: skip
            seconds = redraw(planned, job.drawer, batch, job.progress, job.ranks)
            results["captioners"][captioner] = redraw_entry(planned, seconds)
            entry.update(done=len(planned.todo), reused=results["captioners"][captioner]["reused"])
            entry.update(skipped=sum(planned.skipped.values()), repaired=planned.repaired + originals.repaired - repaired)
    return results, plans


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


def _write_results(path: Path, results: dict[str, Any], previous: Mapping[str, Any]) -> None:
    """Write the results; captioners of an earlier run with the same redrawer and seed that this run did not
    touch are kept, so captioners can be added one at a time."""
    merged = dict(results)
    same = previous.get("redrawer_signature") == results["redrawer_signature"]
    if same and previous.get("seed") == results["seed"]:
        kept = {k: v for k, v in previous.get("captioners", {}).items() if k not in results["captioners"]}
        merged["captioners"] = {**kept, **results["captioners"]}
    write_json(path, merged)
