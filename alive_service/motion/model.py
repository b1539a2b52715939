"""The motion model served with onnxruntime: ``load_motion_model(model_dir).animate(...)``.

See interface.py for the life cycle. This module turns a request into the ONNX model's inputs
(regions at field resolution, face landmarks, seeded parameters), runs it, prepares the
RenderJob (alpha that follows object outlines, filled source) and hands it to a renderer.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from alive_service.motion.hints import apply_hints, describe, sky_direction
from alive_service.motion.interface import (
    MODEL_BOUNDS,
    Clip,
    FaceLike,
    MotionOptions,
    Progress,
    Renderer,
    RenderJob,
    Take,
)
from alive_service.motion.layout import FACE_COLS, PARAM_INDEX, PARAM_NAMES
from alive_service.motion.regions import (
    Regions,
    find_regions,
    gray_guide,
    pull_push_fill,
    refine_alpha,
)
from alive_service.motion.render import Cv2Renderer, OnnxRenderer
from alive_service.motion.steering import steer
from alive_service.motion.version import (
    CELL,
    FIELDS_FILE,
    MANIFEST_FILE,
    MODEL_ID,
    MODEL_VERSION,
    RENDER_FILE,
)
from inference import cuda_available, onnx_session

log = logging.getLogger(__name__)

# Default magnitudes, as fractions of the output's long side (px = fraction * long side).
SKY_SPEED = 0.008  # drift per second
SKY_MAX = 0.04  # cap on the drift over one loop (the crossfade shows both ends)
WATER_AMP = 0.0045  # ripple amplitude nearest the viewer
# A ripple's largest shift per wavelength / 2 pi at strength 1. Calm captions scale it down;
# strengths above 1 do not raise it (only the amplitude of the long near waves, below it):
# at 0.3 the big waves of a near lake already fold the water over itself (fieldnet._water).
WATER_SLOPE = 0.25
CAMERA_ZOOM = 0.025
CAMERA_PAN = 0.004
EASE = 0.1  # fraction of the loop at each end over which the drift eases in / out
CROSSFADE = 0.3  # fraction of the loop over which the two sky phases crossfade
MAX_STRENGTH = 2.0
MIN_REGION = 0.015  # below this fraction of the frame a region is ignored
MIN_EYE_PX = 6.0  # faces smaller than this (eye distance, output pixels) are left alone


def output_size(h: int, w: int, long_side: int) -> tuple[int, int]:
    """(H, W) with the photo's aspect ratio, the given long side, both even (yuv420p)."""
    s = long_side / max(h, w)
    return max(2, 2 * round(h * s / 2)), max(2, 2 * round(w * s / 2))


def resize_photo(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """The photo at the output size: this is frame 0 of the clip, exactly."""
    h_in, w_in = rgb.shape[:2]
    h, w = output_size(h_in, w_in, long_side)
    k = min(h_in // h, w_in // w)
    if k >= 2:
        # Box-average by a whole factor first (OpenCV's fast path; it needs sides divisible
        # by k, so up to k-1 edge pixels are dropped), then a short bilinear step. Blocks
        # never straddle rows that are multiples of k, so halves can be done in parallel.
        rows, cols = h_in // k, w_in // k
        small = np.empty((rows, cols, 3), np.uint8)
        mid = rows // 2

        def part(r0: int, r1: int) -> None:
            src = rgb[r0 * k : r1 * k, : cols * k]
            small[r0:r1] = cv2.resize(src, (cols, r1 - r0), interpolation=cv2.INTER_AREA)

        side = threading.Thread(target=part, args=(0, mid))
        side.start()
        part(mid, rows)
        side.join()
        rgb = small
    return np.ascontiguousarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR))


def _check_options(o: MotionOptions) -> None:
    for name, bound in MODEL_BOUNDS.items():
        if getattr(o, name) not in bound:
            raise ValueError(f"{name} must be in {bound.low:g}..{bound.high:g}")


