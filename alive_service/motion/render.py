"""Two renderers of one RenderJob: OpenCV on CPU, the GridSample ONNX graph on GPU.

Both compute, per frame t (see rendernet.py for the reference arithmetic):
    flow_p = coef_p[t] . basis                                           (p = a, b)
    up_p   = bilinear half-pixel upsample of flow_p by CELL, in pixels
    warp_p = source sampled at (x + up_p(x)), bilinear, edges replicated
    frame  = alpha * ((1 - mix[t]) * warp_a + mix[t] * warp_b) + (1 - alpha) * photo

The CPU renderer makes that fast: it works only on the tiles where alpha > 0, renders phase B
only in frames where its weight is non-zero and only inside the region where the phases differ
(the drifting sky), evaluates only the non-zero fields, and blends with alpha only on
the thin band where alpha is fractional (elsewhere it copies).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import numpy as np

from alive_service.motion.interface import FrameDone, Progress, RenderJob
from alive_service.motion.version import CELL
from inference import onnx_session

log = logging.getLogger(__name__)


def _ceil_cell(v: int) -> int:
    return -(-v // CELL)


class Cv2Renderer:
    """CPU renderer. Frames are independent, so ``threads`` workers render alternate frames
    (OpenCV releases the GIL); OpenCV's own row-parallelism barely helps on tiles this small."""

    name = "cv2"

    def __init__(self, threads: int = 2) -> None:
        self.threads = max(1, threads)

    def render(self, job: RenderJob, out: np.ndarray, progress: Progress | None = None,
               threads: int | None = None) -> None:
        self.prepare(job).paint(0, len(out), out, threads or self.threads, _counter(progress,
                                                                                  len(out)))

    def prepare(self, job: RenderJob) -> _Cv2Painter:
        return _Cv2Painter(job, self.threads)


def _counter(progress: Progress | None, total: int) -> FrameDone | None:
    """``progress(done, total)`` as a per-frame callback (called under the painter's lock)."""
    if progress is None:
        return None
    done = [0]

    def one() -> None:
        done[0] += 1
        progress(done[0], total)

    return one


class _Cv2Painter:
    """A RenderJob made ready to draw any frame (the tiles, windows and band found once), so
    frames can be drawn in batches as the encoder takes them."""

    def __init__(self, job: RenderJob, threads: int) -> None:
        self.job = job
        self.threads = threads
        photo = job.photo
        y0, y1, x0, x1 = job.bbox
        self.still = y1 <= y0 or x1 <= x0
        if self.still:
            return
        # OpenCV's remap is ~2.5x faster on 4-channel images than on 3-channel ones, more
        # than paying for one RGBA->RGB conversion per frame.
        source4 = cv2.cvtColor(job.source, cv2.COLOR_RGB2RGBA)
        alpha = job.alpha[y0:y1, x0:x1]
        # Warp tile by tile, skipping tiles where nothing shows (the bbox of a skyline holds
        # plenty of still building); phase B only on tiles the drift reaches.
        boxes = _tiles(job.alpha, job.bbox)
        if sum((b[1] - b[0]) * (b[3] - b[2]) for b in boxes) > 0.8 * alpha.size:
            boxes = [job.bbox]  # nearly full: one window has less overhead
        self.tiles_a = [_Window(job, box, source4) for box in boxes]
        self.tiles_b = []
        if job.two_phase:
            for box in boxes:
                part = _intersect(box, job.drift_bbox)
                if part is not None:
                    self.tiles_b.append(_Window(job, part, source4))
        self.outside = (alpha <= 0.0).astype(np.uint8)
        self.has_outside = bool(self.outside.any())
        # The fractional band, as flat indices, blended in 8-bit fixed point.
        by, bx = np.nonzero((alpha > 0.0) & (alpha < 1.0))
        self.band_local = by * (x1 - x0) + bx
        self.band_frame = (by + y0) * photo.shape[1] + (bx + x0)
        self.band_a = np.round(alpha[by, bx] * 256).astype(np.uint16)[:, None]
        self.photo_region = photo[y0:y1, x0:x1]
        self.photo_part = self.photo_region[by, bx].astype(np.uint16) * (256 - self.band_a) + 128

    def draw(self, t: int, frame: np.ndarray, warped: np.ndarray) -> None:
        """Frame ``t`` into ``frame``; ``warped`` is the caller's (H, W, 4) scratch of the box,
        zeroed once (only the tiles are ever written, the rest stays zero)."""
        job, photo = self.job, self.job.photo
        if t == 0 or self.still:
            frame[...] = photo  # frame 0 is the photo, bit for bit (all motions rest at t = 0)
            return
        y0, y1, x0, x1 = job.bbox
        # The photo around the box (the box itself is overwritten below).
        frame[:y0] = photo[:y0]
        frame[y1:] = photo[y1:]
        frame[y0:y1, :x0] = photo[y0:y1, :x0]
        frame[y0:y1, x1:] = photo[y0:y1, x1:]
        for win in self.tiles_a:
            ty0, ty1, tx0, tx1 = win.box
            win.warp(job.coef_a[t], warped[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0])
        m = float(job.mix[t])
        if m > 0.0:
            for win in self.tiles_b:
                ty0, ty1, tx0, tx1 = win.box
                sub = warped[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
                cv2.addWeighted(sub, 1.0 - m, win.warp(job.coef_b[t]), m, 0.0, dst=sub)
        region = frame[y0:y1, x0:x1]
        cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB, dst=region)  # alpha 1: the warp
        if self.has_outside:  # alpha 0 inside the box: the photo
            cv2.copyTo(self.photo_region, self.outside, region)
        if self.band_local.size:  # the thin fractional band: blend
            moving = np.take(warped.reshape(-1, 4), self.band_local, axis=0)[:, :3]
            mixed = ((moving.astype(np.uint16) * self.band_a + self.photo_part) >> 8)
            pixel = np.dtype((np.void, 3))  # one RGB pixel: scatter whole pixels at once
            frame.view(pixel).reshape(-1)[self.band_frame] = (
                mixed.astype(np.uint8).view(pixel).reshape(-1))

    def paint(self, start: int, stop: int, out: np.ndarray, threads: int | None = None,
              each: FrameDone | None = None) -> None:
        """Frames ``start`` .. ``stop`` - 1 into ``out[0 : stop - start]``. Frames are
        independent, so ``threads`` workers draw alternate frames (OpenCV releases the GIL)."""
        workers_n = max(1, min(threads or self.threads, stop - start))
        y0, y1, x0, x1 = self.job.bbox
        lock = threading.Lock()

        def worker(first: int) -> None:
            warped = np.zeros((max(0, y1 - y0), max(0, x1 - x0), 4), np.uint8)
            for t in range(first, stop, workers_n):
                self.draw(t, out[t - start], warped)
                if each:
                    with lock:
                        each()

        if workers_n == 1:
            worker(start)
            return
        workers = [threading.Thread(target=worker, args=(start + i,), daemon=True)
                   for i in range(workers_n)]
        for th in workers:
            th.start()
        for th in workers:
            th.join()


