"""MiniLM (all-MiniLM-L6-v2) sentence embeddings at run time: tokenizers + onnxruntime.

The ONNX graph (exported by safety.build) already mean-pools over the attention mask and
L2-normalises, so its output is the sentence-transformers embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from safety.runtime import onnx_session

ONNX_FILE = "minilm.onnx"
TOKENIZER_FILE = "minilm_tokenizer.json"
MAX_TOKENS = 128  # captions are short; sentence-transformers trained this model at 128 too


class Embedder:
    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        self._tokenizer = Tokenizer.from_file(str(Path(model_dir) / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._session = onnx_session(Path(model_dir) / ONNX_FILE, threads)

    def __call__(self, texts: list[str]) -> np.ndarray:
        """(N, 384) float32 unit vectors."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        enc = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        (out,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        return out
