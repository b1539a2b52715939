"""The gRPC handlers: authenticate, validate, run the pipeline, map errors to statuses."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError as ProtoDecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from alive_service import metrics, pages, validate, vocabulary
from alive_service.auth import AuthError, Identity, identity_from_metadata
from alive_service.config import Settings
from alive_service.decode import DecodeError
from alive_service.pipeline import AnimateRequest, Cancelled, Refused, Result
from alive_service.rpc import RpcError, pb, pb_grpc, rich_status
from alive_service.store import (
    Conflict,
    LookupLimits,
    NotFound,
    RateLimited,
    Store,
    StoreUnavailable,
    TakenDown,
    VideoRecord,
)
from alive_service.workers import Full, Progress, WorkerCrashed, WorkerPool
from provenance.verify import VideoLimits, VideoTooLarge, check_boxes

log = logging.getLogger("alive.service")

CHUNK = 256 * 1024
# A client that sets no deadline still does not hold a worker for ever.
MAX_ANIMATE_S = 300.0

# The progress vocabulary as the wire spells it (alive.v1.Stage).
_STAGES = {stage: pb.Stage.Value(stage.proto_name) for stage in vocabulary.ProgressStage}


@dataclass
class Runtime:
    """What the handlers need; ``store`` and ``workers`` are None until the database is
    migrated and every worker has loaded its models. ``workers`` also owns CPU capacity:
    Animate and VerifyVideo both run through it."""

    settings: Settings
    secret: bytes
    trust_anchors: bytes
    store: Store | None = None
    workers: WorkerPool | None = None


@dataclass(frozen=True)
class Malformed:
    """A request body that does not parse (e.g. invalid UTF-8 in a string field)."""

    error: str


def _lenient(message: Any) -> Any:
    def parse(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except ProtoDecodeError as exc:
            return Malformed(str(exc))

    return parse


def _parsed(request: Any) -> None:
    if isinstance(request, Malformed):
        raise validate.invalid("MALFORMED_REQUEST", f"the request does not parse: {request.error}")


def add_to_server(servicer: AliveServicer, server: grpc.Server) -> None:
    """Register the service with deserializers that turn a malformed body into
    INVALID_ARGUMENT instead of grpc's generic INTERNAL."""
    handlers = {
        "Animate": grpc.unary_stream_rpc_method_handler(
            servicer.Animate, _lenient(pb.AnimateRequest), pb.AnimateEvent.SerializeToString),
        "GetVideo": grpc.unary_stream_rpc_method_handler(
            servicer.GetVideo, _lenient(pb.GetVideoRequest), pb.VideoChunk.SerializeToString),
        "ReportVideo": grpc.unary_unary_rpc_method_handler(
            servicer.ReportVideo, _lenient(pb.ReportVideoRequest),
            pb.ReportVideoResponse.SerializeToString),
        "VerifyVideo": grpc.unary_unary_rpc_method_handler(
            servicer.VerifyVideo, _lenient(pb.VerifyVideoRequest),
            pb.VerifyVideoResponse.SerializeToString),
        "ListVideos": grpc.unary_unary_rpc_method_handler(
            servicer.ListVideos, _lenient(pb.ListVideosRequest),
            pb.ListVideosResponse.SerializeToString),
        "DeleteVideo": grpc.unary_unary_rpc_method_handler(
            servicer.DeleteVideo, _lenient(pb.DeleteVideoRequest),
            pb.DeleteVideoResponse.SerializeToString),
        "ShareVideo": grpc.unary_unary_rpc_method_handler(
            servicer.ShareVideo, _lenient(pb.ShareVideoRequest),
            pb.ShareVideoResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("alive.v1.AliveService", handlers),))


def _timestamp(record: VideoRecord) -> Timestamp:
    stamp = Timestamp()
    if record.created_at is not None:
        stamp.FromDatetime(record.created_at)
    return stamp


