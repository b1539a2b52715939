"""Undo the usual tricks people use to slip words past a text filter.

``views(text)`` returns the distinct readings of a caption a classifier should see: the plain
normalised text, the text with spaced / dotted letters joined ("n.u.d.e" -> "nude",
"k y s" -> "kys"), and a leetspeak-decoded reading ("k1ll" -> "kill"). Each view is scored and
the worst score counts, so decoding never has to guess which reading was meant.

Emoji are read as words first (the ``emoji`` package's English names, with the coded meanings
people give some of them: 🍑 -> "peach butt", ❄️ -> "snowflake cocaine"), so "👧 + 🛏️ + 👙"
reaches the classifiers as "girl + bed + bikini". Runs of one emoji count once.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import emoji

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


# Coded meanings that the plain emoji names miss; the name stays too, so "🍑 pie" still reads
# as fruit to a reader that wants it.
_EMOJI_SLANG = {
    "eggplant": "eggplant penis",
    "peach": "peach butt",
    "cherries": "cherries breasts",
    "droplets": "droplets sex",
    "snowflake": "snowflake cocaine",
    "leaf fluttering in wind": "leaf weed",
    "herb": "herb weed",
    "pill": "pill drugs",
    "electric plug": "plug drug dealer",
    "syringe": "syringe drugs",
    "knot": "knot rope hang",
    "kitchen knife": "knife stab",
    "water pistol": "gun",
    "pistol": "gun",
    "drop of blood": "blood",
    "no one under eighteen": "18+ adult sexual",
    "cat face": "cat pussy",
    "briefs": "underwear",
}
_MAX_EMOJI = 40  # a caption of 500 emoji reads as its first 40 distinct runs
_SKIN_OR_GENDER = re.compile(r"[_ ](light|medium-light|medium|medium-dark|dark) skin tone")


def _emoji_name(chars: str) -> str:
    name = emoji.demojize(chars, delimiters=("", "")).replace("_", " ")
    name = _SKIN_OR_GENDER.sub("", name).strip(": ")
    name = name.replace(":", " ").strip()
    return _EMOJI_SLANG.get(name, name)


def decode_emoji(text: str) -> str:
    """Replace emoji by their names (spaces around them); repeated emoji count once."""
    if emoji.emoji_count(text) == 0:
        return text
    out: list[str] = []
    pos, seen, last = 0, 0, ""
    for token in emoji.analyze(text, non_emoji=False, join_emoji=True):
        match = token.value
        out.append(text[pos : match.start])
        pos = match.end
        if token.chars == last:
            continue
        last = token.chars
        seen += 1
        if seen <= _MAX_EMOJI:
            out.append(f" {_emoji_name(token.chars)} ")
    out.append(text[pos:])
    return "".join(out)


_LATIN = re.compile(r"[a-z]")
_MAX_MARKS = 2  # Vietnamese stacks two marks on a letter; Zalgo text stacks dozens


def _unmask_word(match: re.Match[str]) -> str:
    # Cyrillic/Greek look-alikes are mapped only inside words that also hold Latin letters
    # ("nudе" with a Cyrillic е): whole Russian or Greek words stay readable for the model.
    word = match.group(0)
    if _LATIN.search(word) and word != (mapped := word.translate(_HOMOGLYPHS)):
        return mapped
    return word


# One check reads a caption's readable text several times (views, model readings, the
# clause caps); emoji lookup makes each reading ~1 ms for 500 characters.
@functools.lru_cache(maxsize=256)
def readable(text: str) -> str:
    """What the multilingual model reads: NFKC, emoji as words, invisible characters and
    stacked (Zalgo) marks dropped, look-alike letters inside Latin words mapped, lower-case.
    Accents and every script's own letters stay."""
    text = decode_emoji(unicodedata.normalize("NFKC", text)).translate(_INVISIBLE)
    kept, marks = [], 0
    for ch in unicodedata.normalize("NFD", text):
        marks = marks + 1 if unicodedata.combining(ch) else 0
        if marks <= _MAX_MARKS:
            kept.append(ch)
    text = unicodedata.normalize("NFC", "".join(kept)).lower()
    text = re.sub(r"\S+", _unmask_word, text)
    return _WS.sub(" ", text).strip()


def basic(text: str) -> str:
    """The readable text folded for the (English) rules: accents stripped, every look-alike
    letter mapped to Latin."""
    text = "".join(
        ch for ch in unicodedata.normalize("NFKD", readable(text)) if not unicodedata.combining(ch)
    )
    return unicodedata.normalize("NFC", text).translate(_HOMOGLYPHS)


def join_split_letters(text: str) -> str:
    text = _SEPARATED.sub(lambda m: _SEPARATOR_CHARS.sub("", m.group(0)), text)
    text = _SPACED.sub(lambda m: _WS.sub("", m.group(0)), text)
    return _REPEATS.sub(r"\1\1", text)


