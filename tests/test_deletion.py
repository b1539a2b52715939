"""Owners list and delete their videos; moderation keeps what it needs (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alive_service import moderation as mod
from alive_service import pages
from alive_service.store import LookupLimits, NotFound, SqlStore, new_id, upgrade
from tests.conftest import enrol_moderators
from tests.test_store import a_video


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> SqlStore:
    upgrade(db_url)
    return SqlStore(db_url, tmp_path / "blobs")


def blob_files(store: SqlStore) -> set[str]:
    return {p.name for p in store.blobs.root.glob("*/*") if not p.name.startswith(".")}


def test_deleting_erases_the_mp4_and_the_photo_and_keeps_what_moderation_needs(
    store: SqlStore,
) -> None:
    owner = new_id("u")
    mp4, photo = b"mp4 to erase " + new_id().encode(), b"photo to erase " + new_id().encode()
    video = store.add_video(replace(a_video(owner, key="k1"), caption="my holiday"), mp4, photo)
    keys = {hashlib.sha256(mp4).hexdigest(), hashlib.sha256(photo).hexdigest()}
    assert keys <= blob_files(store)
    deletion = store.delete_video(video.id, owner)
    assert not keys & blob_files(store)
    assert deletion.hold == ""
    row = store.get_video(video.id)
    assert row is not None and row.deleted_at is not None and row.erased_at is not None
    # Gone for everyone, the owner included, however it is looked up.
    assert not store.visible_to(row, owner)
    assert store.get_visible_video(video.id, owner, LookupLimits(100, 100)) is None
    assert row.caption == "" and row.idempotency_key is None
    # What a moderator or a hash-sharing programme still needs:
    assert (row.owner, row.pdq_hex, row.photo_sha256, row.manifest_id) == (
        owner, video.pdq_hex, video.photo_sha256, video.manifest_id)
    (event,) = store.events_for(video.id)
    assert (event.action, event.actor, event.data) == (
        "owner_delete", owner, {"hold": "", "erased": True})
    # The key is free again: a retry makes a new video instead of finding the deleted one.
    assert store.find_idempotent(owner, "k1") is None
    with pytest.raises(NotFound, match="erased"):
        store.read_mp4(row)
    with pytest.raises(NotFound, match="erased"):
        store.read_photo(row.id)


def test_only_the_owner_deletes_and_only_once(store: SqlStore) -> None:
    video = store.add_video(a_video("alice"), b"v" + new_id().encode(), b"p")
    with pytest.raises(NotFound):
        store.delete_video(video.id, "mallory")
    store.delete_video(video.id, "alice")
    with pytest.raises(NotFound):
        store.delete_video(video.id, "alice")
    with pytest.raises(NotFound):
        store.delete_video("0123456789abcdef", "alice")


def test_a_photo_shared_with_another_live_video_is_not_erased(store: SqlStore) -> None:
    photo = b"the same photo " + new_id().encode()
    first = store.add_video(a_video("alice"), b"first " + new_id().encode(), photo)
    second = store.add_video(a_video("alice"), b"second " + new_id().encode(), photo)
    store.delete_video(first.id, "alice")
    assert store.read_photo(second.id) == photo
    assert store.read_mp4(second).startswith(b"second")


def test_a_reported_video_is_held_as_evidence_until_the_report_is_dismissed(
    store: SqlStore, tmp_path: Path,
) -> None:
    owner = new_id("u")
    mp4 = b"reported " + new_id().encode()
    video = store.add_video(a_video(owner), mp4, b"photo " + new_id().encode())
    store.upsert_report(video.id, "carol", "harassment", "")
    deletion = store.delete_video(video.id, owner)
    assert deletion.hold == "review"
    held = store.get_video(video.id)
    assert held is not None and held.deleted_at is not None and held.erased_at is None
    assert store.read_mp4(held) == mp4  # the moderator can still watch it
    assert store.list_videos(owner, 10) == []  # the owner cannot
    mod1 = enrol_moderators(store, tmp_path, "mod1")["mod1"]
    mod.claim(store, mod1, video.id)
    mod.resolve(store, mod1, video.id, "dismiss")
    released = store.get_video(video.id)
    assert released is not None and released.erased_at is not None
    assert [e.action for e in store.events_for(video.id)] == [
        "owner_delete", "claim", "dismiss", "hold_released"]
    # The owner's deletion and the end of the hold are links of the tamper-evident log too.
    admin = (tmp_path / "auth" / "moderation-admin.pub").read_text()
    audit = mod.audit(store, admin)
    assert audit.ok, audit.problems


def test_a_taken_down_video_keeps_its_media_after_the_owner_deletes_it(
    store: SqlStore, tmp_path: Path,
) -> None:
    moderators = enrol_moderators(store, tmp_path, "mod1", "mod2")
    owner = new_id("u")
    video = store.add_video(a_video(owner), b"bad " + new_id().encode(), b"p " + new_id().encode())
    store.upsert_report(video.id, "carol", "violence", "")
    mod.claim(store, moderators["mod1"], video.id)
    mod.resolve(store, moderators["mod1"], video.id, "takedown", note="graphic violence")
    assert store.delete_video(video.id, owner).hold == "takedown"
    kept = store.get_video(video.id)
    assert kept is not None and kept.erased_at is None and store.read_mp4(kept)
    # A restore ends the reason to keep it: the owner's deletion then takes effect.
    mod.restore(store, moderators["mod2"], video.id, note="on appeal")
    restored = store.get_video(video.id)
    assert restored is not None and restored.erased_at is not None
    assert restored.deleted_at is not None  # restored, but still deleted by its owner


def test_an_owner_lists_their_own_videos_newest_first_page_by_page(store: SqlStore) -> None:
    owner = new_id("u")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    made = [
        store.add_video(replace(a_video(owner), created_at=start + timedelta(seconds=i // 2)),
                        f"v{i} {new_id()}".encode(), b"p")
        for i in range(7)  # pairs share a timestamp: the id breaks the tie
    ]
    store.add_video(a_video("someone else"), b"x " + new_id().encode(), b"p")
    store.delete_video(made[3].id, owner)
    expected = sorted((v for v in made if v.id != made[3].id),
                      key=lambda v: (v.created_at, v.id), reverse=True)
    seen, before = [], None
    while True:
        page = store.list_videos(owner, 2, before)
        seen += page
        if len(page) < 2:
            break
        before = (page[-1].created_at, page[-1].id)
    assert [v.id for v in seen] == [v.id for v in expected]


def test_page_tokens_are_opaque_bound_to_their_user_and_checked() -> None:
    secret = b"s" * 32
    at = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    token = pages.encode_token(secret, "alice", at, "0123456789abcdef")
    assert "alice" not in token and "0123456789abcdef" not in token
    assert pages.decode_token(secret, "alice", token) == (at, "0123456789abcdef")
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for user, bad in (("bob", token), ("alice", forged), ("alice", "!!!"), ("alice", "")):
        with pytest.raises(pages.BadPage) as refused:
            pages.decode_token(secret, user, bad)
        assert refused.value.reason == "BAD_PAGE_TOKEN"
    assert (pages.page_size(0), pages.page_size(5), pages.page_size(10_000)) == (
        pages.DEFAULT_PAGE_SIZE, 5, pages.MAX_PAGE_SIZE)
    with pytest.raises(pages.BadPage):
        pages.page_size(-1)
