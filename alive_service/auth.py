"""Bearer tokens that name the user: HS256 JWTs signed with a server-side secret.

The dev default keeps the secret in ``<data_dir>/auth/secret`` (created on first
start, mode 0600, in a 0700 data directory) and writes a token for the user "dev" beside
it, so the quickstart client finds it without flags.

Every token carries an id (``jti``) and lives at most ``MAX_TOKEN_TTL_S`` (Settings
``max_token_lifetime_s``): longer-lived tokens are refused whoever signed them. A token is
withdrawn before it expires by revoking its id (the ``revoked_tokens`` table, checked on
every call; ``alive revoke-token``). Rotating the secret (a new ``auth/secret``, restart)
withdraws every token at once. See docs/SECURITY.md, "Tokens and key rotation".
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

ISSUER = "alive"
DEV_USER = "dev"
MAX_TOKEN_TTL_S = 30 * 24 * 3600
DEV_TOKEN_TTL_S = MAX_TOKEN_TTL_S
CLOCK_SKEW_S = 60
USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")


class AuthError(Exception):
    """The request carries no valid token; the message is safe to return."""


@dataclass(frozen=True)
class Identity:
    user: str
    token_id: str = ""
    expires_at: int = 0


def private_dir(path: Path) -> None:
    """Create ``path`` as 0700, and take group and world access away from an existing one
    (not from a shared sticky directory such as /tmp, which is not ours to change)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode
    if mode & 0o077 and not mode & 0o1000:
        path.chmod(0o700)


def load_or_create_secret(data_dir: Path) -> bytes:
    private_dir(data_dir)
    private_dir(data_dir / "auth")
    path = data_dir / "auth" / "secret"
    if not path.exists():
        from provenance.keys import write_private  # cryptography: only when writing one

        tmp = path.with_name(f"secret.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # this one's
        write_private(tmp, secrets.token_hex(32).encode())
        # Two replicas starting together on a shared directory: the first rename wins.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode()


def mint_token(secret: bytes, user: str, ttl_s: int = 24 * 3600, now: float | None = None,
               max_ttl_s: int = MAX_TOKEN_TTL_S) -> str:
    if not USER_RE.match(user):
        raise ValueError(f"not a valid user name: {user!r}")
    if ttl_s > max_ttl_s:
        raise ValueError(f"a token may live at most {max_ttl_s // 86400} days")
    issued = int(now if now is not None else time.time())
    claims = {"sub": user, "iss": ISSUER, "iat": issued, "exp": issued + ttl_s,
              "jti": secrets.token_hex(16)}
    import jwt  # here: PyJWT (and cryptography) cost ~25 ms, and most clients only read

    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: bytes, token: str, max_ttl_s: int = MAX_TOKEN_TTL_S) -> Identity:
    import jwt  # cached after the first call: the server pays it once

    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"the token is not valid: {exc}") from None
    user, jti, issued, expires = claims["sub"], claims["jti"], claims["iat"], claims["exp"]
    if not isinstance(user, str) or not USER_RE.match(user):
        raise AuthError("the token names no valid user")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 64:
        raise AuthError("the token carries no valid id (jti)")
    if not isinstance(issued, int | float) or not isinstance(expires, int | float):
        raise AuthError("the token's times are not numbers")
    # A token issued "in the future" would outlive the limit: both ends are checked.
    if expires - issued > max_ttl_s or issued > time.time() + CLOCK_SKEW_S:
        raise AuthError(f"the token lives longer than the {max_ttl_s // 86400}-day limit")
    return Identity(user=user, token_id=jti, expires_at=int(expires))


def identity_from_metadata(secret: bytes, metadata: dict[str, str],
                           max_ttl_s: int = MAX_TOKEN_TTL_S) -> Identity:
    header = metadata.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("missing 'authorization: Bearer <token>' metadata")
    return verify_token(secret, token.strip(), max_ttl_s)


def dev_token_path(data_dir: Path) -> Path:
    return data_dir / "auth" / "dev-token"


def ensure_dev_token(data_dir: Path, secret: bytes) -> Path:
    """Keep a valid token for the dev user next to the secret (renewed when near expiry)."""
    path = dev_token_path(data_dir)
    if path.exists():
        try:
            identity = verify_token(secret, path.read_text().strip())
            if identity.expires_at - time.time() > DEV_TOKEN_TTL_S / 2:
                return path
        except AuthError:
            pass
    from provenance.keys import write_private

    write_private(path, mint_token(secret, DEV_USER, ttl_s=DEV_TOKEN_TTL_S).encode())
    return path
