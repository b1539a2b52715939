"""Sign a generated MP4 with a C2PA manifest that says: AI-made, from this photo, by this model.

The manifest carries
- ``c2pa.actions.v2``: one ``c2pa.created`` action, digitalSourceType trainedAlgorithmicMedia,
  the motion model as softwareAgent, linked to the source photo (``inputTo`` ingredient);
- ``c2pa.soft-binding``: the invisible watermark (alg ``io.alive.lumamark.2``, one block over
  the whole clip whose value is the 8-byte video id the pixels carry) so a stripped or
  re-encoded copy can be matched back to this manifest;
- ``com.alive.generation``: model id/version/sha256, seed and motion settings. Nothing about
  the user (no user id, no caption) goes in: manifests travel with the file.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from dataclasses import dataclass, field

import c2pa

from alive_service.vocabulary import VIDEO_ID_FORMAT, is_video_id
from provenance.keys import SigningIdentity
from provenance.watermark import ALG as WATERMARK_ALG

AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATION_LABEL = "com.alive.generation"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
# Not (yet) in the C2PA soft binding algorithm list, so it is named in our own reverse-domain
# namespace, versioned like the list's entries; the value is the 64-bit id, big-endian.
WATERMARK_NAME = ("Alive LumaMark: 64-bit video id + CRC-16 in a constant luma pattern and a "
                  "constant Cb pattern")
_PHOTO_LABEL = "source-photo"
_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic",
        "image/avif": "avif"}

_ALGS = {
    "es256": c2pa.C2paSigningAlg.ES256,
    "es384": c2pa.C2paSigningAlg.ES384,
    "es512": c2pa.C2paSigningAlg.ES512,
    "ps256": c2pa.C2paSigningAlg.PS256,
    "ed25519": c2pa.C2paSigningAlg.ED25519,
}
# Ingredient thumbnails cost ~65 ms per signature and would copy the user's photo into
# every manifest, so they stay off.
_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}


class SigningError(Exception):
    """The manifest could not be built or signed (bad input, signer failure)."""


@dataclass(frozen=True)
class GenerationInfo:
    video_id: str
    model_id: str
    model_version: str
    model_sha256: str
    seed: int
    params: dict[str, float | int | str] = field(default_factory=dict)
    # "Name/version" of the software that made the video; the caller names itself
    # (alive_service.CLAIM_GENERATOR), this package does not guess.
    claim_generator: str = field(kw_only=True)


@dataclass(frozen=True)
class SignedVideo:
    mp4: bytes
    manifest_id: str  # the active manifest label (urn:c2pa:...)


def soft_binding(video_id: str) -> dict[str, object]:
    """The ``c2pa.soft-binding`` assertion (C2PA 2.x soft-binding-map).

    ``value`` and ``pad`` are byte strings (CBOR bstr) in the spec; c2pa's JSON takes them
    as lists of byte values. An empty scope means the whole asset: the mark is the same in
    every frame.
    """
    return {
        "alg": WATERMARK_ALG,
        "name": WATERMARK_NAME,
        "pad": [],
        "blocks": [{"scope": {}, "value": list(bytes.fromhex(video_id))}],
    }


def binding_to_video_id(value: str) -> str | None:
    """A soft-binding block value as c2pa's JSON shows it (base64 bytes) -> the video id."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 8 else None


def _split_generator(claim_generator: str) -> dict[str, str]:
    name, _, version = claim_generator.partition("/")
    return {"name": name, "version": version} if version else {"name": name}


def manifest_definition(info: GenerationInfo, photo_mime: str) -> dict[str, object]:
    """The manifest JSON handed to c2pa's Builder (public so tests and docs can show it)."""
    return {
        "claim_generator_info": [_split_generator(info.claim_generator)],
        "title": f"{info.video_id}.mp4",
        "format": "video/mp4",
        "ingredients": [],
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": AI_SOURCE_TYPE,
                            "softwareAgent": {
                                "name": info.model_id,
                                "version": info.model_version,
                            },
                            "parameters": {"ingredientIds": [_PHOTO_LABEL]},
                        }
                    ]
                },
            },
            {"label": SOFT_BINDING_LABEL, "data": soft_binding(info.video_id)},
            {
                "label": GENERATION_LABEL,
                "data": {
                    "model": {
                        "id": info.model_id,
                        "version": info.model_version,
                        "sha256": info.model_sha256,
                    },
                    "seed": info.seed,
                    "params": dict(info.params),
                    "watermark": WATERMARK_ALG,
                },
            },
        ],
    }


