"""Request complexity: a deterministic 0..1 score from cheap signals, and the tier it falls in.

The seeds' router scored only prompt length (characters), three English keywords and structured output, with
cut points 0.3 / 0.7 on a score that could reach at most 0.8, so almost nothing was ever "complex". margin
keeps the intent (short, extraction-like requests go to a cheap model; long, reasoning-heavy ones to the
frontier model) with more signals, each normalized to 0..1 and weighted:

=================  ======  ===================================================================================
signal             weight  value
=================  ======  ===================================================================================
length             0.30    prompt tokens: 0 up to 100, 1 from 1500, linear in between
reasoning          0.40    distinct reasoning / analysis / code / maths / multi-step keywords: 1 hit 0.5, 2+ 1
simple_task        -0.20   any classify / extract / translate / yes-no keyword: 1
code               0.20    a fenced block or 3+ code-like lines: 1; inline code or 1-2 code-like lines: 0.5
math               0.10    equations, operators between numbers, LaTeX, maths symbols: hits / 3, at most 1
structured_output  0.10    ``response_format`` asks for ``json_object`` or ``json_schema``: 1
tools              0.15    tools (or legacy functions) offered: 1
turns              0.10    user turns: (turns - 1) / 5, at most 1
steps              0.10    numbered lines ("1.", "2)", "Step 3"): count / 4, at most 1
=================  ======  ===================================================================================

score = sum(weight x value), clamped to 0..1 and rounded to 4 decimals. Tiers: ``simple`` below 0.2,
``complex`` from 0.5, ``standard`` in between. So one reasoning keyword alone (0.2) or a code block alone (0.2)
lifts a request to standard; complex needs two strong signals (a long prompt and reasoning, reasoning and code,
tools and reasoning...). Keywords are read from the task (system prompt(s) and the last user message, code
removed so that ``function`` inside a snippet is not a keyword); length counts the whole prompt.

Keyword lists cover English, French, German, Spanish, Portuguese, Chinese and Japanese. A keyword is a phrase
matched case-insensitively on word boundaries; a trailing ``*`` matches any word ending (``analy*``); phrases
in Chinese or Japanese script are matched as substrings (those scripts do not separate words).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ..errors import ConfigError
from ..tokens import count_text
from ._shape import SYSTEM_ROLES, is_tool_result, message_text, role, system_text

__all__ = [
    "COMPLEX_KEYWORDS",
    "DEFAULT_COMPLEX_FROM",
    "DEFAULT_LENGTH_TOKENS",
    "DEFAULT_SIMPLE_BELOW",
    "DEFAULT_WEIGHTS",
    "SIMPLE_KEYWORDS",
    "ComplexityScore",
    "ComplexityScorer",
    "Tier",
    "score_request",
]

Tier = Literal["simple", "standard", "complex"]

DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "length": 0.30,
        "reasoning": 0.40,
        "simple_task": -0.20,
        "code": 0.20,
        "math": 0.10,
        "structured_output": 0.10,
        "tools": 0.15,
        "turns": 0.10,
        "steps": 0.10,
    }
)
DEFAULT_SIMPLE_BELOW = 0.2
DEFAULT_COMPLEX_FROM = 0.5
DEFAULT_LENGTH_TOKENS = (100, 1500)
# The model whose tokenizer measures length when the request names none (o200k_base, exact).
_DEFAULT_COUNT_MODEL = "gpt-4o"

# Reasoning, analysis, code, maths and multi-step work.
COMPLEX_KEYWORDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "en": (
            "analy*", "compar*", "reason", "reasoning", "prove", "proof", "derive", "derivation",
            "step by step", "step-by-step", "multi-step", "debug*", "refactor*", "implement*", "algorithm*",
            "architect*", "optimi*", "evaluat*", "trade-off*", "tradeoff*", "pros and cons", "critique",
            "strateg*", "design*", "plan", "planning", "solve", "calculat*", "theorem*", "equation*",
            "integral*", "derivative*", "probabilit*", "statistic*", "code", "coding", "function", "program*",
            "script", "bug*", "sql", "regex*", "explain why", "explain how", "in depth", "in-depth",
            "root cause", "investigat*", "diagnos*",
        ),
        "fr": (
            "analys*", "raisonn*", "démontr*", "prouve*", "dériv*", "étape par étape", "débogu*",
            "refactoris*", "implément*", "algorithme*", "architectur*", "optimis*", "évalu*",
            "avantages et inconvénients", "stratégi*", "conçois", "concevoir", "résou*", "calcul*",
            "théorème*", "équation*", "fonction", "programm*", "explique pourquoi", "en profondeur",
        ),
        "de": (
            "analys*", "analysier*", "vergleich*", "begründ*", "beweis*", "herleit*", "schritt für schritt",
            "debugg*", "refaktorier*", "implementier*", "architektur*", "optimier*", "bewert*",
            "vor- und nachteile", "strategi*", "entwirf", "entwerf*", "berechn*", "löse", "lösen",
            "gleichung*", "funktion", "programmier*", "erkläre warum", "ausführlich",
        ),
        "es": (
            "analiz*", "análisis", "razona*", "demuestr*", "demostr*", "paso a paso", "depur*",
            "refactoriz*", "algoritmo*", "arquitectura*", "optimiz*", "evalú*", "evalua*",
            "ventajas y desventajas", "estrategi*", "diseñ*", "resuelv*", "resolver", "teorema*", "ecuaci*",
            "función", "programa*", "código", "explica por qué", "en profundidad",
        ),
        "pt": (
            "analis*", "análise*", "raciocin*", "demonstr*", "passo a passo", "refator*", "arquitetura*",
            "otimiz*", "avali*", "prós e contras", "estratégi*", "resolv*", "equaç*", "função",
            "explique por que", "em profundidade",
        ),
        "zh": (
            "分析", "比较", "推理", "证明", "推导", "逐步", "一步一步", "调试", "重构", "实现", "算法",
            "架构", "优化", "评估", "权衡", "优缺点", "策略", "设计", "求解", "计算", "定理", "方程",
            "函数", "代码", "编程", "为什么",
        ),
        "ja": (
            "分析", "比較", "推論", "証明", "導出", "ステップバイステップ", "段階的", "デバッグ", "リファクタ",
            "実装", "アルゴリズム", "アーキテクチャ", "最適化", "評価", "長所と短所", "戦略", "設計", "計算",
            "定理", "方程式", "関数", "コード", "プログラム", "なぜ",
        ),
    }
)  # fmt: skip

# Classification, extraction, translation and yes/no answers: jobs a small model does well.
SIMPLE_KEYWORDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "en": (
            "classif*", "categori*", "extract*", "translat*", "yes or no", "yes/no", "true or false",
            "sentiment", "detect the language", "spell-check*", "spellcheck*", "fix the typo*",
            "correct the spelling", "one word", "single word", "rephrase",
        ),
        "fr": (
            "classifi*", "catégoris*", "extrai*", "tradui*", "traduction", "oui ou non", "vrai ou faux",
            "reformule*",
        ),
        "de": (
            "klassifizier*", "kategorisier*", "einordnen", "extrahier*", "übersetz*", "ja oder nein",
            "wahr oder falsch", "stimmung",
        ),
        "es": (
            "clasific*", "categoriz*", "extrae", "extraer", "extraiga", "traduc*", "sí o no",
            "verdadero o falso", "sentimiento",
        ),
        "pt": ("extrair", "traduz*", "tradução", "sim ou não", "verdadeiro ou falso", "sentimento"),
        "zh": ("分类", "归类", "提取", "抽取", "翻译", "是或否", "对或错", "情感", "情绪"),
        "ja": ("分類", "抽出", "翻訳", "はいかいいえ", "感情"),
    }
)  # fmt: skip

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")
_FENCE = re.compile(r"(`{3,}|~{3,})[\s\S]*?(?:\1|\Z)")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_CODE_LINE = re.compile(
    r"^[ \t]*(?:def |class |import |from \S+ import |function\b|const |let |var |public |private |#include"
    r"|package |SELECT\b|INSERT\b|UPDATE\b|CREATE TABLE\b|fn |func |return\b|\}[ \t]*;?[ \t]*$)|[;{][ \t]*$",
    re.MULTILINE,
)
_MATH = re.compile(
    r"\d[ \t]*[+*/×÷^=<>≤≥][ \t]*[-(]?\d"  # 3*4, 2^10, 1/2, x=... between numbers
    r"|\d[ \t]+[-−][ \t]+\d"  # 7 - 2 (a bare hyphen would catch dates and ranges)
    r"|(?<![^\W\d_])[a-zA-Z][ \t]*(?:[=<>≤≥]|\^)[ \t]*[-(]?\d"  # x = 3, n^2, y < 10
    r"|\\(?:frac|int|sum|sqrt|lim|prod|partial|cdot|times|infty|leq|geq|alpha|beta|theta|pi)(?![a-zA-Z])"
    r"|[∑∫√∂∞≈≠∀∃∈]"
)
_STEP = re.compile(r"^[ \t]*(?:\d{1,2}[.)][ \t]|step[ \t]+\d+\b)", re.MULTILINE | re.IGNORECASE)


def _keyword_regex(keyword: str) -> str:
    word = keyword.strip().lower()
    prefix = word.endswith("*")
    word = word.rstrip("*").strip()
    if not word:
        raise ConfigError(f"empty complexity keyword {keyword!r}.")
    body = r"\s+".join(re.escape(piece) for piece in word.split())
    if _CJK.search(word):
        return body
    return r"(?<!\w)" + body + (r"\w*" if prefix else r"(?!\w)")


_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class _Keywords:
    """A keyword list split by how it is matched, so that scoring a prompt costs one pass over its words
    instead of trying every keyword at every position (one big alternation cost milliseconds per prompt):
    single words by set lookup, ``word*`` prefixes by ``str.startswith``, phrases and CJK by a small regex."""

    words: frozenset[str]
    prefixes: tuple[str, ...]
    phrases: re.Pattern[str] | None  # multi-word and punctuated keywords, anchored at word starts
    cjk: re.Pattern[str] | None  # CJK keywords (no word boundaries), tried only on text with CJK in it

    def hits(self, text: str) -> int:
        """Distinct keywords found (a word repeated ten times is one hit; distinct words that one prefix
        matches count separately, as distinct matched strings)."""
        found = set()
        words, prefixes = self.words, self.prefixes
        for word in set(_WORD.findall(text.lower())):
            if word in words or (prefixes and word.startswith(prefixes)):
                found.add(word)
        if self.phrases is not None:
            found.update(m.group(0).lower() for m in self.phrases.finditer(text))
        if self.cjk is not None and _CJK.search(text):
            found.update(m.group(0).lower() for m in self.cjk.finditer(text))
        return len(found)


def _keyword_pattern(keywords: Iterable[str]) -> _Keywords | None:
    unique = sorted({k.strip().lower() for k in keywords if k.strip()}, key=lambda k: (-len(k), k))
    if not unique:
        return None
    words, prefixes, phrases, cjk = set(), [], [], []
    for keyword in unique:
        plain = keyword.rstrip("*").strip()
        if not plain:
            raise ConfigError(f"empty complexity keyword {keyword!r}.")
        if _CJK.search(plain):
            cjk.append(_keyword_regex(keyword))
        elif _WORD.fullmatch(plain) is None:
            # "(?<!\w)" is hoisted out of the alternation so that a position inside a word fails at once.
            phrases.append(_keyword_regex(keyword).removeprefix(r"(?<!\w)"))
        elif keyword.endswith("*"):
            prefixes.append(plain)
        else:
            words.add(plain)
    return _Keywords(
        frozenset(words),
        tuple(prefixes),
        re.compile(r"(?<!\w)(?:" + "|".join(phrases) + ")", re.IGNORECASE) if phrases else None,
        re.compile("|".join(cjk), re.IGNORECASE) if cjk else None,
    )


def _hits(keywords: _Keywords | None, text: str) -> int:
    """Distinct keywords found (a word repeated ten times is one hit)."""
    return 0 if keywords is None else keywords.hits(text)


def _flatten(lists: Mapping[str, Sequence[str]]) -> list[str]:
    return [keyword for words in lists.values() for keyword in words]


@dataclass(frozen=True)
class ComplexityScore:
    """A request's complexity: ``score`` 0..1, its ``tier``, each signal's 0..1 value, the prompt tokens."""

    score: float
    tier: Tier
    signals: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "tier": self.tier,
            "signals": dict(self.signals),
            "prompt_tokens": self.prompt_tokens,
        }


class ComplexityScorer:
    """Scores requests. Every default is overridable:

    * ``weights``: per-signal weights merged over :data:`DEFAULT_WEIGHTS` (unknown names are refused);
    * ``simple_below`` / ``complex_from``: tier cut points, ``0 <= simple_below <= complex_from <= 1``;
    * ``length_tokens``: ``(low, high)`` prompt tokens where the length signal starts and saturates;
    * ``extra_complex_keywords`` / ``extra_simple_keywords``: more keywords (same syntax as the built-in lists);
    * ``complex_keywords`` / ``simple_keywords``: replace the built-in lists entirely (language -> keywords).
    """

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        simple_below: float = DEFAULT_SIMPLE_BELOW,
        complex_from: float = DEFAULT_COMPLEX_FROM,
        length_tokens: tuple[int, int] = DEFAULT_LENGTH_TOKENS,
        extra_complex_keywords: Iterable[str] = (),
        extra_simple_keywords: Iterable[str] = (),
        complex_keywords: Mapping[str, Sequence[str]] | None = None,
        simple_keywords: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        merged = dict(DEFAULT_WEIGHTS)
        for name, value in (weights or {}).items():
            if name not in DEFAULT_WEIGHTS:
                raise ConfigError(f"unknown complexity signal {name!r}; known signals: {', '.join(DEFAULT_WEIGHTS)}.")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"complexity weight {name!r} must be a finite number, got {value!r}.")
            merged[name] = float(value)
        if not 0 <= simple_below <= complex_from <= 1:
            raise ConfigError(
                "complexity cut points must satisfy 0 <= simple_below <= complex_from <= 1, "
                f"got simple_below={simple_below!r}, complex_from={complex_from!r}."
            )
        low, high = length_tokens
        if not 0 <= low < high:
            raise ConfigError(f"length_tokens must be (low, high) with 0 <= low < high, got {length_tokens!r}.")
        self.weights: Mapping[str, float] = MappingProxyType(merged)
        self.simple_below = float(simple_below)
        self.complex_from = float(complex_from)
        self.length_tokens = (int(low), int(high))
        complex_words = _flatten(COMPLEX_KEYWORDS if complex_keywords is None else complex_keywords)
        simple_words = _flatten(SIMPLE_KEYWORDS if simple_keywords is None else simple_keywords)
        self._complex = _keyword_pattern([*complex_words, *extra_complex_keywords])
        self._simple = _keyword_pattern([*simple_words, *extra_simple_keywords])

    def tier_for(self, score: float) -> Tier:
        if score < self.simple_below:
            return "simple"
        if score < self.complex_from:
            return "standard"
        return "complex"

    def score(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
        model: str | None = None,
        system: object = None,
    ) -> ComplexityScore:
        """Score a chat request. ``system`` is Anthropic's top-level system prompt (string or text blocks);
        ``tools`` also accepts OpenAI's legacy ``functions`` list."""
        signals, prompt_tokens = self._measure(messages, tools, response_format, model, system)
        total = sum(self.weights[name] * value for name, value in signals.items())
        score = round(min(1.0, max(0.0, total)), 4)
        return ComplexityScore(score=score, tier=self.tier_for(score), signals=signals, prompt_tokens=prompt_tokens)

    def _measure(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Any] | None,
        response_format: Mapping[str, Any] | None,
        model: str | None,
        system: object,
    ) -> tuple[dict[str, float], int]:
        """Each signal's 0..1 value (rounded to 4 decimals) and the prompt's token count."""
        system_parts = [system_text(system)] if system is not None else []
        all_texts = [*system_parts]
        user_turns: list[str] = []
        for message in messages:
            text = message_text(message)
            all_texts.append(text)
            if role(message) in SYSTEM_ROLES:
                system_parts.append(text)
            elif role(message) == "user" and not is_tool_result(message):
                user_turns.append(text)
        task = "\n".join([*system_parts, user_turns[-1] if user_turns else ""])
        prose = _INLINE_CODE.sub(" ", _FENCE.sub(" ", task))

        prompt_tokens = count_text("\n".join(all_texts), model or _DEFAULT_COUNT_MODEL).tokens
        low, high = self.length_tokens
        reasoning_hits = _hits(self._complex, prose)
        code_lines = len(_CODE_LINE.findall(_FENCE.sub(" ", task)))
        if _FENCE.search(task) or code_lines >= 3:
            code = 1.0
        elif code_lines or _INLINE_CODE.search(task):
            code = 0.5
        else:
            code = 0.0
        values = {
            "length": min(1.0, max(0.0, (prompt_tokens - low) / (high - low))),
            "reasoning": min(1.0, reasoning_hits / 2),
            "simple_task": 1.0 if _hits(self._simple, prose) else 0.0,
            "code": code,
            "math": min(1.0, len(_MATH.findall(prose)) / 3),
            "structured_output": 1.0 if _wants_json(response_format) else 0.0,
            "tools": 1.0 if tools else 0.0,
            "turns": min(1.0, max(0, len(user_turns) - 1) / 5),
            "steps": min(1.0, len(_STEP.findall(prose)) / 4),
        }
        return {name: round(value, 4) for name, value in values.items()}, prompt_tokens


def _wants_json(response_format: Mapping[str, Any] | None) -> bool:
    return isinstance(response_format, Mapping) and response_format.get("type") in ("json_object", "json_schema")


_DEFAULT_SCORER = ComplexityScorer()


def score_request(
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Any] | None = None,
    response_format: Mapping[str, Any] | None = None,
    model: str | None = None,
    system: object = None,
) -> ComplexityScore:
    """Score a request with the default :class:`ComplexityScorer`."""
    return _DEFAULT_SCORER.score(messages, tools=tools, response_format=response_format, model=model, system=system)
