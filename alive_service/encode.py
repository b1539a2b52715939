"""Encode RGB frames as an H.264 MP4 that phones and browsers play.

yuv420p for compatibility, faststart so playback starts before the download ends.
Colour: the frames are sRGB (decode converts every photo to sRGB). They are converted with
the BT.709 matrix to limited-range Y'CbCr and tagged BT.709 primaries / transfer / matrix,
limited range, in both the H.264 VUI and the MP4 ``colr`` box: untagged HD video is decoded
as BT.709 by most players anyway, and BT.601 numbers read that way shift saturated colours
by 10-20 grey levels. sRGB and BT.709 share primaries and white point; their transfer
curves differ slightly, and players treat the two alike, so the values pass through as is.
"""


from __future__ import annotations

import errno
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

# The conversion and its tags live in provenance (the watermark predicts this very luma).
from provenance.colour import rgb_to_i420_bt709, tag_bt709

# Marks a frame's I420 buffer (H*3/2, W) in place (the watermark), given the frame index.
LumaMarkFn = Callable[[np.ndarray, int], None]


@dataclass(frozen=True)
class EncodeOptions:
    crf: int = 23
    preset: str = "veryfast"
    threads: int = 2
    # Where the temporary MP4 goes (the server: under its data dir, which health watches;
    # None: the system's temp dir).
    temp_dir: Path | None = None


@dataclass(frozen=True)
class Video:
    mp4: bytes
    width: int
    height: int
    fps: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def encode_mp4(
    frames: np.ndarray,
    fps: int,
    options: EncodeOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    mark: LumaMarkFn | None = None,
) -> Video:
    return encode_batches([frames], frames.shape, fps, options, progress, mark)


def encode_batches(
    batches: Iterable[np.ndarray | Sequence[np.ndarray]],
    shape: tuple[int, ...],
    fps: int,
    options: EncodeOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    mark: LumaMarkFn | None = None,
) -> Video:
    """Like ``encode_mp4``, for a clip of ``shape`` (T, H, W, 3) that arrives as consecutive
    batches of frames (each (n, H, W, 3), or a sequence of frames, consumed before the next
    is asked for): the caller never needs the whole clip in memory. A frame may come
    already converted (an (H * 3 / 2, W) I420 array from ``rgb_to_i420_bt709``, which the
    mark then modifies in place): the conversion depends on the frame alone, so the video
    is the same."""
    options = options or EncodeOptions()
    count, height, width, _ = shape
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {width}x{height}")
    # faststart rewrites the file in a second pass, which needs a real file.
    try:
        with tempfile.NamedTemporaryFile(suffix=".mp4", dir=options.temp_dir) as tmp:
            _encode_to(tmp.name, batches, shape, fps, options, progress, mark)
            mp4 = Path(tmp.name).read_bytes()
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) and "No space" not in str(exc):
            raise
        # A full disk is the server's outage, not the request's fault: UNAVAILABLE, retry.
        from alive_service.store import StoreUnavailable

        raise StoreUnavailable(f"no space left for the video under "
                               f"{options.temp_dir or tempfile.gettempdir()}") from exc
    return Video(mp4=mp4, width=width, height=height, fps=fps, frames=count)


def _encode_to(
    path: str,
    batches: Iterable[np.ndarray | Sequence[np.ndarray]],
    shape: tuple[int, ...],
    fps: int,
    options: EncodeOptions,
    progress: Callable[[int, int], None] | None,
    mark: LumaMarkFn | None,
) -> None:
    count, height, width, _ = shape
    # movflags must go to the container: as a stream option it is ignored.
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.thread_count = options.threads
        tag_bt709(stream, {"crf": str(options.crf), "preset": options.preset})
        index = 0
        for given in (frame for batch in batches for frame in batch):
            if index >= count:
                raise ValueError(f"more frames than the {count} announced")
            yuv = given if given.ndim == 2 else rgb_to_i420_bt709(given)
            if mark is not None:
                mark(yuv, index)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
            index += 1
            if progress is not None:
                progress(index, count)
        if index != count:
            raise ValueError(f"{index} frames, {count} announced")
        for packet in stream.encode():
            container.mux(packet)
