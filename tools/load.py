"""`make load`: a bounded load test (N clients x M requests) that counts errors and lost writes.

Against ``ALIVE_ADDR`` when set (lost writes are checked in the database named by
ALIVE_DB_URL / ALIVE_DATA_DIR, which must be the server's), else against a server
it starts itself. Each request animates a small photo, fetches it back and reports it;
deliberate RESOURCE_EXHAUSTED refusals are counted apart from errors.

Then the same normal traffic runs again beside a hostile mix (``--no-hostile`` skips it):
calls that send headers and never a body, 8K videos sent to VerifyVideo, and strangers
looking up other users' videos. The normal requests must keep their p95 within 1.5x of the
clean run with 0 errors. Everything is bounded: the attackers stop when the normal clients
finish, and every loop has a cap. Loopback only.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np
from PIL import Image

from alive_service.auth import load_or_create_secret, mint_token
from alive_service.client import AliveClient
from alive_service.config import Settings
from alive_service.memory import MB, report, totals, tree
from alive_service.rpc import error_info, pb
from alive_service.store import SqlStore
from tools.harness import ServerProcess, temporary_server


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


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB of a process and all its descendants (the server, the zygote and
    the workers). RSS counts the workers' shared model pages once per worker; PSS once."""
    rss, pss = totals(tree(pid))
    return rss / MB, pss / MB


HOSTILE_P95_RATIO = 1.5


def synthetic_mp4(width: int, height: int, frames: int, noise: bool = True) -> bytes:
    """An unsigned, unmarked H.264 MP4: noise (nothing reads as a watermark), or black
    (cheap to send whatever its size)."""
    import av

    buffer = io.BytesIO()
    rng = np.random.default_rng(7)
    black = np.zeros((height * 3 // 2, width), np.uint8)
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "40"}
        for index in range(frames):
            planes = rng.integers(0, 255, black.shape, dtype=np.uint8) if noise else black
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def eight_k_mp4() -> bytes:
    """A two-frame 7680x4320 MP4 (~100 kB): cheap to send, ~10 s of CPU to decode."""
    return synthetic_mp4(7680, 4320, 2, noise=False)


class Hostile:
    """The attackers, each a loop that runs until ``stop`` (and at most ``cap`` rounds)."""

    def __init__(self, addr: str, secret: bytes, tally: Tally, cap: int = 200) -> None:
        self.addr, self.secret, self.tally, self.cap = addr, secret, tally, cap
        self.stop = threading.Event()
        self.outcomes: Counter = Counter()
        self.lock = threading.Lock()
        self.huge = eight_k_mp4()

    def _count(self, kind: str, exc: grpc.RpcError | None) -> None:
        outcome = "OK"
        if exc is not None:
            reason = error_info(exc)[0]
            outcome = f"{exc.code().name}/{reason}" if reason else exc.code().name
        with self.lock:
            self.outcomes[f"{kind}: {outcome}"] += 1

    def stalled_bodies(self) -> None:
        """40 token-less and 16 signed-in calls on one connection that never send a body."""
        token = mint_token(self.secret, "mallory")
        for _ in range(self.cap):
            if self.stop.is_set():
                return
            release = threading.Event()

            def never(release: threading.Event = release) -> Iterator[pb.ReportVideoRequest]:
                release.wait(600)
                yield from ()

            with grpc.insecure_channel(self.addr) as channel:
                call = channel.stream_unary(
                    "/alive.v1.AliveService/ReportVideo",
                    request_serializer=pb.ReportVideoRequest.SerializeToString,
                    response_deserializer=pb.ReportVideoResponse.FromString)
                calls = [call.future(never()) for _ in range(40)] + [
                    call.future(never(), metadata=[("authorization", f"Bearer {token}")])
                    for _ in range(16)]
                for future in calls:
                    while not future.done() and not self.stop.is_set():
                        self.stop.wait(0.2)
                    if future.done():
                        self._count("stalled", future.exception())
                    else:
                        with self.lock:
                            self.outcomes["stalled: still waiting when the run ended"] += 1
                release.set()
                for future in calls:
                    future.cancel()

    def huge_verifies(self) -> None:
        with AliveClient(self.addr, token=mint_token(self.secret, "hugo"), timeout_s=60) as c:
            for _ in range(self.cap):
                if self.stop.is_set():
                    return
                try:
                    c.verify(self.huge)
                    self._count("verify 8K", None)
                except grpc.RpcError as exc:
                    self._count("verify 8K", exc)
                self.stop.wait(0.2)

    def stranger_lookups(self) -> None:
        with AliveClient(self.addr, token=mint_token(self.secret, "stranger"), timeout_s=60
                         ) as client:
            for i in range(self.cap):
                if self.stop.is_set():
                    return
                with self.tally.lock:
                    victims = [video for video, _, _ in self.tally.reports]
                if victims:
                    try:
                        client.get_video(victims[i % len(victims)])
                        self._count("stranger get", None)
                    except grpc.RpcError as exc:
                        self._count("stranger get", exc)
                self.stop.wait(0.3)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=fn, daemon=True) for fn in
                   (self.stalled_bodies, self.huge_verifies, self.stranger_lookups)]
        for t in threads:
            t.start()
        return threads


