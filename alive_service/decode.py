"""Decode an uploaded photo defensively into plain RGB pixels.

Only JPEG, PNG and WebP are accepted. Limits on bytes and declared pixels are
checked before any pixel is decoded, so a decompression bomb costs nothing.
EXIF orientation is applied; all metadata is dropped (it never leaves this stage).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MIN_SIDE = 16
MAX_ASPECT = 8.0


class DecodeError(ValueError):
    """The upload is not a photo we accept; the message is safe to show the user."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple:  # crosses from the worker process to the server's
        return DecodeError, (self.reason, str(self))


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000
    # Decode JPEGs at a reduced DCT scale when the output needs far fewer pixels.
    target_long_side: int | None = None


@dataclass(frozen=True)
class Photo:
    rgb: np.ndarray  # HxWx3 uint8, EXIF-rotated
    mime: str
    width: int  # of the original, after rotation
    height: int
    sha256: str  # of the uploaded bytes
    data: bytes  # the upload, kept for the C2PA ingredient


def _sniff(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_photo(data: bytes, limits: DecodeLimits | None = None) -> Photo:
    limits = limits or DecodeLimits()
    if not data:
        raise DecodeError("EMPTY_PHOTO", "the photo is empty")
    if len(data) > limits.max_bytes:
        raise DecodeError(
            "PHOTO_TOO_LARGE",
            f"the photo is {len(data)} bytes; the limit is {limits.max_bytes} bytes",
        )
    kind = _sniff(data)
    if kind is None:
        raise DecodeError(
            "UNSUPPORTED_FORMAT", "the photo must be a JPEG, PNG or WebP image"
        )
    # Pillow's own bomb guard is a warning at 89 MP; ours is stricter and explicit.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[kind])
            width, height = img.size
            if width * height > limits.max_pixels:
                raise DecodeError(
                    "PHOTO_TOO_MANY_PIXELS",
                    f"the photo is {width}x{height} pixels; the limit is "
                    f"{limits.max_pixels // 1_000_000} megapixels",
                )
            if min(width, height) < MIN_SIDE:
                raise DecodeError(
                    "PHOTO_TOO_SMALL", f"the photo is {width}x{height}; each side must be "
                    f"at least {MIN_SIDE} pixels"
                )
            if max(width, height) / min(width, height) > MAX_ASPECT:
                raise DecodeError(
                    "BAD_ASPECT_RATIO",
                    f"the photo is {width}x{height}; the aspect ratio may be at most "
                    f"{MAX_ASPECT:g}:1",
                )
            if getattr(img, "n_frames", 1) > 1:
                raise DecodeError("ANIMATED_IMAGE", "animated images are not supported")
            orientation = img.getexif().get(0x0112, 1)
            if kind == "JPEG" and limits.target_long_side:
                # DCT scaling: a 12 MP JPEG decodes 4-8x faster at the size we need.
                scale = limits.target_long_side / max(width, height)
                if scale < 0.5:
                    img.draft("RGB", (int(width * scale) + 1, int(height * scale) + 1))
            img.load()
            if orientation != 1:
                img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
        except DecodeError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DecodeError("CORRUPT_PHOTO", f"the photo could not be decoded: {exc}") from None
        except Image.DecompressionBombError as exc:
            raise DecodeError("PHOTO_TOO_MANY_PIXELS", str(exc)) from None
        except Image.DecompressionBombWarning as exc:
            raise DecodeError("PHOTO_TOO_MANY_PIXELS", str(exc)) from None
    w, h = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return Photo(
        rgb=rgb,
        mime=FORMATS[kind],
        width=w,
        height=h,
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become white, as a phone's gallery shows them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.uint32) >> 8
        return np.ascontiguousarray(np.repeat(arr.astype(np.uint8)[..., None], 3, axis=2))
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)
