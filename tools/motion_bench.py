"""Speed and memory of one request: ``python -m tools.motion_bench``.

Feeds a 12-megapixel photo (a sample image cropped to 16:9 and upscaled to 4608x2592; decode is
not timed) through ``animate`` for a 1280x720, 72-frame clip, and prints frames per second and
the request's peak resident memory above the process's baseline. Runs three scenes: a sky with
water (the temple), a face, and a photo with nothing to animate (camera move).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from alive_service.motion import MotionOptions, load_motion_model


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:  # Linux: writing 5 resets VmHWM (the peak) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def twelve_mp(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    ch = min(h, round(w * 9 / 16))
    cw = round(ch * 16 / 9)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = rgb[y0 : y0 + ch, x0 : x0 + cw]
    return np.ascontiguousarray(cv2.resize(crop, (4608, 2592), interpolation=cv2.INTER_CUBIC))


def scenes() -> list[tuple[str, np.ndarray, list]]:
    from skimage import data
    from sklearn.datasets import load_sample_image

    from tools.motion_eval import HandFace

    astronaut = twelve_mp(data.astronaut())
    # The astronaut's MTCNN landmarks mapped onto the 16:9 crop, upscaled.
    s = 4608 / 512
    y_off = (512 - 288) // 2
    marks = ((205.0, 101.7), (246.8, 103.7), (224.7, 129.0), (201.7, 139.2), (245.3, 141.9))
    face = HandFace(
        (181 * s, (62 - y_off) * s, 268 * s, (172 - y_off) * s),
        tuple((x * s, (y - y_off) * s) for x, y in marks),
    )
    return [
        ("sky+water (china)", twelve_mp(load_sample_image("china.jpg")), []),
        ("face (astronaut)", astronaut, [face]),
        ("camera (chelsea)", twelve_mp(data.chelsea()), []),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=Path("build/models"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--renderer", default="cv2", choices=["auto", "cv2", "onnx"])
    args = parser.parse_args()
    model = load_motion_model(args.models, renderer=args.renderer, threads=args.threads)
    opts = MotionOptions(long_side=1280, duration_s=3.0, fps=24)
    print(f"motion bench: 12 MP in, 1280x720 x 72 frames out, {args.threads} threads")
    for name, rgb, faces in scenes():
        model.animate(rgb, faces, "", MotionOptions(long_side=320, duration_s=0.5))  # warm up
        best = cpu = float("inf")
        peak = 0
        for _ in range(args.repeat):
            base = _rss_kib("VmRSS")
            _reset_peak()
            start, start_cpu = time.perf_counter(), time.process_time()
            clip = model.animate(rgb, faces, "", opts)
            best = min(best, time.perf_counter() - start)
            cpu = min(cpu, time.process_time() - start_cpu)
            peak = max(peak, _rss_kib("VmHWM") - base)
            del clip
        n = 72
        # CPU seconds are what the request costs whatever else runs on the machine; wall
        # time on a shared machine can be far worse than CPU / threads.
        print(
            f"  {name:20s} {n / best:7.1f} frames/s wall ({best:.3f} s), "
            f"{cpu:.3f} CPU-s (~{n / (cpu / args.threads):.0f} frames/s if {args.threads} "
            f"cores were free), peak +{peak / 1024:.0f} MB over baseline"
        )


if __name__ == "__main__":
    main()
