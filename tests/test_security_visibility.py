"""Who sees what: a video is its owner's until she shares it; strangers learn nothing.

The real server over gRPC, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from alive_service.store import SqlStore
from alive_service.vocabulary import VideoStatus
from tools.harness import ServerProcess

pytestmark = pytest.mark.integration

SMALL = pb.AnimateOptions(long_side=256, duration_s=1.0)
MISSES_PER_HOUR = 6


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           model_dir: Path) -> Iterator[ServerProcess]:
    db_url = (request.getfixturevalue("pg_databases").new()
              if request.param == "postgres" else "")
    process = ServerProcess(data_dir=tmp_path_factory.mktemp(f"vis-{request.param}"),
                            db_url=db_url,
                            env={"ALIVE_USER_LOOKUP_MISSES_PER_HOUR": str(MISSES_PER_HOUR)})
    with process:
        yield process


@pytest.fixture(scope="module")
def store(server: ServerProcess) -> Iterator[SqlStore]:
    s = server.store()
    yield s
    s.close()


@pytest.fixture(scope="module")
def alices_video(server: ServerProcess, landscape_jpeg: bytes) -> tuple[str, bytes]:
    with AliveClient(server.addr, token=server.token("alice")) as alice:
        made = alice.animate(landscape_jpeg, "clouds over the temple", SMALL)
    return made.info.video_id, made.mp4


def as_user(server: ServerProcess, user: str) -> AliveClient:
    return AliveClient(server.addr, token=server.token(user))


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as failed:
        call()
    return failed.value.code(), error_info(failed.value)[0], failed.value.details() or ""


def missing(video_id: str) -> tuple[grpc.StatusCode, str, str]:
    return grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND", f"no video {video_id}"


def test_a_stranger_is_told_exactly_what_an_unknown_id_gets(
    server: ServerProcess, alices_video: tuple[str, bytes],
) -> None:
    video_id, _ = alices_video
    unknown = "0123456789abcdef"
    with as_user(server, "stranger") as stranger:
        assert refusal(lambda: stranger.get_video(unknown)) == missing(unknown)
        assert refusal(lambda: stranger.get_video(video_id)) == missing(video_id)
        spam = pb.REPORT_REASON_SPAM
        assert refusal(lambda: stranger.report(unknown, spam)) == missing(unknown)
        assert refusal(lambda: stranger.report(video_id, spam)) == missing(video_id)
        assert refusal(lambda: stranger.share(video_id, add=["stranger"])) == missing(video_id)


def test_the_owner_shares_with_named_users_and_can_take_it_back(
    server: ServerProcess, alices_video: tuple[str, bytes],
) -> None:
    video_id, mp4 = alices_video
    with as_user(server, "alice") as alice, as_user(server, "bob") as bob, \
            as_user(server, "carol") as carol:
        assert alice.get_video(video_id) == mp4
        assert alice.share(video_id, add=["bob", "bob", "alice"]) == ["bob"]
        assert bob.get_video(video_id) == mp4
        assert bob.report(video_id, pb.REPORT_REASON_SPAM, "an ad").report_id
        assert refusal(lambda: carol.get_video(video_id)) == missing(video_id)
        # Someone it is shared with may watch, not pass it on.
        code, reason, _ = refusal(lambda: bob.share(video_id, add=["carol"]))
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
        assert refusal(lambda: carol.get_video(video_id)) == missing(video_id)

        assert alice.share(video_id, remove=["bob"]) == []
        assert refusal(lambda: bob.get_video(video_id)) == missing(video_id)
        code, reason, _ = refusal(lambda: alice.share(video_id, add=["not a name!"]))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_USER")


def test_only_the_owner_learns_that_a_video_was_taken_down(
    server: ServerProcess, store: SqlStore, portrait_jpeg: bytes,
) -> None:
    with as_user(server, "dora") as dora, as_user(server, "eve") as eve:
        video_id = dora.animate(portrait_jpeg, "", SMALL).info.video_id
        dora.share(video_id, add=["eve"])
        assert eve.get_video(video_id)
        take_down(store, video_id)
        for call in (lambda: eve.get_video(video_id),
                     lambda: eve.report(video_id, pb.REPORT_REASON_HATE)):
            assert refusal(call) == missing(video_id)
        code, reason, message = refusal(lambda: dora.get_video(video_id))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "TAKEN_DOWN")
        assert "taken down" in message
        code, reason, _ = refusal(lambda: dora.share(video_id, add=["frank"]))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "TAKEN_DOWN")


def test_guessing_video_ids_runs_into_the_lookup_limit(
    server: ServerProcess, alices_video: tuple[str, bytes],
) -> None:
    video_id, mp4 = alices_video
    with as_user(server, "alice") as alice:
        alice.share(video_id, add=["mallory"])
    with as_user(server, "mallory") as mallory:
        for n in range(MISSES_PER_HOUR):
            guess = f"{n:016x}"
            assert refusal(lambda g=guess: mallory.get_video(g)) == missing(guess)
        with pytest.raises(grpc.RpcError) as limited:
            mallory.get_video(f"{99:016x}")
        reason, _, retry = error_info(limited.value)
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason == "LOOKUP_RATE_LIMITED" and retry is not None and retry > 60
        # Once limited, every lookup waits, even of a video she may see (no oracle).
        code, reason, _ = refusal(lambda: mallory.get_video(video_id))
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LOOKUP_RATE_LIMITED")
    with as_user(server, "alice") as alice:  # per user: others are not affected
        assert alice.get_video(video_id) == mp4


def test_a_taken_down_video_never_comes_back_through_an_idempotent_retry(
    server: ServerProcess, store: SqlStore, landscape_jpeg: bytes,
) -> None:
    options = pb.AnimateOptions(long_side=256, duration_s=1.0, seed=7)
    with as_user(server, "gina") as gina:
        first = gina.animate(landscape_jpeg, "lake", options, idempotency_key="k-1")
        take_down(store, first.info.video_id)
        code, reason, _ = refusal(
            lambda: gina.animate(landscape_jpeg, "lake", options, idempotency_key="k-1"))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "TAKEN_DOWN")


def test_a_retry_is_checked_against_the_hash_banks_first(
    server: ServerProcess, store: SqlStore, landscape_jpeg: bytes,
) -> None:
    options = pb.AnimateOptions(long_side=256, duration_s=1.0, seed=8)
    with as_user(server, "hana") as hana:
        first = hana.animate(landscape_jpeg, "", options, idempotency_key="k-2")
        # The photo is banned after the first request (e.g. a partner's hash list).
        entry = store.add_bank_entry("partner", first_pdq(store, first.info.video_id), "test")
        try:
            code, reason, _ = refusal(
                lambda: hana.animate(landscape_jpeg, "", options, idempotency_key="k-2"))
            assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "POLICY_BLOCKED")
        finally:
            from alive_service.store import schema

            with store.engine.begin() as conn:  # other tests animate this photo too
                conn.execute(schema.BankEntry.__table__.update()
                             .where(schema.BankEntry.id == entry.id).values(active=False))


def take_down(store: SqlStore, video_id: str) -> None:
    """The status change alone (no report, bank entry or strike), as a moderator's tx."""
    with store.moderation() as tx:
        tx.set_video_status(video_id, VideoStatus.TAKEN_DOWN, "test")


def first_pdq(store: SqlStore, video_id: str) -> str:
    video = store.get_video(video_id)
    assert video is not None
    return video.pdq_hex


def test_a_key_reused_for_a_different_request_is_refused_before_any_work(
    server: ServerProcess, store: SqlStore, portrait_jpeg: bytes,
) -> None:
    options = pb.AnimateOptions(long_side=256, duration_s=1.0, seed=9)
    with as_user(server, "ivan") as ivan:
        ivan.animate(portrait_jpeg, "smile", options, idempotency_key="k-3")
        videos, blobs = store.count_videos(), blob_files(server)
        events = []
        with pytest.raises(grpc.RpcError) as refused:
            for event in ivan.stub.Animate(
                    pb.AnimateRequest(photo=portrait_jpeg, caption="frown", options=options,
                                      idempotency_key="k-3"),
                    metadata=ivan.metadata, timeout=60):
                events.append(event)
        assert events == []  # refused before any stage began
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(refused.value)[0] == "IDEMPOTENCY_KEY_REUSED"
        assert (store.count_videos(), blob_files(server)) == (videos, blobs)


def blob_files(server: ServerProcess) -> int:
    return sum(1 for p in (server.data_dir / "blobs").rglob("*") if p.is_file())
