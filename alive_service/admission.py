"""Admission control: a bounded worker pool with a bounded queue in front of it.

Generation is CPU bound; more parallel requests than cores only add memory and
latency. Beyond ``workers + queue_depth`` requests in the building, new ones are
refused at once (RESOURCE_EXHAUSTED with a retry hint) rather than queued without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Full(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__("the server is at capacity")
        self.retry_after_s = retry_after_s


class Admission:
    def __init__(self, workers: int, queue_depth: int, typical_job_s: float = 2.0) -> None:
        self.workers = workers
        self.capacity = workers + queue_depth
        self.typical_job_s = typical_job_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="animate")
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0

    @property
    def queued(self) -> int:
        return max(0, self._admitted - self._running)

    @property
    def admitted(self) -> int:
        return self._admitted

    def _full(self) -> Full:
        waves = self._admitted / self.workers
        return Full(retry_after_s=round(self.typical_job_s * waves, 1))

    def check(self) -> None:
        """Raise Full if a submit now would be refused: per-user limits count admissions, so
        they look here first and a client told to come back later is not charged for it.
        (A request that loses the race for the last slot is refused by submit.)"""
        with self._lock:
            if self._admitted >= self.capacity:
                raise self._full()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        with self._lock:
            if self._admitted >= self.capacity:
                raise self._full()
            self._admitted += 1

        def run() -> Any:
            with self._lock:
                self._running += 1
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._running -= 1
                    self._admitted -= 1

        try:
            return self._pool.submit(run)
        except RuntimeError:
            with self._lock:
                self._admitted -= 1
            raise

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
