"""The face detector finds real faces, in the right place, and nothing in a landscape."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from sklearn.datasets import load_sample_image

from safety.faces import NET_FILES, THRESHOLDS, FaceDetector, build
from tests.conftest import grace_hopper, models_with


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models_with(tmp_path_factory, NET_FILES, build)


@pytest.fixture(scope="session")
def detector(model_dir: Path) -> FaceDetector:
    return FaceDetector(model_dir)


# Each portrait with the tip of the nose, marked by eye on the photo (x, y pixels).
PORTRAITS = {
    "grace_hopper": (grace_hopper, (268, 238)),
    "astronaut": (skimage.data.astronaut, (225, 128)),
}


@pytest.mark.parametrize("name", sorted(PORTRAITS))
def test_grace_hopper_face_is_found_with_eyes_above_mouth(
    detector: FaceDetector, name: str
) -> None:
    load, nose_tip = PORTRAITS[name]
    rgb = load()
    h, w = rgb.shape[:2]
    faces = detector.detect(rgb)

    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert face.score > 0.95
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    # A head-and-shoulders portrait: the face is a sizeable, roughly square part of the photo.
    assert 0.12 * w < x1 - x0 < 0.6 * w
    assert 0.75 < (y1 - y0) / (x1 - x0) < 1.5
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in face.landmarks)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert np.hypot(nose[0] - nose_tip[0], nose[1] - nose_tip[1]) < 0.1 * (x1 - x0)


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_landscape_without_people_has_no_face(detector: FaceDetector, name: str) -> None:
    assert detector.detect(load_sample_image(name)) == []


def test_boxes_map_back_to_the_callers_pixels_when_detection_downscales(model_dir: Path) -> None:
    small = skimage.data.astronaut()
    (expected,) = FaceDetector(model_dir, max_side=512).detect(small)

    # Pixel-doubled: the detector's INTER_AREA downscale gives back `small` exactly, so the
    # boxes must come back exactly doubled.
    doubled = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    (face,) = FaceDetector(model_dir, max_side=512).detect(doubled)
    np.testing.assert_allclose(face.box, np.array(expected.box) * 2, atol=1e-3)
    np.testing.assert_allclose(face.landmarks, np.array(expected.landmarks) * 2, atol=1e-3)

    # A camera-sized photo (4096 px) takes the cheap two-step downscale: same face, 8x bigger.
    huge = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)
    (face,) = FaceDetector(model_dir, max_side=512).detect(huge)
    size = expected.box[2] - expected.box[0]
    np.testing.assert_allclose(face.box, np.array(expected.box) * 8, atol=0.05 * size * 8)

    # Off-centre in a wide canvas, detected at 640 px wide: found where it was pasted.
    canvas = np.full((1200, 1900, 3), 90, np.uint8)
    top, left = 500, 1100
    canvas[top : top + 512, left : left + 512] = small
    (face,) = FaceDetector(model_dir, max_side=640).detect(canvas)
    shifted = np.array(expected.box) + [left, top, left, top]
    np.testing.assert_allclose(face.box, shifted, atol=0.1 * size)
    shifted_marks = np.array(expected.landmarks) + [left, top]
    np.testing.assert_allclose(face.landmarks, shifted_marks, atol=0.05 * size)


def test_two_people_side_by_side_are_both_found_best_first(detector: FaceDetector) -> None:
    grace = cv2.resize(grace_hopper(), (512, 600), interpolation=cv2.INTER_AREA)
    astro = np.pad(skimage.data.astronaut(), ((0, 88), (0, 0), (0, 0)))
    faces = detector.detect(np.concatenate([grace, astro], axis=1))

    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in faces)
    assert centres[0] < 512 < centres[1]


def test_a_face_on_gravel_is_found_even_when_the_candidate_cap_bites(model_dir: Path) -> None:
    # Gravel raises hundreds of weak P-net proposals; the cap keeps only the strongest.
    rgb = np.dstack([skimage.data.gravel()] * 3)
    face = cv2.resize(skimage.data.astronaut()[40:200, 150:300], (200, 200))
    rgb[150:350, 250:450] = face
    for cap in (30, 300):
        faces = FaceDetector(model_dir, max_candidates=cap).detect(rgb)
        assert len(faces) == 1
        x0, y0, x1, y1 = faces[0].box
        assert 250 <= (x0 + x1) / 2 <= 450 and 150 <= (y0 + y1) / 2 <= 350


def test_tiny_or_non_rgb_images(detector: FaceDetector) -> None:
    assert detector.detect(np.zeros((10, 10, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        detector.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        detector.detect(np.zeros((64, 64, 3), np.float32))


def test_detection_runs_without_importing_torch(model_dir: Path) -> None:
    # The server process should not pay for (or need) torch; only build() may import it.
    code = (
        "import sys, numpy as np, skimage.data\n"
        "from pathlib import Path\n"
        "from safety.faces import FaceDetector, build\n"
        f"build(Path({str(model_dir)!r}))\n"
        f"faces = FaceDetector(Path({str(model_dir)!r})).detect(skimage.data.astronaut())\n"
        "assert len(faces) == 1, faces\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


# --- Reference check: imports torch (build-time dependency), runs facenet-pytorch's cascade ---


def facenet_detect_face() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """facenet-pytorch's own ``detect_face``, loaded without its torchvision imports.

    facenet imports torchvision only for ``batched_nms`` (and for face cropping, unused here);
    torchvision has no build on this machine, so we run the file's source with a plain torch
    NMS in its place, rather than putting a fake torchvision into ``sys.modules``.
    """
    import importlib.util

    import torch

    spec = importlib.util.find_spec("facenet_pytorch")
    assert spec is not None and spec.submodule_search_locations
    src = Path(next(iter(spec.submodule_search_locations))) / "models/utils/detect_face.py"
    code = "\n".join(
        line for line in src.read_text().splitlines() if not line.startswith("from torchvision")
    )

    def batched_nms(  # torchvision's semantics
        boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou: float
    ) -> torch.Tensor:
        if boxes.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        offsets = idxs.to(boxes) * (boxes.max() + 1)
        b = boxes + offsets[:, None]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        order = torch.argsort(scores, descending=True, stable=True)
        keep = []
        while order.numel():
            i, rest = order[0], order[1:]
            keep.append(int(i))
            iw = (torch.minimum(b[i, 2], b[rest, 2]) - torch.maximum(b[i, 0], b[rest, 0])).clamp(0)
            ih = (torch.minimum(b[i, 3], b[rest, 3]) - torch.maximum(b[i, 1], b[rest, 1])).clamp(0)
            inter = iw * ih
            order = rest[inter / (area[i] + area[rest] - inter) <= iou]
        return torch.tensor(keep, dtype=torch.long)

    namespace: dict[str, object] = {"batched_nms": batched_nms, "__name__": "facenet_detect"}
    exec(compile(code, str(src), "exec"), namespace)  # the installed wheel's own file
    return namespace["detect_face"]  # type: ignore[return-value]


def test_torch_reference_onnx_cascade_reproduces_facenet_boxes(detector: FaceDetector) -> None:
    """IMPORTS TORCH: our torch nets in facenet's torch cascade vs ONNX nets in our cascade."""
    import torch

    from safety.faces import weights_dir
    from safety.mtcnn import load_nets

    detect_face = facenet_detect_face()
    nets = load_nets(weights_dir())
    grace = cv2.resize(grace_hopper(), (512, 600), interpolation=cv2.INTER_AREA)
    astro = np.pad(skimage.data.astronaut(), ((0, 88), (0, 0), (0, 0)))
    images = [grace_hopper(), load_sample_image("china.jpg"), np.concatenate([grace, astro], 1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # facenet's per-crop loop gains nothing from threads on 2 cores
    try:
        with torch.no_grad():
            p_net, r_net, o_net = nets["pnet"], nets["rnet"], nets["onet"]
            refs = [
                detect_face(rgb, 20, p_net, r_net, o_net, THRESHOLDS, 0.709, "cpu")
                for rgb in images
            ]
    finally:
        torch.set_num_threads(threads)
    for rgb, (ref_boxes, ref_points) in zip(images, refs, strict=True):
        ref_boxes, ref_points = np.asarray(ref_boxes[0], float), np.asarray(ref_points[0], float)
        boxes, points = detector.cascade(rgb)
        assert boxes.shape == ref_boxes.reshape(-1, 5).shape
        order = np.argsort(-boxes[:, 4])
        ref_order = np.argsort(-ref_boxes.reshape(-1, 5)[:, 4])
        np.testing.assert_allclose(boxes[order, :4], ref_boxes[ref_order, :4], atol=1.0)
        np.testing.assert_allclose(boxes[order, 4], ref_boxes[ref_order, 4], atol=1e-4)
        np.testing.assert_allclose(points[order], ref_points[ref_order], atol=1.0)
