"""The moderator's actions, as plain functions over the store (``alive-mod`` is their CLI).

Each action is one transaction (``ModerationStore.moderation``): it locks the video, checks the
claim and conflicts of interest (nobody decides a video they own or reported), changes what
it changes and appends one event signed by the moderator's key, or does nothing at all.
The events form a hash chain that ``audit`` verifies. A takedown
is the whole loop at once: the video stops being served, the source photo's PDQ hash enters
the "takedowns" bank (the safety stage then refuses the same or a near-identical photo),
the owner gets a strike, and every unresolved report on the video is resolved.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from alive_service.moderators import (
    ADMIN_ACTOR,
    Moderator,
    NotAModerator,
    check_name,
    check_public,
    enrolment_message,
    key_id_of,
    public_hex,
    verify,
)
from alive_service.store import (
    BankEntry,
    Conflict,
    DecisionRecord,
    EventRecord,
    ModerationStore,
    NotFound,
    ReportRecord,
    Store,
    utcnow,
)
from alive_service.store.chain import (
    GENESIS,
    LEGACY_KEY,
    SERVICE_ACTIONS,
    SERVICE_KEY,
    event_hash,
)
from alive_service.store.interface import (
    ModerationTx,
    ModeratorKeyRecord,
    StrikeRecord,
    VideoRecord,
)
from alive_service.vocabulary import (
    UNRESOLVED,
    EventAction,
    ReportReason,
    ReportStatus,
    Resolution,
    VideoStatus,
)

TAKEDOWN_BANK = "takedowns"
ACTIONS = (EventAction.DISMISS, EventAction.TAKEDOWN, EventAction.ESCALATE)
# A claim lapses so that a moderator who walks away does not hold a video for ever.
CLAIM_TTL = timedelta(minutes=30)

# The queue's filters: the report statuses, and "claimed" (a moderator holds the video's
# reports), "unresolved" (open, claimed or escalated) and "all".
STATUSES = (ReportStatus.OPEN, "claimed", ReportStatus.ESCALATED, ReportStatus.RESOLVED,
            "unresolved", "all")
REASONS = tuple(ReportReason)
_PDQ_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_SPLIT_RE = re.compile(r"[,\s]+")


def _severity(reason: str) -> int:
    """A reason's severity; a reason this version does not know counts as "other"."""
    try:
        return ReportReason(reason).severity
    except ValueError:
        return ReportReason.OTHER.severity


def priority(reasons: Iterable[str], reporters: int, age: timedelta, escalated: bool) -> float:
    """Worst severity first (x100), then reporters (x10, capped at 50), then age in hours
    (capped at 3 days); escalations jump ahead of everything not escalated."""
    worst = max((_severity(r) for r in reasons), default=0)
    hours = min(max(age.total_seconds(), 0.0) / 3600.0, 72.0)
    return (10_000.0 if escalated else 0.0) + worst * 100.0 + min(reporters, 50) * 10.0 + hours


@dataclass(frozen=True)
class QueueItem:
    video_id: str
    owner: str
    video_status: str
    status: str  # "open" | "claimed" | "escalated" | "resolved"
    priority: float
    reporters: int
    reasons: dict[str, int]  # reason -> number of reports
    report_ids: list[str]
    oldest_report: datetime
    newest_report: datetime
    claimed_by: str | None = None
    claim_expires: datetime | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        for key in ("oldest_report", "newest_report", "claim_expires"):
            out[key] = out[key].isoformat() if out[key] else None
        out["priority"] = round(self.priority, 2)
        return out


def _active_claim(video: VideoRecord, now: datetime) -> str | None:
    if video.claimed_by and video.claimed_at and now - video.claimed_at < CLAIM_TTL:
        return video.claimed_by
    return None


