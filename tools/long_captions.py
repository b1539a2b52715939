"""Decisions on long captions built from the caption splits: can harm hide in benign padding?

    PYTHONPATH=$PWD .venv/bin/python -m tools.long_captions [--n 240] [--whole 30,64]

- hidden (train / held-out): a harmful row that is blocked on its own, put at the start, in
  the middle or at the end of 250-480 characters of benign training rows (of its language
  when it has 8 or more that are allowed on their own, else English), joined by ", ", ". ",
  " and " or plain spaces (punctuation dropped); share still blocked.
- long benign: benign training rows allowed on their own, joined to 200-480 characters;
  share blocked.

``--whole`` reruns the sets with other caps on a long caption's whole reading
(safety.caption.WHOLE_TOKENS). Seeds are fixed: the same code and models give the same
captions. The captions are chosen by the current code's decisions on the rows alone.
"""

from __future__ import annotations

import argparse
import os
import random
import re
from pathlib import Path

import numpy as np

SEPARATORS = (", ", ". ", " ", " and ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--whole", default="", help="comma-separated WHOLE_TOKENS to compare")
    args = parser.parse_args()

    from safety import caption
    from safety.caption import CaptionChecker
    from safety.dataset import EVAL_FILE, HELDOUT_FILE, TRAIN_FILE, load_captions
    from safety.decision import decide
    from safety.policy import load_policy

    checker = CaptionChecker(Path(os.environ.get("ALIVE_MODEL_DIR", "build/models")),
                             load_policy(), threads=1)

    def blocked(text: str) -> bool:
        return decide(checker.check(text), checker.policy).verdict == "block"

    train = load_captions(TRAIN_FILE)
    padding: dict[str, list[str]] = {}
    for r in train:
        if r.label == "benign" and len(r.text) < 120 and not blocked(r.text):
            padding.setdefault(r.lang, []).append(r.text)

    def clean(text: str, sep: str) -> str:
        text = text.strip().rstrip(".!?,;")
        return re.sub(r"[.,;:!?]", "", text) if sep == " " else text

    def pad(rng: random.Random, lang: str, size: int) -> list[str]:
        rows = padding[lang] if len(padding.get(lang, [])) >= 8 else padding["en"]
        out: list[str] = []
        while sum(len(x) + 2 for x in out) < size:
            out.append(rng.choice(rows))
        return out

    def hidden(rows, seed: int) -> list[str]:  # rows: list[LabelledCaption]
        rng = random.Random(seed)
        harm = [r for r in rows if r.label != "benign" and len(r.text) < 150 and blocked(r.text)]
        rng.shuffle(harm)
        out = []
        for i, r in enumerate(harm[: args.n]):
            sep = SEPARATORS[i % 4]
            parts = pad(rng, r.lang, rng.randrange(250, 480 - len(r.text)))
            parts.insert((0, len(parts) // 2, len(parts))[(i // 4) % 3], r.text)
            text = sep.join(clean(p, sep) for p in parts)[:500]
            if clean(r.text, sep) in text:  # not cut off by the 500-character limit
                out.append(text)
        return out

    def benign(seed: int) -> list[str]:
        rng = random.Random(seed)
        langs = sorted(padding)
        out = []
        for i in range(args.n):
            sep, lang = SEPARATORS[i % 4], "en" if i % 2 else rng.choice(langs)
            out.append(sep.join(clean(p, sep) for p in pad(rng, lang, rng.randrange(200, 480))))
        return [t[:500] for t in out]

    sets = {
        "hidden (train)": hidden(train, 1),
        "long benign": benign(2),
        "hidden (held-out)": hidden(load_captions(HELDOUT_FILE) + load_captions(EVAL_FILE), 3),
    }
    caps = [int(c) for c in args.whole.split(",") if c] or [caption.WHOLE_TOKENS]
    for name, texts in sets.items():
        for cap in caps:
            caption.WHOLE_TOKENS = cap
            hits = [blocked(t) for t in texts]
            tokens = np.mean([
                sum(len(checker.embed.token_ids(p, c))
                    for p, c in zip(ps, checker.caps(t, ps), strict=True))
                for t in texts for ps in [checker.pieces(t)]
            ])
            print(f"{name:<18} whole cap {cap:3d}: blocked {sum(hits):3d}/{len(hits)} "
                  f"({100 * np.mean(hits):5.1f}%), encoder tokens per caption {tokens:5.1f}")


if __name__ == "__main__":
    main()
