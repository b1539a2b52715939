"""Region hints over gRPC: the user points at what must stay still (or at sky, or water)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest

from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from provenance.verify import verify_mp4
from tests.conftest import jpeg
from tests.test_motion import plaque_scene
from tools.harness import ServerProcess

pytestmark = pytest.mark.integration

SMALL = pb.AnimateOptions(long_side=360, duration_s=1.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir=tmp_path_factory.mktemp("alive-hints")) as process:
        yield process


def still(*points: tuple[float, float]) -> pb.RegionHint:
    return pb.RegionHint(kind=pb.HINT_KIND_KEEP_STILL,
                         points=[pb.HintPoint(x=x, y=y) for x, y in points])


def frames(mp4: bytes) -> np.ndarray:
    with av.open(io.BytesIO(mp4)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def moving_fraction(video: np.ndarray, mask: np.ndarray) -> float:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    g0 = cv2.cvtColor(video[0], cv2.COLOR_RGB2GRAY)
    most = np.zeros(mask.shape, np.float32)
    for frame in video[1::3]:
        flow = dis.calc(g0, cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), None)
        np.maximum(most, np.sqrt((flow**2).sum(axis=2)), out=most)
    return float((most[mask] > 1.0).mean())


def test_a_keep_still_hint_keeps_the_object_still_in_the_delivered_video(
    server: ServerProcess,
) -> None:
    photo, plaque = plaque_scene()
    with AliveClient(server.addr, token=server.token("hinter")) as client:
        result = client.animate(jpeg(photo, quality=95), "", SMALL,
                                hints=[still((75 / 360, 40 / 240))])
    video = frames(result.mp4)
    h, w = video.shape[1:3]
    inside = cv2.resize(plaque.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    # Decoded H.264 flickers by a few grey levels, so motion is judged by optical flow (as in
    # the eval): a pixel moves when the flow from frame 0 exceeds 1 px in some frame. Flow
    # bleeds a pixel or two across the border of the drifting sky next to the plaque, so its
    # outermost 2 pixels are not judged.
    inside = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert moving_fraction(video, inside) <= 0.01
    # The hints are part of the video's recorded parameters, in its signed C2PA claim too.
    anchors = (server.data_dir / "keys" / "c2pa-dev-root.pem").read_bytes()
    claimed = verify_mp4(result.mp4, anchors).params
    assert "still:0.2083,0.1667" in str(claimed)


@pytest.mark.parametrize(
    ("hints", "reason"),
    [
        ([pb.RegionHint(kind=pb.HINT_KIND_UNSPECIFIED, points=[pb.HintPoint(x=0.5, y=0.5)])],
         "BAD_HINT"),
        ([pb.RegionHint(kind=pb.HINT_KIND_KEEP_STILL)], "BAD_HINT"),
        ([still((1.5, 0.5))], "BAD_HINT"),
        ([still((float("nan"), 0.5))], "BAD_HINT"),
        ([still((0.5, 0.5))] * 17, "TOO_MANY_HINTS"),
        ([still(*[(0.5, 0.5)] * 33)], "BAD_HINT"),
        ([pb.RegionHint(kind=pb.HINT_KIND_KEEP_STILL, points=[pb.HintPoint(x=0.5, y=0.5)],
                        drift_direction_deg=90.0)], "BAD_HINT"),
        ([pb.RegionHint(kind=pb.HINT_KIND_ANIMATE_SKY, points=[pb.HintPoint(x=0.5, y=0.5)],
                        drift_direction_deg=float("inf"))], "BAD_HINT"),
    ],
)
def test_bad_hints_are_refused_with_a_reason_and_the_server_stays_healthy(
    server: ServerProcess, landscape_jpeg: bytes, hints: list[pb.RegionHint], reason: str,
) -> None:
    with AliveClient(server.addr, token=server.token("hinter")) as client:
        with pytest.raises(grpc.RpcError) as failed:
            client.animate(landscape_jpeg, "", SMALL, hints=hints)
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(failed.value)[0] == reason
        assert "hints" in (failed.value.details() or "")


def test_a_retry_with_the_same_key_but_other_hints_is_a_different_request(
    server: ServerProcess, landscape_jpeg: bytes,
) -> None:
    with AliveClient(server.addr, token=server.token("hinter")) as client:
        client.animate(landscape_jpeg, "", SMALL, "hint-key", hints=[still((0.5, 0.9))])
        with pytest.raises(grpc.RpcError) as failed:
            client.animate(landscape_jpeg, "", SMALL, "hint-key", hints=[still((0.5, 0.8))])
        assert error_info(failed.value)[0] == "IDEMPOTENCY_KEY_REUSED"
