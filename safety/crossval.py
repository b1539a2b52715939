"""Cross-validation grouped by template/author family: how the checker does on captions whose
family it was not trained on, without touching a held-out split.

Each fold trains the category heads (as safety.build does) on the other families' rows and
scores its own rows with the full check (rules, heads, real-person check, profanity SVM), so
the figure is comparable to the held-out one. The public-figure head and the policy stay as
built: they are not trained on caption rows.
"""

from __future__ import annotations

import numpy as np

from safety.caption import CaptionChecker
from safety.dataset import LabelledCaption
from safety.decision import Decision, decide
from safety.names import person_captions
from safety.normalize import readable


def grouped_cv_decisions(checker: CaptionChecker, rows: list[LabelledCaption]) -> list[Decision]:
    from safety.build import group_folds, train_harm_head, train_heads

    pieces = [checker.pieces(r.text) for r in rows]
    flat = [p for ps in pieces for p in ps]
    caps = [c for r, ps in zip(rows, pieces, strict=True) for c in checker.caps(r.text, ps)]
    emb = checker.embed.many(flat, caps=caps)
    starts = np.cumsum([0] + [len(ps) for ps in pieces])
    whole = emb[starts[:-1]]  # the readable caption: what the build trains on
    people = checker.embed.many([readable(t) for t, _ in person_captions()])
    labels = np.array([r.label for r in rows])
    decisions: list[Decision | None] = [None] * len(rows)
    for test in group_folds([r.family or r.text for r in rows]):
        x = np.concatenate([whole[~test], people])
        y = [*labels[~test], *["benign"] * len(people)]
        heads, harm = train_heads(x, y), train_harm_head(x, y)
        for i in np.flatnonzero(test):
            results = checker.score(rows[i].text, emb[starts[i] : starts[i + 1]], heads, harm)
            decisions[i] = decide(results, checker.policy)
    return [d for d in decisions if d is not None]
