"""Moderators are enrolled keys; nobody decides their own case; the log shows tampering.

On SQLite and PostgreSQL, through alive_service.moderation and the real ``alive-mod`` CLI.
"""

# ruff: noqa: F811 - pytest fixtures imported from test_moderation, used as parameters
from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from alive_service import moderation as mod
from alive_service import moderators
from alive_service.mod_cli import app
from alive_service.store import Conflict, SqlStore
from tests.conftest import moderator_env

# The storage fixtures of the moderation tests (over conftest's fresh_db).
from tests.test_moderation import a_video, mods, store  # noqa: F401

runner = CliRunner()


def alive_mod(tmp_path: Path, db_url: str, *args: str, login: dict | None = None
              ) -> tuple[int, str]:
    env = {"ALIVE_DATA_DIR": str(tmp_path), "ALIVE_DB_URL": db_url,
           "ALIVE_MODERATOR": None, "ALIVE_MODERATOR_KEY": None, **(login or {})}
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_a_name_is_not_enough_to_act_as_a_moderator(
    store: SqlStore, fresh_db: str, tmp_path: Path, mods: dict,
) -> None:
    video = a_video(store, owner="bob")
    store.upsert_report(video.id, "u1", "spam", "")
    mia = mods["mia"]
    code, output = alive_mod(tmp_path, fresh_db, "queue", login={"ALIVE_MODERATOR": "mia"})
    assert code == 2 and "--key" in output

    # A key nobody enrolled, even under an enrolled name.
    stranger = moderators.Moderator("mia", Ed25519PrivateKey.generate())
    code, output = alive_mod(tmp_path, fresh_db, "queue",
                             login=_login(tmp_path, stranger, "stranger"))
    assert code == 2 and "not a moderator" in output

    # Mia's key under someone else's name.
    code, output = alive_mod(tmp_path, fresh_db, "queue",
                             login=_login(tmp_path, moderators.Moderator("lee", mia.key), "as-lee"))
    assert code == 2 and "not a moderator" in output

    # A row written with only the database credentials has no admin signature.
    forger = Ed25519PrivateKey.generate()
    engine = sqlalchemy.create_engine(fresh_db)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(
            "INSERT INTO moderator_keys (key_id, name, public_key, enrolled_at, enrolment_sig) "
            "VALUES (:k, 'eve', :p, CURRENT_TIMESTAMP, :s)"),
            {"k": moderators.key_id_of(moderators.public_hex(forger)),
             "p": moderators.public_hex(forger), "s": "00" * 64})
    engine.dispose()
    code, output = alive_mod(tmp_path, fresh_db, "queue",
                             login=_login(tmp_path, moderators.Moderator("eve", forger), "eve"))
    assert code == 2 and "not signed by the admin key" in output

    # The real one works; once revoked, no more.
    code, output = alive_mod(tmp_path, fresh_db, "queue", "--json",
                             login=moderator_env(tmp_path, mia))
    assert code == 0 and video.id in output
    admin_key = tmp_path / "auth" / "moderation-admin.key"
    code, output = alive_mod(tmp_path, fresh_db, "admin", "revoke", "mia", "--admin-key",
                             str(admin_key))
    assert code == 0, output
    code, output = alive_mod(tmp_path, fresh_db, "queue", login=moderator_env(tmp_path, mia))
    assert code == 2 and "revoked" in output
    # Only the admin key enrols.
    code, output = alive_mod(tmp_path, fresh_db, "admin", "enrol", "eve",
                             moderators.public_hex(forger), "--admin-key",
                             _key_file(tmp_path, forger, "not-admin"))
    assert code == 2 and "not the admin" in output


def _key_file(tmp_path: Path, key: Ed25519PrivateKey, label: str) -> str:
    path = tmp_path / f"{label}.key"
    moderators.write_private_key(path, key)
    return str(path)


def _login(tmp_path: Path, who: moderators.Moderator, label: str) -> dict[str, str]:
    return {"ALIVE_MODERATOR": who.name, "ALIVE_MODERATOR_KEY": _key_file(tmp_path, who.key,
                                                                          label)}


