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

from alive_service.motion.interface import Progress, RenderJob
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
        workers_n = max(1, threads or self.threads)
        photo = job.photo
        t_total = job.mix.shape[0]
        y0, y1, x0, x1 = job.bbox
        out[0] = photo  # frame 0 is the photo, bit for bit (all motions are at rest at t = 0)
        if progress:
            progress(1, t_total)
        if y1 <= y0 or x1 <= x0:
            for t in range(1, t_total):
                out[t] = photo
                if progress:
                    progress(t + 1, t_total)
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
        tiles_a = [_Window(job, box, source4) for box in boxes]
        tiles_b = []
        if job.two_phase:
            for box in boxes:
                part = _intersect(box, job.drift_bbox)
                if part is not None:
                    tiles_b.append(_Window(job, part, source4))
        outside = (alpha <= 0.0).astype(np.uint8)
        has_outside = bool(outside.any())
        # The fractional band, as flat indices, blended in 8-bit fixed point.
        by, bx = np.nonzero((alpha > 0.0) & (alpha < 1.0))
        band_local = by * (x1 - x0) + bx
        band_frame = (by + y0) * photo.shape[1] + (bx + x0)
        band_a = np.round(alpha[by, bx] * 256).astype(np.uint16)[:, None]
        photo_region = photo[y0:y1, x0:x1]
        photo_part = photo_region[by, bx].astype(np.uint16) * (256 - band_a) + 128
        pixel = np.dtype((np.void, 3))  # one RGB pixel: scatter whole pixels at once

        def draw(t: int, warped: np.ndarray) -> None:
            frame = out[t]
            # The photo around the box (the box itself is overwritten below).
            frame[:y0] = photo[:y0]
            frame[y1:] = photo[y1:]
            frame[y0:y1, :x0] = photo[y0:y1, :x0]
            frame[y0:y1, x1:] = photo[y0:y1, x1:]
            for win in tiles_a:
                ty0, ty1, tx0, tx1 = win.box
                win.warp(job.coef_a[t], warped[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0])
            m = float(job.mix[t])
            if m > 0.0:
                for win in tiles_b:
                    ty0, ty1, tx0, tx1 = win.box
                    sub = warped[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
                    cv2.addWeighted(sub, 1.0 - m, win.warp(job.coef_b[t]), m, 0.0, dst=sub)
            region = frame[y0:y1, x0:x1]
            cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB, dst=region)  # alpha 1: the warp
            if has_outside:  # alpha 0 inside the box: the photo
                cv2.copyTo(photo_region, outside, region)
            if band_local.size:  # the thin fractional band: blend
                moving = np.take(warped.reshape(-1, 4), band_local, axis=0)[:, :3]
                mixed = ((moving.astype(np.uint16) * band_a + photo_part) >> 8).astype(np.uint8)
                frame.view(pixel).reshape(-1)[band_frame] = mixed.view(pixel).reshape(-1)

        def worker(first: int) -> None:
            warped = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
            for t in range(first, t_total, workers_n):
                draw(t, warped)
                with lock:
                    done[0] += 1
                    if progress:
                        progress(done[0], t_total)

        lock = threading.Lock()
        done = [1]
        workers = [
            threading.Thread(target=worker, args=(1 + i,), daemon=True) for i in range(workers_n)
        ]
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
        # The GPU does the work; the session's own CPU threads are fixed when it is made.
        t_total = job.mix.shape[0]
        chw = np.ascontiguousarray(job.photo.transpose(2, 0, 1)[None], dtype=np.float32)
        src = np.ascontiguousarray(job.source.transpose(2, 0, 1)[None], dtype=np.float32)
        alpha = job.alpha[None, None].astype(np.float32)
        out[0] = job.photo
        for start in range(1, t_total, self.chunk):
            stop = min(t_total, start + self.chunk)
            (frames,) = self.session.run(
                None,
                {
                    "photo": chw,
                    "source": src,
                    "alpha": alpha,
                    "basis": job.basis,
                    "coef_a": job.coef_a[start:stop],
                    "coef_b": job.coef_b[start:stop],
                    "mix": job.mix[start:stop],
                },
            )
            out[start:stop] = frames.transpose(0, 2, 3, 1)
            if progress:
                progress(stop, t_total)
