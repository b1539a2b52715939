"""``python -m tools.provenance_bench``: watermark steadiness, robustness, false ids, and costs.

1. Flicker: the worst frame-to-frame step of 8x8-averaged luma (loop seam included) of
   clips made the way the service makes them (motion model -> LumaMark on the encoder's Y
   planes), with every motion off, and on the still pixels of a clip where only the sky
   moves; the same clips encoded unmarked are the floor.
2. Robustness: id recovery rate after re-encodes, downscales, a re-cut, a gamma change and
   a crop, for today's design and the one at ``--baseline`` (a git revision, loaded with
   ``git show``; ``--baseline none`` skips it), measured on the same clips in the same run.
3. Visibility: the mark's RMS over the flat pixels of each photo (a clear sky, a plain wall:
   where no texture hides it) and over the whole frame, and PSNR, for each design.
   ``--only photos``: the same, plus the harshest 50%-downscale re-encode (CRF 28..40) and
   a 5% crop each design survives, on every photo of the motion eval set (eval/photos.json,
   photos from packages nobody here tuned the mark on; `make eval` installs the Debian ones).
4. False ids: unmarked clips, clips marked with other ids, and the sharpness of unmarked
   photos over many carrier draws (what the reader's bars are set against).
5. Milliseconds for embed, extract, sign and verify on a 72-frame 1280x720 clip.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from alive_service import CLAIM_GENERATOR
from provenance import watermark as wm
from provenance.keys import dev_root_pem, ensure_dev_identity
from provenance.media import drifting_clip, encode_mp4, psnr, reencode, sample_clip
from provenance.sign import GenerationInfo, sign_video
from provenance.stability import still_pixels, worst_step
from provenance.verify import verify_mp4
from provenance.visibility import flat_pixels, mark_rms

VIDEO_ID = "5eed0123456789ab"
BASELINE = "0d3971e"  # the last revision with the temporal-code mark (com.alive.wm.v1)
CALM_FIRST = "bbcaab0"  # lumamark.1 before texture masking: most amplitude on calm cells


def _images() -> dict[str, np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_image

    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "china": load_sample_image("china.jpg"),
        "chelsea": data.chelsea(),
    }


def load_design(revision: str) -> ModuleType:
    """provenance/watermark.py as it was at ``revision``, as a module of its own."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{revision}:provenance/watermark.py"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(source)
    spec = importlib.util.spec_from_file_location(f"watermark_{revision}", fh.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    os.unlink(fh.name)
    return module


# ---- attacks: what a re-uploader, an editor or a screen recorder does ------------------


def _frames(mp4: bytes) -> np.ndarray:
    return wm.decode_mp4_frames(mp4, max_frames=10_000)


def recut(mp4: bytes, start: int = 30, length: int = 48) -> bytes:
    """A 2-second piece of the loop starting at ``start``, wrapping around the seam."""
    frames = _frames(mp4)
    return encode_mp4(np.take(frames, range(start, start + length), axis=0, mode="wrap"))


def gamma(mp4: bytes) -> bytes:
    """Screen-recording-like: gamma 0.8, squeezed to video range 16-235, CRF 26."""
    lut = (16 + 219 * (np.arange(256) / 255.0) ** 0.8).round().astype(np.uint8)
    return encode_mp4(np.stack([cv2.LUT(f, lut) for f in _frames(mp4)]), crf=26)


def crop(mp4: bytes, share: float = 0.05) -> bytes:
    """Cut ``share`` of the width and height off, half on each side, no resize."""
    frames = _frames(mp4)
    h, w = frames.shape[1:3]
    dy, dx = round(h * share / 2), round(w * share / 2)
    return encode_mp4(np.ascontiguousarray(frames[:, dy : h - dy, dx : w - dx]))


ATTACKS: dict[str, Callable[[bytes], bytes]] = {
    "as made": lambda m: m,
    "crf23": lambda m: reencode(m, 23),
    "crf28": lambda m: reencode(m, 28),
    "crf32": lambda m: reencode(m, 32),
    "50%+crf23": lambda m: reencode(m, 23, 0.5),
    "50%+crf28": lambda m: reencode(m, 28, 0.5),
    "33%+crf23": lambda m: reencode(m, 23, 1 / 3),
    "recut 2s": recut,
    "gamma": gamma,
    "crop 5%": crop,
}


# ---- 1. flicker ----------------------------------------------------------------------


def _still_clips(frames: int) -> dict[str, tuple[np.ndarray, bool]]:
    """(clip, measure still pixels only) made by the motion model when it is built, else the
    photo repeated (what the model does with every motion off)."""
    from alive_service.motion import MotionOptions

    images = _images()
    grey = np.full((720, 1280, 3), 128, np.uint8)
    off = MotionOptions(sky=0, water=0, face=0, camera=0, duration_s=frames / 24)
    sky = MotionOptions(sky=1, water=0, face=0, camera=0, duration_s=frames / 24)
    model_dir = Path(os.environ.get("ALIVE_MODEL_DIR", "build/models"))
    if not (model_dir / "BUILD.json").exists():
        print(f"(no motion model in {model_dir}: still clips are the photo repeated)")
        return {
            "astronaut, motion off": (sample_clip(images["astronaut"], frames=1).repeat(frames, 0),
                                      False),
            "grey wall, motion off": (grey[None].repeat(frames, 0), False),
        }
    from alive_service.motion import load_motion_model

    model = load_motion_model(model_dir, renderer="cv2")
    return {
        "astronaut, motion off": (model.animate(images["astronaut"], [], "", off).frames, False),
        "grey wall, motion off": (model.animate(grey, [], "", off).frames, False),
        "china, sky only: still px": (model.animate(images["china"], [], "", sky).frames, True),
    }


def _hook(design: ModuleType, clip: np.ndarray) -> Callable[[np.ndarray, int], None]:
    """The encoder hook of a design's LumaMark: the I420 buffer, or its Y plane for the
    designs before lumamark.2 (luma only)."""
    mark = design.LumaMark.plan(clip, VIDEO_ID)
    if hasattr(mark, "cb_pos"):
        return mark.apply
    height = clip.shape[1]
    return lambda buf, t: mark.apply(buf[:height], t)


def flicker(designs: dict[str, ModuleType], frames: int) -> None:
    from alive_service.encode import encode_mp4 as service_encode

    print("Flicker: worst step of 8x8-averaged luma, grey levels (target <= 0.3; "
          "the pipeline's encoder, CRF 23, LumaMark on its Y planes)")
    names = list(designs)
    print(f"{'clip':28s} {'unmarked':>9s} " + " ".join(f"{n:>14s}" for n in names)
          + " " + " ".join(f"{'PSNR ' + n:>14s}" for n in names))
    for name, (clip, still_only) in _still_clips(frames).items():
        still = still_pixels(clip) if still_only else None
        plain = worst_step(service_encode(clip, 24).mp4, still)
        worst, quality = [], []
        for design in designs.values():
            mp4 = service_encode(clip, 24, mark=_hook(design, clip)).mp4
            worst.append(worst_step(mp4, still))
            marked = clip.copy()
            design.embed(marked, VIDEO_ID)
            quality.append(psnr(clip, marked))
        print(f"{name:28s} {plain:9.3f} " + " ".join(f"{w:14.3f}" for w in worst)
              + " " + " ".join(f"{q:11.1f} dB" for q in quality))


# ---- 2./3. robustness and false ids ----------------------------------------------------


def _clips(frames: int) -> dict[str, np.ndarray]:
    images = _images()
    clips = {name: sample_clip(image, frames=frames) for name, image in images.items()}
    # Half the picture drifts sideways all the time: the hard case for reading the picture out.
    clips["drifting"] = drifting_clip(images["astronaut"], frames=frames, speed=4)
    return clips


def robustness(designs: dict[str, ModuleType], frames: int) -> None:
    clips = _clips(frames)
    found = {d: {a: 0 for a in ATTACKS} for d in designs}
    accuracy = {d: {a: 0.0 for a in ATTACKS} for d in designs}
    for clip in clips.values():
        for name, design in designs.items():
            marked = clip.copy()
            design.embed(marked, VIDEO_ID)
            mp4 = encode_mp4(marked, crf=23)
            for attack, fn in ATTACKS.items():
                copy = fn(mp4)
                found[name][attack] += design.extract_video_id(copy)[0] == VIDEO_ID
                accuracy[name][attack] += design.bit_accuracy(copy, VIDEO_ID) / len(clips)
    print(f"\nRobustness: ids recovered of {len(clips)} clips ({', '.join(clips)}; 720p "
          f"CRF 23 source), mean raw bit accuracy in brackets")
    print(f"{'attack':11s} " + " ".join(f"{n:>16s}" for n in designs))
    for attack in ATTACKS:
        cells = [f"{found[n][attack]}/{len(clips)} ({accuracy[n][attack] * 100:4.1f}%)"
                 for n in designs]
        print(f"{attack:11s} " + " ".join(f"{c:>16s}" for c in cells))
    new, *others = list(designs)
    for old in others:
        lost = [a for a in ATTACKS if found[new][a] < found[old][a]]
        print(f"cases where {new} recovers fewer ids than {old}: {', '.join(lost) or 'none'}")


def visibility(designs: dict[str, ModuleType]) -> None:
    images = _images()
    print("\nVisibility: RMS of the mark's luma (grey levels) over each photo's flat pixels"
          " / over the whole frame, PSNR in dB; a still 1280x720 frame")
    print(f"{'photo':10s} {'flat px':>7s} " + " ".join(f"{n:>30s}" for n in designs))
    for name, image in images.items():
        base = cv2.resize(image, (1280, 720), interpolation=cv2.INTER_AREA)
        flat = flat_pixels(base)
        cells = []
        for design in designs.values():
            marked = np.repeat(base[None], 8, axis=0)
            design.embed(marked, VIDEO_ID)
            cells.append(f"{mark_rms(marked[0], base, flat):.2f} / "
                         f"{mark_rms(marked[0], base):.2f} / {psnr(marked[0], base):.1f}")
        print(f"{name:10s} {flat.mean() * 100:6.1f}% " + " ".join(f"{c:>30s}" for c in cells))


def photos(designs: dict[str, ModuleType], frames: int) -> None:
    """Visibility and robustness margin on the eval set's photos (long side 1280 px)."""
    import json

    from tools.motion_eval import EVAL_SET, load_photo

    entries = json.loads(EVAL_SET.read_text())["photos"]
    print(f"\nEval-set photos: flat-pixel mark RMS (grey levels) | harshest 50%-downscale CRF"
          f" still read (0: not even 28) | 5% crop read; {frames}-frame loop, CRF 23 source")
    print(f"{'photo':22s} {'flat':>5s} " + " ".join(f"{n[:24]:>24s}" for n in designs))
    totals = {n: [0.0, 0, 0, 0] for n in designs}
    for entry in entries:
        image = load_photo(entry)
        if image is None:
            continue
        h, w = image.shape[:2]
        scale = 1280 / max(h, w)
        size = (round(w * scale) // 2 * 2, round(h * scale) // 2 * 2)
        base = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        flat = flat_pixels(base)
        cells = []
        for name, design in designs.items():
            still = np.repeat(base[None], 4, axis=0)
            design.embed(still, VIDEO_ID)
            rms = mark_rms(still[0], base, flat) if flat.any() else 0.0
            clip = sample_clip(base, size[1], size[0], frames=frames)
            design.embed(clip, VIDEO_ID)
            source = encode_mp4(clip, crf=23)
            worst = 0
            for crf in (28, 32, 36, 40):
                if design.extract_video_id(reencode(source, crf, 0.5))[0] != VIDEO_ID:
                    break
                worst = crf
            cropped = design.extract_video_id(crop(source))[0] == VIDEO_ID
            total = totals[name]
            total[0] += rms
            total[1] += 1
            total[2] += worst >= 28
            total[3] += cropped
            cells.append(f"{rms:5.2f} | {worst:2d} | {'yes' if cropped else 'no':>3s}")
        print(f"{entry['name'][:22]:22s} {flat.mean() * 100:4.1f}% "
              + " ".join(f"{c:>24s}" for c in cells), flush=True)
    for name, (rms, n, read, cropped) in totals.items():
        if n:
            print(f"{name}: mean flat RMS {rms / n:.2f}; read after 50%+CRF28 {read}/{n}; "
                  f"5% crop {cropped}/{n}")


_CENSUS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page",
           "text", "horse", "hubble_deep_field", "immunohistochemistry", "motorcycle_left",
           "retina", "cat", "brick", "grass", "gravel", "colorwheel", "logo")


def sharpness_census(draws: int) -> None:
    """How sharp unmarked pictures read, over many carrier draws (CARRIER_KEY seeds the
    carriers): the base of the false-id rate quoted in watermark.py. Every read the decoder
    makes counts: each luma grid level, and for colour photos the Cb carrier combined with
    the sharpest luma level (read with the strict bar)."""
    from skimage import data
    from sklearn.datasets import load_sample_image

    photos = [getattr(data, name)() for name in _CENSUS if hasattr(data, name)]
    photos += [load_sample_image("china.jpg"), load_sample_image("flower.jpg")]
    frames = []  # (luma grids, Cb grid or None)
    for photo in photos:
        colour = photo.ndim == 3 and not np.array_equal(photo[..., 0], photo[..., 1])
        rgb = np.stack([photo] * 3, -1) if photo.ndim == 2 else photo[..., :3]
        for size in ((1280, 720), (640, 360)):
            frame = cv2.resize(np.ascontiguousarray(rgb, np.uint8), size,
                               interpolation=cv2.INTER_AREA)
            cb = None
            if colour:
                shape = wm.chroma_grid_shape(size[1], size[0])
                cb = cv2.resize(wm._cb(frame.astype(np.float32)), (shape[1], shape[0]),
                                interpolation=cv2.INTER_AREA)
            frames.append((list(wm._reader_grids(frame).values()), cb))
    sharp, chroma, found, key = [], [], 0, wm.CARRIER_KEY
    try:
        for draw in range(draws):
            wm.CARRIER_KEY = f"{key}/census-{draw}"
            wm._carriers.cache_clear()
            for grids, cb in frames:
                softs = [wm.soft_bits(grid) for grid in grids]
                sharp += [wm._sharpness(soft) for soft in softs]
                found += sum(wm.decode_soft(soft)[0] is not None for soft in softs)
                if cb is not None:
                    soft = wm._combined(max(softs, key=wm._sharpness), wm.soft_bits(cb, "cb"))
                    chroma.append(wm._sharpness(soft))
                    found += wm.decode_soft(soft, strict=True)[0] is not None
    finally:
        wm.CARRIER_KEY = key
        wm._carriers.cache_clear()
    for name, values in (("luma", np.array(sharp)), ("Cb + luma", np.array(chroma))):
        print(f"Unmarked sharpness, {name}: {len(photos)} photos x 2 sizes x {draws} carrier "
              f"draws = {len(values)} reads: mean {values.mean():.2f}, P(>=1.6) "
              f"{np.mean(values >= 1.6) * 100:.1f}%, P(>=2.0) "
              f"{np.mean(values >= 2.0) * 100:.3f}%, max {values.max():.2f}")
    print(f"ids returned by all those reads: {found}")


def false_ids(frames: int) -> None:
    """Unmarked clips must read no id; a clip marked with one id must never read another."""
    clips = _clips(frames)
    unmarked = wrong = tries = 0
    for clip in clips.values():
        mp4 = encode_mp4(clip, crf=23)
        for copy in (mp4, reencode(mp4, 28, 0.5)):
            tries += 1
            unmarked += wm.extract_video_id(copy)[0] is not None
    other_ids = [f"{i:04x}" + "c0ffee" + f"{i * 7919 % 65536:06x}" for i in range(1, 5)]
    marked_reads = 0
    for clip, video_id in zip(clips.values(), other_ids, strict=False):
        marked = clip.copy()
        wm.embed(marked, video_id)
        for copy in (encode_mp4(marked, crf=23),
                     reencode(encode_mp4(marked, crf=23), 32, 0.5)):
            marked_reads += 1
            read = wm.extract_video_id(copy)[0]
            wrong += read is not None and read != video_id
    print(f"\nFalse ids: {unmarked} of {tries} unmarked reads returned an id; {wrong} of "
          f"{marked_reads} reads of clips marked with other ids returned a wrong id")


# ---- 4. costs ------------------------------------------------------------------------


def _ms(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def costs(frames: int) -> None:
    video_id = VIDEO_ID
    clip = sample_clip(_images()["china"], frames=frames)
    embed_ms = _ms(lambda: wm.embed(clip.copy(), video_id))
    copy_ms = _ms(lambda: clip.copy())
    i420 = [cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420) for f in clip]

    def luma_path() -> None:
        mark = wm.LumaMark.plan(clip, video_id)
        for t, buf in enumerate(i420):
            mark.apply(buf, t)

    luma_ms = _ms(luma_path)
    mp4 = encode_mp4(clip, crf=23)
    decoded = wm.decode_mp4_frames(mp4)
    extract_frames_ms = _ms(lambda: wm.extract_video_id(decoded))
    extract_mp4_ms = _ms(lambda: wm.extract_video_id(mp4))
    _, jpeg = cv2.imencode(".jpg", cv2.cvtColor(_images()["china"], cv2.COLOR_RGB2BGR))
    photo = jpeg.tobytes()
    info = GenerationInfo(video_id, "alive-motion", "0.1.0", "0" * 64, 1, {"amplitude": 1.0},
                          claim_generator=CLAIM_GENERATOR)
    with tempfile.TemporaryDirectory() as tmp:
        identity = ensure_dev_identity(Path(tmp))
        root = dev_root_pem(Path(tmp))
        sign_ms = _ms(lambda: sign_video(mp4, photo, "image/jpeg", info, identity), 5)
        signed = sign_video(mp4, photo, "image/jpeg", info, identity).mp4
        verify_ms = _ms(lambda: verify_mp4(signed, root, watermark=False), 5)
        verify_all_ms = _ms(lambda: verify_mp4(signed, root))
    print(
        f"\n{frames}x720p clip ({len(mp4) / 1e6:.2f} MB): embed {embed_ms - copy_ms:.0f} ms on "
        f"RGB, {luma_ms:.0f} ms on I420 Y planes (LumaMark), "
        f"extract {extract_frames_ms:.0f} ms (frames) / {extract_mp4_ms:.0f} ms (mp4+decode), "
        f"sign {sign_ms:.1f} ms, verify manifest {verify_ms:.1f} ms, "
        f"verify + watermark {verify_all_ms:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=72)
    parser.add_argument("--baseline", default=f"{BASELINE},{CALM_FIRST}",
                        help="git revisions of designs to compare with (commas), or 'none'")
    parser.add_argument("--draws", type=int, default=100, help="carrier draws for the census")
    parser.add_argument("--only",
                        choices=["flicker", "robustness", "visibility", "photos", "false-ids",
                                 "costs"])
    args = parser.parse_args()
    designs: dict[str, ModuleType] = {f"now ({wm.ALG})": wm}
    for revision in [] if args.baseline == "none" else args.baseline.split(","):
        try:
            old = load_design(revision)
            designs[f"{revision} ({old.ALG})"] = old
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"(baseline {revision} not loadable, skipped: {exc})")
    if args.only in (None, "flicker"):
        flicker(designs, args.frames)
    if args.only in (None, "robustness"):
        robustness(designs, args.frames)
    if args.only in (None, "visibility"):
        visibility(designs)
    if args.only == "photos":  # minutes per design: asked for, not part of every run
        photos(designs, args.frames)
    if args.only in (None, "false-ids"):
        false_ids(args.frames)
        sharpness_census(args.draws)
    if args.only in (None, "costs"):
        costs(args.frames)


if __name__ == "__main__":
    main()
