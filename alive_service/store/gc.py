"""Blob garbage collection: remove blobs no database row points to.

Orphans appear when a request dies between writing its blobs and committing its row (the
blobs go first, so a row never points at missing bytes). Only blobs older than
``min_age_s`` go: a request on any replica may be between those two steps right now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from alive_service.store.sql import SqlStore


@dataclass(frozen=True)
class GcReport:
    kept: int
    removed: int
    freed_bytes: int
    temp_files_removed: int
    dry_run: bool


def collect_garbage(store: SqlStore, min_age_s: float = 3600.0, dry_run: bool = False
                    ) -> GcReport:
    # Keys are listed before the rows are read: a blob written after the listing is not
    # looked at, and one written before it is either old enough to be an orphan or young.
    cutoff = time.time() - min_age_s
    candidates = list(store.blobs.keys())
    referenced = store.referenced_blobs()
    removed = freed = kept = 0
    for key in candidates:
        if key in referenced:
            kept += 1
            continue
        path = store.blobs.root / key[:2] / key
        try:
            if path.stat().st_mtime >= cutoff:
                kept += 1
                continue
        except FileNotFoundError:
            continue
        removed += 1
        freed += path.stat().st_size if dry_run else store.blobs.delete(key)
    temp = 0 if dry_run else store.blobs.sweep_temp(min_age_s)
    return GcReport(kept=kept, removed=removed, freed_bytes=freed, temp_files_removed=temp,
                    dry_run=dry_run)
