"""The fidelity scores of each captioner's redraws against the originals, reused when the same redraws of the same
original bytes were scored before with the same scorers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.artifacts import file_name, key
from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.ranks import Ranks
from pancap_retrieval.runs import RunSummary
from reconstruct.layout import Layout
from reconstruct.originals import Originals
from reconstruct.plan import Plan

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

# Bumped when the fidelity scores change meaning, so a rerun scores again rather than reusing old scores.
SCORES_VERSION = 2


def summary_stage(summary: RunSummary | None, name: str) -> AbstractContextManager[dict[str, Any]]:
    """The entry of stage ``name`` in ``summary`` (a throwaway dict without one)."""
    return nullcontext({}) if summary is None else summary.stage(name)


def default_detector() -> tuple[Any, str | None]:
    try:
        from pancap_retrieval.detection import Detector

        return Detector(score_threshold=0.3), None
    except (ImportError, ModelLoadError) as exc:
        return None, f"detector unavailable: {exc}"


class Scorers:
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
            self._detector, self.reason = default_detector()
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


@dataclass(frozen=True)
class ScoreInputs:
    """What :func:`score` reads: each captioner's plan, the originals, the scorers' settings and the last results."""

    plans: Mapping[str, Plan]
    originals: Originals
    detector: Any  # "auto" (the packaged CenterNet), None (no adherence scores) or an object with ``detect``
    device: str | None
    kid_subset_size: int
    seed: int
    previous: Mapping[str, Any]  # what the last run's reconstruction.json held
    summary: RunSummary | None = None
    ranks: Ranks | None = None
    progress: bool = False


def score(inputs: ScoreInputs) -> dict[str, dict[str, Any]]:
    """Fidelity scores per captioner, reused when the same redraws were scored before with the same scorers:
    captioner -> the keys its results entry gains (``scores``, ``per_image`` when there are redraws, ``score_key``).
    """
    scorers = Scorers(inputs.detector, inputs.device)
    detector = inputs.detector
    detector_name = "auto" if isinstance(detector, str) else (None if detector is None else type(detector).__name__)
    added: dict[str, dict[str, Any]] = {}
    for captioner, planned in inputs.plans.items():
        kept = [(i, k, inputs.originals.digests.get(i)) for i, _, k in planned.kept]
        score_key = key(SCORES_VERSION, kept, detector_name, inputs.kid_subset_size, inputs.seed)
        old = inputs.previous.get("captioners", {}).get(captioner, {})
        with summary_stage(inputs.summary, f"score {captioner}") as stage:
            if old.get("score_key") == score_key and "scores" in old:
                reused = {"scores": old["scores"], "per_image": old.get("per_image", {})}
                added[captioner] = {**reused, "score_key": score_key}
                stage["reused"] = len(planned.kept)
                continue
            added[captioner] = {**score_one(inputs, planned, scorers), "score_key": score_key}
            stage["done"] = len(planned.kept)
    return added


SCORE_CHUNK = 64  # images decoded at a time while scoring: memory stays bounded at any dataset size


def score_one(inputs: ScoreInputs, planned: Plan, scorers: Scorers) -> dict[str, Any]:
    """Features and detections of originals and redraws, each rank its share in chunks of :data:`SCORE_CHUNK`,
    gathered on every rank; then the scores. With ``progress`` rank 0 shows a bar of its share."""
    import numpy as np
    from tqdm.auto import tqdm

    from reconstruct.fidelity import scores_from_features

    if not planned.kept:
        return {"scores": {"n_pairs": 0, "note": "no redraw to score"}}
    originals, ranks, progress = inputs.originals, inputs.ranks or Ranks(), inputs.progress
    ids = [example_id for example_id, _, _ in planned.kept]
    layouts = [layout for _, layout, _ in planned.kept]
    detector = scorers.detector
    mine: dict[str, tuple[Any, Any]] = {}  # id -> (redraw features, redraw detections)
    share = ranks.share(list(zip(ids, layouts)))
    bar = tqdm(total=len(share), desc=f"score {planned.captioner}", unit="img", disable=not (progress and ranks.main))
    for start in range(0, len(share), SCORE_CHUNK):
        chunk = share[start : start + SCORE_CHUNK]
        scorers.add_originals([i for i, _ in chunk], originals)
        crops = [redraw_crop(planned.folder, example_id, layout) for example_id, layout in chunk]
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
        kid_subset_size=inputs.kid_subset_size,
        seed=inputs.seed,
    )
    entry = {"per_image": per_image(ids, planned, scores), "scores": scores}
    if scorers.reason:
        entry["scores"]["adherence"] = {"skipped": scorers.reason}
    return entry


def redraw_crop(folder: Path, example_id: str, layout: Layout) -> Image.Image:
    from PIL import Image

    from reconstruct.fidelity import content_crop

    with Image.open(folder / f"{file_name(example_id)}.png") as image:
        return content_crop(image.convert("RGB"), layout)


def per_image(ids: list[str], planned: Plan, scores: dict[str, Any]) -> dict[str, dict[str, Any]]:
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
