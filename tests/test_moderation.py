"""Reports and moderation: the queue, the decisions and their history, on SQLite and PostgreSQL.

The unit tests drive alive_service.moderation over a real SqlStore; the last test runs the
whole loop through the real server and the real ``alive-mod`` CLI.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy
from PIL import Image
from sqlalchemy.exc import DBAPIError

from alive_service import moderation as mod
from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from alive_service.store import (
    Conflict,
    NotFound,
    RateLimited,
    SqlStore,
    VideoRecord,
    new_id,
    utcnow,
)
from alive_service.store.index import BankIndex
from alive_service.store.interface import TakenDown
from alive_service.store.sql import REPORTS_PER_HOUR
from tests.conftest import enrol_moderators, moderator_env
from tools.harness import ServerProcess

# -- fixtures --------------------------------------------------------------------------------
# fresh_db (conftest): an empty database at the schema's head per test, SQLite and PostgreSQL.


@pytest.fixture
def store(fresh_db: str, tmp_path: Path) -> Iterator[SqlStore]:
    s = SqlStore(fresh_db, tmp_path / "blobs")
    yield s
    s.close()


@pytest.fixture
def mods(store: SqlStore, tmp_path: Path) -> dict:
    """Four enrolled moderators (keys signed by this data directory's admin key)."""
    return enrol_moderators(store, tmp_path, "mia", "lee", "kim", "ana")


def a_video(store: SqlStore, owner: str = "alice", pdq_hex: str | None = None,
            caption: str = "clouds") -> VideoRecord:
    record = VideoRecord(
        id=new_id(), owner=owner, status="ready", caption=caption, model_id="alive-motion",
        model_version="1", model_sha256="0" * 64, params={}, photo_sha256="a" * 64,
        photo_mime="image/jpeg", pdq_hex=pdq_hex or uuid.uuid4().hex * 2, width=640,
        height=360, fps=24, frames=72, size_bytes=0, video_sha256="",
        manifest_id="urn:c2pa:" + new_id(), c2pa_state="Trusted", signer="CN=test",
    )
    return store.add_video(record, b"mp4 " + record.id.encode(), b"photo " + record.id.encode())


def test_the_quick_head_check_agrees_with_alembic(fresh_db: str) -> None:
    from alembic.script import ScriptDirectory

    from alive_service.store.migrate import alembic_config, current_revision, head_revision

    head = ScriptDirectory.from_config(alembic_config(fresh_db)).get_current_head()
    assert head_revision() == head == current_revision(fresh_db)


# -- intake ----------------------------------------------------------------------------------
def test_reports_beyond_the_hourly_limit_are_refused(store: SqlStore) -> None:
    videos = [a_video(store) for _ in range(REPORTS_PER_HOUR + 1)]
    for video in videos[:REPORTS_PER_HOUR]:
        store.upsert_report(video.id, "eager", "spam", "")
    with pytest.raises(RateLimited) as refused:
        store.upsert_report(videos[-1].id, "eager", "spam", "")
    assert 3500 < refused.value.retry_after_s <= 3600  # when the first one leaves the window
    # The limit is per user: someone else still gets through.
    store.upsert_report(videos[-1].id, "calm", "spam", "")


def test_a_taken_down_video_cannot_be_reported(store: SqlStore, mods: dict) -> None:
    video = a_video(store)
    mod.resolve(store, mods["mia"], video.id, "takedown", note="deepfake of a politician")
    with pytest.raises(TakenDown):
        store.upsert_report(video.id, "carol", "spam", "")
    with pytest.raises(NotFound):
        store.upsert_report("0123456789abcdef", "carol", "spam", "")


def test_many_concurrent_reporters_all_land_while_a_moderator_works(
    store: SqlStore, mods: dict,
) -> None:
    video = a_video(store)
    other = a_video(store)
    store.upsert_report(other.id, "seed", "spam", "")
    errors: list[Exception] = []

    def report(user: str) -> None:
        try:
            for reason in ("hate", "violence", "hate"):
                store.upsert_report(video.id, user, reason, "")
        except Exception as exc:  # pragma: no cover - the assertion shows it
            errors.append(exc)

    def moderate() -> None:
        try:
            for _ in range(5):
                mod.claim(store, mods["mia"], other.id)
                mod.release(store, mods["mia"], other.id)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(f"user{i}",)) for i in range(16)]
    threads.append(threading.Thread(target=moderate))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reports = store.reports_for(video.id)
    assert len(reports) == 16 and {r.reason for r in reports} == {"hate"}