def queue(
    store: Store, reason: str | None = None, status: str = "unresolved",
    now: datetime | None = None, limit: int | None = None,
) -> list[QueueItem]:
    """Reports grouped by video, highest priority first.

    ``status``: "unresolved" (default: open, claimed or escalated), "open" (nobody holds
    it), "claimed", "escalated", "resolved" or "all". ``reason``: only videos with at least
    one report of that reason.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    if reason is not None and reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}")
    now = now or utcnow()
    wanted = None if status in (ReportStatus.RESOLVED, "all") else UNRESOLVED
    by_video: dict[str, list[ReportRecord]] = {}
    for report in store.list_reports(statuses=wanted):
        by_video.setdefault(report.video_id, []).append(report)
    videos = store.videos_by_id(by_video)
    items = []
    for video_id, reports in by_video.items():
        video = videos[video_id]
        unresolved = [r for r in reports if r.status != ReportStatus.RESOLVED]
        claimed_by = _active_claim(video, now) if unresolved else None
        if not unresolved:
            item_status = ReportStatus.RESOLVED
        elif claimed_by:
            item_status = "claimed"
        elif any(r.status == ReportStatus.ESCALATED for r in unresolved):
            item_status = ReportStatus.ESCALATED
        else:
            item_status = ReportStatus.OPEN
        if status not in ("unresolved", "all") and item_status != status:
            continue
        if reason is not None and not any(r.reason == reason for r in reports):
            continue
        counted = unresolved or reports
        reasons: dict[str, int] = {}
        for r in counted:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        oldest = min(r.created_at for r in counted)
        items.append(QueueItem(
            video_id=video_id, owner=video.owner, video_status=video.status,
            status=item_status,
            priority=priority(reasons, len(counted), now - oldest,
                              any(r.status == ReportStatus.ESCALATED for r in unresolved)),
            reporters=len({r.reporter for r in counted}), reasons=reasons,
            report_ids=[r.id for r in counted], oldest_report=oldest,
            newest_report=max(r.updated_at for r in counted), claimed_by=claimed_by,
            claim_expires=(video.claimed_at + CLAIM_TTL) if claimed_by and video.claimed_at
            else None,
        ))
    items.sort(key=lambda i: (-i.priority, i.oldest_report))
    return items[:limit] if limit else items


def video_id_for(store: Store, ident: str) -> str:
    """A video id, or the id of a report on it (``r_...``)."""
    if store.get_video(ident) is not None:
        return ident
    report = store.get_report(ident)
    if report is not None:
        return report.video_id
    raise NotFound(f"no video or report {ident}")


def _need_note(action: str, note: str) -> str:
    note = note.strip()
    if not note:
        raise ValueError(f"{action} needs a note saying why (--note)")
    return note


def _no_conflict(tx: ModerationTx, moderator: Moderator, video: VideoRecord) -> None:
    """Nobody decides a video they own or reported (moderator names are user names)."""
    if video.owner == moderator.name:
        raise Conflict(f"{moderator.name} owns video {video.id}: another moderator must "
                       "decide it")
    if moderator.name in tx.reporters(video.id):
        raise Conflict(f"{moderator.name} reported video {video.id}: another moderator must "
                       "decide it")


def _check_claim(video: VideoRecord, moderator: str, now: datetime, force: bool) -> None:
    holder = _active_claim(video, now)
    if holder and holder != moderator and not force:
        assert video.claimed_at is not None
        raise Conflict(
            f"video {video.id} is claimed by {holder} until "
            f"{(video.claimed_at + CLAIM_TTL):%Y-%m-%d %H:%M} UTC (use --force to take over)"
        )


def claim(store: ModerationStore, moderator: Moderator, video_id: str, force: bool = False,
          now: datetime | None = None) -> EventRecord:
    """Take a video's reports to work on; Conflict while another moderator holds them."""
    name = moderator.name
    with store.moderation(now, signer=moderator) as tx:
        video = tx.lock_video(video_id)
        _no_conflict(tx, moderator, video)
        _check_claim(video, name, tx.now, force)
        if not tx.unresolved_reports(video_id):
            raise Conflict(f"video {video_id} has no unresolved reports to claim")
        previous = _active_claim(video, tx.now)
        tx.set_claim(video_id, name)
        return tx.add_event(
            name, EventAction.CLAIM, video_id=video_id,
            data={"expires_at": (tx.now + CLAIM_TTL).isoformat(),
                  "taken_from": previous if previous != name else None},
        )


