"""Export the motion model (and its GridSample renderer) to ONNX: ``build(out_dir)``.

Build time only (imports torch). Writes into ``out_dir``:
  motion_fields.onnx  MotionFieldNet: regions, faces, params, times -> basis, coef_a, coef_b, mix
  motion_render.onnx  RenderNet: photo, source, alpha, basis, coefs, mix -> uint8 frames (GPU)
  motion.json         model id, version and the sha256 of both files
Idempotent: skips the export when motion.json names this version and source digest and the
files hash right.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from alive_service.motion.version import (
    FIELDS_FILE,
    MANIFEST_FILE,
    MODEL_ID,
    MODEL_VERSION,
    RENDER_FILE,
)

OPSET = 17


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_digest() -> str:
    """Hash of the files that define the exported graphs: a changed definition re-exports."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("fieldnet.py", "rendernet.py", "layout.py", "version.py", "export.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()


def _up_to_date(out_dir: Path) -> bool:
    manifest = out_dir / MANIFEST_FILE
    if not manifest.is_file():
        return False
    try:
        info = json.loads(manifest.read_text())
    except ValueError:
        return False
    if info.get("model_version") != MODEL_VERSION or info.get("source") != source_digest():
        return False
    files = info.get("files", {})
    return all(
        (out_dir / name).is_file() and sha256_file(out_dir / name) == files.get(name)
        for name in (FIELDS_FILE, RENDER_FILE)
    )


def build(out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if _up_to_date(out_dir):
        return
    import torch

    from alive_service.motion.fieldnet import MotionFieldNet
    from alive_service.motion.layout import FACE_COLS, PARAM_NAMES
    from alive_service.motion.rendernet import RenderNet

    h, w, t = 24, 40, 5
    fields_args = (
        torch.rand(2, h, w),
        torch.rand(2, FACE_COLS),
        torch.rand(len(PARAM_NAMES)),
        torch.linspace(0.0, 0.8, t),
    )
    _export(
        MotionFieldNet().eval(),
        fields_args,
        out_dir / FIELDS_FILE,
        ["regions", "faces", "params", "times"],
        ["basis", "coef_a", "coef_b", "mix"],
        {
            "regions": {1: "h", 2: "w"},
            "faces": {0: "f"},
            "times": {0: "t"},
            "basis": {2: "h", 3: "w"},
            "coef_a": {0: "t"},
            "coef_b": {0: "t"},
            "mix": {0: "t"},
        },
    )
    hh, ww = 4 * h - 2, 4 * w - 2
    k = 11
    render_args = (
        torch.rand(1, 3, hh, ww) * 255,
        torch.rand(1, 3, hh, ww) * 255,
        torch.rand(1, 1, hh, ww),
        torch.randn(k, 2, h, w),
        torch.randn(t, k),
        torch.randn(t, k),
        torch.rand(t),
    )
    _export(
        RenderNet().eval(),
        render_args,
        out_dir / RENDER_FILE,
        ["photo", "source", "alpha", "basis", "coef_a", "coef_b", "mix"],
        ["frames"],
        {
            "photo": {2: "H", 3: "W"},
            "source": {2: "H", 3: "W"},
            "alpha": {2: "H", 3: "W"},
            "basis": {0: "k", 2: "h", 3: "w"},
            "coef_a": {0: "t", 1: "k"},
            "coef_b": {0: "t", 1: "k"},
            "mix": {0: "t"},
            "frames": {0: "t", 2: "H", 3: "W"},
        },
    )
    manifest = {
        "model_id": MODEL_ID,
        "model_version": MODEL_VERSION,
        "files": {name: sha256_file(out_dir / name) for name in (FIELDS_FILE, RENDER_FILE)},
        "source": source_digest(),
        "weights": "none (closed-form motion); faces come from MTCNN (facenet-pytorch, MIT)",
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def _export(model, args, path: Path, inputs, outputs, dynamic_axes) -> None:
    import torch

    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model,
            args,
            str(tmp),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    tmp.replace(path)  # atomic: a reader never sees half a file


if __name__ == "__main__":
    import sys

    build(Path(sys.argv[1] if len(sys.argv) > 1 else "build/models"))
