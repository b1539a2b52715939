"""`alive-mod`: the moderator's console. Works on the database directly, through the store.

Honours ALIVE_DATA_DIR (default ./var) and ALIVE_DB_URL (default SQLite in the data dir),
migrates the database before use. Every command but ``keygen``, ``admin`` and ``audit``
needs a moderator's credentials: ``--moderator NAME --key KEYFILE`` (or ALIVE_MODERATOR,
ALIVE_MODERATOR_KEY), a key the admin enrolled under that name; every event it writes is
signed with that key (see alive_service/moderators.py).
"""

from __future__ import annotations

import io
import json
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alive_service import moderation as mod
from alive_service import moderators
from alive_service.config import Settings
from alive_service.moderators import Moderator, NotAModerator
from alive_service.store import (
    Conflict,
    DecisionRecord,
    NotFound,
    SqlStore,
    Store,
    StoreUnavailable,
    VideoRecord,
    upgrade,
)

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Review reported videos, decide them, and keep the hash banks.")
bank_app = typer.Typer(no_args_is_help=True, help="Hash banks of PDQ hashes refused at upload.")
app.add_typer(bank_app, name="bank")
admin_app = typer.Typer(no_args_is_help=True,
                        help="Enrol and revoke moderators (needs the admin's private key).")
app.add_typer(admin_app, name="admin")
audit_app = typer.Typer(no_args_is_help=True, help="Check the moderation log.")
app.add_typer(audit_app, name="audit")
# No emoji codes: ":x:" in a report's details is text, not a picture.
out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, emoji=False)
_SHOWN_FORMAT = {"\u200c", "\u200d"}  # ZWNJ and ZWJ: ordinary parts of words and emoji


def _e(value: object) -> str:
    """Anything a user, reporter or moderator typed, safe to put into Rich markup: markup
    and emoji codes escaped, control and invisible format characters (bidi overrides, tag
    characters, escape sequences) shown as \\uXXXX instead of acting on the terminal."""
    text = "".join(
        c if c in "\n\t" or c in _SHOWN_FORMAT
        or unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn")
        else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
        for c in str(value)
    )
    return escape(text)


def _row(table: Table, *cells: object) -> None:
    """A table row of data: every cell escaped (a str cell would be read as markup)."""
    table.add_row(*(_e(cell) for cell in cells))


class Env:
    """What every command needs; the store opens (and migrates) on first use, so that
    ``--help`` works without a database."""

    def __init__(self, moderator: str | None, key: Path | None = None) -> None:
        self._name = moderator
        self._key = key
        self._moderator: Moderator | None = None
        self._store: Store | None = None
        self.settings = Settings.from_env()

    @property
    def moderator(self) -> Moderator:
        """The enrolled moderator whose key was given; anyone else stops here."""
        if self._moderator is None:
            name = (self._name or "").strip()
            if not name or self._key is None:
                err.print("[red]error:[/] say who you are: --moderator NAME --key KEYFILE "
                          "(or ALIVE_MODERATOR, ALIVE_MODERATOR_KEY)")
                raise typer.Exit(2)
            key = _guard(lambda: moderators.load_private_key(self._key))  # type: ignore[arg-type]
            admin = _guard(lambda: moderators.load_admin_publics(
                self.settings.admin_public_key))
            self._moderator = _guard(lambda: mod.authenticate(self.open_store(), name, key,
                                                              admin))
        return self._moderator

    @property
    def store(self) -> Store:
        """The store, for a moderator (authenticated first)."""
        _ = self.moderator
        return self.open_store()

    def open_store(self) -> Store:
        """The one place alive-mod chooses the implementation: everything else is typed
        against the store's roles."""
        if self._store is None:
            self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            url = self.settings.database_url
            _guard(lambda: upgrade(url))
            self._store = SqlStore(url, self.settings.blob_dir)
        return self._store

    def trust_anchors(self) -> bytes | None:
        return self.settings.client_trust_anchors()


def _env(ctx: typer.Context) -> Env:
    return ctx.obj  # type: ignore[no-any-return]


def _guard(fn: Callable[[], T]) -> T:
    """Run one action; a refusal is a red line and exit code 1, not a traceback."""
    try:
        return fn()
    except NotAModerator as exc:
        err.print(f"[red]not a moderator:[/] {_e(exc)}")
        raise typer.Exit(2) from None
    except (Conflict, NotFound, ValueError) as exc:
        err.print(f"[red]refused:[/] {_e(exc)}")
        raise typer.Exit(1) from None
    except StoreUnavailable as exc:
        err.print(f"[red]unavailable:[/] {_e(exc)}")
        raise typer.Exit(3) from None


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for column in columns:
        # Ids must stay whole to be copied into the next command.
        table.add_column(column, no_wrap=column in ("video", "report", "entry", "pdq", "when"))
    return table


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"


