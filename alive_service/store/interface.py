"""What the service keeps, and the interface every storage backend implements.

Life cycle of the data::

    Animate ──► Decision (allow|block, per check, policy version)   always recorded
       │ allow
       ▼
    Video (status "ready") ──► blob: MP4 + source photo (content addressed)
       │                      idempotency (owner, key) ─► the same Video on retry
       ▼
    Report (one per video and reporter; a second one updates the first)
       │
       ▼
    claim (video.claimed_by, expires) ─► one moderator works the video's reports at a time
       │
       ▼
    ModerationEvent (append-only: claim, note, dismiss, escalate, takedown, restore, bank_*)
       │ dismiss: reports "resolved"     escalate: reports "escalated" (top of the queue)
       │ takedown (one transaction with everything below; reports "resolved")
       ├──► Video status "taken_down" (GetVideo: NOT_FOUND, reason TAKEN_DOWN)
       ├──► BankEntry in bank "takedowns" (the photo's PDQ hash; the same photo is refused)
       └──► Strike for the owner
            restore: a new event; the video is served again, the bank entry and
            strike are withdrawn (marked, never deleted)

    Deletion by the owner (DeleteVideo; the video is NOT_FOUND from then on, like a missing id)::

    Video ──► delete_video(id, owner) ──► deleted_at set; idempotency key and caption dropped;
       │                                   ModerationEvent "owner_delete" (data: hold, erased)
       ├─ no hold ──► erased now: MP4 + photo blobs unlinked (unless another live row
       │              shares the bytes), erased_at set; the row keeps ids, owner, hashes
       │              (photo sha256, PDQ), model, manifest id, timestamps, and its safety
       │              decisions stay linked to it
       └─ hold: an unresolved report ("review") or status "taken_down" ("takedown")
              media kept as evidence, hidden from everyone but moderators
              dismiss / restore ──► release_hold ──► erased as above,
              ModerationEvent "hold_released"; a takedown keeps it for the record

Safety decisions, written once each::

    Animate (request id) ──► DecisionRecord per safety stage (caption, image, output) as
       │                     each check ends, allow or block: a refusal is on record too
       ▼ all allowed
    add_video(video, mp4, photo, request_id) ──► in the same transaction the request's
                                                 decisions get the video's id (their link)

Who sees what (docs/SECURITY.md): the owner, and the users the owner shared it with::

    share_video(add, remove) ──► VideoShare rows (at most max_shares per video)
    get_visible_video(id, user, limits) ──► IdLookup row (missed or not): per-user limits
                                            on lookups a minute and misses an hour; rows
                                            older than an hour are pruned as users look up

Admissions and tokens::

    admit(user, kind, limit) ──► Admission row, counted per (user, kind) over a window;
                                 AdmissionLock serialises one user's admissions
    revoke_token(jti) ──► RevokedToken row; token_revoked(jti) on every call

Moderator keys and the event chain (store/chain.py, alive_service/moderators.py)::

    moderation(signer=admin): add_moderator_key ──► ModeratorKey (admin-signed enrolment)
                              revoke_moderator_keys ──► revoked_at set (never deleted)
    every ModerationEvent ──► id, prev_hash, hash (and the signer's signature): a chain
                              ``audit`` walks from event_log()

Hash banks: the store keeps the entries (``HashBankSource``); matching a photo against
them is the match index's work (``store/index.py``), outside any storage implementation.

The roles below are what callers type against; ``Store`` joins them. ``SqlStore``
(SQLAlchemy: SQLite by default, PostgreSQL in production) implements it; the media bytes
live in a ``BlobStore`` beside it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from alive_service.vocabulary import (
    ReportReason,
    ReportStatus,
    SafetyStage,
    Verdict,
    VideoStatus,
)


def utcnow() -> datetime:
    """The store's clock: every timestamp it writes is this (UTC, aware)."""
    return datetime.now(UTC)


# A user's reports an hour (the service's own review flags are not counted).
REPORTS_PER_HOUR = 30


class StoreUnavailable(RuntimeError):
    """The database or blob store cannot be reached; the caller may retry."""


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    """The request contradicts stored state (e.g. an idempotency key reused differently)."""


class TakenDown(NotFound):
    """The video was taken down after review: it cannot be viewed or reported."""


