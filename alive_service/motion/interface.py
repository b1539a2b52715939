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
         renderer.prepare(job) -> FramePainter: draws any range of frames, each the same
         whatever range or batch it is drawn in
      v
    Take (MotionModel.prepare): the clip ready to draw, not yet drawn: shape, fps, model
      id/version/sha256, effective params, and a FramePainter made once from the RenderJob
      |  take.frames(indices): a few chosen frames (the watermark planner's and the output
      |    check's samples)
      |  take.batches(size): every frame in order, `size` at a time, into one reused buffer
      |    (the service streams these into the encoder: no request holds the whole clip raw)
      v  take.fill(first, out): one such batch into a buffer of the caller's
    Clip (MotionModel.animate = prepare + take.clip()): all frames (T, H, W, 3) uint8 at
      once, for the evals and benches; the same frames bit for bit as the batches
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
FrameDone = Callable[[], None]  # called once per frame drawn


class FramePainter(Protocol):
    """One RenderJob, prepared once, drawing any range of its frames on demand."""

    def paint(self, start: int, stop: int, out: np.ndarray, threads: int | None = None,
              each: FrameDone | None = None) -> None:
        """Frames ``start`` .. ``stop`` - 1 into ``out[0 : stop - start]``; a frame depends
        only on its index, never on which frames were drawn before or in which batch."""
        ...


@dataclass(frozen=True)
class Take:
    """A clip ready to be drawn frame by frame (see the module docstring)."""

    shape: tuple[int, int, int, int]  # (T, H, W, 3)
    fps: int
    model_id: str
    model_version: str
    model_sha256: str
    params: dict[str, float | int | str]
    painter: FramePainter

    def __len__(self) -> int:
        return self.shape[0]

    def frames(self, indices: Sequence[int], threads: int | None = None) -> dict[int, np.ndarray]:
        """The frames at ``indices``, drawn now, by index (each (H, W, 3) uint8)."""
        wanted = sorted(set(indices))
        out = np.empty((len(wanted), *self.shape[1:]), np.uint8)
        for start, stop, at in _runs(wanted):
            self.painter.paint(start, stop, out[at : at + stop - start], threads)
        return {index: out[i] for i, index in enumerate(wanted)}

    def batches(
        self, size: int, threads: int | None = None,
        known: dict[int, np.ndarray] | None = None,
    ) -> Iterator[np.ndarray]:
        """Every frame in order, ``size`` at a time, in one buffer that the next batch reuses
        (copy what must outlive it). ``known``: frames already drawn (``frames``), copied
        instead of drawn again and removed from the dict as they pass, so that each is freed
        once nobody else holds it."""
        total = len(self)
        known = known if known is not None else {}
        buffer = np.empty((min(size, total), *self.shape[1:]), np.uint8)
        for first in range(0, total, size):
            yield self.fill(first, buffer[: min(total, first + size) - first], threads, known)

    def fill(
        self, first: int, out: np.ndarray, threads: int | None = None,
        known: dict[int, np.ndarray] | None = None, skip: Container[int] = (),
    ) -> np.ndarray:
        """Frames ``first`` .. ``first + len(out) - 1`` into ``out`` (returned): those in
        ``known`` copied and removed from it, those in ``skip`` left as they are (the caller
        has them in another form), the others drawn."""
        known = known if known is not None else {}
        last = first + len(out)
        drawn = [t for t in range(first, last) if t not in known and t not in skip]
        for start, stop, _at in _runs(drawn):
            self.painter.paint(start, stop, out[start - first : stop - first], threads)
        for t in range(first, last):
            if t in known:
                out[t - first] = known.pop(t)
        return out

    def clip(self, progress: Progress | None = None, threads: int | None = None) -> Clip:
        """Every frame at once (what ``MotionModel.animate`` returns)."""
        total = len(self)
        frames = np.empty(self.shape, np.uint8)
        done = [0]

        def each() -> None:
            done[0] += 1
            if progress:
                progress(done[0], total)

        self.painter.paint(0, total, frames, threads, each)
        return Clip(frames, self.fps, self.model_id, self.model_version, self.model_sha256,
                    self.params)


class MotionModel(Protocol):
    """Photo -> looping clip. See the module docstring for the life cycle."""

    def regions(self, rgb: np.ndarray, caption: str) -> Any:
        """What the model finds in the photo before it knows the faces (sky, water)."""
        ...

    def prepare(
        self,
        rgb: np.ndarray,
        faces: Sequence[FaceLike],
        caption: str,
        options: MotionOptions,
        found: Any = None,  # regions(rgb, caption), if already made
    ) -> Take: ...

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
    """Draws a RenderJob: ``prepare`` once, then any frames (``render``: all of them into a
    preallocated (T, H, W, 3) uint8 array)."""

    name: str

    def prepare(self, job: RenderJob) -> FramePainter: ...

    def render(self, job: RenderJob, out: np.ndarray, progress: Progress | None = None,
               threads: int | None = None) -> None: ...


def _runs(indices: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """(start, stop, position in ``indices``) of each run of consecutive sorted indices: a
    run is painted in one call, so the painter's threads share it."""
    i = 0
    while i < len(indices):
        j = i + 1
        while j < len(indices) and indices[j] == indices[j - 1] + 1:
            j += 1
        yield indices[i], indices[j - 1] + 1, i
        i = j
