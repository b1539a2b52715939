"""The server process: settings -> keys -> database -> workers (models) -> gRPC, and a graceful
stop. What the parts are and how they are built: parts.py."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from alive_service import auth, logs, metrics
from alive_service.config import Settings
from alive_service.guard import CallGuard, GuardOptions
from alive_service.parts import Keys, open_store
from alive_service.rpc import RpcError, pb
from alive_service.service import AliveServicer, Runtime, add_to_server
from alive_service.store import SqlStore, StoreUnavailable
from alive_service.workers import WorkerPool
from provenance.keys import CertificateError

log = logging.getLogger("alive.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AliveService"].full_name
MB = 1024 * 1024


def call_guard(settings: Settings, secret: bytes) -> CallGuard:
    def identify(metadata: dict[str, str]) -> str:
        try:
            # The same lifetime bound the handlers apply (ALIVE_MAX_TOKEN_LIFETIME_S).
            return auth.identity_from_metadata(secret, metadata,
                                               settings.max_token_lifetime_s).user
        except auth.AuthError as exc:
            raise RpcError(grpc.StatusCode.UNAUTHENTICATED, "BAD_TOKEN", str(exc)) from None

    return CallGuard(GuardOptions(
        recv_timeout_s=settings.recv_timeout_s, call_timeout_s=settings.call_timeout_s,
        calls_per_peer=settings.calls_per_peer,
        health_calls_per_peer=settings.health_calls_per_peer,
        calls_per_user=settings.calls_per_user,
    ), identify)


def build_server(
    settings: Settings, runtime: Runtime
) -> tuple[grpc.Server, int, health.HealthServicer]:
    # No maximum_concurrent_rpcs: one cap shared by everyone is what a stalled client fills.
    # The guard bounds each peer and user instead, well below the thread pool, so health and
    # other clients always find a thread; the WorkerPool bounds the expensive work.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.rpc_threads, thread_name_prefix="rpc"),
        interceptors=[call_guard(settings, runtime.secret)],
        options=[
            # A 20 MB photo plus the envelope; replies stream in 256 kB chunks.
            ("grpc.max_receive_message_length", settings.max_photo_bytes + MB),
            ("grpc.max_send_message_length", 4 * MB),
            ("grpc.max_concurrent_streams", settings.streams_per_connection),
            # gRPC sets SO_REUSEPORT by default: a second server on the same address would
            # start silently and take half the connections. Only when asked to share.
            ("grpc.so_reuseport", 1 if settings.share_addr else 0),
            # Phones sit behind NATs that drop idle connections: ping every 30 s,
            # and allow clients to ping every 10 s, even between calls.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_connection_idle_ms", 15 * 60_000),
        ],
    )
    add_to_server(AliveServicer(runtime), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(settings.addr)
    except RuntimeError:  # grpc's "Failed to bind"
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {settings.addr}: the address is in use or not ours "
                      "(set ALIVE_SHARE_ADDR=1 to share it with another server on purpose)")
    return server, port, health_servicer


def health_problem(store: SqlStore, settings: Settings) -> str | None:
    """Why this server cannot do its work right now, or None."""
    try:
        store.ping()
    except StoreUnavailable as exc:
        return f"database unavailable: {exc}"
    try:
        store.blobs.check(settings.min_free_mb * MB)
    except OSError as exc:
        return f"{getattr(exc, 'reason', 'BLOB_STORE_UNAVAILABLE')}: {exc}"
    return None


def watch_health(store: SqlStore, settings: Settings, health_servicer: health.HealthServicer,
                 stopping: threading.Event, every_s: float = 2.0) -> None:
    """Report SERVING only while the database answers and the blob directory is the one we
    started with, writable and not full, so balancers route around an outage."""
    serving: bool | None = None
    while not stopping.is_set():
        problem = health_problem(store, settings)
        ok = problem is None
        if ok != serving:
            status = (health_pb2.HealthCheckResponse.SERVING if ok
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in ("", SERVICE_NAME):
                health_servicer.set(name, status)
            if ok:
                log.info("healthy again" if serving is False else "healthy")
            else:
                log.error("not serving", extra={"error": problem})
            serving = ok
        stopping.wait(every_s)


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        keys = Keys.load(settings)
    except CertificateError as exc:
        log.error("refusing to start: %s", exc)
        print(f"alive-server: refusing to start: {exc}", file=sys.stderr)
        sys.exit(2)
    secret = auth.load_or_create_secret(settings.data_dir)
    auth.ensure_dev_token(settings.data_dir, secret)
    runtime = Runtime(settings=settings, secret=secret, trust_anchors=keys.trust_anchors)
    workers = WorkerPool(settings, settings.workers, settings.queue_depth)
    try:
        server, port, health_servicer = build_server(settings, runtime)
    except OSError as exc:
        log.error("refusing to start: %s", exc)
        print(f"alive-server: refusing to start: {exc}", file=sys.stderr)
        sys.exit(2)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    server.start()
    host = settings.addr.rsplit(":", 1)[0]
    log.info("listening", extra={"addr": f"{host}:{port}", "data_dir": str(settings.data_dir)})

    def warm_up() -> None:
        try:
            store = open_store(settings)
            # Workers start after the migration, so none of them sees an old schema.
            workers.start()
        except Exception:
            log.exception("start-up failed")
            failed.set()
            server.stop(0)
            return
        runtime.store, runtime.workers = store, workers
        log.info("serving", extra={"addr": f"{host}:{port}"})
        watch_health(store, settings, health_servicer, stopping)

    failed = threading.Event()
    stopping = threading.Event()
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()

    def on_signal(signum: int, _frame: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info("draining", extra={"signal": signum})
        health_servicer.enter_graceful_shutdown()
        # In-flight requests finish (up to 60 s); new ones are refused.
        threading.Thread(target=lambda: server.stop(grace=60), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.wait_for_termination()
    workers.close()
    log.info("stopped")
    if failed.is_set():
        sys.exit(1)


if __name__ == "__main__":
    main()
