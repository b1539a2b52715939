"""Caption steering: words about motion turn each component up or down.

Deliberately a small, reviewable lexicon rather than a language model: the effect of a caption
must be predictable and recorded (the multipliers go into the clip's params). Hints about what
is in the photo ("lake", "sky") only lower the detection threshold of that region; they never
create a region the pixels do not support.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (pattern, component, multiplier). Components: sky, water, face, all.
_RULES: tuple[tuple[str, str, float], ...] = (
    (r"\b(storm\w*|wind\w*|gale|gust\w*|tempest\w*|racing clouds|fast clouds)\b", "sky", 1.7),
    (r"\b(time-?lapse|drifting clouds|moving clouds)\b", "sky", 1.4),
    (r"\b(crash\w*|pound\w*|rough|choppy|surf\w*|swell\w*|big waves|breakers)\b", "water", 1.7),
    (r"\b(waves?|ripples?|rippling|splash\w*|flowing|rushing)\b", "water", 1.3),
    (r"\b(big|huge|wide|broad|beaming|laugh\w*|grin\w*)\s+(smile|grin)\w*\b", "face", 1.6),
    (r"\b(laugh\w*|grinning|beaming)\b", "face", 1.4),
    (r"\b(smil\w*)\b", "face", 1.15),
    (r"\b(calm|still|stillness|quiet|serene|peaceful|gentle|tranquil|glassy|mirror)\b", "all", 0.6),
    (r"\b(subtle|slight\w*|faint\w*|soft\w*)\b", "all", 0.8),
)
_HINTS: tuple[tuple[str, str], ...] = (
    (r"\b(sky|skies|cloud\w*|sunset|sunrise|dusk|dawn|horizon|overcast)\b", "sky"),
    (
        r"\b(sea|ocean|lake|river|water|waves?|beach|bay|harbou?r|pond|lagoon|shore|coast)\b",
        "water",
    ),
)


@dataclass(frozen=True)
class Steering:
    sky: float = 1.0
    water: float = 1.0
    face: float = 1.0
    hint_sky: bool = False
    hint_water: bool = False


def steer(caption: str) -> Steering:
    """Multipliers (each clamped to 0.4..2.0) and region hints from a free-text caption."""
    text = caption.lower()
    mult = {"sky": 1.0, "water": 1.0, "face": 1.0}
    for pattern, component, factor in _RULES:
        if re.search(pattern, text):
            for name in mult if component == "all" else (component,):
                mult[name] *= factor
    hints = {name: bool(re.search(pattern, text)) for pattern, name in _HINTS}
    return Steering(
        sky=min(2.0, max(0.4, mult["sky"])),
        water=min(2.0, max(0.4, mult["water"])),
        face=min(2.0, max(0.4, mult["face"])),
        hint_sky=hints["sky"],
        hint_water=hints["water"],
    )
