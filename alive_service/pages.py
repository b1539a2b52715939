"""ListVideos pagination (AIP-158): page sizes and opaque, tamper-evident page tokens.

A token is the key of the last video on the page (created_at, id), bound to the caller and
signed with the server's secret. Keyset paging keeps pages stable while videos are added or
deleted (no skipped or repeated videos, unlike an offset), and any replica can read a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
_MAC_BYTES = 16


class BadPage(ValueError):
    """A page size or token the caller must fix; ``reason`` is the ErrorInfo reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def page_size(requested: int) -> int:
    """0 means the default; anything above the maximum is coerced to it (AIP-158)."""
    if requested < 0:
        raise BadPage("BAD_PAGE_SIZE", "page_size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"alive.v1.ListVideos\0" + payload, hashlib.sha256).digest()[
        :_MAC_BYTES]


def encode_token(secret: bytes, user: str, created_at: datetime, video_id: str) -> str:
    payload = json.dumps({"u": user, "t": created_at.isoformat(), "i": video_id},
                         separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(_mac(secret, payload) + payload).decode().rstrip("=")


def decode_token(secret: bytes, user: str, token: str) -> tuple[datetime, str]:
    """The (created_at, id) key to continue after; BadPage for anything this server did not
    issue to this caller."""
    bad = BadPage("BAD_PAGE_TOKEN", "page_token is not a next_page_token from ListVideos")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raise bad from None
    mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
    if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, _mac(secret, payload)):
        raise bad
    try:
        fields = json.loads(payload)
        if fields["u"] != user:
            raise bad
        return datetime.fromisoformat(fields["t"]), str(fields["i"])
    except (ValueError, KeyError, TypeError):
        raise bad from None
