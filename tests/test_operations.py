"""The operator's view: capacity, deadlines, draining, a database outage, metrics."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from tests.conftest import PgCluster
from tools.harness import ServerProcess, free_port, wait_serving

pytestmark = pytest.mark.integration

SMALL = pb.AnimateOptions(long_side=256, duration_s=1.0)
SLOW = pb.AnimateOptions(long_side=1280, duration_s=4.0)


def health_status(addr: str) -> int:
    with grpc.insecure_channel(addr) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5).status


def log_events(server: ServerProcess) -> list[dict]:
    events = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


@pytest.fixture
def one_worker(tmp_path: Path, model_dir: Path) -> Iterator[ServerProcess]:
    """A server that runs one generation at a time and queues none."""
    metrics_port = free_port()
    process = ServerProcess(data_dir=tmp_path / "data", env={
        "ALIVE_WORKERS": "1", "ALIVE_QUEUE_DEPTH": "0", "ALIVE_METRICS_PORT": str(metrics_port),
        "ALIVE_USER_REQUESTS_PER_MINUTE": "3",
    })
    process.metrics_port = metrics_port  # type: ignore[attr-defined]
    with process:
        yield process


def test_beyond_capacity_requests_are_refused_with_a_retry_hint(
    one_worker: ServerProcess, landscape_jpeg: bytes,
) -> None:
    outcomes: list[object] = []
    started = threading.Event()

    def slow() -> None:
        with AliveClient(one_worker.addr, token=one_worker.token("a")) as client:
            outcomes.append(client.animate(landscape_jpeg, "", SLOW,
                                           on_progress=lambda p: started.set()))

    worker = threading.Thread(target=slow)
    worker.start()
    assert started.wait(60)
    with AliveClient(one_worker.addr, token=one_worker.token("b")) as client, \
            pytest.raises(grpc.RpcError) as refused:
        client.animate(landscape_jpeg, "", SMALL)
    reason, _, retry_after = error_info(refused.value)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason == "AT_CAPACITY" and retry_after and retry_after > 0
    worker.join()
    assert len(outcomes) == 1  # the admitted request was not disturbed


def test_a_user_over_the_rate_limit_is_told_to_slow_down_and_others_are_not(
    one_worker: ServerProcess, landscape_jpeg: bytes,
) -> None:
    with AliveClient(one_worker.addr, token=one_worker.token("eager")) as eager:
        for _ in range(3):
            eager.animate(landscape_jpeg, "", SMALL)
        with pytest.raises(grpc.RpcError) as limited:
            eager.animate(landscape_jpeg, "", SMALL)
    reason, _, retry_after = error_info(limited.value)
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason == "USER_RATE_LIMITED" and retry_after
    with AliveClient(one_worker.addr, token=one_worker.token("patient")) as patient:
        assert patient.animate(landscape_jpeg, "", SMALL).info.video_id


def test_queued_requests_are_served_in_the_order_they_arrived(
    tmp_path: Path, landscape_jpeg: bytes,
) -> None:
    with ServerProcess(data_dir=tmp_path / "data", env={
        "ALIVE_WORKERS": "1", "ALIVE_QUEUE_DEPTH": "4",
    }) as server:
        finished: list[str] = []
        lock = threading.Lock()

        def animate(user: str, options: pb.AnimateOptions) -> None:
            with AliveClient(server.addr, token=server.token(user)) as client:
                client.animate(landscape_jpeg, options=options)
            with lock:
                finished.append(user)

        first = threading.Thread(target=animate, args=("first", SLOW))
        first.start()
        time.sleep(0.5)  # it holds the one worker; the others queue behind it, in this order
        queued = []
        for user in ("second", "third", "fourth"):
            queued.append(threading.Thread(target=animate, args=(user, SMALL)))
            queued[-1].start()
            time.sleep(0.15)
        for t in (first, *queued):
            t.join()
    assert finished == ["first", "second", "third", "fourth"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: nothing to share")
def test_a_lone_request_gets_every_core_and_shares_them_when_another_starts(
    tmp_path: Path, landscape_jpeg: bytes,
) -> None:
    cores = os.cpu_count() or 1
    with ServerProcess(data_dir=tmp_path / "data", env={
        "ALIVE_WORKERS": "2", "ALIVE_REQUEST_THREADS": "0",
    }) as server, AliveClient(server.addr, token=server.token("u")) as client:
        client.animate(landscape_jpeg, options=SMALL)
        pair = [threading.Thread(target=client.animate, args=(landscape_jpeg,),
                                 kwargs={"options": SLOW}) for _ in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()
        shares = [e["cores"] for e in log_events(server) if e.get("msg") == "generated"]
    assert shares[0] == [min(cores, 255)]  # alone from start to end
    # Side by side, each ran on half the cores for at least part of its clip (the first to
    # start may have had them all until the second arrived, the last to end after).
    assert len(shares) == 3 and all(min(s) == cores // 2 for s in shares[1:]), shares


def test_work_stops_when_the_client_goes_away(
    one_worker: ServerProcess, landscape_jpeg: bytes,
) -> None:
    with AliveClient(one_worker.addr, token=one_worker.token("a"), timeout_s=1.0) as client, \
            pytest.raises(grpc.RpcError) as gone:
        client.animate(landscape_jpeg, "", SLOW)
    assert gone.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The worker is freed: with one worker and no queue, a new request is admitted once
    # the abandoned one has stopped (well before it could have finished).
    with AliveClient(one_worker.addr, token=one_worker.token("b")) as client:
        for _ in range(100):
            try:
                assert client.animate(landscape_jpeg, "", SMALL).info.video_id
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                time.sleep(0.2)
        else:
            pytest.fail("the abandoned request kept the only worker")
    cancelled = [e for e in log_events(one_worker) if e.get("msg") == "cancelled"]
    assert cancelled and cancelled[0]["frames_done"] < cancelled[0]["frames_total"]


def test_metrics_count_requests_stages_and_blocks(
    one_worker: ServerProcess, landscape_jpeg: bytes,
) -> None:
    with AliveClient(one_worker.addr, token=one_worker.token("a")) as client:
        client.animate(landscape_jpeg, "", SMALL)
        with pytest.raises(grpc.RpcError):
            client.animate(landscape_jpeg, "I will kill you", SMALL)
    port = one_worker.metrics_port  # type: ignore[attr-defined]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'alive_requests_total{code="OK",method="Animate"} 1.0' in text
    assert 'alive_stage_seconds_count{stage="motion"} 1.0' in text
    assert "alive_safety_blocks_total{" in text
    assert "alive_queue_depth" in text


def test_a_graceful_stop_finishes_the_requests_in_flight(
    tmp_path: Path, model_dir: Path, landscape_jpeg: bytes,
) -> None:
    server = ServerProcess(data_dir=tmp_path / "data").start()
    outcomes: list[object] = []
    generating = threading.Event()

    def animate() -> None:
        with AliveClient(server.addr, token=server.token("a")) as client:
            def on_progress(p: pb.Progress) -> None:
                if p.stage == pb.STAGE_GENERATING:
                    generating.set()
            try:
                outcomes.append(client.animate(landscape_jpeg, "", SLOW, on_progress=on_progress))
            except grpc.RpcError as exc:
                outcomes.append(exc)

    worker = threading.Thread(target=animate)
    worker.start()
    assert generating.wait(60)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    worker.join()
    assert server.process.wait(90) == 0
    (result,) = outcomes
    assert not isinstance(result, grpc.RpcError), result
    assert result.info.video_id  # type: ignore[attr-defined]


def test_a_crashed_worker_costs_only_its_own_request(
    one_worker: ServerProcess, landscape_jpeg: bytes,
) -> None:
    (ready,) = [e for e in log_events(one_worker) if e.get("msg") == "workers ready"]
    (pid,) = ready["pids"]
    outcomes: list[object] = []
    generating = threading.Event()

    def animate() -> None:
        with AliveClient(one_worker.addr, token=one_worker.token("a")) as client:
            try:
                outcomes.append(client.animate(
                    landscape_jpeg, "", SLOW,
                    on_progress=lambda p: p.stage == pb.STAGE_GENERATING and generating.set()))
            except grpc.RpcError as exc:
                outcomes.append(exc)

    caller = threading.Thread(target=animate)
    caller.start()
    assert generating.wait(60)
    os.kill(pid, signal.SIGKILL)  # as a native crash or the OOM killer would
    caller.join(60)
    (failed,) = outcomes
    assert isinstance(failed, grpc.RpcError)
    assert failed.code() == grpc.StatusCode.INTERNAL
    assert error_info(failed)[0] == "WORKER_CRASHED"
    assert health_status(one_worker.addr) == health_pb2.HealthCheckResponse.SERVING
    # A fresh worker takes the dead one's place, and the next request is served.
    with AliveClient(one_worker.addr, token=one_worker.token("b")) as client:
        assert client.animate(landscape_jpeg, "", SMALL).info.video_id
    replaced = [e for e in log_events(one_worker) if e.get("msg") == "worker replaced"]
    assert replaced and replaced[0]["pid"] != pid


def test_a_database_outage_gives_clear_errors_and_loses_nothing_committed(
    own_postgres: PgCluster, tmp_path: Path, model_dir: Path, landscape_jpeg: bytes,
) -> None:
    with ServerProcess(data_dir=tmp_path / "data", db_url=own_postgres.url) as server, \
            AliveClient(server.addr, token=server.token("a")) as client:
        made = client.animate(landscape_jpeg, "", SMALL)
        report = client.report(made.info.video_id, pb.REPORT_REASON_SPAM, "before the outage")

        own_postgres.stop()
        for call in (lambda: client.get_video(made.info.video_id),
                     lambda: client.report(made.info.video_id, pb.REPORT_REASON_HATE),
                     lambda: client.animate(landscape_jpeg, "", SMALL)):
            with pytest.raises(grpc.RpcError) as failed:
                call()
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_info(failed.value)[0] == "STORE_UNAVAILABLE"
        for _ in range(50):
            if health_status(server.addr) == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.2)
        assert health_status(server.addr) == health_pb2.HealthCheckResponse.NOT_SERVING

        own_postgres.start()
        wait_serving(server.addr, timeout_s=30)
        assert client.get_video(made.info.video_id) == made.mp4
        again = client.report(made.info.video_id, pb.REPORT_REASON_HATE, "after the outage")
        assert again.report_id == report.report_id and again.updated
        assert client.animate(landscape_jpeg, "", SMALL).info.video_id


def test_a_repeat_offender_may_no_longer_generate(
    tmp_path: Path, model_dir: Path, landscape_jpeg: bytes, portrait_jpeg: bytes,
) -> None:
    from skimage import data

    from alive_service import moderation
    from tests.conftest import enrol_moderators, jpeg

    photos = [landscape_jpeg, portrait_jpeg, jpeg(data.coffee()), jpeg(data.chelsea())]
    with ServerProcess(data_dir=tmp_path / "data") as server, \
            AliveClient(server.addr, token=server.token("repeat")) as client:
        store = server.store()
        mia = enrol_moderators(store, server.data_dir, "mia")["mia"]
        for photo in photos[:3]:
            made = client.animate(photo, "", SMALL)
            moderation.resolve(store, mia, made.info.video_id, "takedown", note="upheld")
        with pytest.raises(grpc.RpcError) as denied:
            client.animate(photos[3], "", SMALL)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(denied.value)[0] == "REPEAT_OFFENDER"


@pytest.mark.parametrize("problem", ["server-auth EKU", "expired"])
def test_a_bad_signing_certificate_stops_start_up_with_a_clear_message(
    tmp_path: Path, model_dir: Path, problem: str,
) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from provenance.keys import make_leaf, make_root

    now = datetime.now(UTC)
    root, root_key = make_root(now - timedelta(days=400))
    if problem == "expired":
        leaf, key = make_leaf(root, root_key, now - timedelta(days=200), timedelta(days=90))
    else:
        leaf, key = make_leaf(root, root_key, now, eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    cert_path, key_path = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ServerProcess(data_dir=tmp_path / "data", env={
        "ALIVE_SIGN_CERT": str(cert_path), "ALIVE_SIGN_KEY": str(key_path)})
    server.start(wait=False)
    assert server.process is not None
    assert server.process.wait(60) == 2
    assert "refusing to start" in server.log()
    assert ("expired" if problem == "expired" else "EKU") in server.log().replace(
        "ExtendedKeyUsage", "EKU")
