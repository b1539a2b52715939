"""Bearer tokens that name the user: HS256 JWTs signed with a server-side secret.

The dev default keeps the secret in ``<data_dir>/auth/secret`` (created on first
start, mode 0600) and writes a token for the user "dev" beside it, so the
quickstart client finds it without flags.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

ISSUER = "alive"
DEV_USER = "dev"
DEV_TOKEN_TTL_S = 30 * 24 * 3600
USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")


class AuthError(Exception):
    """The request carries no valid token; the message is safe to return."""


@dataclass(frozen=True)
class Identity:
    user: str


def _write_private(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data)


def load_or_create_secret(data_dir: Path) -> bytes:
    path = data_dir / "auth" / "secret"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        _write_private(tmp, secrets.token_hex(32))
        # Two replicas starting together on a shared directory: the first rename wins.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode()


def mint_token(secret: bytes, user: str, ttl_s: int = 24 * 3600, now: float | None = None) -> str:
    if not USER_RE.match(user):
        raise ValueError(f"not a valid user name: {user!r}")
    issued = int(now if now is not None else time.time())
    claims = {"sub": user, "iss": ISSUER, "iat": issued, "exp": issued + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: bytes, token: str) -> Identity:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"the token is not valid: {exc}") from None
    user = claims["sub"]
    if not isinstance(user, str) or not USER_RE.match(user):
        raise AuthError("the token names no valid user")
    return Identity(user=user)


def identity_from_metadata(secret: bytes, metadata: dict[str, str]) -> Identity:
    header = metadata.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("missing 'authorization: Bearer <token>' metadata")
    return verify_token(secret, token.strip())


def dev_token_path(data_dir: Path) -> Path:
    return data_dir / "auth" / "dev-token"


def ensure_dev_token(data_dir: Path, secret: bytes) -> Path:
    """Keep a valid token for the dev user next to the secret (renewed when near expiry)."""
    path = dev_token_path(data_dir)
    if path.exists():
        try:
            claims = jwt.decode(path.read_text().strip(), secret, algorithms=["HS256"],
                                issuer=ISSUER)
            if claims["exp"] - time.time() > DEV_TOKEN_TTL_S / 2:
                return path
        except jwt.InvalidTokenError:
            pass
    _write_private(path, mint_token(secret, DEV_USER, ttl_s=DEV_TOKEN_TTL_S))
    return path
