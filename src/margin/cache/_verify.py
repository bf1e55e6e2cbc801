"""The verification gate: refuse a cache hit when the two requests differ in a detail that changes the answer.

Embedding similarity cannot tell "Track order 48213" from "Track order 48231" (cosine 0.97 with
all-MiniLM-L6-v2) nor "safe" from "unsafe". Before a hit is served, :func:`verify` compares cheap,
explicit features of the two texts and refuses when any of these differ:

* ``number``: digits (1,000 = 1000; 2nd = 2), written numbers ("twenty five" = 25, "a dozen" = 12), and
  the unit attached to a number (%, percent, currency, am/pm, km, GB, ...).
* ``date``: month and weekday names, today/tomorrow/tonight/weekend/morning..., periods (daily/monthly/
  per year...), seasons.
* ``entity``: emails and URLs, quoted or back-ticked strings, code-like identifiers (snake_case, camelCase,
  dotted.names, letter+digit codes such as SKU12), all-caps acronyms, and capitalized words. A capitalized
  word at the start of a sentence is only a weak entity: it refuses only when both sides have one the
  other lacks (a swap), so "Cancel my plan" still matches "please cancel my plan". A word counts as present
  on the other side in any letter case.
* ``negation``: not/no/never/without/n't/unable... (and the main negators of German, French, Spanish,
  Portuguese, Italian, Dutch, Russian, Chinese, Japanese, Korean), counted; a small list of English
  antonym pairs (open/closed, enable/disable, include/exclude, ...) and un-/in-/dis- prefixes (safe/unsafe).
* ``scope``: quantifiers and comparison words (all/every/each/only/first/last/next/more/less/before/
  after/within/most/least/than/best/cheapest/...), as a set ("the best way to" does not count); and
  any/many/some/few/no when both texts have one and they differ.
* ``comparative``: comparatives and superlatives by polarity (higher/lower, closest/furthest,
  ascending/descending, ...) when both texts have one and they differ.
* ``unit``: unit and currency names without a number ("in kg" / "in pounds", "dollars" / "euros").

Between *minimal edits* (at most one content word changed on each side, see :func:`content_changes`),
where the embedder cannot tell a harmless edit from a changed question, three more:

* ``order``: the same words with two of them swapped around a role ("from London to Paris" / "from Paris
  to London", "Can a guest invite a member?" / "Can a member invite a guest?"), unless only "and"/"or"
  separates them or the question is symmetric ("difference between X and Y").
* ``tense``: did/had/used to vs will/going to/'ll ("Does the app support X?" / "Will the app support X?").
* ``wording``: one or two small words added, dropped or swapped that may change the question ("from" /
  "for", "what" / "why", "with"): articles, pronouns, politeness and openings that ask the same thing
  ("How do I" = "What's the way to" = "How can I") are ignored.

Pure Python, no model: features of a text are computed once and memoized (a stored entry's text is
verified against many queries); a pair costs about 50 µs at the median when the query is new (measured in
``bench/cache``). The gate only refuses; it never turns a miss into a hit, so its cost is a lower hit rate
(paraphrases that happen to differ in one of these words), also measured there.

:func:`content_changes` finds the one-word swaps ("open"/"shut") that the lists cannot judge;
``SemanticCache`` settles those with its embedder, after :func:`synonyms` (spelling variants, inflections
and a short list of common synonym groups) has taken out the harmless ones.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "GATE_REASONS",
    "Features",
    "Verdict",
    "content_changes",
    "features",
    "gate_signals",
    "synonyms",
    "verify",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``ok`` is True when the hit may be served; otherwise ``reason`` names the kind of difference
    (``number``, ``date``, ``entity``, ``negation``, ``scope``) and ``detail`` shows it."""

    ok: bool
    reason: str | None = None
    detail: str | None = None


OK = Verdict(True)

# --- word lists ---------------------------------------------------------------------------------------

_UNITS = {
    "%": "%", "percent": "%", "per cent": "%", "pct": "%", "percentage": "%",
    "$": "usd", "usd": "usd", "dollar": "usd", "dollars": "usd", "bucks": "usd",
    "£": "gbp", "gbp": "gbp", "pound": "gbp", "pounds": "gbp", "quid": "gbp", "p": "pence", "pence": "pence",
    "€": "eur", "eur": "eur", "euro": "eur", "euros": "eur", "¥": "yen", "yen": "yen", "jpy": "yen",
    "cents": "cent", "cent": "cent", "c": "cent", "₹": "inr", "inr": "inr", "rupees": "inr",
    "am": "am", "a.m.": "am", "pm": "pm", "p.m.": "pm", "h": "hour", "hr": "hour", "hrs": "hour",
    "hour": "hour", "hours": "hour", "min": "minute", "mins": "minute", "minute": "minute", "minutes": "minute",
    "s": "second", "sec": "second", "secs": "second", "second": "second", "seconds": "second",
    "day": "day", "days": "day", "week": "week", "weeks": "week", "month": "month", "months": "month",
    "year": "year", "years": "year", "yr": "year", "yrs": "year",
    "km": "km", "kilometers": "km", "kilometres": "km", "mi": "mile", "mile": "mile", "miles": "mile",
    "m": "m", "meter": "m", "meters": "m", "metre": "m", "metres": "m", "cm": "cm", "mm": "mm",
    "kg": "kg", "kilo": "kg", "kilos": "kg", "kilograms": "kg", "g": "g", "grams": "g", "lb": "lb", "lbs": "lb",
    "oz": "oz", "ounces": "oz", "l": "l", "liter": "l", "liters": "l", "litre": "l", "litres": "l", "ml": "ml",
    "kb": "kb", "mb": "mb", "gb": "gb", "tb": "tb", "mbps": "mbps", "gbps": "gbps", "ghz": "ghz", "mhz": "mhz",
    "x": "x", "times": "x", "k": "thousand", "m.": "million", "bn": "billion",
    "mg": "mg", "°": "deg", "degrees": "deg", "°c": "degc", "°f": "degf", "inch": "inch", "inches": "inch",
    "ft": "ft", "feet": "ft", "foot": "ft", "people": "people", "persons": "people", "guests": "people",
    "adults": "adult", "adult": "adult", "kids": "child", "children": "child", "child": "child",
    "nights": "night", "night": "night", "tickets": "ticket", "ticket": "ticket", "items": "item",
}  # fmt: skip

_ONES = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "dozen": 12, "half": 0.5,
    "quarter": 0.25, "once": 1, "twice": 2, "thrice": 3, "single": 1, "double": 2, "triple": 3,
    "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9,
    "tenth": 10, "twelfth": 12, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