def test_nobody_decides_a_video_they_own_or_reported(
    store: SqlStore, fresh_db: str, tmp_path: Path, mods: dict,
) -> None:
    own = a_video(store, owner="mia")
    store.upsert_report(own.id, "u1", "spam", "")
    with pytest.raises(Conflict, match="mia owns"):
        mod.resolve(store, mods["mia"], own.id, "dismiss")
    with pytest.raises(Conflict, match="mia owns"):
        mod.claim(store, mods["mia"], own.id)
    reported = a_video(store, owner="bob")
    store.upsert_report(reported.id, "lee", "hate", "")
    with pytest.raises(Conflict, match="lee reported"):
        mod.resolve(store, mods["lee"], reported.id, "takedown", note="mine to judge?")
    # Through the CLI as well; another moderator decides both.
    code, output = alive_mod(tmp_path, fresh_db, "resolve", own.id, "--action", "dismiss",
                             login=moderator_env(tmp_path, mods["mia"]))
    assert code == 1 and "owns" in output
    mod.resolve(store, mods["kim"], own.id, "dismiss")
    mod.resolve(store, mods["kim"], reported.id, "takedown", note="hate symbol")
    with pytest.raises(Conflict, match="lee reported"):
        mod.restore(store, mods["lee"], reported.id, note="changed my mind")
    assert store.get_video(reported.id).status == "taken_down"  # type: ignore[union-attr]


