"""Content Credentials: signed, labelled AI-made, tamper-evident, traceable when stripped."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import c2pa
import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from skimage import data

from provenance import watermark as wm
from provenance.keys import (
    LEAF_FILE,
    CertificateError,
    dev_root_pem,
    ensure_dev_identity,
    existing_trust_anchors,
    identity_from_pem,
    identity_source,
    load_identity,
    make_leaf,
    make_root,
)
from provenance.media import drifting_clip, encode_mp4, psnr, reencode, sample_clip
from provenance.sign import AI_SOURCE_TYPE, GenerationInfo, sign_video
from provenance.verify import verify_mp4

VIDEO_ID = "0af1c3d5e7f90b2d"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def photo() -> bytes:
    _, jpg = cv2.imencode(".jpg", cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    return jpg.tobytes()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    # 720p like the service's output: the mark's cells are sized relative to the frame.
    return sample_clip(data.coffee(), frames=36)


@pytest.fixture(scope="module")
def marked_mp4(clip: np.ndarray) -> bytes:
    frames = clip.copy()
    wm.embed(frames, VIDEO_ID)
    return encode_mp4(frames, crf=23)


def _info() -> GenerationInfo:
    return GenerationInfo(
        video_id=VIDEO_ID,
        model_id="alive-motion",
        model_version="0.1.0",
        model_sha256="ab" * 32,
        seed=42,
        params={"amplitude": 0.6, "loop_frames": 36, "mode": "sway"},
        claim_generator="Alive/0.1.0",
    )


@pytest.fixture(scope="module")
def signed(keys: Path, marked_mp4: bytes, photo: bytes) -> bytes:
    return sign_video(marked_mp4, photo, "image/jpeg", _info(), ensure_dev_identity(keys)).mp4


def _read(data_: bytes, anchors: bytes, mime: str = "video/mp4") -> tuple[dict, str]:
    """c2pa's own Reader, used directly: not our verify code path."""
    ctx = c2pa.Context.from_dict({"trust": {"user_anchors": anchors.decode()}})
    with c2pa.Reader(mime, io.BytesIO(data_), context=ctx) as reader:
        return json.loads(reader.json()), reader.get_validation_state()