_REPORT_FOREVER = """
import sys
from pathlib import Path
from alive_service.store import SqlStore
store = SqlStore(sys.argv[1], Path(sys.argv[2]))
videos = sys.argv[3].split(",")
for i in range(100_000):
    report, _ = store.upsert_report(videos[i % len(videos)], f"user{i}", "spam", "")
    print(report.id, flush=True)  # acknowledged: committed
"""


def test_acknowledged_reports_survive_the_process_being_killed(
    store: SqlStore, fresh_db: str, tmp_path: Path
) -> None:
    videos = [a_video(store).id for _ in range(3)]
    writer = subprocess.Popen(
        [sys.executable, "-c", _REPORT_FOREVER, fresh_db, str(tmp_path / "blobs"),
         ",".join(videos)], stdout=subprocess.PIPE, text=True,
    )
    assert writer.stdout is not None
    acknowledged = [writer.stdout.readline().strip() for _ in range(25)]
    writer.kill()  # SIGKILL, mid-stream: no clean shutdown
    acknowledged += [line.strip() for line in writer.stdout if line.strip()]
    writer.wait()
    assert all(store.get_report(report_id) is not None for report_id in acknowledged)
    assert len(store.list_reports()) >= len(acknowledged)


# -- the queue -------------------------------------------------------------------------------
def test_the_queue_puts_the_worst_harm_first_then_more_reporters_then_the_oldest(
    store: SqlStore, mods: dict,
) -> None:
    spam_by_many = a_video(store)
    for user in ("a", "b", "c", "d"):
        store.upsert_report(spam_by_many.id, user, "spam", "")
    older_hate = a_video(store)
    store.upsert_report(older_hate.id, "a", "hate", "")
    newer_hate = a_video(store)
    store.upsert_report(newer_hate.id, "a", "hate", "")
    hate_by_two = a_video(store)
    store.upsert_report(hate_by_two.id, "a", "hate", "")
    store.upsert_report(hate_by_two.id, "b", "harassment", "")
    child = a_video(store)
    store.upsert_report(child.id, "a", "minor_safety", "")

    order = [item.video_id for item in mod.queue(store)]
    assert order == [child.id, hate_by_two.id, older_hate.id, newer_hate.id, spam_by_many.id]
    top = mod.queue(store)[1]
    assert top.reporters == 2 and top.reasons == {"hate": 1, "harassment": 1}

    # An escalation jumps the queue; filters narrow it.
    mod.resolve(store, mods["mia"], spam_by_many.id, "escalate", note="coordinated campaign?")
    assert mod.queue(store)[0].video_id == spam_by_many.id
    assert [i.video_id for i in mod.queue(store, status="escalated")] == [spam_by_many.id]
    assert {i.video_id for i in mod.queue(store, reason="hate")} == {
        older_hate.id, newer_hate.id, hate_by_two.id}


def test_resolving_a_video_resolves_every_report_on_it(store: SqlStore, mods: dict) -> None:
    video = a_video(store)
    for user in ("u1", "u2", "u3"):
        store.upsert_report(video.id, user, "nudity", "")
    event = mod.resolve(store, mods["mia"], video.id, "dismiss", note="a classical statue")
    reports = store.reports_for(video.id)
    assert {(r.status, r.resolution, r.resolved_by) for r in reports} == {
        ("resolved", "dismiss", "mia")}
    assert sorted(event.data["reports"]) == sorted(r.id for r in reports)
    assert mod.queue(store) == []
    assert [i.video_id for i in mod.queue(store, status="resolved")] == [video.id]
    with pytest.raises(Conflict):
        mod.resolve(store, mods["mia"], video.id, "dismiss")
    # A fresh report after the decision puts the video back in the queue.
    store.upsert_report(video.id, "u2", "nudity", "it is not a statue")
    (item,) = mod.queue(store)
    assert item.video_id == video.id and item.reporters == 1


