"""ONNX Runtime sessions: GPU when one is really there, else CPU.

The one place the service decides which execution providers to ask for; the safety
models, the face detector and the motion model all use it.
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


def onnx_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers())
    log.info("safety model %s served by %s", Path(path).name, session.get_providers()[0])
    return session
