"""Undo the usual tricks people use to slip words past a text filter.

``views(text)`` returns the distinct readings of a caption a classifier should see: the plain
normalised text, the text with spaced / dotted letters joined ("n.u.d.e" -> "nude",
"k y s" -> "kys"), and a leetspeak-decoded reading ("k1ll" -> "kill"). Each view is scored and
the worst score counts, so decoding never has to guess which reading was meant.
"""

from __future__ import annotations

import re
import unicodedata

# Invisible characters used to split words: zero-width space/joiners, word joiner, BOM,
# soft hyphen, Mongolian vowel separator, and the invisible math operators.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u2061\u2062\u2063\u2064\u034f"), None
)

# Cyrillic and Greek letters that render like Latin ones (after NFKC and lower-casing).
_HOMOGLYPHS = str.maketrans(
    {
        # Cyrillic
        "а": "a",
        "в": "b",
        "с": "c",
        "е": "e",
        "ё": "e",
        "һ": "h",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "ԛ": "q",
        "г": "r",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "х": "x",
        "ԝ": "w",
        "ь": "b",
        "ӏ": "l",
        "п": "n",
        "и": "u",
        "д": "d",
        "л": "n",
        "з": "3",
        "ч": "4",
        # Greek
        "α": "a",
        "β": "b",
        "γ": "y",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ω": "w",
        "μ": "u",
        "ς": "s",
        "σ": "o",
        "δ": "d",
        "λ": "a",
        "ϲ": "c",
        # Latin look-alikes NFKC leaves alone
        "ı": "i",
        "ł": "l",
        "ø": "o",
        "đ": "d",
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
    }
)

_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "9": "g",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "+": "t",
        "€": "e",
        "£": "l",
    }
)
_LEET_CHARS = "013457 89@$!|+€£".replace(" ", "")
# A word with letters glued by separators: n.u.d.e, k-i-l-l, s_e_x, n*u*d*e
_SEPARATED = re.compile(r"\b(?:\w[.\-_*~/\\,'+]){2,}\w\b")
_SEPARATOR_CHARS = re.compile(r"[.\-_*~/\\,'+]")
# Three or more single characters separated by spaces: "k y s", "n u d e s"
_SPACED = re.compile(r"(?<!\S)(?:\w\s+){2,}\w(?!\S)")
_REPEATS = re.compile(r"(\w)\1{2,}")  # "killlll" -> "kill"
_WS = re.compile(r"\s+")


def basic(text: str) -> str:
    """NFKC, drop invisible characters, strip accents, map homoglyphs, lower-case."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    # Strip combining marks (Zalgo text and accents) after decomposing.
    text = "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )
    text = text.lower().translate(_HOMOGLYPHS)
    return _WS.sub(" ", text).strip()


def join_split_letters(text: str) -> str:
    text = _SEPARATED.sub(lambda m: _SEPARATOR_CHARS.sub("", m.group(0)), text)
    text = _SPACED.sub(lambda m: _WS.sub("", m.group(0)), text)
    return _REPEATS.sub(r"\1\1", text)


_ORDINAL = re.compile(r"^\d+(st|nd|rd|th|s|am|pm|k|m|x|d|h|yo)$")


def _deleet_word(word: str) -> str:
    # Only words mixing letters with leet symbols; "2024", "$20", "1st" stay as they are.
    core = word.strip(".,;:?\"'()[]").rstrip("!?.")
    if _ORDINAL.match(core):
        return word
    if any(c.isalpha() for c in core) and any(c in _LEET_CHARS for c in core):
        return word.replace(core, core.translate(_LEET))
    return word


def deleet(text: str) -> str:
    return " ".join(_deleet_word(w) for w in text.split(" "))


def views(text: str) -> list[str]:
    """Distinct normalised readings of ``text``, the plain one first."""
    plain = basic(text)
    joined = join_split_letters(plain)
    decoded = join_split_letters(deleet(plain))
    # Leet inside dotted words ("k.1.l.l") is seen only after joining, so decode both orders.
    decoded2 = deleet(joined)
    return list(dict.fromkeys(v for v in (plain, joined, decoded, decoded2) if v))


_CLAUSE_SPLIT = re.compile(r"[.!?;:\n]+\s*|,\s*|\s+(?:and then|then|but|and)\s+")
_MAX_CLAUSES = 12


def clauses(text: str) -> list[str]:
    """Clauses of a longer caption, so a harmful request cannot hide in benign padding.

    Mean-pooled sentence embeddings average over the whole text: "lovely sunset with the
    family ..., and you should hang yourself" reads as mostly benign. Scoring each clause too
    (and the worst one counting) removes that dilution. Single-word fragments are dropped.
    """
    parts = [p.strip() for p in _CLAUSE_SPLIT.split(text) if p and p.strip()]
    parts = [p for p in parts if len(p.split()) >= 2]
    if len(parts) <= 1:
        return []
    return parts[:_MAX_CLAUSES]
