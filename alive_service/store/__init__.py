"""Storage: the database (SQLAlchemy + Alembic) and the blob directory.

Callers type against the roles in ``interface`` (or ``Store``, all of them); ``SqlStore`` is
built once, where the program is assembled.
"""

from alive_service.store.interface import (
    AdmissionStore,
    BankEntry,
    Conflict,
    DecisionRecord,
    DecisionStore,
    Deletion,
    DeletionStore,
    EventRecord,
    HashBankSource,
    LookupLimits,
    ModerationStore,
    ModerationTx,
    ModeratorKeyRecord,
    NotFound,
    RateLimited,
    ReportRecord,
    ReportStore,
    SharingStore,
    Store,
    StoreUnavailable,
    StrikeRecord,
    TakenDown,
    VideoRecord,
    VideoStore,
    utcnow,
)
from alive_service.store.migrate import upgrade
from alive_service.store.sql import SqlStore, new_id

__all__ = [
    "AdmissionStore", "BankEntry", "Conflict", "DecisionRecord", "DecisionStore", "Deletion",
    "DeletionStore", "EventRecord", "HashBankSource", "LookupLimits", "ModerationStore",
    "ModerationTx", "ModeratorKeyRecord", "NotFound", "RateLimited", "ReportRecord",
    "ReportStore", "SharingStore", "SqlStore", "Store", "StoreUnavailable", "StrikeRecord",
    "TakenDown", "VideoRecord", "VideoStore", "new_id", "upgrade", "utcnow",
]
