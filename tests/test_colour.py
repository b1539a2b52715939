"""The video looks like the photo: sRGB in, BT.709 limited-range out, and the file says so."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
from PIL import Image

from alive_service.decode import decode_photo
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


# ---- colour management on input ------------------------------------------------------
# Profiles are built here, byte by byte (ICC v2 matrix/TRC display profiles), so the tests
# need no profile files: Display P3 from its published primaries, and two odd ones.

D65 = (0.3127, 0.3290)
D50_XYZ = np.array([0.9642, 1.0, 0.8249])
SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))  # Display P3 (D65, sRGB TRC)
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367],
                     [0.0389, -0.0685, 1.0296]])


def xy_to_xyz(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Linear RGB -> XYZ (D65) for the given primaries."""
    columns = np.stack([xy_to_xyz(*p) for p in primaries], axis=1)
    return columns * np.linalg.solve(columns, xy_to_xyz(*D65))


def adapted_to_d50(matrix: np.ndarray) -> np.ndarray:
    cone = BRADFORD @ D50_XYZ / (BRADFORD @ xy_to_xyz(*D65))
    return np.linalg.inv(BRADFORD) @ np.diag(cone) @ BRADFORD @ matrix


def _s15(value: float) -> bytes:
    return int(round(value * 65536)).to_bytes(4, "big", signed=True)


def _xyz_tag(xyz: np.ndarray) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


SRGB_CURVE = b"para\0\0\0\0\0\x03\0\0" + b"".join(
    _s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))


def icc_profile(colorants: np.ndarray | None, curve: bytes = SRGB_CURVE,
                name: str = "test") -> bytes:
    """A v2 display profile: RGB matrix/TRC with ``colorants`` (D50 XYZ columns), or a grey
    profile (``colorants`` None) with ``curve`` as its tone curve."""
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(name) + 1) + name.encode() + b"\0" + \
        b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    tags: list[tuple[bytes, bytes]] = [(b"desc", desc), (b"wtpt", _xyz_tag(D50_XYZ)),
                                       (b"cprt", b"text\0\0\0\0public domain\0")]
    if colorants is None:
        tags.append((b"kTRC", curve))
    else:
        tags += [(b"rXYZ", _xyz_tag(colorants[:, 0])), (b"gXYZ", _xyz_tag(colorants[:, 1])),
                 (b"bXYZ", _xyz_tag(colorants[:, 2])), (b"rTRC", curve), (b"gTRC", curve),
                 (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    space = b"GRAY" if colorants is None else b"RGB "
    header = (struct.pack(">I", size) + b"\0" * 4 + bytes([2, 0x10, 0, 0]) + b"mntr" + space
              + b"XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 24 + b"\0" * 4
              + b"".join(_s15(v) for v in D50_XYZ) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def p3_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """The colorimetric answer, computed without LittleCMS."""
    matrix = np.linalg.inv(rgb_to_xyz(SRGB_PRIMARIES)) @ rgb_to_xyz(P3_PRIMARIES)
    linear = srgb_decode(rgb.astype(np.float64) / 255) @ matrix.T
    return np.round(srgb_encode(linear) * 255).astype(np.uint8)


def png(rgb: np.ndarray, icc: bytes | None = None, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode).save(buffer, "PNG", **({"icc_profile": icc} if icc else {}))
    return buffer.getvalue()


def colour_patches() -> np.ndarray:
    """Moderately saturated colours (inside sRGB after conversion) plus grey, 64x64 each."""
    colours = [(200, 100, 50), (60, 160, 90), (70, 90, 190), (180, 60, 140), (128, 128, 128),
               (230, 200, 120), (40, 120, 130), (150, 150, 60)]
    return np.concatenate([np.full((64, 64, 3), c, np.uint8) for c in colours], axis=1)


P3_ICC = icc_profile(adapted_to_d50(rgb_to_xyz(P3_PRIMARIES)), name="Display P3 (test)")


def test_a_display_p3_photo_is_converted_to_srgb(landscape_rgb: np.ndarray) -> None:
    patches = colour_patches()
    photo = decode_photo(png(patches, P3_ICC))
    expected = p3_to_srgb(patches)
    assert np.abs(photo.rgb.astype(np.int16) - expected).max() <= 2
    # Without the conversion the colours would be duller: P3 red is redder than sRGB red.
    assert photo.rgb[0, 0, 0] > patches[0, 0, 0] + 10


def test_an_iphone_style_p3_heic_is_converted_to_srgb() -> None:
    patches = colour_patches()
    buffer = io.BytesIO()
    Image.fromarray(patches).save(buffer, "HEIF", quality=95, icc_profile=P3_ICC)
    photo = decode_photo(buffer.getvalue())
    assert photo.mime == "image/heic"
    assert np.abs(photo.rgb.astype(np.int16) - p3_to_srgb(patches)).mean() < 3.0


def test_a_photo_without_a_profile_or_with_srgb_is_taken_as_it_is() -> None:
    patches = colour_patches()
    srgb_icc = icc_profile(adapted_to_d50(rgb_to_xyz(SRGB_PRIMARIES)), name="sRGB (test)")
    assert np.array_equal(decode_photo(png(patches)).rgb, patches)
    assert np.abs(decode_photo(png(patches, srgb_icc)).rgb.astype(np.int16) - patches).max() <= 1


def test_a_profile_that_swaps_red_and_green_is_honoured() -> None:
    srgb = adapted_to_d50(rgb_to_xyz(SRGB_PRIMARIES))
    swapped = icc_profile(srgb[:, [1, 0, 2]], name="swapped red and green")
    patches = colour_patches()
    photo = decode_photo(png(patches, swapped))
    assert np.abs(photo.rgb.astype(np.int16) - patches[..., [1, 0, 2]]).max() <= 1


def test_a_grey_photo_with_a_linear_grey_profile_is_brightened_to_srgb() -> None:
    linear_grey = icc_profile(None, curve=b"curv\0\0\0\0\0\0\0\x01\x01\x00", name="linear grey")
    ramp = np.tile(np.arange(0, 256, 1, dtype=np.uint8), (32, 1))
    photo = decode_photo(png(ramp, linear_grey, "L"))
    expected = np.round(srgb_encode(ramp / 255.0) * 255)
    assert np.abs(photo.rgb[..., 1].astype(np.int16) - expected).max() <= 2
    assert (photo.rgb[..., 0] == photo.rgb[..., 2]).all()


@pytest.mark.parametrize("icc", [
    b"this is not an ICC profile",
    P3_ICC[:100],  # truncated inside the header
    P3_ICC[:200],  # the tag table points past the end
    icc_profile(None, name="grey profile on a colour photo"),
])
def test_an_unreadable_or_mismatched_profile_is_ignored_and_the_photo_taken_as_srgb(
    icc: bytes,
) -> None:
    patches = colour_patches()
    photo = decode_photo(png(patches, icc))
    assert np.array_equal(photo.rgb, patches)
