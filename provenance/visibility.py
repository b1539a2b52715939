"""How visible the mark is where the eye looks hardest: flat areas such as a clear sky.

PSNR averages the mark over the whole frame, so a pattern concentrated in a smooth sky
passes 40 dB and still shows as faint blocks there. The figure here is the RMS of the
mark's luma over the photo's flat pixels (local standard deviation below FLAT_SD over
a WINDOW-pixel square), the place where no texture masks it.
"""

from __future__ import annotations

import cv2
import numpy as np

from provenance.colour import KB, KG, KR

WINDOW = 17
FLAT_SD = 1.0  # grey levels: a clear sky or a plain wall; JPEG grain alone stays below
EDGE = 16  # px left out at the frame's edges, where the window sees the border
# Full-range BT.709 luma: what the screen shows once the player expands video range.
_WEIGHTS = np.array([KR, KG, KB], np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ _WEIGHTS


def local_sd(y: np.ndarray, window: int) -> np.ndarray:
    """Per pixel, the standard deviation of float32 luma over a ``window`` square: the
    texture around it, which hides a faint pattern from the eye (the watermark's masking
    and this module's flat pixels both measure it this way)."""
    mean = cv2.blur(y, (window, window))
    # cv2's running-sum blur can dip a hair below zero on flat areas.
    return np.sqrt(np.maximum(cv2.blur(y * y, (window, window)) - mean * mean, 0.0))


def flat_luma(y: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of a float32 luma plane with no texture around them to hide a
    pattern (the frame's edges included; the watermark's masking gate reads this)."""
    return local_sd(y, WINDOW) < FLAT_SD


def flat_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of an RGB image with no texture around them to hide a pattern."""
    flat = flat_luma(_luma(image))
    flat[:EDGE], flat[-EDGE:], flat[:, :EDGE], flat[:, -EDGE:] = False, False, False, False
    return flat


def mark_rms(marked: np.ndarray, original: np.ndarray, where: np.ndarray | None = None) -> float:
    """RMS of the luma the mark added (grey levels), over ``where`` or the whole frame."""
    diff = _luma(marked) - _luma(original)
    values = diff if where is None else diff[where]
    if values.size == 0:
        raise ValueError("no pixels to measure")
    return float(np.sqrt(np.mean(values * values)))