def run_phase(addr: str, secret: bytes, args: argparse.Namespace, options: pb.AnimateOptions,
              phase: str, hostile: bool) -> tuple[Tally, float, Hostile | None]:
    tally = Tally()
    attackers = Hostile(addr, secret, tally) if hostile else None
    attack_threads = attackers.start() if attackers else []
    start = time.perf_counter()
    threads = [
        threading.Thread(target=client_loop, args=(
            addr, mint_token(secret, f"{phase}{c}"), f"{phase}{c}", args.requests, c, tally,
            options))
        for c in range(args.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if attackers:
        attackers.stop.set()
        for t in attack_threads:
            t.join(60)
    return tally, elapsed, attackers


def p95(latencies: list[float]) -> float:
    lat = sorted(latencies)
    return lat[int(0.95 * (len(lat) - 1))] if lat else float("nan")


def summarise(label: str, tally: Tally, elapsed: float, args: argparse.Namespace,
              store: SqlStore) -> tuple[int, int]:
    lost = sum(
        1 for video_id, user, report_id in tally.reports
        if not any(r.id == report_id and r.reporter == user for r in store.reports_for(video_id))
    )
    errors = sum(n for k, n in tally.outcomes.items()
                 if k != "ok" and not k.startswith("RESOURCE_EXHAUSTED"))
    lat = sorted(tally.latencies)
    print(f"[{label}] clients={args.clients} requests/client={args.requests} in {elapsed:.1f} s")
    print(f"[{label}] outcomes: {dict(tally.outcomes)}")
    if lat:
        print(f"[{label}] latency p50={statistics.median(lat):.2f} s p95={p95(lat):.2f} s; "
              f"{60 * len(lat) / elapsed:.1f} videos/min")
    print(f"[{label}] errors={errors} lost_reports={lost} (of {len(tally.reports)})")
    return errors, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="per client")
    parser.add_argument("--long-side", type=int, default=320)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--no-hostile", action="store_true", help="skip the hostile run")
    parser.add_argument("--server-pid", type=int, default=0,
                        help="with ALIVE_ADDR: the server's pid, for its memory per process")
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
    if not addr.startswith(("127.", "localhost", "[::1]")):
        raise SystemExit(f"make load runs against loopback only, not {addr}")
    secret = load_or_create_secret(settings.data_dir)
    server_pid = own.process.pid if own and own.process else args.server_pid
    rss: list[tuple[float, float]] = []
    done = threading.Event()
    if server_pid:
        print(report(server_pid, "memory at start"))

    def sample_rss() -> None:
        while server_pid and not done.wait(1.0):
            rss.append(memory_mb(server_pid))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    store = SqlStore(settings.database_url, settings.blob_dir)
    clean, clean_s, _ = run_phase(addr, secret, args, options, "load", hostile=False)
    errors, lost = summarise("clean", clean, clean_s, args, store)
    ratio_ok = True
    if not args.no_hostile:
        mixed, mixed_s, attackers = run_phase(addr, secret, args, options, "mixed", hostile=True)
        more_errors, more_lost = summarise("hostile", mixed, mixed_s, args, store)
        errors, lost = errors + more_errors, lost + more_lost
        assert attackers is not None
        print(f"[hostile] attackers: {dict(sorted(attackers.outcomes.items()))}")
        ratio = p95(mixed.latencies) / p95(clean.latencies)
        ratio_ok = ratio <= HOSTILE_P95_RATIO
        print(f"[hostile] normal p95 / clean p95 = {ratio:.2f} "
              f"(target <= {HOSTILE_P95_RATIO}): {'ok' if ratio_ok else 'MISSED'}")
    done.set()
    if server_pid:
        print(report(server_pid, "memory at end"))
    if rss:
        third = max(1, len(rss) // 3)
        for name, series in (("RSS", [r for r, _ in rss]), ("PSS", [p for _, p in rss])):
            print(f"server {name} MB (all processes): first third max "
                  f"{max(series[:third]):.0f}, last third max {max(series[-third:]):.0f}, "
                  f"peak {max(series):.0f}")
    if own:
        own.close()
    raise SystemExit(1 if errors or lost or not ratio_ok else 0)


if __name__ == "__main__":
    main()
