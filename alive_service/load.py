"""`make load`: a bounded load test (N clients x M requests) that counts errors and lost writes.

Against ``ALIVE_ADDR`` when set (lost writes are checked in the database named by
ALIVE_DB_URL / ALIVE_DATA_DIR, which must be the server's), else against a server
it starts itself. Each request animates a small photo, fetches it back and reports it;
deliberate RESOURCE_EXHAUSTED refusals are counted apart from errors.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

from alive_service.auth import load_or_create_secret, mint_token
from alive_service.client import AliveClient
from alive_service.config import Settings
from alive_service.harness import ServerProcess, temporary_server
from alive_service.rpc import error_info, pb
from alive_service.store import SqlStore


def photo(seed: int, side: int = 640) -> bytes:
    """A distinct photo per request: a sky gradient over a textured ground."""
    rng = np.random.default_rng(seed)
    h, w = side * 3 // 4, side
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = np.linspace([90, 140, 230], [200, 220, 255], h // 2)[:, None, :]
    img[h // 2 :] = rng.integers(40, 120, (h - h // 2, w, 3))
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    reports: list[tuple[str, str, str]] = field(default_factory=list)  # video, user, report id
    lock: threading.Lock = field(default_factory=threading.Lock)


def client_loop(addr: str, token: str, user: str, requests: int, seed: int, tally: Tally,
                options: pb.AnimateOptions) -> None:
    with AliveClient(addr, token=token, timeout_s=300) as client:
        for i in range(requests):
            start = time.perf_counter()
            try:
                made = client.animate(photo(seed * 1000 + i), "clouds", options)
                assert client.get_video(made.info.video_id) == made.mp4
                reply = client.report(made.info.video_id, pb.REPORT_REASON_SPAM, f"load {user} {i}")
                with tally.lock:
                    tally.latencies.append(time.perf_counter() - start)
                    tally.outcomes["ok"] += 1
                    tally.reports.append((made.info.video_id, user, reply.report_id))
            except grpc.RpcError as exc:
                reason = error_info(exc)[0]
                outcome = f"{exc.code().name}/{reason}" if reason else exc.code().name
                with tally.lock:
                    tally.outcomes[outcome] += 1
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    time.sleep(1.0)
            except AssertionError:
                with tally.lock:
                    tally.outcomes["WRONG_BYTES"] += 1


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the server and its workers)."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += rss_mb(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass  # it exited while we looked
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="per client")
    parser.add_argument("--long-side", type=int, default=320)
    parser.add_argument("--duration", type=float, default=1.0)
    args = parser.parse_args()
    options = pb.AnimateOptions(long_side=args.long_side, duration_s=args.duration)

    own: ServerProcess | None = None
    if os.environ.get("ALIVE_ADDR"):
        settings = Settings.from_env()
        addr = settings.addr
    else:
        # The per-user limit (20 a minute) is tested elsewhere; here it would only hide the
        # service's own capacity, since each client is one user.
        own = temporary_server(env={"ALIVE_USER_REQUESTS_PER_MINUTE": "10000"}).start()
        addr = own.addr
        settings = Settings(data_dir=own.data_dir, db_url=own.db_url)
    secret = load_or_create_secret(settings.data_dir)
    tally = Tally()
    rss: list[float] = []
    done = threading.Event()

    def sample_rss() -> None:
        while own and own.process and not done.wait(1.0):
            rss.append(rss_mb(own.process.pid))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    start = time.perf_counter()
    threads = [
        threading.Thread(target=client_loop, args=(
            addr, mint_token(secret, f"load{c}"), f"load{c}", args.requests, c, tally, options))
        for c in range(args.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    done.set()

    store = SqlStore(settings.database_url, settings.blob_dir)
    lost = sum(
        1 for video_id, user, report_id in tally.reports
        if not any(r.id == report_id and r.reporter == user for r in store.reports_for(video_id))
    )
    errors = sum(n for k, n in tally.outcomes.items()
                 if k != "ok" and not k.startswith("RESOURCE_EXHAUSTED"))
    lat = sorted(tally.latencies)
    print(f"clients={args.clients} requests/client={args.requests} in {elapsed:.1f} s")
    print(f"outcomes: {dict(tally.outcomes)}")
    if lat:
        print(f"latency p50={statistics.median(lat):.2f} s "
              f"p95={lat[int(0.95 * (len(lat) - 1))]:.2f} s; "
              f"{60 * len(lat) / elapsed:.1f} videos/min")
    if rss:
        third = max(1, len(rss) // 3)
        print(f"server RSS MB: first third max {max(rss[:third]):.0f}, "
              f"last third max {max(rss[-third:]):.0f}, peak {max(rss):.0f}")
    print(f"errors={errors} lost_reports={lost} (of {len(tally.reports)})")
    if own:
        own.close()
    raise SystemExit(1 if errors or lost else 0)


if __name__ == "__main__":
    main()
