"""The packaged COCO-80 object detector (MobileNetV3-CenterNet, ONNX) run with onnxruntime.

The network takes one 512x512 RGB image (0..255, no normalisation) and returns 100 candidate boxes in the
512x512 input's pixels with a score and a 0-based COCO-80 class id. The image is letterboxed into the square
(aspect ratio kept, centred on black) and the boxes are mapped back to the original image. It has no NMS inside, so the same object can
come back twice or under two classes (car/truck): :class:`Detector` filters by score, clamps, and applies
class-agnostic NMS in numpy.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pancap_retrieval.captions.boxes import Box
from pancap_retrieval.detection.coco import COCO80_NAMES
from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.loading import choose_device

MODEL_PATH = Path(__file__).resolve().parent / "centernet_coco80.onnx"
MODEL_SHA256 = "7260f7f0d54536b826b66605d921a7c3574a4505cb35a16b3e2f004bf9f68546"
INPUT_NAME = "tower_0/images:0"
OUTPUT_NAME = "tower_0/detections"
INPUT_SIZE = 512

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, cached per (path, size, mtime) so a model is hashed once per process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _SHA_LOCK:
        if key not in _SHA_CACHE:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            _SHA_CACHE[key] = digest.hexdigest()
        return _SHA_CACHE[key]


@dataclass(frozen=True)
class Detection:
    """One detected object: COCO category, score in [0, 1], box normalised to the original image."""

    label: str
    class_id: int
    score: float
    box: Box

    def to_dict(self, ndigits: int = 4) -> dict[str, Any]:
        return {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, ndigits),
            "box": self.box.as_list(ndigits),
        }


def to_rgb(image: Any) -> Any:
    """``image`` as an 8-bit RGB PIL image, whatever its mode (L, P, RGBA, I;16, F, ...); alpha is dropped.

    >>> from PIL import Image
    >>> to_rgb(Image.new("I;16", (1, 1), 65535)).getpixel((0, 0))
    (255, 255, 255)
    """
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image has no pixels ({image.width}x{image.height})")
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = float(np.nanmax(values)) if values.size else 0.0
        if top > 255:  # wide-range data: scale the maximum to white rather than clipping it all to white
            values = values * (255.0 / top)
        values = np.nan_to_num(values, nan=0.0)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy class-agnostic non-maximum suppression; indices kept, best score first (ties: lower index first).

    >>> b = np.array([[0, 0, 1, 1], [0, 0, 0.9, 1], [0.5, 0, 1, 1]], dtype=float)
    >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5)
    [0, 2]
    """
    if len(boxes) == 0:
        return []
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.lexsort((np.arange(len(scores)), -scores))
    keep: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        iw = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = iw * ih
        union = areas[best] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou_threshold]
    return keep


def default_providers(available: list[str]) -> list[str]:
    """CUDA first when onnxruntime has it, CPU always.

    >>> default_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CUDAExecutionProvider', 'CPUExecutionProvider']
    >>> default_providers(["AzureExecutionProvider", "CPUExecutionProvider"])
    ['CPUExecutionProvider']
    """
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + [
        "CPUExecutionProvider"
    ]


def on_gpu(providers: list[str], device_id: int) -> list[Any]:
    """The providers with the CUDA one pinned to GPU ``device_id`` (this process's, under a launcher).

    >>> on_gpu(["CUDAExecutionProvider", "CPUExecutionProvider"], 1)
    [('CUDAExecutionProvider', {'device_id': 1}), 'CPUExecutionProvider']
    """
    return [(p, {"device_id": device_id}) if p == "CUDAExecutionProvider" else p for p in providers]


