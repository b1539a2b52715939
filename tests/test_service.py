"""The mobile client's view: the real server process over gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from sqlalchemy import select

from alive_service import CLAIM_GENERATOR
from alive_service.auth import load_or_create_secret, mint_token
from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from alive_service.store import SqlStore, schema
from provenance.verify import verify_mp4
from tools.harness import ServerProcess

pytestmark = pytest.mark.integration

SMALL = pb.AnimateOptions(long_side=320, duration_s=1.0)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           model_dir: Path) -> Iterator[ServerProcess]:
    db_url = (request.getfixturevalue("pg_databases").new()
              if request.param == "postgres" else "")
    process = ServerProcess(data_dir=tmp_path_factory.mktemp(f"alive-{request.param}"),
                            db_url=db_url)
    with process:
        yield process


@pytest.fixture(scope="module")
def store(server: ServerProcess) -> SqlStore:
    return server.store()


def client_for(server: ServerProcess, user: str = "alice") -> AliveClient:
    return AliveClient(server.addr, token=server.token(user))


def rpc_failure(call) -> tuple[grpc.StatusCode, str, dict[str, str]]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as failed:
        call()
    reason, metadata, _ = error_info(failed.value)
    return failed.value.code(), reason, metadata


def test_a_photo_comes_back_as_a_signed_playable_looping_video(
    server: ServerProcess, landscape_jpeg: bytes,
) -> None:
    with client_for(server) as client:
        result = client.animate(landscape_jpeg, "clouds over the temple", SMALL)
    stages = [p.stage for p in result.progress]
    assert stages[0] == pb.STAGE_CHECKING and pb.STAGE_GENERATING in stages
    assert stages.index(pb.STAGE_GENERATING) < stages.index(pb.STAGE_ENCODING)
    assert stages.index(pb.STAGE_ENCODING) < stages.index(pb.STAGE_SIGNING)
    generating = [p for p in result.progress if p.stage == pb.STAGE_GENERATING]
    assert generating[-1].frames_done == generating[-1].frames_total == 24

    info = result.info
    assert info.size_bytes == len(result.mp4) and (info.width, info.height) == (320, 214)
    assert info.provenance.signed and info.provenance.ai_generated
    # The MP4 is H.264 yuv420p with the index at the front (plays while downloading).
    assert result.mp4[4:8] == b"ftyp" and result.mp4.find(b"moov") < result.mp4.find(b"mdat")
    with av.open(io.BytesIO(result.mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) == 24
    anchors = (server.data_dir / "keys" / "c2pa-dev-root.pem").read_bytes()
    verified = verify_mp4(result.mp4, anchors)
    assert verified.state == "Trusted" and verified.ai_generated
    assert verified.manifest_id == info.provenance.manifest_id


def test_get_video_streams_back_the_same_bytes(server: ServerProcess, landscape_jpeg: bytes
                                               ) -> None:
    with client_for(server) as client:
        made = client.animate(landscape_jpeg, "", SMALL)
        assert client.get_video(made.info.video_id) == made.mp4
    with client_for(server, "bob") as other:
        code, reason, _ = rpc_failure(lambda: other.get_video("0123456789abcdef"))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND")
        code, reason, _ = rpc_failure(lambda: other.get_video("../../etc/passwd"))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_VIDEO_ID")


def test_video_info_names_the_claim_generator_the_signed_manifest_names(
    server: ServerProcess, landscape_jpeg: bytes,
) -> None:
    with client_for(server, "carol") as client:
        made = client.animate(landscape_jpeg, "", SMALL)
        downloaded = client.get_video(made.info.video_id)
        listed = next(v for v in client.all_videos() if v.video_id == made.info.video_id)
    anchors = (server.data_dir / "keys" / "c2pa-dev-root.pem").read_bytes()
    manifest_says = verify_mp4(downloaded, anchors).claim_generator
    assert manifest_says == CLAIM_GENERATOR  # package name and version, from one place
    assert made.info.provenance.claim_generator == manifest_says
    assert listed.provenance.claim_generator == manifest_says


def test_a_retry_with_the_same_key_returns_the_same_video_and_stores_nothing_twice(
    server: ServerProcess, store: SqlStore, portrait_jpeg: bytes,
) -> None:
    with client_for(server) as client:
        first = client.animate(portrait_jpeg, "a big smile", SMALL, idempotency_key="retry-1")
        videos_before = store.count_videos()
        again = client.animate(portrait_jpeg, "a big smile", SMALL, idempotency_key="retry-1")
        assert again.info.video_id == first.info.video_id and again.info.reused
        assert again.mp4 == first.mp4
        assert store.count_videos() == videos_before
        code, reason, _ = rpc_failure(
            lambda: client.animate(portrait_jpeg, "different", SMALL, idempotency_key="retry-1"))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")


def test_reporting_a_video_returns_a_report_id_and_a_second_report_updates_it(
    server: ServerProcess, landscape_jpeg: bytes,
) -> None:
    with client_for(server) as owner:
        video_id = owner.animate(landscape_jpeg, "", SMALL).info.video_id
        owner.share(video_id, add=["carol"])  # private until shared
    with client_for(server, "carol") as carol:
        first = carol.report(video_id, pb.REPORT_REASON_SPAM, "looks like an ad")
        second = carol.report(video_id, pb.REPORT_REASON_HARASSMENT, "it mocks someone")
        assert first.report_id and second.report_id == first.report_id and second.updated
        code, reason, _ = rpc_failure(lambda: carol.report(video_id, 0))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_REASON")
        code, reason, _ = rpc_failure(
            lambda: carol.report("fedcba9876543210", pb.REPORT_REASON_SPAM))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND")
        code, reason, _ = rpc_failure(
            lambda: carol.report(video_id, pb.REPORT_REASON_SPAM, "x" * 5000))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DETAILS_TOO_LONG")


def test_every_rpc_needs_a_valid_token(server: ServerProcess, landscape_jpeg: bytes) -> None:
    forged = mint_token(b"a secret that is not the server secret", "mallory")
    expired = mint_token(load_or_create_secret(server.data_dir), "mallory", ttl_s=-10)
    for token in ("", "not-a-jwt", forged, expired):
        with AliveClient(server.addr, token=token) as client:
            for call in (
                lambda c=client: c.animate(landscape_jpeg, "", SMALL),
                lambda c=client: c.get_video("0123456789abcdef"),
                lambda c=client: c.report("0123456789abcdef", pb.REPORT_REASON_SPAM),
                lambda c=client: c.verify(b"\0" * 100),
            ):
                code, reason, _ = rpc_failure(call)
                assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "BAD_TOKEN")


def test_a_refused_caption_ends_with_the_policy_category_and_stores_only_the_decision(
    server: ServerProcess, store: SqlStore, landscape_jpeg: bytes,
) -> None:
    videos_before = store.count_videos()
    with client_for(server, "dave") as client:
        code, reason, metadata = rpc_failure(
            lambda: client.animate(landscape_jpeg, "make them look like a naked child", SMALL))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "POLICY_BLOCKED")
    assert metadata["category"] and metadata["policy_version"] and metadata["stage"] == "caption"
    assert store.count_videos() == videos_before
    with store.engine.connect() as conn:
        decisions = conn.execute(
            select(schema.Decision.verdict, schema.Decision.category, schema.Decision.photo_sha256)
            .where(schema.Decision.user == "dave")
        ).all()
    assert [(d.verdict, d.category) for d in decisions] == [("block", metadata["category"])]


def test_health_and_reflection_describe_the_service(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "alive.v1.AliveService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "alive.v1.AliveService" in services and "grpc.health.v1.Health" in services


def test_verify_video_finds_the_record_of_a_signed_video(
    server: ServerProcess, landscape_jpeg: bytes,
) -> None:
    with client_for(server) as client:
        made = client.animate(landscape_jpeg, "", SMALL)
        reply = client.verify(made.mp4)
    assert reply.manifest_present and reply.validation_state == "Trusted" and reply.ai_generated
    assert reply.record_found and reply.record_manifest_id == made.info.provenance.manifest_id


def test_a_stripped_and_downscaled_copy_is_traced_back_to_its_video_by_the_watermark(
    server: ServerProcess, landscape_jpeg: bytes,
) -> None:
    from provenance.media import reencode

    with client_for(server) as client:
        made = client.animate(landscape_jpeg, "", pb.AnimateOptions(long_side=640))
        copy = reencode(made.mp4, crf=28, scale=0.5)  # what a re-upload or screen grab does
        reply = client.verify(copy)
    assert not reply.manifest_present and reply.validation_state == "Absent"
    assert reply.watermark_video_id == made.info.video_id
    assert reply.record_found and reply.record_manifest_id == made.info.provenance.manifest_id


def test_a_caption_flagged_for_review_is_animated_and_queued_for_moderators(
    server: ServerProcess, store: SqlStore, landscape_jpeg: bytes,
) -> None:
    with client_for(server, "erin") as client:
        made = client.animate(landscape_jpeg, "this fucking sunset is amazing", SMALL)
    (flag,) = store.reports_for(made.info.video_id)
    assert flag.reporter == "system:safety-review" and flag.status == "open"
    assert "profanity" in flag.details
