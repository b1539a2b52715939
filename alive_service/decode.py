"""Decode an uploaded photo defensively into plain sRGB pixels.

JPEG, PNG, WebP, HEIC/HEIF (the iPhone camera's format; pillow-heif, whose wheels bundle
libheif) and AVIF (Pillow's own libavif plugin) are accepted. Limits on bytes and declared
pixels are checked before any pixel is decoded, so a decompression bomb costs nothing.
EXIF orientation (and HEIF's irot/imir, which libheif applies) is honoured; all metadata is
dropped (it never leaves this stage).

Colour: an embedded ICC profile is converted to sRGB with LittleCMS (relative colorimetric)
before anything else sees the pixels, so safety, PDQ hashing and the motion model all get
the same sRGB image; a photo without a profile is taken as sRGB. A profile LittleCMS cannot
read, or one that does not fit the pixels (a grey profile on a colour image), is ignored
and the photo is taken as sRGB: that is what browsers and phone galleries show for such a
file, and refusing would turn away photos every viewer displays.

One image only: animated WebP and AVIF sequences are refused. A HEIF file holding several
images (an edited photo with its original, a burst) is decoded as its primary image, the one
every gallery shows; the others are never decoded.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# Only the primary image is opened: thumbnails, depth maps and auxiliary images are never
# parsed into Pillow objects.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "HEIF": "image/heic",
    "AVIF": "image/avif",
}
MIN_SIDE = 16
MAX_ASPECT = 8.0
# ISO BMFF brands (the `ftyp` box) that name a HEIF still image or collection.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                          b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


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
    rgb: np.ndarray  # HxWx3 uint8 sRGB, upright
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
    if data[4:8] == b"ftyp":
        # Major brand, minor version, then compatible brands, to the end of the box. AVIF
        # files also list the generic HEIF brand mif1, so AV1 is looked for first.
        end = min(int.from_bytes(data[:4], "big"), len(data), 256)
        brands = {data[8:12]} | {data[i:i + 4] for i in range(16, end - 3, 4)}
        if brands & _AVIF_BRANDS:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
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
            "UNSUPPORTED_FORMAT",
            "the photo must be a JPEG, PNG, WebP, HEIC/HEIF or AVIF image",
        )
    if kind in ("HEIF", "AVIF"):
        # libavif and libheif refuse huge declared sizes themselves, but only with a vague
        # "cannot identify"; read the declared sizes first to say what is wrong.
        declared = _heif_declared_sizes(data)
        if declared:
            width, height = max(declared, key=lambda size: size[0] * size[1])
            _check_pixels(width, height, limits)
    # Pillow's own bomb guard is a warning at 89 MP; ours is stricter and explicit.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # Opening parses headers only (for HEIF and AVIF too: libheif and libavif read
            # the container's declared sizes); pixels are decoded by load().
            img = Image.open(io.BytesIO(data), formats=[kind])
            width, height = img.size
            _check_pixels(width, height, limits)
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
            # A HEIF's "frames" are separate photos; Pillow opened the primary one.
            if kind != "HEIF" and getattr(img, "n_frames", 1) > 1:
                raise DecodeError("ANIMATED_IMAGE", "animated images are not supported")
            # libheif has already applied HEIF's rotation and reports orientation 1.
            orientation = img.getexif().get(0x0112, 1)
            icc = img.info.get("icc_profile")
            if kind == "JPEG" and limits.target_long_side:
                # DCT scaling: a 12 MP JPEG decodes 4-8x faster at the size we need.
                scale = limits.target_long_side / max(width, height)
                if scale < 0.5:
                    img.draft(img.mode, (int(width * scale) + 1, int(height * scale) + 1))
            img.load()
            if kind != "JPEG" and limits.target_long_side and img.mode in _REDUCIBLE:
                # The same shortcut for the rest, after decoding: a box average down to at
                # least the size we need, so rotation and colour conversion touch 9x fewer
                # pixels of a 12 MP HEIC.
                factor = max(width, height) // limits.target_long_side
                if factor >= 2:
                    img = img.reduce(factor)
            if orientation != 1:
                img = ImageOps.exif_transpose(img)
            rgb = _to_srgb(img, icc)
        except DecodeError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, RuntimeError) as exc:
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


def _check_pixels(width: int, height: int, limits: DecodeLimits) -> None:
    if width * height > limits.max_pixels:
        raise DecodeError(
            "PHOTO_TOO_MANY_PIXELS",
            f"the photo is {width}x{height} pixels; the limit is "
            f"{limits.max_pixels // 1_000_000} megapixels",
        )


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """ISO BMFF boxes in data[start:end]: (type, body start, body end). Stops at the first
    malformed header; whatever follows is left for libheif/libavif to refuse."""
    found = []
    while start + 8 <= end:
        size = int.from_bytes(data[start:start + 4], "big")
        kind = data[start + 4:start + 8]
        header = 8
        if size == 1 and start + 16 <= end:
            size, header = int.from_bytes(data[start + 8:start + 16], "big"), 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            break
        found.append((kind, start + header, start + size))
        start += size
    return found


def _heif_declared_sizes(data: bytes) -> list[tuple[int, int]]:
    """Every `ispe` (image spatial extents) in meta/iprp/ipco: the sizes the file declares
    for its images, grids and tiles, read without decoding anything."""
    sizes = []
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind != b"meta":
            continue
        for child, c_start, c_end in _boxes(data, start + 4, end):  # meta is a full box
            if child != b"iprp":
                continue
            for prop, p_start, p_end in _boxes(data, c_start, c_end):
                if prop != b"ipco":
                    continue
                for item, i_start, i_end in _boxes(data, p_start, p_end):
                    if item == b"ispe" and i_end - i_start >= 12:
                        sizes.append((int.from_bytes(data[i_start + 4:i_start + 8], "big"),
                                      int.from_bytes(data[i_start + 8:i_start + 12], "big")))
    return sizes


def _to_srgb(img: Image.Image, icc: bytes | None) -> np.ndarray:
    """Flatten alpha onto white, bring every mode to 8 bits, convert the profile to sRGB."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become white, as a phone's gallery shows them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.uint32) >> 8
        img = Image.fromarray(arr.astype(np.uint8), "L")
    elif img.mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")
    if icc and img.mode == "L":
        # 256 possible values: convert each exactly once (LittleCMS's optimised 8-bit grey
        # path is off by up to 10 levels in the shadows).
        lut = _grey_to_srgb_lut(icc)
        if lut is not None:
            return lut[np.asarray(img)]
    transform = _to_srgb_transform(icc, img.mode) if icc else None
    if transform is not None:
        img = ImageCms.applyTransform(img, transform)
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


