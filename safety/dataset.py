"""The versioned caption data: a training split and a held-out evaluation split (never trained on).

Each line of safety/data/captions/{train,eval}.jsonl is ``{"text": ..., "label": ...}`` with
label "benign" or one of the policy's caption categories.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data" / "captions"
TRAIN_FILE = DATA_DIR / "train.jsonl"
EVAL_FILE = DATA_DIR / "eval.jsonl"
ENTITIES_FILE = DATA_DIR / "neutral_entities.txt"
TEMPLATES_FILE = DATA_DIR / "neutral_templates.txt"
# Templates per entity: enough to break the word -> harm shortcut without drowning the
# hand-written captions.
_TEMPLATES_PER_ENTITY = 4


@dataclass(frozen=True)
class LabelledCaption:
    text: str
    label: str  # "benign" or a policy category


def load_captions(path: Path) -> list[LabelledCaption]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            rows.append(LabelledCaption(raw["text"], raw["label"]))
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
            rows.append(LabelledCaption(template.format(e=entity), "benign"))
    return rows


def training_captions() -> list[LabelledCaption]:
    """The train split plus the neutral augmentation (never the held-out split)."""
    rows = load_captions(TRAIN_FILE)
    seen = {r.text for r in rows}
    return rows + [r for r in neutral_captions() if r.text not in seen]
