"""Build the safety models into the model dir: multilingual-e5 ONNX, NudeNet copy, caption
heads and the public-figure head.

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

from safety.caption import (
    HARM_FILE,
    HEADS_FILE,
    PERSON_FILE,
    PUBLIC_FIGURE,
    CaptionHeads,
    KernelHead,
)
from safety.dataset import TRAIN_FILE, training_captions
from safety.names import person_captions
from safety.normalize import readable
from safety.policy import CAPTION_CATEGORIES

# Inverse L2 strength of each logistic head, on standardised features (e5's cosine scores sit
# in a narrow band, so raw unit vectors would need huge weights).
HEAD_C = 0.5
CV_FOLDS = 5


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised features, folded back to raw-feature weights."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    clf = LogisticRegression(C=HEAD_C, max_iter=5000, class_weight="balanced")
    clf.fit((x - mean) / std, y)
    w = clf.coef_[0] / std
    return w, float(clf.intercept_[0] - w @ mean)


def train_heads(embeddings: np.ndarray, labels: list[str]) -> CaptionHeads:
    """One-vs-rest logistic regression per category (negatives: benign and other categories)."""
    y = np.array(labels)
    fits = [_fit(embeddings, y == category) for category in CAPTION_CATEGORIES]
    return CaptionHeads(
        CAPTION_CATEGORIES, np.array([w for w, _ in fits]), np.array([b for _, b in fits])
    )


# The pooled head's SVM: soft-margin cost (grouped CV on the train split: 1 -> 3 caught 3 points
# more harmful at 3% benign, 3 -> 10 nothing) and sklearn's "scale" kernel width.
HARM_SVM_C = 3.0


def train_harm_head(embeddings: np.ndarray, labels: list[str]) -> KernelHead:
    """Harmful (any category) vs benign: one head that learns from every category's rows."""
    from sklearn.svm import SVC

    mean, std = embeddings.mean(axis=0), embeddings.std(axis=0) + 1e-6
    x = (embeddings - mean) / std
    clf = SVC(C=HARM_SVM_C, kernel="rbf", gamma="scale", class_weight="balanced")
    clf.fit(x, np.array(labels) != "benign")
    gamma = 1.0 / (x.shape[1] * x.var())  # what gamma="scale" used
    return KernelHead(
        clf.support_vectors_, clf.dual_coef_[0], float(clf.intercept_[0]), gamma, mean, std
    )


def train_person_head(embeddings: np.ndarray, labels: np.ndarray) -> CaptionHeads:
    w, b = _fit(embeddings, labels == 1)
    return CaptionHeads((PUBLIC_FIGURE,), w[None, :], np.array([b]))


def group_folds(groups: list[str], folds: int = CV_FOLDS) -> list[np.ndarray]:
    """Fold index per row with every family on one side (deterministic)."""
    import zlib

    return [np.array([zlib.crc32(g.encode()) % folds == k for g in groups]) for k in range(folds)]


def cv_threshold(
    embeddings: np.ndarray,
    labels: list[str],
    groups: list[str],
    real: np.ndarray,
    benign_rate: float = 0.03,
) -> dict:
    """Thresholds that block at most ``benign_rate`` of the real benign captions (``real``
    masks out the generated people captions) in cross-validation grouped by family on the
    train split, and the harmful share blocked there: for the worst category head, and for
    the pooled harmful head. Evidence for the policy's caption thresholds that never touches
    a held-out split.
    """
    y = np.array(labels)
    worst, pooled = np.zeros(len(y)), np.zeros(len(y))
    for test in group_folds(groups):
        heads = train_heads(embeddings[~test], list(y[~test]))
        worst[test] = heads(embeddings[test]).max(axis=1)
        pooled[test] = train_harm_head(embeddings[~test], list(y[~test]))(embeddings[test])[:, 0]
    benign, harmful = real & (y == "benign"), y != "benign"
    out = {}
    for name, score in (("heads", worst), ("harmful_head", pooled)):
        ranked = np.sort(score[benign])
        threshold = float(ranked[int(np.ceil(len(ranked) * (1 - benign_rate))) - 1]) + 1e-6
        out[f"cv_{name}_threshold_at_3pct_benign"] = round(threshold, 3)
        blocked = float((score[harmful] >= threshold).mean())
        out[f"cv_{name}_harmful_blocked_at_it"] = round(blocked, 3)
    return out


def build(out_dir: Path) -> None:
    from safety.e5_export import export_e5
    from safety.embed import Embedder
    from safety.nudity import install_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    install_model(out_dir)
    export_e5(out_dir)
    embed = Embedder(out_dir, threads=2)
    people = person_captions()
    person_emb = embed.many([readable(t) for t, _ in people])
    rows = training_captions()
    # The heads see what the checker scores: the readable reading (emoji as words, ...).
    caption_emb = embed.many([readable(r.text) for r in rows])
    # The public-figure head: the name templates, plus every training caption (those labelled
    # impersonation name real people; the rest, in all languages, mostly name nobody).
    person_labels = np.array(
        [label for _, label in people] + [r.label == "deceptive_impersonation" for r in rows]
    )
    train_person_head(np.concatenate([person_emb, caption_emb]), person_labels).save(
        out_dir, PERSON_FILE
    )
    # Neutral captions naming public figures are benign (a mention is not a harm).
    embeddings = np.concatenate([caption_emb, person_emb])
    labels = [r.label for r in rows] + ["benign"] * len(people)
    groups = [r.family or r.text for r in rows] + [f"people-{t}" for t, _ in people]
    heads = train_heads(embeddings, labels)
    heads.save(out_dir)
    train_harm_head(embeddings, labels).save(out_dir, HARM_FILE)
    meta = {
        "heads": HEADS_FILE,
        "train_file": TRAIN_FILE.name,
        "train_sha256": hashlib.sha256(TRAIN_FILE.read_bytes()).hexdigest(),
        "train_rows": len(rows),
        "head_c": HEAD_C,
        **cv_threshold(embeddings, labels, groups, np.arange(len(labels)) < len(rows)),
        "built_in_s": round(time.perf_counter() - start, 2),
    }
    (out_dir / "safety_build.json").write_text(json.dumps(meta, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/models"))
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
