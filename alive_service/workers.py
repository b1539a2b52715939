"""Generation runs in worker processes, one per core; the server process only talks gRPC.
The pool is also the one owner of CPU capacity: it admits at most ``workers + queue_depth``
jobs (generation and VerifyVideo alike) and refuses the rest at once (Full).

Why processes: two requests in one interpreter fight over the GIL. Every OpenCV, numpy and
PyAV call gives the GIL up and takes it back, hundreds of times per frame, and each
take-back can wait behind the other request. Measured here with two requests at once:
~0.76 s of wall time per video in threads, ~0.63 s in processes. A worker that crashes
(a native library faulting on a hostile file, the kernel's OOM killer) also takes only its
own request down.

Life cycle of one job::

    gRPC handler thread: for event in WorkerPool.animate(request, cancelled): ...
      |  admitted, or Full past workers + queue_depth; waits (queued) for an idle worker
      |  CPU threads: ALIVE_REQUEST_THREADS (0: cores // busy workers)
      |  pipe -> worker: ("job", AnimateRequest, threads)
      v
    worker process: pipeline.animate(...) with its own models, store connection and keys
      |  pipe <- ("progress", stage, done, total) ...     (at most ~10 a second per stage)
      |  pipe <- ("result", Result) | ("error", exception)
      v
    the handler's iterator yields each Progress as it arrives (the one progress channel:
    worker pipe -> handler -> client), then the Result, or raises the pipeline's exception.
    VerifyVideo takes the same way (WorkerPool.verify, job "verify"): decoding a hostile
    video is the same kind of work as generating one, and may crash a native library.
    A cancel sets the worker's event, and the pipeline stops between frames (Cancelled); a
    handler that goes away mid-job leaves the worker to a drain thread that waits for that.
    If the worker dies mid-job: WorkerCrashed for that request, and a fresh worker replaces it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from alive_service.config import Settings
from alive_service.pipeline import AnimateRequest, Cancelled, ProgressFn, Result, Stage
from provenance.verify import Verification, VideoLimits

log = logging.getLogger("alive.workers")

# Progress reaches the phone over a cell network: ten updates a second is plenty.
PROGRESS_EVERY_S = 0.1
_CTX = mp.get_context("spawn")  # grpc's threads do not survive fork
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


class Full(Exception):
    """No room: every worker is busy and the queue in front of them is full."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("the server is at capacity")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Progress:
    stage: Stage
    done: int
    total: int


class WorkerCrashed(RuntimeError):
    """The worker process running the request died. If it died after storing the video,
    a retry with the same idempotency key returns that video instead of a second one."""


@dataclass
class _Worker:
    process: Any  # a spawn-context Process
    conn: Connection
    cancel: Any  # a spawn-context Event


def _throttled(send: Callable[[tuple], None]) -> ProgressFn:
    last: dict[str, Any] = {"stage": None, "at": 0.0}

    def progress(stage: Stage, done: int, total: int) -> None:
        now = time.monotonic()
        if stage is last["stage"] and done < total and now - last["at"] < PROGRESS_EVERY_S:
            return
        last.update(stage=stage, at=now)
        send(("progress", stage, done, total))

    return progress


