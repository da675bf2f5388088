"""The verification step of the semantic cache: are two prompts really the same question?

Sentence embeddings place "turn on the lights" and "turn off the lights" (cosine 0.89), or
"GDP of France in 2023" and "... in 2024" (0.97), closer together than many true paraphrases,
so no similarity threshold separates them. After the index finds a candidate, `same_question`
compares the two texts on the slots that change an answer and that embeddings blur. Each rule
is a cheap lexical check; any mismatch vetoes the hit (a miss only costs one upstream call, a
false hit serves a wrong answer). The rules, in the order they run:

1. ``number``     the sets of numbers (digits, number words, ordinals, versions, codes) differ.
2. ``quantity``   a number carries another unit ("10 miles" vs "10 km"), or the remaining units
                  differ while both texts name some ("grams in a pound" vs "... an ounce").
3. ``negation``   one text is negated (not, no, never, without, n't, …) and the other is not.
4. ``prefix``     a word in one text is a negating prefix plus a word of the other ("safe" vs
                  "unsafe", "install" vs "uninstall", "connect" vs "disconnect").
5. ``antonym``    the texts use opposite members of a pair (on/off, enable/disable, open/close,
                  up/down, increase/decrease, before/after, add/remove, more/less, yes/no, …)
                  and share neither side of it.
6. ``date``       the sets of dates or times differ (months, weekdays, today/tomorrow, parts
                  of the day, seasons, "next week" vs "last week").
7. ``entity``     a capitalised, camel-case or all-caps word of one text (a name, a product,
                  a place, an acronym) is missing from the other.
8. ``question``   both ask a specific kind of question and the kinds differ (who vs when,
                  where vs why, how many vs who, …).
9. ``swap``       the texts share their content words except exactly one on each side
                  ("capital of france" vs "capital of germany"), and those two words are not
                  listed synonyms: the same question about another thing.

The rules favour precision: some true paraphrases are refused too (a synonym swap the table
does not list, "tonight" vs "this evening"). `benchmarks/semantic.py` measures both sides.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

__all__ = ["RULES", "mismatch", "same_question"]


def _split(words: str) -> list[str]:
    """Split a whitespace-separated word list (kept as prose so the tables stay readable)."""
    return words.split()


# --- Word lists. Lower-case; antonym and synonym entries are compared after `_stem`. ---

NEGATIONS = frozenset(
    _split("not no never without none nobody nothing nowhere neither nor cannot lacking")
)
# "un" + "safe": a word of one text that is one of these plus a word of the other.
NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "de", "non", "anti", "mis")
_UNITS_BY_NAME = {
    "km": "km kilometer kilometers kilometre kilometres",
    "mile": "mile miles mi",
    "m": "meter meters metre metres",
    "cm": "cm centimeter centimeters centimetre centimetres",
    "mm": "mm millimeter millimeters",
    "ft": "ft foot feet",
    "inch": "inch inches",
    "kg": "kg kilogram kilograms kilo kilos",
    "g": "g gram grams",
    "lb": "lb lbs pound pounds",
    "oz": "oz ounce ounces",
    "l": "l liter liters litre litres",
    "ml": "ml milliliter milliliters millilitre millilitres",
    "gallon": "gallon gallons",
    "quart": "quart quarts",
    "cup": "cup cups",
    "tbsp": "tbsp tablespoon tablespoons",
    "tsp": "tsp teaspoon teaspoons",
    "celsius": "celsius centigrade",
    "fahrenheit": "fahrenheit",
    "kelvin": "kelvin",
    "kb": "kb kilobyte kilobytes",
    "mb": "mb megabyte megabytes",
    "gb": "gb gigabyte gigabytes",
    "tb": "tb terabyte terabytes",
    "usd": "$ usd dollar dollars",
    "eur": "€ eur euro euros",
    "gbp": "£ gbp sterling",
    "jpy": "¥ jpy yen",
    "percent": "% percent percentage",
    "ms": "ms millisecond milliseconds",
    "second": "second seconds sec secs",
    "minute": "minute minutes min mins",
    "hour": "hour hours hr hrs",
    "kcal": "kcal calorie calories",
    "mph": "mph",
    "kw": "kw kilowatt kilowatts",
    "w": "watt watts",
}
UNITS = {form: unit for unit, forms in _UNITS_BY_NAME.items() for form in forms.split()}
UNIT_FILLERS = frozenset({"degree", "degrees", "°", "of", "square", "cubic"})
NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        _split(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
        )
    )
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
    "dozen": "12",
    "half": "0.5",
}
ORDINAL_WORDS = {
    word: str(value)
    for value, word in enumerate(
        _split("first second third fourth fifth sixth seventh eighth ninth tenth"), start=1
    )
}
_MONTHS = "january february march april may june july august september october november december"
_DAYS = "monday tuesday wednesday thursday friday saturday sunday"
DATE_WORDS = frozenset(
    f"{_MONTHS} {_DAYS} today tomorrow yesterday tonight morning afternoon evening night "
    "midnight noon weekend weekday spring summer autumn winter christmas easter".split()
)
TIME_NOUNS = frozenset(_split("week month year quarter decade century season semester"))
RELATIVE_TIME_MODIFIERS = frozenset(_split("this next last previous coming past current"))
# Pairs of opposites; each side lists words that mean the same thing for the pair.
ANTONYM_PAIRS: tuple[tuple[str, str], ...] = (
    ("on enable activate start", "off disable deactivate stop shut"),
    ("open", "close"),
    ("lock", "unlock"),
    ("up", "down"),
    ("in into login", "out logout"),
    ("increase raise grow", "decrease reduce lower shrink"),
    ("more", "less fewer"),
    ("most", "least"),
    ("high higher highest", "low lower lowest"),
    ("big large larger largest biggest bigger", "small smaller smallest little"),
    ("fast quick", "slow"),
    ("good better best", "bad worse worst"),
    ("cheap", "expensive"),
    ("old", "new young"),
    ("maximum max", "minimum min"),
    ("ascending", "descending"),
    ("before", "after"),
    ("add insert include", "remove delete drop exclude subtract"),
    ("install", "uninstall"),
    ("import", "export"),
    ("upload", "download"),
    ("push", "pull"),
    ("buy", "sell"),
    ("accept allow", "reject deny block refuse"),
    ("follow subscribe", "unfollow unsubscribe"),
    ("connect", "disconnect"),
    ("mute", "unmute"),
    ("show", "hide"),
    ("encrypt encode compress", "decrypt decode decompress"),
    ("read", "write"),
    ("send", "receive"),
    ("yes true", "no false"),
    ("pro pros benefit advantage", "con cons risk drawback disadvantage"),
    ("safe", "dangerous unsafe"),
    ("legal", "illegal"),
    ("win won", "lose lost"),
    ("hot warm heat", "cold cool"),
    ("early", "late"),
    ("first", "last"),
    ("above over", "below under"),
    ("left", "right"),
    ("north", "south"),
    ("east", "west"),
    ("top", "bottom"),
    ("begin beginning", "end ending finish"),
    ("light", "dark"),
    ("day", "night"),
    ("love like", "hate dislike"),
    ("agree", "disagree"),
    ("pass", "fail"),
    ("positive", "negative"),
    ("input", "output"),
    ("public", "private"),
    ("plus", "minus"),
    ("multiply", "divide"),
    ("long longest", "short shortest"),
    ("easy", "hard difficult"),
    ("strong", "weak"),
    ("rich", "poor"),
    ("male", "female"),
)
QUESTION_KINDS: tuple[tuple[str, str], ...] = (
    ("why", "reason"),
    ("when", "time"),
    ("what year", "time"),
    ("what time", "time"),
    ("where", "place"),
    ("who", "person"),
    ("whom", "person"),
    ("whose", "person"),
    ("how many", "amount"),
    ("how much", "amount"),
    ("how long", "amount"),
    ("how often", "amount"),
    ("how far", "amount"),
    ("how old", "amount"),
)
# Request boilerplate and function words: they change between paraphrases, not answers.
STOPWORDS = frozenset(
    _split("""a an the of to in on at for from by with about as into over and or but if then than so
    is are was were be been being am do does did doing done have has had having will would
    shall should can could may might must i me my mine we us our you your yours he him his she
    her it its they them their this that these those there here what which who whom whose
    when where why how whats hows please kindly just also any some all each every very really
    quite more most much many tell explain describe give show me let know want need like get
    way ways best good thing things something someone anything use using used possible
    example examples simple brief briefly short quick quickly easy help someone one i'm
    you're it's what's can't don't doesn't isn't""")
)
_SYNONYMS = (
    "make made create build generate produce set",
    "summarize summary",
    "dictionary dict",
    "check see view",
    "declare define",
    "handle deal manage",
    "ask request",
    "load read",
    "translate say",
    "remove delete eliminate rid erase uninstall",
    "kill terminate",
    "fix repair resolve solve",
    "quit exit close leave",
    "big large huge biggest largest",
    "small little tiny",
    "fast quick rapid speed",
    "begin start",
    "display show",
    "obtain fetch retrieve get",
    "find locate search",
    "buy purchase",
    "car automobile vehicle",
    "picture image photo",
    "film movie",
    "sea ocean",
    "compose write draft",
    "combine merge join",
    "change modify update alter edit",
    "error bug problem issue",
    "mean meaning definition",
    "cost price",
    "tall high highest tallest",
    "author wrote writer write",
    "restart reboot",
    "capture take",
    "improve better",
    "learn learning study",
    "reduce lower",
    "number count",
    "directory folder",
    "configure setup",
    "iterate loop",
    "teach train",
    "insert add",
    "convert turn switch transform",
    "enable activate turn switch",
    "formula calculate calculation compute",
    "happen occur",
    "trick tip tips advice",
)


