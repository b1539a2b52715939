"""The database tables (SQLAlchemy 2.x). Alembic migrations create them; see migrations/."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from alive_service.store.interface import utcnow
from alive_service.vocabulary import ReportStatus, VideoStatus


class Base(DeclarativeBase):
    pass


class Video(Base):
    __tablename__ = "videos"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), default=VideoStatus.READY)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    caption: Mapped[str] = mapped_column(Text, default="")
    model_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    model_sha256: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON)
    photo_sha256: Mapped[str] = mapped_column(String(64), index=True)
    photo_mime: Mapped[str] = mapped_column(String(32))
    photo_blob: Mapped[str] = mapped_column(String(64))
    pdq_hex: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    fps: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer)
    faces: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    video_sha256: Mapped[str] = mapped_column(String(64))
    video_blob: Mapped[str] = mapped_column(String(64))
    manifest_id: Mapped[str] = mapped_column(String(128), index=True)
    c2pa_state: Mapped[str] = mapped_column(String(16))
    signer: Mapped[str] = mapped_column(Text, default="")
    # Rows written before the decisions were linked once (no migration needed) hold a copy of
    # them; newer rows hold {}: the decisions are safety_decisions rows with this video_id.
    safety: Mapped[dict] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The moderator working this video's reports; a claim lapses (moderation.CLAIM_TTL).
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The owner deleted it (migration 0004); erased_at: its media are gone (see DeleteVideo).
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_videos_idempotency"),
        Index("ix_videos_owner_created", "owner", "created_at", "id"),
    )


class Decision(Base):
    __tablename__ = "safety_decisions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str] = mapped_column(String(128), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(8))
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_version: Mapped[str] = mapped_column(String(32))
    checks: Mapped[list] = mapped_column(JSON)
    photo_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq_hex: Mapped[str | None] = mapped_column(String(64), nullable=True)
    video_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Report(Base):
    __tablename__ = "reports"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id"), index=True)
    reporter: Mapped[str] = mapped_column(String(128), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    details: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=ReportStatus.OPEN)
    resolution: Mapped[str] = mapped_column(String(16), default="")
    # Unused since 0002: a claim covers the whole video (videos.claimed_by).
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (
        UniqueConstraint("video_id", "reporter", name="uq_reports_video_reporter"),
        Index("ix_reports_status", "status"),
    )


class ReportSubmission(Base):
    """One row per ReportVideo call: the per-user rate limit counts these."""

    __tablename__ = "report_submissions"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    reporter: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (Index("ix_report_submissions_reporter_time", "reporter", "created_at"),)


class Event(Base):
    """Append-only moderation history: rows are inserted, never updated or deleted
    (database triggers from migration 0002 refuse UPDATE and DELETE)."""

    __tablename__ = "moderation_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    video_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    report_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Tamper evidence (migration 0003): each event's hash covers its content and the previous
    # event's hash; the acting moderator's key signs the hash (see store/chain.py).
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    signature: Mapped[str | None] = mapped_column(String(128), nullable=True)


class BankEntry(Base):
    __tablename__ = "hash_bank_entries"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    bank: Mapped[str] = mapped_column(String(64), index=True)
    pdq_hex: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    video_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    added_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    removed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Strike(Base):
    __tablename__ = "strikes"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user: Mapped[str] = mapped_column(String(128), index=True)
    video_id: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Admission(Base):
    """One admitted request (Animate, VerifyVideo) of one user: the per-user rate limit
    counts these rows, so every replica enforces the same limit."""

    __tablename__ = "admissions"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (Index("ix_admissions_user_kind_time", "user", "kind", "created_at"),)


class AdmissionLock(Base):
    """One row per (user, kind), updated by every admission: in PostgreSQL the row lock
    serialises one user's concurrent admissions, so count-then-insert is atomic."""

    __tablename__ = "admission_locks"
    user: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    admitted: Mapped[int] = mapped_column(BigInteger, default=0)
class VideoShare(Base):
    """A named user the owner shared a video with (see docs/SECURITY.md, "Who sees what")."""

    __tablename__ = "video_shares"
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id"), primary_key=True)
    user: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IdLookup(Base):
    """One video-id lookup by a user (GetVideo, ReportVideo, ShareVideo): the per-user lookup
    limits count these; rows older than the longest window are pruned as the user looks up."""

    __tablename__ = "id_lookups"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user: Mapped[str] = mapped_column(String(128))
    missed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (Index("ix_id_lookups_user_time", "user", "created_at"),
                      Index("ix_id_lookups_created_at", "created_at"))


class RevokedToken(Base):
    """Bearer tokens refused before they expire, by their ``jti``."""

    __tablename__ = "revoked_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str | None] = mapped_column(String(128), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ModeratorKey(Base):
    """An enrolled moderator's Ed25519 public key, with the admin's signature over the
    enrolment (a row written without the admin key does not verify)."""

    __tablename__ = "moderator_keys"
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    public_key: Mapped[str] = mapped_column(String(64))
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    enrolment_sig: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
