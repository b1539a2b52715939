"""Input layout of motion_fields.onnx, shared by the torch definition and the runtime (no torch)."""

PARAM_NAMES = (
    "sky_px",  # total sky drift over the clip, field cells
    "sky_dx",  # drift direction (unit vector)
    "sky_dy",
    "water_px",  # ripple amplitude nearest the viewer, field cells
    "water_horizon",  # top of the water, as a fraction of the field height
    "water_theta",  # main wave direction on the water plane, radians
    "water_phase",  # seeded phase offset, radians
    "water_cycles",  # wave periods per loop (integer, so the loop closes)
    "face_amount",  # smile strength (1 = default)
    "face_blink",  # 1: one blink per loop
    "camera_px",  # camera pan amplitude, field cells
    "camera_zoom",  # camera zoom amplitude (fraction)
    "camera_angle",  # pan direction, radians
    "blink_at",  # time of the blink in [0, 1)
    "crossfade",  # fraction of the loop, at its end, over which the sky phases crossfade
    "water_reach",  # height of the water area (top to bottom) as a fraction of the field height
    "ease",  # fraction of the loop at each end over which the sky drift eases in / out
    "water_slope",  # largest ripple shift per wavelength / 2 pi (0.25 at strength 1)
)
PARAM_INDEX = {name: i for i, name in enumerate(PARAM_NAMES)}
FACE_COLS = 12  # 5 landmarks (x, y) in field cells, eye distance in cells, valid flag
