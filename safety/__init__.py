"""Safety checks before and after generation (issue 4).

Import-light: names are loaded on first use, and nothing here imports torch (only
``safety.build`` / ``safety.e5_export`` / ``safety.mtcnn`` do, at build time).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "SafetyChecker": "safety.check",
    "ImageReport": "safety.check",
    "CheckResult": "safety.decision",
    "Decision": "safety.decision",
    "BankMatch": "safety.hashing",
    "HashBank": "safety.hashing",
    "MemoryHashBank": "safety.hashing",
    "pdq_hash": "safety.hashing",
    "hamming": "safety.hashing",
    "Policy": "safety.policy",
    "load_policy": "safety.policy",
    "Face": "safety.faces",
    "FaceDetector": "safety.faces",
}

__all__ = [
    "BankMatch",
    "CheckResult",
    "Decision",
    "Face",
    "FaceDetector",
    "HashBank",
    "ImageReport",
    "MemoryHashBank",
    "Policy",
    "SafetyChecker",
    "hamming",
    "load_policy",
    "pdq_hash",
]

if TYPE_CHECKING:
    from safety.check import ImageReport, SafetyChecker
    from safety.decision import CheckResult, Decision
    from safety.faces import Face, FaceDetector
    from safety.hashing import BankMatch, HashBank, MemoryHashBank, hamming, pdq_hash
    from safety.policy import Policy, load_policy


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'safety' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
