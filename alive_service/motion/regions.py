"""Where things may move: sky and water masks from classical vision, refined to object outlines.

Life of the masks::

    photo as uploaded --INTER_AREA--> analysis image (long side ANALYSIS_SIDE, short side >= 160;
      never the output-size copy, so the masks do not depend on the requested long side)
      -> Lab colour, gradient texture, structure-tensor orientation
      -> sky: smooth, sky-coloured pixels connected to the top edge, grown by colour similarity
      -> water below a mirrored far shore (a dark band across the width whose brightness
         profile below retraces the one above): wide, smooth or rippled, as bright as what it
         mirrors; when found it replaces the sky-based guess that follows
      -> water: wide, smooth-or-horizontally-rippled, cool or sky-reflecting area below the sky;
         water found below the sky's smooth core is taken out of the grown sky (water wins),
         unless the sky flows into it without a seam (then it is the sky's own lower part)
      -> a grey (not clearly blue) "sky" that runs down to the bottom edge is a backdrop: no sky
      -> coarse masks (0/1)           = ``Regions``
    Regions + output-size photo
      -> bilinear upsample, guided filter (the photo is the guide) = alpha that hugs outlines
      -> ``source``: the photo with still objects near the moving area filled in by the moving
         area's own colours (pull-push), so warped sky/water never drags a tower's edge along.

Thresholds are plain numbers tuned on the eval set (``python -m tools.motion_eval``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ANALYSIS_SIDE = 384
ANALYSIS_MIN_SHORT = 160
LINE_CONTRAST = 8.0  # L units a thin stroke stands out of its surroundings
LINE_MIN_LENGTH = 0.2  # of the long side: shorter strokes are birds, flecks, cloud edges
SEAM_STEP = 5.0  # Lab distance across a horizon below which sky and "water" are one surface
SHORE_DARK = 0.5  # a far shore's band is darker than half the sky above and the water below
SHORE_EDGE = 6.0  # L units per pixel (Sobel / 8) where water below a shore ends
SHORE_MIRROR = 0.5  # correlation of the brightness profiles below and above the waterline


@dataclass(frozen=True)
class Regions:
    sky: np.ndarray  # float32 (h, w) 0..1 at analysis resolution
    water: np.ndarray  # float32 (h, w) 0..1
    water_top: float  # top of the water as a fraction of the image height (1.0: no water)
    water_bottom: float  # its foot (nearest the viewer), same units
    still: np.ndarray | None = None  # float32 0/1: what the user asked to keep still (hints.py)

    @property
    def sky_fraction(self) -> float:
        return float(self.sky.mean())

    @property
    def water_fraction(self) -> float:
        return float(self.water.mean())


def _analysis_image(rgb: np.ndarray) -> np.ndarray:
    # Long side ANALYSIS_SIDE, but a panorama keeps enough rows for its clouds to look smooth.
    h, w = rgb.shape[:2]
    s = max(ANALYSIS_SIDE / max(h, w), ANALYSIS_MIN_SHORT / min(h, w))
    if s < 1.0:
        size = (max(8, round(w * s)), max(8, round(h * s)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


def _features(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lab (L 0..100), fine texture and horizontalness (0..1) per pixel.

    Fine texture is the local mean of |L - blur(L)|: clouds, haze and calm water have smooth
    gradients but little fine detail, while foliage, masonry and people have plenty.
    """
    f = rgb.astype(np.float32) / 255.0
    lab = cv2.cvtColor(f, cv2.COLOR_RGB2Lab)
    light = lab[..., 0] / 100.0
    texture = cv2.blur(np.abs(light - cv2.GaussianBlur(light, (0, 0), 1.5)), (5, 5))
    gray = cv2.GaussianBlur(light, (0, 0), 1.0)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.blur(gx * gx, (9, 9))
    jyy = cv2.blur(gy * gy, (9, 9))
    horizontal = jyy / (jxx + jyy + 1e-6)  # 1: horizontal streaks (ripples seen edge-on)
    return lab, texture, horizontal