def make_signer(identity: SigningIdentity) -> c2pa.Signer:
    alg = _ALGS.get(identity.alg)
    if alg is None:
        raise SigningError(f"unsupported signing algorithm {identity.alg!r}")
    if identity.callback is not None:
        return c2pa.Signer.from_callback(
            identity.callback, alg, identity.chain_pem.decode("ascii"), identity.tsa_url
        )
    if identity.key_pem is None:
        raise SigningError("signing identity has neither a private key nor a callback")
    return c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(alg, identity.chain_pem, identity.key_pem, identity.tsa_url)
    )


def _check_video_id(video_id: str) -> None:
    if not is_video_id(video_id):
        raise SigningError(f"video id must be {VIDEO_ID_FORMAT}, got {video_id!r}")


def sign_video(
    mp4: bytes, photo: bytes, photo_mime: str, info: GenerationInfo, identity: SigningIdentity
) -> SignedVideo:
    """Embed a signed manifest in ``mp4`` and return the new bytes and the manifest label.

    A photo that carries its own Content Credentials keeps them: c2pa copies its manifest
    store into ours as the ingredient's manifest.
    """
    _check_video_id(info.video_id)
    definition = manifest_definition(info, photo_mime)
    # The user's file name never reaches us, and would be personal data if it did.
    ingredient = {
        "title": f"source-photo.{_EXT.get(photo_mime, 'img')}",
        "relationship": "inputTo",
        "label": _PHOTO_LABEL,
    }
    context = c2pa.Context.from_dict(_SETTINGS)
    out = io.BytesIO()
    try:
        with c2pa.Builder(definition, context=context) as builder, make_signer(identity) as signer:
            try:
                builder.add_ingredient(ingredient, photo_mime, io.BytesIO(photo))
            except c2pa.C2paError:
                parsed = False
            else:
                parsed = True
                builder.sign(signer, "video/mp4", io.BytesIO(mp4), out)
        if not parsed:
            _sign_with_bare_ingredient(definition, ingredient, photo_mime, mp4, identity, out)
    except c2pa.C2paError as exc:
        raise SigningError(f"C2PA signing failed: {exc}") from exc
    signed = out.getvalue()
    with c2pa.Reader("video/mp4", io.BytesIO(signed), context=_read_context()) as reader:
        label = json_active_label(reader)
    return SignedVideo(mp4=signed, manifest_id=label)


def _sign_with_bare_ingredient(
    definition: dict[str, object],
    ingredient: dict[str, str],
    photo_mime: str,
    mp4: bytes,
    identity: SigningIdentity,
    out: io.BytesIO,
) -> None:
    """c2pa could not parse the photo (a format it does not know): still name it as the
    source, just without its hash or its own credentials."""
    bare = {**ingredient, "format": photo_mime, "instance_id": f"xmp:iid:{uuid.uuid4()}"}
    definition = {**definition, "ingredients": [bare]}
    out.seek(0)
    out.truncate()
    context = c2pa.Context.from_dict(_SETTINGS)
    with c2pa.Builder(definition, context=context) as builder, make_signer(identity) as signer:
        builder.sign(signer, "video/mp4", io.BytesIO(mp4), out)


def _read_context() -> c2pa.Context:
    # We only need the label of what we just signed: skip re-validating it (~3 ms). A fresh
    # context per call (0.2 ms) keeps server threads from sharing one native handle.
    return c2pa.Context.from_dict({"verify": {"verify_after_reading": False}})


def json_active_label(reader: c2pa.Reader) -> str:
    label = json.loads(reader.json()).get("active_manifest")
    if not label:
        raise SigningError("signed file has no active manifest")
    return str(label)