# Words that are numbers only next to another number or a unit ("second" is also time; "one" a pronoun).
_WEAK_NUMBER_WORDS = frozenset({"one", "second", "single", "double", "quarter", "once"})

_MONTHS = {
    "january": "jan", "february": "feb", "march": "mar", "april": "apr", "may": "may", "june": "jun",
    "july": "jul", "august": "aug", "september": "sep", "october": "oct", "november": "nov",
    "december": "dec", "jan": "jan", "feb": "feb", "apr": "apr", "jun": "jun", "jul": "jul", "aug": "aug",
    "sept": "sep", "oct": "oct", "nov": "nov", "dec": "dec",
}  # fmt: skip
_DATE_WORDS = {
    "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
    "saturday": "sat", "sunday": "sun", "mondays": "mon", "tuesdays": "tue", "wednesdays": "wed",
    "thursdays": "thu", "fridays": "fri", "saturdays": "sat", "sundays": "sun", "tues": "tue", "thurs": "thu",
    "weekday": "weekday", "weekdays": "weekday", "weekend": "weekend", "weekends": "weekend",
    "today": "today", "tonight": "tonight", "tomorrow": "tomorrow", "yesterday": "yesterday",
    "morning": "morning", "mornings": "morning", "afternoon": "afternoon", "evening": "evening",
    "evenings": "evening", "overnight": "night", "noon": "noon", "midday": "noon", "midnight": "midnight",
    "daily": "day", "weekly": "week", "fortnight": "fortnight", "fortnightly": "fortnight", "monthly": "month",
    "quarterly": "quarter", "yearly": "year", "annual": "year", "annually": "year", "hourly": "hour",
    "spring": "spring", "summer": "summer", "autumn": "autumn", "winter": "winter",
    "christmas": "christmas", "easter": "easter", "holiday": "holiday", "holidays": "holiday",
}  # fmt: skip

_NEGATORS = frozenset(
    {
        # English
        "not", "no", "never", "avoid", "none", "nobody", "nothing", "nowhere", "neither", "nor", "without", "cannot",
        "unable", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "cant", "couldnt", "wouldnt",
        "shouldnt", "wont", "havent", "hasnt", "hadnt", "mustnt", "neednt", "aint",
        # German, Dutch
        "nicht", "kein", "keine", "keinen", "keinem", "keiner", "keines", "nie", "niemals", "ohne", "nichts",
        "niet", "geen", "nooit", "zonder",
        # French ("ne ... pas" counts twice: the count parity still flips against a sentence without it)
        "ne", "pas", "jamais", "sans", "aucun", "aucune", "rien",
        # Spanish, Portuguese, Italian
        "nunca", "sin", "ningún", "ninguna", "ninguno", "nada", "nadie", "jamás", "tampoco",
        "não", "nao", "sem", "nenhum", "nenhuma", "ninguém", "non", "mai", "senza", "nessuno", "niente",
        # Russian
        "не", "нет", "никогда", "без", "ни", "ничего", "никто",
    }
)  # fmt: skip
# Phrases that negate what follows ("foods to steer clear of" = "foods not to eat").
_NEGATING_PHRASES = re.compile(
    r"\b(?:steer\s+clear|stay\s+away|keep\s+away|refrain|abstain|cut\s+out|give\s+up|stop\s+(?:eating|drinking|taking|using))\b"
)
# Scripts without spaces: counted as substrings.
_CJK_NEGATORS = ("不", "没", "沒", "别", "別", "无", "無", "未", "ない", "ません", "なかった", "않", "못", "없")

_ANTONYMS = (
    ("open", "closed"), ("opened", "closed"), ("enable", "disable"), ("enabled", "disabled"),
    ("allow", "ban"), ("allowed", "banned"), ("allow", "forbid"), ("allowed", "forbidden"),
    ("allowed", "prohibited"), ("permitted", "prohibited"), ("include", "exclude"), ("includes", "excludes"),
    ("included", "excluded"), ("including", "excluding"), ("accept", "reject"), ("accept", "decline"),
    ("accepted", "rejected"), ("safe", "dangerous"), ("add", "remove"), ("increase", "decrease"),
    ("increase", "reduce"), ("raise", "lower"), ("upgrade", "downgrade"), ("buy", "sell"),
    ("import", "export"), ("send", "receive"), ("sent", "received"), ("win", "lose"), ("pass", "fail"),
    ("start", "stop"), ("start", "end"), ("begin", "end"), ("subscribe", "unsubscribe"), ("join", "leave"),
    ("lock", "unlock"), ("login", "logout"), ("signin", "signout"), ("optin", "optout"),
    ("checkin", "checkout"), ("turnon", "turnoff"), ("true", "false"), ("yes", "no"), ("early", "late"),
    ("earlier", "later"), ("arrive", "depart"), ("arrival", "departure"), ("arrivals", "departures"),
    ("inbound", "outbound"), ("incoming", "outgoing"), ("deposit", "withdraw"), ("credit", "debit"),
    ("cheap", "expensive"), ("fast", "slow"), ("faster", "slower"), ("fastest", "slowest"), ("hot", "cold"),
    ("warm", "cold"), ("old", "new"), ("new", "existing"), ("high", "low"), ("oldest", "newest"),
    ("legal", "illegal"), ("valid", "invalid"), ("possible", "impossible"), ("pay", "refund"),
    ("charge", "refund"), ("male", "female"), ("men", "women"), ("north", "south"),
    ("east", "west"), ("private", "public"), ("internal", "external"), ("domestic", "international"),
    ("online", "offline"), ("online", "in-store"), ("encrypt", "decrypt"), ("compress", "decompress"),
    ("agree", "disagree"), ("good", "bad"), ("better", "worse"), ("best", "worst"), ("valid", "expired"),
    ("top", "bottom"), ("positive", "negative"), ("like", "dislike"), ("wet", "dry"), ("full", "empty"),
    ("free", "paid"),
    # added after the first tuning round on bench/cache/data/written (tuning split only)
    ("push", "pull"), ("show", "hide"), ("shown", "hidden"), ("visible", "hidden"), ("slow", "quick"),
    ("slowly", "quickly"), ("slowly", "fast"), ("safe", "poisonous"), ("safe", "toxic"), ("safe", "harmful"),
    ("deposit", "cash"), ("hire", "fire"), ("heat", "cool"), ("heated", "cooled"), ("plant", "lift"),
    ("follow", "unfollow"), ("block", "allow"), ("block", "enable"), ("connect", "disconnect"),
    ("accept", "refuse"), ("approve", "reject"), ("approve", "deny"), ("win", "lost"), ("won", "lost"),
    ("gain", "lose"), ("gain", "loss"), ("profit", "loss"), ("asset", "liability"), ("import", "export"),
    ("upload", "download"), ("install", "uninstall"), ("attach", "detach"), ("mount", "unmount"),
    ("advantages", "disadvantages"), ("advantages", "downsides"), ("pros", "cons"), ("benefits", "risks"),
    ("rise", "fall"), ("rising", "falling"), ("rose", "fell"), ("up", "down"), ("ascending", "descending"),
    ("light", "dark"), ("lighter", "darker"), ("wide", "narrow"),
    ("inside", "outside"), ("indoors", "outdoors"),
    ("input", "output"), ("buyer", "seller"), ("landlord", "tenant"), ("employer", "employee"),
    ("borrow", "lend"), ("lender", "borrower"), ("teacher", "student"), ("parent", "child"),
    ("sender", "recipient"), ("debtor", "creditor"), ("host", "guest"), ("client", "server"),
    ("mute", "unmute"), ("pin", "unpin"), ("archive", "unarchive"), ("freeze", "unfreeze"),
    ("arrivals", "departures"), ("morning", "evening"), ("sunrise", "sunset"), ("summer", "winter"),
    ("wet", "dry"), ("hard", "soft"), ("thick", "thin"), ("heavy", "light"), ("tight", "loose"),
    ("strong", "weak"), ("rich", "poor"), ("same", "different"), ("similar", "different"),
    ("pay", "request"), ("send", "request"), ("give", "take"), ("lend", "borrow"), ("encode", "decode"),
    ("serialize", "deserialize"), ("activate", "deactivate"), ("zip", "unzip"),
)  # fmt: skip
_ANTONYM_OF: dict[str, frozenset[str]] = {}
for _a, _b in _ANTONYMS:
    _ANTONYM_OF[_a] = _ANTONYM_OF.get(_a, frozenset()) | {_b}
    _ANTONYM_OF[_b] = _ANTONYM_OF.get(_b, frozenset()) | {_a}
