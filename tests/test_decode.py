"""A photo in any accepted shape decodes to upright RGB; anything else gets a precise refusal."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alive_service.decode import DecodeError, DecodeLimits, decode_photo
from tests.conftest import jpeg
from tools.harness import ServerProcess


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_jpeg_png_and_webp_decode_to_rgb(landscape_rgb: np.ndarray) -> None:
    img = Image.fromarray(landscape_rgb)
    for fmt, mime in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        photo = decode_photo(encode(img, fmt))
        assert photo.mime == mime
        assert photo.rgb.shape == (427, 640, 3) and photo.rgb.dtype == np.uint8


def test_exif_orientation_is_applied_so_the_photo_is_upright(landscape_rgb: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    photo = decode_photo(jpeg(landscape_rgb, exif=exif.tobytes()))
    assert photo.rgb.shape[:2] == (640, 427)
    assert (photo.width, photo.height) == (427, 640)


def test_grayscale_alpha_and_16_bit_images_become_rgb() -> None:
    gray = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (64, 1)))
    assert decode_photo(encode(gray, "PNG")).rgb.shape == (64, 256, 3)
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    assert decode_photo(encode(rgba, "PNG")).rgb[0, 0].tolist() == [255, 255, 255]
    deep = Image.fromarray(np.full((64, 64), 65535, dtype=np.uint16))
    assert decode_photo(encode(deep, "PNG")).rgb.max() == 255


def test_a_large_jpeg_decodes_at_reduced_scale_when_the_output_is_small(
    landscape_rgb: np.ndarray,
) -> None:
    big = np.repeat(np.repeat(landscape_rgb, 4, axis=0), 4, axis=1)  # 2560x1708
    photo = decode_photo(jpeg(big), DecodeLimits(target_long_side=400))
    assert 400 <= max(photo.rgb.shape) < 2560
    assert (photo.width, photo.height) == (2560, 1708)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "EMPTY_PHOTO"),
        (b"GIF89a" + b"\0" * 100, "UNSUPPORTED_FORMAT"),
        (b"hello world, not a photo", "UNSUPPORTED_FORMAT"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 50, "CORRUPT_PHOTO"),
    ],
)
def test_unreadable_uploads_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as refused:
        decode_photo(data)
    assert refused.value.reason == reason


def test_a_truncated_jpeg_is_refused(landscape_rgb: np.ndarray) -> None:
    data = jpeg(landscape_rgb)
    with pytest.raises(DecodeError) as refused:
        decode_photo(data[: len(data) // 3])
    assert refused.value.reason == "CORRUPT_PHOTO"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size but carries almost no data (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))


def test_a_png_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(DecodeError) as refused:
        decode_photo(png_header_only(20000, 20000))
    assert refused.value.reason == "PHOTO_TOO_MANY_PIXELS"


def test_oversized_uploads_and_absurd_shapes_are_refused(landscape_rgb: np.ndarray) -> None:
    with pytest.raises(DecodeError) as too_big:
        decode_photo(jpeg(landscape_rgb), DecodeLimits(max_bytes=1000))
    assert too_big.value.reason == "PHOTO_TOO_LARGE"
    tiny = encode(Image.new("RGB", (1, 1)), "PNG")
    with pytest.raises(DecodeError) as too_small:
        decode_photo(tiny)
    assert too_small.value.reason == "PHOTO_TOO_SMALL"
    strip = encode(Image.new("RGB", (2000, 100)), "PNG")
    with pytest.raises(DecodeError) as aspect:
        decode_photo(strip)
    assert aspect.value.reason == "BAD_ASPECT_RATIO"


def test_an_animated_webp_is_refused() -> None:
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(DecodeError) as refused:
        decode_photo(data)
    assert refused.value.reason == "ANIMATED_IMAGE"


# ---- HEIC/HEIF and AVIF: what phones send ------------------------------------------


def patch_declared_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite every `ispe` box (a HEIF/AVIF image's declared size) without touching pixels."""
    out = bytearray(data)
    at = out.find(b"ispe")
    while at >= 0:
        out[at + 8:at + 16] = struct.pack(">II", width, height)
        at = out.find(b"ispe", at + 4)
    return bytes(out)


