"""The storage implementation: SQLAlchemy (SQLite or PostgreSQL) plus a blob directory."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, fields
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Select,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alive_service.store import schema
from alive_service.store.blobs import BlobStore
from alive_service.store.chain import GENESIS, SERVICE_KEY, event_hash
from alive_service.store.interface import (
    REPORTS_PER_HOUR,
    BankEntry,
    BankHash,
    BankVersion,
    Conflict,
    DecisionRecord,
    Deletion,
    EventRecord,
    EventSigner,
    LookupLimits,
    ModeratorKeyRecord,
    NotFound,
    RateLimited,
    ReportRecord,
    StoreUnavailable,
    StrikeRecord,
    TakenDown,
    VideoRecord,
    utcnow,
)
from alive_service.vocabulary import EventAction, ReportStatus, VideoStatus

T = TypeVar("T")
R = TypeVar("R")


def new_id(prefix: str = "") -> str:
    return prefix + secrets.token_hex(8)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything we write is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _private_sqlite_files(url: str) -> None:
    """The database and its WAL hold every user's data: 0600. SQLite gives the -wal and -shm
    files the database file's mode, so creating that one 0600 first covers all three."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _private_sqlite_files(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # SQLAlchemy emits BEGIN itself (below), not the sqlite3 module.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            # WAL lets readers run beside the one writer; NORMAL is durable in WAL mode
            # against process crashes, which is what "killed mid-request" needs.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # A deferred transaction that reads, then writes after another writer committed,
            # fails at once with SQLITE_BUSY (WAL snapshot) whatever the busy timeout.
            # Writers take the lock up front instead, and so wait their turn.
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8, pool_timeout=10)


# -- rows <-> records: one mapping, driven by the record's fields ---------------------------
# Each record type reads from the table of the same meaning; a record field is the column of
# the same name. Adding a column to both is all a new field needs.
_TABLES: dict[type, type[schema.Base]] = {
    VideoRecord: schema.Video, DecisionRecord: schema.Decision, ReportRecord: schema.Report,
    EventRecord: schema.Event, BankEntry: schema.BankEntry, StrikeRecord: schema.Strike,
    ModeratorKeyRecord: schema.ModeratorKey,
}
_RECORDS = {table: record for record, table in _TABLES.items()}


@cache
def _fields(record: type) -> tuple[tuple[str, Callable[[], Any] | None], ...]:
    """(name, default factory) of each field: a NULL column reads back as the factory's value
    (EventRecord.data: {}), other NULLs as None."""
    return tuple((f.name, None if f.default_factory is MISSING else f.default_factory)
                 for f in fields(record))


def _value(value: Any) -> Any:
    # SQLite returns naive datetimes (everything we write is UTC); JSON columns give the
    # session's own objects, which a frozen record must not share.
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _record(row: schema.Base) -> Any:
    """The record a row reads as (the type follows from the table)."""
    record = _RECORDS[type(row)]
    values = {}
    for name, factory in _fields(record):
        value = getattr(row, name)
        values[name] = factory() if value is None and factory is not None else _value(value)
    return record(**values)


def _records(rows: Iterator[Any] | Sequence[Any]) -> list[Any]:
    return [_record(r) for r in rows]


def _row(record: Any, **columns: Any) -> Any:
    """A new row of the record's table: its fields, then ``columns`` (what the store
    decides itself: ids, blob keys, timestamps) over them. None fields are left out, so
    the table's defaults apply."""
    values = {name: getattr(record, name) for name, _ in _fields(type(record))}
    values.update(columns)
    return _TABLES[type(record)](**{k: v for k, v in values.items() if v is not None})


# Any constant: PostgreSQL transactions that append to the event log take it in turn.
_EVENT_CHAIN_LOCK = 0x616C697665