# "in"/"out", "on"/"off" are too common as plain words: only their phrasal-verb forms count; comparison
# words (more/less, first/last, before/after, ...) are scope words, compared as a set below.
_PHRASAL = re.compile(r"\b(log|sign|opt|check|turn|switch|clock|check)\s+(in|on|out|off)\b")
_PHRASAL_NORM = {"switch": "turn", "clock": "check"}
_SUFFIX_PAIRS = {"free": "able", "less": "ful"}
_FREE_COMPOUND = re.compile(r"\b([^\W\d_]{3,}?)-?(free|less)\b")
_NEG_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-", "mis")

_SCOPE = {
    "all": "all", "every": "every", "each": "each", "only": "only", "solely": "only", "exclusively": "only",
    "first": "first", "last": "last", "final": "last", "next": "next", "upcoming": "next", "future": "next",
    "previous": "previous", "prior": "previous", "past": "previous", "latest": "latest", "newest": "latest",
    "recent": "latest", "earliest": "earliest", "oldest": "oldest", "most": "most", "least": "least",
    "more": "more", "less": "less", "fewer": "less", "few": "few", "several": "several", "both": "both",
    "either": "either", "whole": "whole", "entire": "whole", "total": "total", "overall": "total",
    "combined": "total", "altogether": "total", "partial": "partial", "partially": "partial", "half": "half",
    "multiple": "multiple", "individual": "each", "individually": "each", "same": "same", "before": "before",
    "after": "after", "since": "since", "until": "until", "till": "until", "within": "within",
    "above": "above", "below": "below", "over": "over", "under": "under", "than": "than", "max": "max",
    "maximum": "max", "highest": "max", "min": "min", "minimum": "min", "lowest": "min", "except": "except",
    "excluding": "except", "including": "including", "always": "always", "sometimes": "sometimes",
    "usually": "usually", "extra": "extra", "additional": "extra", "cheapest": "cheapest", "cheaper": "cheaper",
    "expensive": "expensive", "biggest": "biggest", "largest": "biggest", "smallest": "smallest",
    "longest": "longest", "shortest": "shortest", "best": "best", "worst": "worst",
    # other languages, the commonest quantifiers
    "alle": "all", "tous": "all", "toutes": "all", "todos": "all", "todas": "all", "tutti": "all",
    "jeder": "every", "chaque": "each", "cada": "each", "ogni": "each", "nur": "only", "seulement": "only",
    "solo": "only", "apenas": "only", "solamente": "only",
}  # fmt: skip
# "the best way to ..." asks how, not which is best.
_BEST_WAY = re.compile(r"\b(?:best|easiest|quickest|fastest|simplest)\s+(?:way|method|option)s?\b")

# Words that may start a sentence without naming anything. Lowercase.
_COMMON_STARTERS = frozenset(
    """a an the this that these those there here it its it's is are was were be been am do does did done can
    could will would shall should may might must have has had having i i'm i've i'd i'll me my mine we our
    us you your yours he she they them their his her what what's which who whom whose when where why how
    whats hows wheres whens whos if then so and or but yes no not ok okay hi hello hey thanks thank please
    tell show give find get help list explain describe let let's lets need want looking check make set
    compare also just still now well oh sorry sure great good fine cool right hmm um cancel book change
    update reset add remove send buy order pay delete open close stop start turn use try go see say ask know
    think track return renew transfer apply request remind confirm activate register sign log call email
    contact print download upload share view edit create move switch any some all every each other""".split()
)
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "prof", "sir", "madam", "st"})

# Function words: a swap of one of these is no change of topic (see content_swap). English only.
_FUNCTION_WORDS = frozenset(
    """a an the this that these those there here it its is are was were be been being am do does did done
    can could will would shall should may might must have has had having i me my mine we our ours us you
    your yours he him his she her they them their theirs what which who whom whose when where why how
    whats hows if then so and or but of to in on at for from with by about as into onto than too very just
    also please i'm i've i'd i'll it's there's what's that's let's you're we're they're get got getting
    able possible way any some much many there's go going need want like know tell give make use way ok
    okay hi hello hey thanks thank yes sure well still really actually currently now""".split()
)

