"""Small PyAV helpers to make and re-encode H.264 MP4s (benchmark, tests, attack simulation)."""

from __future__ import annotations

import os
import tempfile

import av
import cv2
import numpy as np

from provenance.colour import rgb_to_i420_bt709, tag_bt709


def encode_mp4(frames: np.ndarray, crf: int = 23, fps: int = 24, preset: str = "veryfast") -> bytes:
    """(T, H, W, 3) uint8 RGB -> H.264 yuv420p MP4 bytes with the moov atom up front.

    Converted and tagged as the service's encoder does (BT.709, limited range), so the
    bench and the tests measure the luma the service ships.
    """
    t, h, w, _ = frames.shape
    # +faststart rewrites the file in a second pass, which needs a real seekable file.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mp4")
        with av.open(path, "w", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = w - w % 2, h - h % 2
            stream.pix_fmt = "yuv420p"
            tag_bt709(stream, {"crf": str(crf), "preset": preset})
            for frame in frames:
                even = frame[: stream.height, : stream.width]
                i420 = rgb_to_i420_bt709(np.ascontiguousarray(even))
                # from_ndarray, not from_numpy_buffer: PyAV 18's buffer path reads a frame
                # whose chroma height is odd (426 rows: a 3:2 photo's 50% copy) as 424 rows
                # and starts its Cb plane inside the Y plane, so such a copy's colour was
                # garbage (what no real re-encoder does).
                vf = av.VideoFrame.from_ndarray(i420, format="yuv420p")
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with open(path, "rb") as fh:
            return fh.read()


def reencode(data: bytes, crf: int, scale: float = 1.0) -> bytes:
    """Decode an MP4 and encode it again (optionally resized): what a re-uploader does.

    The result carries no C2PA manifest, like any transcode.
    """
    from provenance.watermark import decode_mp4_frames

    frames = decode_mp4_frames(data, max_frames=10_000)
    if scale != 1.0:
        h, w = frames.shape[1:3]
        size = (max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    return encode_mp4(frames, crf=crf)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def sample_clip(
    image: np.ndarray, height: int = 720, width: int = 1280, frames: int = 72
) -> np.ndarray:
    """A seamless loop with subtle motion: the photo breathes (slow zoom) and sways a little."""
    base = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        phase = 2 * np.pi * t / frames
        zoom = 1.0 + 0.01 * (1 - np.cos(phase))
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, zoom)
        matrix[0, 2] += 3.0 * np.sin(phase)
        cv2.warpAffine(base, matrix, (width, height), dst=out[t], borderMode=cv2.BORDER_REFLECT)
    return out


def drifting_clip(
    image: np.ndarray, height: int = 720, width: int = 1280, frames: int = 72, speed: int = 3
) -> np.ndarray:
    """A harder loop: the top half drifts sideways (clouds, water) and crossfades to loop."""
    base = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    out = np.repeat(base[None], frames, axis=0)
    top = base[: height // 2].astype(np.float32)
    for t in range(frames):
        w = t / frames
        a = np.roll(top, speed * t, axis=1)
        b = np.roll(top, speed * (t - frames), axis=1)
        out[t, : height // 2] = ((1 - w) * a + w * b).astype(np.uint8)
    return out
