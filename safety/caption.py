"""Caption checks: obfuscation-aware rules, the profanity SVM and MiniLM category heads.

Every caption is first expanded into its normalised readings (safety.normalize.views); each
scorer sees all of them and the worst reading counts.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from safety.decision import CheckResult, judge
from safety.embed import Embedder
from safety.normalize import clauses, views
from safety.policy import Policy

RULES_FILE = Path(__file__).parent / "data" / "caption_rules.toml"
HEADS_FILE = "caption_heads.npz"


@dataclass(frozen=True)
class Rule:
    category: str
    name: str
    any_of: tuple[re.Pattern[str], ...]
    all_of: tuple[re.Pattern[str], ...]

    def matches(self, text: str) -> bool:
        if self.all_of and not all(p.search(text) for p in self.all_of):
            return False
        return not self.any_of or any(p.search(text) for p in self.any_of)


def load_rules(path: Path = RULES_FILE) -> tuple[Rule, ...]:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    return tuple(
        Rule(
            category=r["category"],
            name=r["name"],
            any_of=tuple(re.compile(p) for p in r.get("any", [])),
            all_of=tuple(re.compile(p) for p in r.get("all", [])),
        )
        for r in raw.get("rule", [])
    )


def rules_result(readings: list[str], rules: tuple[Rule, ...], policy: Policy) -> CheckResult:
    hits = [r for r in rules if any(r.matches(v) for v in readings)]
    scores = {f"{r.category}:{r.name}": 1.0 for r in hits}
    return judge("caption_rules", policy, [r.category for r in hits], scores)


class ProfanityModel:
    """alt-profanity-check's shipped linear SVM + TF-IDF (imported lazily: ~1.5 s of joblib)."""

    def __init__(self) -> None:
        from profanity_check import predict_prob

        self._predict = predict_prob

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._predict(texts), dtype=np.float64)


def profanity_result(prob: float, policy: Policy) -> CheckResult:
    hit = ["profanity"] if prob >= policy.profanity_threshold else []
    return judge("caption_profanity", policy, hit, {"profanity": prob}, "profanity")


@dataclass(frozen=True)
class CaptionHeads:
    """One logistic-regression head per category over MiniLM embeddings (trained at build)."""

    categories: tuple[str, ...]
    weights: np.ndarray  # (C, 384)
    bias: np.ndarray  # (C,)

    @classmethod
    def load(cls, model_dir: Path) -> CaptionHeads:
        with np.load(Path(model_dir) / HEADS_FILE) as z:
            return cls(tuple(str(c) for c in z["categories"]), z["weights"], z["bias"])

    def save(self, model_dir: Path) -> None:
        np.savez(
            Path(model_dir) / HEADS_FILE,
            categories=np.array(self.categories),
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
        )

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, C) probabilities."""
        z = embeddings @ self.weights.T + self.bias
        return 1.0 / (1.0 + np.exp(-z))


def semantic_result(probs: dict[str, float], policy: Policy) -> CheckResult:
    ranked = sorted(probs, key=lambda c: -probs[c])
    hits = [c for c in ranked if probs[c] >= policy.category(c).caption_threshold]
    return judge("caption_semantic", policy, hits, probs, ranked[0] if ranked else None)


class CaptionChecker:
    def __init__(self, model_dir: Path, policy: Policy, threads: int = 1) -> None:
        self.policy = policy
        self.rules = load_rules()
        self.embed = Embedder(model_dir, threads)
        self.heads = CaptionHeads.load(model_dir)
        self.profanity = ProfanityModel()
        for c in self.heads.categories:
            policy.category(c)  # fail at start, not per request, if the policy lacks one

    def check(self, text: str) -> tuple[CheckResult, ...]:
        readings = views(text)
        if not readings:
            return ()
        rules = rules_result(readings, self.rules, self.policy)
        # Score whole readings and, for longer captions, each clause of them: worst one counts.
        pieces = list(dict.fromkeys(readings + [c for r in readings for c in clauses(r)]))
        probs = self.heads(self.embed(pieces)).max(axis=0)
        semantic = semantic_result(
            {c: float(p) for c, p in zip(self.heads.categories, probs, strict=True)}, self.policy
        )
        profanity = profanity_result(float(self.profanity(readings).max()), self.policy)
        return (rules, semantic, profanity)
