"""The versioned caption data: a training split and two evaluation splits (never trained on).

Each line of safety/data/captions/*.jsonl is ``{"text", "label", "lang", "technique",
"family"}``: label "benign" or one of the policy's caption categories; lang a language group
("hi-latn" is Hindi written in Latin letters); technique how it is written (plain, euphemism,
slang, emoji, leetspeak, spacing, homoglyph, roleplay, indirect); family the template/author
family, shared by a row and its paraphrases and translations (grouped cross-validation keeps a
family on one side).

- train.jsonl: what the heads are trained on and the thresholds are tuned on.
- eval.jsonl: the original English held-out split (written with the training data).
- heldout.jsonl: the multilingual held-out split, written after and apart from the training
  rows, from other scenes and angles (no row paraphrases a training row). Never tune on it.
- probe_everyday.jsonl: 79 everyday benign captions (going home, family, school, weather,
  sport; 31 language groups, 15 of them in no other file) written by another hand than every
  other file, to count false blocks on text nobody here tuned for. Never train or tune on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data" / "captions"
TRAIN_FILE = DATA_DIR / "train.jsonl"
EVAL_FILE = DATA_DIR / "eval.jsonl"
HELDOUT_FILE = DATA_DIR / "heldout.jsonl"
PROBE_FILE = DATA_DIR / "probe_everyday.jsonl"
ENTITIES_FILE = DATA_DIR / "neutral_entities.txt"
TEMPLATES_FILE = DATA_DIR / "neutral_templates.txt"
# Templates per entity: enough to break the word -> harm shortcut without drowning the
# hand-written captions.
_TEMPLATES_PER_ENTITY = 4


@dataclass(frozen=True)
class LabelledCaption:
    text: str
    label: str  # "benign" or a policy category
    lang: str = "en"
    technique: str = "plain"
    family: str = ""


def load_captions(path: Path) -> list[LabelledCaption]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            rows.append(
                LabelledCaption(
                    raw["text"],
                    raw["label"],
                    raw.get("lang", "en"),
                    raw.get("technique", "plain"),
                    raw.get("family", ""),
                )
            )
    return rows


def _lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def neutral_captions() -> list[LabelledCaption]:
    """Benign captions naming the people and things harmful captions also name.

    Deterministic: entity i takes templates i, i+1, ... (cyclically), so every build trains on
    the same rows and every template is used.
    """
    entities, templates = _lines(ENTITIES_FILE), _lines(TEMPLATES_FILE)
    rows = []
    for i, entity in enumerate(entities):
        for j in range(_TEMPLATES_PER_ENTITY):
            template = templates[(i + j) % len(templates)]
            rows.append(
                LabelledCaption(template.format(e=entity), "benign", family=f"neutral-{i}")
            )
    return rows


def training_captions() -> list[LabelledCaption]:
    """The train split plus the neutral augmentation (never the held-out split)."""
    rows = load_captions(TRAIN_FILE)
    seen = {r.text for r in rows}
    return rows + [r for r in neutral_captions() if r.text not in seen]
