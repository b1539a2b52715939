"""One photo's way through the service: decode -> safety -> motion -> encode -> sign -> store.

Each stage takes and returns plain typed values; this module only runs them in
order, records every safety decision, and reports progress.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from alive_service import CLAIM_GENERATOR
from alive_service.decode import Photo, decode_photo
from alive_service.encode import Video, encode_batches
from alive_service.motion import MotionOptions, Take
from alive_service.parts import Parts
from alive_service.store import Conflict, DecisionRecord, Store, TakenDown, VideoRecord
from alive_service.vocabulary import (
    ProgressStage,
    SafetyStage,
    Verdict,
    VideoStatus,
    new_video_id,
    review_reason,
)
from provenance import watermark
from provenance.colour import rgb_to_i420_bt709
from provenance.keys import SigningIdentity
from provenance.sign import GenerationInfo, sign_video
from safety import Decision

log = logging.getLogger("alive.pipeline")


SAFETY_REVIEWER = "system:safety-review"
# Frames drawn and encoded at a time: ~13 MB raw at 720p (two such buffers with a draw-ahead).
# 4, not 8: the watermark planner's frames, now kept as I420 planes (~21 MB at 1280x854),
# would otherwise raise a request's peak, which is at the encoder's start.
STREAM_BATCH = 4

ProgressFn = Callable[[ProgressStage, int, int], None]
ThreadShare = Callable[[], int]  # the CPU threads a request may use now


class Refused(Exception):
    """Safety policy refused the request; nothing was generated or stored but the decision."""

    def __init__(self, decision: Decision, stage: SafetyStage) -> None:
        super().__init__(decision.reason)
        self.decision = decision
        self.stage = stage

    def __reduce__(self) -> tuple:  # crosses from the worker process to the server's
        return Refused, (self.decision, self.stage)


class SampledFrames:
    """The frames of a streamed clip that were drawn ahead, seen as the (T, H, W, 3) clip by
    the readers that only look at those (the output check, the watermark planner); any
    other frame is a KeyError, so a reader that starts reading more is caught at once."""

    ndim = 4

    def __init__(self, shape: tuple[int, int, int, int], frames: dict[int, np.ndarray]) -> None:
        self.shape = shape
        self._frames = frames

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return self._frames[int(index)]


class Cancelled(Exception):
    """The client went away or its deadline passed; work stopped between frames."""

    def __init__(self, stage: str, frames_done: int, frames_total: int) -> None:
        super().__init__(f"the request was cancelled while {stage}")
        self.stage = stage
        self.frames_done = frames_done
        self.frames_total = frames_total

    def __reduce__(self) -> tuple:
        return Cancelled, (self.stage, self.frames_done, self.frames_total)


@dataclass(frozen=True)
class AnimateRequest:
    user: str
    request_id: str
    photo: bytes
    caption: str = ""
    options: MotionOptions = field(default_factory=MotionOptions)
    idempotency_key: str = ""

    def fingerprint(self) -> str:
        """What makes two requests "the same" for an idempotent retry."""
        digest = hashlib.sha256(self.photo)
        digest.update(self.caption.encode())
        digest.update(json.dumps(asdict(self.options), sort_keys=True).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class Result:
    video: VideoRecord
    mp4: bytes
    reused: bool
    timings: dict[str, float]


def _never() -> bool:
    return False


def animate(
    request: AnimateRequest,
    parts: Parts,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] = _never,
    threads: int | ThreadShare | None = None,
) -> Result:
    """Run one request through every stage. ``threads``: the CPU threads it may use, or a
    function asked before each stage and frame batch (a worker's share of the cores, which
    falls when other requests start: a lone request gets every core, under load each gets
    one, since splitting a request costs more CPU than it saves); None keeps what the parts
    were built with."""
    share = _asked(threads)
    report = progress or (lambda stage, done, total: None)
    timings: dict[str, float] = {}

    at: dict = {"stage": ProgressStage.CHECKING, "done": 0, "total": 0}

    def checkpoint() -> None:
        if cancelled():
            raise Cancelled(at["stage"], at["done"], at["total"])

    def timed(name: str, start: float) -> None:
        timings[name] = round(time.perf_counter() - start, 4)

    earlier = None
    if request.idempotency_key:
        earlier = parts.store.find_idempotent(request.user, request.idempotency_key)
        # Refused before any work (and before anything is stored).
        if earlier is not None and earlier.request_fingerprint != request.fingerprint():
            raise Conflict("the idempotency key was already used for a different request")
        if earlier is not None and earlier.status != VideoStatus.READY:
            raise TakenDown(f"video {earlier.id} was taken down after review and is no "
                            "longer available")

    report(ProgressStage.CHECKING, 0, 0)
    start = time.perf_counter()
    # Decoding first: a request that is not a photo is refused before anything is recorded.
    # The caption check needs nothing from the photo: it runs beside the decoder (a lone
    # request's second core is idle there), and its decision is recorded after it.
    limits = replace(parts.limits, target_long_side=request.options.long_side)
    with ThreadPoolExecutor(1, thread_name_prefix="caption-check") as pool:
        captioning = pool.submit(parts.safety.check_caption, request.caption)
        photo = decode_photo(request.photo, limits)
        timed("decode", start)
        start = time.perf_counter()
        caption = captioning.result()
    _record(parts.store, request, SafetyStage.CAPTION, caption, photo)
    if caption.verdict == Verdict.BLOCK:
        raise Refused(caption, SafetyStage.CAPTION)
    # The motion model's look for sky and water needs no faces: it runs beside the image
    # checks (their result decides whether it is used at all).
    surveying: Future[object | None] | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="regions") as pool:
        if earlier is None:  # a retry generates nothing
            surveying = pool.submit(_survey, parts, photo, request.caption)
        image = parts.safety.check_image(photo.rgb, parts.bank)
        found = surveying.result() if surveying is not None else None
    _record(parts.store, request, SafetyStage.IMAGE, image.decision, photo, image.pdq_hex)
    if image.decision.verdict == Verdict.BLOCK:
        raise Refused(image.decision, SafetyStage.IMAGE)
    timed("safety", start)
    checkpoint()
    if earlier is not None:
        # A retry passes today's checks (hash banks included) before it gets the same video
        # back; the service checked strikes and the rate limit before admitting it.
        return Result(earlier, parts.store.read_mp4(earlier), True, timings)

    start = time.perf_counter()

    def on_frame(done: int, total: int, stage: ProgressStage = ProgressStage.GENERATING) -> None:
        at.update(stage=stage, done=done, total=total)
        checkpoint()
        report(stage, done, total)

    take = parts.motion.prepare(photo.rgb, image.faces, request.caption, request.options,
                                found)
    total = len(take)
    timed("motion", start)
    checkpoint()

    video_id = new_video_id()
    # The frames are streamed: first the few that the output check and the watermark planner
    # read, then every frame in order, a batch at a time, straight into the encoder (which
    # marks each): no request holds the whole clip raw (72 720p frames are ~236 MB).
    on_frame(0, total)
    start = time.perf_counter()
    checked = parts.safety.output_frame_picks(total)
    known = take.frames(checked, share())  # kept: the batches copy these instead of drawing
    # The output check only reads its frames and the encoder works on its own converted
    # copies, so the check runs beside everything up to the encoder's end; a refusal throws
    # the encoded video away unseen.
    with ThreadPoolExecutor(1, thread_name_prefix="output-check") as pool:
        checking = pool.submit(parts.safety.check_frames,
                               SampledFrames(take.shape, {i: known[i] for i in checked}))
        planning = take.frames([t for t in watermark.planned_frames(total) if t not in known],
                               share())
        timed("sample", start)
        checkpoint()
        start = time.perf_counter()
        # The planner's frames are kept as the I420 planes the encoder would make of them
        # (half the bytes of RGB, ~21 MB at 720p), not drawn a second time in their batch:
        # drawing them again cost ~5% of the request's CPU. They are converted while the
        # mark is planned (which only reads them), on the second core of a lone request.
        sampled = SampledFrames(take.shape, {**known, **planning})
        with ThreadPoolExecutor(1, thread_name_prefix="convert") as helper:
            converting = helper.submit(_to_i420, planning)
            # The mark goes onto the luma planes the encoder makes anyway: a third of the
            # cost.
            mark = watermark.LumaMark.plan(sampled, video_id)
            converted = converting.result()
        del sampled, planning
        timed("watermark", start)
        start = time.perf_counter()
        # x264 keeps the threads it opens with; the frames are drawn on the share of the
        # moment, batch by batch.
        encoding = replace(parts.encode, threads=n) if (n := share()) else parts.encode
        # Drawing a frame is part of making it: GENERATING counts frames drawn and encoded,
        # ENCODING marks the encoder's flush.
        video = encode_batches(draw_batches(take, STREAM_BATCH, share, known, converted),
                               take.shape, take.fps, encoding, on_frame, mark.apply)
        del known, converted
        on_frame(total, total, ProgressStage.ENCODING)
        timed("encode", start)
        start = time.perf_counter()
        output = checking.result()
        timed("output_check_wait", start)
    _record(parts.store, request, SafetyStage.OUTPUT, output, photo, image.pdq_hex)
    if output.verdict == Verdict.BLOCK:
        raise Refused(output, SafetyStage.OUTPUT)
    checkpoint()

    report(ProgressStage.SIGNING, 0, 0)
    start = time.perf_counter()
    info = GenerationInfo(
        video_id=video_id, model_id=take.model_id, model_version=take.model_version,
        model_sha256=take.model_sha256, seed=request.options.seed, params=take.params,
        claim_generator=CLAIM_GENERATOR,
    )
    identity = parts.identity()
    signed = sign_video(video.mp4, photo.data, photo.mime, info, identity)
    timed("sign", start)

    report(ProgressStage.STORING, 0, 0)
    start = time.perf_counter()
    # The record keeps the claim generator the manifest was signed with (VideoInfo returns it).
    params = {**take.params, "claim_generator": info.claim_generator}
    record = _video_record(request, video_id, photo, image.pdq_hex, len(image.faces), params,
                           take, video, signed.manifest_id, identity)
    # The decisions recorded above are linked to the video by the request id, in the same
    # transaction that stores it: each is written once, never copied.
    stored = parts.store.add_video(record, signed.mp4, photo.data, request.request_id)
    reused = stored.id != video_id
    flagged = sorted({c for d in (caption, image.decision, output) for c in d.review})
    if flagged and not reused:
        # Allowed but flagged by policy: it goes to the moderators' queue like a user report.
        parts.store.upsert_report(
            stored.id, SAFETY_REVIEWER, review_reason(flagged),
            f"flagged by safety policy {caption.policy_version}: {', '.join(flagged)}",
            limit_per_hour=None,
        )
    timed("store", start)
    mp4 = parts.store.read_mp4(stored) if reused else signed.mp4
    report(ProgressStage.DONE, total, total)
    return Result(stored, mp4, reused, timings)


def _survey(parts: Parts, photo: Photo, caption: str) -> object | None:
    """``parts.motion.regions`` for ``prepare``, or None if it failed: ``prepare`` then
    looks again and fails where it always did, after the image decision is recorded."""
    try:
        return parts.motion.regions(photo.rgb, caption)
    except Exception:  # noqa: BLE001 - raised again by prepare, in its place
        return None


def _asked(threads: int | ThreadShare | None) -> Callable[[], int | None]:
    """``threads`` as a function the stages ask (a fixed count always answers the same)."""
    if threads is None or isinstance(threads, int):
        return lambda: threads
    return threads


def draw_batches(take: Take, size: int, share: Callable[[], int | None],
                 known: dict[int, np.ndarray],
                 converted: dict[int, np.ndarray] | None = None,
                 ) -> Iterator[np.ndarray | list[np.ndarray]]:
    """Every frame in order, ``size`` at a time: ``take.batches(size, threads, known)``, the
    same frames, each batch drawn on the request's share of the cores at that moment. With
    a share of two or more the next batch is drawn on a second thread while the encoder
    works through this one (in a second buffer, ~11-13 MB more at 720p): x264 alone keeps
    two cores only partly busy. A batch is consumed before the next is asked for
    (encode_batches). ``converted``: frames the caller already has as I420 planes
    (``rgb_to_i420_bt709``), which take their place in the batch instead of being drawn
    (a batch that has one is a list of frames) and are let go as they pass."""
    total = len(take)
    converted = converted if converted is not None else {}
    buffers: list[np.ndarray] = []

    def draw(first: int, slot: int, threads: int | None) -> np.ndarray | list[np.ndarray]:
        while len(buffers) <= slot:
            buffers.append(np.empty((min(size, total), *take.shape[1:]), np.uint8))
        # Frames drawn ahead for the checks are copied, and let go.
        batch = take.fill(first, buffers[slot][: min(total, first + size) - first], threads,
                          known, converted)
        if not any(first + i in converted for i in range(len(batch))):
            return batch
        return [converted.pop(first + i, frame) for i, frame in enumerate(batch)]

    with ThreadPoolExecutor(1, thread_name_prefix="draw-ahead") as helper:
        ahead: Future[np.ndarray | list[np.ndarray]] | None = None
        slot = 0  # the buffer of the batch the encoder has
        for first in range(0, total, size):
            if ahead is not None:
                batch, slot = ahead.result(), 1 - slot
            else:
                batch = draw(first, slot, share())
            ahead = None
            n = share()
            if n is not None and n >= 2 and first + size < total:
                ahead = helper.submit(draw, first + size, 1 - slot, n - 1)
            yield batch


def _to_i420(frames: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Each RGB frame as its I420 planes, taken out of ``frames`` (emptied) as it is
    converted, so that the RGB frame is freed as soon as nobody else holds it."""
    out: dict[int, np.ndarray] = {}
    while frames:
        index, rgb = frames.popitem()
        out[index] = rgb_to_i420_bt709(rgb)
        del rgb
    return out


