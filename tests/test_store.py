"""Storage keeps what the service promises, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from alive_service.store import (
    Conflict,
    DecisionRecord,
    NotFound,
    SqlStore,
    VideoRecord,
    new_id,
    schema,
    upgrade,
)
from alive_service.store.index import BankIndex
from alive_service.vocabulary import SafetyStage, Verdict


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> SqlStore:
    upgrade(db_url)
    return SqlStore(db_url, tmp_path / "blobs")


def a_video(owner: str = "alice", key: str | None = None) -> VideoRecord:
    return VideoRecord(
        id=new_id(), owner=owner, status="ready", caption="clouds", model_id="alive-motion",
        model_version="1", model_sha256="0" * 64, params={"seed": 1}, photo_sha256="a" * 64,
        photo_mime="image/jpeg", pdq_hex="f" * 64, width=640, height=360, fps=24, frames=72,
        size_bytes=0, video_sha256="", manifest_id="urn:c2pa:" + new_id(), c2pa_state="Valid",
        signer="CN=test", idempotency_key=key,
        request_fingerprint="fp1" if key else None,
    )


def test_a_stored_video_reads_back_with_its_bytes(store: SqlStore) -> None:
    stored = store.add_video(a_video(), b"mp4 bytes", b"photo bytes")
    assert stored.size_bytes == len(b"mp4 bytes")
    again = store.get_video(stored.id)
    assert again is not None and again.params == {"seed": 1} and again.created_at is not None
    assert store.read_mp4(again) == b"mp4 bytes"
    assert store.find_by_manifest(stored.manifest_id) == again


def test_the_same_idempotency_key_gives_the_same_video_and_no_duplicate(store: SqlStore) -> None:
    key = new_id("k")
    first = store.add_video(a_video(key=key), b"one", b"photo")
    second = store.add_video(a_video(key=key), b"two", b"photo")
    assert second.id == first.id
    assert store.read_mp4(second) == b"one"
    with pytest.raises(Conflict):
        store.add_video(replace(a_video(key=key), request_fingerprint="other"), b"x", b"y")
    # Another user may use the same key for their own video.
    assert store.add_video(a_video(owner="bob", key=key), b"b", b"p").id != first.id


def a_decision(request_id: str, stage: SafetyStage, verdict: Verdict = Verdict.ALLOW
               ) -> DecisionRecord:
    return DecisionRecord(request_id=request_id, user="alice", stage=stage, verdict=verdict,
                          category=None, policy_version="p1",
                          checks=[{"check": stage.value, "verdict": verdict.value}])


def test_each_decision_is_written_once_and_linked_to_the_video_it_allowed(
    store: SqlStore,
) -> None:
    request_id, refused_id = new_id("req_"), new_id("req_")
    for stage in SafetyStage:
        store.record_decision(a_decision(request_id, stage))
    store.record_decision(a_decision(refused_id, SafetyStage.CAPTION, Verdict.BLOCK))
    video = store.add_video(a_video(), b"v", b"p", request_id=request_id)
    decisions = store.decisions_for_video(video.id)
    assert [d.stage for d in decisions] == list(SafetyStage)
    assert all(d.request_id == request_id and d.video_id == video.id for d in decisions)
    assert decisions[0].checks == [{"check": "caption", "verdict": "allow"}]
    # A refused request's decision stays on record, linked to nothing.
    with store.engine.connect() as conn:
        refused = conn.execute(select(schema.Decision.verdict, schema.Decision.video_id)
                               .where(schema.Decision.request_id == refused_id)).all()
    assert [tuple(r) for r in refused] == [("block", None)]


def test_a_second_report_by_the_same_user_updates_the_first(store: SqlStore) -> None:
    video = store.add_video(a_video(), b"v", b"p")
    first, updated = store.upsert_report(video.id, "carol", "spam", "")
    assert not updated
    second, updated = store.upsert_report(video.id, "carol", "nudity", "on second look")
    assert updated and second.id == first.id and second.reason == "nudity"
    assert len(store.reports_for(video.id)) == 1
    with pytest.raises(NotFound):
        store.upsert_report("0123456789abcdef", "carol", "spam", "")


def test_concurrent_reports_from_many_users_all_land(store: SqlStore) -> None:
    video = store.add_video(a_video(), b"v", b"p")
    errors: list[Exception] = []

    def report(user: str) -> None:
        try:
            store.upsert_report(video.id, user, "hate", "")
            store.upsert_report(video.id, user, "hate", "again")
        except Exception as exc:  # pragma: no cover - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(f"user{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.reports_for(video.id)) == 12


def test_a_near_identical_hash_matches_the_takedown_bank(store: SqlStore) -> None:
    entry = store.add_bank_entry("takedowns", "0f" * 32, source="test")
    near = "0e" + "0f" * 31  # one bit away
    index = BankIndex(store)
    match = index.nearest(near, 31)
    assert match is not None and match.entry_id == entry.id and match.distance == 1
    assert match.bank == "takedowns"
    assert index.nearest("f0" * 32, 31) is None


def test_a_bank_change_applies_to_the_very_next_match(store: SqlStore, tmp_path: Path) -> None:
    from alive_service import moderation
    from tests.conftest import enrol_moderators

    mia = enrol_moderators(store, tmp_path, "mia")["mia"]
    photo = "3c" * 32
    index = BankIndex(store)  # one index over time, as a worker process holds it
    assert index.nearest(photo, 31) is None
    entry = moderation.bank_add(store, mia, "takedowns", photo)
    match = index.nearest(photo, 31)  # the matcher sees the new entry at once...
    assert match is not None and match.entry_id == entry.id
    moderation.bank_remove(store, mia, entry.id, note="appeal upheld")
    assert index.nearest(photo, 31) is None  # ...and the withdrawal


def test_lookup_counts_keep_about_an_hour_whoever_never_comes_back(store: SqlStore) -> None:
    from datetime import timedelta

    from alive_service.store import LookupLimits, utcnow

    video = store.add_video(a_video(), b"mp4", b"photo")
    two_hours_ago = utcnow() - timedelta(hours=2)
    with store.engine.begin() as conn:
        conn.execute(schema.IdLookup.__table__.insert(), [
            {"user": f"gone{i}", "missed": True, "created_at": two_hours_ago}
            for i in range(250)])
    for _ in range(3):
        assert store.get_visible_video(video.id, video.owner, LookupLimits()) is not None
    with store.engine.connect() as conn:
        left = conn.execute(schema.IdLookup.__table__.select()).all()
    # Other tests' recent lookups may share this database; the expired ones are all gone.
    assert not [row for row in left if row.user.startswith("gone")]
    assert [row.user for row in left if row.user == video.owner] == [video.owner] * 3


def _members(cls: type) -> dict[str, object]:
    return {name: getattr(cls, name) for name in dir(cls)
            if not name.startswith("_") and callable(getattr(cls, name))}


@pytest.mark.parametrize(("protocol", "implementation"), [
    ("Store", "SqlStore"), ("ModerationTx", "SqlModerationTx")])
def test_the_sql_store_is_exactly_its_contract(protocol: str, implementation: str) -> None:
    """Every public method of the implementation is in the contract (nothing used from
    outside the store lives beside it), and every method of the contract is implemented
    with the same parameters."""
    import inspect

    from alive_service.store import interface, sql

    contract = _members(getattr(interface, protocol))
    implemented = _members(getattr(sql, implementation))
    assert set(implemented) - set(contract) == set(), "public methods outside the contract"
    assert set(contract) - set(implemented) == set(), "contract methods not implemented"
    for name, method in contract.items():
        wanted = list(inspect.signature(method).parameters)  # type: ignore[arg-type]
        assert list(inspect.signature(implemented[name]).parameters) == wanted, name  # type: ignore[arg-type]


def test_callers_use_the_contract_not_the_tables() -> None:
    """Moderation and its CLI type against the store's roles and never reach into the
    schema or the SQL implementation (alive-mod builds its SqlStore in one place)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "alive_service"
    for name in ("moderation.py", "mod_cli.py", "moderators.py", "pipeline.py", "service.py"):
        tree = ast.parse((root / name).read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not modules & {"alive_service.store.schema", "alive_service.store.sql"}, name
        annotations = [ast.unparse(n.annotation) for n in ast.walk(tree)
                       if isinstance(n, ast.arg) and n.annotation is not None]
        assert "SqlStore" not in annotations, name


def test_the_store_depends_on_nothing_above_it() -> None:
    """Storage imports only itself and the vocabulary (and, in the match index alone, the
    safety package's matching engine): no service, moderation or model code."""
    import ast

    root = Path(__file__).resolve().parents[1] / "alive_service" / "store"
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("alive_service"):
                    assert name.startswith(("alive_service.store", "alive_service.vocabulary")), (
                        path.name, name)
                assert not name.startswith("safety") or path.name == "index.py", (path.name, name)
