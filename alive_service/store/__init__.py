"""Storage: the database (SQLAlchemy + Alembic) and the blob directory."""

from alive_service.store.interface import (
    BankEntry,
    Conflict,
    DecisionRecord,
    Deletion,
    EventRecord,
    LookupLimits,
    NotFound,
    RateLimited,
    ReportRecord,
    Store,
    StoreUnavailable,
    TakenDown,
    VideoRecord,
)
from alive_service.store.migrate import upgrade
from alive_service.store.sql import SqlStore, new_id

__all__ = [
    "BankEntry", "Conflict", "DecisionRecord", "Deletion", "EventRecord", "LookupLimits",
    "NotFound", "RateLimited", "ReportRecord", "SqlStore", "Store", "StoreUnavailable", "TakenDown",
    "VideoRecord", "new_id", "upgrade",
]
