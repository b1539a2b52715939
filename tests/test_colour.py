"""The video looks like the photo: sRGB in, BT.709 limited-range out, and the file says so."""

from __future__ import annotations

import io

import av
import numpy as np

from alive_service.encode import encode_mp4, rgb_to_i420_bt709

# Inverse matrices by H.273 matrix_coefficients code point: (Kr, Kb).
KR_KB = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114)}


def saturated_card(height: int = 360, width: int = 640) -> np.ndarray:
    """Flat blocks of saturated colours over smooth ramps: where a wrong matrix shows most."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255),
               (255, 255, 0), (255, 120, 0), (200, 20, 60), (30, 90, 220), (255, 255, 255),
               (128, 128, 128), (0, 0, 0), (240, 190, 150), (90, 160, 60), (140, 40, 200),
               (20, 200, 160)]
    card = np.zeros((height, width, 3), np.uint8)
    cols, rows = 8, 2
    bh, bw = height // 2 // rows, width // cols
    for i, colour in enumerate(colours):
        r, c = divmod(i, cols)
        card[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = colour
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    lower = card[height // 2:]
    lower[..., 0] = ramp[None, :]
    lower[..., 1] = np.linspace(0, 255, height - height // 2, dtype=np.float32)[:, None]
    lower[..., 2] = 255 - ramp[None, :]
    return card


def still_clip(rgb: np.ndarray, frames: int = 8) -> np.ndarray:
    return np.repeat(rgb[None], frames, axis=0)


def first_frame_yuv(mp4: bytes) -> tuple[np.ndarray, av.video.frame.VideoFrame]:
    with av.open(io.BytesIO(mp4)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="yuv420p"), frame


def yuv420_to_rgb(i420: np.ndarray, matrix: int, full_range: bool) -> np.ndarray:
    """What a player does with the tagged matrix and range (chroma upsampled by repetition)."""
    kr, kb = KR_KB[matrix]
    height = i420.shape[0] * 2 // 3
    width = i420.shape[1]
    quarter = (height // 2) * (width // 2)
    flat = i420[height:].reshape(-1)
    u = flat[:quarter].reshape(height // 2, width // 2).astype(np.float32)
    v = flat[quarter:].reshape(height // 2, width // 2).astype(np.float32)
    u = u.repeat(2, 0).repeat(2, 1)
    v = v.repeat(2, 0).repeat(2, 1)
    y = i420[:height].astype(np.float32)
    if full_range:
        y, cb, cr = y / 255, (u - 128) / 255, (v - 128) / 255
    else:
        y, cb, cr = (y - 16) / 219, (u - 128) / 224, (v - 128) / 224
    kg = 1 - kr - kb
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / kg
    return np.clip(np.stack([r, g, b], -1) * 255 + 0.5, 0, 255).astype(np.uint8)


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_the_video_is_tagged_bt709_limited_range_in_the_stream_and_the_container() -> None:
    video = encode_mp4(still_clip(saturated_card()), fps=24)
    with av.open(io.BytesIO(video.mp4)) as container:
        context = container.streams.video[0].codec_context
        assert (context.color_primaries, context.color_trc, context.colorspace) == (1, 1, 1)
        assert context.color_range == 1  # MPEG (limited)
    # The MP4 `colr` box: nclx, primaries 1, transfer 1, matrix 1, full_range_flag 0.
    at = video.mp4.find(b"colrnclx")
    assert at > 0
    assert video.mp4[at + 8:at + 15] == bytes([0, 1, 0, 1, 0, 1, 0x00])


def test_the_h264_vui_alone_carries_the_tags() -> None:
    """Strip the container: a raw H.264 stream's decoder sees only the SPS's VUI."""
    video = encode_mp4(still_clip(saturated_card()), fps=24)
    raw = io.BytesIO()
    with av.open(io.BytesIO(video.mp4)) as src, av.open(raw, "w", format="h264") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        for packet in src.demux(stream_in):
            if packet.dts is None:
                continue
            packet.stream = stream_out
            dst.mux(packet)
    assert b"colr" not in raw.getvalue()
    _, frame = first_frame_yuv_raw(raw.getvalue())
    assert (frame.color_primaries, frame.color_trc, frame.colorspace) == (1, 1, 1)
    assert frame.color_range == 1


def first_frame_yuv_raw(h264: bytes) -> tuple[np.ndarray, av.video.frame.VideoFrame]:
    with av.open(io.BytesIO(h264), format="h264") as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="yuv420p"), frame


def test_frame_zero_decoded_with_the_tagged_matrix_matches_a_saturated_photo() -> None:
    card = saturated_card()
    i420, frame = first_frame_yuv(encode_mp4(still_clip(card), fps=24).mp4)
    shown = yuv420_to_rgb(i420, frame.colorspace, full_range=frame.color_range == 2)
    assert mae(shown, card) <= 3.5
    # A player that assumed BT.601 instead would be visibly off on these colours.
    assert mae(yuv420_to_rgb(i420, 6, full_range=False), card) > 3 * mae(shown, card)


def test_on_a_natural_photo_only_chroma_subsampling_and_the_encoder_cost_anything(
    landscape_rgb: np.ndarray,
) -> None:
    photo = np.ascontiguousarray(landscape_rgb[:426, :640])
    # The conversion alone: what is lost is the 2x2 chroma averaging on fine texture.
    assert mae(yuv420_to_rgb(rgb_to_i420_bt709(photo), 1, full_range=False), photo) <= 2.0
    i420, frame = first_frame_yuv(encode_mp4(still_clip(photo), fps=24).mp4)
    shown = yuv420_to_rgb(i420, frame.colorspace, full_range=frame.color_range == 2)
    assert mae(shown, photo) < mae(yuv420_to_rgb(i420, 6, full_range=False), photo)