# -- takedown and restore --------------------------------------------------------------------
def test_a_takedown_stops_the_video_banks_its_photo_and_strikes_the_owner(
    store: SqlStore, mods: dict,
) -> None:
    video = a_video(store, owner="bob", pdq_hex="0f" * 32)
    for user in ("u1", "u2"):
        store.upsert_report(video.id, user, "impersonation", "")
    mod.resolve(store, mods["mia"], video.id, "takedown", note="deepfake of a real person")

    after = store.get_video(video.id)
    assert after is not None and after.status == "taken_down"
    assert {r.resolution for r in store.reports_for(video.id)} == {"takedown"}
    # The same photo, or one a few bits away (resized, recompressed), now matches.
    match = BankIndex(store).nearest("0e" + "0f" * 31, 31)
    assert match is not None and match.bank == mod.TAKEDOWN_BANK
    assert [s.video_id for s in store.strikes_for("bob")] == [video.id]
    with pytest.raises(Conflict):
        mod.resolve(store, mods["mia"], video.id, "takedown", note="again")


def test_restore_reverses_a_takedown_and_keeps_the_record(
    store: SqlStore, mods: dict,
) -> None:
    video = a_video(store, owner="bob", pdq_hex="0f" * 32)
    store.upsert_report(video.id, "u1", "copyright", "")
    mod.resolve(store, mods["mia"], video.id, "takedown", note="looks like a film still")
    mod.restore(store, mods["lee"], video.id, note="appeal upheld: the owner's own photo")

    after = store.get_video(video.id)
    assert after is not None and after.status == "ready"
    assert BankIndex(store).nearest("0f" * 32, 31) is None
    assert store.strikes_for("bob") == []
    # Withdrawn, not deleted.
    (entry,) = store.bank_entries_for_video(video.id)
    assert not entry.active and entry.removed_by == "lee"
    (strike,) = store.strikes_for("bob", active_only=False)
    assert not strike.active and strike.withdrawn_at is not None
    assert [e.action for e in store.events_for(video.id)] == ["takedown", "restore"]
    with pytest.raises(Conflict):
        mod.restore(store, mods["lee"], video.id, note="twice")
    # A second takedown strikes again; restore needs a note.
    mod.resolve(store, mods["mia"], video.id, "takedown", note="a different film after all")
    assert len(store.strikes_for("bob")) == 1
    with pytest.raises(ValueError):
        mod.restore(store, mods["lee"], video.id, note=" ")


def test_a_refused_takedown_changes_nothing(store: SqlStore, mods: dict) -> None:
    video = a_video(store, owner="bob")
    store.upsert_report(video.id, "u1", "violence", "")
    mod.claim(store, mods["mia"], video.id)
    with pytest.raises(Conflict, match="claimed by mia"):
        mod.resolve(store, mods["lee"], video.id, "takedown", note="gore")
    after = store.get_video(video.id)
    assert after is not None and after.status == "ready" and after.claimed_by == "mia"
    assert store.strikes_for("bob") == [] and store.bank_entries(mod.TAKEDOWN_BANK) == []
    assert [e.action for e in store.events_for(video.id)] == ["claim"]
    assert {r.status for r in store.reports_for(video.id)} == {"open"}


def test_two_moderators_taking_down_at_once_make_one_takedown(store: SqlStore, mods: dict
                                                              ) -> None:
    video = a_video(store, owner="bob")
    store.upsert_report(video.id, "u1", "violence", "")
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def take_down(moderator: str) -> None:
        moderator = mods[moderator]
        start.wait()
        try:
            mod.resolve(store, moderator, video.id, "takedown", note="gore", force=True)
            outcomes.append("done")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=take_down, args=(m,)) for m in ("mia", "lee", "kim", "ana")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "done"]
    assert len(store.strikes_for("bob")) == 1
    assert len(store.bank_entries(mod.TAKEDOWN_BANK)) == 1
    assert [e.action for e in store.events_for(video.id)] == ["takedown"]