def _tamper(db_url: str, statement: str) -> None:
    """What someone with the database credentials can do: lift the append-only triggers,
    change the log, put the triggers back."""
    engine = sqlalchemy.create_engine(db_url)
    with engine.begin() as conn:
        if db_url.startswith("postgresql"):
            conn.execute(sqlalchemy.text(
                "ALTER TABLE moderation_events DISABLE TRIGGER moderation_events_append_only"))
            conn.execute(sqlalchemy.text(statement))
            conn.execute(sqlalchemy.text(
                "ALTER TABLE moderation_events ENABLE TRIGGER moderation_events_append_only"))
        else:
            triggers = conn.execute(sqlalchemy.text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'moderation_events'")).all()
            for name, _ in triggers:
                conn.execute(sqlalchemy.text(f"DROP TRIGGER {name}"))
            conn.execute(sqlalchemy.text(statement))
            for _, sql in triggers:
                conn.execute(sqlalchemy.text(sql))
    engine.dispose()


def _history(store: SqlStore, mods: dict) -> list[int]:
    ids = []
    for owner in ("bob", "carl", "dana"):
        video = a_video(store, owner=owner)
        store.upsert_report(video.id, "u1", "hate", "")
        ids.append(mod.claim(store, mods["mia"], video.id).id)
        ids.append(mod.resolve(store, mods["mia"], video.id, "takedown", note="hate").id)
    return ids


def test_audit_verify_passes_an_untouched_log(
    store: SqlStore, fresh_db: str, tmp_path: Path, mods: dict,
) -> None:
    _history(store, mods)
    code, output = alive_mod(tmp_path, fresh_db, "audit", "verify")
    assert code == 0 and "ok" in output


@pytest.mark.parametrize("tampering", ["rewrite", "rewrite-and-rehash", "delete", "insert"])
def test_audit_verify_names_the_row_that_was_changed(
    store: SqlStore, fresh_db: str, tmp_path: Path, mods: dict, tampering: str,
) -> None:
    ids = _history(store, mods)
    target = ids[3]  # the second takedown
    if tampering == "rewrite":
        _tamper(fresh_db, f"UPDATE moderation_events SET note = 'spam' WHERE id = {target}")
        expected = [f"event {target} (takedown by mia): content does not match its hash"]
    elif tampering == "rewrite-and-rehash":
        # A careful forger recomputes the hash too: the signature still gives it away.
        from alive_service.store.chain import event_hash

        (row,) = [e for e in store.event_log() if e.id == target]
        digest = event_hash(id=row.id, prev_hash=row.prev_hash or "", video_id=row.video_id,
                            report_id=row.report_id, actor=row.actor, action=row.action,
                            note="spam", data=row.data, created_at=row.created_at,
                            key_id=row.key_id)
        _tamper(fresh_db, f"UPDATE moderation_events SET note = 'spam', hash = '{digest}' "
                          f"WHERE id = {target}")
        expected = [f"event {target} (takedown by mia): signature does not verify",
                    f"event {target + 1} (claim by mia): does not follow event {target}"]
    elif tampering == "delete":
        _tamper(fresh_db, f"DELETE FROM moderation_events WHERE id = {target}")
        expected = [f"event(s) {target} missing", f"event {target + 1} (claim by mia): does "
                    f"not follow event {target - 1}"]
    else:
        last = store.event_log()[-1]
        _tamper(fresh_db,
                "INSERT INTO moderation_events (id, video_id, actor, action, note, data, "
                f"created_at, prev_hash, hash, key_id) VALUES ({last.id + 1}, NULL, 'mia', "
                f"'restore', 'oops', '{{}}', CURRENT_TIMESTAMP, '{last.hash}', '{'ab' * 32}', "
                f"'{mods['mia'].key_id}')")
        expected = [f"event {last.id + 1} (restore by mia): content does not match",
                    f"event {last.id + 1} (restore by mia): signature does not verify"]
    audit = mod.audit(store, moderators.public_hex(_admin_key(tmp_path)))
    assert not audit.ok
    for text in expected:
        assert any(p.startswith(text) for p in audit.problems), (text, audit.problems)
    code, output = alive_mod(tmp_path, fresh_db, "audit", "verify")
    assert code == 1 and "TAMPERED" in output and f"event {expected[0].split()[1]}" in output


def _admin_key(tmp_path: Path) -> Ed25519PrivateKey:
    return moderators.load_private_key(tmp_path / "auth" / "moderation-admin.key")


def test_events_from_before_the_chain_join_it_and_stay_append_only(
    fresh_db: str, tmp_path: Path,
) -> None:
    from alembic import command

    from alive_service.store.migrate import alembic_config

    if fresh_db.startswith("postgresql"):  # the template is already at head: start over
        engine = sqlalchemy.create_engine(fresh_db)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE"))
            conn.execute(sqlalchemy.text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        Path(fresh_db.removeprefix("sqlite:///")).unlink()
    command.upgrade(alembic_config(fresh_db), "0002")
    engine = sqlalchemy.create_engine(fresh_db)
    with engine.begin() as conn:
        for n in range(3):
            conn.execute(sqlalchemy.text(
                "INSERT INTO moderation_events (video_id, actor, action, note, data, created_at)"
                " VALUES (NULL, 'mia', 'note', :note, '{}', CURRENT_TIMESTAMP)"),
                {"note": f"before signing {n}"})
    command.upgrade(alembic_config(fresh_db), "head")
    store = SqlStore(fresh_db, tmp_path / "blobs")
    try:
        admin = Ed25519PrivateKey.generate()
        result = mod.audit(store, moderators.public_hex(admin))
        assert result.ok and (result.events, result.legacy) == (3, 3)
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sqlalchemy.text("UPDATE moderation_events SET note = 'changed'"))
        # New events chain on from the old ones.
        mod.enrol(store, moderators.Moderator(moderators.ADMIN_ACTOR, admin), "mia",
                  moderators.public_hex(Ed25519PrivateKey.generate()))
        result = mod.audit(store, moderators.public_hex(admin))
        assert result.ok and result.events == 4
    finally:
        store.close()
        engine.dispose()


def test_a_rotated_admin_key_keeps_the_history_verifiable(
    store: SqlStore, fresh_db: str, tmp_path: Path, mods: dict,
) -> None:
    _history(store, mods)
    old_admin = tmp_path / "auth" / "moderation-admin.key"
    new_admin = tmp_path / "new-admin.key"
    code, output = alive_mod(tmp_path, fresh_db, "admin", "init", "--rotate", "--key-out",
                             str(new_admin))
    assert code == 0, output
    # Moderators enrolled by the old key still act; the log still verifies.
    code, output = alive_mod(tmp_path, fresh_db, "queue", login=moderator_env(tmp_path,
                                                                            mods["mia"]))
    assert code == 0, output
    newcomer = Ed25519PrivateKey.generate()
    code, output = alive_mod(tmp_path, fresh_db, "admin", "enrol", "noor",
                             moderators.public_hex(newcomer), "--admin-key", str(old_admin))
    assert code == 2 and "not the admin" in output
    code, output = alive_mod(tmp_path, fresh_db, "admin", "enrol", "noor",
                             moderators.public_hex(newcomer), "--admin-key", str(new_admin))
    assert code == 0, output
    code, output = alive_mod(tmp_path, fresh_db, "audit", "verify")
    assert code == 0 and "ok" in output, output
