"""PDQ perceptual hashes of photos and matching them against banks of known-bad hashes.

The hex format is the one ThreatExchange and the PDQ reference tools exchange: 64 hex
characters, most significant bit first (pdqhash's bit vector is already in that order).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pdqhash

from safety.imageops import fit

# PDQ downsamples to 64x64 with Jarosz filters anyway; hashing a 512 px copy is ~60x faster
# on a 12 MP photo and moves the hash by a few bits at most (the reference tools do the same).
_HASH_SIDE = 512
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def pdq_hash(rgb: np.ndarray) -> tuple[str, int]:
    """(64-hex-char PDQ hash, quality 0..100) of an RGB uint8 image."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    small = np.ascontiguousarray(fit(rgb, _HASH_SIDE), dtype=np.uint8)
    bits, quality = pdqhash.compute(small)
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def _to_words(hex_hash: str) -> np.ndarray:
    raw = bytes.fromhex(hex_hash)
    if len(raw) != 32:
        raise ValueError(f"a PDQ hash is 64 hex characters, got {len(hex_hash)}")
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two PDQ hashes (0..256)."""
    x = np.bitwise_xor(_to_words(a_hex), _to_words(b_hex))
    return int(_POPCOUNT8[x.view(np.uint8)].sum())


@dataclass(frozen=True)
class BankMatch:
    bank: str  # e.g. "takedowns" or an imported bank name
    entry_id: str
    hash_hex: str
    distance: int


class HashBank(Protocol):
    """A set of known-bad PDQ hashes a photo is matched against before anything is generated.

    Life cycle of a bank entry::

        takedown / imported list --add--> bank (hash_hex, entry_id, bank name)
        upload --pdq_hash--> pdq_hex --nearest(pdq_hex, max_distance)--> BankMatch | None
                                                   |
                                  BankMatch --> Decision(block, "known_bad_image") --> record
        entry withdrawn (appeal upheld) --remove--> no longer matches

    ``nearest`` returns the closest entry within ``max_distance`` bits (inclusive), or None.
    Implementations: ``MemoryHashBank`` here (tests, CLI, and the matching engine), and the
    service's ``alive_service.store.index.BankIndex``, which loads the store's active entries
    into one and rebuilds it when they change.
    """

    def nearest(self, pdq_hex: str, max_distance: int) -> BankMatch | None: ...


class MemoryHashBank:
    """An in-memory bank: brute-force Hamming distance over packed 4x uint64 rows.

    Brute force is exact and fast enough for banks up to a few million hashes (a 1M-row scan
    is a few tens of milliseconds with numpy); beyond that, a multi-index hash would be needed.
    """

    def __init__(self, name: str = "memory", entries: Iterable[tuple[str, str]] = ()) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._hexes: list[str] = []
        self._words = np.zeros((0, 4), dtype=np.uint64)
        self.add_many(entries)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, entry_id: str, hash_hex: str) -> None:
        self.add_many([(entry_id, hash_hex)])

    def add_many(self, entries: Iterable[tuple[str, str]]) -> None:
        pairs = [(str(i), h.lower()) for i, h in entries]
        if not pairs:
            return
        words = np.stack([_to_words(h) for _, h in pairs])
        with self._lock:
            # Replace rather than mutate, so a reader's snapshot stays consistent.
            self._ids = self._ids + [i for i, _ in pairs]
            self._hexes = self._hexes + [h for _, h in pairs]
            self._words = np.concatenate([self._words, words])

    def remove(self, entry_id: str) -> bool:
        with self._lock:
            keep = [k for k, i in enumerate(self._ids) if i != entry_id]
            if len(keep) == len(self._ids):
                return False
            self._ids = [self._ids[k] for k in keep]
            self._hexes = [self._hexes[k] for k in keep]
            self._words = self._words[keep]
            return True

    def _snapshot(self) -> tuple[list[str], list[str], np.ndarray]:
        with self._lock:
            return self._ids, self._hexes, self._words

    def distances(self, pdq_hex: str) -> np.ndarray:
        """Hamming distance from ``pdq_hex`` to every entry, in insertion order."""
        return _distances(self._snapshot()[2], pdq_hex)

    def nearest(self, pdq_hex: str, max_distance: int) -> BankMatch | None:
        ids, hexes, words = self._snapshot()
        d = _distances(words, pdq_hex)
        if len(d) == 0:
            return None
        k = int(np.argmin(d))
        if d[k] > max_distance:
            return None
        return BankMatch(self.name, ids[k], hexes[k], int(d[k]))


def _distances(words: np.ndarray, pdq_hex: str) -> np.ndarray:
    if len(words) == 0:
        return np.zeros(0, dtype=np.int32)
    x = np.bitwise_xor(words, _to_words(pdq_hex)[None, :])
    # Popcount through a byte lookup table: exact, vectorised, and as fast as
    # np.bitwise_count at these sizes while still working on numpy 1.26.
    return _POPCOUNT8[x.view(np.uint8)].reshape(len(words), 32).sum(axis=1, dtype=np.int32)
