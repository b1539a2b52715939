"""`alive`: the reference client. Animate a photo, fetch, report and verify videos.

A command imports what it uses, inside it: gRPC, the generated code, JWT, rich's consoles and
numpy cost ~0.3 s to import together, and `alive --help` or `alive token` need none of them.
Only typer (and the vocabulary, which imports nothing heavy) load with the module.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from alive_service import light_typer
from alive_service.vocabulary import ProgressStage, ReportReason

if TYPE_CHECKING:
    import grpc
    from rich.console import Console
    from rich.progress import Progress

    from alive_service.client import AliveClient
    from alive_service.rpc import pb

light_typer.install()  # plain parameters parse without importing pydantic (~0.2 s)
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Bring a photo to life with the Alive service.")

# "nudity" for REPORT_REASON_NUDITY: what a user types (in the vocabulary's order: the
# proto's numbering would need the generated code, for `--help`).
REASON_NAMES = [reason.value for reason in ReportReason]


# rich's markup tags, with the backslashes that may escape them (rich.markup.RE_TAGS).
_TAG = re.compile(r"(\\*)\[([a-z#/@][^[]*?)]")


class _Err:
    """stderr: through rich on a terminal, made on first use (rich costs ~50 ms to import);
    a pipe or a file, where rich would print no colour anyway, gets the text without the
    markup (and without rich's wrapping at 80 columns)."""

    @cache  # noqa: B019 - one console for the process
    def console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True)

    def print(self, *args: Any, **kwargs: Any) -> None:
        if sys.stderr.isatty() or kwargs or not all(isinstance(a, str) for a in args):
            self.console().print(*args, **kwargs)
            return
        print(*(plain(a) for a in args), file=sys.stderr)


err = _Err()


def escape(text: str) -> str:
    """``text`` shown as is by rich's markup (rich.markup.escape, without importing rich)."""
    text = _TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\[{m.group(2)}]", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def plain(markup: str) -> str:
    """What rich shows of ``markup`` without its styles: tags dropped, escaped ones kept."""
    def tag(match: re.Match[str]) -> str:
        backslashes, escaped = divmod(len(match.group(1)), 2)
        return "\\" * backslashes + (f"[{match.group(2)}]" if escaped else "")

    return _TAG.sub(tag, markup)


def _stage_names() -> dict[int, str]:
    from alive_service.rpc import pb

    return {pb.Stage.Value(stage.proto_name): stage.value for stage in ProgressStage}


def _reasons() -> dict[str, int]:
    from alive_service.rpc import pb

    return {reason.value: pb.ReportReason.Value(reason.proto_name) for reason in ReportReason}


