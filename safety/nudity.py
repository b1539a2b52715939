"""Nudity detection with NudeNet's YOLOv8n model (320n.onnx, AGPL-3.0) through onnxruntime.

Our own pre-processing (RGB, centred letterbox to 320 with YOLO's grey 114) and
post-processing (decode the [4 box + 18 class] x 2100 anchors, class-wise NMS); NudeNet's
own NudeDetector is not used.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inference import onnx_session
from safety.decision import CheckResult, judge
from safety.policy import NUDENET_CLASSES, Policy

LABELS = NUDENET_CLASSES
INPUT_SIZE = 320
MODEL_FILE = "nudenet_320n.onnx"
_MIN_SCORE = 0.2  # candidates below this are dropped before NMS (NudeNet uses the same)
_NMS_IOU = 0.45


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in input-image pixels


def shipped_model() -> Path:
    """The 320n.onnx inside the installed nudenet package (found without importing it)."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nudenet package (which ships 320n.onnx) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "320n.onnx"


def install_model(out_dir: Path) -> Path:
    """Copy the shipped model into the model dir so a deployment needs only that dir."""
    dst = out_dir / MODEL_FILE
    shutil.copyfile(shipped_model(), dst)
    return dst


def letterbox(rgb: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, float, int, int]:
    """Scale to fit size x size keeping aspect, pad centred with grey 114 (as YOLOv8 trains).

    Returns the (1, 3, size, size) float32 blob in [0, 1], the scale, and the x, y padding.
    """
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    # INTER_AREA averages away the aliasing a 12 MP -> 320 px shrink would otherwise add.
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (nw, nh), interpolation=interp)
    canvas = np.full((size, size, 3), 114, dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py : py + nh, px : px + nw] = small
    blob = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return blob, scale, px, py


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression over (N, 4) x0y0x1y1 boxes; indices kept, best first."""
    order = np.argsort(-scores)
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx1 - xx0).clip(0) * (yy1 - yy0).clip(0)
        overlap = inter / (area[i] + area[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return keep


def decode(
    output: np.ndarray, scale: float, pad_x: int, pad_y: int, width: int, height: int
) -> list[Detection]:
    """YOLOv8 head output (22, A) -> detections in original image pixels, class-wise NMS."""
    preds = output.T  # (A, 4 + classes): cx, cy, w, h in letterboxed pixels, then class probs
    cls_scores = preds[:, 4:]
    cls = cls_scores.argmax(axis=1)
    conf = cls_scores[np.arange(len(preds)), cls]
    mask = conf >= _MIN_SCORE
    if not mask.any():
        return []
    cx, cy, bw, bh = preds[mask, :4].T
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    boxes = (boxes - [pad_x, pad_y, pad_x, pad_y]) / scale
    boxes = boxes.clip(0, [width, height, width, height])
    conf, cls = conf[mask], cls[mask]
    detections: list[Detection] = []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        for k in nms(boxes[idx], conf[idx], _NMS_IOU):
            j = idx[k]
            detections.append(
                Detection(LABELS[int(c)], float(conf[j]), tuple(float(v) for v in boxes[j]))
            )
    detections.sort(key=lambda d: -d.score)
    return detections


class NudityDetector:
    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        path = Path(model_dir) / MODEL_FILE
        if not path.exists():  # a model dir built before this file was copied in
            path = shipped_model()
        self._session = onnx_session(path, threads)
        self._input = self._session.get_inputs()[0].name

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        if not images:
            return []
        prepared = [letterbox(im) for im in images]
        blob = np.concatenate([p[0] for p in prepared])
        (out,) = self._session.run(None, {self._input: blob})
        return [
            decode(out[i], scale, px, py, im.shape[1], im.shape[0])
            for i, (im, (_, scale, px, py)) in enumerate(zip(images, prepared, strict=True))
        ]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self.detect_batch([rgb])[0]


def class_scores(detections: list[Detection]) -> dict[str, float]:
    """Highest score per NudeNet class (absent classes are 0)."""
    scores = dict.fromkeys(LABELS, 0.0)
    for d in detections:
        scores[d.label] = max(scores[d.label], d.score)
    return scores


def nudity_result(
    detections: list[Detection], policy: Policy, check: str = "nudity"
) -> CheckResult:
    """Apply the policy's class -> category thresholds to a detection list."""
    scores = class_scores(detections)
    hits = sorted(
        (r for r in policy.nudity_rules if scores.get(r.label, 0.0) >= r.threshold),
        key=lambda r: -scores[r.label],
    )
    # Severity first (block before review), then score, so the recorded category is the worst.
    hits.sort(key=lambda r: policy.action(r.category) != "block")
    mapped = [r for r in policy.nudity_rules if scores.get(r.label, 0.0) > 0.0]
    top = max(mapped, key=lambda r: scores[r.label]).category if mapped else None
    return judge(check, policy, [r.category for r in hits], scores, top)