# -- claims and history ----------------------------------------------------------------------
def test_a_claim_conflicts_while_another_moderator_holds_it(
    store: SqlStore, mods: dict,
) -> None:
    video = a_video(store)
    store.upsert_report(video.id, "u1", "hate", "")
    mod.claim(store, mods["mia"], video.id)
    mod.claim(store, mods["mia"], video.id)  # renewing one's own claim is fine
    with pytest.raises(Conflict, match="claimed by mia"):
        mod.claim(store, mods["lee"], video.id)
    (item,) = mod.queue(store)
    assert item.status == "claimed" and item.claimed_by == "mia"
    assert mod.queue(store, status="open") == []
    # A claim lapses, and --force takes one over.
    later = utcnow() + mod.CLAIM_TTL + timedelta(minutes=1)
    mod.claim(store, mods["lee"], video.id, now=later)
    with pytest.raises(Conflict, match="claimed by lee"):
        mod.resolve(store, mods["mia"], video.id, "dismiss", now=later)
    event = mod.claim(store, mods["mia"], video.id, force=True, now=later)
    assert event.data["taken_from"] == "lee"
    mod.resolve(store, mods["mia"], video.id, "dismiss", now=later)
    assert store.get_video(video.id).claimed_by is None  # type: ignore[union-attr]


def test_every_action_is_an_event_and_history_cannot_be_rewritten(
    store: SqlStore, fresh_db: str, mods: dict,
) -> None:
    video = a_video(store)
    store.upsert_report(video.id, "u1", "hate", "")
    mod.claim(store, mods["mia"], video.id)
    mod.add_note(store, mods["mia"], video.id, "asked a colleague about the symbol")
    mod.resolve(store, mods["mia"], video.id, "escalate", note="needs the hate-speech team")
    mod.resolve(store, mods["lee"], video.id, "takedown", note="hate symbol")
    mod.restore(store, mods["lee"], video.id, note="the symbol is a festival logo")
    events = store.events_for(video.id)
    assert [(e.actor, e.action) for e in events] == [
        ("mia", "claim"), ("mia", "note"), ("mia", "escalate"), ("lee", "takedown"),
        ("lee", "restore")]
    assert events[3].note == "hate symbol" and events[3].created_at is not None

    engine = sqlalchemy.create_engine(fresh_db)
    try:
        for statement in (
            "UPDATE moderation_events SET note = 'nothing happened'",
            "DELETE FROM moderation_events",
            "DELETE FROM reports",
            "DELETE FROM hash_bank_entries",
            "DELETE FROM strikes",
            *(["TRUNCATE moderation_events, reports, hash_bank_entries, strikes CASCADE"]
              if fresh_db.startswith("postgresql") else []),
        ):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()
    assert store.events_for(video.id) == events


# -- statistics and hash banks ---------------------------------------------------------------
def test_stats_count_open_and_resolved_and_time_to_resolution(
    store: SqlStore, mods: dict,
) -> None:
    reported_at = utcnow()
    first, second, third = a_video(store), a_video(store), a_video(store)
    store.upsert_report(first.id, "u1", "spam", "")
    store.upsert_report(first.id, "u2", "spam", "")
    store.upsert_report(second.id, "u1", "nudity", "")
    store.upsert_report(third.id, "u1", "minor_safety", "")
    mod.resolve(store, mods["mia"], first.id, "dismiss", now=reported_at + timedelta(hours=1))
    mod.resolve(store, mods["mia"], second.id, "takedown", note="explicit",
                now=reported_at + timedelta(hours=3))

    stats = mod.stats(store)
    assert (stats.open_reports, stats.open_videos, stats.resolved_reports) == (1, 1, 3)
    assert stats.by_resolution == {"dismiss": 2, "takedown": 1}
    assert stats.by_reason["spam"] == {"open": 0, "resolved": 2}
    assert stats.by_reason["minor_safety"] == {"open": 1, "resolved": 0}
    assert stats.median_resolution_s is not None
    assert abs(stats.median_resolution_s - 3600) < 60  # reports 1 h, 1 h, 3 h after filing
    assert stats.videos_taken_down == 1