# Unit and currency names mentioned without a number ("in kg" vs "in pounds"): compared as a set when both
# texts name one. Only unambiguous names (not "m", "s", "pound" the verb is rare enough next to units).
_UNIT_NAMES = {
    "dollar": "usd", "dollars": "usd", "usd": "usd", "euro": "eur", "euros": "eur", "eur": "eur",
    "pound": "pound", "pounds": "pound", "gbp": "pound", "sterling": "pound", "yen": "yen", "jpy": "yen",
    "rupee": "inr", "rupees": "inr", "franc": "chf", "francs": "chf", "yuan": "cny", "renminbi": "cny",
    "kg": "kg", "kilo": "kg", "kilos": "kg", "kilogram": "kg", "kilograms": "kg", "lb": "pound", "lbs": "pound",
    "gram": "g", "grams": "g", "ounce": "oz", "ounces": "oz", "oz": "oz", "stone": "stone",
    "km": "km", "kilometer": "km", "kilometers": "km", "kilometre": "km", "kilometres": "km", "mile": "mile",
    "miles": "mile", "mph": "mph", "kph": "kmh", "kmh": "kmh", "meter": "m", "meters": "m", "metre": "m",
    "metres": "m", "cm": "cm", "centimeters": "cm", "centimetres": "cm", "inch": "inch", "inches": "inch",
    "foot": "ft", "feet": "ft", "yard": "yard", "yards": "yard",
    "liter": "l", "liters": "l", "litre": "l", "litres": "l", "ml": "ml", "millilitres": "ml",
    "milliliters": "ml", "gallon": "gallon", "gallons": "gallon", "quart": "quart", "quarts": "quart",
    "pint": "pint", "pints": "pint", "cup": "cup", "cups": "cup", "tablespoon": "tbsp", "tablespoons": "tbsp",
    "tbsp": "tbsp", "teaspoon": "tsp", "teaspoons": "tsp", "tsp": "tsp",
    "celsius": "degc", "centigrade": "degc", "fahrenheit": "degf", "kelvin": "kelvin",
    "millisecond": "ms", "milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns",
    "mmol": "mmol", "mg": "mg", "dl": "dl", "kb": "kb", "mb": "mb", "gb": "gb", "tb": "tb",
    "kwh": "kwh", "watts": "w", "calories": "kcal", "kcal": "kcal", "kilojoules": "kj", "kj": "kj",
}  # fmt: skip

# Comparison words, by polarity: two texts must use the same ones ("cheaper"/"more expensive", "closest"/
# "furthest"). Synonyms share a key ("quickest" = "fastest").
_COMPARATIVES = {
    "higher": "higher", "lower": "lower", "bigger": "bigger", "larger": "bigger", "smaller": "smaller",
    "warmer": "warmer", "hotter": "warmer", "colder": "colder", "cooler": "colder", "faster": "faster",
    "quicker": "faster", "slower": "slower", "closer": "closer", "nearer": "closer", "further": "further",
    "farther": "further", "closest": "closest", "nearest": "closest", "furthest": "furthest",
    "farthest": "furthest", "older": "older", "younger": "younger", "newer": "newer", "heavier": "heavier",
    "lighter": "lighter", "longer": "longer", "shorter": "shorter", "stronger": "stronger", "weaker": "weaker",
    "easier": "easier", "harder": "harder", "safer": "safer", "riskier": "riskier", "healthier": "healthier",
    "better": "better", "worse": "worse", "dearer": "pricier", "pricier": "pricier", "costlier": "pricier",
    "fastest": "fastest", "quickest": "fastest", "slowest": "slowest", "highest": "highest",
    "lowest": "lowest", "hottest": "hottest", "warmest": "hottest", "coldest": "coldest",
    "heaviest": "heaviest", "lightest": "lightest", "oldest": "oldest", "youngest": "youngest",
    "easiest": "easiest", "hardest": "hardest", "safest": "safest", "strongest": "strongest",
    "weakest": "weakest", "ascending": "ascending", "descending": "descending", "increasing": "increasing",
    "decreasing": "decreasing", "rising": "increasing", "falling": "decreasing", "growing": "increasing",
    "shrinking": "decreasing", "upward": "up", "downward": "down",
}  # fmt: skip

# Tense markers, compared only between minimal edits ("Does the app support X?" / "Will the app support X?"):
# a rewording changes tense freely ("How long does a refund take?" / "When will I see the refund?").
_TENSE = {
    # "was"/"were" are left out: passives use them in any tense ("Why was my card declined?")
    "did": "past", "didn't": "past", "didnt": "past", "had": "past", "hadn't": "past", "used": "past",
    "ago": "past", "will": "future", "won't": "future", "wont": "future", "shall": "future",
    "gonna": "future", "going": "future",
}  # fmt: skip
# Quantifiers compared only when both texts have one and they differ ("any seats" / "many seats"); one side
# adding "any" ("Are there any seats?" / "Are there seats?") changes nothing.
_QUANTIFIERS = {
    "any": "any", "many": "many", "much": "many", "some": "some", "few": "few", "no": "none", "none": "none",
}  # fmt: skip
# Words between two swapped words that still leave the meaning symmetric ("buyer or seller" / "seller or
# buyer"), and words that make a whole question symmetric ("difference between X and Y").
_COORDINATORS = frozenset({"and", "or", "nor", "&", "vs", "versus", "a", "an", "the", "my", "your"})
_RELATIONAL = frozenset(
    {"from", "to", "into", "onto", "than", "over", "under", "before", "after", "toward", "towards", "via",
     "against", "per", "owe", "pay", "pays", "send", "sends", "invite", "invites", "beat", "beats"}
)  # fmt: skip
_SYMMETRIC = frozenset(
    {"difference", "differences", "different", "differ", "differs", "compare", "compared", "comparison",
     "versus", "vs", "between", "similar", "similarities", "same", "both"}
)  # fmt: skip

# --- tokenization ---------------------------------------------------------------------------------------

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_QUOTED = re.compile(r"\"([^\"]{1,80})\"|“([^”]{1,80})”|«([^»]{1,80})»|`([^`]{1,80})`|(?<!\w)'([^']{2,80})'(?!\w)")
_AMPM = re.compile(r"\b([ap])\.\s?m\b\.?", re.I)
_NUMBER = re.compile(r"(?P<cur>[$£€¥₹])?\s?(?P<num>\d+(?:[.,:/-]\d+)*)(?P<suf>[^\W\d_]+|%|°[cf]?)?")
_UNIT_AFTER = re.compile(r"\s*(?:-\s*)?([^\W\d_]+|%|°[cf]?)")
_IDENT = re.compile(r"\b(?:[A-Za-z]+[_.][\w.]*\w|[a-z]+[A-Z]\w*|[A-Za-z]+\d\w*|\d+[A-Za-z]*[_-]?[A-Za-z]+\d\w*)\b")
_APOS = str.maketrans({"’": "'", "`": "`"})
_ORDINAL_SUFFIXES = frozenset({"st", "nd", "rd", "th"})
_SCALE_SUFFIXES = {"k": "thousand", "bn": "billion", "mn": "million"}
_ALPHA = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_CAPITALIZED = re.compile(r"(?<![\w'])[^\W\d_]+(?:'[^\W\d_]+)*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\"'“”«»()\[\]{}\n])[\s\"'“«(\[]*([^\W\d_])")
_DIGIT = re.compile(r"\d")
_NOT_ENTITIES = _TITLES | {"i", "ok"} | set(_DATE_WORDS) | set(_MONTHS)
_NUMBER_WORDS = frozenset(_ONES) | frozenset(_SCALES)
_DATE_KEYS = frozenset(_DATE_WORDS)
_SCOPE_KEYS = frozenset(_SCOPE)
_MONTH_RX = re.compile(r"\b(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b", re.I)
_PERIOD = re.compile(r"\b(?:per|a|an|each|every)\s+(day|week|month|year|hour|quarter|night)\b")
_PERIOD_OF = {
    "night": "night",
    "day": "day",
    "week": "week",
    "month": "month",
    "year": "year",
    "hour": "hour",
    "quarter": "quarter",
}
_CAPITALIZED_ASCII = re.compile(r"(?<![\w'])[A-Z][A-Za-z]*(?:'[A-Za-z]+)*")
_MONTH_KEYS = frozenset(_MONTHS)
_CAPS_COMPOUND = re.compile(r"\b([A-Z][a-z]*)-([A-Z][a-z]*)\b")
_QUOTE_CHARS = "\"“«`'"


