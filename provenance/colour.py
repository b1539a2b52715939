"""The colour conversion every Alive video is written with: BT.709 matrix, limited range.

Owned here, not in alive_service, because both the service's encoder and the watermark
(which must predict the luma that encoder writes) need it, and provenance stays
independent of the service. The frames are sRGB; sRGB and BT.709 share primaries and white
point, and players treat their transfer curves alike, so the values pass through as is.
"""

from __future__ import annotations

import av
import cv2
import numpy as np

# BT.709 luma weights and the limited-range scales (Y' 16-235, Cb/Cr 16-240).
KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB
Y_SCALE, C_SCALE = 219.0 / 255.0, 224.0 / 255.0
Y_OFFSET = 16.0
# Y' from R, G, B (0-255): Y' = Y_OFFSET + LUMA_WEIGHTS · (R, G, B).
LUMA_WEIGHTS = np.array([KR * Y_SCALE, KG * Y_SCALE, KB * Y_SCALE], np.float32)
# Rows: Y', Cb, Cr from R, G, B (0-255), last column the offset (cv2.transform's 3x4 form).
BT709_LIMITED = np.array(
    [
        [*LUMA_WEIGHTS, Y_OFFSET],
        [-KR / (2 - 2 * KB) * C_SCALE, -KG / (2 - 2 * KB) * C_SCALE, 0.5 * C_SCALE, 128.0],
        [0.5 * C_SCALE, -KG / (2 - 2 * KR) * C_SCALE, -KB / (2 - 2 * KR) * C_SCALE, 128.0],
    ],
    dtype=np.float32,
)
# What the stream says about itself (FFmpeg's names; the numbers are ITU-T H.273 code points:
# primaries 1, transfer 1, matrix 1, video_full_range_flag 0).
COLOUR_TAGS = {"colorprim": "bt709", "transfer": "bt709", "colormatrix": "bt709"}


def rgb_to_i420_bt709(rgb: np.ndarray) -> np.ndarray:
    """One HxWx3 sRGB frame -> an I420 buffer (H*3/2 x W): BT.709 matrix, limited range.

    Chroma is the 2x2 block mean of the full-resolution chroma (centred siting, as OpenCV's
    and most JPEG-style 4:2:0 conversions do).
    """
    height, width, _ = rgb.shape
    out = np.empty((height * 3 // 2, width), np.uint8)
    # OpenCV has a fixed-point SIMD path only for 3 -> 3 channel transforms: convert all
    # three at full size, then pick the planes out.
    full = cv2.transform(rgb, BT709_LIMITED)
    out[:height] = full[..., 0]
    # INTER_AREA at exactly half size is the 2x2 box mean.
    half = cv2.resize(full, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    quarter = (height // 2) * (width // 2)
    flat = out.reshape(-1)[height * width:]
    flat[:quarter] = half[..., 1].reshape(-1)
    flat[quarter:] = half[..., 2].reshape(-1)
    return out


def tag_bt709(stream: av.video.stream.VideoStream, options: dict[str, str]) -> None:
    """Tag a libx264 stream BT.709 / limited range before its first frame, in both places.

    libx264 writes the H.264 VUI from its own options; the MP4 muxer writes ``colr`` from
    the codec context's fields, so both are set. ``options``: the stream's other options.
    """
    stream.options = {**options, **COLOUR_TAGS}
    context = stream.codec_context
    context.color_primaries = 1  # BT.709
    context.color_trc = 1  # BT.709
    context.colorspace = 1  # BT.709 matrix
    context.color_range = 1  # limited ("MPEG") range
