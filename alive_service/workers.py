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
      |  admitted, or Full past workers + queue_depth; waits (queued, first come first
      |  served) for an idle worker
      |  pipe -> worker: ("job", AnimateRequest)
      |  shared page -> worker: its share of the cores, rewritten whenever a job starts or
      |  ends (cores // running jobs, at most ALIVE_REQUEST_THREADS when that is not 0)
      v
    worker process: pipeline.animate(...) with the zygote's models, its own store connection
      |  and keys
      |  pipe <- ("progress", stage, done, total) ...     (at most ~10 a second per stage)
      |  pipe <- ("result", Result) | ("error", exception)
      v
    the handler's iterator yields each Progress as it arrives (the one progress channel:
    worker pipe -> handler -> client), then the Result, or raises the pipeline's exception.
    VerifyVideo takes the same way (WorkerPool.verify, job "verify"): decoding a hostile
    video is the same kind of work as generating one, and may crash a native library.
    A cancel sets the worker's flag (a shared byte), and the pipeline stops between frames
    (Cancelled); a handler that goes away mid-job leaves the worker to a drain thread that
    waits for that.
    If the worker dies mid-job: WorkerCrashed for that request, and a fresh worker replaces it.

Where workers come from: a zygote. The pool spawns one fresh interpreter (no gRPC, no
threads of ours) that loads the models once (Models.load) and then only forks: every worker
is a fork of it, so the ~0.6 GB of weights and onnxruntime sessions are pages they all share
copy-on-write, instead of a copy per worker. Measured with two workers on this machine, idle
before any request: ~14 MB private per worker instead of ~330 MB, and ~445 MB PSS for the
whole service (alive_service/memory.py reads the figures). The zygote hands back what loading
freed before it forks (malloc_trim): otherwise the workers' first allocations land on those
shared pages and copy them, and the zygote keeps its copy of the garbage (~70 MB more PSS at
the 2-request peak).
Forking is safe there because the zygote runs no Python thread and no onnxruntime pool: every
CPU session has one intra-op thread, which onnxruntime runs on the caller's thread (the
motion model's frame threads start on first use, in the worker). The native pools that do
exist at import (OpenBLAS, one idle onnxruntime thread) are not used across the fork or, in
OpenBLAS's case, restart after it. With CUDA the zygote loads nothing (a CUDA context does
not survive fork) and each worker loads its own models, as before. A worker that dies is
replaced by a fresh fork; a zygote that died is started again first.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import mmap
import multiprocessing as mp
import os
import pickle
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import reduction
from multiprocessing.connection import Connection, Pipe
from typing import TYPE_CHECKING, Any

from alive_service.config import Settings
from alive_service.pipeline import AnimateRequest, Cancelled, ProgressFn, Result
from alive_service.vocabulary import ProgressStage
from provenance.verify import Verification, VideoLimits

if TYPE_CHECKING:
    from alive_service.parts import Models

log = logging.getLogger("alive.workers")

# Progress reaches the phone over a cell network: ten updates a second is plenty.
PROGRESS_EVERY_S = 0.1
# The zygote is spawned (a fresh interpreter: grpc's threads do not survive fork); the
# workers are forked from it.
_CTX = mp.get_context("spawn")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc mallopt parameters
IDLE_TRIM_S = 5.0  # a worker this long without a job gives its freed memory back
STOP_GRACE_S = 10.0  # a stopping worker or zygote gets this long to exit before it is killed