@app.callback()
def main(
    ctx: typer.Context,
    moderator: str = typer.Option(None, "--moderator", "-m", envvar="ALIVE_MODERATOR",
                                  help="who is acting (required; recorded on every event)"),
    key: Path | None = typer.Option(None, "--key", envvar="ALIVE_MODERATOR_KEY",
                                    help="the moderator's private key file (required)"),
) -> None:
    ctx.obj = Env(moderator, key)


# -- the queue -------------------------------------------------------------------------------
@app.command()
def queue(
    ctx: typer.Context,
    reason: str | None = typer.Option(None, help="only videos with a report of this reason: "
                                      + ", ".join(mod.REASONS)),
    status: str = typer.Option("unresolved", help=" | ".join(mod.STATUSES)),
    limit: int = typer.Option(50, help="at most this many videos (0: all)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Reported videos, most urgent first (worst harm, then reporters, then age)."""
    env = _env(ctx)
    items = _guard(lambda: mod.queue(env.store, reason=reason, status=status,
                                     limit=limit or None))
    if as_json:
        _print_json([item.to_json() for item in items])
        return
    if not items:
        out.print("The queue is empty.")
        return
    table = _table(f"{len(items)} video(s), {status}", "priority", "video", "owner", "status",
                   "reporters", "reasons", "oldest")
    for item in items:
        reasons = ", ".join(f"{r}x{n}" if n > 1 else r for r, n in item.reasons.items())
        state = f"claimed by {item.claimed_by}" if item.claimed_by else item.status
        _row(table, f"{item.priority:.0f}", item.video_id, item.owner, state,
             str(item.reporters), reasons, _when(item.oldest_report))
    out.print(table)


# -- one case --------------------------------------------------------------------------------
def _video_json(video: VideoRecord, decisions: list[DecisionRecord]) -> dict:
    data = asdict(video)
    data["duration_s"] = video.duration_s
    # The decisions at generation, by safety stage (caption, image, output).
    data["safety"] = {d.stage: {"verdict": d.verdict, "category": d.category,
                                "policy_version": d.policy_version, "checks": d.checks}
                      for d in decisions}
    return data


def _c2pa_live(env: Env, video: VideoRecord) -> dict:
    """Re-verify the stored bytes: the record says what was signed, this says what is there."""
    try:
        from provenance.verify import verify_mp4
    except ImportError:
        return {"error": "provenance.verify is not available"}
    try:
        result = verify_mp4(env.store.read_mp4(video), env.trust_anchors(), watermark=False)
    except Exception as exc:  # noqa: BLE001 - shown to the moderator, never fatal
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"state": result.state, "manifest_id": result.manifest_id, "signer": result.signer,
            "ai_generated": result.ai_generated, "failures": list(result.failures)}


def _top_scores(check: dict, n: int = 3) -> str:
    scores = sorted(check.get("scores", {}).items(), key=lambda kv: -float(kv[1]))[:n]
    return ", ".join(f"{k} {float(v):.2f}" for k, v in scores)


@app.command()
def show(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="VIDEO_OR_REPORT"),
    preview: Path | None = typer.Option(None, help="write a contact sheet of frames (PNG)"),
    verify: bool = typer.Option(True, help="re-verify the stored video's Content Credentials"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A video's record, every report on it, its safety scores, C2PA summary and history."""
    env = _env(ctx)
    case = _guard(lambda: mod.case(env.store, ident))
    video = case.video
    live = _c2pa_live(env, video) if verify else None
    if preview is not None:
        sheet = contact_sheet(_guard(lambda: env.store.read_mp4(video)), _guard(
            lambda: env.store.read_photo(video.id)))
        _write_png(preview, sheet)
    if as_json:
        _print_json({
            "video": _video_json(video, case.decisions), "claimed_by": case.claimed_by,
            "reports": [asdict(r) for r in case.reports],
            "events": [asdict(e) for e in case.events],
            "bank_entries": [asdict(b) for b in case.bank_entries],
            "owner_active_strikes": len(case.owner_strikes),
            "c2pa": {"recorded": {"manifest_id": video.manifest_id, "state": video.c2pa_state,
                                  "signer": video.signer}, "live": live},
            "preview": str(preview) if preview else None,
        })
        return

    out.rule(f"video {_e(video.id)}")
    status = video.status + (f" ({video.status_reason})" if video.status_reason else "")
    out.print(f"[b]status[/]   {_e(status)}" + (f"   claimed by {_e(case.claimed_by)}"
                                                 if case.claimed_by else ""))
    if video.deleted_at is not None:
        kept = "media erased" if video.erased_at else "media held as evidence"
        out.print(f"[b]deleted[/]  by its owner {_when(video.deleted_at)}; {kept}")
    out.print(f"[b]owner[/]    {_e(video.owner)}   active strikes: {len(case.owner_strikes)}")
    out.print(f"[b]created[/]  {_when(video.created_at)}   {video.width}x{video.height} "
              f"{video.duration_s:.1f}s @{video.fps}fps, {video.size_bytes} bytes, "
              f"{video.faces} face(s)")
    out.print(f"[b]caption[/]  {_e(repr(video.caption))}")
    out.print(f"[b]model[/]    {_e(video.model_id)} {_e(video.model_version)}")
    out.print(f"[b]photo[/]    sha256 {_e(video.photo_sha256[:16])}..  pdq {_e(video.pdq_hex)}")
    out.print(f"[b]C2PA[/]     {_e(video.manifest_id)}  recorded {_e(video.c2pa_state)}, "
              f"signer {_e(video.signer or '-')}")
    if live is not None:
        if "error" in live:
            out.print(f"           now: [yellow]{_e(live['error'])}[/]")
        else:
            colour = {"Trusted": "green", "Valid": "yellow"}.get(live["state"], "red")
            out.print(f"           now: [{colour}]{_e(live['state'])}[/]"
                      + (f"  failures: {_e('; '.join(live['failures']))}"
                         if live["failures"] else ""))

    safety = _table("safety at generation", "stage", "verdict", "check", "top scores", "review")
    for decision in case.decisions:
        for check in decision.checks:
            _row(safety, decision.stage, check.get("verdict", ""), check.get("check", ""),
                 _top_scores(check), ", ".join(check.get("review", [])))
    out.print(safety)

    reports = _table(f"{len(case.reports)} report(s)", "report", "reporter", "reason", "status",
                     "filed", "details")
    for r in case.reports:
        state = r.status + (f": {r.resolution} by {r.resolved_by}" if r.resolution else "")
        _row(reports, r.id, r.reporter, r.reason, state, _when(r.created_at), r.details)
    out.print(reports)
    if case.bank_entries:
        for entry in case.bank_entries:
            out.print(_e(f"bank {entry.bank}: {entry.id} "
                         + ("active" if entry.active else f"withdrawn by {entry.removed_by}")))
    _events_table(case.events, title="history")
    if preview is not None:
        out.print(f"contact sheet: {_e(preview)}")


def _events_table(events: list, title: str) -> None:
    table = _table(title, "#", "when", "who", "action", "video", "note")
    for e in events:
        _row(table, str(e.id), _when(e.created_at), e.actor, e.action, e.video_id or "-", e.note)
    out.print(table)


# -- decisions -------------------------------------------------------------------------------
@app.command()
def claim(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="VIDEO_OR_REPORT"),
    force: bool = typer.Option(False, help="take over another moderator's claim"),
) -> None:
    """Take a video's reports to work on (for 30 minutes)."""
    env = _env(ctx)
    video_id = _guard(lambda: mod.video_id_for(env.store, ident))
    event = _guard(lambda: mod.claim(env.store, env.moderator, video_id, force=force))
    out.print(f"claimed {_e(video_id)} until {_e(event.data['expires_at'][:19])}")


@app.command()
def release(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="VIDEO_OR_REPORT"),
    force: bool = typer.Option(False),
) -> None:
    """Give a claim back without deciding."""
    env = _env(ctx)
    video_id = _guard(lambda: mod.video_id_for(env.store, ident))
    _guard(lambda: mod.release(env.store, env.moderator, video_id, force=force))
    out.print(f"released {_e(video_id)}")