def _components_touching(mask: np.ndarray, seeds: np.ndarray, min_frac: float = 0.0) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    if n <= 1:
        return np.zeros_like(mask, dtype=bool)
    keep = np.zeros(n, dtype=bool)
    keep[np.unique(labels[seeds & mask])] = True
    keep[0] = False
    keep &= stats[:, cv2.CC_STAT_AREA] >= min_frac * mask.size
    return keep[labels]


def _fill_small_holes(mask: np.ndarray, max_frac: float) -> np.ndarray:
    # Holes fully inside a region (a bird, a bright cloud core) move with it.
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    h, w = mask.shape
    out = mask.copy()
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        if not touches and area < max_frac * h * w:
            out[labels == i] = True
    return out


def detect_sky(
    lab: np.ndarray, texture: np.ndarray, horizontal: np.ndarray, hint: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Boolean sky mask, the sky's median Lab colour (None when there is no sky) and the seeds
    (the smooth core of the sky that the mask was grown from)."""
    h, w = texture.shape
    light, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    ys = np.arange(h, dtype=np.float32)[:, None] / h
    # The caption's hint only vouches that a sky exists (the gates below); it must not move
    # the texture thresholds, or a caption about clouds would let the sky swallow a hazy lake.
    tex_lo = 0.004
    # Sky colours: blue (down to a dusk blue), or grey-to-white (clouds, overcast, haze).
    # Not green, yellow or red.
    blue = (b < -6) & (b > -70) & (a > -22) & (a < 16) & (light > 8)
    neutral = (np.abs(a) < 9) & (np.abs(b + 2) < 14) & (light > 30)
    skylike = blue | neutral
    # Seeds: smooth sky colours, or clearly blue / bright grey ones with some texture (a sky
    # full of small clouds).
    strong = (b < -12) & (a > -22) & (a < 16) & (light > 8)
    seeds_cand = ((texture < tex_lo) | (strong & (texture < 3 * tex_lo))) & skylike & (ys < 0.6)
    # Seeds reach the top of the picture (allowing for a dark border, as panoramas have, or
    # branches across the top).
    top = np.zeros_like(seeds_cand)
    top[: max(2, int(0.15 * h))] = True
    # Small pieces are wall panels between windows or gaps in foliage, not sky.
    seeds = _components_touching(seeds_cand, top, min_frac=0.012)
    none = np.zeros((h, w), bool)
    if seeds.mean() < (0.01 if hint else 0.02):
        return none, None, none
    median = np.median(lab[seeds], axis=0)
    # A grey "sky" must be brighter than most of the picture (else: a wall, a road); a blue
    # one may be dark (dusk).
    if median[0] < np.percentile(light, 40) and median[2] > -12 and not hint:
        return none, None, none
    # Grow through sky colours with a little more fine texture (cloud edges) that are not
    # darker than the sky's own dark end (that would be a roof or a tree of a similar hue).
    dark_end = np.percentile(light[seeds], 5) - 12
    grow = skylike & (texture < tex_lo * 4.0) & (ys < 0.9) & (light > dark_end)
    # Low in the picture, stop at horizontal structure: that is water or land seen edge-on
    # (a hazy lake can match the sky's colour exactly).
    streaky = (cv2.blur(horizontal, (9, 9)) > 0.72) & (texture > tex_lo * 0.5) & (ys > 0.4)
    grow &= ~streaky
    sky = _components_touching(grow, seeds)
    sky = cv2.morphologyEx(sky.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    sky = _fill_small_holes(sky, 0.004)
    if sky.mean() < 0.02:
        return none, None, none
    return sky, median, seeds


def _smooth_or_rippled(
    texture: np.ndarray, horizontal: np.ndarray, ys: np.ndarray, ref: float, smooth_tex: float,
) -> np.ndarray:
    """Pixels that could be a water surface: smooth (fine texture under ``smooth_tex``), or
    horizontally streaked with no more texture than ripples make at their distance below
    ``ref`` (the water's top, as a fraction of the height; ``ys``: each row's)."""
    # Ripples grow toward the viewer (perspective), and so does the texture they make.
    ripple_tex = 0.02 + 0.04 * np.clip((ys - ref) / 0.4, 0.0, 1.0)
    rippled = (cv2.blur(horizontal, (9, 9)) > 0.7) & (texture < ripple_tex)
    return (texture < smooth_tex) | rippled


def detect_water(
    lab: np.ndarray,
    texture: np.ndarray,
    horizontal: np.ndarray,
    sky: np.ndarray,
    sky_lab: np.ndarray | None,
    hint: bool = False,
) -> np.ndarray:
    """Boolean water mask: a wide area below the sky, cool or sky-coloured, smooth or rippled."""
    h, w = texture.shape
    light, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    ys = np.arange(h, dtype=np.float32)[:, None] / h
    sky_rows = np.nonzero(sky.any(axis=1))[0]
    ref = sky_rows.max() / h if sky_rows.size else 0.35
    below = ys > ref - 0.05
    cool = (b < 8) & (np.abs(a) < 12) & (light > 10)
    if sky_lab is not None:
        reflects = (np.abs(a - sky_lab[1]) < 10) & (np.abs(b - sky_lab[2]) < 14)
        cool = cool | reflects
    surface = _smooth_or_rippled(texture, horizontal, ys, ref, 0.008 if hint else 0.006)
    cand = cool & surface & below & ~sky
    cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)) > 0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=4)
    water = np.zeros((h, w), bool)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        comp = labels == i
        if area < (0.02 if hint else 0.035) * h * w or bw < (0.25 if hint else 0.3) * w:
            continue
        # Water surfaces read as horizontal bands: ripples and reflections are horizontal.
        horiz = float(np.median(horizontal[comp]))
        if horiz < (0.5 if hint else 0.58):
            continue
        # Water mirrors the sky, so it is not much darker than the sky (a road or a field in
        # shadow is). Without a sky to compare, only a caption can vouch for it.
        if sky_lab is not None:
            if np.median(light[comp]) < 0.55 * sky_lab[0]:
                continue
        elif not hint:
            continue
        water |= comp
    water = _fill_small_holes(water, 0.01)
    return water


def _colours_of(lab: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """Pixels whose hue (Lab a, b in bins of 6 units, one bin of slack) occurs in ``sample``.

    Water just below the shore shows the colours the water has (the sky's reflection, a
    sunset's glow); a jetty's boards or a beach reaching into the same rows do not share them.
    """
    ia = np.clip(((lab[..., 1] + 60.0) / 6.0).astype(np.int32), 0, 23)
    ib = np.clip(((lab[..., 2] + 72.0) / 6.0).astype(np.int32), 0, 27)
    hist = np.bincount((ia * 28 + ib)[sample], minlength=24 * 28).reshape(24, 28)
    palette = hist >= max(1.0, 0.01 * float(sample.sum()))
    palette = cv2.dilate(palette.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return palette[ia, ib]


def mirrored_shore(light: np.ndarray) -> tuple[int, int, float] | None:
    """A far shore with its reflection: the row of its waterline, the water's top row and the
    brightness of what the water mirrors; None when the picture shows no such shore.

    Seen across a calm lake, the far shore (hills, a tree line, islands) and its reflection make
    one dark band across the whole width, with the bright sky above it and the bright water
    below it, and the water's rows mirror the sky's about the waterline: going down from the
    band's middle the brightness profile retraces the profile going up (dark band, then
    bright; in a sunset the bright glow and then its darker clouds). A dark stripe in a road
    or a fence has light on both sides too, but not a mirrored profile.
    """
    h = light.shape[0]
    prof = cv2.blur(np.median(light, axis=1).astype(np.float32)[:, None], (1, 5))[:, 0]
    span, depth = max(3, int(0.2 * h)), max(3, int(0.1 * h))
    for m in range(max(1, int(0.15 * h)), min(h - depth - 1, int(0.7 * h))):
        if prof[m] > prof[m - 1] or prof[m] > prof[m + 1]:
            continue  # only local minima: the middle of the dark band
        bright = min(prof[max(0, m - span) : m].max(), prof[m : m + span].max())
        if prof[m] >= SHORE_DARK * bright:
            continue
        if np.mean(light[m] < SHORE_DARK * bright) < 0.8:
            continue  # not a band across the width (a post, a boat)
        run = np.nonzero(prof[m : m + span] > prof[m] + 1.0)[0]
        axis = m + (int(run[0]) - 1) // 2 if run.size else m  # the middle of a flat bottom
        k = np.arange(1, min(depth, axis, h - axis))
        down, up = prof[axis + k], prof[axis - k]
        if down.std() < 1.0 or up.std() < 1.0:
            continue
        if float(np.corrcoef(down, up)[0, 1]) < SHORE_MIRROR:
            continue
        below = prof[axis : axis + span]
        bright = below >= 0.5 * (prof[m] + below.max())
        start = int(np.argmax(bright))
        dark_again = np.nonzero(~bright[start:])[0]
        if (dark_again[0] if dark_again.size else span) < 0.07 * h:
            continue  # a bright stripe (a rail, a kerb), not a lake stretching toward us
        above = prof[max(0, axis - span) : axis]
        mirrored = float(np.median(above[above >= 0.5 * (prof[m] + above.max())]))
        return axis, axis + start, mirrored
    return None


def detect_water_below_shore(
    lab: np.ndarray,
    texture: np.ndarray,
    horizontal: np.ndarray,
    axis: int,
    top: int,
    mirrored: float,
) -> np.ndarray:
    """Water below a mirrored shore: wide, smooth or horizontally rippled, starting at the
    shore, and not much darker than what it mirrors (gravel, boats and a dark beach are)."""
    h, w = texture.shape
    light = lab[..., 0]
    ys = np.arange(h, dtype=np.float32)[:, None] / h
    ref = top / h
    cand = (_smooth_or_rippled(texture, horizontal, ys, ref, 0.006) & (ys >= ref)
            & (light > 0.5 * mirrored))
    mirrored_part = (ys < axis / h) & (texture < 0.004)
    cand &= _colours_of(lab, (cand & (ys < ref + 0.05)) | mirrored_part)
    cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)) > 0
    # The water ends at a strong edge (a jetty's front board, a boat's hull) even where the
    # thing beyond it has one of the sky's colours.
    gray = cv2.GaussianBlur(light, (0, 0), 1.0)
    edge = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    cand &= edge < 8.0 * SHORE_EDGE
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=4)
    water = np.zeros((h, w), bool)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if y > top + 0.05 * h or area < 0.035 * h * w or bw < 0.3 * w:
            continue  # water begins at the shore and is wide
        comp = labels == i
        if float(np.median(horizontal[comp])) < 0.58:
            continue
        water |= comp
    return _fill_small_holes(water, 0.01)


def _drop_sky_continuations(lab: np.ndarray, water: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """Water candidates that the sky flows into without a seam are the sky's own lower part.

    A smooth sky (or a grey backdrop) brightens or fades steadily toward its bottom; below its
    smooth core that reads as "wide, smooth, horizontal, sky-coloured", i.e. as water. Real
    water meets the sky at a horizon: a shore, or at least a step in colour. So a candidate
    whose top edge, where the grown sky lies above it, shows no step over most of its width
    is given back to the sky.
    """
    if not water.any():
        return water
    h, w = water.shape
    smooth = cv2.blur(lab, (5, 5))
    n, labels = cv2.connectedComponents(water.astype(np.uint8), connectivity=4)
    out = water.copy()
    cols = np.arange(w)
    for i in range(1, n):
        comp = labels == i
        has = comp.any(axis=0)
        top = np.argmax(comp, axis=0)
        above = np.clip(top - 4, 0, h - 1)
        below = np.clip(top + 3, 0, h - 1)
        under_sky = has & (top >= 4) & sky[above, cols]
        if under_sky.sum() < 0.2 * has.sum():
            continue  # land separates it from the sky: the usual lake below a shore
        step = np.linalg.norm(smooth[above, cols] - smooth[below, cols], axis=1)
        if np.mean(step[under_sky] < SEAM_STEP) > 0.6:
            out &= ~comp
    return out


def _backdrop(sky: np.ndarray, sky_lab: np.ndarray) -> bool:
    """A grey "sky" that runs down to the bottom edge is a wall, a clock face or studio paper.

    A real sky ends at a horizon or at things standing in front of it; only a sky seen looking
    up reaches the bottom of the picture, and that one is blue (a grey one would show no
    visible motion anyway). Strongly blue skies are left alone.
    """
    if sky_lab[2] < -12:
        return False
    return float(sky[-max(2, sky.shape[0] // 20) :].mean()) > 0.3


def thin_lines(light: np.ndarray) -> np.ndarray:
    """Long thin structures (cables, masts, rigging, a jetty's boards) in the analysis image.

    Thin bright or dark strokes stand out of a morphological top-hat / black-hat; long ones
    (longer than LINE_MIN_LENGTH of the long side: not a bird or a cloud fleck) are kept out
    of the sky and water masks, with a one-pixel margin, so they are not dragged along.
    """
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    hats = np.maximum(
        cv2.morphologyEx(light, cv2.MORPH_TOPHAT, k), cv2.morphologyEx(light, cv2.MORPH_BLACKHAT, k)
    )
    thin = (hats > LINE_CONTRAST).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(thin, connectivity=8)
    if n <= 1:
        return np.zeros(light.shape, bool)
    length = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    box_area = stats[:, cv2.CC_STAT_WIDTH] * stats[:, cv2.CC_STAT_HEIGHT]
    sparse = stats[:, cv2.CC_STAT_AREA] < 0.35 * box_area  # a stroke, not a blob
    keep = (length >= LINE_MIN_LENGTH * max(light.shape)) & sparse
    keep[0] = False
    lines = keep[labels].astype(np.uint8)
    return cv2.dilate(lines, np.ones((3, 3), np.uint8)) > 0


def find_regions(rgb: np.ndarray, hint_sky: bool = False, hint_water: bool = False) -> Regions:
    small = _analysis_image(rgb)
    lab, texture, horizontal = _features(small)
    sky, sky_lab, seeds = detect_sky(lab, texture, horizontal, hint_sky)
    if sky_lab is not None:
        # A hazy lake can match the sky's colour and smoothness, and the growth from the seeds
        # can leak into it through a gap in its far shore (whether it does depends on pixel
        # details of the analysis image). Water wins such a conflict: look for water below the
        # sky's smooth core alone, and take what is found out of the grown sky.
        # Without the caption's hint: a caption must not turn sky into water either.
        first = detect_water(lab, texture, horizontal, seeds, sky_lab)
        first = _drop_sky_continuations(lab, first, sky)
        if first.any():
            sky = _components_touching(sky & ~first, seeds)
    # A far shore mirrored in the water is better evidence than the sky's colour (a sunset's
    # glow is not sky-blue, a sky may not be found at all), and it tells how bright the water
    # must be: what lies below the shore and mirrors it is the water, even where the sky's
    # growth reached it through a gap; darker gravel is not. So when there is such a shore,
    # its water replaces the sky-based guess.
    shore = mirrored_shore(lab[..., 0])
    water = np.zeros_like(sky)
    if shore is not None:
        water = detect_water_below_shore(lab, texture, horizontal, *shore)
        if water.any() and sky_lab is not None:
            sky = _components_touching(sky & ~water, seeds)
    if not water.any():
        water = detect_water(lab, texture, horizontal, sky, sky_lab, hint_water)
        if sky_lab is not None:
            # The same seamless test below the grown sky: what continues it is sky (a sky seen
            # looking up reaches the bottom edge), not water.
            kept = _drop_sky_continuations(lab, water, sky)
            sky |= water & ~kept
            water = kept
    if sky_lab is not None and _backdrop(sky, sky_lab) and not hint_sky:
        sky = np.zeros_like(sky)
    lines = thin_lines(lab[..., 0])
    sky &= ~lines
    water &= ~lines
    rows = np.nonzero(water)[0]
    top = float(np.percentile(rows, 2) / water.shape[0]) if rows.size else 1.0
    bottom = float((np.percentile(rows, 98) + 1) / water.shape[0]) if rows.size else 1.0
    return Regions(sky.astype(np.float32), water.astype(np.float32), top, bottom)


def refine_alpha(
    mask: np.ndarray, photo: np.ndarray, guide: np.ndarray | None = None
) -> np.ndarray:
    """Upsample a coarse 0..1 mask to the photo's size so that it follows the photo's edges.

    Fast guided filter (He & Sun 2015): the linear coefficients are fitted at a quarter of
    the analysis-to-output scale and applied with the full-resolution guide, so edges are as
    sharp as the photo's while the cost stays near one full-resolution multiply-add.
    """
    h, w = photo.shape[:2]
    if not mask.any():
        return np.zeros((h, w), np.float32)
    if guide is None:
        guide = gray_guide(photo)
    scale = max(h, w) / max(mask.shape)
    sub = max(1, int(scale))  # fit at about the analysis resolution
    hs, ws = max(8, h // sub), max(8, w // sub)
    guide_s = cv2.resize(guide, (ws, hs), interpolation=cv2.INTER_AREA)
    mask_s = cv2.resize(mask, (ws, hs), interpolation=cv2.INTER_LINEAR)
    radius = max(2, round(1.5 * scale / sub))
    a, b = _guided_coefficients(guide_s, mask_s, radius, 1e-3)
    alpha = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR) * guide
    alpha += cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
    # Sharpen the soft matte a little and drop the faint tails that would drag object edges.
    alpha = (alpha - 0.5) * 1.6 + 0.5
    np.clip(alpha, 0.0, 1.0, out=alpha)
    alpha[alpha < 0.06] = 0.0
    alpha[alpha > 0.97] = 1.0  # a crisp interior: only a thin band needs blending
    return alpha


def gray_guide(photo: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1.0 / 255.0)


def _guided_coefficients(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    k = (2 * radius + 1, 2 * radius + 1)
    mean_i = cv2.boxFilter(guide, -1, k)
    mean_p = cv2.boxFilter(src, -1, k)
    corr_ip = cv2.boxFilter(guide * src, -1, k)
    var_i = cv2.boxFilter(guide * guide, -1, k) - mean_i * mean_i
    a = (corr_ip - mean_i * mean_p) / (var_i + eps)
    b = mean_p - a * mean_i
    return cv2.boxFilter(a, -1, k), cv2.boxFilter(b, -1, k)


def pull_push_fill(image: np.ndarray, known: np.ndarray, step: int = 4) -> np.ndarray:
    """Fill pixels where ``known`` is False from known neighbours, coarse to fine.

    The fill only shows where a still object's outline is uncovered by a few pixels of
    motion, so it is computed at 1/``step`` resolution and upsampled.
    """
    if known.all() or not known.any():
        return image.copy()
    h, w = known.shape
    hs, ws = max(2, h // step), max(2, w // step)
    wgt = cv2.resize(known.astype(np.float32), (ws, hs), interpolation=cv2.INTER_AREA)
    img = cv2.resize(image, (ws, hs), interpolation=cv2.INTER_AREA).astype(np.float32)
    # Weights of partly known cells are exact but their colours mix in unknown pixels; use
    # only cells known throughout as sources.
    wgt = (wgt > 0.99).astype(np.float32)
    pyramid: list[tuple[np.ndarray, np.ndarray]] = []
    cur_i, cur_w = img * wgt[..., None], wgt
    while min(cur_w.shape) > 2:
        pyramid.append((cur_i, cur_w))
        cur_i = cv2.pyrDown(cur_i)
        cur_w = cv2.pyrDown(cur_w)
    filled = cur_i / np.maximum(cur_w, 1e-6)[..., None]
    for level_i, level_w in reversed(pyramid):
        lh, lw = level_w.shape
        up = cv2.pyrUp(filled, dstsize=(lw, lh))
        own = level_i / np.maximum(level_w, 1e-6)[..., None]
        conf = np.clip(level_w * 4.0, 0.0, 1.0)[..., None]  # trust own colour where well known
        filled = own * conf + up * (1.0 - conf)
    small = np.clip(filled, 0, 255).astype(np.uint8)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.copyTo(image, known.astype(np.uint8), out)
    return out
