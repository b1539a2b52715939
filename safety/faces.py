"""Find faces (box, 5 landmarks, score) in a photo with MTCNN on onnxruntime.

The safety stage records the faces; the motion model uses them (a slight smile). The nets are
facenet-pytorch's MTCNN weights, exported to ONNX by ``build()``; the cascade below is a numpy
port of facenet-pytorch's ``detect_face`` (same pyramid, thresholds, NMS and regressions) and
reproduces its boxes. Detection runs on a copy downscaled to ``max_side`` so that its cost does
not grow with the photo; boxes are mapped back to the caller's pixels.

Life of one call::

    rgb (HxWx3 uint8) --INTER_AREA--> work image (long side <= max_side)
      -> summed-area table (every later resize is an exact box average read from it)
      -> P-net over a pyramid (scale 12/min_face, x0.709 per level) -> candidates, NMS
      -> the best max_candidates (300; only textures like gravel raise more)
      -> R-net on 24x24 crops -> refined boxes, NMS
      -> O-net on 48x48 crops -> boxes, landmarks, score, NMS ("Min")
      -> Face(s) in the caller's pixel coordinates, best score first
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inference import onnx_session

log = logging.getLogger(__name__)

NET_FILES = ("pnet.onnx", "rnet.onnx", "onet.onnx")
PYRAMID_FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.7)
EXPORT_VERSION = 1  # bump when safety.mtcnn's export changes, so build() redoes old model dirs


@dataclass(frozen=True)
class Face:
    """One detected face. The box is clipped to the image; landmarks are not (a face cut by
    the frame can have a mouth corner outside it)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the image passed in
    # 5 (x, y): left eye, right eye, nose, mouth left, mouth right; "left" = image left
    landmarks: tuple[tuple[float, float], ...]
    score: float  # O-net probability


def build(out_dir: Path) -> None:
    """Export pnet.onnx, rnet.onnx, onet.onnx into ``out_dir``.

    Idempotent: skipped when the files exist and were exported by this export version from the
    same weight files (a stamp records both), so a changed wheel or exporter rebuilds.
    """
    stamp = out_dir / "faces.build.json"
    built = all((out_dir / n).is_file() for n in NET_FILES) and stamp.is_file()
    if built and importlib.util.find_spec("facenet_pytorch") is None:
        return  # a deployment without the build dependencies: trust what was built
    want = {"export_version": EXPORT_VERSION, "weights_sha256": _weights_digest()}
    if built and json.loads(stamp.read_text()) == want:
        return
    from safety.mtcnn import export_onnx  # torch is a build-time dependency only

    export_onnx(out_dir, weights_dir())
    stamp.write_text(json.dumps(want, indent=2))