@dataclass(frozen=True, slots=True)
class Features:
    numbers: frozenset[str]
    number_units: frozenset[str]
    dates: frozenset[str]
    strong_entities: frozenset[str]
    weak_entities: frozenset[str]
    negations: int
    scope: frozenset[str]
    words: frozenset[str]
    lower: str
    tokens: tuple[str, ...] = ()
    unit_names: frozenset[str] = frozenset()
    comparatives: frozenset[str] = frozenset()
    tense: frozenset[str] = frozenset()
    quantifiers: frozenset[str] = frozenset()


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _numeric(token: str) -> str:
    """Canonical form of a digit token: thousands separators dropped ("1,000" -> "1000")."""
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", token):
        token = token.replace(",", "")
    if re.fullmatch(r"\d+\.\d+", token):
        return _fmt_num(float(token))
    if re.fullmatch(r"\d+", token):
        return str(int(token))
    return token  # dates, times, versions: kept as written ("6:30", "2024-05-01", "1.2.3")


def _written_numbers(words: list[str]) -> list[tuple[int, int, str]]:
    """(start index, end index, canonical value) for runs of number words ("twenty five" -> 25)."""
    out = []
    i = 0
    while i < len(words):
        if words[i] in _ONES or words[i] in _SCALES:
            j, total, current = i, 0.0, 0.0
            while j < len(words) and (words[j] in _ONES or words[j] in _SCALES or (words[j] == "and" and j > i)):
                t = words[j]
                if t in _ONES:
                    current += _ONES[t]
                elif t in _SCALES:
                    current = (current or 1) * _SCALES[t]
                    if _SCALES[t] >= 1000:
                        total, current = total + current, 0.0
                j += 1
            while j > i + 1 and words[j - 1] == "and":
                j -= 1
            out.append((i, j, _fmt_num(total + current)))
            i = j
        else:
            i += 1
    return out


@lru_cache(maxsize=8192)
def features(text: str) -> Features:
    """The comparable features of one text (memoized)."""
    text = _AMPM.sub(_ampm, unicodedata.normalize("NFKC", text).translate(_APOS))
    strong: set[str] = set()
    if "@" in text or "://" in text or "www." in text:
        for rx in (_URL, _EMAIL):
            for m in rx.finditer(text):
                strong.add(m.group(0).lower().rstrip(".,;:!?"))
            text = rx.sub(" ", text)
    lower = text.lower()
    if any(q in text for q in _QUOTE_CHARS):
        for m in _QUOTED.finditer(text):
            q = next(g for g in m.groups() if g is not None).strip().lower()
            if q:
                strong.add(q)
    strong.update(m.lower() for m in _IDENT.findall(text))

    # Numbers written with digits, with a unit glued on ("6pm", "5kg", "20%") or right after ("5 dollars").
    numbers: set[str] = set()
    units: set[str] = set()
    for m in _NUMBER.finditer(lower):
        value = _numeric(m.group("num"))
        numbers.add(value)
        if m.group("cur"):
            units.add(f"{value} {_UNITS[m.group('cur')]}")
        suf = m.group("suf")
        if suf is None:
            nxt = _UNIT_AFTER.match(lower, m.end())
            suf = nxt.group(1) if nxt and nxt.group(1) in _UNITS else None
        if suf in _SCALE_SUFFIXES:
            units.add(f"{value} {_SCALE_SUFFIXES[suf]}")
        elif suf in _UNITS and suf not in _ORDINAL_SUFFIXES:
            units.add(f"{value} {_UNITS[suf]}")

    alpha = _ALPHA.findall(lower)
    words = set(alpha)
    words.update(w[:-2] for w in alpha if w.endswith("'s"))
    # Written numbers ("twenty five", "a dozen"); a lone "one"/"second"/... only next to a unit.
    if not _NUMBER_WORDS.isdisjoint(words):
        for i, j, value in _written_numbers(alpha):
            near_unit = j < len(alpha) and alpha[j] in _UNITS
            if j - i == 1 and alpha[i] in _WEAK_NUMBER_WORDS and not near_unit:
                continue
            numbers.add(value)
            if near_unit:
                units.add(f"{value} {_UNITS[alpha[j]]}")

    dates = {_DATE_WORDS[w] for w in words & _DATE_KEYS}
    dates.update(_PERIOD_OF[m] for m in _PERIOD.findall(lower))
    for m in _MONTH_RX.finditer(text) if not _MONTH_KEYS.isdisjoint(words) else ():
        w = m.group(0)
        if w.lower() in ("may", "march"):
            # Also verbs: a month only when capitalized mid-sentence or next to a number.
            near_number = _DIGIT.search(text, max(0, m.start() - 8), m.end() + 8) is not None
            if not near_number and not (w[0].isupper() and m.start() not in _sentence_starts(text)):
                continue
        dates.add(_MONTHS[w.lower()])

    # Capitalized words: strong unless sentence-initial (weak); titles and the pronoun I ignored.
    weak: set[str] = set()
    starts: set[int] | None = None
    caps_text = _CAPS_COMPOUND.sub(r"\1\2", text) if "-" in text else text  # "Wi-Fi" is one name
    for m in (_CAPITALIZED_ASCII if text.isascii() else _CAPITALIZED).finditer(caps_text):
        w = m.group(0)
        if not w[0].isupper():
            continue
        lw = w.lower()
        if lw.endswith("'s"):
            lw = lw[:-2]
        if lw in _NOT_ENTITIES or lw.startswith("i'"):
            continue
        if w.isupper() and len(w) >= 2:
            strong.add(lw)
            continue
        if starts is None:
            starts = _sentence_starts(caps_text)
        if m.start() in starts:
            if lw not in _COMMON_STARTERS:
                weak.add(lw)
        else:
            strong.add(lw)

    negations = sum(1 for w in alpha if w in _NEGATORS) + lower.count("n't") + len(_NEGATING_PHRASES.findall(lower))
    if not lower.isascii():
        negations += sum(lower.count(piece) for piece in _CJK_NEGATORS)
    scope = {_SCOPE[w] for w in words & _SCOPE_KEYS}
    if "all" in scope and len(re.findall(r"\ball\b", lower)) == lower.count("at all"):
        scope.discard("all")  # "at all" intensifies, it does not quantify
    if "best" in scope and _BEST_WAY.search(lower) and lower.count("best") == 1:
        scope.discard("best")
    words.update(_PHRASAL_NORM.get(a, a) + b for a, b in _PHRASAL.findall(lower))
    tense = {_TENSE[w] for w in alpha if w in _TENSE}
    if "going" in alpha and not re.search(r"\bgoing\s+to\b", lower):
        tense.discard("future")
    if "used" in alpha and not re.search(r"\bused\s+to\b", lower):
        tense.discard("past")
    if "'ll" in lower or "’ll" in lower:
        tense.add("future")
    return Features(
        numbers=frozenset(numbers),
        number_units=frozenset(units),
        dates=frozenset(dates),
        strong_entities=frozenset(strong),
        weak_entities=frozenset(weak),
        negations=negations,
        scope=frozenset(scope),
        words=frozenset(words),
        lower=lower,
        tokens=tuple(_stem(w) for w in alpha),
        unit_names=frozenset(_UNIT_NAMES[w] for w in alpha if w in _UNIT_NAMES),
        comparatives=frozenset(_COMPARATIVES[w] for w in alpha if w in _COMPARATIVES),
        tense=frozenset(tense),
        quantifiers=frozenset(_QUANTIFIERS[w] for w in alpha if w in _QUANTIFIERS),
    )