_ORDINAL = re.compile(r"^\d+(st|nd|rd|th|s|am|pm|k|m|x|d|h|yo)$")


# "1m" (I'm), "1d": read as leet only when the caption already has other leet words.
_SHORT_UNIT = re.compile(r"^[013457]([a-z])$")


def _deleet_word(word: str, leet_context: bool = False) -> str:
    # Only words mixing letters with leet symbols; "2024", "$20", "1st" stay as they are.
    core = word.strip(".,;:?\"'()[]").rstrip("!?.")
    if _ORDINAL.match(core) and not (leet_context and _SHORT_UNIT.match(core)):
        return word
    if any(c.isalpha() for c in core) and any(c in _LEET_CHARS for c in core):
        return word.replace(core, core.translate(_LEET))
    return word


def deleet(text: str) -> str:
    words = text.split(" ")
    decoded = [_deleet_word(w) for w in words]
    if decoded != words:  # leet elsewhere: "1m" is "im", not one million
        decoded = [_deleet_word(w, leet_context=True) for w in words]
    return " ".join(decoded)


def views(text: str) -> list[str]:
    """Distinct normalised readings of ``text``, the readable one first, then the decoded
    ones; the accent-folded reading (for the rules) last."""
    return list(_views(text))


def model_readings(text: str) -> list[str]:
    """The readings the multilingual model scores: the readable text and its decoded forms
    (not the accent-folded one, which only the English rules need)."""
    return list(_model_readings(text))


def clear_caches() -> None:
    """Forget every caption seen (benchmarks time a caption as if new)."""
    for cached in (readable, _views, _model_readings):
        cached.cache_clear()


# One check asks for the readings several times (the guard, the pieces, their caps, the
# scores): decoding leet word by word made each call ~0.5 ms for 500 characters.
@functools.lru_cache(maxsize=256)
def _views(text: str) -> tuple[str, ...]:
    # The model's readings, then the accent-folded ones (for the English rules).
    folded = basic(text)
    readings = (*_model_readings(text), folded, join_split_letters(deleet(folded)))
    return tuple(dict.fromkeys(v for v in readings if v))


@functools.lru_cache(maxsize=256)
def _model_readings(text: str) -> tuple[str, ...]:
    plain = readable(text)
    joined = join_split_letters(plain)
    decoded = join_split_letters(deleet(plain))
    # Leet inside dotted words ("k.1.l.l") is seen only after joining, so decode both orders.
    readings = (plain, joined, decoded, deleet(joined))
    return tuple(dict.fromkeys(v for v in readings if v))


_CLAUSE_SPLIT = re.compile(
    r"[.!?;:\n。！？；、，]+\s*|,\s*|\s+(?:and then|then|but|and)\s+"
)
_MAX_CLAUSES = 12
# A clause longer than this many words is read in windows of this many words, half
# overlapping, so any run of up to half as many words appears whole in one of them.
_WINDOW_WORDS = 16


# The same for scripts written without spaces (Japanese, Chinese, Thai): windows of this many
# characters, half overlapping.
_WINDOW_CHARS = 48


def _windows(words: list[str]) -> list[str]:
    if len(words) > _WINDOW_WORDS:
        step = _WINDOW_WORDS // 2
        starts = range(0, len(words) - step, step)
        return [" ".join(words[i : i + _WINDOW_WORDS]) for i in starts]
    text = " ".join(words)
    if len(text) <= 2 * _WINDOW_CHARS or len(words) * 12 >= len(text):
        return [text]  # short, or spaced words (a 16-word clause is one window)
    step = _WINDOW_CHARS // 2
    return [text[i : i + _WINDOW_CHARS] for i in range(0, len(text) - step, step)]


def clauses(text: str) -> list[str]:
    """Pieces of a longer caption, so a harmful request cannot hide in benign padding.

    Mean-pooled sentence embeddings average over the whole text: "lovely sunset with the
    family ..., and you should hang yourself" reads as mostly benign. Scoring each clause too
    (and the worst one counting) removes that dilution. Every word lands in some piece,
    however the padding is written: a short one-word fragment joins the clause before it, a
    long run without punctuation (or without spaces) is read in overlapping windows, and
    past ``_MAX_CLAUSES`` pieces neighbours are joined (the tail is never cut off: padding in
    front of a harmful ending was enough to push it out).
    """
    parts: list[list[str]] = []
    for p in _CLAUSE_SPLIT.split(text):
        words = p.split() if p else []
        if len(words) == 1 and len(words[0]) < 8 and parts:
            parts[-1].extend(words)
        elif words:
            parts.append(words)
    pieces = [w for words in parts for w in _windows(words)]
    if len(pieces) <= 1:
        return []
    per = -(-len(pieces) // _MAX_CLAUSES)  # ceil: pieces joined into one
    return [" ".join(pieces[i : i + per]) for i in range(0, len(pieces), per)]