class Full(Exception):
    """No room: every worker is busy and the queue in front of them is full."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("the server is at capacity")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Progress:
    stage: ProgressStage
    done: int
    total: int


class WorkerCrashed(RuntimeError):
    """The worker process running the request died. If it died after storing the video,
    a retry with the same idempotency key returns that video instead of a second one."""


class _Flag:
    """What the server tells one worker while its job runs, without a message: two bytes of
    shared memory (a memfd), which the pipeline reads between frames without a system call.
    Byte 0: cancel. Byte 1: the CPU threads the job may use now (the pool's share of the
    cores, which changes as other jobs start and end)."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            fd = os.memfd_create("alive-cancel", os.MFD_CLOEXEC)
            os.ftruncate(fd, 2)
        self.fd = fd
        self._map = mmap.mmap(fd, 2)

    def set(self) -> None:
        self._map[0] = 1

    def clear(self) -> None:
        self._map[0] = 0

    def is_set(self) -> bool:
        return self._map[0] == 1

    def share(self, threads: int) -> None:
        self._map[1] = max(1, min(255, threads))

    def threads(self) -> int:
        return max(1, self._map[1])

    def close_fd(self) -> None:
        """The mapping stays; the descriptor is only needed to hand the page over."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _Forked:
    """A worker forked by the zygote, as the pool sees it: not our child, so it is watched
    through a pidfd (readable once it exits) and its exit code comes from the zygote."""

    def __init__(self, pid: int, zygote: _Zygote) -> None:
        self.pid = pid
        self._zygote = zygote
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # died at once, and reaped: the pool sees a dead worker
            self._pidfd = -1
        self._exitcode: int | None = None

    def _exited(self, timeout_s: float) -> bool:
        if self._pidfd < 0:
            return True
        poller = select.poll()  # not select.select: a busy server's fds pass 1024
        poller.register(self._pidfd, select.POLLIN)
        return bool(poller.poll(timeout_s * 1000))

    def is_alive(self) -> bool:
        return not self._exited(0)

    def join(self, timeout_s: float | None = None) -> None:
        self._exited(timeout_s if timeout_s is not None else 1e9)

    @property
    def exitcode(self) -> int | None:
        if self._exitcode is None and self._exited(0):
            self._exitcode = self._zygote.exitcode(self.pid)
        return self._exitcode

    def kill(self) -> None:
        if self._pidfd >= 0:  # a pidfd cannot signal a recycled pid
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


def _stop_process(conn: Connection, process: Any) -> None:
    """Ask a worker or the zygote to stop (None on its pipe); kill it if it has not exited
    within STOP_GRACE_S. ``process``: a multiprocessing Process or a _Forked worker."""
    with contextlib.suppress(OSError):
        conn.send(None)
    process.join(STOP_GRACE_S)
    if process.is_alive():
        process.kill()


@dataclass(eq=False)
class _Worker:
    process: _Forked
    conn: Connection
    cancel: _Flag


@dataclass(eq=False)
class _Waiter:
    """A job queued for a worker. A worker coming free goes straight to the job that has
    waited longest: when queued jobs polled for one instead, whichever polled first won
    (three queued requests came out in a mixed order 3 runs of 3), which spreads the waits
    of a loaded server: some requests wait for none, others for several."""

    ready: threading.Event = field(default_factory=threading.Event)
    worker: _Worker | None = None


class _Share:
    """A job's share of the cores, read from its worker's page each time the pipeline asks;
    ``seen``: the shares it got, in the order they changed ([2, 1]: every core of two until
    a second request started)."""

    def __init__(self, flag: _Flag) -> None:
        self._flag = flag
        self.seen: list[int] = []

    def __call__(self) -> int:
        threads = self._flag.threads()
        if not self.seen or self.seen[-1] != threads:
            self.seen.append(threads)
        return threads


def _throttled(send: Callable[[tuple], None]) -> ProgressFn:
    last: dict[str, Any] = {"stage": None, "at": 0.0}

    def progress(stage: ProgressStage, done: int, total: int) -> None:
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
    defaults each video took ~15k page faults here, with this ~0.7k (about 4% of its CPU).
    One malloc arena for all threads: the encoder's and the output check's threads would
    otherwise each grow an arena of their own, where the blocks the request's main thread
    freed (frames, the photo) cannot be reused (~13 MB less at the 2-request peak)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    libc.mallopt(_M_ARENA_MAX, 1)


def _give_back_freed_memory() -> None:
    """Return what _keep_freed_memory kept (~250 MB after a 720p request) to the kernel. Done
    only once a worker has had no job for IDLE_TRIM_S: under load the next request reuses
    those pages; an idle service should not hold them in every worker. The zygote does it
    once before it forks (~70 MB that loading the models freed)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _name_process(name: bytes) -> None:
    """Name the process for ps, top and the memory report (all would say "python")."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _zygote(settings: Settings, conn: Connection) -> None:
    """The zygote process: load the models, then fork a worker for each ("fork",) message
    until the pipe closes. It never runs a request."""
    # The server process decides when to stop; a Ctrl-C to the process group must not
    # kill a request the server is draining. SIGTERM does stop the zygote (it runs no
    # request; multiprocessing's exit handler stops it so), not the workers (below).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _keep_freed_memory()  # inherited by every fork
    _name_process(b"alive-zygote")
    from alive_service import logs
    from alive_service.parts import Models
    from inference import cuda_available

    logs.configure(settings.log_level)
    models: Models | None = None
    try:
        if not cuda_available():
            models = Models.load(settings)
        if threading.active_count() != 1:
            raise RuntimeError(f"{threading.active_count()} Python threads after loading "
                               "the models: forking workers from here would be unsafe")
    except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
        log.exception("zygote start-up failed")
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    # Objects that live as long as the process, moved out of the collector's sight: a
    # collection in a worker would otherwise write to (and so copy) every page they are on.
    gc.freeze()
    # What loading freed (parsed model files, temporary tensors: ~70 MB) is still mapped,
    # shared with every worker: a worker that allocated there would copy the page, and the
    # zygote would keep its own copy of garbage (~90 MB of the 2-request peak).
    _give_back_freed_memory()
    log.info("zygote ready", extra={"pid": os.getpid(), "models_shared": models is not None,
                                    "os_threads": _os_threads()})
    conn.send(("ready", os.getpid()))
    exits: dict[int, int] = {}

    def reap() -> None:
        with contextlib.suppress(ChildProcessError):
            while True:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    return
                exits[pid] = os.waitstatus_to_exitcode(status)

    while True:
        try:
            ready = conn.poll(1.0)
            reap()
            if not ready:
                continue
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server went away; the workers notice on their own pipes
        if message is None:
            return
        if message[0] == "exitcode":
            conn.send(exits.pop(message[1], None))
            continue
        flag_fd = reduction.recv_handle(conn)
        ours, theirs = Pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                _name_process(b"alive-worker")
                ours.close()
                conn.close()
                _serve(settings, theirs, _Flag(flag_fd), models)
            except BaseException:  # noqa: BLE001 - a worker never returns into the zygote
                log.exception("worker failed")
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        os.close(flag_fd)
        conn.send(("forked", pid))
        reduction.send_handle(conn, ours.fileno(), 0)
        ours.close()


def _serve(settings: Settings, conn: Connection, cancel: _Flag, models: Models | None) -> None:
    """A worker process: open its own store connection (and, without a zygote's models,
    load them), then run jobs until the pipe closes."""
    from alive_service.parts import Parts
    from alive_service.pipeline import animate
    from provenance.verify import verify_mp4

    try:
        parts = Parts.load(settings, migrate=False, models=models)
    except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
        log.exception("worker start-up failed")
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    trimmed = True
    while True:
        try:
            if not trimmed and not conn.poll(IDLE_TRIM_S):
                _give_back_freed_memory()
                trimmed = True
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        if message is None:
            return
        trimmed = False
        kind, request = message
        progress = _throttled(conn.send)
        try:
            if kind == "verify":  # request: (mp4 bytes, VideoLimits)
                result = verify_mp4(request[0], parts.keys.trust_anchors, limits=request[1])
            else:
                # The pipeline asks for its share of the cores before each stage and batch.
                share = _Share(cancel)
                result = animate(request, parts, progress, cancel.is_set, share)
                log.info("generated", extra={"request_id": request.request_id,
                                             "cores": share.seen})
            conn.send(("result", result))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the handler
            conn.send(("error", _sendable(exc)))


class _Zygote:
    """The server's handle on the zygote process: starts it, asks it for workers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # one exchange on the pipe at a time
        self._process: Any = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self, timeout_s: float) -> None:
        if self._conn is not None:
            self._conn.close()
        ours, theirs = _CTX.Pipe()
        process = _CTX.Process(target=_zygote, args=(self.settings, theirs),
                               name="alive-zygote", daemon=True)
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        if not ours.poll(timeout_s):
            process.kill()
            raise RuntimeError(f"the zygote did not load the models within {timeout_s:.0f} s")
        try:
            kind, detail = ours.recv()
        except EOFError:
            raise RuntimeError(f"the zygote died while starting (exit code "
                               f"{process.exitcode})") from None
        if kind != "ready":
            raise RuntimeError(f"the zygote could not start: {detail}")

    def fork(self, timeout_s: float = 300.0) -> _Worker:
        """A new worker (not yet ready: it opens its store connection first). A zygote
        that died is started again, loading the models anew."""
        with self._lock:
            if self._process is None or not self._process.is_alive():
                if self._process is not None:
                    log.error("zygote died; starting a new one",
                              extra={"pid": self._process.pid,
                                     "exit_code": self._process.exitcode})
                self._start(timeout_s)
            assert self._conn is not None
            cancel = _Flag()
            try:
                self._conn.send(("fork",))
                reduction.send_handle(self._conn, cancel.fd, self._process.pid)
                if not self._conn.poll(30.0):
                    raise RuntimeError("the zygote did not fork a worker within 30 s")
                _, pid = self._conn.recv()
                fd = reduction.recv_handle(self._conn)
            except (EOFError, OSError) as exc:
                raise RuntimeError(f"the zygote died while forking: {exc}") from None
            finally:
                cancel.close_fd()
        return _Worker(_Forked(pid, self), Connection(fd), cancel)

    def exitcode(self, pid: int) -> int | None:
        """A dead worker's exit code (negative: killed by that signal), if the zygote has
        collected it; it is asked once, when the pool notices the death."""
        with self._lock:
            if self._conn is None or not self._process.is_alive():
                return None
            try:
                self._conn.send(("exitcode", pid))
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    if self._conn.poll(0.2):
                        return self._conn.recv()  # type: ignore[no-any-return]
            except (EOFError, OSError):
                pass
            return None

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            _stop_process(self._conn, self._process)
            self._conn.close()
            self._conn = None


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
        self._lock = threading.Lock()  # guards all of the below
        # A stack, last in first out: a lone client keeps hitting the same warm worker.
        self._idle: list[_Worker] = []
        self._waiting: deque[_Waiter] = deque()  # first come, first served
        # Workers with a job, oldest job first: they share the cores (_share_cores).
        self._running: list[_Worker] = []
        self._admitted = 0  # jobs in the building: running, queued, or draining
        self._closed = False
        self.pids: set[int] = set()
        self._zygote = _Zygote(settings)

    @property
    def queued(self) -> int:
        return max(0, self._admitted - len(self._running))

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
        """Start the zygote (it loads the models), fork every worker from it and wait until
        each is ready."""
        starting = [self._zygote.fork(timeout_s) for _ in range(self.size)]
        for worker in starting:
            self._await_ready(worker, timeout_s)
            self._hand_over(worker)
        log.info("workers ready", extra={"workers": self.size, "pids": sorted(self.pids),
                                         "zygote": self._zygote.pid})

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
        dead.process.close()

        def restart() -> None:
            while not self._closed:
                try:
                    worker = self._zygote.fork()
                    self._await_ready(worker, 300.0)
                except Exception:  # noqa: BLE001 - logged, and tried again
                    log.exception("could not replace a worker; retrying in 5 s")
                    time.sleep(5.0)
                    continue
                log.info("worker replaced", extra={"pid": worker.process.pid})
                self._hand_over(worker)
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
            worker.cancel.clear()
            with self._lock:
                self._running.append(worker)
                self._share_cores()
            self._send(worker, job, request_id)
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
        """An idle, live worker; waits (queued, first come first served) while none is,
        unless cancelled."""
        first = True
        while True:
            waiter = _Waiter()
            with self._lock:
                if self._idle and not self._waiting:
                    waiter.worker = self._idle.pop()
                elif first:
                    self._waiting.append(waiter)
                else:  # its worker was dead: it keeps its place at the head of the queue
                    self._waiting.appendleft(waiter)
            first = False
            while waiter.worker is None and not waiter.ready.wait(0.1):
                if cancelled():
                    with self._lock:
                        handed = waiter.worker
                        if handed is None:
                            self._waiting.remove(waiter)
                    if handed is not None:  # a worker came at the same moment: pass it on
                        self._hand_over(handed)
                    log.info("cancelled", extra={"request_id": request_id, "code": "CANCELLED",
                                                 "stage": "queued", "frames_done": 0,
                                                 "frames_total": 0})
                    raise Cancelled("queued", 0, 0)
            worker = waiter.worker
            assert worker is not None
            if worker.process.is_alive():
                return worker
            # Died while idle: not this request's fault.
            log.error("idle worker died", extra={"pid": worker.process.pid,
                                                 "exit_code": worker.process.exitcode})
            self._replace(worker)

    def _hand_over(self, worker: _Worker) -> None:
        """A worker that is free: to the job that has waited longest, else to the idle."""
        with self._lock:
            if self._waiting:
                waiter = self._waiting.popleft()
                waiter.worker = worker
                waiter.ready.set()
            else:
                self._idle.append(worker)

    def _share_cores(self) -> None:
        """Tell every running worker its share of the cores (under the lock, whenever a job
        starts or ends): a job that runs alone gets them all, and gives all but its share
        back at its next frame batch when another starts (onnxruntime, OpenCV and x264 keep
        the thread counts they started a stage with). ALIVE_REQUEST_THREADS caps a share."""
        if not self._running:
            return
        cap = self.settings.request_threads or self.cores
        each, spare = divmod(self.cores, len(self._running))
        for i, worker in enumerate(self._running):
            # The oldest jobs, nearest their end, get the cores that do not divide evenly.
            worker.cancel.share(min(cap, max(1, each + (1 if i < spare else 0))))

    def _stopped_running(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._running:
                self._running.remove(worker)
                self._share_cores()

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
        self._stopped_running(worker)
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
        self._stopped_running(worker)
        if self._closed:
            self._stop(worker)
        else:
            self._hand_over(worker)

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
        _stop_process(worker.conn, worker.process)
        worker.process.close()

    def close(self) -> None:
        """Stop the idle workers and the zygote (the server drains requests before it calls
        this)."""
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            self._stop(worker)
        self._zygote.close()

    @property
    def zygote_pid(self) -> int | None:
        return self._zygote.pid
