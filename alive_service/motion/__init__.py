"""The motion model: one photo (+ caption) -> a short, seamlessly looping clip of subtle motion.

Sky drifts, water ripples, faces smile; everything else stays put. See interface.py for the life
cycle and docs/MODEL_CARD.md for what it does and where it fails.
"""

from alive_service.motion.interface import (
    Clip,
    MotionModel,
    MotionOptions,
    RegionHint,
    Renderer,
    RenderJob,
    Take,
)
from alive_service.motion.model import load_motion_model

__all__ = [
    "Clip",
    "MotionModel",
    "MotionOptions",
    "RegionHint",
    "RenderJob",
    "Renderer",
    "Take",
    "load_motion_model",
]
