"""The server process: settings -> keys -> database -> models -> gRPC, and a graceful stop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from alive_service import auth, logs, metrics
from alive_service.admission import Admission
from alive_service.config import Settings
from alive_service.decode import DecodeLimits
from alive_service.pipeline import Parts
from alive_service.rpc import pb
from alive_service.service import AliveServicer, Runtime, add_to_server
from alive_service.store import SqlStore, StoreUnavailable, upgrade
from alive_service.workers import WorkerPool
from provenance.keys import (
    CertificateError,
    DevIdentitySource,
    SigningIdentity,
    resolve_identity,
    resolve_trust_anchors,
)

log = logging.getLogger("alive.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AliveService"].full_name
MB = 1024 * 1024


def signing_identity(settings: Settings) -> tuple[Callable[[], SigningIdentity], bytes]:
    """Where signing keys come from, and the trust anchors verification uses.

    Raises CertificateError (a wrong-profile or expired certificate stops start-up)."""
    anchors = resolve_trust_anchors(settings.keys_dir, settings.trust_anchors)
    if settings.sign_cert:
        identity = resolve_identity(settings.keys_dir, settings.sign_cert, settings.sign_key,
                                    settings.tsa_url)
        return (lambda: identity), anchors
    if settings.sign_key:
        raise CertificateError("ALIVE_SIGN_KEY is set but ALIVE_SIGN_CERT is not")
    return DevIdentitySource(settings.keys_dir).get, anchors


def open_store(settings: Settings, migrate: bool = True) -> SqlStore:
    if migrate:
        upgrade(settings.database_url)
    store = SqlStore(settings.database_url, settings.blob_dir)
    store.ping()
    return store


def load_parts(settings: Settings, identity: Callable[[], SigningIdentity],
               migrate: bool = True) -> Parts:
    """Everything one generation process needs: models, keys, its own store connection."""
    # Imported here: loading models is the slow part and the health service is up meanwhile.
    from alive_service.motion import load_motion_model
    from safety import SafetyChecker

    store = open_store(settings, migrate)
    threads = os.cpu_count() or 2
    policy = Path(settings.policy_file) if settings.policy_file else None
    return Parts(
        safety=SafetyChecker(settings.model_dir, policy, threads=1),
        motion=load_motion_model(settings.model_dir, threads=threads),
        identity=identity,
        store=store,
        limits=DecodeLimits(max_bytes=settings.max_photo_bytes,
                            max_pixels=settings.max_photo_pixels),
    )


def build_server(
    settings: Settings, runtime: Runtime
) -> tuple[grpc.Server, int, health.HealthServicer]:
    cheap_rpcs = 16  # GetVideo, ReportVideo, health: never starved by generation
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=runtime.admission.capacity + cheap_rpcs,
                                   thread_name_prefix="rpc"),
        maximum_concurrent_rpcs=runtime.admission.capacity + cheap_rpcs,
        options=[
            # A 20 MB photo plus the envelope; replies stream in 256 kB chunks.
            ("grpc.max_receive_message_length", settings.max_photo_bytes + MB),
            ("grpc.max_send_message_length", 4 * MB),
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
    port = server.add_insecure_port(settings.addr)
    if port == 0:
        raise OSError(f"cannot listen on {settings.addr}")
    return server, port, health_servicer


def watch_database(store: SqlStore, health_servicer: health.HealthServicer,
                   stopping: threading.Event, every_s: float = 2.0) -> None:
    """Report SERVING only while the database answers, so balancers route around an outage."""
    serving: bool | None = None
    while not stopping.is_set():
        try:
            store.ping()
            ok = True
        except StoreUnavailable as exc:
            ok = False
            if serving is not False:
                log.error("database unavailable", extra={"error": str(exc)})
        if ok != serving:
            status = (health_pb2.HealthCheckResponse.SERVING if ok
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in ("", SERVICE_NAME):
                health_servicer.set(name, status)
            if serving is False:
                log.info("database back")
            serving = ok
        stopping.wait(every_s)


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        identity, anchors = signing_identity(settings)
    except CertificateError as exc:
        log.error("refusing to start: %s", exc)
        print(f"alive-server: refusing to start: {exc}", file=sys.stderr)
        sys.exit(2)
    secret = auth.load_or_create_secret(settings.data_dir)
    auth.ensure_dev_token(settings.data_dir, secret)
    runtime = Runtime(settings=settings, secret=secret, trust_anchors=anchors,
                      admission=Admission(settings.workers, settings.queue_depth))
    workers = WorkerPool(settings, settings.workers)
    server, port, health_servicer = build_server(settings, runtime)
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
        watch_database(store, health_servicer, stopping)

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
    runtime.admission.shutdown()
    workers.close()
    log.info("stopped")
    if failed.is_set():
        sys.exit(1)


if __name__ == "__main__":
    main()