_CONTRACTIONS = (
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bshan't\b"), "shall not"),
    (re.compile(r"n't\b"), " not"),
)
# A token is a number (with separators and decimals), a word (letters, digits, inner
# apostrophes or dots as in "node.js"), or a currency / percent / degree sign.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[a-z0-9]+(?:['.][a-z0-9]+)*|[$€£¥%°]")
_RAW_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\"“(]\s*)$")
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)*$")
_ORDINAL_DIGITS = re.compile(r"^(\d+)(?:st|nd|rd|th)$")


def _stem(word: str) -> str:
    """A crude suffix stripper: enough to make "closed", "closing" and "close" agree.

    It is only ever used to compare two words run through it, never shown, so stems like
    "larg" are fine. Inflection goes first, then comparison, so "numbers" and "number" agree.
    """
    for suffixes in (("ing", "ed", "es", "s"), ("est", "er", "ly", "ize", "ise")):
        for suffix in suffixes:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "ls":
        word = word[:-1]  # "bigg" (bigger) -> "big", "stopp" (stopped) -> "stop"
    if len(word) > 3 and word[-1] in "ey":
        word = word[:-1]  # "large" and "larg" (larger) agree, as do "summary" and "summar"
    return word


def _synonym_map() -> dict[str, frozenset[int]]:
    """Stem to the synonym groups it is in ("turn": convert, and enable)."""
    groups: dict[str, set[int]] = {}
    for index, line in enumerate(_SYNONYMS):
        for word in line.split():
            groups.setdefault(_stem(word), set()).add(index)
    return {stem: frozenset(ids) for stem, ids in groups.items()}


