"""How steady a clip is over time: the flicker figure the watermark must not raise.

Per FACTS.md ("Measuring a clip's temporal stability"): decode to luma, box-average 8x8,
take the mean absolute change between consecutive frames. The loop seam (last frame ->
first) counts as a step too, because clips replay endlessly. A still photo encoded by
libx264 measures ~0.01 grey levels; above ~0.3 a still area visibly pulses.
"""

from __future__ import annotations

import io

import av
import cv2
import numpy as np

BOX = 8


def decode_luma(mp4: bytes, max_frames: int = 10_000) -> np.ndarray:
    """(T, H, W) uint8 Y planes of an MP4 (the decoder's own luma: no colour conversion)."""
    out: list[np.ndarray] = []
    with av.open(io.BytesIO(mp4)) as container:
        for frame in container.decode(video=0):
            # The Y plane as stored: a "gray" conversion would stretch video range to full.
            plane = frame.planes[0]
            y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            out.append(y[:, : frame.width].copy())
            if len(out) >= max_frames:
                break
    return np.stack(out)


def box_luma(luma: np.ndarray) -> np.ndarray:
    """Each frame's luma box-averaged over 8x8 (same size), as float32."""
    return np.stack([cv2.blur(f.astype(np.float32), (BOX, BOX)) for f in luma])


def luma_steps(luma: np.ndarray, still: np.ndarray | None = None, loop: bool = True) -> np.ndarray:
    """Mean |change| of 8x8-averaged luma per frame step (over ``still`` pixels if given)."""
    boxed = box_luma(luma)
    if loop:
        boxed = np.concatenate([boxed, boxed[:1]])
    diff = np.abs(np.diff(boxed, axis=0))
    if still is None:
        return diff.reshape(len(diff), -1).mean(axis=1)
    if not still.any():
        raise ValueError("no still pixels to measure")
    return diff[:, still].mean(axis=1)


def still_pixels(frames: np.ndarray, tolerance: float = 0.5, margin: int = 2 * BOX) -> np.ndarray:
    """Pixels whose 8x8-averaged luma never changes in the clip's own frames (before any
    encoding), shrunk by ``margin`` px so the encoder's spill from moving neighbours stays out.

    ``frames``: (T, H, W) luma or (T, H, W, 3) RGB.
    """
    luma = frames if frames.ndim == 3 else np.stack(
        [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    )
    boxed = box_luma(luma)
    moving = (boxed.max(axis=0) - boxed.min(axis=0)) > tolerance
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return cv2.dilate(moving.astype(np.uint8), kernel) == 0


def worst_step(mp4: bytes, still: np.ndarray | None = None) -> float:
    """The largest frame-to-frame change of 8x8-averaged luma, loop seam included."""
    return float(luma_steps(decode_luma(mp4), still).max())
