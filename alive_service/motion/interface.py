"""The motion model's public types and interfaces.

Life cycle of one request::

    photo (HxWx3 uint8, any size) + faces + caption + MotionOptions
      |  resize to the output size (long side, even W and H)        -> frame 0, exactly
      |  regions.find_regions: sky / water masks (classical vision)  -> Regions
      |  steering.steer(caption) x options                            -> effective strengths
      v
    motion_fields.onnx (the ONNX model: THE single source of the motion)
      regions at field resolution (1/4), face landmarks, params, times
      -> basis [K, 2, h, w] + coef_a, coef_b [T, K] (flow_p[t] = coef_p[t] . basis: backward
         offsets in field cells), mix [T]
      v
    RenderJob (photo, filled source, alpha, bbox, basis, coefficients, mix)
      -> Renderer: Cv2Renderer (CPU: upsample + fixed-point cv2.remap, bbox only) or
                   OnnxRenderer (GPU: motion_render.onnx, GridSample); both draw the same frames
      v
    Clip: frames (T, H, W, 3) uint8, fps, model id/version/sha256, effective params
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np


class FaceLike(Protocol):
    """What the motion model reads from a face (``safety.faces.Face`` satisfies it)."""

    @property
    def box(self) -> tuple[float, float, float, float]: ...  # x0, y0, x1, y1

    @property
    def landmarks(self) -> Sequence[tuple[float, float]]: ...  # eyes l/r, nose, mouth l/r


HintKindName = Literal["sky", "water", "still"]


@dataclass(frozen=True)
class RegionHint:
    """Where the user pointed: points (or a stroke) in normalised (x, y) photo coordinates.

    The motion model grows each hint into a region by colour and edges (``hints.py``);
    "still" always wins over "sky", "water" and what the region finder found.
    """

    kind: HintKindName
    points: tuple[tuple[float, float], ...]
    polyline: bool = False
    direction_deg: float | None = None  # sky only: 0 right, 90 up (counter-clockwise)


@dataclass(frozen=True)
class MotionOptions:
    duration_s: float = 3.0
    fps: int = 24
    long_side: int = 1280
    seed: int = 0
    sky: float = 1.0  # strength multipliers: 0 = off, 1 = default, up to 2
    water: float = 1.0
    face: float = 1.0
    camera: float = 1.0
    hints: tuple[RegionHint, ...] = ()  # user's region hints, applied in order


@dataclass(frozen=True)
class Bound:
    """An inclusive range of finite values."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return math.isfinite(value) and self.low <= value <= self.high


_STRENGTH = Bound(0.0, 2.0)
# The one table of option limits. What a request may ask for (validate.py turns anything
# else into INVALID_ARGUMENT): the product's limits, which keep a request within its time.
REQUEST_BOUNDS = {
    "duration_s": Bound(1.0, 6.0), "fps": Bound(12, 30), "long_side": Bound(256, 1920),
    "sky": _STRENGTH, "water": _STRENGTH, "face": _STRENGTH, "camera": _STRENGTH,
}
# What the model itself accepts (ValueError beyond): wider, for the evals, benches and tests
# that make shorter or smaller clips; every request bound lies within it.
MODEL_BOUNDS = {
    **REQUEST_BOUNDS,
    "duration_s": Bound(0.25, 20.0), "fps": Bound(1, 60), "long_side": Bound(64, 4096),
}


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB, C-contiguous; frames[0] == resized photo
    fps: int
    model_id: str
    model_version: str
    model_sha256: str  # of the ONNX file(s) used
    params: dict[str, float | int | str] = field(default_factory=dict)


Progress = Callable[[int, int], None]


class MotionModel(Protocol):
    """Photo -> looping clip. See the module docstring for the life cycle."""

    def animate(
        self,
        rgb: np.ndarray,
        faces: Sequence[FaceLike],
        caption: str,
        options: MotionOptions,
        progress: Progress | None = None,
        threads: int | None = None,  # CPU threads for this request; None: the model's own
    ) -> Clip: ...


@dataclass(frozen=True)
class RenderJob:
    """Everything a renderer needs; produced once per request by the motion model."""

    photo: np.ndarray  # (H, W, 3) uint8, the resized photo = frame 0
    source: np.ndarray  # (H, W, 3) uint8, photo with still objects filled near moving areas
    alpha: np.ndarray  # (H, W) float32 0..1, where the warped source shows
    bbox: tuple[int, int, int, int]  # y0, y1, x0, x1: alpha is zero outside
    drift_bbox: tuple[int, int, int, int]  # inside bbox; flow_a == flow_b outside it
    basis: np.ndarray  # (K, 2, h, w) float32 fields, backward offsets in field cells
    coef_a: np.ndarray  # (T, K) float32: flow_a[t] = sum_k coef_a[t, k] * basis[k]
    coef_b: np.ndarray  # (T, K) float32: the same for phase B
    mix: np.ndarray  # (T,) float32, weight of phase B
    two_phase: bool  # False when the phases agree (no drift): one warp per frame suffices


class Renderer(Protocol):
    """Draws a RenderJob into a preallocated (T, H, W, 3) uint8 array, frame by frame."""

    name: str

    def render(self, job: RenderJob, out: np.ndarray, progress: Progress | None = None,
               threads: int | None = None) -> None: ...