def _append_event(
    session: Session, signer: EventSigner | None, now: datetime, actor: str, action: str,
    note: str, video_id: str | None, report_id: str | None, data: dict | None,
    key_id: str | None = None,
) -> schema.Event:
    """The next link of the moderation log's hash chain (store/chain.py). Appends are
    serialised (SQLite: the write transaction; PostgreSQL: an advisory lock) and take the
    next id themselves, so that the id is part of what the hash covers."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _EVENT_CHAIN_LOCK})
    last = session.execute(
        select(schema.Event.id, schema.Event.hash).order_by(schema.Event.id.desc()).limit(1)
    ).first()
    event_id = last.id + 1 if last else 1
    prev = (last.hash or GENESIS) if last else GENESIS
    if signer is not None:
        key_id = signer.key_id
    data = data or {}
    digest = event_hash(id=event_id, prev_hash=prev, video_id=video_id, report_id=report_id,
                        actor=actor, action=action, note=note, data=data, created_at=now,
                        key_id=key_id)
    row = schema.Event(
        id=event_id, video_id=video_id, report_id=report_id, actor=actor, action=action,
        note=note, data=data, created_at=now, prev_hash=prev, hash=digest, key_id=key_id,
        signature=signer.sign(digest) if signer is not None else None,
    )
    session.add(row)
    session.flush()
    return row


def _may_see(owner: str, status: str, deleted: bool, user: str,
             shared: Callable[[], bool]) -> bool:
    """The one visibility rule (docs/SECURITY.md, "Who sees what"): a video deleted by its
    owner is gone for everyone; the owner sees the rest; others see a ready video shared
    with them by name (a taken-down video is its owner's business only)."""
    if deleted:
        return False
    if owner == user:
        return True
    return status == VideoStatus.READY and shared()


class SqlStore:
    """``Store`` on SQLAlchemy. Every public method is one transaction."""

    def __init__(self, url: str, blob_dir: Path, create_blobs: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(
            self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False
        )
        self.blobs = BlobStore(blob_dir, create=create_blobs)

    # -- plumbing ---------------------------------------------------------------------------
    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        try:
            with (self._writes if write else self._sessions).begin() as session:
                yield session
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, IntegrityError):
                raise
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise StoreUnavailable(f"the database is unavailable: {exc.orig}") from exc
            raise

    def _read(self, fn: Callable[[Session], T]) -> T:
        with self._session() as session:
            return fn(session)

    def _one(self, stmt: Select) -> Any:
        """The record of the statement's one row, or None."""
        def q(s: Session) -> Any:
            row = s.scalar(stmt)
            return None if row is None else _record(row)

        return self._read(q)

    def _all(self, stmt: Select) -> list[Any]:
        return self._read(lambda s: _records(s.scalars(stmt)))

    def ping(self) -> None:
        self._read(lambda s: s.execute(text("SELECT 1")).scalar())

    def close(self) -> None:
        self.engine.dispose()

    # -- videos -----------------------------------------------------------------------------
    def add_video(self, video: VideoRecord, mp4: bytes, photo: bytes,
                  request_id: str | None = None) -> VideoRecord:
        # Blobs first: a row never points at bytes that are not there.
        try:
            video_blob = self.blobs.put(mp4)
            photo_blob = self.blobs.put(photo)
        except OSError as exc:
            raise StoreUnavailable(f"the blob store is unavailable: {exc}") from exc
        row = _row(video, photo_blob=photo_blob, video_blob=video_blob, size_bytes=len(mp4),
                   video_sha256=video_blob, created_at=video.created_at or utcnow(), safety={})
        try:
            with self._session(write=True) as session:
                session.add(row)
                session.flush()
                stored = _record(row)
                if request_id:
                    # The request's decisions now point at the video they allowed.
                    session.execute(update(schema.Decision)
                                    .where(schema.Decision.request_id == request_id)
                                    .values(video_id=video.id))
                return stored
        except IntegrityError:
            if video.idempotency_key:
                earlier = self.find_idempotent(video.owner, video.idempotency_key)
                if earlier is not None:
                    if earlier.request_fingerprint != video.request_fingerprint:
                        raise Conflict(
                            "the idempotency key was already used for a different request"
                        ) from None
                    return earlier
            raise

    def find_idempotent(self, owner: str, key: str) -> VideoRecord | None:
        return self._one(select(schema.Video).where(schema.Video.owner == owner,
                                                    schema.Video.idempotency_key == key))

    def get_video(self, video_id: str) -> VideoRecord | None:
        return self._one(select(schema.Video).where(schema.Video.id == video_id))

    def find_by_manifest(self, manifest_id: str) -> VideoRecord | None:
        return self._one(select(schema.Video).where(schema.Video.manifest_id == manifest_id))

    # -- who sees what ----------------------------------------------------------------------
    def visible_to(self, video: VideoRecord, user: str) -> bool:
        return _may_see(
            video.owner, video.status, video.deleted_at is not None, user,
            lambda: self._read(lambda s: s.get(schema.VideoShare, (video.id, user)) is not None))

    def get_visible_video(
        self, video_id: str, user: str, limits: LookupLimits | None = None
    ) -> VideoRecord | None:
        if limits is None:
            video = self.get_video(video_id)
            return video if video is not None and self.visible_to(video, user) else None
        now = utcnow()
        with self._session(write=True) as session:
            if session.get_bind().dialect.name == "postgresql":
                # One lookup at a time per user, so the limits are exact across replicas.
                session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:u, 11))"),
                                {"u": user})
                # A lookup row lost in a crash costs nothing: do not wait for the WAL flush.
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            lookups = schema.IdLookup
            expired = lookups.created_at <= now - timedelta(hours=1)
            session.execute(lookups.__table__.delete().where(lookups.user == user, expired))
            # A few of everyone else's expired rows too, so users who never come back do not
            # leave theirs for ever: the table holds about an hour of lookups.
            session.execute(lookups.__table__.delete().where(lookups.id.in_(
                select(lookups.id).where(expired).limit(100).scalar_subquery())))
            minute = now - timedelta(minutes=1)
            recent, oldest = session.execute(
                select(func.count(), func.min(lookups.created_at))
                .where(lookups.user == user, lookups.created_at > minute)
            ).one()
            if (recent or 0) >= limits.per_minute:
                wait = (_aware(oldest) + timedelta(minutes=1) - now).total_seconds()
                raise RateLimited(f"at most {limits.per_minute} video lookups a minute",
                                  max(wait, 1.0))
            misses, oldest_miss = session.execute(
                select(func.count(), func.min(lookups.created_at))
                .where(lookups.user == user, lookups.missed.is_(True))
            ).one()
            if (misses or 0) >= limits.misses_per_hour:
                wait = (_aware(oldest_miss) + timedelta(hours=1) - now).total_seconds()
                raise RateLimited(
                    f"too many lookups of videos that do not exist or are not shared with you "
                    f"(at most {limits.misses_per_hour} an hour)", max(wait, 1.0))
            row = session.get(schema.Video, video_id)
            visible = row is not None and _may_see(
                row.owner, row.status, row.deleted_at is not None, user,
                lambda: session.get(schema.VideoShare, (video_id, user)) is not None)
            session.add(lookups(user=user, missed=not visible, created_at=now))
            return _record(row) if visible and row is not None else None

    def share_video(
        self, video_id: str, owner: str, add: Sequence[str], remove: Sequence[str],
        max_shares: int,
    ) -> list[str]:
        now = utcnow()
        with self._session(write=True) as session:
            row = session.scalar(
                select(schema.Video).where(schema.Video.id == video_id).with_for_update())
            if row is None or row.owner != owner:
                raise NotFound(f"no video {video_id}")
            if row.status != VideoStatus.READY:
                raise TakenDown(f"video {video_id} was taken down after review and can no "
                                "longer be shared")
            shares = schema.VideoShare
            if remove:
                session.execute(shares.__table__.delete().where(
                    shares.video_id == video_id, shares.user.in_(list(remove))))
            present = set(session.scalars(select(shares.user).where(
                shares.video_id == video_id)))
            for user in dict.fromkeys(add):
                if user != owner and user not in present:
                    session.add(shares(video_id=video_id, user=user, created_at=now))
                    present.add(user)
            if len(present) > max_shares:
                raise Conflict(f"a video may be shared with at most {max_shares} users")
            return sorted(present)

    def read_mp4(self, video: VideoRecord) -> bytes:
        def q(s: Session) -> str:
            row = s.get(schema.Video, video.id)
            if row is None:
                raise NotFound(video.id)
            return row.video_blob

        key = self._read(q)
        if not key:
            raise NotFound(f"video {video.id}'s media were erased at its owner's request")
        try:
            return self.blobs.get(key)
        except FileNotFoundError as exc:
            raise StoreUnavailable(f"the video's bytes are missing: {key}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"the blob store is unavailable: {exc}") from exc

    def read_photo(self, video_id: str) -> bytes:
        key = self._read(lambda s: s.get(schema.Video, video_id).photo_blob)  # type: ignore[union-attr]
        if not key:
            raise NotFound(f"video {video_id}'s photo was erased at its owner's request")
        return self.blobs.get(key)

    # -- owners list and delete their videos -----------------------------------------------
    def list_videos(self, owner: str, limit: int,
                    before: tuple[datetime, str] | None = None) -> list[VideoRecord]:
        video = schema.Video
        stmt = (
            select(video)
            .where(video.owner == owner, video.deleted_at.is_(None),
                   video.status != VideoStatus.TAKEN_DOWN)
            .order_by(video.created_at.desc(), video.id.desc())
            .limit(limit)
        )
        if before is not None:
            at, video_id = before
            stmt = stmt.where(or_(video.created_at < at,
                                  and_(video.created_at == at, video.id < video_id)))
        return self._all(stmt)

    def delete_video(self, video_id: str, owner: str) -> Deletion:
        with self._session(write=True) as session:
            row = session.scalar(
                select(schema.Video).where(schema.Video.id == video_id).with_for_update()
            )
            # Someone else's video is "not found" too: deleting must not reveal it exists.
            if row is None or row.owner != owner or row.deleted_at is not None:
                raise NotFound(f"no video {video_id}")
            now = utcnow()
            hold = self._hold(session, row)
            row.deleted_at = now
            # A retry with the old idempotency key must make a new video, not find this one.
            row.idempotency_key = None
            row.request_fingerprint = None
            row.caption = ""
            erase = [] if hold else self._erase(session, row, now)
            event_row = _append_event(
                session, None, now, owner, EventAction.OWNER_DELETE, "deleted by its owner",
                video_id, None, {"hold": hold, "erased": not hold}, key_id=SERVICE_KEY,
            )
            deletion = Deletion(video_id, now, hold, event_row.id)
        self._unlink(erase)  # after the commit: a rollback must not lose bytes
        return deletion

    def release_hold(self, video_id: str, actor: str) -> bool:
        with self._session(write=True) as session:
            row = session.scalar(
                select(schema.Video).where(schema.Video.id == video_id).with_for_update()
            )
            if row is None or row.deleted_at is None or row.erased_at is not None:
                return False
            if self._hold(session, row):
                return False
            now = utcnow()
            erase = self._erase(session, row, now)
            _append_event(
                session, None, now, actor, EventAction.HOLD_RELEASED,
                "the review ended; the deleted video's media were erased", video_id, None,
                {"erased": True}, key_id=SERVICE_KEY,
            )
        self._unlink(erase)
        return True

    @staticmethod
    def _hold(session: Session, row: schema.Video) -> str:
        """Why a deleted video's media must stay: "takedown", "review" or "" (nothing)."""
        if row.status == VideoStatus.TAKEN_DOWN:
            return "takedown"
        unresolved = session.scalar(
            select(func.count()).select_from(schema.Report).where(
                schema.Report.video_id == row.id, schema.Report.status != ReportStatus.RESOLVED)
        )
        return "review" if unresolved else ""

    @staticmethod
    def _erase(session: Session, row: schema.Video, now: datetime) -> list[str]:
        """Detach the row from its media; the blob keys no other live row still needs."""
        keys = {row.video_blob, row.photo_blob} - {""}
        row.video_blob = row.photo_blob = ""
        row.erased_at = now
        session.flush()
        # Blobs are content addressed: the same photo animated twice shares one file.
        shared = set(session.scalars(
            select(schema.Video.video_blob).where(schema.Video.video_blob.in_(keys))
        )) | set(session.scalars(
            select(schema.Video.photo_blob).where(schema.Video.photo_blob.in_(keys))
        ))
        return sorted(keys - shared)

    def _unlink(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.blobs.delete(key)
            except OSError as exc:  # the row no longer points at it; a sweep can retry
                raise StoreUnavailable(f"could not erase blob {key}: {exc}") from exc

    # -- safety decisions -------------------------------------------------------------------
    def record_decision(self, decision: DecisionRecord) -> str:
        decision_id = decision.id or new_id("d_")
        with self._session(write=True) as session:
            session.add(_row(decision, id=decision_id))
        return decision_id

    def decisions_for_video(self, video_id: str) -> list[DecisionRecord]:
        return self._all(select(schema.Decision).where(schema.Decision.video_id == video_id)
                         .order_by(schema.Decision.created_at))

    def admit(self, user: str, kind: str, limit: int, window_s: float = 60.0) -> None:
        """Record one admission of ``kind`` for ``user``, or raise RateLimited when ``limit``
        were admitted in the last ``window_s``. Count and insert are one transaction that
        first updates the user's lock row, so concurrent requests (on any replica) queue
        behind each other instead of all reading the same count."""
        now = utcnow()
        since = now - timedelta(seconds=window_s)
        upsert = (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(
            schema.AdmissionLock).values(user=user, kind=kind, admitted=1)
        upsert = upsert.on_conflict_do_update(
            index_elements=["user", "kind"],
            set_={"admitted": schema.AdmissionLock.admitted + 1})
        with self._session(write=True) as s:
            s.execute(upsert)
            s.execute(delete(schema.Admission).where(
                schema.Admission.user == user, schema.Admission.kind == kind,
                schema.Admission.created_at <= since))
            recent = list(s.scalars(
                select(schema.Admission.created_at)
                .where(schema.Admission.user == user, schema.Admission.kind == kind,
                       schema.Admission.created_at > since)
                .order_by(schema.Admission.created_at)))
            if len(recent) >= limit:
                oldest = _aware(recent[len(recent) - limit])
                wait = (oldest - since).total_seconds() if oldest else window_s
                raise RateLimited(
                    f"at most {limit} {kind} requests a minute per user; slow down",
                    retry_after_s=round(max(1.0, wait), 1))
            s.add(schema.Admission(user=user, kind=kind, created_at=now))

    def referenced_blobs(self) -> set[str]:
        """Every blob key a row points to (any ``*_blob`` column of any table)."""
        keys: set[str] = set()
        with self._session() as s:
            for table in schema.Base.metadata.sorted_tables:
                for column in table.columns:
                    if column.name.endswith("_blob"):
                        keys.update(k for k in s.scalars(select(column).distinct()) if k)
        return keys

    # -- reports ----------------------------------------------------------------------------
    def upsert_report(
        self, video_id: str, reporter: str, reason: str, details: str,
        limit_per_hour: int | None = REPORTS_PER_HOUR,
    ) -> tuple[ReportRecord, bool]:
        """limit_per_hour=None: the service's own flags, which no user rate limit applies to."""
        now = utcnow()
        for attempt in range(3):
            try:
                with self._session(write=True) as session:
                    if session.get_bind().dialect.name == "postgresql":
                        # One report at a time per user, so the hourly limit is exact.
                        session.execute(
                            text("SELECT pg_advisory_xact_lock(hashtextextended(:r, 7))"),
                            {"r": reporter},
                        )
                    recent, oldest = session.execute(
                        select(func.count(), func.min(schema.ReportSubmission.created_at))
                        .where(
                            schema.ReportSubmission.reporter == reporter,
                            schema.ReportSubmission.created_at > now - timedelta(hours=1),
                        )
                    ).one()
                    if limit_per_hour is not None and (recent or 0) >= limit_per_hour:
                        # The window frees a slot when its oldest submission turns an hour old.
                        wait = (_aware(oldest) + timedelta(hours=1) - now).total_seconds()
                        raise RateLimited(
                            f"at most {limit_per_hour} reports an hour; try again later",
                            max(1.0, wait),
                        )
                    video = session.get(schema.Video, video_id)
                    if video is None:
                        raise NotFound(f"no video {video_id}")
                    if video.status == VideoStatus.TAKEN_DOWN:
                        raise TakenDown(f"video {video_id} was taken down")
                    session.add(schema.ReportSubmission(reporter=reporter, created_at=now))
                    row = session.scalar(
                        select(schema.Report).where(
                            schema.Report.video_id == video_id, schema.Report.reporter == reporter
                        )
                    )
                    updated = row is not None
                    if row is None:
                        row = schema.Report(
                            id=new_id("r_"), video_id=video_id, reporter=reporter,
                            reason=reason, details=details, status=ReportStatus.OPEN,
                            created_at=now, updated_at=now,
                        )
                        session.add(row)
                    else:
                        row.reason, row.details, row.updated_at = reason, details, now
                        if row.status == ReportStatus.RESOLVED:
                            # A fresh report after a decision reopens it for review.
                            row.status, row.resolution = ReportStatus.OPEN, ""
                            row.resolved_at = row.resolved_by = None
                    session.flush()
                    return _record(row), updated
            except IntegrityError:
                # Two concurrent first reports by the same user: the loser retries as an update.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def reports_for(self, video_id: str) -> Sequence[ReportRecord]:
        return self.list_reports(video_id=video_id)

    def get_report(self, report_id: str) -> ReportRecord | None:
        return self._one(select(schema.Report).where(schema.Report.id == report_id))

    # -- hash banks -------------------------------------------------------------------------
    def active_hashes(self, known: BankVersion | None = None
                      ) -> tuple[BankVersion, list[BankHash] | None]:
        """Rows are only ever added or deactivated (never deleted, never reactivated), so the
        pair (all rows, active rows) changes with every change of the active set: a cheap
        version to check on every match, read in the same transaction as the entries."""
        active = schema.BankEntry.active.is_(True)

        def q(s: Session) -> tuple[BankVersion, list[BankHash] | None]:
            total, live = s.execute(
                select(func.count(), func.coalesce(func.sum(case((active, 1), else_=0)), 0))
                .select_from(schema.BankEntry)
            ).one()
            version = (int(total), int(live))
            if version == known:
                return version, None
            rows = s.execute(
                select(schema.BankEntry.id, schema.BankEntry.bank, schema.BankEntry.pdq_hex)
                .where(active)
            ).all()
            return version, [BankHash(r.id, r.bank, r.pdq_hex) for r in rows]

        return self._read(q)

    def add_bank_entry(self, bank: str, pdq_hex: str, source: str, note: str = "") -> BankEntry:
        with self._session(write=True) as session:
            row = schema.BankEntry(
                id=new_id("h_"), bank=bank, pdq_hex=pdq_hex.lower(), source=source, note=note,
                active=True, created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return _record(row)

    def bank_entries(self, bank: str | None = None, active_only: bool = True) -> list[BankEntry]:
        stmt = select(schema.BankEntry).order_by(schema.BankEntry.created_at)
        if bank:
            stmt = stmt.where(schema.BankEntry.bank == bank)
        if active_only:
            stmt = stmt.where(schema.BankEntry.active.is_(True))
        return self._all(stmt)

    # -- moderation events ------------------------------------------------------------------
    def add_event(
        self, actor: str, action: str, note: str = "", video_id: str | None = None,
        report_id: str | None = None, data: dict | None = None,
    ) -> EventRecord:
        with self._session(write=True) as session:
            return _record(_append_event(session, None, utcnow(), actor, action, note,
                                        video_id, report_id, data))

    def events_for(self, video_id: str) -> Sequence[EventRecord]:
        return self._all(select(schema.Event).where(schema.Event.video_id == video_id)
                         .order_by(schema.Event.id))

    def events(
        self, video_id: str | None = None, actor: str | None = None, limit: int | None = None
    ) -> list[EventRecord]:
        stmt = select(schema.Event).order_by(schema.Event.id.desc())
        if video_id is not None:
            stmt = stmt.where(schema.Event.video_id == video_id)
        if actor is not None:
            stmt = stmt.where(schema.Event.actor == actor)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._all(stmt)

    # -- moderation -------------------------------------------------------------------------
    def list_reports(
        self, statuses: Collection[str] | None = None, video_id: str | None = None
    ) -> list[ReportRecord]:
        stmt = select(schema.Report).order_by(schema.Report.created_at)
        if statuses is not None:
            stmt = stmt.where(schema.Report.status.in_(list(statuses)))
        if video_id is not None:
            stmt = stmt.where(schema.Report.video_id == video_id)
        return self._all(stmt)

    def videos_by_id(self, video_ids: Collection[str]) -> dict[str, VideoRecord]:
        if not video_ids:
            return {}
        videos = self._all(select(schema.Video).where(schema.Video.id.in_(list(video_ids))))
        return {v.id: v for v in videos}

    def count_videos(self, status: str | None = None) -> int:
        def q(s: Session) -> int:
            stmt = select(func.count()).select_from(schema.Video)
            if status is not None:
                stmt = stmt.where(schema.Video.status == status)
            return int(s.scalar(stmt) or 0)

        return self._read(q)

    def token_revoked(self, jti: str) -> bool:
        return self._read(lambda s: s.get(schema.RevokedToken, jti) is not None)

    def revoke_token(self, jti: str, user: str | None = None, reason: str = "",
                     expires_at: datetime | None = None) -> bool:
        try:
            with self._session(write=True) as session:
                if session.get(schema.RevokedToken, jti) is not None:
                    return False
                session.add(schema.RevokedToken(jti=jti, user=user, reason=reason,
                                                revoked_at=utcnow(),
                                                expires_at=expires_at))
                return True
        except IntegrityError:  # revoked at the same moment elsewhere
            return False

    def strikes_for(self, user: str, active_only: bool = True) -> list[StrikeRecord]:
        stmt = select(schema.Strike).where(schema.Strike.user == user)
        if active_only:
            stmt = stmt.where(schema.Strike.active.is_(True))
        return self._all(stmt.order_by(schema.Strike.id))

    def bank_entry(self, entry_id: str) -> BankEntry | None:
        return self._one(select(schema.BankEntry).where(schema.BankEntry.id == entry_id))

    def bank_entries_for_video(self, video_id: str) -> list[BankEntry]:
        return self._all(select(schema.BankEntry).where(schema.BankEntry.video_id == video_id)
                         .order_by(schema.BankEntry.created_at))

    def event_log(self) -> list[EventRecord]:
        return self._all(select(schema.Event).order_by(schema.Event.id))

    def strike_event_ids(self) -> list[int]:
        return self._read(lambda s: list(s.scalars(select(schema.Strike.event_id))))

    def moderator_key(self, key_id: str) -> ModeratorKeyRecord | None:
        return self._one(select(schema.ModeratorKey).where(schema.ModeratorKey.key_id == key_id))

    def moderator_keys(self) -> list[ModeratorKeyRecord]:
        return self._all(select(schema.ModeratorKey).order_by(schema.ModeratorKey.enrolled_at))

    @contextmanager
    def moderation(self, now: datetime | None = None, signer: EventSigner | None = None
                   ) -> Iterator[SqlModerationTx]:
        """One moderator action: see ``ModerationTx`` for the life cycle. ``signer`` signs
        the events it appends."""
        with self._session(write=True) as session:
            yield SqlModerationTx(session, now or utcnow(), signer)


class SqlModerationTx:
    """``ModerationTx`` on one SQLAlchemy session (one database transaction)."""

    def __init__(self, session: Session, now: datetime, signer: EventSigner | None = None
                 ) -> None:
        self.session = session
        self.now = now
        self.signer = signer

    def _video_row(self, video_id: str) -> schema.Video:
        row = self.session.scalar(
            select(schema.Video).where(schema.Video.id == video_id).with_for_update()
        )
        if row is None:
            raise NotFound(f"no video {video_id}")
        return row

    def lock_video(self, video_id: str) -> VideoRecord:
        return _record(self._video_row(video_id))

    def set_video_status(self, video_id: str, status: VideoStatus, reason: str = "") -> None:
        row = self._video_row(video_id)
        row.status, row.status_reason = status, reason

    def set_claim(self, video_id: str, moderator: str | None) -> None:
        row = self._video_row(video_id)
        row.claimed_by = moderator
        row.claimed_at = self.now if moderator else None

    def unresolved_reports(self, video_id: str) -> list[ReportRecord]:
        rows = self.session.scalars(
            select(schema.Report)
            .where(schema.Report.video_id == video_id,
                   schema.Report.status != ReportStatus.RESOLVED)
            .order_by(schema.Report.created_at)
            .with_for_update()
        )
        return _records(rows)

    def set_reports(
        self, report_ids: Sequence[str], status: str, resolution: str = "",
        moderator: str | None = None,
    ) -> None:
        if not report_ids:
            return
        resolved = status == ReportStatus.RESOLVED
        self.session.execute(
            update(schema.Report)
            .where(schema.Report.id.in_(list(report_ids)))
            .values(
                status=status, resolution=resolution, updated_at=self.now,
                resolved_at=self.now if resolved else None,
                resolved_by=moderator if resolved else None,
            )
        )

    def add_event(
        self, actor: str, action: str, note: str = "", video_id: str | None = None,
        report_id: str | None = None, data: dict | None = None,
    ) -> EventRecord:
        return _record(_append_event(self.session, self.signer, self.now, actor, action, note,
                                    video_id, report_id, data))

    def add_bank_entry(
        self, bank: str, pdq_hex: str, source: str, note: str = "",
        video_id: str | None = None, added_by: str | None = None,
    ) -> BankEntry:
        row = schema.BankEntry(
            id=new_id("h_"), bank=bank, pdq_hex=pdq_hex.lower(), source=source, note=note,
            active=True, created_at=self.now, video_id=video_id, added_by=added_by,
        )
        self.session.add(row)
        self.session.flush()
        return _record(row)

    def bank_entry(self, entry_id: str) -> BankEntry | None:
        row = self.session.scalar(
            select(schema.BankEntry).where(schema.BankEntry.id == entry_id).with_for_update()
        )
        return _record(row) if row else None

    def active_bank_hashes(self, bank: str) -> set[str]:
        return set(
            self.session.scalars(
                select(schema.BankEntry.pdq_hex).where(
                    schema.BankEntry.bank == bank, schema.BankEntry.active.is_(True)
                )
            )
        )

    def deactivate_bank_entries(
        self, moderator: str, entry_ids: Sequence[str] = (), video_id: str | None = None
    ) -> list[BankEntry]:
        stmt = select(schema.BankEntry).where(schema.BankEntry.active.is_(True))
        if video_id is not None:
            stmt = stmt.where(schema.BankEntry.video_id == video_id)
        elif entry_ids:
            stmt = stmt.where(schema.BankEntry.id.in_(list(entry_ids)))
        else:
            return []
        rows = list(self.session.scalars(stmt.with_for_update()))
        for row in rows:
            row.active, row.removed_at, row.removed_by = False, self.now, moderator
        self.session.flush()
        return _records(rows)

    def add_strike(self, user: str, video_id: str, event_id: int) -> StrikeRecord:
        row = schema.Strike(
            user=user, video_id=video_id, event_id=event_id, active=True, created_at=self.now
        )
        self.session.add(row)
        self.session.flush()
        return _record(row)

    def withdraw_strikes(self, video_id: str) -> list[StrikeRecord]:
        rows = list(
            self.session.scalars(
                select(schema.Strike)
                .where(schema.Strike.video_id == video_id, schema.Strike.active.is_(True))
                .with_for_update()
            )
        )
        for row in rows:
            row.active, row.withdrawn_at = False, self.now
        self.session.flush()
        return _records(rows)


    def reporters(self, video_id: str) -> set[str]:
        return set(self.session.scalars(
            select(schema.Report.reporter).where(schema.Report.video_id == video_id)))

    def add_moderator_key(self, key_id: str, name: str, public_key: str, enrolment_sig: str
                          ) -> ModeratorKeyRecord:
        row = schema.ModeratorKey(key_id=key_id, name=name,
                                  public_key=public_key, enrolled_at=self.now,
                                  enrolment_sig=enrolment_sig)
        self.session.add(row)
        self.session.flush()
        return _record(row)

    def revoke_moderator_keys(self, name: str) -> list[str]:
        rows = list(self.session.scalars(
            select(schema.ModeratorKey).where(schema.ModeratorKey.name == name,
                                              schema.ModeratorKey.revoked_at.is_(None))
            .with_for_update()))
        for row in rows:
            row.revoked_at = self.now
        self.session.flush()
        return [r.key_id for r in rows]