def _antonym_map() -> dict[str, frozenset[tuple[int, int]]]:
    """Stem to the (pair index, side) entries it belongs to ("lower": low, and decrease)."""
    sides: dict[str, set[tuple[int, int]]] = {}
    for index, pair in enumerate(ANTONYM_PAIRS):
        for side, words in enumerate(pair):
            for word in words.split():
                sides.setdefault(_stem(word), set()).add((index, side))
    return {stem: frozenset(entries) for stem, entries in sides.items()}


# Built once at import from the constant lists above, and never changed after.
SYNONYM_GROUPS = _synonym_map()
_ANTONYMS = _antonym_map()


def _number_value(token: str) -> str | None:
    if _NUMBER.match(token):
        # "1,000" and "1000" are the same number; "3.12" keeps its dot.
        value = token.replace(",", "") if re.match(r"^\d{1,3}(?:,\d{3})+$", token) else token
        return value.replace(",", ".")
    if match := _ORDINAL_DIGITS.match(token):
        return match.group(1)
    return NUMBER_WORDS.get(token) or ORDINAL_WORDS.get(token)


@dataclass(frozen=True)
class _Text:
    """One prompt, normalised once; every rule reads the features it needs from here."""

    raw: str

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        text = self.raw.lower().replace("\u2019", "'")
        for pattern, replacement in _CONTRACTIONS:
            text = pattern.sub(replacement, text)
        # The possessive carries no meaning here: "Chrome's cache" is "Chrome cache".
        return tuple(t.removesuffix("'s").rstrip("'") for t in _TOKEN.findall(text))

    @cached_property
    def stems(self) -> frozenset[str]:
        return frozenset(_stem(t) for t in self.tokens)

    @cached_property
    def words(self) -> frozenset[str]:
        return frozenset(self.tokens)

    @cached_property
    def numbers(self) -> frozenset[str]:
        found = {v for t in self.tokens if (v := _number_value(t)) is not None}
        # Identifiers that mix letters and digits ("gpt4", "0x80070005", "s24") count whole.
        found.update(t for t in self.tokens if re.search(r"\d", t) and re.search(r"[a-z]", t))
        return frozenset(found)

    @cached_property
    def quantities(self) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
        """(number, unit) pairs, and the units not attached to a number."""
        pairs: set[tuple[str, str]] = set()
        attached: set[int] = set()
        tokens = self.tokens
        for i, token in enumerate(tokens):
            value = _number_value(token)
            if value is None:
                continue
            if i > 0 and tokens[i - 1] in UNITS:  # "$45"
                pairs.add((value, UNITS[tokens[i - 1]]))
                attached.add(i - 1)
            j = i + 1
            while j < len(tokens) and tokens[j] in UNIT_FILLERS:  # "30 degrees celsius"
                j += 1
            if j < len(tokens) and tokens[j] in UNITS:
                pairs.add((value, UNITS[tokens[j]]))
                attached.add(j)
        loose = {UNITS[t] for i, t in enumerate(tokens) if t in UNITS and i not in attached}
        return frozenset(pairs), frozenset(loose)

    @cached_property
    def is_negated(self) -> bool:
        return not self.words.isdisjoint(NEGATIONS)

    @cached_property
    def dates(self) -> frozenset[str]:
        found = {t for t in self.tokens if t in DATE_WORDS}
        # "next week" and "last week" differ only in the modifier, so keep the pair.
        found.update(
            f"{a} {b}"
            for a, b in zip(self.tokens, self.tokens[1:], strict=False)
            if a in RELATIVE_TIME_MODIFIERS and (b in TIME_NOUNS or b in DATE_WORDS)
        )
        return frozenset(found)

    @cached_property
    def entities(self) -> frozenset[str]:
        found = set()
        for match in _RAW_WORD.finditer(self.raw):
            word = match.group()
            at_start = _SENTENCE_START.search(self.raw[: match.start()]) is not None
            is_acronym = len(word) >= 2 and word.isupper()
            is_camel = any(c.isupper() for c in word[1:]) and any(c.islower() for c in word)
            is_capitalised = word[0].isupper() and not at_start and word != "I"
            if is_acronym or is_camel or is_capitalised:
                found.add(word.lower())
        return frozenset(found)

    @cached_property
    def question_kinds(self) -> frozenset[str]:
        joined = " " + " ".join(self.tokens) + " "
        return frozenset(kind for phrase, kind in QUESTION_KINDS if f" {phrase} " in joined)

    @cached_property
    def content(self) -> frozenset[str]:
        """Stems of the words that carry the question's subject (no stopwords, numbers, units)."""
        return frozenset(
            _stem(t)
            for t in self.tokens
            if t not in STOPWORDS and _number_value(t) is None and t not in UNITS
        )


