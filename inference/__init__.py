"""ONNX Runtime sessions: GPU when one is really there, else CPU.

The one place the service decides which execution providers to ask for and how a session
is built; the safety models, the face detector and the motion model all use it. It sits
below both ``safety`` and ``alive_service.motion`` so neither reaches into the other.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    """onnxruntime-gpu lists CUDA even on machines without a GPU, and asking for it there
    logs a loud load failure for every session: also require the driver's library."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def providers() -> list[str]:
    if cuda_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnx_session(path: Path, threads: int = 1, *, spin: bool = True) -> ort.InferenceSession:
    """A session on ``threads`` intra-op threads (one inter-op thread: our graphs are chains).
    ``spin=False``: idle worker threads sleep instead of spinning, for small graphs run many
    times a request, whose spinning threads would steal the core other requests need."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers())
    log.info("model %s served by %s", Path(path).name, session.get_providers()[0])
    return session