def _sendable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _keep_freed_memory() -> None:
    """Keep freed blocks under 64 MB in the process instead of handing them back to the
    kernel. A request allocates and frees hundreds of MB of frames and planes; with glibc's
    defaults each video took ~15k page faults here, with this ~0.7k (about 4% of its CPU)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def _serve(settings: Settings, conn: Connection, cancel: Any) -> None:
    """A worker process: load everything once, then run jobs until the pipe closes."""
    # The server process decides when to stop; a Ctrl-C to the process group must not
    # kill a request the server is draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _keep_freed_memory()
    from alive_service import logs
    from alive_service.parts import Parts
    from alive_service.pipeline import animate
    from provenance.verify import verify_mp4

    logs.configure(settings.log_level)
    try:
        parts = Parts.load(settings, migrate=False)
    except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
        log.exception("worker start-up failed")
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        if message is None:
            return
        kind, request, threads = message
        progress = _throttled(conn.send)
        try:
            if kind == "verify":  # request: (mp4 bytes, VideoLimits)
                result = verify_mp4(request[0], parts.keys.trust_anchors, limits=request[1])
            else:
                result = animate(request, parts, progress, cancel.is_set, threads)
            conn.send(("result", result))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the handler
            conn.send(("error", _sendable(exc)))


class WorkerPool:
    """``workers`` generation processes and the bounded queue in front of them. Generation
    is CPU bound: more parallel jobs than cores only add memory and latency, so beyond
    ``workers + queue_depth`` jobs in the building new ones are refused at once (Full, with
    a retry hint) rather than queued without bound. Jobs run on the caller's thread."""

    def __init__(self, settings: Settings, workers: int, queue_depth: int = 0,
                 cores: int | None = None, typical_job_s: float = 2.0) -> None:
        self.settings = settings
        self.size = max(1, workers)
        self.capacity = self.size + max(0, queue_depth)
        self.cores = cores or os.cpu_count() or 1
        self.typical_job_s = typical_job_s
        # Last in, first out: a lone client keeps hitting the same warm worker.
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._admitted = 0  # jobs in the building: running, queued, or draining
        self._busy = 0  # jobs holding a worker
        self._closed = False
        self.pids: set[int] = set()

    @property
    def queued(self) -> int:
        return max(0, self._admitted - self._busy)

    def _full(self) -> Full:
        waves = self._admitted / self.size
        return Full(retry_after_s=round(self.typical_job_s * waves, 1))

    def check(self) -> None:
        """Raise Full if a job now would be refused: per-user limits count admissions, so
        they look here first and a client told to come back later is not charged for it.
        (A job that loses the race for the last place is refused when it starts.)"""
        with self._lock:
            if self._admitted >= self.capacity:
                raise self._full()

    def start(self, timeout_s: float = 300.0) -> None:
        """Start every worker and wait until each has loaded its models."""
        starting = [self._spawn() for _ in range(self.size)]
        for worker in starting:
            self._await_ready(worker, timeout_s)
            self._idle.put(worker)
        log.info("workers ready", extra={"workers": self.size, "pids": sorted(self.pids)})

    def _spawn(self) -> _Worker:
        ours, theirs = _CTX.Pipe()
        cancel = _CTX.Event()
        process = _CTX.Process(target=_serve, args=(self.settings, theirs, cancel),
                               name="alive-worker", daemon=True)
        process.start()
        theirs.close()
        return _Worker(process, ours, cancel)

    def _await_ready(self, worker: _Worker, timeout_s: float) -> None:
        if not worker.conn.poll(timeout_s):
            worker.process.kill()
            raise RuntimeError(f"a worker did not load its models within {timeout_s:.0f} s")
        try:
            kind, detail = worker.conn.recv()
        except EOFError:
            raise RuntimeError(f"a worker died while starting (exit code "
                               f"{worker.process.exitcode})") from None
        if kind != "ready":
            raise RuntimeError(f"a worker could not start: {detail}")
        self.pids.add(detail)

    def _replace(self, dead: _Worker) -> None:
        """Start a fresh worker for one that died, in the background; until it is ready
        the pool runs one short."""
        self.pids.discard(dead.process.pid)
        dead.conn.close()

        def restart() -> None:
            while not self._closed:
                try:
                    worker = self._spawn()
                    self._await_ready(worker, 300.0)
                except Exception:  # noqa: BLE001 - logged, and tried again
                    log.exception("could not replace a worker; retrying in 5 s")
                    time.sleep(5.0)
                    continue
                log.info("worker replaced", extra={"pid": worker.process.pid})
                self._idle.put(worker)
                return

        threading.Thread(target=restart, name="worker-restart", daemon=True).start()

    def animate(self, request: AnimateRequest, cancelled: Callable[[], bool]
                ) -> Iterator[Progress | Result]:
        """Run one generation: Progress events as the worker sends them, then its Result;
        the pipeline's exception (or Full, Cancelled, WorkerCrashed) is raised instead.
        ``cancelled`` is asked about ten times a second while the job waits or runs."""
        return self._job(("job", request), request.request_id, cancelled)

    def verify(self, mp4: bytes, limits: VideoLimits, request_id: str) -> Verification:
        """Check a video's Content Credentials and watermark in a worker: decoding hostile
        files is the same kind of work as generating, under the same capacity."""
        *_, result = self._job(("verify", (mp4, limits)), request_id, lambda: False)
        return result  # type: ignore[no-any-return]

    def _job(self, job: tuple[str, Any], request_id: str, cancelled: Callable[[], bool]
             ) -> Iterator[Any]:
        with self._lock:
            if self._admitted >= self.capacity:
                raise self._full()
            self._admitted += 1
        worker: _Worker | None = None
        try:
            worker = self._take(cancelled, request_id)
            with self._lock:
                self._busy += 1
                # A lone request may use every core; with others running, one each.
                threads = max(1, self.cores // self._busy)
            if self.settings.request_threads > 0:
                threads = min(threads, self.settings.request_threads)
            worker.cancel.clear()
            self._send(worker, (*job, threads), request_id)
            while True:
                kind, *payload = self._receive(worker, cancelled, request_id)
                if kind == "progress":
                    yield Progress(*payload)
                    continue
                self._release(worker)
                worker = None
                yield self._outcome(kind, payload[0], request_id)
                return
        except WorkerCrashed:
            worker = None  # replaced already
            raise
        finally:
            if worker is not None:  # the caller went away mid-job
                self._abandon(worker, request_id)
            with self._lock:
                self._admitted -= 1

    def _take(self, cancelled: Callable[[], bool], request_id: str) -> _Worker:
        """An idle, live worker; waits (queued) while none is, unless cancelled."""
        while True:
            try:
                worker = self._idle.get(timeout=0.1)
            except queue.Empty:
                if cancelled():
                    log.info("cancelled", extra={"request_id": request_id, "code": "CANCELLED",
                                                 "stage": "queued", "frames_done": 0,
                                                 "frames_total": 0})
                    raise Cancelled("queued", 0, 0) from None
                continue
            if worker.process.is_alive():
                return worker
            # Died while idle: not this request's fault.
            log.error("idle worker died", extra={"pid": worker.process.pid,
                                                 "exit_code": worker.process.exitcode})
            self._replace(worker)

    def _send(self, worker: _Worker, message: tuple, request_id: str) -> None:
        try:
            worker.conn.send(message)
        except (EOFError, OSError):
            raise self._crashed(worker, request_id) from None

    def _receive(self, worker: _Worker, cancelled: Callable[[], bool], request_id: str
                 ) -> tuple:
        """The worker's next message; passes a cancel on while waiting for it."""
        try:
            while not worker.conn.poll(0.1):
                if cancelled():
                    worker.cancel.set()
            return worker.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):  # only the pipe can fail here: the worker is gone
            raise self._crashed(worker, request_id) from None

    def _crashed(self, worker: _Worker, request_id: str) -> WorkerCrashed:
        worker.process.join(1.0)
        code = worker.process.exitcode
        log.error("worker died", extra={"pid": worker.process.pid, "exit_code": code,
                                        "request_id": request_id})
        self._replace(worker)
        with self._lock:
            self._busy -= 1
        return WorkerCrashed(f"the process generating this video stopped unexpectedly (exit "
                             f"code {code}); retry with the same idempotency key")

    @staticmethod
    def _outcome(kind: str, payload: Any, request_id: str) -> Any:
        """The pipeline's own outcome, raised outside the pipe's try: an OSError it sends back
        (a full disk under the encoder's temporary file, say) is not a dead worker."""
        if kind != "error":
            return payload
        if isinstance(payload, Cancelled):  # logged here: the client's stream may be gone
            log.info("cancelled", extra={
                "request_id": request_id, "code": "CANCELLED", "stage": payload.stage,
                "frames_done": payload.frames_done, "frames_total": payload.frames_total})
        raise payload

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            self._busy -= 1
        if self._closed:
            self._stop(worker)
        else:
            self._idle.put(worker)

    def _abandon(self, worker: _Worker, request_id: str) -> None:
        """The handler went away mid-job: cancel it, and let a thread wait for the worker to
        stop before it takes the next job. The job keeps its place until then."""
        worker.cancel.set()
        with self._lock:
            self._admitted += 1  # handed over to the drain thread

        def drain() -> None:
            try:
                while True:
                    kind, *payload = self._receive(worker, lambda: True, request_id)
                    if kind != "progress":
                        break
                self._release(worker)
                with contextlib.suppress(Exception):
                    self._outcome(kind, payload[0], request_id)
            except WorkerCrashed:
                pass
            finally:
                with self._lock:
                    self._admitted -= 1

        threading.Thread(target=drain, name="worker-drain", daemon=True).start()

    def _stop(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.send(None)
        worker.process.join(10.0)
        if worker.process.is_alive():
            worker.process.kill()

    def close(self) -> None:
        """Stop the idle workers (the server drains requests before it calls this)."""
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            self._stop(worker)