def _number_rule(a: _Text, b: _Text) -> bool:
    return a.numbers != b.numbers


def _quantity_rule(a: _Text, b: _Text) -> bool:
    pairs_a, loose_a = a.quantities
    pairs_b, loose_b = b.quantities
    # A bare "how long" may be answered in minutes: loose units veto only when both name some.
    return pairs_a != pairs_b or (bool(loose_a) and bool(loose_b) and loose_a != loose_b)


def _negation_rule(a: _Text, b: _Text) -> bool:
    return a.is_negated != b.is_negated


def _prefixed_in(first: _Text, second: _Text) -> bool:
    for word in first.words - second.words:
        for prefix in NEGATING_PREFIXES:
            stem = word[len(prefix) :]
            # "decode ... code" vs "... code": the stem is in both, so nothing flipped.
            if (
                word.startswith(prefix)
                and len(stem) >= 3
                and stem in second.words
                and stem not in first.words
            ):
                return True
    return False


def _prefix_rule(a: _Text, b: _Text) -> bool:
    return _prefixed_in(a, b) or _prefixed_in(b, a)


def _antonym_sides(text: _Text) -> Counter[tuple[int, int]]:
    return Counter(entry for t in text.tokens for entry in _ANTONYMS.get(_stem(t), ()))


def _comparative_flip(first: _Text, second: _Text) -> bool:
    """ "less safe" in one text, "safer" in the other (and no "less" there)."""
    if "less" in second.words:
        return False
    lessened = {_stem(b) for a, b in itertools.pairwise(first.tokens) if a == "less"}
    return any(t.endswith("er") and _stem(t) in lessened for t in second.tokens)