TILE = 256  # pixels; a multiple of CELL


def _tiles(alpha: np.ndarray, bbox: tuple[int, int, int, int]) -> list[tuple[int, int, int, int]]:
    """Boxes (y0, y1, x0, x1) tiling ``bbox`` that contain alpha > 0, each shrunk to it."""
    y0, y1, x0, x1 = bbox
    boxes = []
    for ty in range(y0 - y0 % TILE, y1, TILE):
        for tx in range(x0 - x0 % TILE, x1, TILE):
            a0, a1 = max(ty, y0), min(ty + TILE, y1)
            b0, b1 = max(tx, x0), min(tx + TILE, x1)
            tile = alpha[a0:a1, b0:b1] > 0
            rows = np.nonzero(tile.any(axis=1))[0]
            if rows.size == 0:
                continue
            cols = np.nonzero(tile.any(axis=0))[0]
            boxes.append((a0 + rows[0], a0 + rows[-1] + 1, b0 + cols[0], b0 + cols[-1] + 1))
    return boxes


def _intersect(
    a: tuple[int, int, int, int], b: tuple[int, int, int, int]
) -> tuple[int, int, int, int] | None:
    y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    return (y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None


class _Window:
    """Evaluates, upsamples and applies the flow inside one pixel box.

    Per frame: flow cells = coef . basis (one small matrix-vector product on the cells that
    touch the box), plus the absolute cell-centre coordinates, upsampled bilinearly in one
    resize (a linear grid upsamples exactly, so this equals upsample(flow) + pixel grid except
    on the 2-pixel strips at the frame's edges where the resize clamps: those get a fixed
    correction), then one remap.
    """

    def __init__(self, job: RenderJob, box: tuple[int, int, int, int], source: np.ndarray) -> None:
        self.source = source
        self.box = box
        k, _, h_c, w_c = job.basis.shape
        y0, y1, x0, x1 = box
        # Cells that influence the box, plus one cell of margin so that the bilinear upsample
        # of the crop equals the upsample of the whole field inside the box.
        cy0, cx0 = max(0, y0 // CELL - 1), max(0, x0 // CELL - 1)
        cy1, cx1 = min(h_c, _ceil_cell(y1) + 1), min(w_c, _ceil_cell(x1) + 1)
        self.size = ((cx1 - cx0) * CELL, (cy1 - cy0) * CELL)
        self.oy, self.ox = y0 - cy0 * CELL, x0 - cx0 * CELL
        self.h, self.w = y1 - y0, x1 - x0
        crop = job.basis[:, :, cy0:cy1, cx0:cx1] * np.float32(CELL)  # cells -> pixels
        # Only the fields that are non-zero here (and used at all) cost anything per frame.
        used = np.abs(job.coef_a).max(axis=0) + np.abs(job.coef_b).max(axis=0) > 0
        self.active = [
            (i, np.ascontiguousarray(crop[i].transpose(1, 2, 0)))
            for i in range(k)
            if used[i] and np.any(crop[i])
        ]
        cgx, cgy = np.meshgrid(
            np.arange(cx0, cx1, dtype=np.float32) * CELL + (CELL - 1) / 2.0,
            np.arange(cy0, cy1, dtype=np.float32) * CELL + (CELL - 1) / 2.0,
        )
        self.cells = np.dstack([cgx, cgy])  # absolute pixel coordinates of cell centres
        # The clamp error is separable (x depends on the column only, y on the row only), so
        # it is found by upsampling one row and one column of cell centres.
        up_x = cv2.resize(self.cells[:1, :, 0], (self.size[0], 1), interpolation=cv2.INTER_LINEAR)
        up_y = cv2.resize(self.cells[:, :1, 1], (1, self.size[1]), interpolation=cv2.INTER_LINEAR)
        corr_x = np.arange(x0, x1, dtype=np.float32) - up_x[0, self.ox : self.ox + self.w]
        corr_y = np.arange(y0, y1, dtype=np.float32) - up_y[self.oy : self.oy + self.h, 0]
        self.fix_x = np.nonzero(np.abs(corr_x) > 0.01)[0]
        self.fix_x_by = corr_x[self.fix_x].copy()
        self.fix_y = np.nonzero(np.abs(corr_y) > 0.01)[0]
        self.fix_y_by = corr_y[self.fix_y].copy()[:, None]

    def _upsample(self, cells: np.ndarray) -> np.ndarray:
        up = cv2.resize(cells, self.size, interpolation=cv2.INTER_LINEAR)
        return up[self.oy : self.oy + self.h, self.ox : self.ox + self.w]

    def warp(self, coef: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
        coords = self.cells
        for i, field in self.active:
            if coef[i] != 0.0:
                coords = cv2.scaleAdd(field, float(coef[i]), coords)
        maps = self._upsample(coords)
        for i, col in enumerate(self.fix_x):
            maps[:, col, 0] += self.fix_x_by[i]
        if self.fix_y.size:
            maps[self.fix_y, :, 1] += self.fix_y_by
        # Float maps straight into remap: converting them to fixed point first costs more than
        # the fixed-point remap saves.
        return cv2.remap(
            self.source, maps, None, cv2.INTER_LINEAR, dst, borderMode=cv2.BORDER_REPLICATE
        )


class OnnxRenderer:
    """motion_render.onnx in chunks of frames (GridSample; meant for CUDA)."""

    name = "onnx"

    def __init__(self, model_path: Path, threads: int = 2, chunk: int = 8) -> None:
        self.session = onnx_session(model_path, threads)
        self.chunk = chunk

    def render(self, job: RenderJob, out: np.ndarray, progress: Progress | None = None,
               threads: int | None = None) -> None:
        self.prepare(job).paint(0, len(out), out, threads, _counter(progress, len(out)))

    def prepare(self, job: RenderJob) -> _OnnxPainter:
        return _OnnxPainter(self, job)


class _OnnxPainter:
    def __init__(self, renderer: OnnxRenderer, job: RenderJob) -> None:
        self.session, self.chunk, self.job = renderer.session, renderer.chunk, job
        self.chw = np.ascontiguousarray(job.photo.transpose(2, 0, 1)[None], dtype=np.float32)
        self.src = np.ascontiguousarray(job.source.transpose(2, 0, 1)[None], dtype=np.float32)
        self.alpha = job.alpha[None, None].astype(np.float32)

    def paint(self, start: int, stop: int, out: np.ndarray, threads: int | None = None,
              each: FrameDone | None = None) -> None:
        # The GPU does the work; the session's own CPU threads are fixed when it is made.
        # The graph runs whole chunks of a fixed grid (frames 0-7, 8-15, ...) whatever range
        # is asked for: onnxruntime's kernels round differently for other batch shapes, and a
        # frame must not depend on the batch it was drawn in.
        job, total = self.job, self.job.mix.shape[0]
        for a in range(start - start % self.chunk, stop, self.chunk):
            b = min(total, a + self.chunk)
            (frames,) = self.session.run(
                None,
                {
                    "photo": self.chw,
                    "source": self.src,
                    "alpha": self.alpha,
                    "basis": job.basis,
                    "coef_a": job.coef_a[a:b],
                    "coef_b": job.coef_b[a:b],
                    "mix": job.mix[a:b],
                },
            )
            if a == 0:
                frames[0] = job.photo.transpose(2, 0, 1)  # frame 0 is the photo, bit for bit
            lo, hi = max(a, start), min(b, stop)
            out[lo - start : hi - start] = frames[lo - a : hi - a].transpose(0, 2, 3, 1)
            if each:
                for _ in range(lo, hi):
                    each()