def _progress_bar() -> contextlib.AbstractContextManager[Progress | None]:
    """A progress bar on stderr when a person watches it; a script or a pipe gets none, and
    does not pay for rich's progress module (~30 ms to import) or its refresh thread."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                    console=err.console(), transient=True)


def _client() -> AliveClient:
    from alive_service.client import AliveClient

    try:
        return AliveClient()
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _rpc_error() -> type[grpc.RpcError]:
    import grpc

    return grpc.RpcError


def _fail(exc: grpc.RpcError) -> None:
    from alive_service.rpc import error_info

    reason, metadata, retry = error_info(exc)
    err.print(f"[red]{exc.code().name}[/] {escape(exc.details() or '')}")
    if reason:
        extra = ", ".join(f"{k}={v}" for k, v in metadata.items())
        err.print(f"  reason: {escape(reason)}" + (f" ({escape(extra)})" if extra else ""))
    if retry is not None:
        err.print(f"  retry after {retry:g} s")
    raise typer.Exit(1)


_HINT_HELP = ("where the {} region is: x,y in 0..1 (from the top left); several points of one "
              "region as x,y;x,y; a stroke as line:x,y;x,y. Repeat for more regions")
STILL_HELP = _HINT_HELP.format("keep-still")
SKY_HELP = _HINT_HELP.format("sky")
WATER_HELP = _HINT_HELP.format("water")


def _hints(values: list[str], kind: int, direction: float | None) -> list[pb.RegionHint]:
    """``--still 0.5,0.2`` style values -> RegionHint messages (the server checks ranges)."""
    from alive_service.rpc import pb

    out = []
    for value in values:
        polyline = value.startswith("line:")
        points = []
        for pair in value.removeprefix("line:").split(";"):
            try:
                x, y = (float(v) for v in pair.split(","))
            except ValueError:
                raise ValueError(f"bad point {pair!r} in {value!r}: expected x,y") from None
            points.append(pb.HintPoint(x=x, y=y))
        hint = pb.RegionHint(kind=kind, points=points, polyline=polyline)
        if direction is not None:
            hint.drift_direction_deg = direction
        out.append(hint)
    return out


@app.command()
def animate(
    photo: Path = typer.Argument(..., exists=True, dir_okay=False, help="JPEG, PNG or WebP"),
    caption: str = typer.Option("", "--caption", "-c"),
    output: Path = typer.Option(Path("out.mp4"), "--output", "-o"),
    duration: float = typer.Option(0.0, help="seconds (default 3)"),
    long_side: int = typer.Option(0, help="pixels (default 1280)"),
    seed: int = typer.Option(0),
    sky: float | None = typer.Option(None, help="0..2, 0 turns it off"),
    water: float | None = typer.Option(None),
    face: float | None = typer.Option(None),
    camera: float | None = typer.Option(None),
    key: str = typer.Option("", help="idempotency key for safe retries"),
    still: list[str] = typer.Option([], "--still", help=STILL_HELP),
    sky_hint: list[str] = typer.Option([], "--sky-at", "--sky-hint",
                                       help=SKY_HELP),
    water_hint: list[str] = typer.Option([], "--water-at", "--water-hint",
                                         help=WATER_HELP),
    sky_direction: float | None = typer.Option(
        None, help="sky drift direction in degrees (0 right, 90 up); needs --sky-at"),
) -> None:
    """Animate PHOTO and write a signed MP4."""
    from alive_service.rpc import pb

    stage_names = _stage_names()
    options = pb.AnimateOptions(duration_s=duration, long_side=long_side, seed=seed)
    try:
        hints = [*_hints(sky_hint, pb.HINT_KIND_ANIMATE_SKY, sky_direction),
                 *_hints(water_hint, pb.HINT_KIND_ANIMATE_WATER, None),
                 *_hints(still, pb.HINT_KIND_KEEP_STILL, None)]
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    for name, value in (("sky", sky), ("water", water), ("face", face), ("camera", camera)):
        if value is not None:
            setattr(options, name, value)
    with _client() as client, _progress_bar() as bar:
        task = bar.add_task("checking", total=None) if bar else None

        def on_progress(p: pb.Progress) -> None:
            if bar is not None and task is not None:
                bar.update(task, description=stage_names.get(p.stage, "?"),
                           completed=p.frames_done, total=p.frames_total or None)

        try:
            result = client.animate(photo.read_bytes(), caption, options, key, on_progress,
                                    hints)
        except _rpc_error() as exc:
            if bar is not None:
                bar.stop()
            _fail(exc)
            return
    output.write_bytes(result.mp4)
    info = result.info
    err.print(
        f"[green]video {info.video_id}[/] {info.width}x{info.height} {info.duration_s:.1f}s "
        f"{info.size_bytes / 1e6:.2f} MB -> {output}"
        + (" (an earlier result for this key)" if info.reused else "")
    )
    err.print(f"  signed: {info.provenance.signed}, AI-generated: {info.provenance.ai_generated},"
              f" manifest {info.provenance.manifest_id}")
    print(info.video_id)


@app.command()
def get(
    video_id: str,
    output: Path = typer.Option(Path("out.mp4"), "--output", "-o"),
    resume: bool = typer.Option(False, "--resume",
                                help="continue a cut download into OUTPUT from where it stopped"),
) -> None:
    """Download a video (again after a dropped connection, from where it stopped)."""
    if not resume:
        output.unlink(missing_ok=True)
    before = output.stat().st_size if output.exists() else 0
    with _client() as client:
        try:
            size = client.download(video_id, output)
        except _rpc_error() as exc:
            _fail(exc)
            return
    resumed = f" (resumed at byte {before})" if before else ""
    err.print(f"{size} bytes -> {output}{resumed}")


@app.command("list")
def list_(
    page_size: int = typer.Option(20, help="videos per page"),
    page_token: str = typer.Option("", help="next_page_token of the previous page"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Your videos, newest first, one page at a time."""
    with _client() as client:
        try:
            page = client.list_videos(page_size, page_token)
        except _rpc_error() as exc:
            _fail(exc)
            return
    rows = [{"video_id": v.video_id, "created_at": v.created_at.ToJsonString(),
             "width": v.width, "height": v.height, "duration_s": round(v.duration_s, 2),
             "size_bytes": v.size_bytes} for v in page.videos]
    if as_json:
        print(json.dumps({"videos": rows, "next_page_token": page.next_page_token}, indent=2))
        return
    for row in rows:
        print(f"{row['video_id']}  {row['created_at']}  {row['width']}x{row['height']}"
              f"  {row['duration_s']:.1f}s  {row['size_bytes'] / 1e6:.2f} MB")
    if page.next_page_token:
        err.print(f"more: alive list --page-token {page.next_page_token}")


@app.command()
def delete(video_id: str) -> None:
    """Delete one of your videos and the photo it was made from."""
    with _client() as client:
        try:
            reply = client.delete_video(video_id)
        except _rpc_error() as exc:
            _fail(exc)
            return
    err.print(f"deleted {reply.video_id} at {reply.delete_time.ToJsonString()}")


