"""The versioned safety policy: categories, thresholds and actions, loaded from one TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Action = Literal["block", "review", "allow"]
DEFAULT_POLICY = Path(__file__).with_name("policy.toml")

# Categories the caption heads are trained for (safety/data/captions/*.jsonl labels).
CAPTION_CATEGORIES: tuple[str, ...] = (
    "sexual",
    "sexual_minors",
    "violence_gore",
    "threats",
    "hate",
    "self_harm",
    "harassment",
    "deceptive_impersonation",
    "illegal_goods",
)


# NudeNet 320n's classes, in the order of the model's class channels (its ONNX
# metadata `names` says the same); safety.nudity decodes the output with it.
NUDENET_CLASSES: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
NUDENET_LABELS = frozenset(NUDENET_CLASSES)


@dataclass(frozen=True)
class Category:
    name: str
    action: Action
    reason: str
    caption_threshold: float = 0.5


@dataclass(frozen=True)
class NudityRule:
    label: str  # NudeNet class name
    category: str
    threshold: float


@dataclass(frozen=True)
class Policy:
    version: str
    categories: dict[str, Category]
    nudity_rules: tuple[NudityRule, ...]
    pdq_max_distance: int
    pdq_min_quality: int
    profanity_threshold: float
    output_frame_samples: int
    # A named real person in the caption: the public-figure head's probability that counts as
    # one, and the share of a harmful category's threshold that then blocks as impersonation.
    public_figure_threshold: float = 0.5
    public_figure_factor: float = 0.6
    # The pooled harmful-vs-benign caption head's probability that blocks (as the likeliest
    # category) when no category head reaches its own threshold.
    harmful_threshold: float = 0.8

    def category(self, name: str) -> Category:
        try:
            return self.categories[name]
        except KeyError:
            raise KeyError(f"policy {self.version} has no category {name!r}") from None

    def action(self, name: str) -> Action:
        return self.category(name).action


def load_policy(path: Path | None = None) -> Policy:
    path = Path(path) if path else DEFAULT_POLICY
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    categories: dict[str, Category] = {}
    for name, table in raw.get("categories", {}).items():
        action = table.get("action", "block")
        if action not in ("block", "review", "allow"):
            raise ValueError(f"{path}: category {name}: unknown action {action!r}")
        categories[name] = Category(
            name=name,
            action=action,
            reason=str(table.get("reason", f"Not allowed by policy ({name}).")),
            caption_threshold=float(table.get("caption_threshold", 0.5)),
        )
    # Every category a check can produce must be in the policy, so a decision never meets an
    # unknown one at request time.
    required = (*CAPTION_CATEGORIES, "known_bad_image", "profanity")
    missing = [c for c in required if c not in categories]
    if missing:
        raise ValueError(f"{path}: policy lacks categories {missing}")
    rules = []
    for label, rule in raw.get("nudity", {}).get("classes", {}).items():
        if label not in NUDENET_LABELS:
            raise ValueError(f"{path}: {label!r} is not a NudeNet class")
        if rule["category"] not in categories:
            raise ValueError(f"{path}: nudity class {label} maps to unknown {rule['category']!r}")
        rules.append(NudityRule(label, rule["category"], float(rule["threshold"])))
    bank = raw.get("hash_bank", {})
    return Policy(
        version=str(raw["version"]),
        categories=categories,
        nudity_rules=tuple(rules),
        pdq_max_distance=int(bank.get("max_distance", 31)),
        pdq_min_quality=int(bank.get("min_quality", 50)),
        profanity_threshold=float(raw.get("caption", {}).get("profanity_threshold", 0.9)),
        output_frame_samples=int(raw.get("output_frames", {}).get("samples", 4)),
        public_figure_threshold=float(raw.get("caption", {}).get("public_figure_threshold", 0.5)),
        public_figure_factor=float(raw.get("caption", {}).get("public_figure_factor", 0.6)),
        harmful_threshold=float(raw.get("caption", {}).get("harmful_threshold", 0.8)),
    )
