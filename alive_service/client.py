"""A small typed client for the Alive API (used by the CLI, the smoke test and the load test)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from alive_service.rpc import pb, pb_grpc

DEFAULT_ADDR = "127.0.0.1:50051"
MB = 1024 * 1024


def default_addr() -> str:
    return os.environ.get("ALIVE_ADDR", DEFAULT_ADDR)


def default_token() -> str:
    """ALIVE_TOKEN, or the dev token the server leaves in its data directory."""
    token = os.environ.get("ALIVE_TOKEN")
    if token:
        return token.strip()
    from alive_service.auth import dev_token_path
    from alive_service.config import Settings

    path = dev_token_path(Settings.from_env().data_dir)
    if path.exists():
        return path.read_text().strip()
    raise FileNotFoundError(
        f"no token: set ALIVE_TOKEN, or start the server once so it writes {path}"
    )


def channel(addr: str) -> grpc.Channel:
    options = [
        ("grpc.max_send_message_length", 26 * MB),
        ("grpc.max_receive_message_length", 8 * MB),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]
    if "," in addr:
        # Several replicas: spread calls with client-side round-robin.
        options.append(("grpc.lb_policy_name", "round_robin"))
        addr = "ipv4:" + addr
    return grpc.insecure_channel(addr, options=options)


@dataclass(frozen=True)
class Animated:
    info: pb.VideoInfo
    mp4: bytes
    progress: list[pb.Progress]


class AliveClient:
    def __init__(self, addr: str | None = None, token: str | None = None,
                 timeout_s: float = 120.0) -> None:
        self.addr = addr or default_addr()
        self.token = token if token is not None else default_token()
        self.timeout_s = timeout_s
        self.channel = channel(self.addr)
        self.stub = pb_grpc.AliveServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> AliveClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")]

    def animate(
        self, photo: bytes, caption: str = "", options: pb.AnimateOptions | None = None,
        idempotency_key: str = "", on_progress: Callable[[pb.Progress], None] | None = None,
        hints: Sequence[pb.RegionHint] = (),
    ) -> Animated:
        request = pb.AnimateRequest(photo=photo, caption=caption, options=options,
                                    idempotency_key=idempotency_key, hints=list(hints))
        info, chunks, progress = None, [], []
        for event in self.stub.Animate(request, metadata=self.metadata, timeout=self.timeout_s):
            kind = event.WhichOneof("event")
            if kind == "progress":
                progress.append(event.progress)
                if on_progress:
                    on_progress(event.progress)
            elif kind == "result":
                info = event.result
            elif kind == "chunk":
                chunks.append(event.chunk.data)
        if info is None:
            raise RuntimeError("the stream ended without a result")
        return Animated(info=info, mp4=b"".join(chunks), progress=progress)

    def get_video(self, video_id: str, offset: int = 0, length: int = 0) -> bytes:
        stream: Iterator[pb.VideoChunk] = self.stub.GetVideo(
            pb.GetVideoRequest(video_id=video_id, offset=offset, length=length),
            metadata=self.metadata, timeout=self.timeout_s,
        )
        return b"".join(chunk.data for chunk in stream)

    def download(self, video_id: str, path: Path, attempts: int = 5) -> int:
        """Write the video to ``path``, resuming from what is already there (a partial file
        from a cut download) and again after a dropped connection. Returns the file's size."""
        for attempt in range(attempts):
            done = path.stat().st_size if path.exists() else 0
            try:
                stream = self.stub.GetVideo(
                    pb.GetVideoRequest(video_id=video_id, offset=done),
                    metadata=self.metadata, timeout=self.timeout_s,
                )
                with path.open("ab") as out:
                    for chunk in stream:
                        if chunk.offset != out.tell():
                            raise RuntimeError(f"chunk at {chunk.offset}, expected {out.tell()}")
                        out.write(chunk.data)
                return path.stat().st_size
            except grpc.RpcError as exc:
                transient = exc.code() in (grpc.StatusCode.UNAVAILABLE,
                                           grpc.StatusCode.DEADLINE_EXCEEDED)
                if not transient or attempt == attempts - 1:
                    if path.exists() and path.stat().st_size == 0:
                        path.unlink()  # a refused download leaves no empty file behind
                    raise
                time.sleep(min(2.0**attempt * 0.2, 5.0))
        raise AssertionError("unreachable")

    def list_videos(self, page_size: int = 0, page_token: str = "") -> pb.ListVideosResponse:
        return self.stub.ListVideos(
            pb.ListVideosRequest(page_size=page_size, page_token=page_token),
            metadata=self.metadata, timeout=30,
        )

    def all_videos(self, page_size: int = 0) -> Iterator[pb.VideoInfo]:
        """Every one of the caller's videos, newest first, page after page."""
        token = ""
        while True:
            page = self.list_videos(page_size, token)
            yield from page.videos
            token = page.next_page_token
            if not token:
                return

    def delete_video(self, video_id: str) -> pb.DeleteVideoResponse:
        return self.stub.DeleteVideo(pb.DeleteVideoRequest(video_id=video_id),
                                     metadata=self.metadata, timeout=30)

    def report(self, video_id: str, reason: int, details: str = "") -> pb.ReportVideoResponse:
        return self.stub.ReportVideo(
            pb.ReportVideoRequest(video_id=video_id, reason=reason, details=details),
            metadata=self.metadata, timeout=30,
        )

    def share(self, video_id: str, add: list[str] | tuple[str, ...] = (),
              remove: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Share a video with users (or stop); everyone it is shared with afterwards."""
        reply = self.stub.ShareVideo(
            pb.ShareVideoRequest(video_id=video_id, add_users=list(add),
                                 remove_users=list(remove)),
            metadata=self.metadata, timeout=30,
        )
        return list(reply.shared_with)

    def verify(self, mp4: bytes) -> pb.VerifyVideoResponse:
        return self.stub.VerifyVideo(pb.VerifyVideoRequest(video=mp4), metadata=self.metadata,
                                     timeout=60)