def release(store: ModerationStore, moderator: Moderator, video_id: str, force: bool = False,
            now: datetime | None = None) -> EventRecord:
    """Give a claim back without deciding."""
    with store.moderation(now, signer=moderator) as tx:
        video = tx.lock_video(video_id)
        if _active_claim(video, tx.now) is None:
            raise Conflict(f"video {video_id} is not claimed")
        _check_claim(video, moderator.name, tx.now, force)
        tx.set_claim(video_id, None)
        return tx.add_event(moderator.name, EventAction.RELEASE, video_id=video_id)


def resolve(
    store: Store, moderator: Moderator, video_id: str, action: str, note: str = "",
    force: bool = False, now: datetime | None = None,
) -> EventRecord:
    """Decide a video: every unresolved report on it is resolved (or escalated) at once.

    takedown: stop serving it, bank its photo's hash, strike its owner (one transaction).
    dismiss: the reports were unfounded. escalate: send them up, to the top of the queue.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
    if action != EventAction.DISMISS:
        note = _need_note(action, note)
    by = moderator.name
    with store.moderation(now, signer=moderator) as tx:
        video = tx.lock_video(video_id)
        _no_conflict(tx, moderator, video)
        _check_claim(video, by, tx.now, force)
        reports = tx.unresolved_reports(video_id)
        ids = [r.id for r in reports]
        data: dict = {"reports": ids}
        if action == EventAction.TAKEDOWN:
            if video.status == VideoStatus.TAKEN_DOWN:
                raise Conflict(f"video {video_id} is already taken down")
            tx.set_video_status(video_id, VideoStatus.TAKEN_DOWN, note)
            tx.set_reports(ids, ReportStatus.RESOLVED, Resolution.TAKEDOWN, by)
            tx.set_claim(video_id, None)
            entry = tx.add_bank_entry(
                TAKEDOWN_BANK, video.pdq_hex, source=f"takedown of video {video_id}",
                note=note, video_id=video_id, added_by=by,
            )
            data.update(bank=TAKEDOWN_BANK, bank_entry=entry.id, pdq_hex=video.pdq_hex,
                        owner=video.owner)
            event = tx.add_event(by, EventAction.TAKEDOWN, note, video_id=video_id, data=data)
            # The strike points back at the event that caused it (events never change).
            tx.add_strike(video.owner, video_id, event.id)
            return event
        if not reports:
            raise Conflict(f"video {video_id} has no unresolved reports to {action}")
        if action == EventAction.DISMISS:
            tx.set_reports(ids, ReportStatus.RESOLVED, Resolution.DISMISS, by)
        else:
            if all(r.status == ReportStatus.ESCALATED for r in reports):
                raise Conflict(f"video {video_id} is already escalated")
            tx.set_reports(ids, ReportStatus.ESCALATED)
        tx.set_claim(video_id, None)
        event = tx.add_event(by, EventAction(action), note, video_id=video_id, data=data)
    if action == EventAction.DISMISS:
        # An owner who deleted the video while it was under review: now it can be erased.
        store.release_hold(video_id, by)
    return event


def restore(store: Store, moderator: Moderator, video_id: str, note: str,
            now: datetime | None = None) -> EventRecord:
    """Reverse a takedown: serve the video again, withdraw its bank entry and the strike."""
    note = _need_note("restore", note)
    with store.moderation(now, signer=moderator) as tx:
        video = tx.lock_video(video_id)
        _no_conflict(tx, moderator, video)
        if video.status != VideoStatus.TAKEN_DOWN:
            raise Conflict(f"video {video_id} is not taken down (status {video.status})")
        tx.set_video_status(video_id, VideoStatus.READY, "")
        entries = tx.deactivate_bank_entries(moderator.name, video_id=video_id)
        strikes = tx.withdraw_strikes(video_id)
        event = tx.add_event(
            moderator.name, EventAction.RESTORE, note, video_id=video_id,
            data={"bank_entries": [e.id for e in entries], "strikes": [s.id for s in strikes]},
        )
    store.release_hold(video_id, moderator.name)  # deleted by its owner: no evidence to keep now
    return event


def add_note(store: ModerationStore, moderator: Moderator, video_id: str, note: str) -> EventRecord:
    note = _need_note("note", note)
    with store.moderation(signer=moderator) as tx:
        tx.lock_video(video_id)
        return tx.add_event(moderator.name, EventAction.NOTE, note, video_id=video_id)


# -- hash banks ----------------------------------------------------------------------------
def normalise_pdq(value: str) -> str:
    value = value.strip()
    if not _PDQ_RE.match(value):
        raise ValueError(f"not a PDQ hash (64 hex characters): {value[:80]!r}")
    return value.lower()


def bank_add(store: ModerationStore, moderator: Moderator, bank: str, pdq_hex: str, note: str = "",
             source: str = "manual") -> BankEntry:
    pdq_hex = normalise_pdq(pdq_hex)
    with store.moderation(signer=moderator) as tx:
        if pdq_hex in tx.active_bank_hashes(bank):
            raise Conflict(f"bank {bank} already holds {pdq_hex}")
        entry = tx.add_bank_entry(bank, pdq_hex, source, note, added_by=moderator.name)
        tx.add_event(moderator.name, EventAction.BANK_ADD, note,
                     data={"bank": bank, "entry_id": entry.id, "pdq_hex": pdq_hex})
        return entry


def bank_remove(store: ModerationStore, moderator: Moderator, entry_id: str, note: str = ""
                ) -> BankEntry:
    """Withdraw one entry (marked inactive, never deleted)."""
    with store.moderation(signer=moderator) as tx:
        entry = tx.bank_entry(entry_id)
        if entry is None:
            raise NotFound(f"no bank entry {entry_id}")
        if not entry.active:
            raise Conflict(f"bank entry {entry_id} was already removed")
        if entry.video_id:  # a takedown's entry: the same conflicts as the takedown
            _no_conflict(tx, moderator, tx.lock_video(entry.video_id))
        (removed,) = tx.deactivate_bank_entries(moderator.name, entry_ids=[entry_id])
        tx.add_event(moderator.name, EventAction.BANK_REMOVE, note, video_id=entry.video_id,
                     data={"bank": entry.bank, "entry_id": entry_id, "pdq_hex": entry.pdq_hex})
        return removed


def parse_hash_list(text: str) -> list[tuple[str, str]]:
    """Lines of ``<pdq hex>[,| ]<optional note>``; blank lines and ``#`` comments skipped.
    Any bad line refuses the whole file, naming every bad line."""
    out, bad = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = _SPLIT_RE.split(line, maxsplit=1)
        try:
            out.append((normalise_pdq(parts[0]), parts[1].strip() if len(parts) > 1 else ""))
        except ValueError:
            bad.append(number)
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        raise ValueError(f"{len(bad)} line(s) are not PDQ hashes: line {shown}")
    return out


@dataclass(frozen=True)
class ImportResult:
    bank: str
    added: int
    duplicates: int
    entry_ids: list[str] = field(default_factory=list)


def bank_import(store: ModerationStore, moderator: Moderator, bank: str, text: str, source: str
                ) -> ImportResult:
    """Add every hash of a list to ``bank`` in one transaction; hashes already there are
    counted, not added twice."""
    rows = parse_hash_list(text)
    with store.moderation(signer=moderator) as tx:
        present = tx.active_bank_hashes(bank)
        ids, duplicates = [], 0
        for pdq_hex, note in rows:
            if pdq_hex in present:
                duplicates += 1
                continue
            present.add(pdq_hex)
            ids.append(tx.add_bank_entry(bank, pdq_hex, source, note,
                                         added_by=moderator.name).id)
        tx.add_event(moderator.name, EventAction.BANK_IMPORT, data={
            "bank": bank, "source": source, "added": len(ids), "duplicates": duplicates})
        return ImportResult(bank, len(ids), duplicates, ids)


# -- reading -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """Everything a moderator looks at before deciding."""

    video: VideoRecord
    reports: list[ReportRecord]
    events: list[EventRecord]  # oldest first
    bank_entries: list[BankEntry]
    owner_strikes: list[StrikeRecord]  # active ones
    claimed_by: str | None
    decisions: list[DecisionRecord] = field(default_factory=list)  # the safety checks passed


def case(store: Store, ident: str, now: datetime | None = None) -> Case:
    video_id = video_id_for(store, ident)
    video = store.get_video(video_id)
    assert video is not None
    return Case(
        video=video, reports=list(store.reports_for(video_id)),
        events=list(store.events_for(video_id)),
        bank_entries=store.bank_entries_for_video(video_id),
        owner_strikes=store.strikes_for(video.owner),
        claimed_by=_active_claim(video, now or utcnow()),
        decisions=store.decisions_for_video(video_id),
    )


@dataclass(frozen=True)
class Stats:
    open_reports: int  # unresolved: open or escalated
    open_videos: int
    escalated_reports: int
    resolved_reports: int
    median_resolution_s: float | None  # report created -> resolved
    by_reason: dict[str, dict[str, int]]  # reason -> {"open": n, "resolved": n}
    by_resolution: dict[str, int]
    videos_taken_down: int

    def to_json(self) -> dict:
        return asdict(self)


def stats(store: Store) -> Stats:
    reports = store.list_reports()
    unresolved = [r for r in reports if r.status != ReportStatus.RESOLVED]
    resolved = [r for r in reports if r.status == ReportStatus.RESOLVED]
    by_reason: dict[str, dict[str, int]] = {}
    for r in reports:
        counts = by_reason.setdefault(r.reason, {"open": 0, "resolved": 0})
        counts["resolved" if r.status == ReportStatus.RESOLVED else "open"] += 1
    by_resolution: dict[str, int] = {}
    for r in resolved:
        by_resolution[r.resolution] = by_resolution.get(r.resolution, 0) + 1
    durations = [
        (r.resolved_at - r.created_at).total_seconds() for r in resolved if r.resolved_at
    ]
    return Stats(
        open_reports=len(unresolved), open_videos=len({r.video_id for r in unresolved}),
        escalated_reports=sum(r.status == ReportStatus.ESCALATED for r in unresolved),
        resolved_reports=len(resolved),
        median_resolution_s=statistics.median(durations) if durations else None,
        by_reason=dict(sorted(by_reason.items(), key=lambda kv: -_severity(kv[0]))),
        by_resolution=by_resolution,
        videos_taken_down=store.count_videos(status=VideoStatus.TAKEN_DOWN),
    )


# -- moderators and the audit --------------------------------------------------------------
def enrol(store: ModerationStore, admin: Moderator, name: str, public: str) -> ModeratorKeyRecord:
    """The admin enrols a moderator's public key under her (user) name."""
    name, public = check_name(name), check_public(public)
    if store.moderator_key(key_id_of(public)) is not None:
        raise Conflict("this key is already enrolled (a revoked key stays revoked: make a new "
                       "one)")
    with store.moderation(signer=admin) as tx:
        signature = admin.sign_message(enrolment_message(name, public, tx.now))
        record = tx.add_moderator_key(key_id_of(public), name, public, signature)
        tx.add_event(ADMIN_ACTOR, EventAction.MODERATOR_ENROL, data={
            "name": name, "public_key": public, "key_id": record.key_id})
        return record


