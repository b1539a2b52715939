"""Capacity under attack: calls that send headers and never a body cannot lock anyone out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from tools.harness import ServerProcess

pytestmark = pytest.mark.integration

RECV_TIMEOUT_S = 3.0
CALLS_PER_USER = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path
           ) -> Iterator[ServerProcess]:
    """One worker, no queue: the old shared cap was 1 + 0 + 16 = 17 calls."""
    process = ServerProcess(data_dir=tmp_path_factory.mktemp("capacity"), env={
        "ALIVE_WORKERS": "1", "ALIVE_QUEUE_DEPTH": "0",
        "ALIVE_RECV_TIMEOUT_S": str(RECV_TIMEOUT_S),
        "ALIVE_CALLS_PER_USER": str(CALLS_PER_USER),
        # A hundred misses in a row are this file's load, not an enumeration attempt.
        "ALIVE_USER_LOOKUP_MISSES_PER_HOUR": "1000",
    })
    with process:
        yield process


class Stalled:
    """``count`` calls on one connection that send their headers and never a body."""

    def __init__(self, addr: str, count: int, method: str = "ReportVideo",
                 token: str | None = None) -> None:
        self.release = threading.Event()
        self.channel = grpc.insecure_channel(addr)
        call = self.channel.stream_unary(
            f"/alive.v1.AliveService/{method}",
            request_serializer=pb.ReportVideoRequest.SerializeToString,
            response_deserializer=pb.ReportVideoResponse.FromString)
        metadata = [("authorization", f"Bearer {token}")] if token else None
        self.calls = [call.future(self._never(), metadata=metadata) for _ in range(count)]

    def _never(self) -> Iterator[pb.ReportVideoRequest]:
        self.release.wait(120)
        yield from ()

    def codes(self, timeout_s: float) -> list[grpc.StatusCode | None]:
        deadline = time.monotonic() + timeout_s
        out = []
        for call in self.calls:
            try:
                call.exception(timeout=max(0.0, deadline - time.monotonic()))
                out.append(call.code())
            except grpc.FutureTimeoutError:
                out.append(None)  # still held by the server
        return out

    def close(self) -> None:
        self.release.set()
        for call in self.calls:
            call.cancel()
        self.channel.close()


def health(addr: str) -> int:
    with grpc.insecure_channel(addr) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5).status


def a_normal_call_is_answered(addr: str, token: str) -> None:
    """A lookup of a missing video: NOT_FOUND proves the handler ran."""
    with AliveClient(addr, token=token) as client, pytest.raises(grpc.RpcError) as missing:
        client.get_video("0123456789abcdef")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND, missing.value


def test_bodyless_calls_without_a_token_hold_nothing(server: ServerProcess) -> None:
    attack = Stalled(server.addr, 26)
    try:
        time.sleep(1.0)  # every stalled call has reached the server
        assert health(server.addr) == health_pb2.HealthCheckResponse.SERVING
        a_normal_call_is_answered(server.addr, server.token("alice"))
        # Refused on their headers, before any body was waited for.
        assert attack.codes(timeout_s=5) == [grpc.StatusCode.UNAUTHENTICATED] * 26
    finally:
        attack.close()


def test_a_users_bodyless_calls_are_capped_and_dropped_after_the_receive_timeout(
    server: ServerProcess,
) -> None:
    attack = Stalled(server.addr, 26, token=server.token("mallory"))
    started = time.monotonic()
    try:
        time.sleep(1.0)
        assert health(server.addr) == health_pb2.HealthCheckResponse.SERVING
        a_normal_call_is_answered(server.addr, server.token("alice"))
        codes = attack.codes(timeout_s=RECV_TIMEOUT_S + 10)
        took = time.monotonic() - started
        refused = [c for c in attack.calls if c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(refused) == 26 - CALLS_PER_USER
        assert {error_info(c.exception())[0] for c in refused} == {"USER_CALL_LIMIT"}
        # The ones let in waited for a body only until the receive timeout.
        assert codes.count(grpc.StatusCode.CANCELLED) == CALLS_PER_USER
        assert RECV_TIMEOUT_S - 0.5 <= took <= RECV_TIMEOUT_S + 10
    finally:
        attack.close()
    # And the user is not locked out afterwards.
    a_normal_call_is_answered(server.addr, server.token("mallory"))


def test_stalled_health_checks_do_not_stop_health_answering(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.addr) as channel:
        check = channel.stream_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        release = threading.Event()

        def never() -> Iterator[health_pb2.HealthCheckRequest]:
            release.wait(120)
            yield from ()

        stalled = [check.future(never()) for _ in range(40)]
        try:
            time.sleep(1.0)
            # The attacker's own address is at its health quota; others are not affected,
            # and the stalled checks are dropped after the receive timeout.
            for call in stalled:
                call.exception(timeout=RECV_TIMEOUT_S + 10)
            assert health(server.addr) == health_pb2.HealthCheckResponse.SERVING
            a_normal_call_is_answered(server.addr, server.token("alice"))
        finally:
            release.set()
            for call in stalled:
                call.cancel()


def test_concurrent_admissions_of_one_user_never_exceed_the_limit(
    db_url: str, tmp_path: Path,
) -> None:
    """Count and insert are one atomic step, on SQLite and PostgreSQL."""
    import concurrent.futures

    from alive_service.store import RateLimited, SqlStore, upgrade

    upgrade(db_url)
    store = SqlStore(db_url, tmp_path / "blobs")
    user = f"burst-{time.monotonic_ns()}"

    def admit(_: int) -> bool:
        try:
            store.admit(user, "animate", 4)
            return True
        except RateLimited as exc:
            assert exc.retry_after_s > 0
            return False

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        admitted = list(pool.map(admit, range(24)))
    assert admitted.count(True) == 4
    store.admit(f"{user}-other", "animate", 4)  # another user is not affected
    store.close()


def test_a_hundred_quick_calls_on_one_connection_all_get_their_answer(
    server: ServerProcess,
) -> None:
    """Finished calls give their HTTP/2 stream back (none may linger until a timeout)."""
    with AliveClient(server.addr, token=server.token("quick")) as client:
        for _ in range(100):
            with pytest.raises(grpc.RpcError) as missing:
                client.get_video("0123456789abcdef")
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
