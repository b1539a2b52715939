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


@dataclass(frozen=True)
class GroupRates:
    harmful: int
    harmful_blocked: float
    benign: int
    benign_blocked: float


def rates_by(
    rows: list[LabelledCaption], decisions: list[Decision], key: Callable[[LabelledCaption], str]
) -> dict[str, GroupRates]:
    """Harmful and benign blocking rates per group (language, technique, ...), plus "ALL"."""
    groups: dict[str, list[tuple[LabelledCaption, Decision]]] = {}
    for r, d in zip(rows, decisions, strict=True):
        groups.setdefault(key(r), []).append((r, d))
        groups.setdefault("ALL", []).append((r, d))
    out = {}
    for name in sorted(groups, key=lambda g: (g == "ALL", g)):
        pairs = groups[name]
        harmful = [d for r, d in pairs if r.label != "benign"]
        benign = [d for r, d in pairs if r.label == "benign"]
        out[name] = GroupRates(
            harmful=len(harmful),
            harmful_blocked=_ratio(sum(d.verdict == "block" for d in harmful), len(harmful)),
            benign=len(benign),
            benign_blocked=_ratio(sum(d.verdict == "block" for d in benign), len(benign)),
        )
    return out


def format_table(title: str, columns: dict[str, dict[str, GroupRates]]) -> str:
    """One line per group, and per column "harmful blocked % (n) / benign blocked % (n)"."""
    groups = list(dict.fromkeys(g for col in columns.values() for g in col))
    groups.sort(key=lambda g: (g == "ALL", g))
    head = f"{title:<12}" + "".join(f" | {name:^27}" for name in columns)
    sub = f"{'':<12}" + " | harmful blk    benign blk " * len(columns)
    lines = [head, sub, "-" * len(head)]
    for g in groups:
        cells = []
        for col in columns.values():
            r = col.get(g)
            if r is None:
                cells.append(f" | {'':27}")
                continue
            h = f"{100 * r.harmful_blocked:5.1f}% ({r.harmful:3d})" if r.harmful else " " * 12
            b = f"{100 * r.benign_blocked:5.1f}% ({r.benign:3d})" if r.benign else " " * 12
            cells.append(f" | {h}  {b} ")
        lines.append(f"{g:<12}" + "".join(cells))
    return "\n".join(lines)
