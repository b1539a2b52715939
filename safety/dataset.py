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