class OnnxMotionModel:
    def __init__(self, model_dir: Path, renderer: Renderer, threads: int = 2) -> None:
        model_dir = Path(model_dir)
        manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
        if manifest.get("model_version") != MODEL_VERSION:
            raise RuntimeError(f"{model_dir} holds motion {manifest.get('model_version')}")
        # 9 ms of work: a second thread would only spin.
        self._fields = onnx_session(model_dir / FIELDS_FILE, threads=1)
        self._files = manifest["files"]
        self.renderer = renderer
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="motion")
        self.sha256 = self._files[FIELDS_FILE]
        if renderer.name == "onnx":  # both graphs make the frames
            self.sha256 = f"{self._files[FIELDS_FILE]}+{self._files[RENDER_FILE]}"

    def animate(
        self,
        rgb: np.ndarray,
        faces: Sequence[FaceLike],
        caption: str,
        options: MotionOptions,
        progress: Progress | None = None,
        threads: int | None = None,
    ) -> Clip:
        """Every frame at once: ``prepare(...).clip(progress, threads)``."""
        return self.prepare(rgb, faces, caption, options).clip(progress, threads)

    def regions(self, rgb: np.ndarray, caption: str) -> Regions:
        """The sky and water ``prepare`` finds in the photo: the part of it that needs no
        faces, so a caller may run it beside the face detector and pass it on."""
        steering = steer(caption or "")
        return find_regions(rgb, steering.hint_sky, steering.hint_water)

    def prepare(
        self,
        rgb: np.ndarray,
        faces: Sequence[FaceLike],
        caption: str,
        options: MotionOptions,
        found: Regions | None = None,
    ) -> Take:
        """The clip ready to draw: everything but the frames themselves (see interface.py).
        ``found``: ``regions(rgb, caption)`` of this very photo and caption, if already
        made."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError("rgb must be HxWx3 uint8")
        _check_options(options)
        h_in, w_in = rgb.shape[:2]
        photo = resize_photo(rgb, options.long_side)
        h, w = photo.shape[:2]
        n_frames = max(2, round(options.duration_s * options.fps))
        long_side = max(h, w)
        steering = steer(caption or "")
        # The caption scales the request's strengths; the product is capped at 2, the most a
        # request may ask for, so "big smile" at face=2 does not warp a face into rubber.
        sky_s = min(MAX_STRENGTH, options.sky * steering.sky)
        water_s = min(MAX_STRENGTH, options.water * steering.water)
        face_s = min(MAX_STRENGTH, options.face * steering.face)

        # The masks come from the photo as uploaded, not from the output-size copy: what is sky
        # and what is water must not depend on the requested long side.
        regions = found if found is not None else self.regions(rgb, caption)
        hinted_sky = any(hint.kind == "sky" for hint in options.hints)
        if (not steering.hint_sky and not hinted_sky
                and _backdrop_behind_portrait(regions.sky, faces, w_in, h_in)):
            regions = replace(regions, sky=np.zeros_like(regions.sky))
        regions = apply_hints(rgb, regions, options.hints)  # the user's word beats our guess
        keep_still = regions.still is not None and bool(regions.still.any())
        use_sky = sky_s > 0 and regions.sky_fraction >= MIN_REGION
        use_water = water_s > 0 and regions.water_fraction >= MIN_REGION
        face_rows = self._faces(faces, w_in / w) if face_s > 0 else []
        # The camera moves only when nothing animatable was found (not when it was switched off).
        found = (
            regions.sky_fraction >= MIN_REGION
            or regions.water_fraction >= MIN_REGION
            or bool(self._faces(faces, w_in / w))
        )
        # A keep-still hint asks for stillness: a global camera move would move that too.
        camera_s = 0.0 if found or keep_still else options.camera

        hc, wc = -(-h // CELL), -(-w // CELL)
        support = np.zeros((2, hc, wc), np.float32)
        for i, (mask, used) in enumerate(((regions.sky, use_sky), (regions.water, use_water))):
            if used:
                support[i] = _field_support(mask, h, w, hc, wc)

        rng = np.random.default_rng(options.seed & 0xFFFF_FFFF_FFFF_FFFF)  # any int, even < 0
        duration = n_frames / options.fps
        sky_px = min(SKY_SPEED * duration, SKY_MAX) * long_side * sky_s if use_sky else 0.0
        direction = rng.choice([-1.0, 1.0])
        tilt = rng.uniform(-0.12, 0.12)
        asked = sky_direction(options.hints)
        sky_dx, sky_dy = direction * math.cos(tilt), math.sin(tilt)
        if asked is not None:  # content moves by +(dx, dy) in image axes (y down)
            sky_dx, sky_dy = math.cos(math.radians(asked)), -math.sin(math.radians(asked))
        water_theta = rng.uniform(-0.35, 0.35)
        water_phase = rng.uniform(0.0, 2.0 * math.pi)
        water_cycles = float(max(1, round(duration * 0.7)))
        blink_at = rng.uniform(0.35, 0.6)
        camera_angle = rng.uniform(0.0, 2.0 * math.pi)
        values = {
            "sky_px": sky_px / CELL,
            "sky_dx": sky_dx,
            "sky_dy": sky_dy,
            "water_px": WATER_AMP * long_side * water_s / CELL if use_water else 0.0,
            "water_horizon": regions.water_top,
            "water_theta": water_theta,
            "water_phase": water_phase,
            "water_cycles": water_cycles,
            "face_amount": face_s if face_rows else 0.0,
            "face_blink": 1.0 if face_rows else 0.0,
            "camera_px": CAMERA_PAN * long_side * camera_s / CELL,
            "camera_zoom": CAMERA_ZOOM * camera_s,
            "camera_angle": camera_angle,
            "blink_at": blink_at,
            "crossfade": CROSSFADE,
            "water_reach": regions.water_bottom - regions.water_top if use_water else 1.0,
            "ease": EASE,
            "water_slope": WATER_SLOPE * min(water_s, 1.0) if use_water else 0.0,
        }
        params = np.zeros(len(PARAM_NAMES), np.float32)
        for name, v in values.items():
            params[PARAM_INDEX[name]] = v
        face_arr = np.array(face_rows, np.float32).reshape(-1, FACE_COLS)
        if face_arr.shape[0] == 0:  # one inert row keeps every shape non-empty
            face_arr = np.zeros((1, FACE_COLS), np.float32)
            face_arr[0, :10] = -1e4
            face_arr[0, 10] = 1.0
        face_arr[:, :10] /= CELL
        face_arr[:, 10] /= CELL
        times = (np.arange(n_frames, dtype=np.float32) / n_frames).astype(np.float32)
        # The motion model runs while this thread refines the masks at full resolution.
        fields = self._pool.submit(
            self._fields.run,
            None,
            {"regions": support, "faces": face_arr, "params": params, "times": times},
        )
        guide = gray_guide(photo) if use_sky or use_water else None
        # With both masks, the water's is refined beside the sky's (a lone request's second
        # core is otherwise idle here); the same arithmetic either way.
        water = (self._pool.submit(refine_alpha, regions.water, photo, guide)
                 if use_water and use_sky else None)
        alpha_sky = refine_alpha(regions.sky, photo, guide) if use_sky else None
        alpha_water = (water.result() if water is not None
                       else refine_alpha(regions.water, photo, guide) if use_water else None)
        basis, coef_a, coef_b, mix = fields.result()

        job = self._job(
            photo,
            alpha_sky,
            alpha_water,
            face_rows,
            camera_s > 0,
            support,
            (basis, coef_a, coef_b, mix),
            use_sky,
            regions.still if keep_still else None,
        )
        painter = self.renderer.prepare(job)
        effective: dict[str, float | int | str] = {
            "width": w,
            "height": h,
            "frames": n_frames,
            "fps": options.fps,
            "seed": options.seed,
            "sky_strength": round(sky_s if use_sky else 0.0, 4),
            "water_strength": round(water_s if use_water else 0.0, 4),
            "face_strength": round(face_s if face_rows else 0.0, 4),
            "camera_strength": round(camera_s, 4),
            "caption_sky": round(steering.sky, 4),
            "caption_water": round(steering.water, 4),
            "caption_face": round(steering.face, 4),
            "sky_fraction": round(regions.sky_fraction, 4),
            "water_fraction": round(regions.water_fraction, 4),
            "faces_animated": len(face_rows),
            "renderer": self.renderer.name,
        }
        if options.hints:
            effective["hints"] = describe(options.hints)
            still_fraction = float(regions.still.mean()) if keep_still else 0.0
            effective["still_fraction"] = round(still_fraction, 4)
        for name, v in values.items():
            effective[f"p_{name}"] = round(float(v), 5)
        return Take((n_frames, h, w, 3), options.fps, MODEL_ID, MODEL_VERSION, self.sha256,
                    effective, painter)

    @staticmethod
    def _faces(faces: Sequence[FaceLike], scale_in: float) -> list[list[float]]:
        rows = []
        for face in faces:
            pts = np.asarray(face.landmarks, np.float32).reshape(-1, 2)
            if pts.shape[0] != 5 or not np.isfinite(pts).all():
                continue
            pts = pts / scale_in  # photo pixels -> output pixels
            eye_d = float(np.linalg.norm(pts[1] - pts[0]))
            if eye_d < MIN_EYE_PX:
                continue
            rows.append([*pts.reshape(-1).tolist(), eye_d, 1.0])
        return rows

    @staticmethod
    def _job(
        photo, alpha_sky, alpha_water, face_rows, camera, support, motion, use_sky, still=None
    ) -> RenderJob:
        h, w = photo.shape[:2]
        if camera:
            alpha = np.ones((h, w), np.float32)
            box = (0, h, 0, w)
            return RenderJob(photo, photo, alpha, box, box, *motion, False)
        alpha = np.zeros((h, w), np.float32)
        for a in (alpha_sky, alpha_water):
            if a is not None:
                np.maximum(alpha, a, out=alpha)
        if face_rows:
            np.maximum(alpha, _face_envelope(face_rows, h, w), out=alpha)
        if still is not None:
            # Every output pixel the upsampled keep-still mask touches shows the photo itself.
            up = cv2.resize(still, (w, h), interpolation=cv2.INTER_LINEAR)
            alpha[up > 0.0] = 0.0
        if not alpha.any():
            empty = (0, 0, 0, 0)
            return RenderJob(photo, photo, alpha, empty, empty, *motion, False)
        known = alpha > 0
        box = _bbox(known)
        source = pull_push_fill(photo, known)
        drift_box = box
        if use_sky:
            cells = support[0] > 1e-4
            y0, y1, x0, x1 = _bbox(cells)
            # A cell's flow reaches half a cell beyond it after the upsample; pad by one cell.
            drift_box = (
                max(box[0], (y0 - 1) * CELL),
                min(box[1], (y1 + 1) * CELL),
                max(box[2], (x0 - 1) * CELL),
                min(box[3], (x1 + 1) * CELL),
            )
        return RenderJob(photo, source, alpha, box, drift_box, *motion, use_sky)


def _backdrop_behind_portrait(
    sky: np.ndarray, faces: Sequence[FaceLike], w_in: int, h_in: int
) -> bool:
    """A smooth blue or grey area right around a large face is a studio backdrop or a wall
    far more often than a sky; drifting it would only invite halos round the hair. Only a
    caption that mentions the sky keeps it."""
    if not sky.any():
        return False
    h, w = sky.shape
    for face in faces:
        x0, y0, x1, y1 = face.box
        if (x1 - x0) * (y1 - y0) < 0.02 * w_in * h_in:
            continue
        bw, bh = x1 - x0, y1 - y0  # look one face-width around the face
        xa, xb = max(0, (x0 - bw) / w_in), min(1, (x1 + bw) / w_in)
        ya, yb = max(0, (y0 - 0.5 * bh) / h_in), min(1, (y1 + 0.5 * bh) / h_in)
        near = sky[int(ya * h) : int(np.ceil(yb * h)), int(xa * w) : int(np.ceil(xb * w))]
        if near.size and near.mean() > 0.05:
            return True
    return False


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return (0, 0, 0, 0)
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _field_support(mask: np.ndarray, h: int, w: int, hc: int, wc: int) -> np.ndarray:
    """Where a region's motion acts, at field resolution: the region grown by two cells.

    The motion does not need to stop at object edges (the alpha and the filled source keep
    objects crisp); growing it keeps the sky next to a tower moving at full speed instead of
    leaving a static halo, and the blur keeps the field smooth so nothing inside tears.
    """
    padded = np.zeros((hc * CELL, wc * CELL), np.float32)
    padded[:h, :w] = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    cells = cv2.resize(padded, (wc, hc), interpolation=cv2.INTER_AREA)
    grown = cv2.dilate((cells > 0.02).astype(np.float32), np.ones((5, 5), np.uint8))
    return cv2.GaussianBlur(grown, (0, 0), 1.0)


def _face_envelope(face_rows: list[list[float]], h: int, w: int) -> np.ndarray:
    """1 over each face's smile area (the smile field is ~0 at its rim), feathered to 0."""
    env = np.zeros((h, w), np.float32)
    for row in face_rows:
        pts = np.array(row[:10], np.float32).reshape(5, 2)
        eye_d = row[10]
        centre = 0.5 * (0.5 * (pts[0] + pts[1]) + 0.5 * (pts[3] + pts[4]))
        up = 0.5 * (pts[0] + pts[1]) - 0.5 * (pts[3] + pts[4])
        angle = math.degrees(math.atan2(up[1], up[0])) + 90.0
        axes = (int(1.7 * eye_d), int(1.9 * eye_d))
        cv2.ellipse(env, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 1.0, -1)
    k = max(3, int(0.2 * max(r[10] for r in face_rows))) | 1
    return cv2.GaussianBlur(env, (k, k), 0)


def load_motion_model(
    model_dir: Path, renderer: Literal["auto", "cv2", "onnx"] = "auto", threads: int = 2
) -> OnnxMotionModel:
    """The motion model from ``model_dir`` (built by ``export.build``).

    ``auto``: the ONNX GridSample renderer when CUDA serves onnxruntime, else OpenCV.
    """
    model_dir = Path(model_dir)
    if not (model_dir / MANIFEST_FILE).is_file():
        raise FileNotFoundError(f"{model_dir / MANIFEST_FILE} missing: run `make models`")
    # The CPU renderer runs `threads` frames at once; OpenCV's own pool would oversubscribe.
    cv2.setNumThreads(1 if renderer != "onnx" else threads)
    if renderer == "auto":
        renderer = "onnx" if cuda_available() else "cv2"
    chosen: Renderer = (
        OnnxRenderer(model_dir / RENDER_FILE, threads)
        if renderer == "onnx"
        else Cv2Renderer(threads)
    )
    log.info("motion renderer: %s", chosen.name)
    return OnnxMotionModel(model_dir, chosen, threads)
