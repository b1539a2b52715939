"""Who may hold a server thread, and for how long: checked before a request body is read.

grpc's sync server reads a unary request's body inside a pool thread, so a client that sends
headers and never a body holds that thread (and, with ``maximum_concurrent_rpcs``, a slot
everyone shares) for as long as it likes. The wire format of a unary request is the same as
a request stream of one message, so this interceptor re-registers every unary-request method
as request-streaming (clients see no difference) and, in the pool thread, before reading:

    call -> peer limit (per client address; health has its own small quota)
         -> token check + per-user limit (AliveService methods only; no token, no read)
         -> first message within recv_timeout_s, else the call is cancelled
         -> the unchanged handler; the whole call is cancelled after call_timeout_s

No global cap remains: a generous thread pool and ``grpc.max_concurrent_streams`` per
connection (server.py) bound the rest, so health answers while any one peer is at its limit.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from alive_service.rpc import RpcError, rich_status

log = logging.getLogger("alive.guard")

HEALTH_PREFIX = "/grpc.health.v1.Health/"


@dataclass(frozen=True)
class GuardOptions:
    recv_timeout_s: float = 30.0  # a 20 MB photo at ~6 Mbit/s; body-less calls last no longer
    call_timeout_s: float = 900.0  # any call, health watches excepted
    calls_per_peer: int = 64  # concurrent calls from one client address
    health_calls_per_peer: int = 8  # health checks and watches from one address, apart
    calls_per_user: int = 8  # concurrent AliveService calls of one signed-in user
    protected_prefix: str = "/alive.v1.AliveService/"  # methods that need a token


class Watchdog:
    """One thread that runs callbacks at deadlines (cheaper than a Timer thread per call).

    A cancelled entry drops its callback at once: the callback holds the call's context, and
    grpc core keeps a call's HTTP/2 stream (and its max_concurrent_streams slot) until the
    last reference to it is gone."""

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []  # [due, token, callback or None]
        self._live: dict[int, list[Any]] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        threading.Thread(target=self._run, name="call-watchdog", daemon=True).start()

    def after(self, seconds: float, fn: Callable[[], None]) -> int:
        with self._cond:
            token = next(self._seq)
            entry = [time.monotonic() + seconds, token, fn]
            self._live[token] = entry
            heapq.heappush(self._heap, entry)
            self._cond.notify()
            return token

    def cancel(self, token: int) -> None:
        with self._cond:
            entry = self._live.pop(token, None)
            if entry is not None:
                entry[2] = None
            if len(self._heap) > 2 * len(self._live) + 64:  # mostly cancelled: compact
                self._heap = [e for e in self._heap if e[2] is not None]
                heapq.heapify(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                due, token, fn = self._heap[0]
                wait = due - time.monotonic()
                if fn is not None and wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if fn is None:
                    continue
                self._live.pop(token, None)
            try:
                fn()
            except Exception:  # noqa: BLE001 - a failed cancel must not stop the watchdog
                log.exception("watchdog callback failed")


class _Counts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def take(self, key: str, limit: int) -> bool:
        with self._lock:
            held = self._counts.get(key, 0)
            if held >= limit:
                return False
            self._counts[key] = held + 1
            return True

    def give(self, key: str) -> None:
        with self._lock:
            held = self._counts.get(key, 0) - 1
            if held > 0:
                self._counts[key] = held
            else:
                self._counts.pop(key, None)


def peer_host(peer: str) -> str:
    """'ipv4:127.0.0.1:5123' -> 'ipv4:127.0.0.1'; 'ipv6:[::1]:5123' -> 'ipv6:[::1]'."""
    head, sep, port = peer.rpartition(":")
    return head if sep and port.isdigit() else peer


class CallGuard(grpc.ServerInterceptor):
    def __init__(self, options: GuardOptions, identify: Callable[[dict[str, str]], str]) -> None:
        """``identify`` returns the token's user or raises RpcError (UNAUTHENTICATED)."""
        self.options = options
        self._identify = identify
        self._peers = _Counts()
        self._health = _Counts()
        self._users = _Counts()
        self._watchdog = Watchdog()

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        return self._guarded(details.method, handler)

    # -- limits -----------------------------------------------------------------------------
    @contextmanager
    def _slots(self, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        health = method.startswith(HEALTH_PREFIX)
        peer = peer_host(context.peer())
        counts, limit = ((self._health, self.options.health_calls_per_peer) if health
                         else (self._peers, self.options.calls_per_peer))
        if not counts.take(peer, limit):
            self._refuse(context, RpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "PEER_LIMIT",
                f"at most {limit} concurrent calls from one address", retry_after_s=1.0))
        user = None
        try:
            if method.startswith(self.options.protected_prefix):
                metadata = dict(context.invocation_metadata() or ())
                try:
                    user = self._identify(metadata)
                except RpcError as error:
                    self._refuse(context, error)
                if not self._users.take(user, self.options.calls_per_user):
                    user = None
                    self._refuse(context, RpcError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "USER_CALL_LIMIT",
                        f"at most {self.options.calls_per_user} concurrent calls per user",
                        retry_after_s=1.0))
            timer = None if health else self._watchdog.after(
                self.options.call_timeout_s, context.cancel)
            try:
                yield
            finally:
                if timer is not None:
                    self._watchdog.cancel(timer)
        finally:
            if user is not None:
                self._users.give(user)
            counts.give(peer)

    @staticmethod
    def _refuse(context: grpc.ServicerContext, error: RpcError) -> None:
        log.info("refused", extra={"code": error.code.name, "reason": error.reason,
                                   "peer": context.peer()})
        context.abort_with_status(rich_status(error))

    def _first(self, requests: Iterator[Any], context: grpc.ServicerContext,
               method: str) -> Any:
        """The request message, or the call is cancelled after recv_timeout_s."""
        timer = self._watchdog.after(self.options.recv_timeout_s, context.cancel)
        started = time.monotonic()
        try:
            return next(requests)
        except StopIteration:
            self._refuse(context, RpcError(grpc.StatusCode.INVALID_ARGUMENT, "NO_REQUEST",
                                           f"{method} needs exactly one request message"))
        except grpc.RpcError:
            if time.monotonic() - started >= self.options.recv_timeout_s:
                log.info("receive timeout", extra={"method": method, "peer": context.peer(),
                                                   "code": "CANCELLED",
                                                   "reason": "RECEIVE_TIMEOUT"})
            raise
        finally:
            self._watchdog.cancel(timer)
        raise AssertionError("unreachable")

    # -- handlers ---------------------------------------------------------------------------
    def _guarded(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        de, ser = handler.request_deserializer, handler.response_serializer
        if handler.request_streaming:
            inner_stream = handler.stream_stream or handler.stream_unary
            if handler.response_streaming:
                def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext
                                  ) -> Iterator[Any]:
                    with self._slots(method, context):
                        yield from inner_stream(requests, context)
                return grpc.stream_stream_rpc_method_handler(stream_stream, de, ser)

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                with self._slots(method, context):
                    return inner_stream(requests, context)
            return grpc.stream_unary_rpc_method_handler(stream_unary, de, ser)

        inner = handler.unary_stream or handler.unary_unary
        if handler.response_streaming:
            def unary_stream(requests: Iterator[Any], context: grpc.ServicerContext
                             ) -> Iterator[Any]:
                with self._slots(method, context):
                    request = self._first(requests, context, method)
                    yield from inner(request, context)
            return grpc.stream_stream_rpc_method_handler(unary_stream, de, ser)

        def unary_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            with self._slots(method, context):
                request = self._first(requests, context, method)
                return inner(request, context)
        return grpc.stream_unary_rpc_method_handler(unary_unary, de, ser)
