"""Our signed MP4s validate with c2pa-ts, a second C2PA implementation (TypeScript) that
shares no code with c2pa-rs, which signs them: a bug common to our signer and our verifier
would otherwise pass every other test.

tests/c2pa_ts/validate.mjs reports, per file, c2pa-ts's claim signature (COSE) and BMFF hard
binding checks plus a chain check to our dev root done with Node's own X.509 code (c2pa-ts
has no trust list). Its pinned dependencies are installed with ``npm ci`` on first use.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from provenance.keys import ROOT_FILE, ensure_dev_identity
from provenance.media import encode_mp4, sample_clip
from provenance.sign import AI_SOURCE_TYPE, GenerationInfo, sign_video
from tests.conftest import jpeg

NODE_DIR = Path(__file__).parent / "c2pa_ts"
PACKAGE = "@trustnxt/c2pa-ts"
VIDEO_ID = "5e1f0c2a9b3d7e48"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are needed to run the c2pa-ts validator",
)


def _installed_version() -> str | None:
    meta = NODE_DIR / "node_modules" / PACKAGE / "package.json"
    return json.loads(meta.read_text())["version"] if meta.exists() else None


@pytest.fixture(scope="module")
def validator() -> Path:
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"][PACKAGE]
    # A lock, since parallel test runs would otherwise both run `npm ci` into one folder.
    with open(NODE_DIR / "package.json") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() != pinned:
            subprocess.run(
                ["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
                check=True,
                capture_output=True,
                timeout=300,
            )
    assert _installed_version() == pinned
    return NODE_DIR / "validate.mjs"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys_dir = tmp_path_factory.mktemp("keys")
    ensure_dev_identity(keys_dir)
    return keys_dir


@pytest.fixture(scope="module")
def signed(keys: Path, landscape_rgb, tmp_path_factory: pytest.TempPathFactory) -> Path:
    mp4 = encode_mp4(sample_clip(landscape_rgb, height=360, width=640, frames=24))
    info = GenerationInfo(
        video_id=VIDEO_ID,
        model_id="alive-motion",
        model_version="0.1.0",
        model_sha256="cd" * 32,
        seed=7,
        params={"amplitude": 0.5},
        claim_generator="Alive/0.1.0",
    )
    video = sign_video(mp4, jpeg(landscape_rgb), "image/jpeg", info, ensure_dev_identity(keys))
    path = tmp_path_factory.mktemp("signed") / f"{VIDEO_ID}.mp4"
    path.write_bytes(video.mp4)
    return path


def _validate(validator: Path, mp4: Path, anchors: Path) -> dict:
    done = subprocess.run(
        ["node", str(validator), "--anchors", str(anchors), str(mp4)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 1), done.stderr
    (report,) = json.loads(done.stdout)
    assert (done.returncode == 0) == report["valid"]
    return report


def _top_level_boxes(data: bytes) -> dict[str, tuple[int, int]]:
    """ISO BMFF top-level boxes: type -> (offset, size)."""
    boxes: dict[str, tuple[int, int]] = {}
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        boxes.setdefault(kind.decode("latin-1"), (pos, size))
        pos += size
    return boxes


def _flipped(src: Path, offset: int, name: str) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] ^= 0x01
    out = src.with_name(name)
    out.write_bytes(bytes(data))
    return out


def test_an_independent_c2pa_implementation_accepts_our_signed_video(
    validator: Path, signed: Path, keys: Path
) -> None:
    report = _validate(validator, signed, keys / ROOT_FILE)
    assert report["errors"] == []
    assert report["manifestFound"] and report["activeManifest"].startswith("urn:c2pa:")
    assert report["claimSignatureValid"]
    assert report["hardBindingValid"] and report["hardBinding"].startswith("c2pa.hash.bmff")
    assert report["trustedByAnchor"]
    assert report["digitalSourceType"] == AI_SOURCE_TYPE
    assert report["valid"]


def test_one_changed_video_byte_breaks_the_content_binding(
    validator: Path, signed: Path, keys: Path
) -> None:
    offset, size = _top_level_boxes(signed.read_bytes())["mdat"]
    report = _validate(
        validator, _flipped(signed, offset + size // 2, "mdat.mp4"), keys / ROOT_FILE
    )
    assert not report["valid"]
    assert not report["hardBindingValid"]
    assert report["claimSignatureValid"]  # the manifest itself is untouched
    assert "assertion.bmffHash.mismatch" in {e["code"] for e in report["errors"]}


def test_a_changed_signature_byte_is_rejected(validator: Path, signed: Path, keys: Path) -> None:
    # c2pa-rs ends the manifest store with the COSE signature's last bytes.
    offset, size = _top_level_boxes(signed.read_bytes())["uuid"]
    report = _validate(validator, _flipped(signed, offset + size - 10, "sig.mp4"), keys / ROOT_FILE)
    assert not report["valid"]
    assert not report["claimSignatureValid"]
    assert "claimSignature.mismatch" in {e["code"] for e in report["errors"]}


def test_a_video_signed_under_another_root_is_not_trusted(
    validator: Path, signed: Path, tmp_path: Path
) -> None:
    ensure_dev_identity(tmp_path)
    report = _validate(validator, signed, tmp_path / ROOT_FILE)
    assert report["claimSignatureValid"] and report["hardBindingValid"]
    assert not report["trustedByAnchor"]
    assert not report["valid"]