@app.command()
def report(
    video_id: str,
    reason: str = typer.Option(..., help=", ".join(REASON_NAMES)),
    details: str = typer.Option(""),
) -> None:
    """Report a video for review."""
    reasons = _reasons()
    if reason.lower() not in reasons:
        err.print(f"[red]unknown reason {reason!r}[/]; one of: {', '.join(REASON_NAMES)}")
        raise typer.Exit(2)
    with _client() as client:
        try:
            reply = client.report(video_id, reasons[reason.lower()], details)
        except _rpc_error() as exc:
            _fail(exc)
            return
    err.print(("updated report " if reply.updated else "report ") + reply.report_id)
    print(reply.report_id)


@app.command()
def share(
    video_id: str,
    users: list[str] = typer.Argument(..., metavar="USER..."),
    remove: bool = typer.Option(False, "--remove", help="stop sharing with these users"),
) -> None:
    """Share your video with other users (only they and you can see it), or stop sharing."""
    with _client() as client:
        try:
            shared = (client.share(video_id, remove=users) if remove
                      else client.share(video_id, add=users))
        except _rpc_error() as exc:
            _fail(exc)
            return
    err.print(f"{video_id} is shared with {len(shared)} user(s)")
    for user in shared:
        print(user)


@app.command()
def verify(
    file: Path = typer.Argument(..., exists=True, dir_okay=False),
    remote: bool = typer.Option(False, help="ask the server (finds the record too)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check a video's Content Credentials (and its watermark when they were stripped)."""
    data = file.read_bytes()
    if remote:
        with _client() as client:
            try:
                reply = client.verify(data)
            except _rpc_error() as exc:
                _fail(exc)
                return
        summary = {
            "manifest_present": reply.manifest_present, "state": reply.validation_state,
            "ai_generated": reply.ai_generated, "signer": reply.signer,
            "claim_generator": reply.claim_generator, "manifest_id": reply.manifest_id,
            "parameters": dict(reply.parameters), "failures": list(reply.failures),
            "watermark_video_id": reply.watermark_video_id or None,
            "record_found": reply.record_found, "record_status": reply.record_status,
        }
    else:
        from provenance.verify import verify_mp4

        anchors = _trust_anchors()
        result = verify_mp4(data, anchors)
        summary = {
            "manifest_present": result.manifest_present, "state": result.state,
            "ai_generated": result.ai_generated, "signer": result.signer,
            "claim_generator": result.claim_generator, "manifest_id": result.manifest_id,
            "parameters": result.params, "failures": list(result.failures),
            "watermark_video_id": result.watermark_video_id,
            "watermark_confidence": round(result.watermark_confidence, 3),
        }
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for key, value in summary.items():
            print(f"{key:>20}: {value}")
    if summary["state"] == "Invalid":
        raise typer.Exit(1)


def _trust_anchors() -> bytes | None:
    from alive_service.config import Settings

    return Settings.from_env().client_trust_anchors()


@app.command()
def token(user: str, ttl_hours: float = typer.Option(24.0, help="at most 30 days (720 h)"),
          ) -> None:
    """Mint a token for USER with the server's secret (local data directory only)."""
    from alive_service.auth import load_or_create_secret, mint_token
    from alive_service.config import Settings

    settings = Settings.from_env()
    data_dir = settings.data_dir
    if not (data_dir / "auth" / "secret").exists():
        err.print(f"[red]no secret in {escape(str(data_dir))}/auth[/]: start the server once "
                  "first")
        raise typer.Exit(2)
    try:
        print(mint_token(load_or_create_secret(data_dir), user, int(ttl_hours * 3600),
                         max_ttl_s=settings.max_token_lifetime_s))
    except ValueError as exc:
        err.print(f"[red]refused:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


@app.command("revoke-token")
def revoke_token(
    token_or_id: str = typer.Argument(..., metavar="TOKEN_OR_JTI"),
    reason: str = typer.Option("", help="recorded with the revocation"),
) -> None:
    """Refuse a token from now on, on every replica (needs the service's database)."""
    import jwt

    from alive_service.config import Settings
    from alive_service.store import SqlStore, upgrade

    jti, user, expires = token_or_id.strip(), None, None
    if jti.count(".") == 2:  # a whole token: its id, user and expiry, signature not needed
        try:
            claims = jwt.decode(jti, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            err.print(f"[red]not a token:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None
        jti, user = str(claims.get("jti", "")), claims.get("sub")
        if "exp" in claims:
            from datetime import UTC, datetime

            expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    if not jti:
        err.print("[red]this token has no id (jti)[/]: it is refused anyway")
        raise typer.Exit(2)
    settings = Settings.from_env()
    upgrade(settings.database_url)
    store = SqlStore(settings.database_url, settings.blob_dir)
    try:
        fresh = store.revoke_token(jti, user, reason, expires)
    finally:
        store.close()
    err.print(("revoked " if fresh else "already revoked ") + escape(jti))


if __name__ == "__main__":
    app(sys.argv[1:])
