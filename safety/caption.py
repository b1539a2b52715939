"""Caption checks: obfuscation-aware rules, the profanity SVM, multilingual-e5 category heads
and the real-person check.

Every caption is first expanded into its normalised readings (safety.normalize.views); each
scorer sees them and the worst reading counts. The e5 heads read every language the model
was trained on (about 100); the rules and the profanity SVM are English backstops.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from safety.decision import CheckResult, judge
from safety.embed import Embedder
from safety.names import has_capitalised_name
from safety.normalize import clauses, model_readings, views
from safety.policy import Policy

RULES_FILE = Path(__file__).parent / "data" / "caption_rules.toml"
HEADS_FILE = "caption_heads.npz"
PERSON_FILE = "person_head.npz"
PUBLIC_FIGURE = "public_figure"
HARM_FILE = "harm_svm.npz"
HARMFUL = "harmful"
# Captions longer than this many words (or characters, for scripts without spaces) are also
# scored clause by clause.
_CLAUSE_WORDS = 12
_CLAUSE_CHARS = 80
# A long caption's whole reading is read up to this many tokens (its clauses cover the rest):
# 500 characters are ~125 tokens, and the encoder's time grows with them. 24 (26 with the
# start and end tokens) is above 99% of the training captions' lengths. `python -m
# tools.long_captions --whole 24,30,64` (harmful rows hidden in long benign padding, long
# benign captions): 64 blocked 178/232 hidden training rows, 29/240 benign, 186/234 hidden
# held-out rows at ~247 encoder tokens a caption; 30: 176, 32, 190 at ~211; 24: 181, 29,
# 194 at ~204 (picked on the first two sets; the differences are within the int8 encoder's
# batch-to-batch noise, the cost is not).
WHOLE_TOKENS = 24


def _long(reading: str) -> bool:
    return len(reading.split()) > _CLAUSE_WORDS or len(reading) > _CLAUSE_CHARS


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
    """alt-profanity-check's shipped linear SVM + TF-IDF (imported lazily: ~1.5 s of joblib).

    Its ``predict_prob`` is the mean, over the calibrated classifier's folds, of a sigmoid of
    each fold's linear SVM score. Computed here from the same shipped weights (identical
    probabilities): sklearn's input validation around the five folds cost ~5 ms a caption
    for ~0.1 ms of arithmetic."""

    def __init__(self) -> None:
        from profanity_check import profanity_check as shipped

        self._vectorizer = shipped.vectorizer
        folds = shipped.model.calibrated_classifiers_
        assert all(f.method == "sigmoid" and len(f.calibrators) == 1 for f in folds)
        self._coef = np.stack([np.ravel(f.estimator.coef_) for f in folds], axis=1)  # (V, F)
        self._intercept = np.array([float(np.ravel(f.estimator.intercept_)[0]) for f in folds])
        self._a = np.array([float(f.calibrators[0].a_) for f in folds])
        self._b = np.array([float(f.calibrators[0].b_) for f in folds])

    def __call__(self, texts: list[str]) -> np.ndarray:
        scores = self._vectorizer.transform(texts) @ self._coef + self._intercept  # (N, F)
        return (1.0 / (1.0 + np.exp(self._a * scores + self._b))).mean(axis=1)


def profanity_result(prob: float, policy: Policy) -> CheckResult:
    hit = ["profanity"] if prob >= policy.profanity_threshold else []
    return judge("caption_profanity", policy, hit, {"profanity": prob}, "profanity")


@dataclass(frozen=True)
class CaptionHeads:
    """One logistic-regression head per category over e5 embeddings (trained at build; the
    feature standardisation is folded into the weights)."""

    categories: tuple[str, ...]
    weights: np.ndarray  # (C, 384)
    bias: np.ndarray  # (C,)

    @classmethod
    def load(cls, model_dir: Path, name: str = HEADS_FILE) -> CaptionHeads:
        with np.load(Path(model_dir) / name) as z:
            return cls(tuple(str(c) for c in z["categories"]), z["weights"], z["bias"])

    def save(self, model_dir: Path, name: str = HEADS_FILE) -> None:
        np.savez(
            Path(model_dir) / name,
            categories=np.array(self.categories),
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
        )

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, C) probabilities."""
        z = embeddings @ self.weights.T + self.bias
        return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class KernelHead:
    """The pooled harmful-vs-benign head: an RBF-kernel SVM over standardised e5 embeddings
    (trained at build), its decision value squashed to (0, 1). Trigger words ("killer
    sunset", "shoot the video") sit in the same direction as real harm, so no single linear
    cut separates them; the kernel keeps them apart. Grouped cross-validation on the train
    split: ROC AUC 0.967 (logistic) -> 0.985, harmful caught at 3% benign 78% -> 89%."""

    support: np.ndarray  # (S, 384) standardised support vectors
    dual: np.ndarray  # (S,) dual coefficients (sign = class)
    intercept: float
    gamma: float
    mean: np.ndarray  # (384,) feature standardisation
    std: np.ndarray

    @classmethod
    def load(cls, model_dir: Path, name: str = HARM_FILE) -> KernelHead:
        with np.load(Path(model_dir) / name) as z:
            return cls(
                z["support"], z["dual"], float(z["intercept"]), float(z["gamma"]), z["mean"],
                z["std"],
            )

    def save(self, model_dir: Path, name: str = HARM_FILE) -> None:
        np.savez(
            Path(model_dir) / name,
            support=self.support.astype(np.float32),
            dual=self.dual.astype(np.float32),
            intercept=np.float32(self.intercept),
            gamma=np.float32(self.gamma),
            mean=self.mean.astype(np.float32),
            std=self.std.astype(np.float32),
        )

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, 1) scores in (0, 1): the logistic of the SVM decision value."""
        x = (embeddings - self.mean) / self.std
        d2 = (
            (x * x).sum(axis=1)[:, None]
            - 2.0 * x @ self.support.T
            + (self.support * self.support).sum(axis=1)[None, :]
        )
        z = np.exp(-self.gamma * np.maximum(d2, 0.0)) @ self.dual + self.intercept
        return (1.0 / (1.0 + np.exp(-z)))[:, None]


def semantic_result(probs: dict[str, float], harm: float, policy: Policy) -> CheckResult:
    """Categories whose head reaches its threshold; and when none does but the pooled
    harmful-vs-benign head reaches ``harmful_threshold``, the likeliest category. The pooled
    head generalises better to unseen phrasings (it learns from every category's rows); the
    category heads name the harm."""
    ranked = sorted(probs, key=lambda c: -probs[c])
    hits = [c for c in ranked if probs[c] >= policy.category(c).caption_threshold]
    if not hits and ranked and harm >= policy.harmful_threshold:
        hits = ranked[:1]
    scores = {**probs, HARMFUL: harm}
    return judge("caption_semantic", policy, hits, scores, ranked[0] if ranked else None)


def person_result(
    person: float, named: bool, probs: dict[str, float], policy: Policy
) -> CheckResult:
    """A named real person in a harmful scene, or made to say things, is impersonation.

    ``person`` is the public-figure head's probability, ``named`` whether the caption holds a
    capitalised personal name. With a person present, any harmful category reaching
    ``public_figure_factor`` of its threshold blocks as deceptive_impersonation: a famous
    name pulls the other heads' scores down ("make <pop star> take her top off" reads less
    sexual than "make her take her top off"), so the bar is lowered, not removed. A neutral
    mention ("make Obama smile" on a poster) is allowed and recorded.
    """
    present = person >= policy.public_figure_threshold or named
    ratio = max(
        (p / policy.category(c).caption_threshold for c, p in probs.items() if c != HARMFUL),
        default=0.0,
    )
    ratio = max(ratio, probs.get(HARMFUL, 0.0) / policy.harmful_threshold)
    hit = present and ratio >= policy.public_figure_factor
    scores = {PUBLIC_FIGURE: person, "capitalised_name": float(named), "harm_ratio": ratio}
    triggered = ["deceptive_impersonation"] if hit else []
    return judge("caption_person", policy, triggered, scores, PUBLIC_FIGURE)


class CaptionChecker:
    def __init__(self, model_dir: Path, policy: Policy, threads: int = 1) -> None:
        self.policy = policy
        self.rules = load_rules()
        self.embed = Embedder(model_dir, threads)
        self.heads = CaptionHeads.load(model_dir)
        self.person = CaptionHeads.load(model_dir, PERSON_FILE)
        self.harm = KernelHead.load(model_dir)
        self.profanity = ProfanityModel()
        # The kernel head's (pieces x 1000 support vectors) product is big enough for
        # OpenBLAS to start its own threads: on a loaded machine waiting for them cost 8-20 ms
        # of wall time for 0.2 ms of work. Held to the checker's thread budget instead.
        from threadpoolctl import ThreadpoolController

        self._blas = ThreadpoolController()
        self._threads = max(1, threads)
        for c in self.heads.categories:
            policy.category(c)  # fail at start, not per request, if the policy lacks one

    def pieces(self, text: str) -> list[str]:
        """What the e5 heads score: each model reading and, for long captions, its clauses
        (so a harmful request cannot hide in benign padding)."""
        out: list[str] = []
        for reading in model_readings(text):
            out.append(reading)
            if _long(reading):
                out.extend(clauses(reading))
        return list(dict.fromkeys(out))

    def caps(self, text: str, pieces: list[str]) -> list[int | None]:
        """Token caps for ``pieces``: a whole reading that has clauses is read up to
        WHOLE_TOKENS (its clauses cover every word past the cap, and the heads were trained
        on captions shorter than that); everything else is read whole."""
        covered = {r for r in model_readings(text) if _long(r) and clauses(r)}
        return [WHOLE_TOKENS if p in covered else None for p in pieces]

    def embed_pieces(self, text: str) -> np.ndarray:
        """The e5 embeddings of ``self.pieces(text)``, in that order."""
        pieces = self.pieces(text)
        # Batches of similar token length: a whole 500-character caption and its short
        # clauses in one padded batch would cost several times the caption alone.
        return self.embed.many(pieces, batch=8, caps=self.caps(text, pieces))

    def check(self, text: str) -> tuple[CheckResult, ...]:
        if not views(text):
            return ()
        return self.score(text, self.embed_pieces(text))

    def score(
        self,
        text: str,
        embeddings: np.ndarray,
        heads: CaptionHeads | None = None,
        harm: KernelHead | None = None,
    ) -> tuple[CheckResult, ...]:
        """All caption checks given the e5 embeddings of ``self.pieces(text)`` (the first is
        the whole readable caption). ``heads`` / ``harm`` default to the built ones; evaluation
        swaps in heads trained on cross-validation folds."""
        heads, harm = heads or self.heads, harm or self.harm
        readings = views(text)
        rules = rules_result(readings, self.rules, self.policy)
        probs = heads(embeddings).max(axis=0)
        scores = {c: float(p) for c, p in zip(heads.categories, probs, strict=True)}
        with self._blas.limit(limits=self._threads, user_api="blas"):
            harm_prob = float(harm(embeddings).max())
        semantic = semantic_result(scores, harm_prob, self.policy)
        person = float(self.person(embeddings[:1])[0, 0])
        people = person_result(
            person, has_capitalised_name(text), {**scores, HARMFUL: harm_prob}, self.policy
        )
        profanity = profanity_result(float(self.profanity(readings).max()), self.policy)
        return (rules, semantic, people, profanity)