def revoke(store: ModerationStore, admin: Moderator, name: str) -> list[str]:
    """Every key of the moderator ``name`` is refused from now on."""
    with store.moderation(signer=admin) as tx:
        key_ids = tx.revoke_moderator_keys(name)
        if not key_ids:
            raise NotFound(f"{name} has no enrolled key")
        tx.add_event(ADMIN_ACTOR, EventAction.MODERATOR_REVOKE,
                     data={"name": name, "key_ids": key_ids})
        return key_ids


def authenticate(store: ModerationStore, name: str, key: object, admin_public: str | list[str]
                 ) -> Moderator:
    """The moderator ``name`` holding ``key`` (an Ed25519 private key), or NotAModerator.
    ``admin_public``: the admin key, or the current one and those before it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not isinstance(key, Ed25519PrivateKey):
        raise NotAModerator("a moderator key is an Ed25519 private key")
    record = store.moderator_key(key_id_of(public_hex(key)))
    if record is None or record.name != name:
        raise NotAModerator(f"this key is not enrolled for moderator {name!r}")
    admins = [admin_public] if isinstance(admin_public, str) else admin_public
    message = enrolment_message(record.name, record.public_key, record.enrolled_at)
    if not any(verify(admin, message, record.enrolment_sig) for admin in admins):
        raise NotAModerator(f"the enrolment of {name!r} is not signed by the admin key")
    if record.revoked_at is not None:
        raise NotAModerator(f"the key of {name!r} was revoked on {record.revoked_at:%Y-%m-%d}")
    return Moderator(name, key)


@dataclass(frozen=True)
class Audit:
    events: int
    head: str  # the last event's hash: keep a copy elsewhere to notice the tail being cut
    problems: list[str]
    legacy: int = 0  # events from before signing (migration 0003), chained but unsigned

    @property
    def ok(self) -> bool:
        return not self.problems


def audit(store: ModerationStore, admin_public: str | list[str]) -> Audit:
    """Walk the event log: every hash, every link, every signature against the keys the
    log itself enrolled (admin-signed enrol/revoke events). Names the row of each problem."""
    admins = [admin_public] if isinstance(admin_public, str) else admin_public
    keys: dict[str, tuple[str, str]] = {key_id_of(a): (ADMIN_ACTOR, a) for a in admins}
    problems: list[str] = []
    prev_hash, prev_id, legacy, signed_seen = GENESIS, 0, 0, False
    events = store.event_log()
    for e in events:
        where = f"event {e.id} ({e.action} by {e.actor})"
        if e.id > prev_id + 1:
            gone = f"{prev_id + 1}" + (f"..{e.id - 1}" if e.id - 1 > prev_id + 1 else "")
            problems.append(f"event(s) {gone} missing: deleted")
        if e.hash is None:
            problems.append(f"{where}: has no hash: written around the log")
        elif event_hash(id=e.id, prev_hash=e.prev_hash or "", video_id=e.video_id,
                        report_id=e.report_id, actor=e.actor, action=e.action, note=e.note,
                        data=e.data, created_at=e.created_at, key_id=e.key_id) != e.hash:
            problems.append(f"{where}: content does not match its hash: rewritten")
        if e.prev_hash != prev_hash:
            problems.append(f"{where}: does not follow event {prev_id}: a row before it was "
                            "deleted, or this one was inserted")
        valid = False
        if e.key_id == LEGACY_KEY:
            legacy += 1
            if signed_seen:
                problems.append(f"{where}: claims to predate signing but follows signed "
                                "events: inserted")
        elif e.key_id == SERVICE_KEY:
            if e.action not in SERVICE_ACTIONS:
                problems.append(f"{where}: a moderator's action without a moderator's "
                                "signature: inserted or forged")
        else:
            signed_seen = True
            holder = keys.get(e.key_id or "")
            if holder is None:
                problems.append(f"{where}: not signed by an enrolled moderator key: inserted "
                                "or forged")
            elif holder[0] != e.actor:
                problems.append(f"{where}: signed by {holder[0]}'s key: forged")
            elif not (e.hash and e.signature
                      and verify(holder[1], bytes.fromhex(e.hash), e.signature)):
                problems.append(f"{where}: signature does not verify: rewritten or forged")
            else:
                valid = True
        if valid and e.actor == ADMIN_ACTOR and e.action == EventAction.MODERATOR_ENROL:
            keys[str(e.data.get("key_id"))] = (str(e.data.get("name")),
                                               str(e.data.get("public_key")))
        if valid and e.actor == ADMIN_ACTOR and e.action == EventAction.MODERATOR_REVOKE:
            for key_id in e.data.get("key_ids", []):
                keys.pop(str(key_id), None)
        prev_hash, prev_id = e.hash or "", e.id
    known = {e.id for e in events}
    for event_id in sorted(set(store.strike_event_ids()) - known):
        problems.append(f"event {event_id} missing: a strike points at it: deleted")
    return Audit(len(events), prev_hash, problems, legacy)
