"""Object detection for the offline captioner and for layout checks: the packaged COCO-80 CenterNet (ONNX)."""

from __future__ import annotations

from pancap_retrieval.detection.coco import COCO80_NAMES
from pancap_retrieval.detection.detector import MODEL_PATH, MODEL_SHA256, Detection, Detector, nms, to_rgb

__all__ = ["COCO80_NAMES", "MODEL_PATH", "MODEL_SHA256", "Detection", "Detector", "nms", "to_rgb"]
