"""Assembly: from Settings to the things a request runs through.

Every process that generates or verifies (the server, each worker, the in-process bench)
builds its parts here and nowhere else:

    Settings -> Keys.load       signing identity + the trust anchors verification uses
             -> open_store      schema (server only), blob directory, one store connection
             -> Models.load     safety checkers, motion model (once, in the workers' zygote)
             -> Parts.load      models, keys, store, decode/encode limits

This module imports models, keys and the store, and nothing that serves requests (server,
service, workers), so those can all import it without a circle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alive_service.config import Settings
from alive_service.decode import DecodeLimits
from alive_service.encode import EncodeOptions
from alive_service.store import SqlStore, Store, upgrade
from provenance.keys import SigningIdentity, identity_source, resolve_trust_anchors

if TYPE_CHECKING:  # the models load in Parts.load, after the health service is up
    from alive_service.motion import MotionModel
    from safety import SafetyChecker
    from safety.hashing import HashBank

log = logging.getLogger("alive.parts")


@dataclass(frozen=True)
class Keys:
    """Who signs, and whom verification trusts: chosen once, from Settings."""

    identity: Callable[[], SigningIdentity]  # renews the dev leaf while the server runs
    trust_anchors: bytes

    @classmethod
    def load(cls, settings: Settings) -> Keys:
        """Raises CertificateError: a wrong-profile or expired certificate, a key without a
        certificate, or unreadable anchors stop start-up."""
        return cls(
            identity=identity_source(settings.keys_dir, settings.sign_cert, settings.sign_key,
                                     settings.tsa_url),
            trust_anchors=resolve_trust_anchors(settings.keys_dir, settings.trust_anchors),
        )


class BlobDirMissing(RuntimeError):
    pass


def open_store(settings: Settings, migrate: bool = True) -> SqlStore:
    """The store; with ``migrate`` (the server process, once at start) also the schema and
    the blob directory: created on a fresh start, never when the database has videos."""
    if migrate:
        upgrade(settings.database_url)
    store = SqlStore(settings.database_url, settings.blob_dir, create_blobs=False)
    store.ping()
    if migrate:
        prepare_blobs(store)
        sweep_encoder_temp(settings.data_dir / "tmp")
    return store


def sweep_encoder_temp(temp_dir: Path, older_than_s: float = 3600.0) -> None:
    """Remove encoder temp files a killed worker left (old ones only: replicas may share
    the data dir)."""
    cutoff = time.time() - older_than_s
    for path in temp_dir.glob("tmp*.mp4") if temp_dir.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def prepare_blobs(store: SqlStore) -> None:
    blobs = store.blobs
    videos = store.count_videos()
    if not blobs.root.exists():
        if videos:
            raise BlobDirMissing(f"the blob directory {blobs.root} is missing but the database "
                                 f"has {videos} videos; restore it (or point ALIVE_DATA_DIR "
                                 "at it) before starting")
        blobs.create()
    elif blobs.marker_id() is None:
        if videos and not any(blobs.keys()):
            raise BlobDirMissing(f"the blob directory {blobs.root} is empty and unmarked but "
                                 f"the database has {videos} videos: was it replaced?")
        blobs.adopt()
    swept = blobs.sweep_temp()
    if swept:
        log.info("removed unfinished blob writes", extra={"files": swept})


@dataclass(frozen=True)
class Parts:
    """The loaded models and keys a request runs through (built once per process)."""

    safety: SafetyChecker
    motion: MotionModel
    keys: Keys
    store: Store
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    # Photos are matched against the store's hash banks through this index (built once per
    # process, rebuilt when the banks change); None: an index over ``store``.
    bank: HashBank | None = None

    def __post_init__(self) -> None:
        if self.bank is None:
            from alive_service.store.index import BankIndex

            object.__setattr__(self, "bank", BankIndex(self.store))

    @property
    def identity(self) -> Callable[[], SigningIdentity]:
        return self.keys.identity

    @classmethod
    def load(cls, settings: Settings, keys: Keys | None = None, migrate: bool = True,
             models: Models | None = None) -> Parts:
        """Everything one generation process needs: models, keys, its own store connection.
        ``migrate``: the server process migrates once at start; its workers do not.
        ``models``: already loaded (a worker forked from the zygote shares its models)."""
        models = models or Models.load(settings)
        keys = keys or Keys.load(settings)
        store = open_store(settings, migrate)
        temp_dir = settings.data_dir / "tmp"
        temp_dir.mkdir(exist_ok=True)
        return cls(
            safety=models.safety,
            motion=models.motion,
            keys=keys,
            store=store,
            limits=DecodeLimits(max_bytes=settings.max_photo_bytes,
                                max_pixels=settings.max_photo_pixels),
            encode=EncodeOptions(temp_dir=temp_dir),
        )


@dataclass(frozen=True)
class Models:
    """The read-only part of Parts: the weights, ~0.6 GB. Loaded once in the workers' zygote
    (workers.py), so the forked workers share these pages instead of holding a copy each."""

    safety: SafetyChecker
    motion: MotionModel

    @classmethod
    def load(cls, settings: Settings) -> Models:
        # Imported here: loading models is the slow part, and importing them is most of it.
        from alive_service.motion import load_motion_model
        from safety import SafetyChecker

        policy = Path(settings.policy_file) if settings.policy_file else None
        return cls(
            safety=SafetyChecker(settings.model_dir, policy, threads=1),
            motion=load_motion_model(settings.model_dir, threads=os.cpu_count() or 2),
        )
