"""Check an MP4's Content Credentials and read the invisible watermark.

Two independent answers, because metadata is easy to strip and pixels are not:
- the C2PA manifest (signature, trust, hard binding to the bytes, what it claims);
- the watermark in the frames, which yields the video id even after the manifest is gone
  or the file was re-encoded; the caller looks that id up to find the original record.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import c2pa

from provenance.sign import (
    GENERATION_LABEL,
    SOFT_BINDING_LABEL,
    binding_to_video_id,
)
from provenance.watermark import READABLE_ALGS, extract_video_id

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


# A manifest lives in a BMFF 'uuid' box with this id, as a JUMBF superbox ('jumb').
_C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")


def _has_jumbf(data: bytes) -> bool:
    """Whether the bytes carry anything a manifest could be: with neither the C2PA box id
    nor a JUMBF box, a file the reader cannot parse has no manifest (zeros are "Absent",
    not a tampered manifest)."""
    return _C2PA_UUID in data or b"jumb" in data


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
        if "could not be parsed" in text or "invalid BMFF" in text or not _has_jumbf(data):
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
    alg, binding = _soft_binding(manifest)
    params = (_assertions(manifest, GENERATION_LABEL) or [{}])[0]
    if binding:  # shown with the parameters, so `alive verify` and VerifyVideo say it
        params = {**params, "soft_binding": f"{alg} {binding}"}
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


def _soft_binding(manifest: dict[str, object]) -> tuple[str | None, str | None]:
    """(alg, video id) our watermark's soft-binding assertion says the pixels carry (any
    version this reader reads: a lumamark.1 file's luma carrier is lumamark.2's)."""
    alg = binding = None
    for data in _assertions(manifest, SOFT_BINDING_LABEL):
        if data.get("alg") in READABLE_ALGS:
            for block in data.get("blocks") or []:  # type: ignore[union-attr]
                if found := binding_to_video_id(str(block.get("value", ""))):
                    alg, binding = str(data["alg"]), found
    return alg, binding


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


@dataclass(frozen=True)
class VideoLimits:
    """What a video to verify may be, read from its container before any frame is decoded
    (a 425 kB 16384x8192 MP4 otherwise costs ~20 s of CPU and 1.3 GB to decode)."""

    max_pixels: int = 3840 * 2160
    max_duration_s: float = 120.0
    max_frames: int = 7200


class VideoTooLarge(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple:  # crosses from a worker process to the server's
        return (VideoTooLarge, (self.reason, str(self)))


@dataclass(frozen=True)
class Track:
    width: int
    height: int
    duration_s: float
    frames: int


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each ISO BMFF box in data[start:end]."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1 and start + 16 <= end:
            size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            return
        yield kind, start + header, start + size
        start += size


def mp4_video_tracks(data: bytes) -> list[Track]:
    """Every video track's declared size, duration and frame count, read from the box
    headers alone (microseconds, whatever the resolution; PyAV's open decodes a frame)."""
    tracks: list[Track] = []

    def walk(start: int, end: int, found: dict[str, float]) -> None:
        for kind, a, b in _boxes(data, start, end):
            if kind in _CONTAINERS:
                inner: dict[str, float] = {} if kind == b"trak" else found
                walk(a, b, inner)
                if kind == b"trak" and inner.get("video"):
                    tracks.append(Track(int(inner.get("width", 0)), int(inner.get("height", 0)),
                                        inner.get("duration", 0.0), int(inner.get("frames", 0))))
            elif kind == b"hdlr" and b - a >= 12:
                found["video"] = float(data[a + 8:a + 12] == b"vide")
            elif kind == b"mdhd" and b - a >= 24:
                if data[a] == 1 and b - a >= 36:
                    scale, duration = struct.unpack_from(">IQ", data, a + 20)
                else:
                    scale, duration = struct.unpack_from(">II", data, a + 12)
                found["duration"] = duration / scale if scale else 0.0
            elif kind == b"stsz" and b - a >= 12:
                found["frames"] = struct.unpack_from(">I", data, a + 8)[0]
            elif kind == b"stsd" and b - a >= 8:
                for _entry, e, f in _boxes(data, a + 8, b):
                    if f - e >= 28:  # a VisualSampleEntry: width, height at 24
                        w, h = struct.unpack_from(">HH", data, e + 24)
                        if w * h > found.get("width", 0) * found.get("height", 0):
                            found["width"], found["height"] = w, h

    walk(0, len(data), {})
    return tracks


def _too_large(width: int, height: int, duration_s: float, frames: int,
               limits: VideoLimits) -> None:
    if width * height > limits.max_pixels:
        raise VideoTooLarge("VIDEO_TOO_LARGE", (
            f"the video is {width}x{height}; at most {limits.max_pixels} pixels a frame "
            "are verified"))
    if frames > limits.max_frames:
        raise VideoTooLarge("VIDEO_TOO_LONG", (
            f"the video has {frames} frames; at most {limits.max_frames} are verified"))
    if duration_s > limits.max_duration_s:
        raise VideoTooLarge("VIDEO_TOO_LONG", (
            f"the video lasts {duration_s:.0f} s; at most {limits.max_duration_s:.0f} s "
            "are verified"))


def check_boxes(data: bytes, limits: VideoLimits) -> bool:
    """The box headers' half of check_container: pure Python, microseconds, nothing decoded
    (safe to run before admission)."""
    tracks = mp4_video_tracks(data)
    for track in tracks:
        _too_large(track.width, track.height, track.duration_s, track.frames, limits)
    return bool(tracks)


def check_container(data: bytes, limits: VideoLimits) -> bool:
    """Raise VideoTooLarge when the MP4 declares a video beyond ``limits``; False when there
    is no MP4 video track to read a watermark from (nothing else is ever decoded)."""
    import av

    if not check_boxes(data, limits):
        return False
    # The codec's own headers may disagree with the box headers: check what FFmpeg sees too,
    # with its per-frame pixel cap set (opening it decodes a frame to probe the stream).
    try:
        with av.open(io.BytesIO(data), options={"max_pixels": str(limits.max_pixels)}
                     ) as container:
            for stream in container.streams.video:
                context = stream.codec_context
                _too_large(context.width, context.height, 0.0, stream.frames, limits)
            return bool(container.streams.video)
    except av.FFmpegError:
        return False


def verify_mp4(
    data: bytes, trust_anchors_pem: bytes | None, *, watermark: bool = True,
    limits: VideoLimits | None = None,
) -> Verification:
    """Validate the manifest against ``trust_anchors_pem`` and read the watermark.

    Pass the dev root (keys.dev_root_pem) or the configured anchors; with None no signer is
    trusted, so a good signature reports "Valid" rather than "Trusted". With ``limits`` the
    container is checked first (VideoTooLarge) and nothing undecodable is decoded.
    """
    if limits is not None and not check_container(data, limits):
        watermark = False
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
