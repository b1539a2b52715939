"""Request validation: turn wire messages into typed values, or say precisely what is wrong."""

from __future__ import annotations

import math
import re
import unicodedata

import grpc

from alive_service.motion import MotionOptions
from alive_service.rpc import RpcError, pb

VIDEO_ID_RE = re.compile(r"^[0-9a-f]{16}$")
IDEMPOTENCY_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_DETAILS_CHARS = 1000

REASONS = {
    pb.REPORT_REASON_NUDITY: "nudity",
    pb.REPORT_REASON_MINOR_SAFETY: "minor_safety",
    pb.REPORT_REASON_VIOLENCE: "violence",
    pb.REPORT_REASON_HATE: "hate",
    pb.REPORT_REASON_HARASSMENT: "harassment",
    pb.REPORT_REASON_SELF_HARM: "self_harm",
    pb.REPORT_REASON_IMPERSONATION: "impersonation",
    pb.REPORT_REASON_COPYRIGHT: "copyright",
    pb.REPORT_REASON_SPAM: "spam",
    pb.REPORT_REASON_OTHER: "other",
}


def invalid(reason: str, message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, reason, message)


def video_id(value: str) -> str:
    if not VIDEO_ID_RE.match(value):
        raise invalid("BAD_VIDEO_ID", "video_id must be 16 lowercase hex characters")
    return value


def _text(value: str, field: str, limit: int, multiline: bool) -> str:
    value = unicodedata.normalize("NFC", value)
    if len(value) > limit:
        raise invalid(f"{field.upper()}_TOO_LONG",
                      f"{field} is {len(value)} characters; the limit is {limit}")
    allowed = {"\n", "\t"} if multiline else set()
    for char in value:
        category = unicodedata.category(char)
        # Cc: control characters; Cs: lone surrogates; Co/Cn: private and unassigned.
        if (category in ("Cc", "Cs", "Co", "Cn")) and char not in allowed:
            raise invalid(f"BAD_{field.upper()}",
                          f"{field} contains a control or unassigned character (U+{ord(char):04X})")
    return value.strip()


def caption(value: str, limit: int) -> str:
    return _text(value, "caption", limit, multiline=False)


def details(value: str) -> str:
    return _text(value, "details", MAX_DETAILS_CHARS, multiline=True)


def idempotency_key(value: str) -> str:
    if value and not IDEMPOTENCY_RE.match(value):
        raise invalid("BAD_IDEMPOTENCY_KEY",
                      "idempotency_key must be 1-128 printable ASCII characters without spaces")
    return value


def _range(name: str, value: float, low: float, high: float) -> float:
    if not math.isfinite(value) or not low <= value <= high:
        raise invalid("BAD_OPTIONS", f"options.{name} must be between {low:g} and {high:g}")
    return value


def options(message: pb.AnimateOptions) -> MotionOptions:
    defaults = MotionOptions()
    duration = message.duration_s or defaults.duration_s
    fps = message.fps or defaults.fps
    long_side = message.long_side or defaults.long_side
    strengths = {}
    for name in ("sky", "water", "face", "camera"):
        if message.HasField(name):
            strengths[name] = _range(name, getattr(message, name), 0.0, 2.0)
    return MotionOptions(
        duration_s=_range("duration_s", duration, 1.0, 6.0),
        fps=int(_range("fps", fps, 12, 30)),
        long_side=int(_range("long_side", long_side, 256, 1920)),
        seed=int(message.seed),
        **strengths,
    )


def report_reason(value: int) -> str:
    if value not in REASONS:
        raise invalid("BAD_REASON", "reason must be one of: " + ", ".join(
            pb.ReportReason.Name(k) for k in REASONS))
    return REASONS[value]
