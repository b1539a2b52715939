"""Signals that a caption names a real person.

Two signals, both measured in ``alive-safety eval`` (the ``person`` block):
- the public-figure head, a logistic head over the e5 embedding trained at build time on
  neutral templates filled with public figures (label 1) and ordinary people (label 0), from
  safety/data/people/. It reads lower-case and non-Latin names the model knows.
- ``has_capitalised_name``: two capitalised words in a row inside a sentence ("show Taylor
  Swift ...", "make Barack Obama smile"), for names the model does not know. One capitalised
  word is not enough: German capitalises every noun.
Neither blocks on its own: safety.caption.person_result combines them with the harm heads.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

PEOPLE_DIR = Path(__file__).parent / "data" / "people"
TRAIN_NAMES = PEOPLE_DIR / "train_names.txt"
HELDOUT_NAMES = PEOPLE_DIR / "heldout_names.txt"
TEMPLATES = PEOPLE_DIR / "templates.txt"
ORDINARY = PEOPLE_DIR / "ordinary.txt"

# Capitalised words that are not people: pronoun, days, months, holidays, common openers.
_NOT_NAMES_TEXT = """i i'm i'll i've i'd ok okay omg lol god mom dad mum grandma grandpa
monday tuesday wednesday thursday friday saturday sunday january february march april may
june july august september october november december christmas easter halloween
diwali eid ramadan holi new year years eve happy birthday merry please make show let
animate turn add give the a an my our his her this that these those"""
_NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split())
_WORD = re.compile(r"[^\W\d_][\w'’.-]*")
_SENTENCE_END = re.compile(r"[.!?:\n]\s*$")


def _name_like(word: str) -> bool:
    return word[0].isupper() and not word.isupper() and word.lower() not in _NOT_NAMES


def has_capitalised_name(text: str) -> bool:
    """True when two capitalised (not all-capital) words follow each other inside a sentence
    and neither is a common capitalised non-name. Scripts with case only (Latin, Cyrillic,
    Greek); the public-figure head covers the others."""
    text = unicodedata.normalize("NFKC", text)
    words = list(_WORD.finditer(text))
    for first, second in zip(words, words[1:], strict=False):
        if not (_name_like(first.group(0)) and _name_like(second.group(0))):
            continue
        if text[first.end() : second.start()].strip():
            continue  # not adjacent
        before = text[: first.start()]
        if not before.strip() or _SENTENCE_END.search(before):
            continue  # sentence-initial capitals say nothing
        return True
    return False


def _lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def person_captions(names: Path = TRAIN_NAMES, per_name: int = 6) -> list[tuple[str, int]]:
    """(caption, 1 if it names a public figure): name i takes templates i, i+1, ... (cyclic,
    deterministic), and so does each ordinary person."""
    templates = _lines(TEMPLATES)

    def fill(people: list[str], label: int) -> list[tuple[str, int]]:
        return [
            (templates[(i + j) % len(templates)].format(p=p), label)
            for i, p in enumerate(people)
            for j in range(per_name)
        ]

    return fill(_lines(names), 1) + fill(_lines(ORDINARY), 0)
