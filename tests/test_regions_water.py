"""The region finder's water: lakes it must find, and surfaces it must not take for water.

Scenes are drawn here (no photo files): what matters is the structure the rules look at, a far
shore mirrored in calm water, a sunset glow that is not sky-blue, boards and gravel in front.
"""

from __future__ import annotations

import cv2
import numpy as np

from alive_service.motion.regions import find_regions, mirrored_shore

H, W = 240, 360


def _shore_heights(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    # Hills, a tree line or islands: a silhouette whose height varies along the shore.
    return np.convolve(rng.uniform(low, high, W), np.ones(9) / 9, mode="same")


def _mirror_below(img: np.ndarray, axis: int, dim: float, smear: int) -> None:
    # Calm water reflects what stands above the waterline, a little darker and smeared
    # sideways by the faintest ripples.
    rows = np.clip(axis - 1 - np.arange(H - axis), 0, None)  # past the top: the top row
    refl = img[rows] * dim
    img[axis:] = cv2.blur(refl, (smear, 1))


def dusk_lake(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mirror-calm lake at dusk: a deep blue sky paling toward the horizon, dark islands on
    the waterline, and their reflection. Returns the photo, the lake (away from the islands'
    reflection) and the islands."""
    rng = np.random.default_rng(seed)
    axis = int(0.55 * H)
    ys = np.linspace(0, 1, axis)[:, None]
    img = np.zeros((H, W, 3), np.float32)
    img[:axis, :, 0] = 30 + 90 * ys
    img[:axis, :, 1] = 50 + 100 * ys
    img[:axis, :, 2] = 120 + 100 * ys
    top = (axis - _shore_heights(rng, 3, 28)).astype(int)
    islands = np.zeros((H, W), bool)
    islands[:axis] = np.arange(axis)[:, None] >= top[None, :]
    img[islands] = np.array([28, 32, 30]) + rng.normal(0, 6, (int(islands.sum()), 3))
    _mirror_below(img, axis, 0.85, 5)
    img += rng.normal(0, 1.5, img.shape)
    lake = np.zeros((H, W), bool)
    lake[axis + 30 :] = True
    return np.clip(img, 0, 255).astype(np.uint8), lake, islands


def sunset_lake(seed: int = 2) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A lake under a sunset: blue sky on top, an orange glow above dark hills, the glow and
    the hills mirrored in the lake, dark gravel in front. Returns the photo and its parts."""
    rng = np.random.default_rng(seed)
    axis, gravel_top = int(0.4 * H), int(0.75 * H)
    img = np.zeros((H, W, 3), np.float32)
    ys = np.linspace(0, 1, axis)[:, None]
    glow = np.clip((ys - 0.35) / 0.5, 0, 1)  # orange near the horizon, blue above
    img[:axis] = (1 - glow)[..., None] * np.array([60, 90, 160]) + glow[..., None] * np.array(
        [240, 150, 70]
    )
    top = (axis - _shore_heights(rng, 6, 22)).astype(int)
    hills = np.zeros((H, W), bool)
    hills[:axis] = np.arange(axis)[:, None] >= top[None, :]
    img[hills] = np.array([40, 38, 45]) + rng.normal(0, 5, (int(hills.sum()), 3))
    _mirror_below(img, axis, 0.8, 9)
    ripples = 6 * np.sin(np.arange(H) * 1.3)[:, None, None]  # horizontal streaks
    img[axis:gravel_top] += ripples[axis:gravel_top]
    img[gravel_top:] = np.array([55, 55, 60]) + rng.normal(0, 22, (H - gravel_top, W, 1))
    img += rng.normal(0, 1.5, img.shape)
    parts = {"hills": hills, "gravel": np.zeros((H, W), bool), "glow": np.zeros((H, W), bool)}
    parts["gravel"][gravel_top:] = True
    parts["glow"][int(0.3 * H) : axis - 25] = True
    lake = np.zeros((H, W), bool)
    lake[axis + 25 : gravel_top - 3] = True
    parts["lake"] = lake
    return np.clip(img, 0, 255).astype(np.uint8), parts


def test_a_mirror_calm_lake_is_found_as_water_and_its_islands_stay_still() -> None:
    photo, lake, islands = dusk_lake()
    regions = find_regions(photo)
    water, sky = regions.water > 0, regions.sky > 0
    assert water[lake].mean() > 0.9
    assert not sky[lake].any()  # the lake is water, not the sky grown into its reflection
    assert (water | sky)[islands].mean() < 0.02


def test_a_lake_under_a_sunset_glow_is_water_but_the_glow_and_the_gravel_are_not() -> None:
    photo, parts = sunset_lake()
    regions = find_regions(photo)
    water = regions.water > 0
    assert water[parts["lake"]].mean() > 0.8
    assert not water[parts["glow"]].any()  # the glow above the shore is the sky's
    assert water[parts["gravel"]].mean() < 0.01  # darker than what the lake mirrors
    assert water[parts["hills"]].mean() < 0.02


def test_a_lake_is_found_below_its_shore_without_any_sky_in_the_picture() -> None:
    # The jetty photo's case: a hazy, colour-graded sky the finder does not take for sky.
    photo, parts = sunset_lake()
    grey = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    warm = np.clip(grey.astype(np.int16) + np.array([25, 10, -20]), 0, 255).astype(np.uint8)
    regions = find_regions(warm)
    assert regions.sky_fraction == 0.0
    assert (regions.water > 0)[parts["lake"]].mean() > 0.8


def test_boards_reaching_into_the_lake_stay_out_of_the_water() -> None:
    photo, parts = sunset_lake()
    boards = np.zeros((H, W), bool)
    yy, xx = np.mgrid[0:H, 0:W]
    boards[(yy > 0.62 * H - 0.15 * xx) & (yy > 0.45 * H)] = True  # a jetty, rising to the right
    planks = 200 + 25 * np.sin(yy * 0.9 + xx * 0.3)[..., None]
    photo = photo.copy()
    photo[boards] = np.clip(planks * np.array([1.0, 0.82, 0.55]), 0, 255)[boards].astype(np.uint8)
    regions = find_regions(photo)
    assert (regions.water > 0)[boards].mean() < 0.02
    assert (regions.water > 0)[parts["lake"] & ~boards].mean() > 0.6


def test_a_dark_stripe_across_a_road_is_not_a_shore() -> None:
    # Motion-blurred road under a grey sky: a dark band with light on both sides, but what
    # lies below it (a bright rail, then dark tarmac) does not retrace what lies above it.
    rng = np.random.default_rng(5)
    img = np.zeros((H, W, 3), np.float32)
    ys = np.linspace(0, 1, H)[:, None]
    img[:] = (70 + 60 * ys)[..., None] * np.array([0.8, 0.9, 1.1])
    band = int(0.6 * H)
    img[band - 4 : band + 4] = 25
    img[band + 4 : band + 14] = 150  # a guard rail, smeared by the motion
    img[band + 14 :] = 45  # tarmac
    img += rng.normal(0, 1.5, img.shape)
    photo = np.clip(img, 0, 255).astype(np.uint8)
    light = cv2.cvtColor(photo.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[..., 0]
    assert mirrored_shore(light) is None
    assert find_regions(photo).water_fraction == 0.0
