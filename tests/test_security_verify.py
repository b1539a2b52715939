"""VerifyVideo under attack: huge files, floods, forged manifests, strangers' videos."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from tools.harness import ServerProcess
from tools.load import synthetic_mp4

pytestmark = pytest.mark.integration

SMALL = pb.AnimateOptions(long_side=320, duration_s=1.0)
SLOW = pb.AnimateOptions(long_side=1280, duration_s=4.0)
VERIFIES_PER_MINUTE = 6
C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path
           ) -> Iterator[ServerProcess]:
    process = ServerProcess(data_dir=tmp_path_factory.mktemp("verify"), env={
        "ALIVE_WORKERS": "1", "ALIVE_QUEUE_DEPTH": "0",
        "ALIVE_USER_VERIFIES_PER_MINUTE": str(VERIFIES_PER_MINUTE),
    })
    with process:
        yield process


@pytest.fixture(scope="module")
def alices_video(server: ServerProcess, landscape_jpeg: bytes) -> tuple[pb.VideoInfo, bytes]:
    with AliveClient(server.addr, token=server.token("alice")) as client:
        made = client.animate(landscape_jpeg, "", SMALL)
    return made.info, made.mp4


def top_level_boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        yield kind, data[offset:offset + size]
        offset += size


def refused(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as failed:
        call()
    return failed.value.code(), error_info(failed.value)[0]


def serving(addr: str) -> bool:
    with grpc.insecure_channel(addr) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_a_video_beyond_the_resolution_cap_is_refused_before_it_is_decoded(
    server: ServerProcess,
) -> None:
    huge = synthetic_mp4(4096, 2304, 2)  # 9.4 Mpx a frame; the default cap is 4K UHD (8.3 Mpx)
    with AliveClient(server.addr, token=server.token("hugo")) as client:
        code, reason = refused(lambda: client.verify(huge))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VIDEO_TOO_LARGE")
        # Within the cap it is read as usual.
        reply = client.verify(synthetic_mp4(320, 240, 8))
    assert reply.validation_state == "Absent" and not reply.record_found
    assert serving(server.addr)


def test_verify_video_waits_for_the_same_admission_as_animate(
    server: ServerProcess, landscape_jpeg: bytes,
) -> None:
    started = threading.Event()

    def generate() -> None:
        with AliveClient(server.addr, token=server.token("gina")) as client:
            client.animate(landscape_jpeg, "", SLOW, on_progress=lambda _p: started.set())

    worker = threading.Thread(target=generate)
    worker.start()
    try:
        assert started.wait(120)
        with AliveClient(server.addr, token=server.token("vera")) as client:
            code, reason = refused(lambda: client.verify(synthetic_mp4(320, 240, 8)))
        # One worker, no queue: the verification is refused like a second Animate would be.
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "AT_CAPACITY")
    finally:
        worker.join()


def test_one_user_may_verify_only_so_many_videos_a_minute(server: ServerProcess) -> None:
    small = synthetic_mp4(160, 120, 4)
    with AliveClient(server.addr, token=server.token("flooder")) as client:
        for _ in range(VERIFIES_PER_MINUTE):
            client.verify(small)
        code, reason = refused(lambda: client.verify(small))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and reason == "RATE_LIMITED"
    with AliveClient(server.addr, token=server.token("someone-else")) as client:
        assert client.verify(small).validation_state == "Absent"


def test_a_kilobyte_of_zeros_has_no_manifest(server: ServerProcess) -> None:
    with AliveClient(server.addr, token=server.token("zed")) as client:
        reply = client.verify(b"\0" * 1024)
    assert not reply.manifest_present and reply.validation_state == "Absent"


def test_a_forged_manifest_reusing_a_real_id_names_no_record(
    server: ServerProcess, alices_video: tuple[pb.VideoInfo, bytes],
) -> None:
    info, mp4 = alices_video
    # Alice's manifest box appended to a video it never signed: same manifest id, broken
    # binding, no watermark in the pixels.
    manifest_box = next(box for kind, box in top_level_boxes(mp4)
                        if kind == b"uuid" and box[8:24] == C2PA_UUID)
    forged = synthetic_mp4(320, 240, 8) + manifest_box
    with AliveClient(server.addr, token=server.token("alice")) as client:
        reply = client.verify(forged)
    assert reply.manifest_present and reply.manifest_id == info.provenance.manifest_id
    assert reply.validation_state == "Invalid"
    assert not reply.record_found and reply.record_status == ""


def test_only_the_owner_sees_a_videos_record(
    server: ServerProcess, alices_video: tuple[pb.VideoInfo, bytes],
) -> None:
    info, mp4 = alices_video
    with AliveClient(server.addr, token=server.token("alice")) as client:
        mine = client.verify(mp4)
    assert mine.record_found and mine.record_manifest_id == info.provenance.manifest_id
    assert mine.record_status == "ready"
    with AliveClient(server.addr, token=server.token("stranger")) as client:
        theirs = client.verify(mp4)
    # The file's own credentials are still checked for anyone who holds it.
    assert theirs.validation_state == "Trusted" and theirs.ai_generated
    assert not theirs.record_found and theirs.record_status == "" and \
        theirs.record_manifest_id == ""