def video_info(record: VideoRecord, reused: bool = False) -> pb.VideoInfo:
    return pb.VideoInfo(
        video_id=record.id, size_bytes=record.size_bytes, duration_s=record.duration_s,
        width=record.width, height=record.height, fps=record.fps, model_id=record.model_id,
        model_version=record.model_version, content_type="video/mp4",
        sha256=record.video_sha256, created_at=_timestamp(record), reused=reused,
        provenance=pb.Provenance(
            signed=bool(record.manifest_id), ai_generated=True, manifest_id=record.manifest_id,
            signer=record.signer, claim_generator=str(record.params.get("claim_generator", "")),
            validation_state=record.c2pa_state,
        ),
    )


def _chunks(data: bytes, start: int = 0, end: int | None = None) -> Iterator[pb.VideoChunk]:
    """data[start:end] in chunks that carry their offset in the whole file."""
    end = len(data) if end is None else end
    for offset in range(start, end, CHUNK):
        yield pb.VideoChunk(data=data[offset : min(offset + CHUNK, end)], offset=offset)


def _byte_range(request: pb.GetVideoRequest, size: int) -> tuple[int, int]:
    """[start, end) of a (resumed) download; offset == size is an empty, valid range."""
    if request.offset < 0 or request.length < 0:
        raise validate.invalid("BAD_RANGE", "offset and length must not be negative")
    if request.offset > size:
        raise RpcError(grpc.StatusCode.OUT_OF_RANGE, "OFFSET_PAST_END",
                       f"offset {request.offset} is past the end of the video ({size} bytes)",
                       metadata={"size": str(size)})
    end = size if not request.length else min(size, request.offset + request.length)
    return request.offset, end