def test_signed_video_is_trusted_by_the_c2pa_reader_and_says_ai_generated(
    signed: bytes, keys: Path
) -> None:
    store, state = _read(signed, dev_root_pem(keys))
    assert state == "Trusted"
    manifest = store["manifests"][store["active_manifest"]]
    assert manifest["claim_generator_info"][0]["name"] == "Alive"
    assert manifest["claim_generator_info"][0]["version"] == "0.1.0"
    actions = next(a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))
    created = actions["data"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == AI_SOURCE_TYPE
    assert created["softwareAgent"] == {"name": "alive-motion", "version": "0.1.0"}
    [ingredient] = manifest["ingredients"]
    assert ingredient["relationship"] == "inputTo"
    assert created["parameters"]["ingredients"][0]["url"].endswith(ingredient["label"])
    generation = next(a for a in manifest["assertions"] if a["label"] == "com.alive.generation")
    assert generation["data"]["seed"] == 42
    assert generation["data"]["model"]["sha256"] == "ab" * 32
    text = json.dumps(manifest)
    assert "user" not in text and "caption" not in text


def test_the_manifest_declares_the_watermark_as_a_soft_binding_other_verifiers_can_read(
    signed: bytes, keys: Path
) -> None:
    store, _ = _read(signed, dev_root_pem(keys))
    manifest = store["manifests"][store["active_manifest"]]
    [binding] = [a["data"] for a in manifest["assertions"] if a["label"] == "c2pa.soft-binding"]
    # The spec's soft-binding-map: alg, blocks of {scope, value (bytes)}, pad (bytes).
    assert binding["alg"] == wm.ALG == "io.alive.lumamark.2"
    [block] = binding["blocks"]
    assert block["scope"] == {}  # the whole clip: the mark is the same in every frame
    assert base64.b64decode(block["value"]).hex() == VIDEO_ID  # c2pa shows bytes as base64
    assert "pad" in binding and binding["name"].startswith("Alive LumaMark")


def test_a_lumamark_1_soft_binding_still_names_the_video_its_pixels_carry() -> None:
    # Files signed before the Cb carrier declare lumamark.1; their luma mark is the one
    # this reader reads first, so their binding still counts.
    from provenance.verify import _soft_binding

    value = base64.b64encode(bytes.fromhex(VIDEO_ID)).decode()
    for alg in ("io.alive.lumamark.1", wm.ALG):
        manifest = {"assertions": [{"label": "c2pa.soft-binding",
                                    "data": {"alg": alg, "blocks": [{"value": value}]}}]}
        assert _soft_binding(manifest) == (alg, VIDEO_ID)
    other = {"assertions": [{"label": "c2pa.soft-binding",
                             "data": {"alg": "com.example.mark", "blocks": [{"value": value}]}}]}
    assert _soft_binding(other) == (None, None)


def test_verify_reports_trust_signer_parameters_and_the_watermark(
    signed: bytes, keys: Path
) -> None:
    v = verify_mp4(signed, dev_root_pem(keys))
    assert v.manifest_present and v.state == "Trusted" and v.ai_generated
    assert v.claim_generator == "Alive/0.1.0"
    assert v.signer and "Alive Dev C2PA Signer" in v.signer
    assert v.manifest_id and v.manifest_id.startswith("urn:c2pa:")
    assert v.params["seed"] == 42 and v.failures == ()
    assert v.soft_binding_video_id == VIDEO_ID == v.watermark_video_id
    assert v.params["soft_binding"] == f"{wm.ALG} {VIDEO_ID}"
    # Without our root the signature still checks out but nobody vouches for the signer.
    assert verify_mp4(signed, None, watermark=False).state == "Valid"


def test_flipping_one_byte_of_the_video_data_is_reported_as_tampering(
    signed: bytes, keys: Path
) -> None:
    tampered = bytearray(signed)
    tampered[tampered.find(b"mdat") + 2000] ^= 0x55
    v = verify_mp4(bytes(tampered), dev_root_pem(keys), watermark=False)
    assert v.state == "Invalid"
    assert any(f.startswith("assertion.bmffHash.mismatch") for f in v.failures)


def test_a_photo_with_its_own_credentials_keeps_them_as_the_ingredient_manifest(
    keys: Path, marked_mp4: bytes, photo: bytes
) -> None:
    identity = ensure_dev_identity(keys)
    # The photo comes from a camera whose CA we do not trust.
    now = datetime.now(UTC)
    camera_root, camera_root_key = make_root(now)
    camera_leaf, camera_key = make_leaf(camera_root, camera_root_key, now)
    camera = c2pa.Builder(
        {
            "claim_generator_info": [{"name": "SomeCamera", "version": "1.0"}],
            "assertions": [
                {
                    "label": "c2pa.actions.v2",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "digitalSourceType": "http://cv.iptc.org/newscodes/"
                                "digitalsourcetype/digitalCapture",
                            }
                        ]
                    },
                }
            ],
        }
    )
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, _pem(camera_leaf), _key(camera_key), None)
    )
    out = io.BytesIO()
    camera.sign(signer, "image/jpeg", io.BytesIO(photo), out)
    photo_manifest = _read(out.getvalue(), dev_root_pem(keys), "image/jpeg")[0]["active_manifest"]

    video = sign_video(marked_mp4, out.getvalue(), "image/jpeg", _info(), identity)
    store, state = _read(video.mp4, dev_root_pem(keys))
    assert state == "Trusted"
    assert photo_manifest in store["manifests"]
    [ingredient] = store["manifests"][video.manifest_id]["ingredients"]
    assert ingredient["active_manifest"] == photo_manifest
    v = verify_mp4(video.mp4, dev_root_pem(keys), watermark=False)
    assert v.state == "Trusted" and v.ingredient_manifest_ids == (photo_manifest,)
    # The camera's untrusted signer is reported, but does not spoil our own credential.
    assert any("untrusted" in f for f in v.ingredient_failures)


def test_a_photo_format_c2pa_cannot_parse_is_still_named_as_the_source(
    keys: Path, marked_mp4: bytes
) -> None:
    gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
    video = sign_video(marked_mp4, gif, "image/gif", _info(), ensure_dev_identity(keys))
    store, state = _read(video.mp4, dev_root_pem(keys))
    assert state == "Trusted"
    [ingredient] = store["manifests"][video.manifest_id]["ingredients"]
    assert ingredient["relationship"] == "inputTo" and ingredient["format"] == "image/gif"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("kwargs", "lifetime", "message"),
    [
        ({"eku": (ExtendedKeyUsageOID.SERVER_AUTH,)}, timedelta(days=30), "emailProtection"),
        ({"eku": ()}, timedelta(days=30), "ExtendedKeyUsage"),
        ({"digital_signature": False}, timedelta(days=30), "digitalSignature"),
        ({}, timedelta(days=-1), "expired"),
    ],
)
def test_certificates_c2pa_would_reject_stop_start_up(
    kwargs: dict, lifetime: timedelta, message: str
) -> None:
    now = datetime.now(UTC)
    root, root_key = make_root(now - timedelta(days=60))
    leaf, leaf_key = make_leaf(
        root, root_key, now - timedelta(days=10), lifetime + timedelta(days=10), **kwargs
    )
    with pytest.raises(CertificateError, match=message):
        identity_from_pem(_pem(leaf), _key(leaf_key))