@app.command()
def resolve(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="VIDEO_OR_REPORT"),
    action: str = typer.Option(..., help="dismiss | takedown | escalate"),
    note: str = typer.Option("", help="why (required for takedown and escalate)"),
    force: bool = typer.Option(False, help="act on a video another moderator has claimed"),
) -> None:
    """Decide a video; all its unresolved reports are resolved together."""
    env = _env(ctx)
    video_id = _guard(lambda: mod.video_id_for(env.store, ident))
    event = _guard(lambda: mod.resolve(env.store, env.moderator, video_id, action, note,
                                       force=force))
    count = len(event.data.get("reports", []))
    if action == "takedown":
        out.print(f"took down {_e(video_id)}: {count} report(s) resolved, photo hash added to "
                  f"bank '{mod.TAKEDOWN_BANK}', strike recorded for {_e(event.data.get('owner'))}")
    else:
        out.print(f"{_e(action)} {_e(video_id)}: {count} report(s)")


@app.command()
def restore(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="VIDEO_OR_REPORT"),
    note: str = typer.Option(..., help="why the takedown is reversed"),
) -> None:
    """Reverse a takedown: serve the video again, withdraw its bank entry and strike."""
    env = _env(ctx)
    video_id = _guard(lambda: mod.video_id_for(env.store, ident))
    event = _guard(lambda: mod.restore(env.store, env.moderator, video_id, note))
    out.print(f"restored {_e(video_id)}: withdrew {len(event.data['bank_entries'])} bank entr(ies) "
              f"and {len(event.data['strikes'])} strike(s)")