def weights_dir() -> Path:
    """Where the facenet-pytorch wheel keeps its .pt files, found without importing it."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("facenet-pytorch is not installed (pip install --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _weights_digest() -> str:
    digest = hashlib.sha256()
    for name in NET_FILES:
        digest.update((weights_dir() / name.replace(".onnx", ".pt")).read_bytes())
    return digest.hexdigest()


class FaceDetector:
    """MTCNN face detector; thread-safe for concurrent ``detect`` calls (ORT sessions are)."""

    def __init__(
        self,
        model_dir: Path,
        min_face_px: int = 20,
        *,
        max_side: int = 640,
        threads: int = 1,
        thresholds: Sequence[float] = THRESHOLDS,
        max_candidates: int = 300,
    ) -> None:
        """``min_face_px`` counts pixels of the work image (after downscaling to ``max_side``)."""
        if min_face_px < 12:
            raise ValueError("min_face_px must be >= 12 (P-net's window)")
        self.min_face_px = min_face_px
        self.max_side = max_side
        self.thresholds = tuple(float(t) for t in thresholds)
        self.max_candidates = max_candidates
        missing = [n for n in NET_FILES if not (Path(model_dir) / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{model_dir} lacks {missing}: run `make models`")
        # Worker threads that spin steal the core other requests need on a 2-core box.
        self._pnet, self._rnet, self._onet = (
            onnx_session(Path(model_dir) / n, threads, spin=False) for n in NET_FILES
        )

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in ``rgb`` (HxWx3 uint8 RGB), best score first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        work = rgb
        if max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            work = _downscale(rgb, size)
        boxes, points = self.cascade(work)
        sx, sy = w / work.shape[1], h / work.shape[0]
        faces = []
        for box, pts in zip(boxes, points, strict=True):
            x0, x1 = (float(np.clip(v * sx, 0, w)) for v in (box[0], box[2]))
            y0, y1 = (float(np.clip(v * sy, 0, h)) for v in (box[1], box[3]))
            marks = tuple((float(px * sx), float(py * sy)) for px, py in pts)
            faces.append(Face((x0, y0, x1, y1), marks, float(box[4])))
        faces.sort(key=lambda f: f.score, reverse=True)
        return faces

    def cascade(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """facenet-pytorch's ``detect_face`` on one image, unclipped, in ``rgb``'s pixels.

        Returns boxes [N, 5] (x0, y0, x1, y1, score) and landmarks [N, 5, 2].
        """
        h, w = rgb.shape[:2]
        sat = _summed_area_table(rgb)
        empty = np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)

        # Stage 1: P-net slides a 12 px window over each pyramid level.
        m = 12.0 / self.min_face_px
        scales, minl = [], min(h, w) * m
        while minl >= 12:
            scales.append(m)
            m, minl = m * PYRAMID_FACTOR, minl * PYRAMID_FACTOR
        found = []
        for scale in scales:
            level = _area_resize(sat, int(h * scale + 1), int(w * scale + 1))
            reg, prob = self._pnet.run(None, {"input": level})
            cand = _proposals(reg[0], prob[0, 1], scale, self.thresholds[0])
            found.append(cand[_nms(cand[:, :4], cand[:, 4], 0.5)])
        boxes = np.concatenate(found) if found else np.zeros((0, 9), np.float32)
        # NMS returns best first; the cap bounds R-net's cost on textures (gravel, foliage) that
        # raise hundreds of weak proposals. Ordinary photos stay under it, so match facenet.
        boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7)[: self.max_candidates]]
        if len(boxes) == 0:
            return empty
        # P-net's regression scales by width without facenet's "+1" (unlike later stages).
        wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
        boxes = np.concatenate([boxes[:, :4] + boxes[:, 5:9] * wh, boxes[:, 4:5]], axis=1)
        boxes = _square(boxes)

        # Stage 2: R-net rejects and refines on 24x24 crops.
        boxes, crops = _crops(sat, boxes, w, h, 24)
        if len(boxes) == 0:
            return empty
        reg, prob = self._rnet.run(None, {"input": crops})
        keep = prob[:, 1] > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg = reg[keep]
        pick = _nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))
        if len(boxes) == 0:
            return empty

        # Stage 3: O-net gives the final box, score and 5 landmarks on 48x48 crops.
        boxes, crops = _crops(sat, boxes, w, h, 48)
        if len(boxes) == 0:
            return empty
        reg, marks, prob = self._onet.run(None, {"input": crops})
        keep = prob[:, 1] > self.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg, marks = reg[keep], marks[keep]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.stack(
            [bw * marks[:, :5] + boxes[:, 0:1] - 1, bh * marks[:, 5:] + boxes[:, 1:2] - 1], axis=2
        )
        boxes = _regress(boxes, reg)
        pick = _nms(boxes[:, :4], boxes[:, 4], 0.7, by_min_area=True)
        return boxes[pick], points[pick]


def _downscale(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average ``rgb`` down to ``size`` (w, h), cheaply for camera-sized photos.

    INTER_AREA over a 12 MP photo costs ~45 ms on one core; bilinear sampling to twice the
    target first (~3 ms) and then a 2x area average gives nearly the same image (mean
    difference ~0.3 grey levels) and the same faces.
    """
    w, h = size
    if rgb.shape[1] > 4 * w and rgb.shape[0] > 4 * h:
        rgb = cv2.resize(rgb, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _summed_area_table(rgb: np.ndarray) -> np.ndarray:
    """[3, H+1, W+1] running sums per channel: integers, so every window sum is exact.

    Channel-first because gathers along the last axis are the fast ones in numpy, and the
    nets want NCHW anyway.
    """
    exact_in_int32 = 255 * rgb.shape[0] * rgb.shape[1] < 2**31
    sat = cv2.integral(rgb, sdepth=cv2.CV_32S if exact_in_int32 else cv2.CV_64F)
    return np.ascontiguousarray(sat.transpose(2, 0, 1))


def _pool_bounds(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Window bounds of adaptive average pooling (torch's ``interpolate(mode="area")``)."""
    i = np.arange(size)
    length = np.asarray(length)[..., None]
    lo = (i * length) // size
    hi = ((i + 1) * length + size - 1) // size
    return np.asarray(start)[..., None] + lo, np.asarray(start)[..., None] + hi


def _area_resize(sat: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """The whole image resized to the nets' [1, 3, oh, ow] input exactly as facenet does it.

    facenet resamples with torch's area mode, i.e. adaptive average pooling: each output pixel
    is the plain mean of a whole-pixel window. cv2.INTER_AREA weights fractional pixels instead
    (it moved final boxes by up to 2 px on the sample portraits), so we read the window sums
    from the table.
    """
    y0, y1 = _pool_bounds(np.array(0), np.array(sat.shape[1] - 1), oh)
    x0, x1 = _pool_bounds(np.array(0), np.array(sat.shape[2] - 1), ow)
    rows = np.take(sat, y1, axis=1) - np.take(sat, y0, axis=1)  # row sums, running along x
    rows = rows.reshape(3 * oh, -1)
    sums = (np.take(rows, x1, axis=1) - np.take(rows, x0, axis=1)).reshape(1, 3, oh, ow)
    area = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).astype(np.float32)
    return _normalise(sums.astype(np.float32) / area)


def _crop_means(
    sat: np.ndarray, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray
) -> np.ndarray:
    """The nets' [N, 3, s, s] input from the means of windows [y0:y1, x0:x1] shaped [N, s]."""
    flat = sat.reshape(3, -1)
    stride = sat.shape[2]
    r0, r1 = (y0 * stride)[:, :, None], (y1 * stride)[:, :, None]
    c0, c1 = x0[:, None, :], x1[:, None, :]
    total = (
        np.take(flat, r1 + c1, axis=1)
        - np.take(flat, r0 + c1, axis=1)
        - np.take(flat, r1 + c0, axis=1)
        + np.take(flat, r0 + c0, axis=1)
    )
    area = ((y1 - y0)[:, :, None] * (x1 - x0)[:, None, :]).astype(np.float32)
    return _normalise((total.astype(np.float32) / area).transpose(1, 0, 2, 3))


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """Mean pixel values to the nets' input range, float32 like torch so scores match."""
    return np.ascontiguousarray((pixels - np.float32(127.5)) * np.float32(0.0078125))


def _proposals(reg: np.ndarray, prob: np.ndarray, scale: float, thresh: float) -> np.ndarray:
    """P-net cells over ``thresh`` as [N, 9]: x0, y0, x1, y1, score, 4 regression offsets."""
    ys, xs = np.nonzero(prob >= thresh)
    cell = np.stack([xs, ys], axis=1).astype(np.float32)
    # float32 like torch, whose floor() decides the exact pixel edge.
    s = np.float32(scale)
    q1 = np.floor((2 * cell + 1) / s)
    q2 = np.floor((2 * cell + 12) / s)
    return np.concatenate(
        [q1, q2, prob[ys, xs][:, None], reg[:, ys, xs].T], axis=1, dtype=np.float32
    )


def _nms(
    boxes: np.ndarray, scores: np.ndarray, iou: float, by_min_area: bool = False
) -> np.ndarray:
    """Indices kept by greedy NMS, best score first.

    Default: torchvision's ``nms`` (area without +1, drop IoU > iou), here OpenCV's, which has
    the same rule and order and is ~5x faster than a numpy loop. ``by_min_area``: facenet's final
    "Min" NMS (areas with +1, overlap over the smaller area, keep <= iou), on a handful of boxes.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if not by_min_area:
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1)
        keep = cv2.dnn.NMSBoxes(xywh.astype(np.float64), scores.astype(np.float64), 0.0, iou)
        return np.asarray(keep, np.int64).reshape(-1)
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores, kind="stable")
    kept = []
    while order.size:
        i, rest = order[0], order[1:]
        kept.append(i)
        iw = np.maximum(0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        ih = np.maximum(0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        order = rest[iw * ih / np.minimum(area[i], area[rest]) <= iou]
    return np.array(kept, np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply R/O-net box offsets (relative to the box size with facenet's +1)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.copy()
    out[:, :4] = boxes[:, :4] + reg * np.stack([w, h, w, h], axis=1)
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (facenet's ``rerec``)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _crops(
    sat: np.ndarray, boxes: np.ndarray, w: int, h: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes that touch the image and their crops resized to size x size (facenet's ``pad``).

    Like facenet, a box past the edge is cut to the image and stretched, not zero-padded.
    """
    ib = np.trunc(boxes[:, :4]).astype(np.int64)
    x = np.maximum(ib[:, 0], 1)
    y = np.maximum(ib[:, 1], 1)
    ex = np.minimum(ib[:, 2], w)
    ey = np.minimum(ib[:, 3], h)
    ok = (ey > y - 1) & (ex > x - 1)
    boxes, x, y, ex, ey = boxes[ok], x[ok], y[ok], ex[ok], ey[ok]
    y0, y1 = _pool_bounds(y - 1, ey - y + 1, size)
    x0, x1 = _pool_bounds(x - 1, ex - x + 1, size)
    return boxes, _crop_means(sat, y0, y1, x0, x1)


def _main() -> None:
    """``python -m safety.faces [IMAGE ...]``: faces and ms per image (wall and CPU, median)."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("images", nargs="*", type=Path, help="default: sample photos, 640/1280")
    parser.add_argument("--models", type=Path, default=Path("build/models"))
    parser.add_argument("--max-side", type=int, default=640)
    parser.add_argument("--min-face", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    build(args.models)
    detector = FaceDetector(
        args.models, args.min_face, max_side=args.max_side, threads=args.threads
    )
    photos: dict[str, np.ndarray] = {}
    for path in args.images:
        photos[path.name] = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    if not photos:
        import skimage.data  # dev extra
        from sklearn.datasets import load_sample_image

        base = {"astronaut": skimage.data.astronaut(), "china": load_sample_image("china.jpg")}
        for name, rgb in base.items():
            for side in (640, 1280):
                s = side / max(rgb.shape[:2])
                size = (round(rgb.shape[1] * s), round(rgb.shape[0] * s))
                photos[f"{name}@{side}"] = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
    for name, rgb in photos.items():
        faces = detector.detect(rgb)  # warm-up: first runs allocate
        wall, cpu = [], []
        for _ in range(args.runs):
            w0, c0 = time.perf_counter(), time.process_time()
            detector.detect(rgb)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        print(
            f"{name:16s} {rgb.shape[1]}x{rgb.shape[0]}: {len(faces)} face(s), "
            f"wall median {np.median(wall) * 1000:.1f} ms (min {min(wall) * 1000:.1f}), "
            f"CPU median {np.median(cpu) * 1000:.1f} ms (min {min(cpu) * 1000:.1f})"
        )
        for face in faces:
            print(f"    score {face.score:.4f} box {tuple(round(v) for v in face.box)}")


if __name__ == "__main__":
    _main()
