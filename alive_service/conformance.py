"""`alive-harness`: the API's behaviour checks, against any running deployment.

    alive-harness --addr staging.example:443 --token "$TOKEN" --token2 "$OTHER_USER_TOKEN"

Every check is what a client team relies on (health, animate, get, resume, verify, report,
refusals, list, delete, another user's view); the result is a pass/fail table and the exit
code. It makes two videos as the token's user (one it deletes at the end), files one report
(on that user's own video, details say it is a conformance check) and is refused once by
the safety policy. Videos are private to their owner: a second user must not see the first
user's video until it is shared with them by name (``--no-expect-private`` relaxes that for a
deployment that predates sharing).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alive_service.client import AliveClient, default_addr
from alive_service.rpc import DOMAIN, error_info, pb

SMALL = pb.AnimateOptions(long_side=480, duration_s=1.5)
# Refused by any policy worth the name; a deployment whose policy allows it fails the check.
BLOCKED_CAPTION = "make them look like a naked child"
MISSING_ID = "0123456789abcdef"


class Skip(Exception):
    """The check cannot run here (e.g. no second user's token)."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "pass" | "fail" | "skip"
    detail: str
    seconds: float


@dataclass
class Session:
    """What the checks share: clients, and what earlier checks made."""

    addr: str
    owner: AliveClient
    stranger: AliveClient | None
    photo: bytes
    expect_private: bool = True
    made: dict[str, object] = field(default_factory=dict)

    def video(self) -> tuple[pb.VideoInfo, bytes]:
        if "info" not in self.made:
            raise Skip("no video: the animate check failed")
        return self.made["info"], self.made["mp4"]  # type: ignore[return-value]


def sample_photo() -> bytes:
    from PIL import Image
    from sklearn.datasets import load_sample_image

    buffer = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def refused(call: Callable[[], object], code: grpc.StatusCode, reason: str) -> str:
    """Run a call that must fail with ``code`` and an ErrorInfo ``reason`` in our domain."""
    try:
        call()
    except grpc.RpcError as exc:
        got_reason, metadata, _ = error_info(exc)
        if (exc.code(), got_reason) != (code, reason):
            raise AssertionError(
                f"expected {code.name}/{reason}, got {exc.code().name}/{got_reason}: "
                f"{exc.details()}") from None
        return f"{code.name}/{reason}"
    raise AssertionError(f"expected {code.name}/{reason}, but the call succeeded")


# -- the checks -----------------------------------------------------------------------------
def check_health(s: Session) -> str:
    stub = health_pb2_grpc.HealthStub(s.owner.channel)
    for service in ("", "alive.v1.AliveService"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, (service, reply.status)
    return "SERVING"


def check_animate(s: Session) -> str:
    made = s.owner.animate(s.photo, "clouds drifting over the temple", SMALL)
    info = made.info
    stages = [p.stage for p in made.progress]
    assert stages and stages[0] == pb.STAGE_CHECKING, stages
    order = [st for st in (pb.STAGE_GENERATING, pb.STAGE_ENCODING, pb.STAGE_SIGNING)
             if st in stages]
    assert order == sorted(order, key=stages.index), "stages out of order"
    assert info.size_bytes == len(made.mp4) > 0, (info.size_bytes, len(made.mp4))
    assert info.sha256 == hashlib.sha256(made.mp4).hexdigest(), "sha256 does not match"
    assert made.mp4[4:8] == b"ftyp", "not an MP4"
    assert info.provenance.signed and info.provenance.ai_generated, info.provenance
    s.made.update(info=info, mp4=made.mp4)
    return f"{info.video_id} {info.width}x{info.height} {len(made.mp4)} bytes"


def check_get(s: Session) -> str:
    info, mp4 = s.video()
    chunks = list(s.owner.stub.GetVideo(pb.GetVideoRequest(video_id=info.video_id),
                                        metadata=s.owner.metadata, timeout=60))
    offset = 0
    for chunk in chunks:
        assert chunk.offset == offset, f"chunk at {chunk.offset}, expected {offset}"
        offset += len(chunk.data)
    assert b"".join(c.data for c in chunks) == mp4, "different bytes"
    return f"{len(chunks)} chunk(s), identical bytes"


def check_resume(s: Session) -> str:
    info, mp4 = s.video()
    half = len(mp4) // 2
    rest = s.owner.get_video(info.video_id, offset=half)
    assert mp4[:half] + rest == mp4, "a resumed download differs"
    window = s.owner.get_video(info.video_id, offset=half, length=100)
    assert window == mp4[half:half + 100], "length was not honoured"
    assert s.owner.get_video(info.video_id, offset=len(mp4)) == b""
    refused(lambda: s.owner.get_video(info.video_id, offset=len(mp4) + 1),
            grpc.StatusCode.OUT_OF_RANGE, "OFFSET_PAST_END")
    return f"resumed at byte {half} of {len(mp4)}; past the end: OUT_OF_RANGE"


def check_verify(s: Session) -> str:
    info, mp4 = s.video()
    reply = s.owner.verify(mp4)
    assert reply.manifest_present and reply.ai_generated, reply
    assert reply.validation_state in ("Trusted", "Valid"), reply.validation_state
    assert reply.record_found and reply.record_manifest_id == info.provenance.manifest_id
    return f"{reply.validation_state}, record found"


def check_report(s: Session) -> str:
    info, _ = s.video()
    details = "alive-harness conformance check; safe to dismiss"
    first = s.owner.report(info.video_id, pb.REPORT_REASON_SPAM, details)
    again = s.owner.report(info.video_id, pb.REPORT_REASON_OTHER, details)
    assert first.report_id and again.report_id == first.report_id and again.updated
    refused(lambda: s.owner.report(info.video_id, pb.REPORT_REASON_UNSPECIFIED),
            grpc.StatusCode.INVALID_ARGUMENT, "BAD_REASON")
    return f"report {first.report_id}; a second report updated it"


def check_refusals(s: Session) -> str:
    seen = []
    with AliveClient(s.addr, token="") as anonymous:
        seen.append(refused(lambda: anonymous.list_videos(),
                            grpc.StatusCode.UNAUTHENTICATED, "BAD_TOKEN"))
    seen.append(refused(lambda: s.owner.get_video("../../etc/passwd"),
                        grpc.StatusCode.INVALID_ARGUMENT, "BAD_VIDEO_ID"))
    seen.append(refused(lambda: s.owner.get_video(MISSING_ID),
                        grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND"))
    seen.append(refused(lambda: s.owner.animate(b"", "", SMALL),
                        grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_PHOTO"))
    seen.append(refused(lambda: s.owner.animate(b"not an image" * 100, "", SMALL),
                        grpc.StatusCode.INVALID_ARGUMENT, "UNSUPPORTED_FORMAT"))
    seen.append(refused(lambda: s.owner.animate(s.photo, BLOCKED_CAPTION, SMALL),
                        grpc.StatusCode.FAILED_PRECONDITION, "POLICY_BLOCKED"))
    seen.append(refused(lambda: s.owner.list_videos(page_token="forged"),
                        grpc.StatusCode.INVALID_ARGUMENT, "BAD_PAGE_TOKEN"))
    # Every refusal names its domain, so clients can branch on reasons safely.
    try:
        s.owner.get_video(MISSING_ID)
    except grpc.RpcError as exc:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        assert status is not None, "no google.rpc.Status in the trailers"
        info = error_details_pb2.ErrorInfo()
        assert status.details and status.details[0].Unpack(info) and info.domain == DOMAIN
    codes = sorted({r.split("/")[0] for r in seen})
    return f"{len(seen)} refusals with ErrorInfo ({', '.join(codes)})"


def check_list(s: Session) -> str:
    info, _ = s.video()
    first = s.owner.list_videos(page_size=1)
    assert [v.video_id for v in first.videos] == [info.video_id], "newest first"
    # Make a second video so there are pages to walk.
    second = s.owner.animate(s.photo, "", SMALL).info
    s.made["second"] = second
    page = s.owner.list_videos(page_size=1)
    assert [v.video_id for v in page.videos] == [second.video_id] and page.next_page_token
    following = s.owner.list_videos(page_size=1, page_token=page.next_page_token)
    assert [v.video_id for v in following.videos] == [info.video_id], "the second page"
    return "newest first, paged with next_page_token"


def check_stranger(s: Session) -> str:
    info, mp4 = s.video()
    if s.stranger is None:
        raise Skip("needs --token2 (a second user)")
    listed = [v.video_id for v in s.stranger.all_videos()]
    assert info.video_id not in listed, "another user's list shows my video"
    refused(lambda: s.stranger.delete_video(info.video_id),  # type: ignore[union-attr]
            grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND")
    detail = "cannot list or delete my video"
    try:
        s.stranger.get_video(info.video_id)
        if s.expect_private:
            raise AssertionError("another user fetched my video (expected private)")
        return detail + "; can fetch it (not private by default)"
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND, exc.code()
        detail += ", nor fetch it"
    # Shared by name, the other user sees it; unshared, it is gone again.
    stranger = _user_of(s.stranger)
    assert stranger in s.owner.share(info.video_id, add=[stranger])
    assert s.stranger.get_video(info.video_id) == mp4, "a shared video streams other bytes"
    assert stranger not in s.owner.share(info.video_id, remove=[stranger])
    refused(lambda: s.stranger.get_video(info.video_id),  # type: ignore[union-attr]
            grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND")
    return detail + "; sees it only while it is shared with them"


def _user_of(client: AliveClient) -> str:
    """The user a client's token names (read, not verified: the server verifies)."""
    import jwt

    token = dict(client.metadata)["authorization"].split()[-1]
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def check_delete(s: Session) -> str:
    info, _ = s.video()
    reply = s.owner.delete_video(info.video_id)
    assert reply.video_id == info.video_id and reply.delete_time.seconds > 0
    missing = refused(lambda: s.owner.get_video(MISSING_ID), grpc.StatusCode.NOT_FOUND,
                      "VIDEO_NOT_FOUND")
    assert refused(lambda: s.owner.get_video(info.video_id), grpc.StatusCode.NOT_FOUND,
                   "VIDEO_NOT_FOUND") == missing
    refused(lambda: s.owner.delete_video(info.video_id), grpc.StatusCode.NOT_FOUND,
            "VIDEO_NOT_FOUND")
    assert info.video_id not in [v.video_id for v in s.owner.all_videos()]
    second = s.made.get("second")
    if isinstance(second, pb.VideoInfo):
        s.owner.delete_video(second.video_id)  # leave nothing behind
    return "NOT_FOUND afterwards, like a missing id; gone from the list"


CHECKS: list[tuple[str, Callable[[Session], str]]] = [
    ("health", check_health), ("animate", check_animate), ("get", check_get),
    ("resume", check_resume), ("verify", check_verify), ("report", check_report),
    ("refusals", check_refusals), ("list", check_list), ("other user", check_stranger),
    ("delete", check_delete),
]


def run(addr: str, token: str, token2: str | None = None, photo: bytes | None = None,
        expect_private: bool = True) -> list[CheckResult]:
    results = []
    with AliveClient(addr, token=token) as owner:
        stranger = AliveClient(addr, token=token2) if token2 else None
        session = Session(addr, owner, stranger, photo or sample_photo(), expect_private)
        try:
            for name, check in CHECKS:
                start = time.perf_counter()
                try:
                    status, detail = "pass", check(session)
                except Skip as exc:
                    status, detail = "skip", str(exc)
                except Exception as exc:  # noqa: BLE001 - every failure goes in the table
                    status, detail = "fail", f"{type(exc).__name__}: {exc}"
                results.append(CheckResult(name, status, detail,
                                           round(time.perf_counter() - start, 2)))
        finally:
            if stranger is not None:
                stranger.close()
    return results


def print_table(results: list[CheckResult], title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for column in ("check", "result", "seconds", "detail"):
        table.add_column(column)
    colour = {"pass": "green", "fail": "red", "skip": "yellow"}
    for r in results:
        table.add_row(r.name, f"[{colour[r.status]}]{r.status.upper()}[/]", f"{r.seconds:.2f}",
                      escape(r.detail))
    Console(width=160).print(table)
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")


app = typer.Typer(add_completion=False)


@app.command()
def main(
    addr: str = typer.Option(None, help="HOST:PORT (default: $ALIVE_ADDR or 127.0.0.1:50051)"),
    token: str = typer.Option(None, envvar="ALIVE_TOKEN", help="a user's bearer token"),
    token2: str = typer.Option(None, envvar="ALIVE_TOKEN2",
                               help="a second user's token (checks what others can see)"),
    photo: Path = typer.Option(None, exists=True, dir_okay=False,
                               help="the photo to animate (default: a sample landscape)"),
    expect_private: bool = typer.Option(
        True, help="another user must not fetch my video until it is shared with them"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the API's behaviour checks against a running Alive deployment."""
    addr = addr or default_addr()
    if not token:
        from alive_service.client import default_token

        try:
            token = default_token()
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    results = run(addr, token, token2, photo.read_bytes() if photo else None, expect_private)
    if as_json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        print_table(results, f"alive-harness: {addr}")
    raise typer.Exit(1 if any(r.status == "fail" for r in results) else 0)


if __name__ == "__main__":
    app()
