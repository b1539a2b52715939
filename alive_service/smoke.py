"""`make smoke`: drive every RPC as the mobile client would.

With ALIVE_ADDR set, it smoke-tests that running server (token from ALIVE_TOKEN or
the dev token in ALIVE_DATA_DIR); otherwise it starts a server of its own on a
free port with a temporary data directory and tears it down afterwards.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from alive_service.client import AliveClient
from alive_service.harness import temporary_server
from alive_service.rpc import error_info, pb


def sample_photo() -> bytes:
    from sklearn.datasets import load_sample_image

    buffer = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def run(addr: str, token: str) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []

    def step(name: str, fn: Callable[[], str]) -> None:
        start = time.perf_counter()
        try:
            detail = fn()
            results.append((name, True, f"{detail} ({time.perf_counter() - start:.2f} s)"))
        except Exception as exc:  # noqa: BLE001 - a smoke test reports every failure
            results.append((name, False, f"{type(exc).__name__}: {exc}"))

    photo = sample_photo()
    state: dict[str, str] = {}
    with AliveClient(addr, token=token) as client:
        def health() -> str:
            reply = health_pb2_grpc.HealthStub(client.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, reply
            return "SERVING"

        def animate() -> str:
            made = client.animate(photo, "clouds drifting over the temple")
            state["id"], state["mp4_len"] = made.info.video_id, str(len(made.mp4))
            assert made.info.provenance.signed
            return f"video {made.info.video_id} {made.info.width}x{made.info.height}"

        def get() -> str:
            data = client.get_video(state["id"])
            assert str(len(data)) == state["mp4_len"]
            return f"{len(data)} bytes"

        def report() -> str:
            return client.report(state["id"], pb.SPAM, "smoke test").report_id

        def share() -> str:
            shared = client.share(state["id"], add=["smoke-friend"])
            assert shared == ["smoke-friend"], shared
            assert client.share(state["id"], remove=["smoke-friend"]) == []
            return "shared and unshared"

        def verify() -> str:
            reply = client.verify(client.get_video(state["id"]))
            assert reply.manifest_present and reply.record_found, reply
            return reply.validation_state

        def refused_without_token() -> str:
            with AliveClient(addr, token="") as anonymous:
                try:
                    anonymous.get_video(state["id"])
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                    return error_info(exc)[0]
            raise AssertionError("an anonymous call was served")

        for name, fn in (("health", health), ("animate", animate), ("get", get),
                         ("report", report), ("share", share), ("verify", verify),
                         ("no token", refused_without_token)):
            step(name, fn)
    return results


def main() -> None:
    addr = os.environ.get("ALIVE_ADDR")
    if addr:
        from alive_service.client import default_token

        results = run(addr, default_token())
    else:
        with temporary_server() as server:
            print(f"started a server at {server.addr} (data in {server.data_dir})")
            results = run(server.addr, server.token("smoke"))
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name:<10} {detail}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"smoke: {len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
