"""Caption metrics on the held-out split: what `alive-safety eval` prints and the tests assert."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from safety.dataset import LabelledCaption
from safety.decision import Decision
from safety.policy import CAPTION_CATEGORIES


@dataclass(frozen=True)
class CategoryMetrics:
    category: str
    support: int  # held-out captions labelled with this category
    blocked: float  # share of them blocked under any category (what protects users)
    recall: float  # share blocked under this very category
    precision: float  # of captions blocked as this category, share truly labelled so


@dataclass(frozen=True)
class EvalReport:
    policy_version: str
    harmful: int
    benign: int
    harmful_blocked: float
    benign_blocked: float
    categories: tuple[CategoryMetrics, ...]
    misses: tuple[tuple[str, str], ...]  # (label, text) of harmful captions allowed
    false_blocks: tuple[tuple[str, str], ...]  # (category, text) of benign captions blocked

    def to_json(self) -> dict:
        return {
            "policy_version": self.policy_version,
            "harmful": self.harmful,
            "benign": self.benign,
            "harmful_blocked": round(self.harmful_blocked, 4),
            "benign_blocked": round(self.benign_blocked, 4),
            "categories": {
                m.category: {
                    "support": m.support,
                    "blocked": round(m.blocked, 4),
                    "recall": round(m.recall, 4),
                    "precision": round(m.precision, 4),
                }
                for m in self.categories
            },
            "misses": [list(m) for m in self.misses],
            "false_blocks": [list(f) for f in self.false_blocks],
        }


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def evaluate(rows: list[LabelledCaption], check: Callable[[str], Decision]) -> EvalReport:
    decisions = [check(r.text) for r in rows]
    harmful = [(r, d) for r, d in zip(rows, decisions, strict=True) if r.label != "benign"]
    benign = [(r, d) for r, d in zip(rows, decisions, strict=True) if r.label == "benign"]
    metrics = []
    for c in CAPTION_CATEGORIES:
        mine = [d for r, d in harmful if r.label == c]
        predicted = [r for r, d in zip(rows, decisions, strict=True) if d.category == c]
        metrics.append(
            CategoryMetrics(
                category=c,
                support=len(mine),
                blocked=_ratio(sum(d.verdict == "block" for d in mine), len(mine)),
                recall=_ratio(sum(d.category == c for d in mine), len(mine)),
                precision=_ratio(sum(r.label == c for r in predicted), len(predicted)),
            )
        )
    return EvalReport(
        policy_version=decisions[0].policy_version if decisions else "",
        harmful=len(harmful),
        benign=len(benign),
        harmful_blocked=_ratio(sum(d.verdict == "block" for _, d in harmful), len(harmful)),
        benign_blocked=_ratio(sum(d.verdict == "block" for _, d in benign), len(benign)),
        categories=tuple(metrics),
        misses=tuple((r.label, r.text) for r, d in harmful if d.verdict != "block"),
        false_blocks=tuple((d.category or "", r.text) for r, d in benign if d.verdict == "block"),
    )