def test_production_chain_and_key_load_from_files_and_the_root_is_not_embedded(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    root, root_key = make_root(now)
    leaf, leaf_key = make_leaf(root, root_key, now)
    (tmp_path / "chain.pem").write_bytes(_pem(leaf) + _pem(root))
    (tmp_path / "key.pem").write_bytes(_key(leaf_key))
    identity = load_identity(tmp_path / "chain.pem", tmp_path / "key.pem")
    assert identity.alg == "es256"
    assert x509.load_pem_x509_certificates(identity.chain_pem) == [leaf]
    _, other_key = make_leaf(root, root_key, now)
    (tmp_path / "other.pem").write_bytes(_key(other_key))
    with pytest.raises(CertificateError, match="does not match"):
        load_identity(tmp_path / "chain.pem", tmp_path / "other.pem")


def test_a_kms_style_signing_callback_produces_a_trusted_manifest(
    keys: Path, marked_mp4: bytes, photo: bytes
) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    dev = ensure_dev_identity(keys)
    private = serialization.load_pem_private_key(dev.key_pem or b"", None)

    def kms_sign(payload: bytes) -> bytes:
        return private.sign(payload, ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr,call-arg]

    identity = load_identity(keys / LEAF_FILE, None, callback=kms_sign)
    video = sign_video(marked_mp4, photo, "image/jpeg", _info(), identity)
    assert verify_mp4(video.mp4, dev_root_pem(keys), watermark=False).state == "Trusted"


def test_dev_keys_are_private_and_the_leaf_renews_before_it_expires(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = ensure_dev_identity(keys)
    assert stat.S_IMODE(os.stat(keys / "c2pa-dev-leaf.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys / "c2pa-dev-root.key").st_mode) == 0o600
    assert ensure_dev_identity(keys).chain_pem == first.chain_pem  # fresh: reused
    root = dev_root_pem(keys)
    # 70 days later the 90-day leaf has 20 days left: a new leaf under the same root.
    later = ensure_dev_identity(keys, now=datetime.now(UTC) + timedelta(days=70))
    assert later.chain_pem != first.chain_pem
    assert dev_root_pem(keys) == root
    assert later.not_after > first.not_after


def test_watermark_is_invisible_and_survives_reencoding_and_downscaling(
    clip: np.ndarray, marked_mp4: bytes
) -> None:
    frames = clip.copy()
    wm.embed(frames, VIDEO_ID)
    assert psnr(clip, frames) >= 40.0
    assert wm.extract_video_id(frames)[0] == VIDEO_ID
    assert wm.extract_video_id(marked_mp4)[0] == VIDEO_ID
    for crf, scale in ((28, 1.0), (23, 0.5), (28, 0.5)):
        found, confidence = wm.extract_video_id(reencode(marked_mp4, crf, scale))
        assert found == VIDEO_ID, (crf, scale, confidence)


def test_a_loop_recut_to_start_elsewhere_still_names_the_video(clip: np.ndarray) -> None:
    frames = clip.copy()
    wm.embed(frames, VIDEO_ID)
    recut = np.roll(frames, -5, axis=0)
    assert wm.extract_video_id(encode_mp4(recut, crf=26, preset="ultrafast"))[0] == VIDEO_ID


def test_a_copy_with_five_percent_cropped_off_still_names_the_video(marked_mp4: bytes) -> None:
    frames = wm.decode_mp4_frames(marked_mp4)
    h, w = frames.shape[1:3]
    dy, dx = round(h * 0.025), round(w * 0.025)
    cropped = np.ascontiguousarray(frames[:, dy : h - dy, dx : w - dx])
    assert wm.extract_video_id(encode_mp4(cropped, crf=23, preset="ultrafast"))[0] == VIDEO_ID


def test_a_video_marked_with_another_id_never_reads_as_this_one(clip: np.ndarray) -> None:
    frames = clip.copy()
    wm.embed(frames, "ffee0011aabb2233")
    found, _ = wm.extract_video_id(reencode(encode_mp4(frames, crf=23), 28, 0.5))
    assert found == "ffee0011aabb2233"


def test_unmarked_video_yields_no_id(clip: np.ndarray) -> None:
    found, confidence = wm.extract_video_id(encode_mp4(clip, crf=23))
    assert found is None and confidence < 0.5


def test_stripped_copy_has_no_manifest_but_the_watermark_names_the_video(
    signed: bytes, keys: Path
) -> None:
    stripped = reencode(signed, 26)
    v = verify_mp4(stripped, dev_root_pem(keys))
    assert not v.manifest_present and v.state == "Absent"
    assert v.watermark_video_id == VIDEO_ID and v.watermark_confidence > 0.3


def test_watermark_survives_when_half_the_picture_drifts() -> None:
    clip = drifting_clip(data.astronaut(), frames=48, speed=4)
    frames = clip.copy()
    wm.embed(frames, VIDEO_ID)
    assert psnr(clip, frames) >= 40.0
    copy = reencode(encode_mp4(frames, crf=23, preset="ultrafast"), 28, 0.5)
    assert wm.extract_video_id(copy)[0] == VIDEO_ID


def test_watermark_at_720p_survives_crf28(marked_mp4: bytes) -> None:
    frames = sample_clip(data.astronaut(), frames=72)
    original = frames.copy()
    wm.embed(frames, "ffee0011aabb2233")
    assert psnr(original, frames) >= 40.0
    found, _ = wm.extract_video_id(encode_mp4(frames, crf=28, preset="ultrafast"))
    assert found == "ffee0011aabb2233"


def test_the_signing_identity_is_the_dev_ca_unless_a_certificate_is_configured(
    tmp_path: Path,
) -> None:
    identity = identity_source(tmp_path / "keys")()
    assert "Alive Dev C2PA Signer" in identity.subject
    with pytest.raises(CertificateError, match="ALIVE_SIGN_CERT is not"):
        identity_source(tmp_path / "keys", key_path=str(tmp_path / "some.key"))


def test_command_line_tools_trust_the_configured_anchors_else_an_existing_dev_root(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    assert existing_trust_anchors(keys) is None  # and no dev CA was made on the way
    assert not (keys / "c2pa-dev-root.pem").exists()
    ensure_dev_identity(keys)
    assert existing_trust_anchors(keys) == dev_root_pem(keys)
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(dev_root_pem(keys))
    assert existing_trust_anchors(tmp_path / "elsewhere", str(anchors)) == anchors.read_bytes()



# Eight fixed ids: whether a bit survives depends on the id, so one random id per run makes
# a flaky test, not a guarantee (a 640 px masked mark read 6 of 12 random ids).
FIXED_IDS = tuple(f"{i:x}" * 16 for i in range(1, 9))


def test_a_640_px_video_is_traced_after_a_50_percent_downscale_whatever_its_id() -> None:
    from sklearn.datasets import load_sample_image

    clip = sample_clip(load_sample_image("china.jpg"), 426, 640, frames=36)
    for video_id in FIXED_IDS:
        frames = clip.copy()
        wm.embed(frames, video_id)
        copy = reencode(encode_mp4(frames, crf=23), 28, 0.5)
        assert wm.extract_video_id(copy)[0] == video_id, video_id


def assert_grey_picture_traced_after_a_50_percent_downscale(
    grey: np.ndarray, ids: tuple[str, ...]
) -> None:
    """Each id, marked on a 720p clip of ``grey`` (PSNR >= 40 dB), is read back from a copy
    re-encoded at CRF 28 after a 50% downscale."""
    clip = sample_clip(np.repeat(grey[:, :, None], 3, axis=2), 720, 1280, frames=36)
    for video_id in ids:
        frames = clip.copy()
        wm.embed(frames, video_id)
        assert psnr(clip, frames) >= 40.0
        copy = reencode(encode_mp4(frames, crf=23), 28, 0.5)
        assert wm.extract_video_id(copy)[0] == video_id, video_id


def test_a_wall_of_bricks_with_no_calm_area_is_still_traced_after_a_50_percent_downscale() -> None:
    # A picture that is texture everywhere speaks loudest on every luma bit: the luma mark
    # alone read 6 of these 8 ids (lumamark.1 at 93c1f8d). A grey wall has no colour
    # texture, so the Cb carrier reads cleanly and, combined with the luma, all 8 do.
    assert_grey_picture_traced_after_a_50_percent_downscale(data.brick(), FIXED_IDS)


def test_a_lawn_that_is_texture_at_every_pixel_is_traced_after_a_50_percent_downscale() -> None:
    # x264's adaptive quantiser raises the QP all over such a picture, and a full-budget
    # luma mark read none of these ids (lumamark.1 at 93c1f8d: 0 of 8); the Cb carrier
    # takes most of the budget there and reads them all.
    assert_grey_picture_traced_after_a_50_percent_downscale(data.grass(), FIXED_IDS[:4])


def test_a_photo_with_calm_areas_gets_no_chroma_mark() -> None:
    # The eye sees a colour change on a clear sky or on skin: the Cb carrier only goes
    # where the luma cannot carry the id (see watermark.CHROMA_SHARE_BUSY).
    from sklearn.datasets import load_sample_image

    for photo in (data.astronaut(), load_sample_image("china.jpg"), data.coffee()):
        frame = cv2.resize(photo, (1280, 720), interpolation=cv2.INTER_AREA)
        assert wm.chroma_share(frame, wm._luma(frame.astype(np.float32))) == 0.0
    clip = sample_clip(data.astronaut(), frames=6)
    mark = wm.LumaMark.plan(clip, VIDEO_ID)
    assert not mark.cb_pos.any() and not mark.cb_neg.any()
