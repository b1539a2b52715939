"""SafetyChecker: every safety check the service runs, before and after generation.

Life of one request::

    caption --check_caption--> rules / profanity SVM / e5 heads / real-person check --> Decision
    photo (RGB) --check_image--> shrink once --> PDQ hash (+ bank match), NudeNet, MTCNN faces
                                              --> ImageReport(Decision, faces, pdq, match)
    both allowed --> generate video --check_frames--> NudeNet on N sampled frames --> Decision

Every Decision carries the policy version it was made under.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from safety.caption import CaptionChecker
from safety.decision import CheckResult, Decision, decide, judge
from safety.faces import Face, FaceDetector
from safety.hashing import BankMatch, HashBank, pdq_hash
from safety.imageops import shrink
from safety.nudity import NudityDetector, nudity_result
from safety.policy import load_policy

log = logging.getLogger(__name__)

# Long side of the shared working copy of an upload: every image model works at or below it
# (NudeNet 320, PDQ 512, MTCNN 640), so a 12 MP photo is read at full size only once.
_WORK_SIDE = 800
# MTCNN on a 640 px copy, faces from 32 px there (5% of the long side): the motion model only
# animates faces big enough to see, and this halves MTCNN's cost against its 20 px default.
_FACE_SIDE = 640
_MIN_FACE_PX = 32


@dataclass(frozen=True)
class ImageReport:
    decision: Decision
    faces: tuple[Face, ...]  # in the pixels of the photo passed to check_image
    pdq_hex: str
    pdq_quality: int
    bank_match: BankMatch | None


def _scale_face(face: Face, k: int) -> Face:
    if k == 1:
        return face
    x0, y0, x1, y1 = face.box
    return replace(
        face,
        box=(x0 * k, y0 * k, x1 * k, y1 * k),
        landmarks=tuple((x * k, y * k) for x, y in face.landmarks),
    )


class SafetyChecker:
    """Loads every safety model once; thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, model_dir: Path, policy_path: Path | None = None, threads: int = 1) -> None:
        model_dir = Path(model_dir)
        self.policy = load_policy(policy_path)
        self.policy_version = self.policy.version
        self.captions = CaptionChecker(model_dir, self.policy, threads)
        self.nudity = NudityDetector(model_dir, threads)
        self.faces = FaceDetector(model_dir, _MIN_FACE_PX, max_side=_FACE_SIDE, threads=threads)
        # MTCNN runs beside NudeNet + PDQ: on 2 cores a request's image check then takes about
        # as long as the slower of the two instead of their sum.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="safety-faces")
        log.info("safety checker ready, policy %s", self.policy_version)

    def check_caption(self, text: str) -> Decision:
        return decide(self.captions.check(text), self.policy)

    def check_image(self, rgb: np.ndarray, bank: HashBank | None = None) -> ImageReport:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        work, k = shrink(np.ascontiguousarray(rgb), _WORK_SIDE)
        faces_future = self._pool.submit(self.faces.detect, work)
        pdq_hex, quality = pdq_hash(work)
        checks: list[CheckResult] = []
        match = None
        if bank is not None:
            # Near-uniform images hash unreliably (PDQ quality < 50): matching them would
            # produce false positives, so they are recorded but not matched.
            if quality >= self.policy.pdq_min_quality:
                match = bank.nearest(pdq_hex, self.policy.pdq_max_distance)
            scores = {"quality": float(quality)}
            if match is not None:
                scores["distance"] = float(match.distance)
            hit = ["known_bad_image"] if match else []
            checks.append(judge("hash_bank", self.policy, hit, scores))
        checks.append(nudity_result(self.nudity.detect(work), self.policy))
        faces = tuple(_scale_face(f, k) for f in faces_future.result())
        best = max((f.score for f in faces), default=0.0)
        checks.append(
            CheckResult("faces", "allow", None, {"count": float(len(faces)), "max_score": best})
        )
        return ImageReport(decide(checks, self.policy), faces, pdq_hex, quality, match)

    def output_frame_picks(self, count: int) -> list[int]:
        """The indices of the frames ``check_frames`` reads in a clip of ``count`` frames (a
        streamed clip draws these first)."""
        n = min(count, max(1, self.policy.output_frame_samples))
        # Interior points: frame 0 is the checked photo and the loop returns to it.
        return [int(i) for i in np.unique((np.arange(1, n + 1) * count / (n + 1)).astype(int))]

    def check_frames(self, frames: np.ndarray) -> Decision:
        """Nudity check on N evenly spaced frames of a generated (T, H, W, 3) uint8 video."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"expected (T, H, W, 3) frames, got {frames.shape}")
        picks = self.output_frame_picks(len(frames))
        per_frame = self.nudity.detect_batch([frames[i] for i in picks])
        detections = [d for frame in per_frame for d in frame]
        result = nudity_result(detections, self.policy, check="output_frames")
        result = replace(result, scores={**result.scores, "frames_checked": float(len(picks))})
        return decide([result], self.policy)
