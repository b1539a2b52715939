"""Check an MP4's Content Credentials and read the invisible watermark.

Two independent answers, because metadata is easy to strip and pixels are not:
- the C2PA manifest (signature, trust, hard binding to the bytes, what it claims);
- the watermark in the frames, which yields the video id even after the manifest is gone
  or the file was re-encoded; the caller looks that id up to find the original record.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace

import c2pa

from provenance.sign import (
    GENERATION_LABEL,
    SOFT_BINDING_LABEL,
    WATERMARK_ALG,
    binding_to_video_id,
)
from provenance.watermark import extract_video_id

AI_SOURCE_TYPES = frozenset(
    {
        "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
        "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
        "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia",
        "http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic",
    }
)
_CREATED = ("c2pa.created",)


@dataclass(frozen=True)
class Verification:
    manifest_present: bool
    state: str  # "Trusted" | "Valid" | "Invalid" | "Absent"
    ai_generated: bool
    signer: str | None
    claim_generator: str | None
    manifest_id: str | None
    params: dict[str, object]  # our generation assertion
    failures: tuple[str, ...]  # "code: explanation" for every failed check
    watermark_video_id: str | None  # recovered from the pixels (works on stripped files)
    watermark_confidence: float
    soft_binding_video_id: str | None = None  # the id the manifest says the pixels carry
    software_agent: str | None = None
    ingredient_manifest_ids: tuple[str, ...] = field(default_factory=tuple)
    signed_at: str | None = None  # only when a timestamp authority countersigned
    ingredient_failures: tuple[str, ...] = ()  # problems inside the source photo's own manifest
    # Invalid only because the signing certificate has expired since (no timestamp authority
    # was used): content and signature are intact. Dev leaves live 90 days; use a TSA.
    expired_since_signing: bool = False


def _signer(sig: dict[str, object]) -> str | None:
    if not sig:
        return None
    name = sig.get("common_name") or sig.get("issuer")
    issuer = sig.get("issuer")
    if name and issuer and name != issuer:
        return f"{name} (issued by {issuer})"
    return str(name) if name else None


def _claim_generator(manifest: dict[str, object]) -> str | None:
    infos = manifest.get("claim_generator_info") or []
    if isinstance(infos, list) and infos:
        first = infos[0]
        name, version = first.get("name"), first.get("version")
        if name:
            return f"{name}/{version}" if version else str(name)
    gen = manifest.get("claim_generator")
    return str(gen) if gen else None


def _assertions(manifest: dict[str, object], prefix: str) -> list[dict[str, object]]:
    out = []
    for assertion in manifest.get("assertions") or []:  # type: ignore[union-attr]
        label = str(assertion.get("label", ""))
        if label == prefix or label.startswith(prefix + ".") or label.startswith(prefix + "__"):
            out.append(assertion.get("data") or {})
    return out


def _created_action(manifest: dict[str, object]) -> dict[str, object] | None:
    for data in _assertions(manifest, "c2pa.actions"):
        for action in data.get("actions") or []:  # type: ignore[union-attr]
            if action.get("action") in _CREATED:
                return action  # type: ignore[no-any-return]
    return None


def _failures(results: dict[str, object]) -> tuple[str, ...]:
    active = results.get("activeManifest") or {}
    return tuple(
        f"{item.get('code')}: {item.get('explanation', '')}".rstrip(": ")
        for item in active.get("failure") or []  # type: ignore[union-attr]
    )


_EXPIRY_CODES = frozenset({"signingCredential.expired", "signingCredential.untrusted"})


def _only_expired(failures: tuple[str, ...]) -> bool:
    codes = {f.split(":", 1)[0] for f in failures}
    return "signingCredential.expired" in codes and codes <= _EXPIRY_CODES


def _ingredient_failures(
    manifest: dict[str, object], results: dict[str, object]
) -> tuple[str, ...]:
    """What was wrong with the photo's own manifest when we signed, plus anything that
    changed since (ingredientDeltas)."""
    items: list[dict[str, object]] = []
    for ingredient in manifest.get("ingredients") or []:  # type: ignore[union-attr]
        recorded = (ingredient.get("validation_results") or {}).get("activeManifest") or {}
        items.extend(recorded.get("failure") or [])
    for delta in results.get("ingredientDeltas") or []:  # type: ignore[union-attr]
        items.extend((delta.get("validationDeltas") or {}).get("failure") or [])
    return tuple(f"{i.get('code')}: {i.get('explanation', '')}".rstrip(": ") for i in items)


def read_manifest(data: bytes, trust_anchors_pem: bytes | None) -> Verification:
    """The C2PA half of verify_mp4 (no pixel decoding)."""
    config: dict[str, object] = {}
    if trust_anchors_pem:
        config["trust"] = {"user_anchors": trust_anchors_pem.decode("ascii")}
    context = c2pa.Context.from_dict(config) if config else c2pa.Context()
    try:
        with c2pa.Reader("video/mp4", io.BytesIO(data), context=context) as reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state() or "Invalid"
    except c2pa.C2paError as exc:
        text = str(exc)
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in text:
            return _absent()
        if "could not be parsed" in text or "invalid BMFF" in text:
            # Not an MP4 we can read at all: nothing is claimed, so nothing is absent-but-lost.
            return replace(_absent(), failures=(f"asset.unparseable: {text}",))
        # A manifest is there but cannot even be parsed: that is tampering, not absence.
        return replace(
            _absent(),
            manifest_present=True,
            state="Invalid",
            failures=(f"manifest.unreadable: {text}",),
        )
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) or {}
    action = _created_action(manifest) or {}
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        agent = "/".join(str(agent[k]) for k in ("name", "version") if agent.get(k))
    binding = _soft_binding(manifest)
    params = (_assertions(manifest, GENERATION_LABEL) or [{}])[0]
    if binding:  # shown with the parameters, so `alive verify` and VerifyVideo say it
        params = {**params, "soft_binding": f"{WATERMARK_ALG} {binding}"}
    ingredient_ids = tuple(
        str(i["active_manifest"])
        for i in manifest.get("ingredients") or []
        if i.get("active_manifest")
    )
    sig = manifest.get("signature_info") or {}
    failures = _failures(store.get("validation_results") or {})
    return Verification(
        manifest_present=True,
        state=state,
        ai_generated=action.get("digitalSourceType") in AI_SOURCE_TYPES,
        signer=_signer(sig),
        claim_generator=_claim_generator(manifest),
        manifest_id=label,
        params=dict(params),
        failures=failures,
        expired_since_signing=state == "Invalid" and _only_expired(failures),
        ingredient_failures=_ingredient_failures(manifest, store.get("validation_results") or {}),
        watermark_video_id=None,
        watermark_confidence=0.0,
        soft_binding_video_id=binding,
        software_agent=str(agent) if agent else None,
        ingredient_manifest_ids=ingredient_ids,
        signed_at=str(sig["time"]) if sig.get("time") else None,
    )


def _soft_binding(manifest: dict[str, object]) -> str | None:
    """The video id our watermark's soft-binding assertion says the pixels carry."""
    binding = None
    for data in _assertions(manifest, SOFT_BINDING_LABEL):
        if data.get("alg") == WATERMARK_ALG:
            for block in data.get("blocks") or []:  # type: ignore[union-attr]
                binding = binding_to_video_id(str(block.get("value", ""))) or binding
    return binding


def _absent() -> Verification:
    return Verification(
        manifest_present=False,
        state="Absent",
        ai_generated=False,
        signer=None,
        claim_generator=None,
        manifest_id=None,
        params={},
        failures=(),
        watermark_video_id=None,
        watermark_confidence=0.0,
    )


def verify_mp4(
    data: bytes, trust_anchors_pem: bytes | None, *, watermark: bool = True
) -> Verification:
    """Validate the manifest against ``trust_anchors_pem`` and read the watermark.

    Pass the dev root (keys.dev_root_pem) or the configured anchors; with None no signer is
    trusted, so a good signature reports "Valid" rather than "Trusted".
    """
    result = read_manifest(data, trust_anchors_pem)
    if not watermark:
        return result
    try:
        video_id, confidence = extract_video_id(data)
    except ValueError:  # not decodable as video: nothing to read
        video_id, confidence = None, 0.0
    return _with_watermark(result, video_id, confidence)


def _with_watermark(v: Verification, video_id: str | None, confidence: float) -> Verification:
    return replace(v, watermark_video_id=video_id, watermark_confidence=confidence)
