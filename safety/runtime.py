"""ONNX Runtime sessions for the safety models: GPU when one is really there, else CPU."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)


def _providers() -> list[str]:
    # onnxruntime-gpu lists CUDA even on machines without a GPU and then logs a loud load
    # failure for every session; only ask for it when a driver device node exists.
    available = ort.get_available_providers()
    wanted = []
    if "CUDAExecutionProvider" in available and os.path.exists("/dev/nvidiactl"):
        wanted.append("CUDAExecutionProvider")
    wanted.append("CPUExecutionProvider")
    return wanted


def onnx_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), sess_options=opts, providers=_providers())
    log.info("safety model %s served by %s", Path(path).name, session.get_providers()[0])
    return session