_PROFILE_SPACES = {"RGB": "RGB ", "L": "GRAY", "CMYK": "CMYK"}
_REDUCIBLE = frozenset({"RGB", "RGBA", "L", "LA", "CMYK"})
# Every 17th level of each channel: enough to tell an sRGB profile from any other.
_PROBE = Image.fromarray(
    np.stack(np.meshgrid(*[np.arange(0, 256, 17, dtype=np.uint8)] * 3, indexing="ij"), -1)
    .reshape(64, 64, 3), "RGB")


@lru_cache(maxsize=16)
def _grey_to_srgb_lut(icc: bytes) -> np.ndarray | None:
    transform = _to_srgb_transform(icc, "L", ImageCms.Flags.NOOPTIMIZE)
    if transform is None:
        return None
    ramp = Image.fromarray(np.arange(256, dtype=np.uint8)[None, :], "L")
    return np.ascontiguousarray(np.asarray(ImageCms.applyTransform(ramp, transform))[0])


@lru_cache(maxsize=16)
def _to_srgb_transform(
    icc: bytes, mode: str, flags: ImageCms.Flags = ImageCms.Flags.NONE
) -> ImageCms.ImageCmsTransform | None:
    """A LittleCMS transform from ``icc`` to sRGB, or None to take the pixels as sRGB (an
    unreadable profile, or one made for another kind of pixel). Cached: phones embed the
    same few profiles, and building a transform costs more than applying a small one."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.profile.xcolor_space != _PROFILE_SPACES.get(mode):
            return None
        transform = ImageCms.buildTransform(
            source, _SRGB, mode, "RGB",
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, flags=flags,
        )
        if mode == "RGB":
            # Most Android photos carry an sRGB profile: skip a conversion that changes
            # nothing (it costs ~100 ms on 12 MP).
            probe = np.asarray(_PROBE, dtype=np.int16)
            moved = np.abs(np.asarray(ImageCms.applyTransform(_PROBE, transform)) - probe)
            if moved.max() <= 1:
                return None
        return transform
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
