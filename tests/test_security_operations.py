"""The unlucky operator: a second server, a moved blob directory, a full disk, leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from tools.harness import ServerProcess

pytestmark = pytest.mark.integration

SMALL = pb.AnimateOptions(long_side=256, duration_s=1.0)
ONE_WORKER = {"ALIVE_WORKERS": "1", "ALIVE_QUEUE_DEPTH": "2"}


def health(addr: str) -> int:
    with grpc.insecure_channel(addr) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5).status


def wait_health(addr: str, status: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if health(addr) == status:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"health did not become {status} within {timeout_s} s")


def wait_exit(server: ServerProcess, timeout_s: float = 120.0) -> int:
    assert server.process is not None
    return server.process.wait(timeout_s)


def test_a_second_server_on_the_same_address_refuses_to_start_unless_asked_to_share(
    tmp_path: Path, model_dir: Path,
) -> None:
    with ServerProcess(data_dir=tmp_path / "first", env=ONE_WORKER) as first:
        second = ServerProcess(data_dir=tmp_path / "second", port=first.port, env=ONE_WORKER)
        second.start(wait=False)
        try:
            assert wait_exit(second) == 2
            assert "address is in use" in second.log()
            assert health(first.addr) == health_pb2.HealthCheckResponse.SERVING
        finally:
            second.stop()
    # Every server on the address must ask (SO_REUSEPORT works only when all sockets set it).
    shared = {**ONE_WORKER, "ALIVE_SHARE_ADDR": "1"}
    with ServerProcess(data_dir=tmp_path / "a", env=shared) as first, \
            ServerProcess(data_dir=tmp_path / "b", port=first.port, env=shared) as second:
        assert second.process is not None and second.process.poll() is None


def test_a_moved_blob_directory_turns_health_off_and_is_not_recreated(
    tmp_path: Path, model_dir: Path, landscape_jpeg: bytes,
) -> None:
    with ServerProcess(data_dir=tmp_path / "data", env=ONE_WORKER) as server:
        blobs = server.data_dir / "blobs"
        moved = server.data_dir / "blobs.old"
        blobs.rename(moved)
        wait_health(server.addr, health_pb2.HealthCheckResponse.NOT_SERVING)
        with AliveClient(server.addr, token=server.token("ann")) as client, \
                pytest.raises(grpc.RpcError) as failed:
            client.animate(landscape_jpeg, "", SMALL)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not blobs.exists()  # nothing was written to a fresh, empty directory
        # An empty directory in its place is not the blob store either.
        blobs.mkdir()
        time.sleep(3)
        assert health(server.addr) == health_pb2.HealthCheckResponse.NOT_SERVING
        blobs.rmdir()
        moved.rename(blobs)
        wait_health(server.addr, health_pb2.HealthCheckResponse.SERVING)
        with AliveClient(server.addr, token=server.token("ann")) as client:
            assert client.animate(landscape_jpeg, "", SMALL).mp4


def test_too_little_free_space_keeps_health_off(tmp_path: Path, model_dir: Path) -> None:
    server = ServerProcess(data_dir=tmp_path / "data",
                           env={**ONE_WORKER, "ALIVE_MIN_FREE_MB": str(10**12)})
    server.start(wait=False)
    try:
        deadline = time.monotonic() + 120
        while "DISK_FULL" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "DISK_FULL" in server.log()
        assert health(server.addr) == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop()


def test_a_missing_blob_directory_with_videos_in_the_database_stops_start_up(
    tmp_path: Path, model_dir: Path, landscape_jpeg: bytes,
) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", env=ONE_WORKER)
    with server, AliveClient(server.addr, token=server.token("ann")) as client:
        client.animate(landscape_jpeg, "", SMALL)
    (server.data_dir / "blobs").rename(server.data_dir / "elsewhere")
    server.start(wait=False)
    try:
        assert wait_exit(server) != 0
        assert "blob directory" in server.log() and "missing" in server.log()
        assert not (server.data_dir / "blobs").exists()
    finally:
        server.stop()


def test_leftovers_are_swept_at_start_and_orphans_by_alive_admin_gc(
    tmp_path: Path, model_dir: Path, landscape_jpeg: bytes,
) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", env=ONE_WORKER)
    with server, AliveClient(server.addr, token=server.token("ann")) as client:
        made = client.animate(landscape_jpeg, "", SMALL)
    blobs = server.data_dir / "blobs"
    store = server.store()
    old = time.time() - 2 * 3600
    # A write killed during STORING, and a blob whose row was never committed.
    shard = next(p for p in blobs.iterdir() if p.is_dir())
    leftover = shard / ".tmp-killed"
    leftover.write_bytes(b"half a video")
    os.utime(leftover, (old, old))
    orphan_key = store.blobs.put(b"bytes no row points to")
    young_key = store.blobs.put(b"a blob whose row is about to be committed")
    os.utime(blobs / orphan_key[:2] / orphan_key, (old, old))
    for key in store.referenced_blobs():
        os.utime(blobs / key[:2] / key, (old, old))

    with server:  # start-up sweeps unfinished writes
        pass
    assert not leftover.exists()

    env = {**os.environ, "ALIVE_DATA_DIR": str(server.data_dir), "ALIVE_DB_URL": ""}
    run = subprocess.run([sys.executable, "-m", "alive_service.admin_cli", "gc"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["removed"] == 1 and report["freed_bytes"] == len(b"bytes no row points to")
    kept = set(store.blobs.keys())
    assert orphan_key not in kept
    assert young_key in kept  # too young to be called an orphan
    assert store.referenced_blobs() and store.referenced_blobs() <= kept
    with ServerProcess(data_dir=server.data_dir, env=ONE_WORKER) as again, \
            AliveClient(again.addr, token=again.token("ann")) as client:
        assert client.get_video(made.info.video_id) == made.mp4


def test_the_per_user_limit_counts_admissions_atomically(
    tmp_path: Path, model_dir: Path,
) -> None:
    """Eight requests at once against a limit of three: exactly three are admitted, even
    though each of them fails (an undecodable photo) and records nothing else."""
    import concurrent.futures

    env = {"ALIVE_WORKERS": "1", "ALIVE_QUEUE_DEPTH": "8",
           "ALIVE_USER_REQUESTS_PER_MINUTE": "3"}
    with ServerProcess(data_dir=tmp_path / "data", env=env) as server:
        def attempt(_: int) -> str:
            with AliveClient(server.addr, token=server.token("burst")) as client:
                try:
                    client.animate(b"not a photo at all", "", SMALL)
                    return "OK"
                except grpc.RpcError as exc:
                    return error_info(exc)[0] or exc.code().name

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(attempt, range(8)))
        assert outcomes.count("USER_RATE_LIMITED") == 5, outcomes
        # Later attempts are still refused: refusals counted as admissions.
        assert attempt(0) == "USER_RATE_LIMITED"
        with AliveClient(server.addr, token=server.token("other")) as client, \
                pytest.raises(grpc.RpcError) as other:
            client.animate(b"not a photo at all", "", SMALL)
        assert error_info(other.value)[0] != "USER_RATE_LIMITED"
