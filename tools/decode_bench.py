"""Decode and colour-conversion speed, side by side in one run (part of `make bench`).

1. A 12-megapixel photo (4240x2832) as JPEG, HEIC and AVIF: `decode_photo` at full size and
   as a request at the default 1280 long side uses it (JPEG then decodes at a reduced DCT
   scale; HEIC and AVIF have no such shortcut and decode every pixel). Also a JPEG carrying a
   non-sRGB profile: the cost of converting it to sRGB.
2. The encoder's RGB -> I420 conversion for 72 frames of 1280x720: OpenCV's fixed BT.601
   `cvtColor` (what we used before) against our BT.709 limited-range conversion, and
   `encode_mp4` of the same frames.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageCms

from alive_service.decode import DecodeLimits, decode_photo
from alive_service.encode import encode_mp4, rgb_to_i420_bt709


def _median_s(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _wide_profile() -> bytes:
    """A non-sRGB RGB matrix/TRC profile (sRGB with red and green colorants swapped): it
    takes the same LittleCMS path as a Display P3 photo."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    red, green = data.find(b"rXYZ"), data.find(b"gXYZ")  # tag table entries
    data[red + 4:red + 12], data[green + 4:green + 12] = (data[green + 4:green + 12],
                                                          data[red + 4:red + 12])
    return bytes(data)


def photos() -> dict[str, bytes]:
    from tools.bench import twelve_megapixel_jpeg

    jpeg = twelve_megapixel_jpeg()
    img = Image.open(io.BytesIO(jpeg))
    img.load()
    out = {"JPEG": jpeg}
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90, icc_profile=_wide_profile())
    out["JPEG + ICC"] = buffer.getvalue()
    buffer = io.BytesIO()
    img.save(buffer, "HEIF", quality=85, enc_params={"preset": "ultrafast"})
    out["HEIC"] = buffer.getvalue()
    buffer = io.BytesIO()
    img.save(buffer, "AVIF", quality=85, speed=10)
    out["AVIF"] = buffer.getvalue()
    return out


def bench_decode(runs: int) -> None:
    print("== decode: a 12 MP photo (4240x2832) per format; median of "
          f"{runs} runs (ratios against JPEG in the same run)")
    made = photos()
    results: dict[str, tuple[float, float]] = {}
    for name, data in made.items():
        full = _median_s(lambda d=data: decode_photo(d), runs)
        request = _median_s(lambda d=data: decode_photo(d, DecodeLimits(target_long_side=1280)),
                            runs)
        results[name] = (full, request)
    base_full, base_request = results["JPEG"]
    for name, (full, request) in results.items():
        print(f"  {name:<11} {len(made[name]) / 1e6:5.2f} MB   full {1000 * full:7.1f} ms "
              f"({full / base_full:4.2f}x)   at 1280 long side {1000 * request:7.1f} ms "
              f"({request / base_request:4.2f}x)")


def bench_colour(runs: int) -> None:
    from sklearn.datasets import load_sample_image

    rgb = cv2.resize(load_sample_image("china.jpg"), (1280, 720), interpolation=cv2.INTER_AREA)
    frames = np.stack([np.roll(rgb, 3 * i, axis=1) for i in range(72)])
    print(f"\n== RGB -> I420 for 72 frames of 1280x720; median of {runs} runs")
    bt601 = _median_s(lambda: [cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420) for f in frames], runs)
    bt709 = _median_s(lambda: [rgb_to_i420_bt709(f) for f in frames], runs)
    encode = _median_s(lambda: encode_mp4(frames, 24), max(1, runs // 2))
    print(f"  cvtColor BT.601 (before)   {1000 * bt601:7.1f} ms")
    print(f"  BT.709 limited (now)       {1000 * bt709:7.1f} ms   ({bt709 / bt601:.2f}x; "
          f"+{1000 * (bt709 - bt601) / 72:.2f} ms a frame)")
    print(f"  encode_mp4, whole          {1000 * encode:7.1f} ms   (the conversion's extra cost "
          f"is {100 * (bt709 - bt601) / encode:.0f}% of it)")


def main() -> None:
    bench_decode(runs=5)
    bench_colour(runs=5)


if __name__ == "__main__":
    main()