def test_bank_import_adds_new_hashes_once_and_refuses_a_bad_file(
    store: SqlStore, mods: dict,
) -> None:
    a, b, c = "ab" * 32, "cd" * 32, "ef" * 32
    result = mod.bank_import(store, mods["mia"], "ncmec-sample", f"# from a partner\n{a},first\n"
                             f"{b.upper()} second one\n\n{a}\n", source="partner.txt")
    assert (result.added, result.duplicates) == (2, 1)
    entries = store.bank_entries("ncmec-sample")
    assert {(e.pdq_hex, e.note) for e in entries} == {(a, "first"), (b, "second one")}

    with pytest.raises(ValueError, match="line 2"):
        mod.bank_import(store, mods["mia"], "ncmec-sample", f"{c}\nnot-a-hash\n", source="x")
    assert len(store.bank_entries("ncmec-sample")) == 2  # nothing from the bad file

    assert BankIndex(store).nearest(a, 0) is not None
    removed = mod.bank_remove(store, mods["mia"], entries[0].id, note="false positive")
    assert not removed.active
    assert BankIndex(store).nearest(entries[0].pdq_hex, 0) is None
    assert len(store.bank_entries("ncmec-sample", active_only=False)) == 2
    with pytest.raises(Conflict):
        mod.bank_remove(store, mods["mia"], entries[0].id)
    assert [e.action for e in reversed(store.events(actor="mia"))] == [
        "bank_import", "bank_remove"]


def test_the_cli_keeps_banks_notes_and_history_and_wants_a_name(
    store: SqlStore, fresh_db: str, tmp_path: Path, landscape_jpeg: bytes, mods: dict,
) -> None:
    from typer.testing import CliRunner

    from alive_service.mod_cli import app, photo_pdq

    video = a_video(store, owner="bob")
    store.upsert_report(video.id, "u1", "harassment", "")
    env = {"ALIVE_DATA_DIR": str(tmp_path), "ALIVE_DB_URL": fresh_db}
    runner = CliRunner()

    def run(*args: str, code: int = 0, who: str | None = "mia") -> str:
        login = moderator_env(tmp_path, mods[who]) if who else {}
        credentials = (["--moderator", who, "--key", login["ALIVE_MODERATOR_KEY"]]
                       if who else [])
        result = runner.invoke(app, [*credentials, *args], env=env)
        assert result.exit_code == code, result.output
        return result.output

    assert "--moderator" in run("queue", who=None, code=2)
    hashes = tmp_path / "partner.txt"
    hashes.write_text(f"{'ab' * 32} known bad\n{'cd' * 32}\n")
    assert "imported 2" in run("bank", "import", str(hashes), "--bank", "partner")
    assert "refused" in run("bank", "add", "ab" * 32, "--bank", "partner", code=1)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(landscape_jpeg)
    run("bank", "add", "--image", str(photo), "--bank", "takedowns")
    match = BankIndex(store).nearest(photo_pdq(photo), 0)
    assert match is not None and match.bank == "takedowns"
    (entry,) = [e for e in json.loads(run("bank", "list", "--json")) if e["note"] == "known bad"]
    run("bank", "remove", entry["id"], "--note", "false positive")
    assert len(json.loads(run("bank", "list", "--bank", "partner", "--all", "--json"))) == 2
    assert len(json.loads(run("bank", "list", "--bank", "partner", "--json"))) == 1

    report_id = store.reports_for(video.id)[0].id
    run("claim", report_id)  # a report id stands for its video
    assert "claimed by mia" in run("claim", video.id, who="lee", code=1)
    run("note", video.id, "asked the reporter for context")
    run("resolve", video.id, "--action", "dismiss")
    history = json.loads(run("history", video.id, "--json"))
    assert [e["action"] for e in history] == ["dismiss", "note", "claim"]
    stats = json.loads(run("stats", "--json"))
    assert stats["resolved_reports"] == 1 and stats["by_resolution"] == {"dismiss": 1}
    assert "1 report(s)" in run("show", video.id, "--no-verify")