def _ampm(m: re.Match[str]) -> str:
    return m.group(1).lower() + "m"


def _sentence_starts(text: str) -> set[int]:
    return {m.start(1) for m in _SENTENCE_START.finditer(text)}


@lru_cache(maxsize=8192)
def _fold(text: str) -> str:
    """Lowercase without accents or hyphens ("México" -> "mexico", "wi-fi" -> "wifi")."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("-", "")


def _acronym_of(entity: str, other: Features) -> bool:
    """ "UTI" in one text, "urinary tract infection" in the other."""
    n = len(entity)
    if not 2 <= n <= 5 or not entity.isalpha():
        return False
    tokens = _ALPHA.findall(other.lower)
    return any("".join(t[0] for t in tokens[i : i + n]) == entity for i in range(len(tokens) - n + 1))


def _present(entity: str, other: Features) -> bool:
    if _fold(entity) in _fold(other.lower).split() or _fold(entity) in _folded_words(other.lower):
        return True
    if _acronym_of(entity, other):
        return True
    if entity.isalpha():
        # "PDF" and "PDFs" name the same thing.
        return entity in other.words or entity + "s" in other.words or entity[:-1] in other.words
    if entity not in other.lower:
        return False
    return re.search(r"(?<!\w)" + re.escape(entity) + r"(?!\w)", other.lower) is not None


@lru_cache(maxsize=8192)
def _folded_words(lower: str) -> frozenset[str]:
    words = _ALPHA.findall(_fold(lower))
    joined = {a + b for a, b in itertools.pairwise(words)}  # "wi fi" -> "wifi"
    return frozenset(words) | joined


def _unit_clash(a: frozenset[str], b: frozenset[str]) -> str | None:
    """A number with a unit on both sides but not the same unit ("5 km" vs "5 miles"); a unit on one side
    only is not a clash ("two" vs "2 people")."""
    if a == b:
        return None
    units_a: dict[str, set[str]] = {}
    units_b: dict[str, set[str]] = {}
    for pairs, into in ((a, units_a), (b, units_b)):
        for pair in pairs:
            value, _, unit = pair.partition(" ")
            into.setdefault(value, set()).add(unit)
    for value in units_a.keys() & units_b.keys():
        if units_a[value] != units_b[value]:
            return f"{value} {sorted(units_a[value])} vs {sorted(units_b[value])}"
    return None


def _fmt(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> str:
    return f"{sorted(a)} vs {sorted(b)}"


def _antonym_flip(a: Features, b: Features) -> str | None:
    only_a = a.words - b.words
    only_b = b.words - a.words
    if not only_a or not only_b:
        return None
    for w in only_a:
        opposite = _ANTONYM_OF.get(w)
        if opposite and (opposite & only_b):
            return f"{w} vs {sorted(opposite & only_b)[0]}"
    for x, y in ((only_a, only_b), (only_b, only_a)):
        for w in y:
            for prefix in _NEG_PREFIXES:
                if w.startswith(prefix) and len(w) - len(prefix) >= 4 and w[len(prefix) :] in x:
                    return f"{w[len(prefix) :]} vs {w}"
            for prefix in ("un", "de", "dis"):  # unzip, undo, decode: short bases, but only verbs take these
                if w.startswith(prefix) and len(w) - len(prefix) >= 2 and w[len(prefix) :] in x:
                    return f"{w[len(prefix) :]} vs {w}"
    for x, y in ((a, b), (b, a)):  # tax-free / taxable, harmless / harmful, sugar-free / sugared
        for base, free in _FREE_COMPOUND.findall(x.lower):
            full = _SUFFIX_PAIRS[free]
            if any(v.startswith(base) and v.endswith(full) and v not in x.words for v in y.words):
                return f"{base}-{free} vs {base}...{full}"
    return None


_INFLECTIONS = ("ies", "es", "s", "ed", "ing", "d")
# Words whose order carries no role ("How do I ..." / "... how do I"): left out of the order check.
_FUNCTION_WORDS_ORDER = frozenset(
    """a an the this that these those it its is are was were be been am do does did can could will would
    should may might must i you we they he she what which who how when where why if so please just also
    there here of in on at for with by about as too very really actually""".split()
)


def _stem(word: str) -> str:
    """The word without one inflectional ending ("invoices" -> "invoic", "merging" -> "merg")."""
    for suffix in _INFLECTIONS:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


# Words a rewording adds or drops without changing the question.
_FILLERS = frozenset(
    """please kindly exactly actually currently available possible anyway quickly right now today's here
    there just really still even again ever somehow also maybe perhaps basically""".split()
)
MAX_CHANGED_WORDS = 1
# More changed small words than this make a rewording, judged by the similarity threshold instead.
MAX_SMALL_WORD_CHANGES = 2

# Common words a rewording swaps for each other, which the embedder scores low in isolation ("see"/"view"
# 0.40, "book"/"schedule" 0.27 with all-MiniLM-L6-v2): a swap within one group is no change of topic.
# General English, written once; not fitted to any benchmark pair.
_SYNONYM_GROUPS = (
    "see view check find access look",
    "book schedule reserve arrange",
    "run running operate operating",
    "start begin open launch",
    "delete remove erase clear",
    "fix repair mend solve resolve",
    "buy purchase",
    "price cost rate fee charge",
    "change update edit modify amend alter switch",
    "picture photo image pic",
    "kid kids child children",
    "sofa couch",
    "shut close closed",
    "phone mobile cellphone cell smartphone",
    "website site web online",
    "fast quick quickly rapid speedy",
    "get obtain receive",
    "need require",
    "help assist support",
    "contact reach",
    "big large huge",
    "small little tiny",
    "stop halt",
    "store shop",
    "rubbish trash garbage",
    "holiday vacation",
    "flat apartment",
    "lift elevator",
    "film movie",
    "queue line",
    "postcode zipcode zip",
    "mum mom mother",
    "dad father",
    "doctor gp physician",
    "medicine medication meds drug drugs",
    "job work employment",
    "money cash funds",
    "problem issue trouble",
    "error bug fault",
    "answer reply respond",
    "show display",
    "choose pick select",
    "send deliver ship",
    "make create build",
    "keep store save",
    "download get save",
    "speak talk",
    "allowed permitted",
    "correct right",
    "wrong incorrect",
    "info information details",
    "ask request",
    "use utilise utilize",
    "city town",
)
_SYNONYM_OF: dict[str, int] = {}
for _i, _group in enumerate(_SYNONYM_GROUPS):
    for _w in _group.split():
        _SYNONYM_OF.setdefault(_w, _i)
# British and American spellings: compared in one form.
_SPELLING = {"cheque": "check", "cheques": "checks", "tyre": "tire", "tyres": "tires", "programme": "program",
             "grey": "gray", "aluminium": "aluminum", "lasagne": "lasagna", "licence": "license",
             "defence": "defense", "pyjamas": "pajamas", "plough": "plow", "mould": "mold", "kerb": "curb"}  # fmt: skip
_SPELLING_SUFFIXES = (("isation", "ization"), ("ise", "ize"), ("ised", "ized"), ("ising", "izing"),
                      ("our", "or"), ("ours", "ors"), ("tre", "ter"), ("tres", "ters"), ("lled", "led"),
                      ("lling", "ling"))  # fmt: skip


def _spelling(word: str) -> str:
    if word in _SPELLING:
        return _SPELLING[word]
    for uk, us in _SPELLING_SUFFIXES:
        if word.endswith(uk) and len(word) - len(uk) >= 3:
            return word[: -len(uk)] + us
    return word


def synonyms(x: str, y: str) -> bool:
    """Whether two words are the same word in another spelling or inflection, or in one synonym group."""
    sx, sy = _spelling(x), _spelling(y)
    if sx == sy or _stem(sx) == _stem(sy):
        return True
    gx = _SYNONYM_OF.get(sx, _SYNONYM_OF.get(_stem(sx)))
    return gx is not None and gx == _SYNONYM_OF.get(sy, _SYNONYM_OF.get(_stem(sy)))


def content_changes(query: str, candidate: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The content words only the query has and only the candidate has, when the two texts are a minimal
    edit of each other (at most ``MAX_CHANGED_WORDS`` changed on each side, inflections and fillers
    ignored); None when they differ more than that (a rewording: the similarity threshold decides).

    A one-word swap is how many near-miss questions differ ("Is the bridge open/shut to cyclists?",
    "dosage of ibuprofen/aspirin"), and also how harmless rewordings do ("price"/"cost"). Word lists
    cannot tell the two apart; ``SemanticCache`` asks its embedder how close the two words are
    (``swap_similarity``). Measured on margin's tuning pairs, extending this to two changed words, or
    refusing a word added with nothing in its place, refused far more paraphrases ("What are the steps
    to ...", "What's the process for ...") than traps, so neither is done.
    """
    a, b = features(query), features(candidate)
    only_a = {w for w in a.words - b.words if w not in _FUNCTION_WORDS and w not in _NEGATORS and w not in _FILLERS}
    only_b = {w for w in b.words - a.words if w not in _FUNCTION_WORDS and w not in _NEGATORS and w not in _FILLERS}
    if len(only_a) > MAX_CHANGED_WORDS or len(only_b) > MAX_CHANGED_WORDS:
        return None
    changed_a = tuple(sorted(w for w in only_a if not any(synonyms(w, v) for v in only_b)))
    changed_b = tuple(sorted(w for w in only_b if not any(synonyms(w, v) for v in only_a)))
    return changed_a, changed_b


