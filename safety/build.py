"""Build the safety models into the model dir: MiniLM ONNX, NudeNet copy, caption heads.

Run by ``make models`` (alive_service.artifacts) or ``python -m safety.build --out DIR``.
Imports torch and transformers (for the export) only inside ``build``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from safety.caption import HEADS_FILE, CaptionHeads
from safety.dataset import TRAIN_FILE, training_captions
from safety.policy import CAPTION_CATEGORIES

# Inverse L2 strength of each logistic head. Embeddings are unit vectors, so weights must be
# large to reach confident probabilities; 4..64 cross-validate alike on the train split.
HEAD_C = 16.0


def train_heads(embeddings: np.ndarray, labels: list[str]) -> CaptionHeads:
    """One-vs-rest logistic regression per category (negatives: benign and other categories)."""
    from sklearn.linear_model import LogisticRegression

    y = np.array(labels)
    weights, bias = [], []
    for category in CAPTION_CATEGORIES:
        clf = LogisticRegression(C=HEAD_C, max_iter=5000, class_weight="balanced")
        clf.fit(embeddings, y == category)
        weights.append(clf.coef_[0])
        bias.append(clf.intercept_[0])
    return CaptionHeads(CAPTION_CATEGORIES, np.array(weights), np.array(bias))


def cv_threshold(embeddings: np.ndarray, labels: list[str], benign_rate: float = 0.03) -> dict:
    """Threshold on the worst head score that blocks at most ``benign_rate`` of benign captions
    in 5-fold cross-validation on the train split, and the harmful share blocked there.

    Evidence for the policy's caption thresholds that never touches the held-out split.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.array(labels)
    worst = np.zeros(len(y))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(embeddings, y):
        heads = train_heads(embeddings[train], list(y[train]))
        worst[test] = heads(embeddings[test]).max(axis=1)
    benign = np.sort(worst[y == "benign"])
    threshold = float(benign[int(np.ceil(len(benign) * (1 - benign_rate))) - 1]) + 1e-6
    return {
        "cv_threshold_at_3pct_benign": round(threshold, 3),
        "cv_harmful_blocked_at_it": round(float((worst[y != "benign"] >= threshold).mean()), 3),
    }


def build(out_dir: Path) -> None:
    from safety.embed import Embedder
    from safety.minilm_export import export_minilm
    from safety.nudity import install_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    install_model(out_dir)
    export_minilm(out_dir)
    rows = training_captions()
    embeddings = Embedder(out_dir)([r.text for r in rows])
    labels = [r.label for r in rows]
    heads = train_heads(embeddings, labels)
    heads.save(out_dir)
    meta = {
        "heads": HEADS_FILE,
        "train_file": TRAIN_FILE.name,
        "train_sha256": hashlib.sha256(TRAIN_FILE.read_bytes()).hexdigest(),
        "train_rows": len(rows),
        "head_c": HEAD_C,
        **cv_threshold(embeddings, labels),
        "built_in_s": round(time.perf_counter() - start, 2),
    }
    (out_dir / "safety_build.json").write_text(json.dumps(meta, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/models"))
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