class RateLimited(RuntimeError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple:  # crosses from a worker process to the server's
        return RateLimited, (str(self), self.retry_after_s)


@dataclass(frozen=True)
class LookupLimits:
    """Per-user limits on video-id lookups (GetVideo, ReportVideo, ShareVideo): all lookups
    a minute, and misses (unknown, or not visible to the user) an hour."""

    per_minute: int = 120
    misses_per_hour: int = 30


@dataclass(frozen=True)
class DecisionRecord:
    request_id: str
    user: str
    stage: SafetyStage
    verdict: Verdict
    category: str | None
    policy_version: str
    checks: list[dict]
    photo_sha256: str | None = None
    pdq_hex: str | None = None
    video_id: str | None = None
    id: str = ""
    created_at: datetime | None = None


@dataclass(frozen=True)
class VideoRecord:
    id: str
    owner: str
    status: VideoStatus
    caption: str
    model_id: str
    model_version: str
    model_sha256: str
    params: dict
    photo_sha256: str
    photo_mime: str
    pdq_hex: str
    width: int
    height: int
    fps: int
    frames: int
    size_bytes: int
    video_sha256: str
    manifest_id: str
    c2pa_state: str
    signer: str
    # The safety decisions that allowed it are rows of their own, linked by video id
    # (DecisionStore.decisions_for_video), not a copy here.
    faces: int = 0
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    created_at: datetime | None = None
    status_reason: str = ""
    claimed_by: str | None = None  # the moderator working its reports (see ModerationTx)
    claimed_at: datetime | None = None
    deleted_at: datetime | None = None  # the owner deleted it: hidden from every client
    erased_at: datetime | None = None  # its MP4 and photo are gone

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


@dataclass(frozen=True)
class Deletion:
    """What delete_video did: ``hold`` is "" (erased at once), "review" (an unresolved
    report) or "takedown" (the media stay as evidence, hidden)."""

    video_id: str
    deleted_at: datetime
    hold: str
    event_id: int


@dataclass(frozen=True)
class ReportRecord:
    id: str
    video_id: str
    reporter: str
    reason: ReportReason | str  # a reason this version does not know reads back as it is
    details: str
    status: ReportStatus  # a claim is held on the video, not the report
    created_at: datetime
    updated_at: datetime
    resolution: str = ""  # "dismiss" | "takedown" once resolved
    resolved_at: datetime | None = None
    resolved_by: str | None = None


@dataclass(frozen=True)
class EventRecord:
    id: int
    video_id: str | None
    actor: str
    action: str
    note: str
    created_at: datetime
    report_id: str | None = None
    data: dict = field(default_factory=dict)
    # The hash chain (store/chain.py) and who signed the event (None: written unsigned).
    prev_hash: str | None = None
    hash: str | None = None
    key_id: str | None = None
    signature: str | None = None


class EventSigner(Protocol):
    """Whoever appends a moderation event signs its hash (moderators.Moderator)."""

    @property
    def key_id(self) -> str: ...
    def sign(self, digest_hex: str) -> str: ...


@dataclass(frozen=True)
class ModeratorKeyRecord:
    """An enrolled moderator key (see alive_service/moderators.py for the life cycle)."""

    key_id: str
    name: str
    public_key: str
    enrolled_at: datetime
    enrolment_sig: str
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class BankEntry:
    id: str
    bank: str
    pdq_hex: str
    source: str
    created_at: datetime
    active: bool = True
    note: str = ""
    video_id: str | None = None  # set when a takedown put the hash here
    added_by: str | None = None
    removed_at: datetime | None = None
    removed_by: str | None = None


@dataclass(frozen=True)
class StrikeRecord:
    id: int
    user: str
    video_id: str
    event_id: int
    active: bool
    created_at: datetime
    withdrawn_at: datetime | None = None


@dataclass(frozen=True)
class BankHash:
    """One active bank entry as the match index reads it."""

    entry_id: str
    bank: str
    pdq_hex: str


# What identifies the active set of bank entries: it changes whenever the set does.
BankVersion = tuple[int, int]


# -- the roles -----------------------------------------------------------------------------
class VideoStore(Protocol):
    """Videos: written once by Animate, then read; never rewritten by the service (status
    changes are moderation's, deletion is ``DeletionStore``'s)."""

    def add_video(self, video: VideoRecord, mp4: bytes, photo: bytes,
                  request_id: str | None = None) -> VideoRecord:
        """Store the blobs, then the row (a row never points at bytes that are not there);
        the decisions recorded for ``request_id`` get the video's id in the same transaction.
        With an idempotency key the owner already used, the earlier video is returned (and
        nothing is linked), or Conflict if the request differs."""

    def find_idempotent(self, owner: str, key: str) -> VideoRecord | None:
        """The owner's live video made with this idempotency key (deletion drops the key)."""

    def get_video(self, video_id: str) -> VideoRecord | None:
        """Any video by id, whoever may see it: callers that serve users ask
        ``SharingStore.get_visible_video`` instead."""

    def videos_by_id(self, video_ids: Collection[str]) -> dict[str, VideoRecord]: ...

    def find_by_manifest(self, manifest_id: str) -> VideoRecord | None:
        """The video a C2PA manifest id was signed for (VerifyVideo)."""

    def read_mp4(self, video: VideoRecord) -> bytes:
        """The signed MP4; NotFound once erased, StoreUnavailable if the blob is missing."""

    def read_photo(self, video_id: str) -> bytes:
        """The source photo (moderators' evidence); NotFound once erased."""

    def list_videos(self, owner: str, limit: int,
                    before: tuple[datetime, str] | None = None) -> list[VideoRecord]:
        """The owner's videos that are neither deleted nor taken down, newest first
        (created_at, then id, descending), strictly after the ``before`` key."""

    def count_videos(self, status: VideoStatus | None = None) -> int: ...


class SharingStore(Protocol):
    """Who sees what (docs/SECURITY.md): the owner, and the users the owner shared it with."""

    def visible_to(self, video: VideoRecord, user: str) -> bool:
        """The one visibility rule. A taken-down video is visible to its owner only; a
        deleted one to nobody."""

    def get_visible_video(
        self, video_id: str, user: str, limits: LookupLimits | None = None
    ) -> VideoRecord | None:
        """The video when ``user`` may see it, else None, exactly as for an unknown id.
        With ``limits``, the lookup is counted (a miss too) and RateLimited past them."""

    def share_video(
        self, video_id: str, owner: str, add: Sequence[str], remove: Sequence[str],
        max_shares: int,
    ) -> list[str]:
        """Change who a video is shared with; the users it is shared with afterwards.
        NotFound for another owner's video, TakenDown for one taken down, Conflict past
        ``max_shares`` (and then nothing changed)."""


class DeletionStore(Protocol):
    """Deletion by the owner and the holds on it (see the life cycle above)."""

    def delete_video(self, video_id: str, owner: str) -> Deletion:
        """Delete the owner's video. NotFound for an unknown id, another owner's video, or
        one already deleted."""

    def release_hold(self, video_id: str, actor: str) -> bool:
        """Erase a deleted video's media once nothing holds them; True if it erased."""

    def referenced_blobs(self) -> set[str]:
        """Every blob key a row points to (the garbage collector keeps these)."""


class DecisionStore(Protocol):
    """Safety decisions: one row per check of a request, written once, never changed but
    for the link to the video the request made (``VideoStore.add_video``)."""

    def record_decision(self, decision: DecisionRecord) -> str:
        """Write the decision as it is made (allow or block); its id."""

    def decisions_for_video(self, video_id: str) -> list[DecisionRecord]:
        """The decisions that allowed a video, in the order they were made."""


class ReportStore(Protocol):
    """Reports: filed by users (and by the safety policy's review flags), resolved by
    moderation (``ModerationTx.set_reports``)."""

    def upsert_report(
        self, video_id: str, reporter: str, reason: str, details: str,
        limit_per_hour: int | None = REPORTS_PER_HOUR,
    ) -> tuple[ReportRecord, bool]:
        """(report, updated): a reporter's second report on a video updates the first
        (and reopens it if it was resolved). NotFound for an unknown video, TakenDown for
        one taken down, RateLimited beyond the reporter's hourly allowance (None: the
        service's own safety flags, which no user limit applies to)."""

    def reports_for(self, video_id: str) -> Sequence[ReportRecord]: ...
    def get_report(self, report_id: str) -> ReportRecord | None: ...

    def list_reports(
        self, statuses: Collection[str] | None = None, video_id: str | None = None
    ) -> list[ReportRecord]:
        """Reports, oldest first, optionally of some statuses or one video (the queue)."""


class HashBankSource(Protocol):
    """The hash banks' entries. Entries are added and deactivated, never deleted nor
    reactivated; matching is the match index's (``store/index.py``), built from here."""

    def active_hashes(self, known: BankVersion | None = None
                      ) -> tuple[BankVersion, list[BankHash] | None]:
        """The active entries and their version, read together; None instead of the
        entries when ``known`` is still the version (nothing to rebuild)."""

    def add_bank_entry(self, bank: str, pdq_hex: str, source: str, note: str = ""
                       ) -> BankEntry:
        """An entry outside moderation (imports at set-up); moderators use ModerationTx."""

    def bank_entry(self, entry_id: str) -> BankEntry | None: ...

    def bank_entries(self, bank: str | None = None, active_only: bool = True
                     ) -> list[BankEntry]: ...

    def bank_entries_for_video(self, video_id: str) -> list[BankEntry]:
        """The entries a takedown of the video added (active or withdrawn)."""


class ModerationStore(Protocol):
    """Moderation: actions as transactions, the append-only event chain, strikes and the
    moderators' keys."""

    def moderation(self, now: datetime | None = None, signer: EventSigner | None = None
                   ) -> AbstractContextManager[ModerationTx]:
        """One moderator action as a unit of work (``ModerationTx``); ``signer`` signs the
        events it appends, ``now`` (default: the clock) is its one timestamp."""

    def add_event(
        self, actor: str, action: str, note: str = "", video_id: str | None = None,
        report_id: str | None = None, data: dict | None = None,
    ) -> EventRecord:
        """Append an unsigned event (the service's own actions) to the chain."""

    def events_for(self, video_id: str) -> Sequence[EventRecord]:
        """A video's history, oldest first."""

    def events(self, video_id: str | None = None, actor: str | None = None,
               limit: int | None = None) -> list[EventRecord]:
        """The moderation history, newest first."""

    def event_log(self) -> list[EventRecord]:
        """Every event, oldest first (what ``audit`` walks)."""

    def strikes_for(self, user: str, active_only: bool = True) -> list[StrikeRecord]: ...

    def strike_event_ids(self) -> list[int]:
        """The event every strike points at (the audit checks none is missing)."""

    def moderator_key(self, key_id: str) -> ModeratorKeyRecord | None: ...
    def moderator_keys(self) -> list[ModeratorKeyRecord]: ...


class AdmissionStore(Protocol):
    """Per-user limits every replica shares, and bearer tokens withdrawn early (auth.py)."""

    def admit(self, user: str, kind: str, limit: int, window_s: float = 60.0) -> None:
        """Count one admission, atomically; RateLimited past ``limit`` per window."""

    def token_revoked(self, jti: str) -> bool: ...

    def revoke_token(self, jti: str, user: str | None = None, reason: str = "",
                     expires_at: datetime | None = None) -> bool:
        """True when newly revoked."""


class Store(VideoStore, SharingStore, DeletionStore, DecisionStore, ReportStore,
            HashBankSource, ModerationStore, AdmissionStore, Protocol):
    """Everything the service keeps: the roles above, joined."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    def close(self) -> None: ...


class ModerationTx(Protocol):
    """One moderator action as a unit of work: everything in it commits together or not at all.

    Life cycle::

        store.moderation() ──► BEGIN (SQLite: IMMEDIATE, so writers queue instead of failing)
          lock_video(id) ──► the row is locked (PostgreSQL: FOR UPDATE) until the end
          read: unresolved_reports, bank_entry, active_bank_hashes, reporters
          write: set_video_status, set_claim, set_reports, add_bank_entry,
                 deactivate_bank_entries, add_strike, withdraw_strikes, add_event,
                 add_moderator_key, revoke_moderator_keys
                 (add_event: the next link of the hash chain, signed by the tx's signer)
        leave the block ──► COMMIT; an exception ──► ROLLBACK (nothing happened)

    ``now`` is the one timestamp the action writes everywhere.
    """

    now: datetime
    signer: EventSigner | None

    def lock_video(self, video_id: str) -> VideoRecord:
        """The video, locked for this transaction; NotFound if there is none."""

    def set_video_status(self, video_id: str, status: VideoStatus, reason: str = "") -> None:
        """Takedown and restore: the only way a video's status changes."""

    def set_claim(self, video_id: str, moderator: str | None) -> None: ...
    def unresolved_reports(self, video_id: str) -> list[ReportRecord]: ...

    def set_reports(
        self, report_ids: Sequence[str], status: ReportStatus, resolution: str = "",
        moderator: str | None = None,
    ) -> None: ...

    def add_event(
        self, actor: str, action: str, note: str = "", video_id: str | None = None,
        report_id: str | None = None, data: dict | None = None,
    ) -> EventRecord: ...

    def add_bank_entry(
        self, bank: str, pdq_hex: str, source: str, note: str = "",
        video_id: str | None = None, added_by: str | None = None,
    ) -> BankEntry: ...

    def bank_entry(self, entry_id: str) -> BankEntry | None: ...
    def active_bank_hashes(self, bank: str) -> set[str]: ...

    def deactivate_bank_entries(
        self, moderator: str, entry_ids: Sequence[str] = (), video_id: str | None = None
    ) -> list[BankEntry]:
        """Mark entries inactive (by id, or every active one a takedown of video_id added)."""

    def add_strike(self, user: str, video_id: str, event_id: int) -> StrikeRecord: ...
    def withdraw_strikes(self, video_id: str) -> list[StrikeRecord]: ...
    def reporters(self, video_id: str) -> set[str]:
        """Everyone who ever reported the video (conflicts of interest)."""

    def add_moderator_key(self, key_id: str, name: str, public_key: str, enrolment_sig: str
                          ) -> ModeratorKeyRecord:
        """Enrol a key under ``key_id`` (moderators.key_id_of: the store does not derive
        it, so it needs no cryptography)."""
    def revoke_moderator_keys(self, name: str) -> list[str]: ...
