"""Typed results of safety checks and how they combine into one auditable decision."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from safety.policy import Policy

Verdict = Literal["allow", "block"]


@dataclass(frozen=True)
class CheckResult:
    # "nudity" | "hash_bank" | "caption_profanity" | "caption_semantic" | "caption_rules"
    # | "output_frames"
    check: str
    verdict: Verdict
    category: str | None  # policy category when it blocks (or the top category)
    scores: dict[str, float]
    # Categories whose policy action is "review": allowed, but a moderator should look.
    review: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    category: str | None  # the first blocking category
    reason: str  # short human-readable reason, safe to show the user (no scores)
    checks: tuple[CheckResult, ...]
    policy_version: str
    review: tuple[str, ...] = ()  # categories flagged for human review (verdict unaffected)

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "category": self.category,
            "reason": self.reason,
            "policy_version": self.policy_version,
            "review": list(self.review),
            "checks": [
                {
                    "check": c.check,
                    "verdict": c.verdict,
                    "category": c.category,
                    "scores": {k: round(float(v), 4) for k, v in c.scores.items()},
                    "review": list(c.review),
                }
                for c in self.checks
            ],
        }


def judge(
    check: str,
    policy: Policy,
    triggered: Iterable[str],
    scores: dict[str, float],
    top: str | None = None,
) -> CheckResult:
    """One check's result from the categories it triggered, by the policy's action for each.

    ``triggered`` is ordered most severe / highest score first; ``top`` names the category to
    record when nothing blocks (the highest-scoring one), for audits and threshold tuning.
    """
    triggered = list(dict.fromkeys(triggered))
    blocking = [c for c in triggered if policy.action(c) == "block"]
    review = tuple(c for c in triggered if policy.action(c) == "review")
    if blocking:
        return CheckResult(check, "block", blocking[0], scores, review)
    return CheckResult(check, "allow", top, scores, review)


def decide(checks: Iterable[CheckResult], policy: Policy) -> Decision:
    checks = tuple(checks)
    review = tuple(dict.fromkeys(c for r in checks for c in r.review))
    for result in checks:
        if result.verdict == "block":
            category = result.category or "policy"
            reason = (
                policy.categories[category].reason
                if category in policy.categories
                else "This request is not allowed by our content policy."
            )
            return Decision("block", category, reason, checks, policy.version, review)
    return Decision("allow", None, "Allowed.", checks, policy.version, review)