def _record(
    store: Store, request: AnimateRequest, stage: SafetyStage, decision: Decision,
    photo: Photo | None = None, pdq_hex: str | None = None,
) -> None:
    store.record_decision(
        DecisionRecord(
            request_id=request.request_id, user=request.user, stage=stage,
            verdict=decision.verdict, category=decision.category,
            policy_version=decision.policy_version, checks=decision.to_json()["checks"],
            photo_sha256=photo.sha256 if photo else None, pdq_hex=pdq_hex,
        )
    )


def _video_record(
    request: AnimateRequest, video_id: str, photo: Photo, pdq_hex: str, faces: int,
    params: dict, take: Take, video: Video, manifest_id: str, identity: SigningIdentity,
) -> VideoRecord:
    return VideoRecord(
        id=video_id, owner=request.user, status=VideoStatus.READY, caption=request.caption,
        model_id=take.model_id, model_version=take.model_version,
        model_sha256=take.model_sha256, params=dict(params),
        photo_sha256=photo.sha256, photo_mime=photo.mime, pdq_hex=pdq_hex,
        width=video.width, height=video.height, fps=video.fps, frames=video.frames,
        size_bytes=0, video_sha256="", manifest_id=manifest_id, c2pa_state="Signed",
        signer=identity.subject, faces=faces,
        idempotency_key=request.idempotency_key or None,
        request_fingerprint=request.fingerprint(),
    )

