"""Cheap downscaling of big photos, shared by the image checks.

cv2.INTER_AREA is slow for arbitrary ratios on a 12 MP photo (~40 ms) but its exact 2x path is
~6 ms, so we halve a few times first and let each check finish from the much smaller copy.
"""

from __future__ import annotations

import cv2
import numpy as np


def shrink(rgb: np.ndarray, min_side: int) -> tuple[np.ndarray, int]:
    """Halve (2x2 area average) while the long side stays >= ``min_side``.

    Returns the copy and its factor k (a power of two): pixel (x, y) of the copy covers
    [k*x, k*(x+1)) of the input. Odd last rows/columns are dropped.
    """
    k = 1
    # Stop before the short side of an extreme panorama would vanish.
    while max(rgb.shape[:2]) >= 2 * min_side and min(rgb.shape[:2]) >= 4:
        h, w = rgb.shape[0] // 2, rgb.shape[1] // 2
        rgb = cv2.resize(rgb[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)
        k *= 2
    return rgb, k


def fit(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the long side is at most ``max_side`` (area filter); never upscale."""
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
