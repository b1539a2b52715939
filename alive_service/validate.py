"""Request validation: turn wire messages into typed values, or say precisely what is wrong."""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import replace

import grpc

from alive_service.motion import MotionOptions, RegionHint
from alive_service.motion.hints import MAX_HINTS, MAX_POINTS
from alive_service.motion.interface import REQUEST_BOUNDS
from alive_service.rpc import RpcError, pb
from alive_service.vocabulary import VIDEO_ID_FORMAT, ReportReason, VideoId, is_video_id

log = logging.getLogger("alive.validate")

# Format characters (Cf) are invisible. These few are part of ordinary writing and stay:
# ZWNJ (Persian, Hindi), ZWJ (emoji sequences, Indic conjuncts), the direction *marks*
# LRM/RLM/ALM (they reorder nothing), the soft hyphen, and the Arabic/Syriac/Kaithi marks
# that prefix numbers. Three more carry no meaning and are stripped (and logged): zero-width
# space, word joiner, byte-order mark. Every other one is refused, above all the bidi
# embeddings, overrides and isolates (U+202A-202E, U+2066-2069: text that displays in
# another order than it reads) and tag characters (U+E0000 block: invisible text), except
# in the one place tags belong, a flag emoji's tag sequence (England, Scotland, Wales).
_KEPT_FORMAT = frozenset({0x00AD, 0x061C, 0x200C, 0x200D, 0x200E, 0x200F, 0x06DD, 0x070F,
                          0x0890, 0x0891, 0x08E2, 0x110BD, 0x110CD, *range(0x0600, 0x0606)})
_STRIPPED_FORMAT = frozenset({0x200B, 0x2060, 0xFEFF})
_FLAG = 0x1F3F4
_TAG_CANCEL = 0xE007F


def _is_tag_spec(char: str) -> bool:
    return 0xE0030 <= ord(char) <= 0xE0039 or 0xE0061 <= ord(char) <= 0xE007A
IDEMPOTENCY_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_DETAILS_CHARS = 1000

# The wire's report reasons, each the vocabulary's word of the same name.
REASONS = dict(sorted((pb.ReportReason.Value(r.proto_name), r) for r in ReportReason))


def invalid(reason: str, message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, reason, message)


def video_id(value: str) -> VideoId:
    if not is_video_id(value):
        raise invalid("BAD_VIDEO_ID", f"video_id must be {VIDEO_ID_FORMAT}")
    return VideoId(value)


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
    return _format_characters(value, field).strip()


def _format_characters(value: str, field: str) -> str:
    kept: list[str] = []
    stripped: list[int] = []
    i = 0
    while i < len(value):
        char, point = value[i], ord(value[i])
        if point == _FLAG:
            end = i + 1
            while end < len(value) and _is_tag_spec(value[end]):
                end += 1
            if end > i + 1 and end < len(value) and ord(value[end]) == _TAG_CANCEL:
                kept.append(value[i : end + 1])  # a subdivision flag: the tags are its name
                i = end + 1
                continue
        if unicodedata.category(char) == "Cf" and point not in _KEPT_FORMAT:
            if point not in _STRIPPED_FORMAT:
                kind = ("a bidi control" if 0x202A <= point <= 0x202E or 0x2066 <= point <= 0x2069
                        else "a tag character" if 0xE0000 <= point <= 0xE007F
                        else "an invisible format character")
                raise invalid(f"BAD_{field.upper()}",
                              f"{field} contains {kind} (U+{point:04X}), which could hide or "
                              "reorder what readers see")
            stripped.append(point)
        else:
            kept.append(char)
        i += 1
    if stripped:
        log.info("stripped invisible characters", extra={
            "field": field, "chars": " ".join(f"U+{p:04X}" for p in stripped)})
    return "".join(kept)


def caption(value: str, limit: int) -> str:
    return _text(value, "caption", limit, multiline=False)


def details(value: str) -> str:
    return _text(value, "details", MAX_DETAILS_CHARS, multiline=True)


MAX_USERS_PER_CALL = 100


