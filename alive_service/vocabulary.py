"""The service's domain words, said once: the service, the CLIs and the store derive from here.

Every value is the string the database stores and the CLIs print (``StrEnum``: a member
equals its string, so rows written before this module read back unchanged). The proto enums
are the wire's spelling of the same words; each enum here names its proto value by *name*
(``REPORT_REASON_NUDITY``), so this module needs no generated code and light clients such as
``alive-mod`` import it without gRPC. ``tests/test_vocabulary.py`` holds the two in step.

Two things were both called "stage" and are now two names:

- ``SafetyStage``: which safety check a decision is about (caption, image, output);
- ``ProgressStage``: where a request is on its way (checking ... done), sent to the client.
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from typing import NewType


class VideoStatus(StrEnum):
    """A video row's status. Deletion by the owner is not a status (``deleted_at``)."""

    READY = "ready"
    TAKEN_DOWN = "taken_down"


class ReportStatus(StrEnum):
    """A report's place in review (the claim is held on the video, not the report)."""

    OPEN = "open"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


UNRESOLVED = (ReportStatus.OPEN, ReportStatus.ESCALATED)


class Resolution(StrEnum):
    """How a resolved report ended."""

    DISMISS = "dismiss"
    TAKEDOWN = "takedown"


class ReportReason(StrEnum):
    """Why a video was reported, by a user or by the safety policy (``review_reason``).

    ``severity`` says how bad the harm would be if true; it ranks the review queue before
    anything else (one report of a child at risk outranks many spam reports).
    """

    MINOR_SAFETY = "minor_safety"
    SELF_HARM = "self_harm"
    NUDITY = "nudity"
    VIOLENCE = "violence"
    IMPERSONATION = "impersonation"
    HATE = "hate"
    HARASSMENT = "harassment"
    COPYRIGHT = "copyright"
    OTHER = "other"
    SPAM = "spam"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def proto_name(self) -> str:
        """The ``alive.v1.ReportReason`` value's name."""
        return "REPORT_REASON_" + self.name


_SEVERITY = {
    ReportReason.MINOR_SAFETY: 10,
    ReportReason.SELF_HARM: 9,
    ReportReason.NUDITY: 7,
    ReportReason.VIOLENCE: 7,
    ReportReason.IMPERSONATION: 6,
    ReportReason.HATE: 6,
    ReportReason.HARASSMENT: 5,
    ReportReason.COPYRIGHT: 3,
    ReportReason.OTHER: 2,
    ReportReason.SPAM: 1,
}

# Safety-policy categories (safety/policy.toml) as the report reasons moderators sort by: a
# request allowed but flagged for review enters the queue like a user's report.
_POLICY_CATEGORY_REASONS = {
    "sexual": ReportReason.NUDITY, "suggestive": ReportReason.NUDITY,
    "sexual_minors": ReportReason.MINOR_SAFETY, "violence_gore": ReportReason.VIOLENCE,
    "threats": ReportReason.VIOLENCE, "hate": ReportReason.HATE,
    "harassment": ReportReason.HARASSMENT, "self_harm": ReportReason.SELF_HARM,
    "deceptive_impersonation": ReportReason.IMPERSONATION,
    "illegal_goods": ReportReason.OTHER,
}


def review_reason(categories: list[str]) -> ReportReason:
    """The report reason for policy categories flagged for review (the first one known)."""
    for category in categories:
        if category in _POLICY_CATEGORY_REASONS:
            return _POLICY_CATEGORY_REASONS[category]
    return ReportReason.OTHER


class EventAction(StrEnum):
    """What a moderation event records (the append-only log, store/chain.py)."""

    CLAIM = "claim"
    RELEASE = "release"
    NOTE = "note"
    DISMISS = "dismiss"
    ESCALATE = "escalate"
    TAKEDOWN = "takedown"
    RESTORE = "restore"
    BANK_ADD = "bank_add"
    BANK_REMOVE = "bank_remove"
    BANK_IMPORT = "bank_import"
    MODERATOR_ENROL = "moderator_enrol"
    MODERATOR_REVOKE = "moderator_revoke"
    # The service's own, on a user's behalf (signed by no moderator):
    OWNER_DELETE = "owner_delete"
    HOLD_RELEASED = "hold_released"


class Verdict(StrEnum):
    """A safety decision's outcome (the same words as ``safety.decision.Verdict``)."""

    ALLOW = "allow"
    BLOCK = "block"


class SafetyStage(StrEnum):
    """Which safety check a decision records: the caption, the photo, or the frames made."""

    CAPTION = "caption"
    IMAGE = "image"
    OUTPUT = "output"


class ProgressStage(StrEnum):
    """Where one Animate request is, in order; the client sees ``alive.v1.Stage``."""

    CHECKING = "checking"
    GENERATING = "generating"
    ENCODING = "encoding"
    SIGNING = "signing"
    STORING = "storing"
    DONE = "done"

    @property
    def proto_name(self) -> str:
        """The ``alive.v1.Stage`` value's name."""
        return "STAGE_" + self.name


# -- video ids ----------------------------------------------------------------------------
VideoId = NewType("VideoId", str)
VIDEO_ID_FORMAT = "16 lowercase hex characters"
_VIDEO_ID_RE = re.compile(r"[0-9a-f]{16}")


def is_video_id(value: str) -> bool:
    """The one check of the video-id format: the API, the watermark and C2PA signing use it."""
    return _VIDEO_ID_RE.fullmatch(value) is not None


def video_id(value: str) -> VideoId:
    """``value`` as a VideoId; ValueError if it is not one."""
    if not is_video_id(value):
        raise ValueError(f"video id must be {VIDEO_ID_FORMAT}, got {value[:40]!r}")
    return VideoId(value)


def new_video_id() -> VideoId:
    """A fresh random id (64 bits: the watermark carries exactly that many)."""
    return VideoId(secrets.token_hex(8))
