"""Signing identities for Content Credentials: load a production chain or make a dev CA.

Life cycle of the dev identity under ``<data_dir>/keys/``::

    ensure_dev_identity()
      ├─ no root / root near expiry ──> new P-256 root CA (10 years)  c2pa-dev-root.{pem,key}
      ├─ no leaf / leaf < 30 days left / leaf not from this root
      │                                ──> new P-256 leaf (90 days)   c2pa-dev-leaf.{pem,key}
      └─ load_identity(leaf, key) ──> profile + expiry check ──> SigningIdentity

c2pa-rs refuses a signing certificate unless it carries KeyUsage digitalSignature
(critical, no keyCertSign), ExtendedKeyUsage emailProtection and an AuthorityKeyIdentifier
(FACTS.md), so we check the same rules at start-up and fail loudly instead of writing
manifests every verifier then calls invalid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_FILE = "c2pa-dev-root.pem"
ROOT_KEY_FILE = "c2pa-dev-root.key"
LEAF_FILE = "c2pa-dev-leaf.pem"
LEAF_KEY_FILE = "c2pa-dev-leaf.key"

ROOT_LIFETIME = timedelta(days=3650)
LEAF_LIFETIME = timedelta(days=90)
LEAF_RENEW_BEFORE = timedelta(days=30)
# A root is replaced well before it lapses; files signed under the old root then verify
# only against the old PEM, so this should practically never trigger.
ROOT_RENEW_BEFORE = timedelta(days=180)


class CertificateError(Exception):
    """The signing certificate or key cannot produce valid Content Credentials."""


@dataclass(frozen=True)
class SigningIdentity:
    chain_pem: bytes  # leaf first, then intermediates (not the root)
    key_pem: bytes | None  # None when callback is used
    callback: Callable[[bytes], bytes] | None
    alg: str  # "es256"
    tsa_url: str | None
    not_after: datetime
    subject: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


def _alg_for(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if public_key.curve.name not in algs:
            raise CertificateError(f"unsupported EC curve {public_key.curve.name}")
        return algs[public_key.curve.name]
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, rsa.RSAPublicKey):
        return "ps256"  # C2PA allows RSA only with PSS padding
    raise CertificateError(f"unsupported signing key type {type(public_key).__name__}")


def _split_pem(chain_pem: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise CertificateError(f"cannot parse certificate PEM: {exc}") from exc
    if not certs:
        raise CertificateError("certificate file holds no certificate")
    return certs


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def check_leaf_profile(leaf: x509.Certificate, now: datetime | None = None) -> None:
    """Raise CertificateError naming the first C2PA profile rule the leaf breaks."""
    now = now or _now()
    who = leaf.subject.rfc4514_string()
    if leaf.not_valid_after_utc <= now:
        raise CertificateError(
            f"signing certificate {who!r} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if leaf.not_valid_before_utc > now:
        raise CertificateError(
            f"signing certificate {who!r} is not valid before "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    try:
        ku_ext = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound as exc:
        raise CertificateError(
            f"signing certificate {who!r} has no KeyUsage extension; C2PA needs "
            "digitalSignature (critical)"
        ) from exc
    if not ku_ext.value.digital_signature:
        raise CertificateError(
            f"signing certificate {who!r}: KeyUsage lacks digitalSignature, which C2PA requires"
        )
    if not ku_ext.critical:
        raise CertificateError(f"signing certificate {who!r}: KeyUsage must be marked critical")
    if ku_ext.value.key_cert_sign:
        raise CertificateError(
            f"signing certificate {who!r} is a CA (keyCertSign); sign with a leaf certificate"
        )
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError(
            f"signing certificate {who!r} has no ExtendedKeyUsage; C2PA verifiers need "
            "emailProtection (1.3.6.1.5.5.7.3.4)"
        ) from exc
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku:
        raise CertificateError(
            f"signing certificate {who!r} has anyExtendedKeyUsage, which C2PA rejects"
        )
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku:
        names = ", ".join(oid._name for oid in eku)
        raise CertificateError(
            f"signing certificate {who!r} has ExtendedKeyUsage [{names}]; C2PA verifiers "
            "need emailProtection (1.3.6.1.5.5.7.3.4)"
        )
    try:
        leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound as exc:
        raise CertificateError(
            f"signing certificate {who!r} has no AuthorityKeyIdentifier, which C2PA requires"
        ) from exc
    _alg_for(leaf.public_key())


def _public_bytes(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def identity_from_pem(
    chain_pem: bytes,
    key_pem: bytes | None,
    tsa_url: str | None = None,
    callback: Callable[[bytes], bytes] | None = None,
    now: datetime | None = None,
) -> SigningIdentity:
    """Validate a chain (and key) held in memory; see load_identity."""
    now = now or _now()
    certs = _split_pem(chain_pem)
    leaf = certs[0]
    check_leaf_profile(leaf, now)
    for cert in certs[1:]:
        if cert.not_valid_after_utc <= now:
            raise CertificateError(
                f"certificate {cert.subject.rfc4514_string()!r} in the signing chain expired "
                f"on {cert.not_valid_after_utc:%Y-%m-%d}"
            )
    if (key_pem is None) == (callback is None):
        raise CertificateError("give exactly one of a private key or a signing callback")
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise CertificateError(f"cannot load the signing private key: {exc}") from exc
        if _public_bytes(key.public_key()) != _public_bytes(leaf.public_key()):
            raise CertificateError("the private key does not match the signing certificate")
    if tsa_url and not tsa_url.startswith(("http://", "https://")):
        raise CertificateError(f"timestamp authority URL must be http(s): {tsa_url!r}")
    # The root is a trust anchor, not part of what we embed.
    chain = [c for c in certs if not (_is_self_signed(c) and c is not leaf)]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    return SigningIdentity(
        chain_pem=pem,
        key_pem=key_pem,
        callback=callback,
        alg=_alg_for(leaf.public_key()),
        tsa_url=tsa_url or None,
        not_after=min(c.not_valid_after_utc for c in chain),
        subject=leaf.subject.rfc4514_string(),
    )


def load_identity(
    cert_path: Path,
    key_path: Path | None,
    tsa_url: str | None = None,
    callback: Callable[[bytes], bytes] | None = None,
) -> SigningIdentity:
    """Read a PEM chain (leaf first) and its key, or a callback that signs for a KMS/HSM.

    Raises CertificateError with a message fit for an operator when the profile is wrong,
    a certificate has expired, or the key does not match.
    """
    try:
        chain_pem = Path(cert_path).read_bytes()
        key_pem = Path(key_path).read_bytes() if key_path is not None else None
    except OSError as exc:
        raise CertificateError(f"cannot read signing credentials: {exc}") from exc
    return identity_from_pem(chain_pem, key_pem, tsa_url, callback)


# ---- dev CA -------------------------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file, mode 0600, atomically: a reader (another replica) sees the old
    file or the whole new one, never a half-written key. The one such writer (auth uses it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer: two replicas writing the same file do not share a tmp.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Alive (development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_root(
    now: datetime, lifetime: timedelta = ROOT_LIFETIME
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Alive Dev C2PA Root CA")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    lifetime: timedelta = LEAF_LIFETIME,
    *,
    eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
    digital_signature: bool = True,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Issue a leaf; the keyword arguments exist so tests can build wrong-profile leaves."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("Alive Dev C2PA Signer"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=not digital_signature,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(root_key, hashes.SHA256()), key


@contextlib.contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    # Several server workers may start together; only one of them may mint keys.
    with open(keys_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load_pair(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
        return None
    return cert, key


def ensure_dev_identity(keys_dir: Path, now: datetime | None = None) -> SigningIdentity:
    """Create (or renew) the dev root CA and leaf under keys_dir and return the leaf identity.

    The leaf is reissued when missing, when fewer than 30 days remain, or when it was not
    issued by the current root. Private keys are written with mode 0600.
    """
    now = now or _now()
    keys_dir = Path(keys_dir)
    keys_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(keys_dir, 0o700)
    with _locked(keys_dir):
        root_pair = _load_pair(keys_dir / ROOT_FILE, keys_dir / ROOT_KEY_FILE)
        if root_pair is None or root_pair[0].not_valid_after_utc - now < ROOT_RENEW_BEFORE:
            root_pair = make_root(now)
            write_private(keys_dir / ROOT_KEY_FILE, _key_pem(root_pair[1]))
            _write_public(
                keys_dir / ROOT_FILE, root_pair[0].public_bytes(serialization.Encoding.PEM)
            )
        root, root_key = root_pair
        leaf_pair = _load_pair(keys_dir / LEAF_FILE, keys_dir / LEAF_KEY_FILE)
        stale = (
            leaf_pair is None
            or leaf_pair[0].not_valid_after_utc - now < LEAF_RENEW_BEFORE
            or leaf_pair[0].not_valid_before_utc > now
            or leaf_pair[0].issuer != root.subject
            or not _issued_by(leaf_pair[0], root)
        )
        if stale:
            leaf, leaf_key = make_leaf(root, root_key, now)
            write_private(keys_dir / LEAF_KEY_FILE, _key_pem(leaf_key))
            _write_public(keys_dir / LEAF_FILE, leaf.public_bytes(serialization.Encoding.PEM))
    return identity_from_pem(
        (keys_dir / LEAF_FILE).read_bytes(), (keys_dir / LEAF_KEY_FILE).read_bytes(), now=now
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # any failure (wrong key, wrong type) means "not ours"
        return False
    return True


def dev_root_pem(keys_dir: Path) -> bytes:
    """The dev root certificate (the default trust anchor for verification)."""
    path = Path(keys_dir) / ROOT_FILE
    if not path.exists():
        ensure_dev_identity(keys_dir)
    return path.read_bytes()


def identity_source(
    keys_dir: Path, cert_path: str = "", key_path: str = "", tsa_url: str = ""
) -> Callable[[], SigningIdentity]:
    """Where signing identities come from, given Settings.sign_cert/sign_key/tsa_url: the
    configured certificate (loaded and checked now), else the dev CA under keys_dir, renewed
    as it nears expiry. The one place the choice is made. Raises CertificateError."""
    if cert_path:
        identity = load_identity(Path(cert_path), Path(key_path) if key_path else None,
                                 tsa_url or None)
        return lambda: identity
    if key_path:
        raise CertificateError("ALIVE_SIGN_KEY is set but ALIVE_SIGN_CERT is not")
    return DevIdentitySource(keys_dir).get


def resolve_trust_anchors(keys_dir: Path, anchors_path: str = "") -> bytes:
    """PEM trust anchors for verification: the configured file, else the dev root (created
    if missing). Raises CertificateError."""
    if anchors_path:
        try:
            pem = Path(anchors_path).read_bytes()
        except OSError as exc:
            raise CertificateError(f"cannot read trust anchors: {exc}") from exc
        _split_pem(pem)
        return pem
    return dev_root_pem(keys_dir)


def existing_trust_anchors(keys_dir: Path, anchors_path: str = "") -> bytes | None:
    """What the command-line tools verify against: the configured anchors, else the dev
    root if a local server made one (never created here), else None (no trust list)."""
    if anchors_path or (Path(keys_dir) / ROOT_FILE).exists():
        return resolve_trust_anchors(keys_dir, anchors_path)
    return None


class DevIdentitySource:
    """Hands out the dev identity and renews the leaf when it nears expiry, for servers
    that run longer than the leaf's 60 days of comfortable life."""

    def __init__(self, keys_dir: Path) -> None:
        self._keys_dir = Path(keys_dir)
        self._identity = ensure_dev_identity(self._keys_dir)

    def get(self) -> SigningIdentity:
        if self._identity.not_after - _now() < LEAF_RENEW_BEFORE:
            self._identity = ensure_dev_identity(self._keys_dir)
        return self._identity
