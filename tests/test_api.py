"""What mobile and integration teams rely on, against the real server: my videos, delete,
resumable downloads."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from alive_service.client import AliveClient
from alive_service.rpc import error_info, pb
from tests.npm import needs_node, npm_ci
from tools.harness import ServerProcess, free_port

pytestmark = pytest.mark.integration

SMALL = pb.AnimateOptions(long_side=320, duration_s=1.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path
           ) -> Iterator[ServerProcess]:
    # Storage behaviour is tested on SQLite and PostgreSQL in test_deletion.py.
    with ServerProcess(data_dir=tmp_path_factory.mktemp("alive-api"),
                       env={"ALIVE_METRICS_PORT": str(free_port())}) as process:
        yield process


def client_for(server: ServerProcess, user: str) -> AliveClient:
    return AliveClient(server.addr, token=server.token(user))


def refusal(call) -> tuple[grpc.StatusCode, str, dict[str, str]]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as failed:
        call()
    reason, metadata, _ = error_info(failed.value)
    return failed.value.code(), reason, metadata


def test_my_videos_are_listed_newest_first_page_by_page_and_only_mine(
    server: ServerProcess, landscape_jpeg: bytes, portrait_jpeg: bytes,
) -> None:
    with client_for(server, "lister") as me, client_for(server, "stranger") as other:
        made = [me.animate(photo, "", SMALL).info.video_id
                for photo in (landscape_jpeg, portrait_jpeg, landscape_jpeg)]
        first = me.list_videos(page_size=2)
        assert [v.video_id for v in first.videos] == made[::-1][:2] and first.next_page_token
        second = me.list_videos(page_size=2, page_token=first.next_page_token)
        assert [v.video_id for v in second.videos] == made[:1] and not second.next_page_token
        assert [v.video_id for v in me.all_videos()] == made[::-1]
        assert second.videos[0].size_bytes > 0 and second.videos[0].provenance.signed
        assert list(other.list_videos().videos) == []
        # A token is the caller's own: another user's, or a made-up one, is refused.
        assert refusal(lambda: other.list_videos(page_token=first.next_page_token))[:2] == (
            grpc.StatusCode.INVALID_ARGUMENT, "BAD_PAGE_TOKEN")
        assert refusal(lambda: me.list_videos(page_token="not-a-token"))[:2] == (
            grpc.StatusCode.INVALID_ARGUMENT, "BAD_PAGE_TOKEN")
        assert refusal(lambda: me.list_videos(page_size=-1))[:2] == (
            grpc.StatusCode.INVALID_ARGUMENT, "BAD_PAGE_SIZE")


def test_a_deleted_video_is_not_found_exactly_like_a_missing_one(
    server: ServerProcess, landscape_jpeg: bytes,
) -> None:
    with client_for(server, "deleter") as me, client_for(server, "stranger") as other:
        video_id = me.animate(landscape_jpeg, "my dog", SMALL).info.video_id
        # Someone else cannot delete it, and cannot tell it exists.
        missing = refusal(lambda: other.delete_video("0123456789abcdef"))
        assert refusal(lambda: other.delete_video(video_id)) == missing
        assert missing[:2] == (grpc.StatusCode.NOT_FOUND, "VIDEO_NOT_FOUND")
        reply = me.delete_video(video_id)
        assert reply.video_id == video_id and reply.delete_time.seconds > 0
        for who in (me, other):
            assert refusal(lambda c=who: c.get_video(video_id)) == refusal(
                lambda c=who: c.get_video("0123456789abcdef"))
        assert refusal(lambda: me.delete_video(video_id))[:2] == missing[:2]
        assert refusal(lambda: other.report(video_id, pb.REPORT_REASON_SPAM))[:2] == missing[:2]
        assert video_id not in [v.video_id for v in me.all_videos()]
        assert refusal(lambda: me.delete_video("../etc"))[:2] == (
            grpc.StatusCode.INVALID_ARGUMENT, "BAD_VIDEO_ID")


def test_a_download_cut_at_half_resumes_to_identical_bytes(
    server: ServerProcess, landscape_jpeg: bytes, tmp_path: Path,
) -> None:
    token = server.token("resumer")
    with AliveClient(server.addr, token=token) as me:
        made = me.animate(landscape_jpeg, "", pb.AnimateOptions(long_side=1920, duration_s=6.0))
        size, whole = len(made.mp4), hashlib.sha256(made.mp4).hexdigest()
        assert size > 256 * 1024, "needs more than one chunk to cut mid-stream"
        # The phone loses its connection halfway: it has the first half, nothing more.
        half, partial = size // 2, tmp_path / "partial.mp4"
        call = me.stub.GetVideo(pb.GetVideoRequest(video_id=made.info.video_id),
                                metadata=me.metadata, timeout=30)
        got = b""
        for chunk in call:
            assert chunk.offset == len(got)
            got += chunk.data
            if len(got) >= half:
                call.cancel()
                break
        partial.write_bytes(got[:half])
        # Chunks of a resumed download say where they belong; length bounds a range.
        chunks = list(me.stub.GetVideo(
            pb.GetVideoRequest(video_id=made.info.video_id, offset=half, length=1000),
            metadata=me.metadata, timeout=30))
        assert chunks[0].offset == half and b"".join(c.data for c in chunks) == \
            made.mp4[half:half + 1000]
        assert me.get_video(made.info.video_id, offset=size) == b""
        code, reason, metadata = refusal(lambda: me.get_video(made.info.video_id, size + 1))
        assert (code, reason, metadata) == (
            grpc.StatusCode.OUT_OF_RANGE, "OFFSET_PAST_END", {"size": str(size)})
        assert refusal(lambda: me.get_video(made.info.video_id, -1))[:2] == (
            grpc.StatusCode.INVALID_ARGUMENT, "BAD_RANGE")
    # The reference client picks up where the download stopped.
    env = dict(os.environ, ALIVE_ADDR=server.addr, ALIVE_TOKEN=token)
    cli = [sys.executable, "-m", "alive_service.cli"]
    done = subprocess.run([*cli, "get", made.info.video_id, "-o", str(partial), "--resume"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"resumed at byte {half}" in done.stderr
    assert hashlib.sha256(partial.read_bytes()).hexdigest() == whole


# -- a client in a second language (grpc-js), as the mobile apps are -------------------------
NODE_DIR = Path(__file__).parent / "node_client"
PROTO_DIR = Path(__file__).parent.parent / "proto"


@needs_node
def test_a_grpc_js_client_animates_reads_error_info_and_cancels(
    server: ServerProcess, landscape_jpeg: bytes, tmp_path: Path,
) -> None:
    npm_ci(NODE_DIR)
    photo, out = tmp_path / "photo.jpg", tmp_path / "node.mp4"
    photo.write_bytes(landscape_jpeg)
    done = subprocess.run(
        ["node", str(NODE_DIR / "client.mjs"), "--addr", server.addr,
         "--token", server.token("node-app"), "--photo", str(photo), "--out", str(out),
         "--proto", str(PROTO_DIR)],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    made = report["animate"]
    assert made["signed"] and made["bytes"] == made["size_bytes"] == out.stat().st_size
    assert made["sha256"] == made["result_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert made["stages"][0] == "STAGE_CHECKING" and "STAGE_GENERATING" in made["stages"]
    with client_for(server, "node-app") as same_user:
        assert same_user.get_video(made["video_id"]) == out.read_bytes()

    refusal_ = report["refusal"]
    assert refusal_["refused"] and refusal_["code"] == "FAILED_PRECONDITION"
    info = refusal_["info"]
    assert (info["reason"], info["domain"]) == ("POLICY_BLOCKED", "alive.v1")
    assert info["metadata"]["category"] and info["metadata"]["policy_version"]

    cancel = report["cancel"]
    assert cancel["cancelled"] and "STAGE_GENERATING" in cancel["stages"], cancel
    # The server noticed and stopped the work (logged), and still serves.
    deadline = time.monotonic() + 30
    while '"cancelled"' not in server.log() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert '"cancelled"' in server.log()
    with client_for(server, "node-app") as after:
        assert after.list_videos().videos[0].video_id == made["video_id"]


def test_the_conformance_harness_passes_against_a_running_server(server: ServerProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "alive_service.conformance", "--addr", server.addr,
         "--token", server.token("harness"), "--token2", server.token("harness-other"),
         "--json"],
        capture_output=True, text=True, timeout=300,
    )
    results = {r["name"]: r for r in json.loads(done.stdout)}
    assert [n for n, r in results.items() if r["status"] != "pass"] == [], results
    assert set(results) >= {"health", "animate", "get", "resume", "report", "refusals",
                            "verify", "list", "other user", "delete"}
    assert done.returncode == 0


def test_the_metrics_page_passes_promtool(server: ServerProcess) -> None:
    import urllib.request

    promtool = shutil.which("promtool")
    if promtool is None:
        if shutil.which("apt-get") is None:
            pytest.skip("promtool is missing and apt-get is not available to install it "
                        "(Debian package: prometheus)")
        pytest.fail("promtool is missing: `make promtool` installs it (Debian's prometheus)")
    port = server.env["ALIVE_METRICS_PORT"]
    with client_for(server, "metrics") as client:  # some traffic, so labelled series exist
        refusal(lambda: client.get_video("0123456789abcdef"))
        client.list_videos()
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    assert b"alive_requests_total" in page
    done = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