def verify(query: str, candidate: str) -> Verdict:
    """Whether a cached answer to ``candidate`` may be served for ``query`` (the gate's own view only:
    the caller has already found the two similar enough)."""
    if query == candidate:
        return OK
    return next(_refusals(query, candidate), OK)


# Every reason the gate can give, in the order it checks them (one name may come from several checks).
GATE_REASONS = ("number", "date", "entity", "weak_entity", "negation", "antonym", "scope", "quantifier",
                "comparative", "unit", "order", "tense", "wording")  # fmt: skip


def gate_signals(query: str, candidate: str) -> dict[str, bool]:
    """Every rule of the gate evaluated on its own (``verify`` stops at the first): which of
    :data:`GATE_REASONS` object to serving ``candidate``'s answer for ``query``, plus ``minimal`` (the
    two are a minimal edit, see :func:`content_changes`). The learned verifier reads these as features."""
    out = dict.fromkeys(GATE_REASONS, False)
    out["minimal"] = content_changes(query, candidate) is not None
    if query != candidate:
        for verdict in _refusals(query, candidate, every=True):
            out[verdict.reason or "custom"] = True
    return out


def _refusals(query: str, candidate: str, *, every: bool = False) -> Iterator[Verdict]:
    """The gate's objections, in order. ``verify`` takes the first; with ``every``, each check reports
    under its own name (``weak_entity``, ``antonym``, ``quantifier`` are reported as ``entity``,
    ``negation`` and ``scope`` otherwise)."""
    a, b = features(query), features(candidate)
    if a.numbers != b.numbers:
        yield Verdict(False, "number", _fmt(a.numbers, b.numbers))
    unit_clash = _unit_clash(a.number_units, b.number_units)
    if unit_clash:
        yield Verdict(False, "number", unit_clash)
    if a.dates != b.dates:
        yield Verdict(False, "date", _fmt(a.dates, b.dates))
    missing_a = {e for e in a.strong_entities if not _present(e, b)}
    missing_b = {e for e in b.strong_entities if not _present(e, a)}
    if missing_a or missing_b:
        yield Verdict(False, "entity", _fmt(missing_a, missing_b))
    weak_a = {e for e in a.weak_entities if e not in b.words}
    weak_b = {e for e in b.weak_entities if e not in a.words}
    if weak_a and weak_b:
        yield Verdict(False, "weak_entity" if every else "entity", _fmt(weak_a, weak_b))
    na, nb = a.negations, b.negations
    if na != nb and (na == 0 or nb == 0 or (na - nb) % 2):
        yield Verdict(False, "negation", f"{na} vs {nb} negations")
    flip = _antonym_flip(a, b)
    if flip:
        yield Verdict(False, "antonym" if every else "negation", flip)
    if a.scope != b.scope:
        yield Verdict(False, "scope", _fmt(a.scope, b.scope))
    if a.quantifiers and b.quantifiers and a.quantifiers != b.quantifiers:
        yield Verdict(False, "quantifier" if every else "scope", _fmt(a.quantifiers, b.quantifiers))
    if a.comparatives and b.comparatives and a.comparatives != b.comparatives:
        yield Verdict(False, "comparative", _fmt(a.comparatives, b.comparatives))
    if a.unit_names and b.unit_names and a.unit_names != b.unit_names:
        yield Verdict(False, "unit", _fmt(a.unit_names, b.unit_names))
    if content_changes(query, candidate) is None:
        return
    # Minimal edits only (at most one content word changed on each side): a rewording reorders words and
    # changes tense freely.
    flipped = _order_flip(a.tokens, b.tokens)
    if flipped:
        yield Verdict(False, "order", flipped)
    if a.tense != b.tense:
        yield Verdict(False, "tense", _fmt(a.tense, b.tense))
    changed = _changed_small_words(query, candidate)
    if changed:
        yield Verdict(False, "wording", changed)


