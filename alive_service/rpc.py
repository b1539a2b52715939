"""The generated gRPC code (``make`` generates it from proto/) and rich error statuses."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from alive_service.proto_gen.alive.v1 import alive_pb2 as pb
from alive_service.proto_gen.alive.v1 import alive_pb2_grpc as pb_grpc

DOMAIN = "alive.v1"

__all__ = ["DOMAIN", "RpcError", "pb", "pb_grpc", "rich_status"]


class RpcError(Exception):
    """An error the handler turns into a gRPC status with ErrorInfo (and RetryInfo)."""

    def __init__(
        self, code: grpc.StatusCode, reason: str, message: str,
        metadata: dict[str, str] | None = None, retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}
        self.retry_after_s = retry_after_s


def rich_status(error: RpcError) -> grpc.Status:
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN,
                                          metadata=error.metadata))
    details.append(info)
    if error.retry_after_s is not None:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_s * 1000))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return rpc_status.to_status(
        status_pb2.Status(code=error.code.value[0], message=error.message, details=details)
    )


def error_info(error: grpc.RpcError) -> tuple[str, dict[str, str], float | None]:
    """Client side: (reason, metadata, retry delay) from a failed call's rich status."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, metadata, retry = "", {}, None
    if status is None:
        return reason, metadata, retry
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry_info = error_details_pb2.RetryInfo()
            detail.Unpack(retry_info)
            retry = retry_info.retry_delay.ToMilliseconds() / 1000
    return reason, metadata, retry
