"""Region hints: the user's taps or strokes grown into sky, water or keep-still regions.

Life of a hint::

    RegionHint (kind, normalised points or a stroke, optional sky drift direction)
      -> seeds at analysis resolution (small disks at the points, or the stroke drawn thick)
      -> grown by colour: pixels close (in Lab) to the colour around any seed, connected to the
         seeds without crossing a strong edge of the photo; enclosed holes filled (a clock's
         numerals, a cloud inside the sky); for keep-still also the hull of the tapped points
         and a margin of two pixels, so the object's outline is covered too
      -> merged into ``Regions``: sky/water hints are added, then every keep-still region is
         taken out of sky and water; it also zeroes the alpha at full resolution (model.py),
         so nothing inside it moves: KEEP_STILL always wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from alive_service.motion.interface import RegionHint
from alive_service.motion.regions import (
    Regions,
    _analysis_image,
    _components_touching,
    _fill_small_holes,
)

MAX_HINTS = 16
MAX_POINTS = 32
SEED_RADIUS = 0.012  # of the analysis image's long side
EDGE = 5.0  # Lab units per pixel: a gradient this strong is an object's outline
TOLERANCE = {"sky": 16.0, "water": 16.0, "still": 12.0}  # Lab distance to a seed's colour
LOOSE = 2.0  # colour distance (x tolerance) allowed where no edge intervenes
L_WEIGHT = {"sky": 0.5, "water": 0.5, "still": 1.0}  # sky and water vary mostly in lightness


def _seeds(hint: RegionHint, h: int, w: int) -> np.ndarray:
    seeds = np.zeros((h, w), np.uint8)
    pts = np.array([[x * (w - 1), y * (h - 1)] for x, y in hint.points], np.float64)
    pts = np.round(pts).astype(np.int32)
    r = max(1, round(SEED_RADIUS * max(h, w)))
    if hint.polyline and len(pts) > 1:
        cv2.polylines(seeds, [pts], False, 1, thickness=max(1, r), lineType=cv2.LINE_8)
    for x, y in pts:
        cv2.circle(seeds, (int(x), int(y)), r, 1, -1)
    return seeds > 0


def _edges(lab: np.ndarray) -> np.ndarray:
    smooth = cv2.GaussianBlur(lab, (0, 0), 1.0)
    mag = np.zeros(lab.shape[:2], np.float32)
    for c in range(3):
        gx = cv2.Sobel(smooth[..., c], cv2.CV_32F, 1, 0, ksize=3) / 8.0
        gy = cv2.Sobel(smooth[..., c], cv2.CV_32F, 0, 1, ksize=3) / 8.0
        mag += np.sqrt(gx * gx + gy * gy)
    return mag > EDGE


def grow_hint(lab: np.ndarray, edges: np.ndarray, hint: RegionHint) -> np.ndarray:
    """The region one hint points at, as a boolean mask at the resolution of ``lab``."""
    h, w = edges.shape
    seeds = _seeds(hint, h, w)
    local = cv2.blur(lab, (5, 5))
    weight = np.array([L_WEIGHT[hint.kind], 1.0, 1.0], np.float32)
    ys, xs = np.nonzero(seeds)
    pick = np.linspace(0, ys.size - 1, min(48, ys.size)).astype(int)
    refs = local[ys[pick], xs[pick]] * weight  # the colours the user pointed at
    smooth = cv2.blur(lab, (3, 3)) * weight
    dist = np.full((h, w), np.inf, np.float32)
    for ref in refs:
        np.minimum(dist, np.sqrt(((smooth - ref) ** 2).sum(axis=2)), out=dist)
    # Colour alone would stop part-way along a smooth shading (a wall lit from one side), and
    # edges alone would leak through any gap in an outline: a pixel joins when its colour is
    # close to a pointed-at one, or farther but not on an edge (connected to the seeds).
    tol = TOLERANCE[hint.kind]
    cand = (dist < tol) | ((dist < LOOSE * tol) & ~edges) | seeds
    region = _components_touching(cand, seeds)
    region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3))) > 0
    # Every enclosed hole, whatever its size: the user pointed at the whole object.
    region = _fill_small_holes(region | seeds, max_frac=1.0)
    if hint.kind == "still":
        pts = np.round(np.array(hint.points) * [w - 1, h - 1]).astype(np.int32)
        if len(pts) >= 3:  # the user tapped around the object: all of its inside is it
            hull = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
            region |= hull > 0
        # The outline itself (an edge pixel the growth stopped at) belongs to the object.
        region = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return region


def apply_hints(rgb: np.ndarray, regions: Regions, hints: Sequence[RegionHint]) -> Regions:
    """``regions`` (from ``find_regions`` on the same photo) with the user's hints applied."""
    if not hints:
        return regions
    small = _analysis_image(rgb)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    edges = _edges(lab)
    sky = regions.sky > 0.5
    water = regions.water > 0.5
    still = np.zeros_like(sky)
    for hint in hints:
        grown = grow_hint(lab, edges, hint)
        if hint.kind == "sky":
            sky |= grown
            water &= ~grown  # the latest word wins between sky and water
        elif hint.kind == "water":
            water |= grown
            sky &= ~grown
        else:
            still |= grown
    sky &= ~still
    water &= ~still
    rows = np.nonzero(water)[0]
    top = float(np.percentile(rows, 2) / water.shape[0]) if rows.size else 1.0
    bottom = float((np.percentile(rows, 98) + 1) / water.shape[0]) if rows.size else 1.0
    return replace(
        regions,
        sky=sky.astype(np.float32),
        water=water.astype(np.float32),
        water_top=top,
        water_bottom=bottom,
        still=still.astype(np.float32),
    )


def sky_direction(hints: Sequence[RegionHint]) -> float | None:
    """The last drift direction a sky hint asked for (degrees, counter-clockwise from right)."""
    chosen = None
    for hint in hints:
        if hint.kind == "sky" and hint.direction_deg is not None:
            chosen = hint.direction_deg
    return chosen


def describe(hints: Sequence[RegionHint]) -> str:
    """A compact, stable record of the hints for the video's parameters (and its C2PA claim)."""
    parts = []
    for hint in hints:
        pts = ";".join(f"{x:.4f},{y:.4f}" for x, y in hint.points)
        extra = "|line" if hint.polyline else ""
        if hint.direction_deg is not None:
            extra += f"|dir={hint.direction_deg:.1f}"
        parts.append(f"{hint.kind}:{pts}{extra}")
    return " ".join(parts)