# Openings that ask the same thing: compared as one token ("What's the way to reset it?" = "How do I reset it?").
_HOW_TO = re.compile(
    r"\b(?:how\s+(?:do|can|could|should|would|might)\s+(?:i|we|you|one)|how\s+to|what(?:'s|\s+is|\s+are)\s+the"
    r"\s+(?:best\s+|easiest\s+|right\s+)?(?:way|steps|process|procedure)\s+(?:to|for)|is\s+there\s+a\s+way\s+to"
    r"|(?:can|could)\s+you\s+(?:tell|show)\s+me\s+how\s+to|tell\s+me\s+how\s+to|i\s+(?:want|need|would\s+like|'d\s+like)"
    r"\s+to\s+know\s+how\s+to)\b"
)
_CAN_I = re.compile(
    r"\b(?:(?:can|could|may)\s+i|am\s+i\s+(?:able|allowed)(?:\s+to)?|is\s+it\s+(?:possible|ok|okay|alright)"
    r"(?:\s+for\s+me)?\s+to|(?:can|could)\s+you\s+help\s+me(?:\s+to)?)\b"
)
_WHEN = re.compile(r"\bwhat\s+time\b|\bwhen\b")
_WHAT_IS = re.compile(r"\b(?:what(?:'s|\s+is|\s+are)|what\s+does\s+\w+\s+mean)\b")
# Small words a rewording adds, drops or swaps without changing the question.
_HARMLESS = frozenset(
    """a an the this that these those i me my mine we us our you your yours it its it's there here please
    thanks thank hi hello hey just so ok okay kindly actually currently really still even again anyway
    do does did can could would is are am be been being s re ve d of some any at on in whats have has
    get got to now for about will going gonna shall i'm i've i'd you're we're they're that's there's what's
    let's""".split()
)


@lru_cache(maxsize=8192)
def _small_word_counts(text: str) -> Counter[str]:
    lower = features(text).lower.replace("’", "'")
    lower = _HOW_TO.sub(" howto ", lower)
    lower = _CAN_I.sub(" cani ", lower)
    lower = _WHAT_IS.sub(" whatis ", lower)
    lower = _WHEN.sub(" when ", lower)
    return Counter(w for w in _ALPHA.findall(lower) if w in _FUNCTION_WORDS or w in {"howto", "cani", "whatis"})


def _changed_small_words(query: str, candidate: str) -> str | None:
    """In a minimal edit, a function word added, dropped or swapped that may change the question ("from" /
    "to", "what" / "why", "with" / "without"): the word lists above know the common ones, this catches the
    rest. Articles, pronouns, politeness and question openings that ask the same thing are ignored."""
    ca, cb = _small_word_counts(query), _small_word_counts(candidate)
    only_a = {w for w in (ca - cb) if w not in _HARMLESS}
    only_b = {w for w in (cb - ca) if w not in _HARMLESS}
    if (only_a or only_b) and len(only_a) + len(only_b) <= MAX_SMALL_WORD_CHANGES:
        return _fmt(only_a, only_b)
    return None


def _order_flip(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    """Two words both texts have once each, in opposite order, when the roles around them are the same:
    either the texts are the same words reordered ("Can a guest invite a member?" / "Can a member invite a
    guest?", "Is Mars bigger than Earth?" / "Is Earth bigger than Mars?"), or a relational word stands
    between the two in both ("from London to New York" / "from New York to London"). Not when only a
    coordinator separates them ("buyer or seller"), nor when the question is symmetric ("difference
    between X and Y"). A rewording that moves words around ("sort a list in Python" / "sort a Python
    list") is neither."""
    if _SYMMETRIC.intersection(a) or _SYMMETRIC.intersection(b):
        return None
    permutation = sorted(a) == sorted(b)
    once_a = {w for w in a if a.count(w) == 1 and w not in _FUNCTION_WORDS_ORDER}
    once_b = {w for w in b if b.count(w) == 1}
    shared = once_a & once_b
    if len(shared) < 2:
        return None
    pos_a = {w: a.index(w) for w in shared}
    pos_b = {w: b.index(w) for w in shared}
    ordered = sorted(shared, key=pos_a.__getitem__)
    for i, x in enumerate(ordered):
        for y in ordered[i + 1 :]:
            if pos_b[x] < pos_b[y]:
                continue
            between_a = set(a[pos_a[x] + 1 : pos_a[y]])
            between_b = set(b[pos_b[y] + 1 : pos_b[x]])
            if permutation:
                if between_a - _COORDINATORS or between_b - _COORDINATORS:
                    return f"{x} ... {y} vs {y} ... {x}"
            elif between_a & between_b & _RELATIONAL:
                return f"{x} ... {y} vs {y} ... {x}"
    return None
