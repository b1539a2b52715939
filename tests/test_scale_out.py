"""Three replicas on one PostgreSQL and one data directory behave as one service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from alive_service.store import SqlStore
from tests.conftest import PgDatabases, enrol_moderators, moderator_env
from tools.harness import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SMALL = pb.AnimateOptions(long_side=256, duration_s=1.0)


@pytest.fixture(scope="module")
def scale_out_db(pg_databases: PgDatabases) -> str:
    return pg_databases.new()


@pytest.fixture(scope="module")
def replicas(scale_out_db: str, tmp_path_factory: pytest.TempPathFactory, model_dir: Path
             ) -> Iterator[list[ServerProcess]]:
    pg_url = scale_out_db
    shared = tmp_path_factory.mktemp("alive-shared")
    first = ServerProcess(data_dir=shared, db_url=pg_url).start()
    # The first replica has made the keys, secret and schema; the others share them.
    others = [ServerProcess(data_dir=shared, db_url=pg_url).start(wait=False) for _ in range(2)]
    try:
        from tools.harness import wait_serving

        for replica in others:
            wait_serving(replica.addr, process=replica.process)
        yield [first, *others]
    finally:
        for replica in (first, *others):
            replica.stop()


def served_by(replicas: list[ServerProcess], video_id: str) -> int:
    """Which replica's log says it made this video."""
    for index, replica in enumerate(replicas):
        for line in replica.log().splitlines():
            if line.startswith("{") and json.loads(line).get("video_id") == video_id \
                    and json.loads(line).get("msg") == "animated":
                return index
    raise AssertionError(f"no replica logged {video_id}")


def test_videos_reports_and_takedowns_made_through_any_replica_are_seen_through_all(
    replicas: list[ServerProcess], scale_out_db: str, landscape_jpeg: bytes, portrait_jpeg: bytes,
) -> None:
    addrs = ",".join(r.addr for r in replicas)
    token = replicas[0].token("alice")
    with AliveClient(addrs, token=token) as spread:
        made = [spread.animate(landscape_jpeg, "", pb.AnimateOptions(
            long_side=256, duration_s=1.0, seed=i)) for i in range(6)]
    # Client-side round-robin spread the work over every replica.
    assert {served_by(replicas, m.info.video_id) for m in made} == {0, 1, 2}
    with AliveClient(replicas[1].addr, token=token) as alice:  # private until shared
        for m in made:
            alice.share(m.info.video_id, add=["bob", "viewer0", "viewer1", "viewer2"])

    for replica in replicas:
        with AliveClient(replica.addr, token=replica.token("bob")) as one:
            for m in made:
                assert one.get_video(m.info.video_id) == m.mp4

    target = made[0].info.video_id
    report_ids = set()
    for i, replica in enumerate(replicas):
        with AliveClient(replica.addr, token=replica.token(f"viewer{i}")) as one:
            report_ids.add(one.report(target, pb.REPORT_REASON_HATE, f"via replica {i}").report_id)
    assert len(report_ids) == 3

    staff = SqlStore(scale_out_db, replicas[0].data_dir / "blobs")
    mia = enrol_moderators(staff, replicas[0].data_dir, "mia")["mia"]
    staff.close()
    env = dict(os.environ, ALIVE_DATA_DIR=str(replicas[0].data_dir), ALIVE_DB_URL=scale_out_db,
               **moderator_env(replicas[0].data_dir, mia))
    queue = json.loads(subprocess.run(
        [sys.executable, "-m", "alive_service.mod_cli", "queue", "--json"],
        env=env, capture_output=True, text=True, check=True).stdout)
    (item,) = [q for q in queue if q["video_id"] == target]
    assert item["reporters"] == 3
    subprocess.run([sys.executable, "-m", "alive_service.mod_cli", "resolve", target,
                    "--action", "takedown", "--note", "hate symbol"],
                   env=env, capture_output=True, text=True, check=True)

    for replica in replicas:
        with AliveClient(replica.addr, token=token) as one:
            with pytest.raises(grpc.RpcError) as gone:
                one.get_video(target)
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND
            assert error_info(gone.value)[0] == "TAKEN_DOWN"
            with pytest.raises(grpc.RpcError) as refused:
                one.animate(landscape_jpeg, "", SMALL)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_info(refused.value)[0] == "POLICY_BLOCKED"
            # Other photos are still welcome everywhere.
            assert one.animate(portrait_jpeg, "", SMALL).info.video_id