@app.command()
def note(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="VIDEO_OR_REPORT"),
    text: str = typer.Argument(..., help="the note"),
) -> None:
    """Add a note to a video's history."""
    env = _env(ctx)
    video_id = _guard(lambda: mod.video_id_for(env.store, ident))
    event = _guard(lambda: mod.add_note(env.store, env.moderator, video_id, text))
    out.print(f"noted on {_e(video_id)} (event {event.id})")


@app.command()
def history(
    ctx: typer.Context,
    ident: str | None = typer.Argument(None, metavar="[VIDEO_OR_REPORT]"),
    by: str | None = typer.Option(None, help="only this moderator's actions"),
    limit: int = typer.Option(50),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Moderation events, newest first (all, or one video's)."""
    env = _env(ctx)
    video_id = _guard(lambda: mod.video_id_for(env.store, ident)) if ident else None
    events = env.store.events(video_id=video_id, actor=by, limit=limit or None)
    if as_json:
        _print_json([asdict(e) for e in events])
    else:
        _events_table(events, title="history")


@app.command()
def stats(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Open and resolved reports, median time to resolution, by reason."""
    env = _env(ctx)
    result = mod.stats(env.store)
    if as_json:
        _print_json(result.to_json())
        return
    median = result.median_resolution_s
    out.print(f"open reports {result.open_reports} on {result.open_videos} video(s) "
              f"({result.escalated_reports} escalated); resolved {result.resolved_reports}; "
              f"median time to resolution "
              + (_duration(median) if median is not None else "-")
              + f"; videos taken down {result.videos_taken_down}")
    table = _table("by reason", "reason", "open", "resolved")
    for reason, counts in result.by_reason.items():
        _row(table, reason, str(counts["open"]), str(counts["resolved"]))
    out.print(table)
    if result.by_resolution:
        out.print("resolutions: " + _e(", ".join(f"{k} {v}" for k, v in
                                                  result.by_resolution.items())))


@app.command()
def strikes(
    ctx: typer.Context, user: str,
    include_withdrawn: bool = typer.Option(False, "--all", help="withdrawn ones too"),
) -> None:
    """A user's strikes (repeat-offender policy)."""
    env = _env(ctx)
    rows = env.store.strikes_for(user, active_only=not include_withdrawn)
    out.print(f"{_e(user)}: {sum(s.active for s in rows)} active strike(s)")
    for s in rows:
        out.print(f"  {_when(s.created_at)}  video {_e(s.video_id)}  "
                  + ("active" if s.active else f"withdrawn {_when(s.withdrawn_at)}"))


# -- hash banks ------------------------------------------------------------------------------
@bank_app.command("list")
def bank_list(
    ctx: typer.Context,
    bank: str | None = typer.Option(None, help="one bank (default: all)"),
    include_removed: bool = typer.Option(False, "--all", help="removed entries too"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Entries of the hash banks."""
    env = _env(ctx)
    entries = env.store.bank_entries(bank, active_only=not include_removed)
    if as_json:
        _print_json([asdict(e) for e in entries])
        return
    table = _table(f"{len(entries)} entr(ies)", "entry", "bank", "pdq", "active", "added", "by",
                   "note")
    for e in entries:
        _row(table, e.id, e.bank, e.pdq_hex[:16] + "..", "yes" if e.active else "no",
             _when(e.created_at), e.added_by or "-", e.note or e.source)
    out.print(table)


def photo_pdq(path: Path) -> str:
    """The PDQ hash of a photo, decoded the way the server decodes uploads (EXIF rotation)."""
    from alive_service.decode import DecodeError, decode_photo
    from safety.hashing import pdq_hash

    try:
        return pdq_hash(decode_photo(path.read_bytes()).rgb)[0]
    except DecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None


@bank_app.command("add")
def bank_add(
    ctx: typer.Context,
    pdq_hex: str | None = typer.Argument(None, metavar="[PDQ_HEX]"),
    bank: str = typer.Option(..., help="bank name"),
    image: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                      help="hash this photo instead of giving PDQ_HEX"),
    note: str = typer.Option(""),
) -> None:
    """Add one PDQ hash (or a photo's) to a bank."""
    env = _env(ctx)
    if (pdq_hex is None) == (image is None):
        err.print("[red]error:[/] give either PDQ_HEX or --image")
        raise typer.Exit(2)
    value = pdq_hex if pdq_hex is not None else _guard(lambda: photo_pdq(image))  # type: ignore[arg-type]
    source = f"image {image.name}" if image is not None else "manual"
    entry = _guard(lambda: mod.bank_add(env.store, env.moderator, bank, value, note, source))
    out.print(f"added {_e(entry.id)} ({_e(entry.pdq_hex)}) to {_e(bank)}")


@bank_app.command("remove")
def bank_remove(
    ctx: typer.Context,
    entry_id: str = typer.Argument(..., metavar="ENTRY"),
    note: str = typer.Option(""),
) -> None:
    """Withdraw an entry (kept, marked inactive)."""
    env = _env(ctx)
    entry = _guard(lambda: mod.bank_remove(env.store, env.moderator, entry_id, note))
    out.print(f"removed {_e(entry.id)} from {_e(entry.bank)}")


@bank_app.command("import")
def bank_import(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="PDQ hex hashes, one a line, optional note after it"),
    bank: str = typer.Option(..., help="bank name"),
) -> None:
    """Import a list of PDQ hashes into a bank, all or nothing."""
    env = _env(ctx)
    text = file.read_text(encoding="utf-8", errors="replace")
    result = _guard(lambda: mod.bank_import(env.store, env.moderator, bank, text,
                                            source=file.name))
    out.print(f"imported {result.added} hash(es) into {_e(bank)}; "
              f"{result.duplicates} already there")


# -- credentials -----------------------------------------------------------------------------
@app.command()
def keygen(out_path: Path = typer.Option(..., "--out", help="where to write the private key"),
           ) -> None:
    """Make a moderator key pair: the private key file (0600) stays with you; give the
    printed public key to the admin to enrol."""
    key = _guard(lambda: _new_key(out_path))
    err.print(f"private key -> {_e(out_path)} (keep it to yourself); public key:")
    print(moderators.public_hex(key))


def _new_key(path: Path) -> Any:
    try:
        return moderators.new_key(path)
    except FileExistsError:
        raise ValueError(f"{path} exists; not overwriting a key") from None


def _admin(env: Env, key_path: Path) -> Moderator:
    key = _guard(lambda: moderators.load_private_key(key_path))
    pinned = _guard(lambda: moderators.load_admin_public(env.settings.admin_public_key))
    if moderators.public_hex(key) != pinned:
        err.print(f"[red]not the admin:[/] this key is not the admin key in "
                  f"{_e(env.settings.admin_public_key)}")
        raise typer.Exit(2)
    return Moderator(moderators.ADMIN_ACTOR, key)


@admin_app.command("init")
def admin_init(
    ctx: typer.Context,
    key_out: Path = typer.Option(None, "--key-out",
                                 help="the admin private key (default: beside the public one; "
                                      "in production keep it offline)"),
    rotate: bool = typer.Option(False, "--rotate", help="replace the current admin key"),
) -> None:
    """Make the admin key pair; the public half goes where the installation looks for it.
    With --rotate, a new admin key becomes the current one and the old public key stays
    listed below it (still trusted for what it signed)."""
    env = _env(ctx)
    public_path = env.settings.admin_public_key
    earlier = public_path.read_text() if public_path.exists() else ""
    if earlier and not rotate:
        err.print(f"[red]refused:[/] {_e(public_path)} exists; not replacing the admin key "
                  "(--rotate makes a new one and keeps trusting the old)")
        raise typer.Exit(1)
    if rotate and key_out is None:
        err.print("[red]error:[/] --rotate needs --key-out for the new private key")
        raise typer.Exit(2)
    key = _guard(lambda: _new_key(key_out or public_path.with_suffix(".key")))
    public_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_path.write_text(moderators.public_hex(key) + "\n" + earlier)
    err.print(f"admin public key -> {_e(public_path)}; private key -> "
              f"{_e(key_out or public_path.with_suffix('.key'))}")


@admin_app.command("enrol")
def admin_enrol(
    ctx: typer.Context, name: str, public_key: str,
    admin_key: Path = typer.Option(..., "--admin-key", envvar="ALIVE_ADMIN_KEY"),
) -> None:
    """Enrol a moderator: NAME (her user name) and the public key `keygen` printed."""
    env = _env(ctx)
    admin = _admin(env, admin_key)
    record = _guard(lambda: mod.enrol(env.open_store(), admin, name, public_key))
    out.print(f"enrolled {_e(record.name)} (key {_e(record.key_id)})")


@admin_app.command("revoke")
def admin_revoke(
    ctx: typer.Context, name: str,
    admin_key: Path = typer.Option(..., "--admin-key", envvar="ALIVE_ADMIN_KEY"),
) -> None:
    """Revoke every key of a moderator; her credentials are refused from now on."""
    env = _env(ctx)
    admin = _admin(env, admin_key)
    key_ids = _guard(lambda: mod.revoke(env.open_store(), admin, name))
    out.print(f"revoked {len(key_ids)} key(s) of {_e(name)}")


@admin_app.command("list")
def admin_list(ctx: typer.Context) -> None:
    """Enrolled moderator keys."""
    env = _env(ctx)
    table = _table("moderator keys", "name", "key", "enrolled", "revoked")
    for record in env.open_store().moderator_keys():
        _row(table, record.name, record.key_id, _when(record.enrolled_at),
             _when(record.revoked_at))
    out.print(table)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check every event's hash, link and signature; name each rewritten, deleted or
    inserted row. Exit 1 when anything is wrong."""
    env = _env(ctx)
    admins = _guard(lambda: moderators.load_admin_publics(env.settings.admin_public_key))
    result = mod.audit(env.open_store(), admins)
    for problem in result.problems:
        out.print(f"[red]TAMPERED[/] {_e(problem)}")
    summary = (f"{result.events} event(s), head {result.head}"
               + (f", {result.legacy} from before signing" if result.legacy else ""))
    if result.ok:
        out.print(f"[green]ok[/] {summary}")
        return
    out.print(f"{len(result.problems)} problem(s); {summary}")
    raise typer.Exit(1)


# -- the contact sheet -----------------------------------------------------------------------
def contact_sheet(mp4: bytes, photo: bytes | None, frames: int = 8, tile: int = 320
                  ) -> np.ndarray:
    """The source photo and ``frames`` evenly spaced frames, tiled 3 across (RGB)."""
    import av
    import cv2
    import numpy as np

    def thumb(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        scale = tile / max(h, w)
        return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)

    decoded: list[tuple[float, np.ndarray]] = []
    with av.open(io.BytesIO(mp4)) as container:
        for frame in container.decode(video=0):
            # Thumbnails only: a 72-frame 720p clip would otherwise hold ~200 MB.
            decoded.append((float(frame.time or 0.0), thumb(frame.to_ndarray(format="rgb24"))))
    if not decoded:
        raise ValueError("the video has no frames")
    picks = sorted({round(i * (len(decoded) - 1) / max(frames - 1, 1)) for i in range(frames)})
    tiles = [(f"t={decoded[i][0]:.2f}s", decoded[i][1]) for i in picks]
    if photo:
        # As the pipeline saw it: HEIC/AVIF, rotation and colour profile handled.
        from alive_service.decode import decode_photo

        source = decode_photo(photo).rgb
        tiles.insert(0, ("source photo", thumb(source)))
    cols = 3
    rows = -(-len(tiles) // cols)
    cell_h = max(t.shape[0] for _, t in tiles) + 22
    sheet = np.full((rows * cell_h, cols * tile, 3), 24, dtype=np.uint8)
    for n, (label, image) in enumerate(tiles):
        y, x = (n // cols) * cell_h, (n % cols) * tile
        sheet[y + 22 : y + 22 + image.shape[0], x : x + image.shape[1]] = image
        cv2.putText(sheet, label, (x + 6, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (235, 235, 235), 1, cv2.LINE_AA)
    return sheet


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, "PNG")


if __name__ == "__main__":
    app()
