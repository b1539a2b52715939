"""Moderators are keys, not names: Ed25519 key pairs enrolled by an admin key.

Life cycle::

    admin: `alive-mod admin init` ──► admin key pair (the private half stays with the admin,
           offline in production; the server side only needs the public half, a file)
    moderator: `alive-mod keygen --out mia.key` ──► a private key only she holds; prints
           the public key
    admin: `alive-mod admin enrol mia PUBKEY --admin-key admin.key`
           ──► moderator_keys row + the admin's signature over (name, key, time)
           ──► a "moderator_enrol" event in the log, signed by the admin key
    mia:   `alive-mod -m mia --key mia.key resolve ...`
           ──► authenticate: the key is enrolled under that name, the enrolment carries a
               valid admin signature, it is not revoked
           ──► every event she writes carries her key id and her signature over its hash
    admin: `alive-mod admin revoke mia --admin-key admin.key` ──► key refused from then on;
           a "moderator_revoke" event, signed by the admin key

A row added to ``moderator_keys`` with only the database credentials has no valid admin
signature and is refused; an event written that way carries no valid signature and
``alive-mod audit verify`` names it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from alive_service.auth import USER_RE
from alive_service.store.chain import timestamp

ADMIN_ACTOR = "system:admin"


class NotAModerator(PermissionError):
    """The name and key given are not an enrolled, unrevoked moderator."""


@dataclass(frozen=True)
class Moderator:
    """Someone who signs moderation events: an enrolled moderator, or the admin."""

    name: str
    key: Ed25519PrivateKey

    @property
    def public_hex(self) -> str:
        return public_hex(self.key)

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_hex)

    def sign(self, digest_hex: str) -> str:
        return self.key.sign(bytes.fromhex(digest_hex)).hex()

    def sign_message(self, message: bytes) -> str:
        return self.key.sign(message).hex()


def public_hex(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return raw.hex()


def key_id_of(public: str) -> str:
    return hashlib.sha256(bytes.fromhex(public)).hexdigest()[:32]


def verify(public: str, message: bytes, signature_hex: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(
            bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError):
        return False


def enrolment_message(name: str, public: str, enrolled_at: datetime) -> bytes:
    return f"alive-moderator-enrolment\n{name}\n{public}\n{timestamp(enrolled_at)}".encode()


def check_public(value: str) -> str:
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("a public key is 64 hex characters (as `alive-mod keygen` prints it)")
    return value


def check_name(name: str) -> str:
    if not USER_RE.match(name):
        raise ValueError(f"not a valid moderator name (a user name): {name[:140]!r}")
    return name


# -- key files -------------------------------------------------------------------------------
def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """PEM, mode 0600; never overwrites an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read a private key from {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def new_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    write_private_key(path, key)
    return key


def load_admin_publics(path: Path) -> list[str]:
    """The admin public keys, one hex key a line: the first is the current admin key (the
    only one that enrols and revokes); the others are earlier ones after a rotation, still
    trusted for what they signed (delete a line to stop trusting it)."""
    if not path.exists():
        raise NotAModerator(f"no admin public key at {path}: run `alive-mod admin init` (or "
                            "set ALIVE_MODERATION_ADMIN_KEY)")
    keys = [check_public(line) for line in path.read_text().splitlines() if line.strip()]
    if not keys:
        raise NotAModerator(f"{path} holds no admin public key")
    return keys


def load_admin_public(path: Path) -> str:
    """The current admin public key (the first line)."""
    return load_admin_publics(path)[0]
