"""The hash-match index: the store's bank entries as a matching engine (``safety.HashBank``).

The store keeps the entries (``HashBankSource``); this builds and owns the index that
matches a photo's PDQ hash against them, so no storage implementation knows how matching
works, and a faster engine replaces ``MemoryHashBank`` here alone.

Life cycle::

    BankIndex(source) ──► empty: nothing read yet
    nearest(pdq_hex) ──► source.active_hashes(known version)
        │  same version ──► match against the index built before
        │  changed (any add or withdrawal, through any replica) ──► rebuild, then match
        ▼
    BankMatch(bank, entry_id, hash, distance) | None
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alive_service.store.interface import BankVersion, HashBankSource

if TYPE_CHECKING:  # numpy and OpenCV stay out of light clients such as alive-mod
    from safety.hashing import BankMatch, MemoryHashBank


class BankIndex:
    """Matches against a store's active bank entries, rebuilt only when they changed.

    Checking the version on every match keeps a takedown made through any replica effective
    at the very next photo, while a 10k-entry bank is not re-read and re-parsed for every
    photo. Safe to share between threads.
    """

    def __init__(self, source: HashBankSource) -> None:
        self.source = source
        self._built: tuple[BankVersion, MemoryHashBank, dict[str, str]] | None = None

    def nearest(self, pdq_hex: str, max_distance: int) -> BankMatch | None:
        from safety.hashing import BankMatch

        index, bank_of = self._current()
        match = index.nearest(pdq_hex, max_distance) if bank_of else None
        if match is None:
            return None
        return BankMatch(bank_of[match.entry_id], match.entry_id, match.hash_hex, match.distance)

    def _current(self) -> tuple[MemoryHashBank, dict[str, str]]:
        from safety.hashing import MemoryHashBank

        built = self._built  # this call's snapshot, whatever other threads do
        version, entries = self.source.active_hashes(built[0] if built else None)
        if entries is None and built is not None:
            return built[1], built[2]
        entries = entries or []
        index = MemoryHashBank("db", [(e.entry_id, e.pdq_hex) for e in entries])
        bank_of = {e.entry_id: e.bank for e in entries}
        # One tuple swap: readers on other threads see the old index or the new, never half.
        self._built = (version, index, bank_of)
        return index, bank_of
