"""Hostile input: each gets a precise error, the server stays healthy, stored data is untouched."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from sqlalchemy import func, select

from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from alive_service.store import schema
from tests.test_decode import png_header_only
from tools.harness import ServerProcess

pytestmark = pytest.mark.integration

SMALL = pb.AnimateOptions(long_side=256, duration_s=1.0)


def image_bytes(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir=tmp_path_factory.mktemp("alive-hostile")) as process:
        yield process


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[AliveClient]:
    with AliveClient(server.addr, token=server.token("mallory")) as c:
        yield c


def snapshot(server: ServerProcess) -> tuple[int, int, int, list[str]]:
    store = server.store()
    with store.engine.connect() as conn:
        counts = [int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                  for t in (schema.Video, schema.Report, schema.Decision)]
    store.close()
    blobs = sorted(str(p) for p in (server.data_dir / "blobs").rglob("*") if p.is_file())
    return counts[0], counts[1], counts[2], blobs


def refused(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as failed:
        call()
    return failed.value.code(), error_info(failed.value)[0]


def hostile_photos(landscape_jpeg: bytes) -> list[tuple[str, bytes, str]]:
    rng = np.random.default_rng(7)
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    return [
        ("zero bytes", b"", "EMPTY_PHOTO"),
        ("random bytes", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
         "UNSUPPORTED_FORMAT"),
        ("truncated JPEG", landscape_jpeg[: len(landscape_jpeg) // 2], "CORRUPT_PHOTO"),
        ("PNG bomb declaring 20000x20000", png_header_only(20000, 20000),
         "PHOTO_TOO_MANY_PIXELS"),
        ("animated GIF", image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]),
         "UNSUPPORTED_FORMAT"),
        ("1x1", image_bytes(Image.new("RGB", (1, 1)), "PNG"), "PHOTO_TOO_SMALL"),
        ("extreme aspect ratio", image_bytes(Image.new("RGB", (4000, 100)), "PNG"),
         "BAD_ASPECT_RATIO"),
        ("over 25 MB", b"\xff\xd8\xff" + bytes(25 * 1024 * 1024), "PHOTO_TOO_LARGE"),
    ]


def test_hostile_photos_captions_ids_and_bodies_are_refused_precisely(
    server: ServerProcess, client: AliveClient, landscape_jpeg: bytes,
) -> None:
    before = snapshot(server)
    for name, photo, reason in hostile_photos(landscape_jpeg):
        got = refused(lambda p=photo: client.animate(p, "", SMALL))
        assert got == (grpc.StatusCode.INVALID_ARGUMENT, reason), name

    captions = [
        ("x" * 5000, "CAPTION_TOO_LONG"),
        ("ring the bell\x07", "BAD_CAPTION"),
        ("null\x00byte", "BAD_CAPTION"),
        ("private use \ue000", "BAD_CAPTION"),
    ]
    for caption, reason in captions:
        got = refused(lambda c=caption: client.animate(landscape_jpeg, c, SMALL))
        assert got == (grpc.StatusCode.INVALID_ARGUMENT, reason), repr(caption)

    for options in (pb.AnimateOptions(fps=500), pb.AnimateOptions(duration_s=float("nan")),
                    pb.AnimateOptions(long_side=-5), pb.AnimateOptions(sky=7.0)):
        got = refused(lambda o=options: client.animate(landscape_jpeg, "", o))
        assert got == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_OPTIONS"), str(options)
    got = refused(lambda: client.animate(landscape_jpeg, "", SMALL, idempotency_key="a b\n"))
    assert got == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_IDEMPOTENCY_KEY")

    for bad_id in ("", "0" * 15, "Z" * 16, "0123456789abcdef0", "'; DROP TABLE videos;--"):
        assert refused(lambda v=bad_id: client.get_video(v)) == (
            grpc.StatusCode.INVALID_ARGUMENT, "BAD_VIDEO_ID")
        assert refused(lambda v=bad_id: client.report(v, pb.REPORT_REASON_SPAM)) == (
            grpc.StatusCode.INVALID_ARGUMENT, "BAD_VIDEO_ID")
    assert refused(lambda: client.get_video("0123456789abcdef")) == (
        grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND")

    # A body with invalid UTF-8 in a string field, sent raw past the client's checks.
    raw = pb.ReportVideoRequest(video_id="0123456789abcdef").SerializeToString()
    raw += b"\x1a\x03\xff\xfe\xfd"  # field 3 (details), three bytes that are not UTF-8
    call = client.channel.unary_unary("/alive.v1.AliveService/ReportVideo")
    assert refused(lambda: call(raw, metadata=client.metadata, timeout=10)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")

    assert snapshot(server) == before
    with grpc.insecure_channel(server.addr) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert server.process is not None and server.process.poll() is None


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "I;16", "P"])
def test_unusual_but_valid_images_are_animated(
    client: AliveClient, landscape_rgb: np.ndarray, mode: str,
) -> None:
    img = Image.fromarray(landscape_rgb)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
        data = image_bytes(img, "PNG")
    elif mode == "CMYK":
        data = image_bytes(img.convert("CMYK"), "JPEG")
    else:
        data = image_bytes(img.convert(mode), "PNG")
    made = client.animate(data, "", SMALL)
    assert made.info.video_id and made.info.width == 256


def test_a_photo_of_twenty_megabytes_is_accepted(client: AliveClient) -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (2600, 3900, 3), dtype=np.uint8)
    data = image_bytes(Image.fromarray(noise), "JPEG", quality=98)
    assert len(data) > 15 * 1024 * 1024
    made = client.animate(data, "", SMALL)
    assert made.info.video_id