@pytest.fixture(scope="module")
def even_landscape(landscape_rgb: np.ndarray) -> np.ndarray:
    # Even sides: HEVC codes whole 2x2 blocks, so an odd side adds a crop box (clap).
    return np.ascontiguousarray(landscape_rgb[:426])


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "PNG"])
def test_a_large_heic_avif_or_png_is_reduced_to_what_the_output_needs(
    even_landscape: np.ndarray, fmt: str
) -> None:
    big = np.repeat(np.repeat(even_landscape, 3, axis=0), 3, axis=1)  # 1920x1278
    photo = decode_photo(encode(Image.fromarray(big), fmt), DecodeLimits(target_long_side=600))
    assert photo.rgb.shape == (426, 640, 3)  # a 3x3 box average
    assert (photo.width, photo.height) == (1920, 1278)
    assert np.abs(photo.rgb.astype(np.int16) - even_landscape).mean() < 5.0


@pytest.mark.parametrize(("fmt", "mime"), [("HEIF", "image/heic"), ("AVIF", "image/avif")])
def test_heic_and_avif_photos_decode_to_the_same_pixels_as_the_original(
    even_landscape: np.ndarray, fmt: str, mime: str
) -> None:
    photo = decode_photo(encode(Image.fromarray(even_landscape), fmt, quality=90))
    assert photo.mime == mime
    assert photo.rgb.shape == even_landscape.shape and photo.rgb.dtype == np.uint8
    error = np.abs(photo.rgb.astype(np.int16) - even_landscape).mean()
    assert error < 4.0  # the codec's own loss at quality 90


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_rotated_heic_or_avif_comes_out_upright(even_landscape: np.ndarray, fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # the phone was held upright
    photo = decode_photo(encode(Image.fromarray(even_landscape), fmt, exif=exif.tobytes()))
    assert (photo.width, photo.height) == (426, 640)
    upright = np.rot90(even_landscape, -1)
    assert np.abs(photo.rgb.astype(np.int16) - upright).mean() < 5.0


def test_a_heic_holding_several_photos_is_read_as_its_primary_photo(
    even_landscape: np.ndarray,
) -> None:
    """Galleries show the primary image (an edit over its original, a burst's pick)."""
    others = [Image.new("RGB", (320, 240), "red"), Image.fromarray(even_landscape)]
    data = encode(others[0], "HEIF", save_all=True, append_images=others[1:], primary_index=1)
    photo = decode_photo(data)
    assert photo.rgb.shape == even_landscape.shape
    assert np.abs(photo.rgb.astype(np.int16) - even_landscape).mean() < 5.0


def test_an_avif_sequence_is_refused_as_animated(even_landscape: np.ndarray) -> None:
    frames = [Image.fromarray(even_landscape), Image.fromarray(even_landscape[::-1].copy())]
    data = encode(frames[0], "AVIF", save_all=True, append_images=frames[1:])
    with pytest.raises(DecodeError) as refused:
        decode_photo(data)
    assert refused.value.reason == "ANIMATED_IMAGE"


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize("size", [(9000, 8000), (20000, 20000), (60000, 60000)])
def test_a_heic_or_avif_declaring_too_many_pixels_is_refused_before_decoding(
    even_landscape: np.ndarray, fmt: str, size: tuple[int, int]
) -> None:
    """The declared size is a lie (the pixels are 640x426): only the header was read."""
    data = patch_declared_size(encode(Image.fromarray(even_landscape), fmt), *size)
    with pytest.raises(DecodeError) as refused:
        decode_photo(data)
    assert refused.value.reason == "PHOTO_TOO_MANY_PIXELS"
    assert f"{size[0]}x{size[1]}" in str(refused.value)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_truncated_or_scrambled_heic_or_avif_is_refused_as_corrupt(
    even_landscape: np.ndarray, fmt: str
) -> None:
    data = encode(Image.fromarray(even_landscape), fmt)
    rng = np.random.default_rng(5)
    scrambled = bytearray(data)
    body = data.find(b"mdat") + 8
    scrambled[body:] = rng.integers(0, 256, len(data) - body, dtype=np.uint8).tobytes()
    for bad in (data[: len(data) // 2], data[:200], bytes(scrambled)):
        with pytest.raises(DecodeError) as refused:
            decode_photo(bad)
        assert refused.value.reason == "CORRUPT_PHOTO"


def test_other_iso_media_files_are_not_taken_for_photos() -> None:
    mp4_header = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\0" * 64
    with pytest.raises(DecodeError) as refused:
        decode_photo(mp4_header)
    assert refused.value.reason == "UNSUPPORTED_FORMAT"


def test_a_heic_or_avif_copy_of_a_photo_hashes_like_the_jpeg_so_bans_still_match(
    even_landscape: np.ndarray,
) -> None:
    """Safety and PDQ see the decoded pixels: the same photo in any format is the same photo."""
    from safety.hashing import hamming, pdq_hash

    original = pdq_hash(decode_photo(jpeg(even_landscape)).rgb)[0]
    for fmt in ("HEIF", "AVIF"):
        copy = pdq_hash(decode_photo(encode(Image.fromarray(even_landscape), fmt)).rgb)[0]
        assert hamming(original, copy) <= 16


# ---- the whole way through the real server --------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir=tmp_path_factory.mktemp("alive-phone-formats")) as process:
        yield process


@pytest.mark.integration
@pytest.mark.parametrize(("fmt", "mime"), [("HEIF", "image/heic"), ("AVIF", "image/avif")])
def test_a_heic_or_avif_photo_becomes_a_signed_watermarked_bt709_video(
    server: ServerProcess, even_landscape: np.ndarray, fmt: str, mime: str
) -> None:
    import av
    import c2pa

    from alive_service.client import AliveClient
    from alive_service.rpc import pb
    from provenance.watermark import extract_video_id

    data = encode(Image.fromarray(even_landscape), fmt, quality=90)
    with AliveClient(server.addr, token=server.token("phone")) as client:
        made = client.animate(data, "", pb.AnimateOptions(long_side=640, duration_s=1.0))
    with c2pa.Reader("video/mp4", io.BytesIO(made.mp4)) as reader:
        store = json.loads(reader.json())
    [ingredient] = store["manifests"][store["active_manifest"]]["ingredients"]
    assert ingredient["format"] == mime
    assert ingredient["title"] == f"source-photo.{mime.split('/')[1]}"
    assert extract_video_id(made.mp4)[0] == made.info.video_id
    with av.open(io.BytesIO(made.mp4)) as container:
        context = container.streams.video[0].codec_context
        assert (context.color_primaries, context.color_trc, context.colorspace) == (1, 1, 1)


@pytest.mark.integration
def test_corrupt_and_oversized_heic_and_avif_are_refused_and_nothing_is_stored(
    server: ServerProcess, even_landscape: np.ndarray
) -> None:
    import grpc

    from alive_service.client import AliveClient
    from tests.test_hostile import refused, snapshot

    before = snapshot(server)
    cases = []
    for fmt in ("HEIF", "AVIF"):
        data = encode(Image.fromarray(even_landscape), fmt)
        cases += [(data[: len(data) // 2], "CORRUPT_PHOTO"),
                  (patch_declared_size(data, 30000, 30000), "PHOTO_TOO_MANY_PIXELS")]
    with AliveClient(server.addr, token=server.token("mallory")) as client:
        for photo, reason in cases:
            got = refused(lambda p=photo: client.animate(p, ""))
            assert got == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert snapshot(server) == before


def test_the_moderators_contact_sheet_shows_a_heic_source_photo(
    even_landscape: np.ndarray,
) -> None:
    from alive_service.encode import encode_mp4
    from alive_service.mod_cli import contact_sheet

    clip = np.repeat(even_landscape[None, :, :640], 4, axis=0)
    mp4 = encode_mp4(clip, fps=24).mp4
    sheet = contact_sheet(mp4, encode(Image.fromarray(even_landscape), "HEIF"), frames=2)
    assert sheet.shape[1] == 3 * 320 and sheet.std() > 20
