"""How much of the water the finder FOUND moves, by quarter of its height (far to near):
``python -m tools.water_bands --only sunset_lake_boats jetty_boards``.

``tools.motion_eval`` scores the hand-drawn water, so a lake the finder half missed scores low
however well its found part moves. This separates the two: for each photo it prints the
fraction of the found water (the finder's mask at the output size, > 0.5) that moves, by the
eval's own rule (DIS flow > 1 px where the colour changed > 2 grey levels), overall and in four
bands of rows from the water's top (the far shore) to its foot, with the median flow there.
No hints and no faces: the finder's mask is recomputed here from the photo and its caption,
which is what the model does for these photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from alive_service.motion import MotionOptions, load_motion_model
from alive_service.motion.regions import find_regions
from alive_service.motion.steering import steer
from tools.motion_eval import load_set, motion_maps, rasterise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=Path("build/models"))
    parser.add_argument("--long-side", type=int, default=1280)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", nargs="*", default=None, help="only these photos (names)")
    args = parser.parse_args()
    model = load_motion_model(args.models, renderer="cv2")
    photos, _ = load_set()
    for photo in photos:
        if args.only and photo.name not in args.only:
            continue
        opts = MotionOptions(long_side=args.long_side, duration_s=args.seconds)
        clip = model.animate(photo.rgb, [], photo.caption, opts)
        h, w = clip.frames.shape[1:3]
        steering = steer(photo.caption or "")
        regions = find_regions(photo.rgb, steering.hint_sky, steering.hint_water)
        found = cv2.resize(regions.water, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
        if not found.any() or clip.params["water_strength"] == 0:
            print(f"{photo.name}: no water found")
            continue
        still = rasterise(photo.regions.get("still", []), h, w)
        moving, _, _ = motion_maps(clip, still)
        moves = moving > 1.0
        rows = np.nonzero(found.any(axis=1))[0]
        bands = []
        for q, part in enumerate(np.array_split(np.arange(rows[0], rows[-1] + 1), 4)):
            sel = np.zeros_like(found)
            sel[part] = True
            sel &= found
            if sel.any():
                bands.append(f"q{q} {moves[sel].mean():.3f} ({np.median(moving[sel]):.1f} px)")
        print(f"{photo.name}: found water {found.mean():.3f} of the frame, moving "
              f"{moves[found].mean():.3f}; far to near: " + ", ".join(bands))


if __name__ == "__main__":
    main()