def users(values: list[str] | tuple[str, ...], field: str) -> list[str]:
    """User names as tokens carry them (auth.USER_RE), for sharing."""
    from alive_service.auth import USER_RE

    if len(values) > MAX_USERS_PER_CALL:
        raise invalid("TOO_MANY_USERS", f"{field}: at most {MAX_USERS_PER_CALL} users a call")
    for value in values:
        if not USER_RE.match(value):
            raise invalid("BAD_USER", f"{field}: not a user name: {value[:140]!r}")
    return list(dict.fromkeys(values))


def idempotency_key(value: str) -> str:
    if value and not IDEMPOTENCY_RE.match(value):
        raise invalid("BAD_IDEMPOTENCY_KEY",
                      "idempotency_key must be 1-128 printable ASCII characters without spaces")
    return value


def _range(name: str, value: float) -> float:
    bound = REQUEST_BOUNDS[name]
    if value not in bound:
        raise invalid("BAD_OPTIONS",
                      f"options.{name} must be between {bound.low:g} and {bound.high:g}")
    return value


def options(message: pb.AnimateOptions) -> MotionOptions:
    defaults = MotionOptions()
    duration = message.duration_s or defaults.duration_s
    fps = message.fps or defaults.fps
    long_side = message.long_side or defaults.long_side
    strengths = {}
    for name in ("sky", "water", "face", "camera"):
        if message.HasField(name):
            strengths[name] = _range(name, getattr(message, name))
    return MotionOptions(
        duration_s=_range("duration_s", duration),
        fps=int(_range("fps", fps)),
        long_side=int(_range("long_side", long_side)),
        seed=int(message.seed),
        **strengths,
    )


def report_reason(value: int) -> ReportReason:
    if value not in REASONS:
        raise invalid("BAD_REASON", "reason must be one of: " + ", ".join(
            pb.ReportReason.Name(k) for k in REASONS))
    return REASONS[value]


_HINT_KINDS = {
    pb.HINT_KIND_ANIMATE_SKY: "sky",
    pb.HINT_KIND_ANIMATE_WATER: "water",
    pb.HINT_KIND_KEEP_STILL: "still",
}


def _bad_hint(index: int, message: str) -> RpcError:
    return invalid("BAD_HINT", f"hints[{index}]: {message}")


def hints(messages: Sequence[pb.RegionHint]) -> tuple[RegionHint, ...]:
    """The user's region hints, checked: kinds, counts, finite coordinates within 0..1."""
    if len(messages) > MAX_HINTS:
        raise invalid("TOO_MANY_HINTS", f"{len(messages)} hints; the limit is {MAX_HINTS}")
    out = []
    for i, message in enumerate(messages):
        if message.kind not in _HINT_KINDS:
            raise _bad_hint(i, "kind must be one of: " + ", ".join(
                pb.HintKind.Name(k) for k in _HINT_KINDS))
        if not 1 <= len(message.points) <= MAX_POINTS:
            raise _bad_hint(i, f"needs 1 to {MAX_POINTS} points, got {len(message.points)}")
        points = []
        for j, p in enumerate(message.points):
            if not (math.isfinite(p.x) and math.isfinite(p.y) and 0 <= p.x <= 1 and 0 <= p.y <= 1):
                raise _bad_hint(i, f"points[{j}] must have x and y between 0 and 1")
            points.append((float(p.x), float(p.y)))
        direction = None
        if message.HasField("drift_direction_deg"):
            if _HINT_KINDS[message.kind] != "sky":
                raise _bad_hint(i, "drift_direction_deg applies to HINT_KIND_ANIMATE_SKY only")
            direction = float(message.drift_direction_deg)
            if not (math.isfinite(direction) and 0 <= direction <= 360):
                raise _bad_hint(i, "drift_direction_deg must be between 0 and 360")
        out.append(RegionHint(_HINT_KINDS[message.kind], tuple(points), bool(message.polyline),
                              direction))
    return tuple(out)


def options_with_hints(message: pb.AnimateOptions, hint_messages: Sequence[pb.RegionHint]
                       ) -> MotionOptions:
    """``options`` plus the request's hints (they are part of the idempotency fingerprint)."""
    return replace(options(message), hints=hints(hint_messages))