def _antonym_rule(a: _Text, b: _Text) -> bool:
    sides_a, sides_b = _antonym_sides(a), _antonym_sides(b)
    # Only what one text has beyond the other counts, so the "on" of "on my account" in
    # both does not hide "turn on" vs "turn off"; and "should I eat before or after" vs
    # "... after" is no clash (one side added, none flipped).
    extra_a, extra_b = sides_a - sides_b, sides_b - sides_a
    flipped = any((pair, 1 - side) in extra_b for pair, side in extra_a)
    return flipped or _comparative_flip(a, b) or _comparative_flip(b, a)


def _date_rule(a: _Text, b: _Text) -> bool:
    return a.dates != b.dates


def _entity_rule(a: _Text, b: _Text) -> bool:
    # Compared with the other text's words whatever their case: users do not capitalise
    # consistently ("python" vs "Python").
    return not (a.entities <= b.words | b.entities and b.entities <= a.words | a.entities)


def _question_rule(a: _Text, b: _Text) -> bool:
    kinds_a, kinds_b = a.question_kinds, b.question_kinds
    return bool(kinds_a) and bool(kinds_b) and kinds_a.isdisjoint(kinds_b)


def _without_synonyms(words: frozenset[str], others: frozenset[str]) -> set[str]:
    """`words` less those with a listed synonym among `others`."""
    other_groups = frozenset().union(*(SYNONYM_GROUPS.get(w, frozenset()) for w in others))
    return {w for w in words if SYNONYM_GROUPS.get(w, frozenset()).isdisjoint(other_groups)}


def _swap_rule(a: _Text, b: _Text) -> bool:
    only_a, only_b = a.content - b.content, b.content - a.content
    swapped_a, swapped_b = _without_synonyms(only_a, only_b), _without_synonyms(only_b, only_a)
    return len(swapped_a) == 1 and len(swapped_b) == 1 and bool(a.content & b.content)


RULES: tuple[tuple[str, Callable[[_Text, _Text], bool]], ...] = (
    ("number", _number_rule),
    ("quantity", _quantity_rule),
    ("negation", _negation_rule),
    ("prefix", _prefix_rule),
    ("antonym", _antonym_rule),
    ("date", _date_rule),
    ("entity", _entity_rule),
    ("question", _question_rule),
    ("swap", _swap_rule),
)
"""Each rule's name and its check, which returns True when the texts differ on it."""


def mismatch(a: str, b: str) -> str | None:
    """The name of the first rule (see the module docstring) on which two prompts differ.

    Use it where the reason matters (stats, debugging); `same_question` where it does not.

    Args:
        a: one prompt (typically the incoming one).
        b: the other (typically the cached one the index matched).

    Returns:
        A rule name such as ``"negation"``, or None when no rule sees a difference.
    """
    text_a, text_b = _Text(a), _Text(b)
    for name, differs in RULES:
        if differs(text_a, text_b):
            return name
    return None


def same_question(a: str, b: str) -> bool:
    """Whether a cached answer to `b` may be served for `a`, as far as the rules can tell.

    Pure and cheap (tens of microseconds): run it on every candidate the vector index returns.
    It does not judge topic similarity, which is the embedding's job; it only vetoes.

    Args:
        a: one prompt.
        b: the other prompt.

    Returns:
        False when the texts differ in a number, unit, negation, opposite word, date, name,
        question kind or a single swapped content word; True otherwise.
    """
    return mismatch(a, b) is None