# -- the whole loop: real server, real CLI ---------------------------------------------------
def _mod_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "alive_service.mod_cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"alive-mod {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def _refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as failed:
        call()
    reason, _, _ = error_info(failed.value)
    return failed.value.code(), reason, failed.value.details() or ""


def _recompressed(photo: bytes) -> bytes:
    image = Image.open(io.BytesIO(photo))
    smaller = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
    buffer = io.BytesIO()
    smaller.save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


@pytest.mark.integration
def test_reports_to_takedown_to_restore_through_the_server_and_the_cli(
    fresh_db: str, tmp_path: Path, model_dir: Path, landscape_jpeg: bytes
) -> None:
    data_dir = tmp_path / "data"
    small = pb.AnimateOptions(long_side=320, duration_s=1)
    with ServerProcess(data_dir=data_dir, db_url=fresh_db) as server, AliveClient(
        server.addr, token=server.token("alice")
    ) as alice:
        video_id = alice.animate(landscape_jpeg, caption="clouds over the temple",
                                 options=small).info.video_id
        original = alice.get_video(video_id)
        alice.share(video_id, add=["u1", "u2", "u3", "u4"])

        # Three users report it at once.
        def report(user: str, reason: int) -> None:
            with AliveClient(server.addr, token=server.token(user)) as client:
                client.report(video_id, reason, details=f"reported by {user}")

        reporters = [threading.Thread(target=report, args=args) for args in
                     (("u1", pb.REPORT_REASON_IMPERSONATION), ("u2", pb.REPORT_REASON_NUDITY),
                      ("u3", pb.REPORT_REASON_SPAM))]
        for t in reporters:
            t.start()
        for t in reporters:
            t.join()

        staff = SqlStore(fresh_db, data_dir / "blobs")
        mia = enrol_moderators(staff, data_dir, "mia")["mia"]
        staff.close()
        env = dict(os.environ, ALIVE_DATA_DIR=str(data_dir), ALIVE_DB_URL=fresh_db,
                   **moderator_env(data_dir, mia))
        (item,) = json.loads(_mod_cli(env, "queue", "--json").stdout)
        assert item["video_id"] == video_id and item["reporters"] == 3
        assert item["reasons"] == {"impersonation": 1, "nudity": 1, "spam": 1}

        sheet = tmp_path / "sheet.png"
        case = json.loads(_mod_cli(env, "show", video_id, "--json", "--preview",
                                   str(sheet)).stdout)
        assert len(case["reports"]) == 3 and case["video"]["owner"] == "alice"
        assert case["video"]["safety"]["image"]["verdict"] == "allow"
        assert case["c2pa"]["live"]["state"] == "Trusted"
        assert case["c2pa"]["live"]["manifest_id"] == case["video"]["manifest_id"]
        assert Image.open(sheet).size[0] >= 640

        _mod_cli(env, "resolve", video_id, "--action", "takedown", "--note",
                 "deepfake of a real person")
        code, reason, message = _refusal(lambda: alice.get_video(video_id))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "TAKEN_DOWN")
        assert "taken down" in message
        with AliveClient(server.addr, token=server.token("u4")) as late:
            code, reason, _ = _refusal(lambda: late.report(video_id, pb.REPORT_REASON_SPAM))
        # Only the owner learns of the takedown; to others it is as if it never existed.
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND")
        # The same photo, and a smaller recompressed copy, are refused before generation.
        for photo in (landscape_jpeg, _recompressed(landscape_jpeg)):
            code, reason, _ = _refusal(lambda p=photo: alice.animate(p, options=small))
            assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "POLICY_BLOCKED")

        _mod_cli(env, "restore", video_id, "--note", "appeal upheld: her own photo")
        assert alice.get_video(video_id) == original
        assert alice.animate(_recompressed(landscape_jpeg), options=small).info.video_id