class AliveServicer(pb_grpc.AliveServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    # -- helpers ----------------------------------------------------------------------------
    def _identity(self, context: grpc.ServicerContext) -> Identity:
        try:
            identity = identity_from_metadata(self.rt.secret, dict(context.invocation_metadata()),
                                              self.rt.settings.max_token_lifetime_s)
        except AuthError as exc:
            raise RpcError(grpc.StatusCode.UNAUTHENTICATED, "BAD_TOKEN", str(exc)) from None
        # Before the store is up every RPC is refused as WARMING_UP anyway.
        if self.rt.store is not None and self.rt.store.token_revoked(identity.token_id):
            raise RpcError(grpc.StatusCode.UNAUTHENTICATED, "BAD_TOKEN",
                           "the token was revoked")
        return identity

    def _store(self) -> Store:
        return self._ready()[0]

    def _ready(self) -> tuple[Store, WorkerPool]:
        if self.rt.store is None or self.rt.workers is None:
            raise RpcError(grpc.StatusCode.UNAVAILABLE, "WARMING_UP",
                           "the service is loading its models; retry shortly", retry_after_s=2.0)
        return self.rt.store, self.rt.workers

    def _rate_limit(self, store: Store, workers: WorkerPool, user: str) -> None:
        limit = self.rt.settings.user_requests_per_minute
        # Counted at admission, in one transaction in the database: concurrent requests of
        # one user (on any replica) cannot all read the same count, and refused ones count.
        # A request the server has no room for is not an admission (AT_CAPACITY, uncharged).
        workers.check()
        try:
            store.admit(user, "animate", limit)
        except RateLimited as exc:
            raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "USER_RATE_LIMITED",
                           f"at most {limit} videos a minute per user; slow down",
                           retry_after_s=exc.retry_after_s) from None

    def _strikes(self, store: Store, user: str) -> None:
        strikes = store.strikes_for(user)
        if len(strikes) >= self.rt.settings.strike_limit:
            raise RpcError(grpc.StatusCode.PERMISSION_DENIED, "REPEAT_OFFENDER",
                           f"{len(strikes)} of your videos were taken down after review; "
                           "this account may no longer create videos",
                           metadata={"strikes": str(len(strikes))})

    def _video_for(self, video_id: str, user: str) -> VideoRecord:
        """The video if ``user`` may see it (store.visible_to). Anyone else gets exactly what
        an unknown id gets; only the owner learns of a takedown. Every lookup counts against
        the user's lookup limits, misses most."""
        limits = LookupLimits(self.rt.settings.user_lookups_per_minute,
                              self.rt.settings.user_lookup_misses_per_hour)
        try:
            record = self._store().get_visible_video(video_id, user, limits)
        except RateLimited as exc:
            raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "LOOKUP_RATE_LIMITED", str(exc),
                           retry_after_s=exc.retry_after_s) from None
        if record is None:
            raise RpcError(grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND", f"no video {video_id}")
        if record.status == vocabulary.VideoStatus.TAKEN_DOWN:  # only the owner gets here
            raise RpcError(grpc.StatusCode.NOT_FOUND, "TAKEN_DOWN",
                           f"video {video_id} was taken down after review and is no longer "
                           "available")
        return record

    def _fail(self, context: grpc.ServicerContext, method: str, error: RpcError) -> None:
        metrics.REQUESTS.labels(method, error.code.name).inc()
        log.info("refused", extra={"method": method, "code": error.code.name,
                                   "reason": error.reason})
        context.abort_with_status(rich_status(error))

    @staticmethod
    def _translate(exc: Exception) -> RpcError:
        if isinstance(exc, RpcError):
            return exc
        if isinstance(exc, DecodeError):
            return RpcError(grpc.StatusCode.INVALID_ARGUMENT, exc.reason, str(exc))
        if isinstance(exc, Refused):
            decision = exc.decision
            return RpcError(
                grpc.StatusCode.FAILED_PRECONDITION, "POLICY_BLOCKED",
                f"refused by safety policy: {decision.reason}",
                metadata={"category": decision.category or "", "stage": exc.stage,
                          "policy_version": decision.policy_version},
            )
        if isinstance(exc, Conflict):
            return RpcError(grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED", str(exc))
        if isinstance(exc, RateLimited):
            return RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", str(exc),
                            retry_after_s=exc.retry_after_s)
        if isinstance(exc, TakenDown):
            return RpcError(grpc.StatusCode.NOT_FOUND, "TAKEN_DOWN", str(exc))
        if isinstance(exc, NotFound):
            return RpcError(grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND", str(exc))
        if isinstance(exc, StoreUnavailable):
            return RpcError(grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE",
                            "storage is temporarily unavailable; retry later", retry_after_s=5.0)
        if isinstance(exc, Cancelled):
            return RpcError(grpc.StatusCode.CANCELLED, "CANCELLED", str(exc))
        if isinstance(exc, WorkerCrashed):
            return RpcError(grpc.StatusCode.INTERNAL, "WORKER_CRASHED", str(exc))
        if isinstance(exc, Full):
            return RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "AT_CAPACITY",
                            "the server is at capacity; retry later",
                            retry_after_s=exc.retry_after_s)
        log.exception("internal error")
        return RpcError(grpc.StatusCode.INTERNAL, "INTERNAL", "internal error")

    # -- RPCs -------------------------------------------------------------------------------
    def Animate(self, request: pb.AnimateRequest, context: grpc.ServicerContext
                ) -> Iterator[pb.AnimateEvent]:
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            user = self._identity(context).user
            _parsed(request)
            store, workers = self._ready()
            if not request.photo:
                raise validate.invalid("EMPTY_PHOTO", "the request carries no photo")
            typed = AnimateRequest(
                user=user, request_id=request_id, photo=request.photo,
                caption=validate.caption(request.caption, self.rt.settings.max_caption_chars),
                options=validate.options_with_hints(request.options, request.hints),
                idempotency_key=validate.idempotency_key(request.idempotency_key),
            )
            self._rate_limit(store, workers, user)
            self._strikes(store, user)
            deadline = started + min(MAX_ANIMATE_S, context.time_remaining() or MAX_ANIMATE_S)

            def cancelled() -> bool:
                return not context.is_active() or time.perf_counter() > deadline

            # Progress goes out as the worker sends it; if the client goes away, grpc drops
            # this generator at a yield and the pool's iterator, closed with it, stops the work.
            result = None
            with contextlib.closing(workers.animate(typed, cancelled)) as events:
                for event in events:
                    if isinstance(event, Progress):
                        yield pb.AnimateEvent(progress=pb.Progress(
                            stage=_STAGES[event.stage], frames_done=event.done,
                            frames_total=event.total))
                        metrics.QUEUE_DEPTH.set(workers.queued)
                    else:
                        result = event
            if not isinstance(result, Result):
                raise RuntimeError("the worker pool ended a job without a result")
            for stage, seconds in result.timings.items():
                metrics.STAGE_SECONDS.labels(stage).observe(seconds)
            yield pb.AnimateEvent(result=video_info(result.video, result.reused))
            for chunk in _chunks(result.mp4):
                yield pb.AnimateEvent(chunk=chunk)
            metrics.REQUESTS.labels("Animate", "OK").inc()
            log.info("animated", extra={"request_id": request_id, "user": user,
                                        "video_id": result.video.id, "reused": result.reused,
                                        "timings": result.timings,
                                        "seconds": round(time.perf_counter() - started, 3)})
        except Exception as exc:  # noqa: BLE001 - every failure becomes a precise status
            error = self._translate(exc)
            if isinstance(exc, Refused):
                metrics.SAFETY_BLOCKS.labels(exc.decision.category or "unknown", exc.stage).inc()
            self._fail(context, "Animate", error)

    def GetVideo(self, request: pb.GetVideoRequest, context: grpc.ServicerContext
                 ) -> Iterator[pb.VideoChunk]:
        try:
            user = self._identity(context).user
            _parsed(request)
            record = self._video_for(validate.video_id(request.video_id), user)
            data = self._store().read_mp4(record)
            yield from _chunks(data, *_byte_range(request, len(data)))
            metrics.REQUESTS.labels("GetVideo", "OK").inc()
        except Exception as exc:  # noqa: BLE001
            self._fail(context, "GetVideo", self._translate(exc))

    def ReportVideo(self, request: pb.ReportVideoRequest, context: grpc.ServicerContext
                    ) -> pb.ReportVideoResponse:
        try:
            user = self._identity(context).user
            _parsed(request)
            video_id = validate.video_id(request.video_id)
            reason = validate.report_reason(request.reason)
            details = validate.details(request.details)
            self._video_for(video_id, user)
            report, updated = self._store().upsert_report(video_id, user, reason, details)
            metrics.REQUESTS.labels("ReportVideo", "OK").inc()
            log.info("reported", extra={"user": user, "video_id": video_id, "reason": reason,
                                        "report_id": report.id, "updated": updated})
            return pb.ReportVideoResponse(report_id=report.id, updated=updated)
        except Exception as exc:  # noqa: BLE001
            self._fail(context, "ReportVideo", self._translate(exc))
            raise AssertionError("unreachable") from None

    def VerifyVideo(self, request: pb.VerifyVideoRequest, context: grpc.ServicerContext
                    ) -> pb.VerifyVideoResponse:
        request_id = uuid.uuid4().hex
        try:
            user = self._identity(context).user
            _parsed(request)
            if not request.video:
                raise validate.invalid("EMPTY_VIDEO", "the request carries no video")
            store, workers = self._ready()
            settings = self.rt.settings
            workers.check()
            store.admit(user, "verify", settings.user_verifies_per_minute)
            limits = VideoLimits(max_pixels=settings.verify_max_pixels,
                                 max_duration_s=settings.verify_max_duration_s,
                                 max_frames=settings.verify_max_frames)
            # Decoding a hostile file is generation-sized work: same admission, in a worker.
            # The box headers are read first, here (microseconds, no decoding), so an
            # oversized file is refused without taking a worker's turn.
            try:
                check_boxes(request.video, limits)
                result = workers.verify(request.video, limits, request_id)
            except VideoTooLarge as exc:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, exc.reason, str(exc)) from None
            record = None
            # Only a manifest whose signature checks out may name a record: a forged one can
            # copy any real manifest id.
            if result.manifest_id and result.state in ("Trusted", "Valid"):
                record = store.find_by_manifest(result.manifest_id)
            watermark_id = result.watermark_video_id
            if watermark_id:
                marked = store.get_video(watermark_id)
                # An id with no record is read as "no watermark": that keeps the false-id
                # rate at the checksum's ~1e-6 times the chance of hitting a real id.
                if marked is None:
                    watermark_id = None
                record = record or marked
            if record is not None and not store.visible_to(record, user):
                record = None
            metrics.REQUESTS.labels("VerifyVideo", "OK").inc()
            return pb.VerifyVideoResponse(
                manifest_present=result.manifest_present, validation_state=result.state,
                ai_generated=result.ai_generated, signer=result.signer or "",
                claim_generator=result.claim_generator or "",
                manifest_id=result.manifest_id or "",
                parameters={k: str(v) for k, v in result.params.items()},
                failures=list(result.failures),
                watermark_video_id=watermark_id or "",
                watermark_confidence=result.watermark_confidence,
                record_found=record is not None,
                record_manifest_id=record.manifest_id if record else "",
                record_status=record.status if record else "",
            )
        except Exception as exc:  # noqa: BLE001
            self._fail(context, "VerifyVideo", self._translate(exc))
            raise AssertionError("unreachable") from None

    def ListVideos(self, request: pb.ListVideosRequest, context: grpc.ServicerContext
                   ) -> pb.ListVideosResponse:
        try:
            user = self._identity(context).user
            _parsed(request)
            try:
                size = pages.page_size(request.page_size)
                before = (pages.decode_token(self.rt.secret, user, request.page_token)
                          if request.page_token else None)
            except pages.BadPage as exc:
                raise validate.invalid(exc.reason, str(exc)) from None
            found = self._store().list_videos(user, size + 1, before)  # one more: a next page?
            page = found[:size]
            token = ""
            if len(found) > size and page[-1].created_at is not None:
                token = pages.encode_token(self.rt.secret, user, page[-1].created_at,
                                           page[-1].id)
            metrics.REQUESTS.labels("ListVideos", "OK").inc()
            return pb.ListVideosResponse(videos=[video_info(v) for v in page],
                                         next_page_token=token)
        except Exception as exc:  # noqa: BLE001
            self._fail(context, "ListVideos", self._translate(exc))
            raise AssertionError("unreachable") from None

    def DeleteVideo(self, request: pb.DeleteVideoRequest, context: grpc.ServicerContext
                    ) -> pb.DeleteVideoResponse:
        try:
            user = self._identity(context).user
            _parsed(request)
            video_id = validate.video_id(request.video_id)
            deletion = self._store().delete_video(video_id, user)
            metrics.REQUESTS.labels("DeleteVideo", "OK").inc()
            # The hold is logged for operators, never told to the owner (it would reveal a
            # report against the video).
            log.info("deleted", extra={"user": user, "video_id": video_id,
                                       "hold": deletion.hold, "event_id": deletion.event_id})
            stamp = Timestamp()
            stamp.FromDatetime(deletion.deleted_at)
            return pb.DeleteVideoResponse(video_id=video_id, delete_time=stamp)
        except Exception as exc:  # noqa: BLE001
            self._fail(context, "DeleteVideo", self._translate(exc))
            raise AssertionError("unreachable") from None

    def ShareVideo(self, request: pb.ShareVideoRequest, context: grpc.ServicerContext
                   ) -> pb.ShareVideoResponse:
        try:
            user = self._identity(context).user
            _parsed(request)
            video_id = validate.video_id(request.video_id)
            add = validate.users(request.add_users, "add_users")
            remove = validate.users(request.remove_users, "remove_users")
            record = self._video_for(video_id, user)
            if record.owner != user:  # a user it is shared with: knows it exists
                raise RpcError(grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER",
                               "only the video's owner may change who it is shared with")
            try:
                shared = self._store().share_video(video_id, user, add, remove,
                                                   self.rt.settings.max_shares_per_video)
            except Conflict as exc:
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, "TOO_MANY_SHARES",
                               str(exc)) from None
            metrics.REQUESTS.labels("ShareVideo", "OK").inc()
            log.info("shared", extra={"user": user, "video_id": video_id, "added": len(add),
                                      "removed": len(remove), "shared_with": len(shared)})
            return pb.ShareVideoResponse(shared_with=shared)
        except Exception as exc:  # noqa: BLE001
            self._fail(context, "ShareVideo", self._translate(exc))
            raise AssertionError("unreachable") from None