class Detector:
    """COCO-80 object detector: ``Detector().detect([image, ...])`` -> detections per image, best first.

    ``model_path`` defaults to the packaged ``centernet_coco80.onnx``, whose sha256 is checked on load. Boxes are
    normalised xyxy of the original image, whatever its size and mode.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        score_threshold: float = 0.3,
        nms_iou: float = 0.5,
        providers: list[str] | None = None,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        packaged = model_path is None
        self.model_path = MODEL_PATH if packaged else Path(model_path)
        if not self.model_path.is_file():
            raise ModelLoadError(f"detector model not found: {self.model_path}")
        self.sha256 = file_sha256(self.model_path)
        if packaged and self.sha256 != MODEL_SHA256:
            raise ModelLoadError(
                f"packaged detector {self.model_path} has sha256 {self.sha256}, expected {MODEL_SHA256}: "
                "the file is damaged; reinstall pancap"
            )
        self.session = self._load(providers)
        self.providers = list(self.session.get_providers())

    def _load(self, providers: list[str] | None) -> Any:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if providers is None:
            providers = default_providers(available)
        missing = [p for p in providers if p not in available]
        if missing:
            raise ModelLoadError(
                f"onnxruntime has no {', '.join(missing)}; available: {', '.join(available)}"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # idle worker threads sleep instead of spinning, so numpy work between runs gets the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if "CUDAExecutionProvider" in providers:
            providers = on_gpu(providers, choose_device().index or 0)
        try:
            session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=providers)
        except Exception as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot load detector {self.model_path}: {message}") from None
        inputs = {i.name: i.shape for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise ModelLoadError(
                f"{self.model_path} is not the CenterNet COCO-80 detector: it needs input {INPUT_NAME!r} and "
                f"output {OUTPUT_NAME!r}, it has {sorted(inputs)} -> {sorted(outputs)}"
            )
        return session

    @staticmethod
    def preprocess(image: Any) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The network input of one image and where the image sits in it: ``(array, (left, top, width, height))``.

        The image is converted to RGB, resized (bilinear) so its long side is 512 and centred on a black 512x512
        square: float32 0..255, shape (1, 512, 512, 3). Keeping the aspect ratio matters: on skimage's chelsea a
        plain stretch to 512x512 scores the cat as a dog (0.47 vs cat 0.20); letterboxed it is a cat (0.52).
        """
        from PIL import Image

        rgb = to_rgb(image)
        scale = INPUT_SIZE / max(rgb.width, rgb.height)
        width = min(INPUT_SIZE, max(1, round(rgb.width * scale)))
        height = min(INPUT_SIZE, max(1, round(rgb.height * scale)))
        left, top = (INPUT_SIZE - width) // 2, (INPUT_SIZE - height) // 2
        canvas = Image.new("RGB", (INPUT_SIZE, INPUT_SIZE), (0, 0, 0))
        canvas.paste(rgb.resize((width, height), Image.Resampling.BILINEAR), (left, top))
        return np.asarray(canvas, dtype=np.float32)[None], (left, top, width, height)

    def postprocess(
        self, raw: np.ndarray, placement: tuple[int, int, int, int] = (0, 0, INPUT_SIZE, INPUT_SIZE)
    ) -> list[Detection]:
        """Detections from the network's (100, 6) output: threshold, map back to the image, clamp, drop empty
        boxes, NMS, sort. ``placement`` is where :meth:`preprocess` put the image in the input square."""
        left, top, width, height = placement
        raw = np.asarray(raw, dtype=np.float64).reshape(-1, 6)
        raw = raw[np.isfinite(raw).all(axis=1)]
        class_ids = np.rint(raw[:, 5]).astype(np.int64)
        offset = np.array([left, top, left, top], dtype=np.float64)
        size = np.array([width, height, width, height], dtype=np.float64)
        boxes = np.clip((raw[:, :4] - offset) / size, 0.0, 1.0)
        valid = (
            (raw[:, 4] >= self.score_threshold)
            & (class_ids >= 0)
            & (class_ids < len(COCO80_NAMES))
            & (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
        )
        boxes, scores, class_ids = boxes[valid], raw[valid, 4], class_ids[valid]
        keep = nms(boxes, scores, self.nms_iou)
        return [
            Detection(
                COCO80_NAMES[int(class_ids[i])],
                int(class_ids[i]),
                float(scores[i]),
                Box(*(float(v) for v in boxes[i])),
            )
            for i in keep
        ]

    def detect(self, images: list[Any]) -> list[list[Detection]]:
        """Detections of each image, sorted by score (best first). The network's batch is 1: images run in turn."""
        if not isinstance(images, (list, tuple)):
            raise ValueError("Detector.detect takes a list of images")
        results = []
        for image in images:
            array, placement = self.preprocess(image)
            (raw,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
            results.append(self.postprocess(raw[0], placement))
        return results

    def manifest(self) -> dict[str, Any]:
        """What a run records of this detector."""
        return {
            "model": self.model_path.name,
            "model_sha256": self.sha256,
            "score_threshold": self.score_threshold,
            "nms_iou": self.nms_iou,
            "providers": self.providers,
            "input_size": INPUT_SIZE,
            "resize": "letterbox-centred-black-bilinear",
        }
