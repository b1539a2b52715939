"""The moderation log's hash chain: what an event's hash covers, and how the next links on.

Each event stores ``prev_hash`` (the hash of the event before it, by id; GENESIS for the
first) and ``hash`` = SHA-256 over its id, prev_hash and every column a moderator's action
writes. A rewritten row no longer matches its hash; a deleted or inserted row breaks the
next row's ``prev_hash``. The acting key signs ``hash`` (Ed25519), so nobody without a
moderator's key can recompute the chain after a change. Pure functions: the migration and
``alive-mod audit verify`` use the same definition.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from alive_service.vocabulary import EventAction

GENESIS = "0" * 64
# Events written before migration 0003 are chained but were never signed.
LEGACY_KEY = "legacy"
# Events the service writes on a user's behalf (an owner deleting a video, the retention of
# its media ending): chained and hashed like every event, but signed by no moderator, since
# no moderator acted. A forged one can only be appended at the tail: anywhere else it breaks
# the next signed event's prev_hash.
SERVICE_KEY = "service"
SERVICE_ACTIONS = frozenset({EventAction.OWNER_DELETE, EventAction.HOLD_RELEASED})


def timestamp(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back naive datetimes; everything we write is UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(
    *, id: int, prev_hash: str, video_id: str | None, report_id: str | None, actor: str,
    action: str, note: str, data: dict[str, Any] | None, created_at: datetime,
    key_id: str | None,
) -> str:
    content = {
        "id": int(id), "prev_hash": prev_hash, "video_id": video_id, "report_id": report_id,
        "actor": actor, "action": action, "note": note, "data": data or {},
        "created_at": timestamp(created_at), "key_id": key_id,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
