"""Start the real server process on a free port with its own data directory, and stop it.

Used by the integration tests, ``make smoke`` and ``make load``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alive_service.auth import load_or_create_secret, mint_token

if TYPE_CHECKING:  # the store only for tests that look behind the API
    from alive_service.store import SqlStore


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_serving(addr: str, timeout_s: float = 120.0, process: subprocess.Popen | None = None
                 ) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"the server at {addr} was not SERVING within {timeout_s:.0f} s")


@dataclass
class ServerProcess:
    data_dir: Path
    db_url: str = ""
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    remove_data_dir: bool = False  # a temporary server leaves nothing behind

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({
            "ALIVE_ADDR": self.addr,
            "ALIVE_DATA_DIR": str(self.data_dir),
            "ALIVE_DB_URL": self.db_url,
            "ALIVE_MODEL_DIR": os.environ.get("ALIVE_MODEL_DIR", "build/models"),
        })
        env.update(self.env)
        self.log_path = self.data_dir / f"server-{self.port}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "alive_service.server"], env=env,
                stdout=log, stderr=subprocess.STDOUT,
            )
        if wait:
            try:
                wait_serving(self.addr, process=self.process)
            except Exception:
                self.stop()
                raise RuntimeError(f"server failed to start; log:\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path else ""

    def store(self) -> SqlStore:
        """A store on this server's own database and blobs, for tests that look behind the
        API (the caller closes it)."""
        from alive_service.config import Settings
        from alive_service.store import SqlStore

        settings = Settings(data_dir=self.data_dir, db_url=self.db_url)
        return SqlStore(settings.database_url, settings.blob_dir)

    def token(self, user: str = "dev", ttl_s: int = 3600) -> str:
        return mint_token(load_or_create_secret(self.data_dir), user, ttl_s)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its data directory if it was a temporary one."""
        self.stop()
        if self.remove_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __exit__(self, *_: object) -> None:
        self.close()


def temporary_server(**kwargs: object) -> ServerProcess:
    data_dir = Path(tempfile.mkdtemp(prefix="alive-"))
    return ServerProcess(data_dir=data_dir, remove_data_dir=True, **kwargs)  # type: ignore[arg-type]
