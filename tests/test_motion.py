"""The motion model: what moves, what stays put, and the promises of the clip."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from alive_service.motion import Clip, MotionOptions, load_motion_model
from alive_service.motion.model import OnnxMotionModel, output_size, resize_photo
from alive_service.motion.steering import steer
from tests.conftest import models_with

SMALL = MotionOptions(long_side=320, duration_s=1.0, fps=24)


@dataclass(frozen=True)
class HandFace:
    """A face placed by hand (the same shape as safety.faces.Face)."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float = 1.0


# scikit-image's astronaut (512x512): MTCNN's landmarks, rounded.
ASTRONAUT_FACE = HandFace(
    (181.0, 62.0, 268.0, 172.0),
    ((205.0, 101.7), (246.8, 103.7), (224.7, 129.0), (201.7, 139.2), (245.3, 141.9)),
)


@pytest.fixture(scope="module")
def motion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from alive_service.motion.export import build

    return models_with(tmp_path_factory, ["motion.json"], build)


@pytest.fixture(scope="module")
def model(motion_dir: Path) -> OnnxMotionModel:
    return load_motion_model(motion_dir, renderer="cv2")


def sky_scene(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cloudy blue sky over textured grass, with a dark tower and a thin mast into the sky.

    Returns the photo (240x360) and the masks of the tower+mast and of open sky (away from
    the tower by a few pixels).
    """
    rng = np.random.default_rng(seed)
    h, w = 240, 360
    img = np.zeros((h, w, 3), np.float32)
    ys = np.linspace(0, 1, h)[:, None]
    img[..., 0] = 90 + 60 * ys
    img[..., 1] = 140 + 50 * ys
    img[..., 2] = 225 + 10 * ys
    clouds = np.zeros((h, w), np.float32)
    for _ in range(8):
        cx, cy = rng.uniform(0, w), rng.uniform(0, 0.5 * h)
        r = rng.uniform(12, 30)
        yy, xx = np.mgrid[0:h, 0:w]
        clouds += np.exp(-((xx - cx) ** 2 + ((yy - cy) * 1.8) ** 2) / (2 * r * r))
    for _ in range(160):  # small puffs: visible structure for the drift to move
        cx, cy = rng.uniform(0, w), rng.uniform(0, 0.6 * h)
        r = rng.uniform(3, 7)
        yy, xx = np.mgrid[0:h, 0:w]
        clouds += 0.4 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    clouds = np.clip(clouds, 0, 1)[..., None]
    img = img * (1 - 0.8 * clouds) + 245 * 0.8 * clouds
    horizon = int(0.7 * h)
    grass = rng.normal(0, 25, (h - horizon, w, 1)) + np.array([70, 130, 50])
    img[horizon:] = grass
    still = np.zeros((h, w), bool)
    still[horizon:] = True
    img[60:horizon, 150:190] = (60, 55, 50)  # tower
    still[60:horizon, 150:190] = True
    img[20:horizon, 260:263] = (40, 40, 40)  # mast
    still[20:horizon, 260:263] = True
    img = np.clip(img, 0, 255).astype(np.uint8)
    open_sky = np.zeros((h, w), bool)
    open_sky[: horizon - 8] = True
    open_sky &= cv2.dilate(still.astype(np.uint8), np.ones((17, 17), np.uint8)) == 0
    return img, still, open_sky


def lake_scene(seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sky over a rippled lake with a dark boat on it. Returns photo, boat mask, open water."""
    rng = np.random.default_rng(seed)
    h, w = 240, 360
    horizon = int(0.45 * h)
    img = np.zeros((h, w, 3), np.float32)
    ys = np.linspace(0, 1, horizon)[:, None]
    img[:horizon] = np.stack([110 + 60 * ys, 160 + 40 * ys, 230 + 0 * ys], -1)
    # Water: the sky's colour, darker, with horizontal streaks that widen toward the viewer.
    rows = np.arange(h - horizon, dtype=np.float32)[:, None]
    streaks = np.sin(rows * 0.9 + rng.normal(0, 0.6, (h - horizon, 1))) * (4 + rows / 8)
    noise = cv2.GaussianBlur(
        rng.normal(0, 6, (h - horizon, w)).astype(np.float32), (0, 0), 6, sigmaY=1
    )
    water = (
        np.stack([80 + 0 * rows, 120 + 0 * rows, 170 + 0 * rows], -1) + (streaks + noise)[..., None]
    )
    img[horizon:] = water
    boat = np.zeros((h, w), bool)
    boat[150:172, 120:200] = True
    img[boat] = (70, 40, 30)
    img = np.clip(img, 0, 255).astype(np.uint8)
    open_water = np.zeros((h, w), bool)
    open_water[horizon + 40 :] = True
    open_water &= cv2.dilate(boat.astype(np.uint8), np.ones((21, 21), np.uint8)) == 0
    return img, boat, open_water


def resized(mask: np.ndarray, clip: Clip) -> np.ndarray:
    h, w = clip.frames.shape[1:3]
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0


def moved(clip: Clip) -> np.ndarray:
    """Per pixel: the largest change from frame 0 over the clip (grey levels)."""
    f0 = clip.frames[0].astype(np.int16)
    return np.max([np.abs(f.astype(np.int16) - f0).max(axis=2) for f in clip.frames[1:]], axis=0)


def test_same_seed_gives_identical_frames(model: OnnxMotionModel) -> None:
    photo, _, _ = sky_scene()
    a = model.animate(photo, [ASTRONAUT_FACE], "clouds", SMALL)
    b = model.animate(photo, [ASTRONAUT_FACE], "clouds", SMALL)
    assert np.array_equal(a.frames, b.frames)
    assert a.params == b.params
    c = model.animate(photo, [], "clouds", MotionOptions(long_side=320, duration_s=1.0, seed=7))
    assert not np.array_equal(a.frames, c.frames)  # the seed picks the drift direction etc.


def test_first_frame_is_the_resized_photo(model: OnnxMotionModel) -> None:
    from skimage import data

    photo = data.astronaut()
    clip = model.animate(photo, [ASTRONAUT_FACE], "", SMALL)
    h, w = clip.frames.shape[1:3]
    assert np.array_equal(clip.frames[0], resize_photo(photo, SMALL.long_side))
    reference = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA).astype(np.float64)
    mse = np.mean((clip.frames[0] - reference) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30  # and that is a faithful downscale
    assert clip.frames.flags["C_CONTIGUOUS"] and clip.frames.dtype == np.uint8


@pytest.mark.parametrize("scene", ["sky", "camera"])
def test_loop_seam_is_no_larger_than_an_ordinary_step(model: OnnxMotionModel, scene: str) -> None:
    from skimage import data

    photo = sky_scene()[0] if scene == "sky" else data.coffee()
    clip = model.animate(photo, [], "", MotionOptions(long_side=320, duration_s=2.0, sky=2.0))
    f = clip.frames.astype(np.float32)
    steps = [np.abs(f[i + 1] - f[i]).mean() for i in range(len(f) - 1)]
    seam = np.abs(f[0] - f[-1]).mean()
    assert np.median(steps) > 0.02  # it does move
    assert seam <= 1.5 * np.median(steps)


def test_clouds_drift_but_towers_stay_put(model: OnnxMotionModel) -> None:
    photo, still, open_sky = sky_scene()
    clip = model.animate(photo, [], "", MotionOptions(long_side=320, duration_s=2.0, sky=2.0))
    change = moved(clip)
    assert clip.params["sky_strength"] > 0
    still_r = cv2.erode(resized(still, clip).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert np.mean(change[still_r] > 3) < 0.01  # tower, mast and grass stay put
    cloudy = resized(open_sky, clip) & (cv2.Laplacian(clip.frames[0][..., 0], cv2.CV_32F) != 0)
    assert np.mean(change[resized(open_sky, clip)] > 1) > 0.5  # the sky moves
    assert cloudy.any()


def test_water_ripples_near_the_viewer_but_the_boat_stays_put(model: OnnxMotionModel) -> None:
    photo, boat, open_water = lake_scene()
    clip = model.animate(photo, [], "a lake", MotionOptions(long_side=320, duration_s=1.0, sky=0))
    assert clip.params["water_strength"] > 0
    change = moved(clip)
    boat_r = cv2.erode(resized(boat, clip).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert np.mean(change[boat_r] > 3) < 0.01
    assert np.mean(change[resized(open_water, clip)] > 2) > 0.5


def test_the_far_water_next_to_the_shore_ripples_too(model: OnnxMotionModel) -> None:
    # The strip of lake just below the far shore: the perspective ripples there used to be
    # finer than the motion grid and aliased into a shimmer that hardly changed a pixel.
    photo, boat, _ = lake_scene()
    horizon = int(0.45 * photo.shape[0])
    far = np.zeros_like(boat)
    far[horizon + 2 : horizon + 40] = True
    for long_side in (320, 640):
        clip = model.animate(photo, [], "", MotionOptions(long_side=long_side, duration_s=1.0))
        assert np.mean(moved(clip)[resized(far, clip)] > 2) > 0.45, long_side


@pytest.mark.parametrize(
    ("h", "w", "top", "reach"),
    [(90, 160, 0.4, 0.15), (90, 160, 0.27, 0.28), (90, 160, 0.5, 0.5), (40, 160, 0.57, 0.43),
     (160, 90, 0.6, 0.4)],
)  # fmt: skip
def test_ripples_never_fold_the_water_over_itself(
    motion_dir: Path, h: int, w: int, top: float, reach: float
) -> None:
    # A ripple steeper than its wavelength allows samples the photo back to front: mirrored,
    # torn water (a wobbling picture). The backward map x -> x + flow(x) must stay one-to-one
    # (positive Jacobian) over the whole loop, for distant, near, panorama and portrait water.
    from alive_service.motion.layout import PARAM_INDEX, PARAM_NAMES
    from inference import onnx_session

    session = onnx_session(motion_dir / "motion_fields.onnx", threads=1)
    params = np.zeros(len(PARAM_NAMES), np.float32)
    long_side = 4 * max(h, w)
    values = {"water_px": 0.0045 * long_side * 2.0 / 4, "water_horizon": top, "water_reach": reach,
              "water_theta": 0.3, "water_phase": 1.0, "water_cycles": 2.0, "crossfade": 0.3,
              "ease": 0.1, "water_slope": 0.25}  # fmt: skip
    for name, v in values.items():
        params[PARAM_INDEX[name]] = v
    regions = np.zeros((2, h, w), np.float32)
    regions[1, int(top * h) : int((top + reach) * h)] = 1.0
    faces = np.zeros((1, 12), np.float32)
    faces[0, :10], faces[0, 10] = -1e4, 1.0
    times = np.arange(48, dtype=np.float32) / 48
    basis, coef_a, _, _ = session.run(
        None, {"regions": regions, "faces": faces, "params": params, "times": times}
    )
    flow = np.einsum("tk,kchw->tchw", coef_a, basis)
    assert np.abs(flow).max() > 0.25  # it does move (cells)
    dx_dx, dy_dx = np.gradient(flow, axis=3)[:, 0], np.gradient(flow, axis=3)[:, 1]
    dx_dy, dy_dy = np.gradient(flow, axis=2)[:, 0], np.gradient(flow, axis=2)[:, 1]
    det = (1 + dx_dx) * (1 + dy_dy) - dy_dx * dx_dy
    assert det[:, regions[1] > 0].min() > 0.05


def test_sky_switched_off_stays_still_and_the_camera_does_not_step_in(
    model: OnnxMotionModel,
) -> None:
    photo, _, _ = sky_scene()
    clip = model.animate(
        photo, [], "", MotionOptions(long_side=320, duration_s=1.0, sky=0.0, camera=1.0)
    )
    assert clip.params["sky_strength"] == 0 and clip.params["camera_strength"] == 0
    assert all(np.array_equal(f, clip.frames[0]) for f in clip.frames)


def test_faces_smile_without_the_head_drifting(model: OnnxMotionModel) -> None:
    from skimage import data

    photo = data.astronaut()
    opts = MotionOptions(long_side=512, duration_s=1.0, sky=0.0)  # the face alone
    clip = model.animate(photo, [ASTRONAUT_FACE], "", opts)
    assert clip.params["faces_animated"] == 1
    mid = clip.frames[len(clip.frames) // 2]
    g0 = cv2.cvtColor(clip.frames[0], cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(mid, cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(g0, g1, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    # Mouth corners rise (image y decreases) at the height of the smile.
    for x, y in ASTRONAUT_FACE.landmarks[3:]:
        patch = flow[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4, 1]
        assert patch.mean() < -0.4
    # The head does not drift: its outline (box border, forehead) and everything beyond stay.
    x0, y0, x1, y1 = (int(v) for v in ASTRONAUT_FACE.box)
    ring = np.zeros(g0.shape, bool)
    ring[y0 - 25 : y1 + 40, x0 - 25 : x1 + 25] = True
    ring[y0 + 5 : y1 - 5, x0 + 5 : x1 - 5] = False
    change = moved(clip)
    assert np.mean(change[ring] > 3) < 0.02
    assert np.mean(change[y0:y1, x0:x1] > 3) > 0.1  # the face itself does move


def test_each_component_can_be_switched_off(model: OnnxMotionModel) -> None:
    from skimage import data

    photo = data.astronaut()
    clip = model.animate(
        photo, [ASTRONAUT_FACE], "", MotionOptions(long_side=256, duration_s=0.5, face=0.0, sky=0.0)
    )
    assert clip.params["face_strength"] == 0
    assert all(np.array_equal(f, clip.frames[0]) for f in clip.frames)


def test_caption_steers_strength() -> None:
    assert steer("stormy clouds over the bay").sky > 1.3
    assert steer("waves crashing on the rocks").water > 1.3
    assert steer("what a big smile").face > steer("smile").face > 1.0
    calm = steer("a calm, still lake")
    assert calm.water < 1.0 and calm.sky < 1.0
    assert steer("my cat").sky == steer("").sky == 1.0


def test_stormy_caption_drifts_the_sky_further(model: OnnxMotionModel) -> None:
    photo, _, open_sky = sky_scene()
    plain = model.animate(photo, [], "", SMALL)
    stormy = model.animate(photo, [], "stormy clouds", SMALL)
    calm = model.animate(photo, [], "a calm evening", SMALL)
    assert (
        stormy.params["sky_strength"] > plain.params["sky_strength"] > calm.params["sky_strength"]
    )

    def activity(clip: Clip) -> float:
        mid = clip.frames[len(clip.frames) // 3].astype(np.float32)
        return float(np.abs(mid - clip.frames[0]).mean())

    assert activity(stormy) > activity(plain) > activity(calm)


@pytest.mark.parametrize(("h", "w", "long_side"), [(199, 301, 320), (640, 427, 256), (97, 97, 258)])
def test_frames_keep_the_aspect_ratio_with_even_sides(
    model: OnnxMotionModel, h: int, w: int, long_side: int
) -> None:
    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    clip = model.animate(photo, [], "", MotionOptions(long_side=long_side, duration_s=0.25))
    t, fh, fw, c = clip.frames.shape
    assert c == 3 and fh % 2 == 0 and fw % 2 == 0
    assert max(fh, fw) in (long_side, long_side - 1, long_side + 1)
    assert abs(fw / fh - w / h) < 0.02 * (w / h)
    assert (fh, fw) == output_size(h, w, long_side)
    assert t == 6  # 0.25 s at 24 fps


def test_cpu_and_onnx_renderers_draw_the_same_frames(motion_dir: Path) -> None:
    from skimage import data

    cpu = load_motion_model(motion_dir, renderer="cv2")
    gpu_graph = load_motion_model(motion_dir, renderer="onnx")
    opts = MotionOptions(long_side=256, duration_s=1.0)
    scenes = ((sky_scene()[0], []), (data.astronaut(), [ASTRONAUT_FACE]), (data.coffee(), []))
    for photo, faces in scenes:
        a = cpu.animate(photo, faces, "", opts)
        b = gpu_graph.animate(photo, faces, "", opts)
        diff = np.abs(a.frames.astype(np.int16) - b.frames.astype(np.int16))
        assert diff.mean() < 0.3 and np.percentile(diff, 99.9) <= 4
        assert b.model_sha256.startswith(a.model_sha256)


def test_clip_names_the_model_and_its_hash_and_no_personal_data(
    model: OnnxMotionModel, motion_dir: Path
) -> None:
    photo, _, _ = sky_scene()
    seen: list[tuple[int, int]] = []
    clip = model.animate(
        photo, [ASTRONAUT_FACE], "Anna at Lake Tahoe", SMALL, lambda d, t: seen.append((d, t))
    )
    assert clip.model_id == "alive-motion" and clip.model_version
    digest = hashlib.sha256((motion_dir / "motion_fields.onnx").read_bytes()).hexdigest()
    assert clip.model_sha256 == digest
    assert clip.fps == 24
    assert not any("Anna" in str(v) or "Tahoe" in str(v) for v in clip.params.values())
    assert seen[-1] == (24, 24) and len(seen) == 24


def test_options_out_of_range_are_refused(model: OnnxMotionModel) -> None:
    photo, _, _ = sky_scene()
    with pytest.raises(ValueError):
        model.animate(photo, [], "", MotionOptions(sky=3.0))
    with pytest.raises(ValueError):
        model.animate(photo[..., 0], [], "", SMALL)


def test_the_lake_ripples_as_water_at_any_size_and_caption(model: OnnxMotionModel) -> None:
    # china.jpg: a hazy lake the colour of the sky. It must be water (not drifting sky) whatever
    # output size is asked for, and a caption about clouds must not grow the sky over it.
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")
    sky_seen = set()
    for caption in ("", "clouds over the temple", "the lake"):
        for long_side in (320, 640, 1280):
            opts = MotionOptions(long_side=long_side, duration_s=0.25)
            clip = model.animate(photo, [], caption, opts)
            assert clip.params["water_fraction"] > 0.05, (caption, long_side)
            assert clip.params["water_strength"] > 0
            sky_seen.add(clip.params["sky_fraction"])
    assert len(sky_seen) == 1  # neither the size nor the caption moves pixels into the sky


def plaque_scene() -> tuple[np.ndarray, np.ndarray]:
    """The sky scene with a pale, smooth plaque hanging from the top edge: sky-coloured and
    sky-smooth, so the region finder takes it for sky (a clock face or a plain wall near the
    top). Soft blotches, like a weathered wall, make any drift of it visible (and measurable
    by optical flow). Returns photo and plaque mask."""
    img, _, _ = sky_scene()
    plaque = np.zeros(img.shape[:2], bool)
    plaque[0:80, 20:130] = True
    rng = np.random.default_rng(5)
    blotches = cv2.GaussianBlur(rng.normal(0, 1, (80, 110)).astype(np.float32), (0, 0), 4)
    shade = 200 + 40 * blotches / blotches.std()
    img[0:80, 20:130] = np.clip(shade[..., None] + np.zeros((1, 1, 3)), 0, 255).astype(np.uint8)
    return img, plaque


def test_a_keep_still_hint_stops_an_object_taken_for_sky(model: OnnxMotionModel) -> None:
    from alive_service.motion import RegionHint

    photo, plaque = plaque_scene()
    wrong = model.animate(photo, [], "", SMALL)
    plaque_out = resized(plaque, wrong)
    assert (moved(wrong)[plaque_out] > 2).mean() > 0.2  # without a hint it drifts with the sky
    tap = RegionHint("still", ((75 / 360, 40 / 240),))
    hinted = model.animate(photo, [], "", replace(SMALL, hints=(tap,)))
    assert (moved(hinted)[plaque_out] > 2).mean() <= 0.01
    assert (moved(hinted)[resized(sky_scene()[2], hinted) & ~plaque_out] > 2).mean() > 0.3
    assert hinted.params["hints"].startswith("still:0.2083,0.1667")
    assert hinted.params["camera_strength"] == 0.0


def test_sky_and_water_hints_animate_what_the_finder_missed(model: OnnxMotionModel) -> None:
    from alive_service.motion import RegionHint

    photo, _, open_water = lake_scene()
    # The lake, but its water region only through a hint (the finder is told nothing else).
    water = RegionHint("water", ((0.5, 0.9), (0.15, 0.8)))
    sky = RegionHint("sky", ((0.5, 0.1),), direction_deg=90.0)  # drift up
    clip = model.animate(photo, [], "", replace(SMALL, water=1.0, hints=(water, sky)))
    assert clip.params["water_fraction"] > 0.2 and clip.params["sky_fraction"] > 0.2
    assert clip.params["p_sky_dy"] < -0.99  # content moves up (image y grows downward)
    assert (moved(clip)[resized(open_water, clip)] > 2).mean() > 0.5


def test_hints_are_part_of_the_options_and_change_nothing_when_absent(
    model: OnnxMotionModel,
) -> None:
    from dataclasses import asdict

    from alive_service.motion import RegionHint

    photo, _, _ = sky_scene()
    plain = model.animate(photo, [], "", SMALL)
    assert "hints" not in plain.params
    hinted = replace(SMALL, hints=(RegionHint("still", ((0.5, 0.5),)),))
    assert asdict(hinted) != asdict(SMALL)  # so the idempotency fingerprint differs


@pytest.mark.parametrize("renderer", ["cv2", "onnx"])
def test_frames_streamed_in_batches_are_the_clip_frames_bit_for_bit(
    motion_dir: Path, renderer: str,
) -> None:
    from skimage import data

    streaming = load_motion_model(motion_dir, renderer=renderer)  # type: ignore[arg-type]
    for photo, faces, caption in ((sky_scene()[0], [], "clouds"),
                                  (data.astronaut(), [ASTRONAUT_FACE], "a smile"),
                                  (data.coffee(), [], "")):
        clip = streaming.animate(photo, faces, caption, SMALL)
        take = streaming.prepare(photo, faces, caption, SMALL)
        assert take.shape == clip.frames.shape and take.params == clip.params
        assert (take.fps, take.model_sha256) == (clip.fps, clip.model_sha256)
        # Frames drawn ahead, alone or out of order, are the clip's too.
        ahead = take.frames([23, 0, 5, 6, 12], threads=2)
        assert all(np.array_equal(frame, clip.frames[i]) for i, frame in ahead.items())
        for size, threads in ((1, 1), (5, 2), (8, 3), (100, 2)):
            known = dict(ahead)
            streamed = np.concatenate([b.copy() for b in take.batches(size, threads, known)])
            assert np.array_equal(streamed, clip.frames), (size, threads)
            assert not known  # each frame drawn ahead was handed over (and let go)


def test_frames_drawn_ahead_on_a_second_core_are_the_clip_frames_bit_for_bit(
    model: OnnxMotionModel,
) -> None:
    from alive_service.pipeline import draw_batches

    photo, _, _ = sky_scene()
    clip = model.animate(photo, [], "clouds", SMALL)
    take = model.prepare(photo, [], "clouds", SMALL)
    # Two cores, one, and a share that falls to one when a second request starts mid-clip.
    falls = iter([2, 2, 2, 2] + [1] * 100)
    for share in (lambda: 2, lambda: 1, lambda: next(falls)):
        known = take.frames([0, 5, 6, 23])
        streamed = np.concatenate([b.copy() for b in draw_batches(take, 5, share, known)])
        assert np.array_equal(streamed, clip.frames)
        assert not known


def test_frames_handed_over_as_i420_planes_encode_to_the_same_mp4(
    model: OnnxMotionModel,
) -> None:
    from alive_service.encode import encode_batches, encode_mp4
    from alive_service.pipeline import _to_i420, draw_batches
    from provenance.colour import rgb_to_i420_bt709

    photo, _, _ = sky_scene()
    clip = model.animate(photo, [], "clouds", SMALL)
    take = model.prepare(photo, [], "clouds", SMALL)
    whole = encode_mp4(clip.frames, clip.fps)
    for share in (lambda: 2, lambda: 1):
        known = take.frames([5, 23])
        # The watermark planner's frames, converted as the pipeline keeps them.
        drawn = take.frames([0, 6, 7, 13, 23])
        converted = _to_i420({t: f for t, f in drawn.items() if t not in known})
        assert all(np.array_equal(converted[t], rgb_to_i420_bt709(clip.frames[t]))
                   for t in converted)
        streamed = encode_batches(draw_batches(take, 5, share, known, converted),
                                  take.shape, take.fps)
        assert streamed.mp4 == whole.mp4
        assert not known and not converted  # each was handed over, and let go


def test_a_streamed_clip_encodes_to_the_same_mp4(model: OnnxMotionModel) -> None:
    from alive_service.encode import encode_batches, encode_mp4

    photo, _, _ = sky_scene()
    clip = model.animate(photo, [], "clouds", SMALL)
    take = model.prepare(photo, [], "clouds", SMALL)
    done: list[int] = []
    whole = encode_mp4(clip.frames, clip.fps)
    streamed = encode_batches(take.batches(7), take.shape, take.fps,
                              progress=lambda n, total: done.append(n))
    assert streamed.mp4 == whole.mp4
    assert done == list(range(1, len(clip.frames) + 1))
