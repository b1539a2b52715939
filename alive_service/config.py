"""One typed settings object, read from ``ALIVE_*`` environment variables.

Defaults run locally: SQLite and blobs under ``./var``, models under ``./build/models``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ALIVE_{name}", default)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    model_dir: Path = Path("build/models")
    db_url: str = ""  # empty: SQLite inside data_dir
    addr: str = "127.0.0.1:50051"
    metrics_port: int = 0  # 0: no metrics HTTP server
    # Request limits: a 20 MB photo must fit, with headroom for the envelope.
    max_photo_bytes: int = 25 * 1024 * 1024
    max_photo_pixels: int = 50_000_000
    max_caption_chars: int = 500
    # Work limits: generation is CPU bound, so run at most one per core and queue a few.
    workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    queue_depth: int = 8
    # CPU threads one request may use. 1: one core each, so latency under load stays near
    # twice a lone request's (the production-readiness target: p95 with 4 clients <= 3x one
    # client's p50). 0: every core while a request runs alone (~25% faster on an idle
    # server, no better under load), one each otherwise.
    request_threads: int = 1
    # Per user, counted in the database so every replica enforces the same limit.
    user_requests_per_minute: int = 20
    # Video-id lookups (GetVideo, ReportVideo, ShareVideo) per user: all of them a minute, and
    # misses (unknown ids, or videos not shared with the user) an hour, against enumeration.
    user_lookups_per_minute: int = 120
    user_lookup_misses_per_hour: int = 30
    max_shares_per_video: int = 1000
    # Bearer tokens living longer than this are refused (alive_service/auth.py).
    max_token_lifetime_s: int = 30 * 24 * 3600
    # Repeat offenders: this many upheld takedowns and a user may no longer generate.
    strike_limit: int = 3
    # Provenance: empty paths mean "create a dev CA under data_dir/keys".
    sign_cert: str = ""
    sign_key: str = ""
    tsa_url: str = ""
    trust_anchors: str = ""  # PEM file; empty: the dev root
    policy_file: str = ""  # empty: the policy shipped with the safety package
    # The admin's Ed25519 public key (hex) that moderator enrolments must be signed with;
    # empty: <data_dir>/auth/moderation-admin.pub (see alive_service/moderators.py).
    moderation_admin_key: str = ""
    log_level: str = "INFO"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'alive.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def admin_public_key(self) -> Path:
        return Path(self.moderation_admin_key) if self.moderation_admin_key else (
            self.data_dir / "auth" / "moderation-admin.pub")

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @classmethod
    def from_env(cls) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"ALIVE_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls(), f.name)
            if isinstance(default, Path):
                values[f.name] = Path(raw)
            elif isinstance(default, int):
                values[f.name] = int(raw)
            else:
                values[f.name] = raw
        return cls(**values)
