"""One typed settings object, read from ``ALIVE_*`` environment variables.

Defaults run locally: SQLite and blobs under ``./var``, models under ``./build/models``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


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
    # CPU threads one request may use. 0: its share of the cores, read before each stage and
    # frame batch: every core while it runs alone, cores // running requests once others
    # start (under load that is one each, as with 1). N: at most N. 1 keeps a lone request
    # on one core: slower alone, but latency under load stays nearer twice a lone request's
    # (the target: p95 with 4 clients <= 3x one client's p50; 4 clients on 2 cores wait
    # for about one request each, so a lone request that is faster raises the ratio).
    request_threads: int = 0
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
    # Connection limits (guard.py): no one client may hold the server's threads.
    recv_timeout_s: float = 30.0  # a request's body must arrive within this
    call_timeout_s: float = 900.0  # no call (health watches aside) lasts longer
    calls_per_peer: int = 64  # concurrent calls from one client address
    health_calls_per_peer: int = 8  # health checks from one address, outside that quota
    calls_per_user: int = 8  # concurrent calls of one signed-in user
    streams_per_connection: int = 32  # HTTP/2 streams one connection may open at once
    rpc_threads: int = 256  # server threads; well above what one peer may hold
    # Another process already listening on addr stops start-up unless this is set.
    share_addr: bool = False
    # Health turns NOT_SERVING below this much free space under the data dir.
    min_free_mb: int = 512
    # VerifyVideo: checked from the container before a single frame is decoded.
    verify_max_pixels: int = 3840 * 2160
    verify_max_duration_s: float = 120.0
    verify_max_frames: int = 7200
    user_verifies_per_minute: int = 30

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

    def client_trust_anchors(self) -> bytes | None:
        """The PEM roots a client (alive verify, alive-mod show) trusts: the configured file,
        else the dev root the server made; None before there is one (a client never makes
        a CA: the server's start-up does, through provenance.keys.resolve_trust_anchors)."""
        from provenance.keys import existing_trust_anchors

        return existing_trust_anchors(self.keys_dir, self.trust_anchors)

    @classmethod
    def from_env(cls) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"ALIVE_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls(), f.name)
            if isinstance(default, bool):
                values[f.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
            elif isinstance(default, float):
                values[f.name] = float(raw)
            elif isinstance(default, Path):
                values[f.name] = Path(raw)
            elif isinstance(default, int):
                values[f.name] = int(raw)
            else:
                values[f.name] = raw
        return cls(**values)
